"""W11: the per-example Jacobian of the W2 network's 10 outputs with respect to its 784
inputs (784 → 128 sigmoid → 10 linear, batch 64, float32): sizes, data, FLOP counts, the
hand-written numpy Jacobian (the float64 reference and the "numpy" entry), and the
entries: adjit ``aj.jacobian`` (reverse mode, chosen by ``auto``), ``jax.vmap(jax.jacrev)``
and ``jax.vmap(jax.jacfwd)`` under ``jax.jit``, ``torch.func.vmap(torch.func.jacrev)``.

Every entry returns ``[J]`` with ``J[b, i, j] = ∂y[b, i] / ∂x[b, j]``, shape (64, 10, 784).
The runner (run.py) takes its W11 entries from :func:`factories`, not from the
value-and-grad ones.
"""
from __future__ import annotations

import time

import numpy as np

from peers import Impl, Skip

W11 = dict(B=64, sizes=(784, 128, 10))


def param_shapes(kind: str = "w11") -> dict[str, tuple]:
    i, h, o = W11["sizes"]
    return {"W1": (i, h), "b1": (h,), "W2": (h, o), "b2": (o,)}


def make_data(kind: str, seed: int, dtype: str) -> dict:
    """W2's distributions: x ~ N(0, 1), W ~ N(0, 1)/√fan_in, b ~ 0.1·N(0, 1), drawn in
    float64 and cast."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    x = rng.standard_normal((W11["B"], W11["sizes"][0])).astype(dt)
    params = {}
    for name, shape in param_shapes().items():
        scale = 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1
        params[name] = (scale * rng.standard_normal(shape)).astype(dt)
    return {"inputs": {"x": x}, "params": params, "dirs": {}, "consts": {}, "labels": None}


def flops(kind: str = "w11") -> tuple[float, float]:
    """(Jacobian, forward) matmul FLOPs: the forward pass, then per output one backward
    pass through W2 (1×10 → 128) and W1 (128 → 784), as reverse mode computes it."""
    B, (i, h, o) = W11["B"], W11["sizes"]
    fwd = 2.0 * B * (i * h + h * o)
    return fwd + o * 2.0 * B * (o * h + h * i), fwd


def numpy_jacobian(x, W1, b1, W2, b2):
    s = 1.0 / (1.0 + np.exp(-(x @ W1 + b1)))
    d = s * (1.0 - s)                                         # σ'(z), (B, 128)
    return (W2.T[None, :, :] * d[:, None, :]) @ W1.T          # (B, 10, 784)


def numpy_step(kind: str, data: dict, fwd_only: bool = False):
    x, P = data["inputs"]["x"], data["params"]
    return lambda: [numpy_jacobian(x, P["W1"], P["b1"], P["W2"], P["b2"])]


def _np_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def make_numpy(wl, data) -> Impl:
    return Impl("numpy", numpy_step(wl.kind, data), _np_list,
                note="hand-written W2ᵀ diag(σ′) W1ᵀ per example")


def make_jax(wl, data, mode: str) -> Impl:
    import peers_jax
    jax = peers_jax.jax
    if jax is None:
        raise Skip(f"jax not importable ({peers_jax.available()})")
    jnp = peers_jax.jnp
    P = tuple(jnp.asarray(v) for v in data["params"].values())
    x = jnp.asarray(data["inputs"]["x"])

    def f(p, xi):
        W1, b1, W2, b2 = p
        return jax.nn.sigmoid(xi @ W1 + b1) @ W2 + b2
    jac = {"jacrev": jax.jacrev, "jacfwd": jax.jacfwd}[mode](f, argnums=1)
    fn = jax.jit(jax.vmap(jac, in_axes=(None, 0)))
    step = lambda: jax.block_until_ready(fn(P, x))  # noqa: E731
    t0 = time.perf_counter()
    step()
    return Impl(f"jax {mode}", step, _np_list, compile_s=time.perf_counter() - t0,
                note=f"jit(vmap({mode}))")


def make_torch(wl, data) -> Impl:
    import peers_torch
    torch = peers_torch.torch
    if torch is None:
        raise Skip(f"torch not importable ({peers_torch.available()})")
    P = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in data["params"].values())
    x = torch.from_numpy(np.ascontiguousarray(data["inputs"]["x"]))

    def f(p, xi):
        W1, b1, W2, b2 = p
        return torch.addmm(b2, torch.sigmoid(torch.addmm(b1, xi[None], W1)), W2)[0]
    fn = torch.func.vmap(torch.func.jacrev(f, argnums=1), in_dims=(None, 0))

    def step():
        with torch.no_grad():
            return fn(P, x)
    t0 = time.perf_counter()
    step()
    return Impl("torch.func", step, lambda out: [out.numpy()],
                compile_s=time.perf_counter() - t0, note="vmap(jacrev), eager")


def adjit_jacobian(aj, dtype: str):
    """The W11 graph: ``aj.jacobian`` of W2's network output with respect to ``x``."""
    x = aj.input("x", (None, W11["sizes"][0]), dtype=dtype)
    p = {k: aj.param(k, s, dtype=dtype) for k, s in param_shapes().items()}
    y = aj.sigmoid(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    return aj.jacobian(y, x)


def make_adjit(wl, data, backend: str) -> Impl:
    import models
    aj = models.aj
    if aj is None or not hasattr(aj, "jacobian"):
        raise Skip(f"adjit lacks jacobian ({models.available() or 'older tree'})")
    dt = wl.dtype
    if backend == "llvm":
        models._load_gemm_library(dt)
    t0 = time.perf_counter()
    with models._env("ADJIT_CACHE", "0"):
        f = aj.compile(adjit_jacobian(aj, dt), backend=backend)
    cold = time.perf_counter() - t0
    kw = {**data["inputs"], **data["params"]}
    return Impl("adjit" if backend == "llvm" else f"adjit {backend}", lambda: f(**kw),
                lambda out: [np.asarray(out)], compile_s=cold, is_adjit=True,
                note="jacobian, auto = reverse", extra={"backend": backend})


def factories():
    """(selector, factory) for W11, in table order (see run.py)."""
    return [("numpy", make_numpy),
            ("jax", lambda wl, d: make_jax(wl, d, "jacrev")),
            ("jax", lambda wl, d: make_jax(wl, d, "jacfwd")),
            ("torch", make_torch),
            ("interp", lambda wl, d: make_adjit(wl, d, "interp")),
            ("llvm", lambda wl, d: make_adjit(wl, d, "llvm"))]
