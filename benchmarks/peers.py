"""Peer implementations, part 1: shared plumbing, hand-written numpy, plain Python.

A peer factory takes (workload, data) and returns an ``Impl`` whose ``fn()``
runs one full step on pre-bound data (the timed call) and whose
``to_numpy(out)`` turns that call's result into ``[loss, g_1, ..., g_n]``
(not timed).  A factory raises ``Skip`` with a reason when it cannot run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np



class Skip(Exception):
    """A peer that cannot run here; the message says why."""


@dataclass
class Impl:
    name: str
    fn: Callable[[], Any]
    to_numpy: Callable[[Any], list]
    compile_s: float | None = None          # first call (trace + compile) or cold compile
    compile_warm_s: float | None = None     # compile served from a cache
    fwd_only: bool = False                  # loss-only run, for the backward/forward ratio
    is_adjit: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)


def timed_first_call(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _np_list(out):
    return [np.asarray(o, dtype=np.float64) if np.ndim(o) == 0 else np.asarray(o) for o in out]


# ---------------------------------------------------------------- plain Python (W1)

def w1_python_step(x: float, t: float, w: float, b: float, lam: float):
    z = w * x + b
    y = 1.0 / (1.0 + math.exp(-z))
    d = y - t
    loss = 0.5 * d * d + 0.5 * lam * w * w
    dz = d * y * (1.0 - y)
    return loss, dz * x + lam * w, dz


def make_python(wl, data) -> Impl:
    if not wl.scalar:
        raise Skip("plain Python only for W1")
    x, t = float(data["inputs"]["x"]), float(data["inputs"]["t"])
    w, b = float(data["params"]["w"]), float(data["params"]["b"])
    lam = float(data["consts"]["lam"])
    return Impl("plain Python", lambda: w1_python_step(x, t, w, b, lam), _np_list)


# ---------------------------------------------------------------- numpy

def w1_numpy_step(x, t, w, b, lam):
    z = w * x + b
    y = 1.0 / (1.0 + np.exp(-z))
    d = y - t
    loss = 0.5 * d * d + 0.5 * lam * w * w
    dz = d * y * (1.0 - y)
    return loss, dz * x + lam * w, dz


def _act(name, z):
    if name == "sigmoid":
        # 1 / (1 + exp(-z)), in place on the fresh array z
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1.0
        return np.reciprocal(z, out=z)
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "tanh":
        return np.tanh(z, out=z)
    return z


def _act_backprop(name, gh, h):
    """d loss / d z from d loss / d h, using the activation's output h."""
    if name == "sigmoid":
        return gh * h * (1.0 - h)
    if name == "relu":
        return np.multiply(gh, h > 0, out=gh)
    if name == "tanh":
        return gh * (1.0 - h * h)
    return gh


def _forward(layers, X, Ws, bs):
    hs = [X]
    h = X
    for (_, _, act), W, b in zip(layers, Ws, bs):
        z = h @ W
        z += b
        h = _act(act, z)
        hs.append(h)
    return hs


def _loss_and_seed(kind, y, T):
    """Loss value and d loss / d (last pre-activation output y)."""
    B = y.shape[0]
    if kind == "mse":
        d = y - T
        return 0.5 * np.vdot(d, d) / B, d / B
    # softmax cross-entropy with one-hot targets: ȳ = (softmax(z) - t) / B
    m = y.max(axis=1, keepdims=True)
    e = np.exp(y - m)
    s = e.sum(axis=1, keepdims=True)
    logp = y - m - np.log(s)
    loss = -np.vdot(T, logp) / B
    p = e / s
    return loss, (p - T) / B, p


def mlp_value_and_grad(layers, X, T, Ws, bs, loss_kind):
    hs = _forward(layers, X, Ws, bs)
    res = _loss_and_seed(loss_kind, hs[-1], T)
    loss, g = res[0], res[1]
    g = _act_backprop(layers[-1][2], g, hs[-1]) if loss_kind == "mse" else g
    grads = [None] * (2 * len(Ws))
    for i in range(len(Ws) - 1, -1, -1):
        grads[2 * i] = hs[i].T @ g                 # W̄ = hᵀ ȳ
        grads[2 * i + 1] = g.sum(axis=0)          # b̄ = Σ ȳ
        if i > 0:
            gh = g @ Ws[i].T                       # h̄ = ȳ Wᵀ
            g = _act_backprop(layers[i - 1][2], gh, hs[i])
    return [loss] + grads


