"""W12: per-example gradients of W3's loss (64 -> 128 ReLU -> 64 ReLU -> 10, softmax
cross-entropy, batch 32, float32), every parameter.

Convention (every entry): the per-example loss is example b's cross-entropy, *not* divided
by B (``torch.func.vmap(torch.func.grad(f))`` of a one-example loss), so the mean over the
batch of the per-example gradients is W3's gradient.  Each entry returns
``[losses (B,), g_W1 (B, 64, 128), g_b1 (B, 128), ...]``.

Entries: adjit ``aj.per_example_grad`` (llvm, interp), JAX ``jit(vmap(value_and_grad))``,
``torch.func.vmap(torch.func.grad_and_value)`` eager.  The float64 numpy reference is
hand-written backprop with the batch kept (``x_b ⊗ z̄_b``); it is not timed.
"""

from __future__ import annotations

import time

import numpy as np

from peers import Impl, Skip


def reference(wl, data64) -> list:
    X, T = data64["inputs"]["x"], data64["inputs"]["t"]
    p = list(data64["params"].values())
    Ws, bs = p[0::2], p[1::2]
    hs, h = [X], X
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = h @ W + b
        h = np.maximum(z, 0.0) if i < len(Ws) - 1 else z
        hs.append(h)
    m = h.max(axis=1, keepdims=True)
    ls = h - m - np.log(np.exp(h - m).sum(axis=1, keepdims=True))
    losses = -(T * ls).sum(axis=1)
    gz = np.exp(ls) * T.sum(axis=1, keepdims=True) - T          # per example, not / B
    grads = []
    for i in range(len(Ws) - 1, -1, -1):
        grads = [hs[i][:, :, None] * gz[:, None, :], gz] + grads
        if i:
            gz = (gz @ Ws[i].T) * (hs[i] > 0)
    return [losses] + grads


def _to_numpy(out):
    losses, grads = out
    return [np.asarray(losses, dtype=np.float64)] + [np.asarray(g) for g in grads]


def make_jax(wl, data) -> Impl:
    import peers_jax
    jax = peers_jax.jax
    if jax is None:
        raise Skip(f"jax not importable ({peers_jax.available()})")
    jnp = jax.numpy
    put = lambda a: jax.device_put(jnp.asarray(a))  # noqa: E731
    params = tuple(put(p) for p in data["params"].values())
    x, t = put(data["inputs"]["x"]), put(data["inputs"]["t"])
    n = len(wl.layers())

    def loss(params, x, t):                                   # one example
        h = x
        for i in range(n):
            h = h @ params[2 * i] + params[2 * i + 1]
            h = jax.nn.relu(h) if i < n - 1 else h
        return -jnp.sum(t * jax.nn.log_softmax(h))
    f = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(None, 0, 0)))
    step = lambda: jax.block_until_ready(f(params, x, t))  # noqa: E731
    t0 = time.perf_counter()
    step()
    return Impl("jax jit", step, _to_numpy, compile_s=time.perf_counter() - t0,
                note="jit(vmap(value_and_grad))")


def make_torch(wl, data) -> Impl:
    import peers_torch
    torch = peers_torch.torch
    if torch is None:
        raise Skip(f"torch not importable ({peers_torch.available()})")
    params = tuple(torch.from_numpy(np.array(p)) for p in data["params"].values())
    x = torch.from_numpy(np.array(data["inputs"]["x"]))
    t = torch.from_numpy(np.array(data["inputs"]["t"]))
    n = len(wl.layers())

    def loss(params, x, t):
        h = x
        for i in range(n):
            h = h @ params[2 * i] + params[2 * i + 1]
            h = torch.relu(h) if i < n - 1 else h
        return -(t * torch.log_softmax(h, dim=-1)).sum()
    gv = torch.func.vmap(torch.func.grad_and_value(loss), in_dims=(None, 0, 0))

    def step():
        grads, losses = gv(params, x, t)
        return losses, grads
    t0 = time.perf_counter()
    step()
    return Impl("torch.func", step, _to_numpy, compile_s=time.perf_counter() - t0,
                note="vmap(grad_and_value), eager")


def build_adjit(aj, wl):
    import models
    x, t, params, h = models.mlp(wl)
    losses = -aj.sum(t * aj.log_softmax(h, axis=-1), axis=-1)
    return [losses] + list(aj.per_example_grad(losses, params))


def make_adjit(wl, data, backend: str) -> Impl:
    import models
    aj = models.aj
    if models.available():
        raise Skip(f"adjit not usable ({models.available()})")
    if backend == "llvm":
        models._load_gemm_library(wl.dtype)
    t0 = time.perf_counter()
    with models._env("ADJIT_CACHE", "0"):                   # a cold compile, as models.py
        f = aj.compile(build_adjit(aj, wl), backend=backend)
    cold = time.perf_counter() - t0
    kw = models.feeds(data)
    name = "adjit" if backend == "llvm" else f"adjit {backend}"
    return Impl(name, lambda: f(**kw), lambda out: [np.asarray(o) for o in out],
                compile_s=cold, is_adjit=True, note="per_example_grad",
                extra={"backend": backend})


def factories() -> list:
    """(selector, factory) for W12, in table order (run.py's selectors)."""
    return [("torch", make_torch), ("jax", make_jax),
            ("interp", lambda wl, d: make_adjit(wl, d, "interp")),
            ("llvm", lambda wl, d: make_adjit(wl, d, "llvm"))]
