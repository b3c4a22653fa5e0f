"""Peer implementations, part 3: JAX jit(value_and_grad) and jit(jvp(grad)) for W6.

Imported lazily by the runner, after the thread settings (XLA_FLAGS) are in place.
"""

from __future__ import annotations

import time

import numpy as np

import conv_workloads
import seq_workloads
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


def _seq_loss_fn(wl):
    """W7 / W8 (seq_workloads.py), W9 / W10 (conv_workloads.py) as pure JAX functions of
    (params, x, one-hot t)."""
    if wl.kind in ("w9", "w10"):
        return conv_workloads.jax_loss(wl.kind)
    def xent(logits, t):
        return -jnp.sum(t * jax.nn.log_softmax(logits, axis=1)) / logits.shape[0]

    if wl.kind == "w7":
        heads = seq_workloads.W7["heads"]

        def loss(params, x, t):
            emb, Wq, Wk, Wv, Wo, Wout, bout = params
            E = jnp.take(emb, x, axis=0)                              # (B, T, D)
            B, T, D = E.shape

            def split(z):                                             # (B, T, heads, dh)
                return z.reshape(B, T, heads, D // heads)
            o = jax.nn.dot_product_attention(split(E @ Wq), split(E @ Wk), split(E @ Wv))
            h = E + o.reshape(B, T, D) @ Wo
            return xent(h.mean(axis=1) @ Wout + bout, t)
        return loss

    def loss(params, x, t):
        Wx, Wh, b, Wout, bout = params
        xw = jnp.swapaxes(x @ Wx + b, 0, 1)                           # (T, B, H)

        def step(h, xw_t):
            h = jnp.tanh(xw_t + h @ Wh)
            return h, None
        h, _ = jax.lax.scan(step, jnp.tanh(xw[0]), xw[1:])            # h0 = 0
        return xent(h @ Wout + bout, t)
    return loss


def _loss_fn(wl, lam=None):
    if wl.seq:
        return _seq_loss_fn(wl)
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
