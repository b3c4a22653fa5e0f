"""Peer implementations, part 2: PyTorch eager and torch.compile.

Imported lazily by the runner, after the thread settings are in place.
"""

from __future__ import annotations

import time

import numpy as np

import conv_workloads
import seq_workloads
from peers import Impl, Skip

try:
    import torch
    import torch.nn.functional as F
except Exception as exc:  # pragma: no cover - depends on the environment
    torch = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = ""


def available() -> str:
    """'' when torch can be used, else the reason it cannot."""
    return _IMPORT_ERROR


def _act(name, z):
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "relu":
        return torch.relu(z)
    if name == "tanh":
        return torch.tanh(z)
    return z


def _seq_loss_fn(wl):
    """W7 / W8 (seq_workloads.py), W9 / W10 (conv_workloads.py) as pure torch functions of
    (params, x, labels)."""
    if wl.kind in ("w9", "w10"):
        return conv_workloads.torch_loss(wl.kind)
    if wl.kind == "w7":
        heads = seq_workloads.W7["heads"]

        def loss(params, x, t):
            emb, Wq, Wk, Wv, Wo, Wout, bout = params
            E = F.embedding(x, emb)                                   # (B, T, D)
            B, T, D = E.shape

            def split(z):
                return z.reshape(B, T, heads, D // heads).transpose(1, 2)
            o = F.scaled_dot_product_attention(split(E @ Wq), split(E @ Wk), split(E @ Wv))
            h = E + o.transpose(1, 2).reshape(B, T, D) @ Wo
            return F.cross_entropy(torch.addmm(bout, h.mean(dim=1), Wout), t)
        return loss

    def loss(params, x, t):
        Wx, Wh, b, Wout, bout = params
        xw = x @ Wx + b                                               # every step at once
        h = torch.tanh(xw[:, 0])                                      # h0 = 0
        for s in range(1, x.shape[1]):
            h = torch.tanh(torch.addmm(xw[:, s], h, Wh))
        return F.cross_entropy(torch.addmm(bout, h, Wout), t)
    return loss


def _loss_fn(wl, lam=None):
    """loss(params_tuple, x, t) as a pure torch function."""
    if wl.seq:
        return _seq_loss_fn(wl)
    if wl.scalar:
        def loss(params, x, t):
            w, b = params
            y = torch.sigmoid(w * x + b)
            return 0.5 * (y - t) ** 2 + 0.5 * lam * w * w
        return loss
    layers = wl.layers()

    def loss(params, x, t):
        h = x
        for i, (_, _, act) in enumerate(layers):
            h = _act(act, torch.addmm(params[2 * i + 1], h, params[2 * i]))
        if wl.loss == "mse":
            d = h - t
            return 0.5 * (d * d).sum() / h.shape[0]
        return F.cross_entropy(h, t)   # t: integer class labels (same as one-hot)
    return loss


def _tensors(wl, data):
    params = tuple(torch.from_numpy(np.array(p)) for p in data["params"].values())
    x = torch.from_numpy(np.array(data["inputs"]["x"]))
    if wl.loss == "xent":
        t = torch.from_numpy(np.asarray(data["labels"], dtype=np.int64))
    else:
        t = torch.from_numpy(np.array(data["inputs"]["t"]))
    dirs = tuple(torch.from_numpy(np.array(v)) for v in data["dirs"].values())
    return params, x, t, dirs


def _to_numpy(out):
    loss, grads = out
    return [loss.detach().double().numpy()] + [g.detach().numpy() for g in grads]


def _check():
    if torch is None:
        raise Skip(f"torch not importable ({_IMPORT_ERROR})")


def make_eager(wl, data) -> Impl:
    _check()
    params, x, t, dirs = _tensors(wl, data)
    params = tuple(p.requires_grad_(True) for p in params)
    loss_fn = _loss_fn(wl, data["consts"].get("lam"))

    if wl.hvp:
        def step():
            loss = loss_fn(params, x, t)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * v).sum() for g, v in zip(grads, dirs))
            return loss, torch.autograd.grad(dot, params)
        return Impl("torch eager", step, _to_numpy, note="double backward")

    def step():
        for p in params:
            p.grad = None
        loss = loss_fn(params, x, t)
        loss.backward()
        return loss, [p.grad for p in params]
    return Impl("torch eager", step, _to_numpy)


def make_compiled(wl, data) -> Impl:
    """torch.compile of the value-and-grad step (torch.func.grad_and_value).

    Falls back to compiling the loss and running ``loss.backward()`` (the
    AOTAutograd-compiled backward) when the functional form does not compile.
    Raises Skip with the reason when neither compiles.
    """
    _check()
    params, x, t, dirs = _tensors(wl, data)
    loss_fn = _loss_fn(wl, data["consts"].get("lam"))
    errors = []
    if wl.hvp:
        gv = torch.func.grad_and_value(loss_fn)

        def hvp(p, v, x, t):
            (g, loss), (hv, _) = torch.func.jvp(lambda q: gv(q, x, t), (p,), (v,))
            return loss, hv
        variants = [("torch.compile", torch.compile(hvp), lambda: (params, dirs, x, t),
                     "jvp(grad_and_value)")]
    else:
        gv = torch.compile(torch.func.grad_and_value(loss_fn))
        variants = [("torch.compile", lambda p, x, t: gv(p, x, t)[::-1],
                     lambda: (params, x, t), "grad_and_value")]
    for name, fn, args, note in variants:
        torch._dynamo.reset()
        a = args()
        step = lambda fn=fn, a=a: fn(*a)  # noqa: E731
        try:
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - report why and try the fallback
            errors.append(f"{note}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        return Impl(name, step, _to_numpy, compile_s=dt, note=note)

    if not wl.hvp:   # fallback: compiled loss + eager-driven compiled backward
        torch._dynamo.reset()
        cparams = tuple(p.detach().clone().requires_grad_(True) for p in params)
        closs = torch.compile(loss_fn)

        def step():
            for p in cparams:
                p.grad = None
            loss = closs(cparams, x, t)
            loss.backward()
            return loss, [p.grad for p in cparams]
        try:
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            return Impl("torch.compile", step, _to_numpy, compile_s=dt,
                        note="compiled loss + backward(); " + "; ".join(errors))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"loss+backward: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    raise Skip("torch.compile failed: " + " | ".join(errors))
