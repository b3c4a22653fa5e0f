"""W9 (LeNet-5 on 1×28×28) and W10 (a residual stage of two basic blocks): sizes, data,
FLOP counts, the hand-written numpy forward + backward (the float64 reference every entry
is checked against, and the "numpy" entry), and the model written once per framework:
adjit (``adjit_loss``), PyTorch (``torch_loss``) and JAX (``jax_loss``).

Parameter order and layouts (every implementation gets the same arrays):
  W9:  conv1_W (6, 1, 5, 5), conv1_b (6,), conv2_W (16, 6, 5, 5), conv2_b (16,),
       W3 (400, 120), b3, W4 (120, 84), b4, W5 (84, 10), b5 — convolution weights in
       PyTorch's (C_out, C_in, kH, kW) layout, dense weights (in, out) with z = h @ W + b.
  W10: per block i = 1, 2: b{i}_conv1_W (64, 64, 3, 3), b{i}_bn1_weight (64,),
       b{i}_bn1_bias, b{i}_conv2_W, b{i}_bn2_weight, b{i}_bn2_bias; then fc_W (64, 10),
       fc_b (10,).  Convolutions without bias (batch norm follows them).
Inputs: x (B, 1, 28, 28) / (B, 64, 32, 32); t = one-hot targets (B, 10).
Batch norm is in training mode: the batch's mean and biased variance per channel, eps 1e-5
(PyTorch's ``F.batch_norm(..., training=True)``); no running statistics are kept.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from seq_workloads import _xent

W9 = dict(B=64, classes=10)
W10 = dict(B=32, C=64, S=32, blocks=2, classes=10)
EPS = 1e-5


def param_shapes(kind: str) -> dict[str, tuple]:
    if kind == "w9":
        return {"conv1_W": (6, 1, 5, 5), "conv1_b": (6,), "conv2_W": (16, 6, 5, 5),
                "conv2_b": (16,), "W3": (400, 120), "b3": (120,), "W4": (120, 84),
                "b4": (84,), "W5": (84, 10), "b5": (10,)}
    C, out = W10["C"], {}
    for i in range(1, W10["blocks"] + 1):
        for j in (1, 2):
            out[f"b{i}_conv{j}_W"] = (C, C, 3, 3)
            out[f"b{i}_bn{j}_weight"] = (C,)
            out[f"b{i}_bn{j}_bias"] = (C,)
    out.update(fc_W=(C, W10["classes"]), fc_b=(W10["classes"],))
    return out


def input_shape(kind: str) -> tuple:
    return (1, 28, 28) if kind == "w9" else (W10["C"], W10["S"], W10["S"])


def batch(kind: str) -> int:
    return (W9 if kind == "w9" else W10)["B"]


def make_data(kind: str, seed: int, dtype: str) -> dict:
    """x ~ N(0, 1); weights N(0, 1)/√fan_in (fan_in = C_in·kH·kW for a convolution);
    biases and batch-norm shifts 0.1·N(0, 1), batch-norm scales 1 + 0.1·N(0, 1) (so no
    gradient path is trivially the identity); one-hot targets.  Drawn in float64, cast."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    B, C = batch(kind), 10
    x = rng.standard_normal((B,) + input_shape(kind)).astype(dt)
    params = {}
    for name, shape in param_shapes(kind).items():
        if name.endswith("_weight"):
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            v = 0.1 * rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) if len(shape) == 4
                                                     else shape[0])
        params[name] = v.astype(dt)
    labels = rng.integers(0, C, size=B)
    t = np.zeros((B, C))
    t[np.arange(B), labels] = 1.0
    return {"inputs": {"x": x, "t": t.astype(dt)}, "params": params, "dirs": {}, "consts": {},
            "labels": labels}


def _conv_flops(B, cin, cout, k, s_out):
    return 2.0 * B * cout * s_out * s_out * cin * k * k


def flops(kind: str) -> tuple[float, float]:
    """(value-and-grad, forward) FLOPs of the convolutions and dense products, 2 per
    multiply-add.  Value-and-grad = forward + dW of every product + dX of every product
    whose input needs a gradient: all but the first convolution, which reads the data
    (i.e. 3× the forward count less one forward of the first convolution).  Batch norm,
    ReLU, pooling and the loss are not counted."""
    B = batch(kind)
    if kind == "w9":
        c1 = _conv_flops(B, 1, 6, 5, 28)
        c2 = _conv_flops(B, 6, 16, 5, 10)
        fc = 2.0 * B * (400 * 120 + 120 * 84 + 84 * 10)
        fwd = c1 + c2 + fc
        return 3 * fwd - c1, fwd
    C, S = W10["C"], W10["S"]
    c = _conv_flops(B, C, C, 3, S)
    fwd = 2 * W10["blocks"] * c + 2.0 * B * C * W10["classes"]
    return 3 * fwd - c, fwd


