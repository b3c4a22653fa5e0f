"""Peer implementations, part 3: JAX jit(value_and_grad) and jit(jvp(grad)) for W6.

Imported lazily by the runner, after the thread settings (XLA_FLAGS) are in place.
"""

from __future__ import annotations

import time

import numpy as np

from peers import Impl, Skip

try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)   # float64 workloads stay float64
except Exception as exc:  # pragma: no cover - depends on the environment
    jax = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = ""


def available() -> str:
    return _IMPORT_ERROR


def _act(name, z):
    if name == "sigmoid":
        return jax.nn.sigmoid(z)
    if name == "relu":
        return jax.nn.relu(z)
    if name == "tanh":
        return jnp.tanh(z)
    return z


def _loss_fn(wl, lam=None):
    if wl.scalar:
        def loss(params, x, t):
            w, b = params
            y = jax.nn.sigmoid(w * x + b)
            return 0.5 * (y - t) ** 2 + 0.5 * lam * w * w
        return loss
    layers = wl.layers()

    def loss(params, x, t):
        h = x
        for i, (_, _, act) in enumerate(layers):
            h = _act(act, h @ params[2 * i] + params[2 * i + 1])
        if wl.loss == "mse":
            d = h - t
            return 0.5 * jnp.sum(d * d) / h.shape[0]
        return -jnp.sum(t * jax.nn.log_softmax(h, axis=1)) / h.shape[0]
    return loss


def _to_numpy(out):
    loss, grads = out
    return [np.asarray(loss, dtype=np.float64)] + [np.asarray(g) for g in grads]


def make_jit(wl, data) -> Impl:
    if jax is None:
        raise Skip(f"jax not importable ({_IMPORT_ERROR})")
    put = lambda a: jax.device_put(jnp.asarray(a))  # noqa: E731
    params = tuple(put(p) for p in data["params"].values())
    x, t = put(data["inputs"]["x"]), put(data["inputs"]["t"])
    loss_fn = _loss_fn(wl, data["consts"].get("lam"))
    if wl.hvp:
        dirs = tuple(put(v) for v in data["dirs"].values())
        vg = jax.value_and_grad(loss_fn)

        @jax.jit
        def hvp(p, v, x, t):
            (loss, _), (_, hv) = jax.jvp(lambda q: vg(q, x, t), (p,), (v,))
            return loss, hv
        step = lambda: jax.block_until_ready(hvp(params, dirs, x, t))  # noqa: E731
        note = "jit(jvp(value_and_grad))"
    else:
        vg = jax.jit(jax.value_and_grad(loss_fn))
        step = lambda: jax.block_until_ready(vg(params, x, t))  # noqa: E731
        note = ""
    t0 = time.perf_counter()
    step()
    return Impl("jax jit", step, _to_numpy, compile_s=time.perf_counter() - t0, note=note)