def mlp_loss(layers, X, T, Ws, bs, loss_kind):
    hs = _forward(layers, X, Ws, bs)
    return _loss_and_seed(loss_kind, hs[-1], T)[0]


def relu_xent_hvp(X, T, Ws, bs, Vw, Vb):
    """Loss and Hessian-vector product of a ReLU MLP with softmax cross-entropy.

    Forward-over-reverse with Pearlmutter's R-operator: R{.} is the directional
    derivative along (Vw, Vb).  ReLU'' = 0, so only the softmax and the
    bilinear matmul terms contribute second-order pieces.
    """
    n = len(Ws)
    hs, masks, Rhs = [X], [], [np.zeros_like(X)]
    h, Rh = X, None
    for i in range(n):
        z = h @ Ws[i] + bs[i]
        Rz = h @ Vw[i] + Vb[i]
        if Rh is not None:
            Rz += Rh @ Ws[i]
        if i < n - 1:
            m = z > 0
            h, Rh = z * m, Rz * m
            masks.append(m)
            hs.append(h)
            Rhs.append(Rh)
        else:
            logits, Rlogits = z, Rz
    B = X.shape[0]
    loss, g, p = _loss_and_seed("xent", logits, T)
    pR = p * Rlogits
    Rg = (pR - p * pR.sum(axis=1, keepdims=True)) / B   # R{softmax} / B
    out = [None] * (2 * n)
    for i in range(n - 1, -1, -1):
        RdW = hs[i].T @ Rg
        if i > 0:
            RdW += Rhs[i].T @ g
        out[2 * i], out[2 * i + 1] = RdW, Rg.sum(axis=0)
        if i > 0:
            gh = g @ Ws[i].T
            Rgh = Rg @ Ws[i].T + g @ Vw[i].T
            g, Rg = gh * masks[i - 1], Rgh * masks[i - 1]
    return [loss] + out


def _unpack(wl, data):
    P = data["params"]
    Ws = [P[f"W{i}"] for i in range(1, len(wl.sizes))]
    bs = [P[f"b{i}"] for i in range(1, len(wl.sizes))]
    return data["inputs"]["x"], data["inputs"]["t"], Ws, bs


def numpy_step(wl, data):
    """A zero-argument callable running one numpy step on ``data``."""
    if wl.seq:
        return wl.module.numpy_step(wl.kind, data)
    if wl.scalar:
        I, P = data["inputs"], data["params"]
        lam = data["consts"]["lam"]
        return lambda: w1_numpy_step(I["x"], I["t"], P["w"], P["b"], lam)
    X, T, Ws, bs = _unpack(wl, data)
    if wl.hvp:
        D = data["dirs"]
        Vw = [D[f"W{i}"] for i in range(1, len(wl.sizes))]
        Vb = [D[f"b{i}"] for i in range(1, len(wl.sizes))]
        return lambda: relu_xent_hvp(X, T, Ws, bs, Vw, Vb)
    layers = wl.layers()
    return lambda: mlp_value_and_grad(layers, X, T, Ws, bs, wl.loss)


def make_numpy(wl, data) -> Impl:
    note = "hand-written R-op (forward-over-reverse)" if wl.hvp else ""
    if wl.seq:
        note = ("hand-written backprop (convolutions by einsum over sliding windows)"
                if wl.kind in ("w9", "w10") else
                "hand-written backprop (BPTT for W8; np.add.at for the embedding)")
    return Impl("numpy", numpy_step(wl, data), _np_list, note=note)


def make_numpy_fwd(wl, data) -> Impl:
    if wl.scalar or wl.hvp:
        raise Skip("loss-only timing only for W2-W5")
    if wl.seq:
        return Impl("numpy (loss only)", wl.module.numpy_step(wl.kind, data, fwd_only=True),
                    _np_list, fwd_only=True)
    X, T, Ws, bs = _unpack(wl, data)
    layers = wl.layers()
    return Impl("numpy (loss only)", lambda: [mlp_loss(layers, X, T, Ws, bs, wl.loss)],
                _np_list, fwd_only=True)


def reference(wl, data64) -> list:
    """The float64 numpy result every implementation is checked against."""
    if wl.per_example:
        import pex_bench
        return pex_bench.reference(wl, data64)
    return _np_list(numpy_step(wl, data64)())