# ---------------------------------------------------------------- numpy reference

def _conv_fwd(x, W, pad):
    k = W.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    cols = sliding_window_view(xp, (k, k), axis=(2, 3))           # (N, C, Ho, Wo, k, k)
    return np.einsum("nchwij,ocij->nohw", cols, W, optimize=True), cols


def _conv_bwd(g, W, cols, pad, need_dx=True):
    """(dX, dW) of y = conv(x, W) from ȳ = g: dW = Σ ȳ ⊗ cols, dX by scattering ȳ Wᵀ
    back over the k×k window offsets."""
    dW = np.einsum("nchwij,nohw->ocij", cols, g, optimize=True)
    if not need_dx:
        return None, dW
    N, _, Ho, Wo = g.shape
    k = W.shape[2]
    dxp = np.zeros((N, W.shape[1], Ho + k - 1, Wo + k - 1), g.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + Ho, j:j + Wo] += np.einsum("nohw,oc->nchw", g, W[:, :, i, j],
                                                       optimize=True)
    return (dxp[:, :, pad:-pad, pad:-pad] if pad else dxp), dW


def _pool_fwd(x):
    """2×2 max pool, stride 2 (even sizes); the argmax of each window (first on ties)."""
    N, C, H, W = x.shape
    win = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(N, C, H // 2, W // 2, 4)
    arg = win.argmax(axis=-1)
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def _pool_bwd(g, arg):
    N, C, h, w = g.shape
    win = np.zeros((N, C, h, w, 4), g.dtype)
    np.put_along_axis(win, arg[..., None], g[..., None], -1)
    return win.reshape(N, C, h, w, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * h, 2 * w)


def _bn_fwd(x, gamma, beta):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv
    return xhat * gamma[None, :, None, None] + beta[None, :, None, None], (xhat, inv)


def _bn_bwd(g, gamma, cache):
    xhat, inv = cache
    dgamma, dbeta = (g * xhat).sum(axis=(0, 2, 3)), g.sum(axis=(0, 2, 3))
    dxhat = g * gamma[None, :, None, None]
    dx = inv * (dxhat - dxhat.mean(axis=(0, 2, 3), keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True))
    return dx, dgamma, dbeta


def w9_value_and_grad(x, t, P, fwd_only=False):
    """Loss and gradients of W9 (order of param_shapes), by hand."""
    z1, cols1 = _conv_fwd(x, P["conv1_W"], 2)
    a1 = np.maximum(z1 + P["conv1_b"][:, None, None], 0)
    p1, arg1 = _pool_fwd(a1)                                          # (B, 6, 14, 14)
    z2, cols2 = _conv_fwd(p1, P["conv2_W"], 0)
    a2 = np.maximum(z2 + P["conv2_b"][:, None, None], 0)
    p2, arg2 = _pool_fwd(a2)                                          # (B, 16, 5, 5)
    h = [p2.reshape(len(x), -1)]
    for i in (3, 4):
        h.append(np.maximum(h[-1] @ P[f"W{i}"] + P[f"b{i}"], 0))
    loss, g = _xent(h[-1] @ P["W5"] + P["b5"], t)
    if fwd_only:
        return [loss]
    out = {}
    for i, hi in zip((5, 4, 3), (h[2], h[1], h[0])):
        out[f"W{i}"], out[f"b{i}"] = hi.T @ g, g.sum(0)
        g = g @ P[f"W{i}"].T
        if i > 3:
            g = g * (hi > 0)
    g = _pool_bwd(g.reshape(p2.shape), arg2) * (a2 > 0)
    out["conv2_b"] = g.sum(axis=(0, 2, 3))
    g, out["conv2_W"] = _conv_bwd(g, P["conv2_W"], cols2, 0)
    g = _pool_bwd(g, arg1) * (a1 > 0)
    out["conv1_b"] = g.sum(axis=(0, 2, 3))
    _, out["conv1_W"] = _conv_bwd(g, P["conv1_W"], cols1, 2, need_dx=False)
    return [loss] + [out[name] for name in param_shapes("w9")]


def w10_value_and_grad(x, t, P, fwd_only=False):
    """Loss and gradients of W10 (order of param_shapes), by hand."""
    h, caches = x, []
    for i in range(1, W10["blocks"] + 1):
        p = f"b{i}_"
        z1, c1 = _conv_fwd(h, P[p + "conv1_W"], 1)
        y1, bn1 = _bn_fwd(z1, P[p + "bn1_weight"], P[p + "bn1_bias"])
        a1 = np.maximum(y1, 0)
        z2, c2 = _conv_fwd(a1, P[p + "conv2_W"], 1)
        y2, bn2 = _bn_fwd(z2, P[p + "bn2_weight"], P[p + "bn2_bias"])
        out = np.maximum(y2 + h, 0)
        caches.append((c1, bn1, a1, c2, bn2, out))
        h = out
    pooled = h.mean(axis=(2, 3))
    loss, g = _xent(pooled @ P["fc_W"] + P["fc_b"], t)
    if fwd_only:
        return [loss]
    grads = {"fc_W": pooled.T @ g, "fc_b": g.sum(0)}
    S = h.shape[2] * h.shape[3]
    gh = np.broadcast_to((g @ P["fc_W"].T)[:, :, None, None] / S, h.shape)
    for i in range(W10["blocks"], 0, -1):
        p = f"b{i}_"
        c1, bn1, a1, c2, bn2, out = caches[i - 1]
        gs = gh * (out > 0)                                           # through the final ReLU
        gy2, grads[p + "bn2_weight"], grads[p + "bn2_bias"] = _bn_bwd(gs, P[p + "bn2_weight"], bn2)
        ga1, grads[p + "conv2_W"] = _conv_bwd(gy2, P[p + "conv2_W"], c2, 1)
        gz1, grads[p + "bn1_weight"], grads[p + "bn1_bias"] = _bn_bwd(
            ga1 * (a1 > 0), P[p + "bn1_weight"], bn1)
        gx, grads[p + "conv1_W"] = _conv_bwd(gz1, P[p + "conv1_W"], c1, 1, need_dx=i > 1)
        if i > 1:
            gh = gs + gx                                              # residual + conv path
    return [loss] + [grads[name] for name in param_shapes("w10")]


def numpy_step(kind: str, data: dict, fwd_only: bool = False):
    fn = w9_value_and_grad if kind == "w9" else w10_value_and_grad
    x, t, P = data["inputs"]["x"], data["inputs"]["t"], data["params"]
    return lambda: fn(x, t, P, fwd_only)


# ---------------------------------------------------------------- adjit

def max_pool_2x2(aj, h, slices: bool = False):
    """2×2 max pool, stride 2: ``aj.max_pool2d``, or (``slices=True``, for comparison) the
    largest of the four strided slices, the same values and, but for ties, gradients."""
    if not slices:
        return aj.max_pool2d(h, 2)
    return aj.maximum(aj.maximum(h[:, :, 0::2, 0::2], h[:, :, 0::2, 1::2]),
                      aj.maximum(h[:, :, 1::2, 0::2], h[:, :, 1::2, 1::2]))


def _aj_bn(aj, x, gamma, beta):
    """Training-mode batch norm written with adjit ops (the formula of nn.BatchNorm)."""
    mu = aj.mean(x, axis=(0, 2, 3), keepdims=True)
    d = x - mu
    var = aj.mean(d * d, axis=(0, 2, 3), keepdims=True)
    C = gamma.shape[0]
    return d / aj.sqrt(var + EPS) * aj.reshape(gamma, (1, C, 1, 1)) \
        + aj.reshape(beta, (1, C, 1, 1))


def adjit_loss(aj, kind: str, dtype: str, size: int | None = None):
    """(loss, params) of the workload's adjit graph; inputs x (None, ...) and t.  ``size``
    replaces W10's 32×32 images (the tests use smaller ones)."""
    shape = input_shape(kind) if size is None else (W10["C"], size, size)
    x = aj.input("x", (None,) + shape, dtype=dtype)
    t = aj.input("t", (None, 10), dtype=dtype)
    P = {n: aj.param(n, s, dtype=dtype) for n, s in param_shapes(kind).items()}
    if kind == "w9":
        h = max_pool_2x2(aj, aj.relu(aj.conv2d(x, P["conv1_W"], P["conv1_b"], padding=2)))
        h = max_pool_2x2(aj, aj.relu(aj.conv2d(h, P["conv2_W"], P["conv2_b"])))
        h = aj.reshape(h, (None, 400))
        h = aj.relu(h @ P["W3"] + P["b3"])
        h = aj.relu(h @ P["W4"] + P["b4"])
        logits = h @ P["W5"] + P["b5"]
    else:
        h = x
        for i in range(1, W10["blocks"] + 1):
            p = f"b{i}_"
            z = aj.conv2d(h, P[p + "conv1_W"], padding=1)
            z = aj.relu(_aj_bn(aj, z, P[p + "bn1_weight"], P[p + "bn1_bias"]))
            z = aj.conv2d(z, P[p + "conv2_W"], padding=1)
            h = aj.relu(_aj_bn(aj, z, P[p + "bn2_weight"], P[p + "bn2_bias"]) + h)
        logits = aj.mean(h, axis=(2, 3)) @ P["fc_W"] + P["fc_b"]
    return aj.cross_entropy(logits, t), list(P.values())


# ---------------------------------------------------------------- PyTorch and JAX

def torch_loss(kind: str):
    """loss(params, x, labels) with torch.nn.functional."""
    import torch
    import torch.nn.functional as F
    if kind == "w9":
        def loss(params, x, t):
            c1W, c1b, c2W, c2b, W3, b3, W4, b4, W5, b5 = params
            h = F.max_pool2d(F.relu(F.conv2d(x, c1W, c1b, padding=2)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, c2W, c2b)), 2).flatten(1)
            h = F.relu(torch.addmm(b3, h, W3))
            h = F.relu(torch.addmm(b4, h, W4))
            return F.cross_entropy(torch.addmm(b5, h, W5), t)
        return loss

    def loss(params, x, t):
        h = x
        for i in range(W10["blocks"]):
            W1, g1, be1, W2, g2, be2 = params[6 * i:6 * i + 6]
            z = F.relu(F.batch_norm(F.conv2d(h, W1, padding=1), None, None, g1, be1,
                                    training=True, eps=EPS))
            z = F.batch_norm(F.conv2d(z, W2, padding=1), None, None, g2, be2,
                             training=True, eps=EPS)
            h = F.relu(z + h)
        return F.cross_entropy(torch.addmm(params[-1], h.mean(dim=(2, 3)), params[-2]), t)
    return loss


def jax_loss(kind: str):
    """loss(params, x, one-hot t) with lax.conv_general_dilated and lax.reduce_window."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, W, pad):
        return lax.conv_general_dilated(x, W, (1, 1), [(pad, pad), (pad, pad)],
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def xent(logits, t):
        return -jnp.sum(t * jax.nn.log_softmax(logits, axis=1)) / logits.shape[0]

    if kind == "w9":
        def loss(params, x, t):
            c1W, c1b, c2W, c2b, W3, b3, W4, b4, W5, b5 = params
            h = pool(jax.nn.relu(conv(x, c1W, 2) + c1b[:, None, None]))
            h = pool(jax.nn.relu(conv(h, c2W, 0) + c2b[:, None, None]))
            h = h.reshape(h.shape[0], -1)
            h = jax.nn.relu(h @ W3 + b3)
            h = jax.nn.relu(h @ W4 + b4)
            return xent(h @ W5 + b5, t)
        return loss

    def bn(x, g, b):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        return (x - mu) * lax.rsqrt(var + EPS) * g[:, None, None] + b[:, None, None]

    def loss(params, x, t):
        h = x
        for i in range(W10["blocks"]):
            W1, g1, be1, W2, g2, be2 = params[6 * i:6 * i + 6]
            z = jax.nn.relu(bn(conv(h, W1, 1), g1, be1))
            h = jax.nn.relu(bn(conv(z, W2, 1), g2, be2) + h)
        return xent(h.mean(axis=(2, 3)) @ params[-2] + params[-1], t)
    return loss


# ---------------------------------------------------------------- the machine's peak

def measured_peak(n: int = 2048, repeat: int = 10) -> float:
    """GFLOP/s of numpy's float32 GEMM (OpenBLAS) on n×n×n, best of ``repeat`` (the machine is shared), with the
    thread count the runner pinned (all cores by default): what "peak" means in the
    tables."""
    import time
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9
