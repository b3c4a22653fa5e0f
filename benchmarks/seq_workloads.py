"""W7 (embedding + 4-head self-attention + mean-pooled classifier) and W8 (Elman RNN):
sizes, data, FLOP counts and the hand-written numpy forward + backward (the reference every
entry is checked against, in float64, and the "numpy" entry).

Parameter order (and names, shared with adjit's layers, see models.build_seq):
  W7: emb_weight (V, D), attn_Wq, attn_Wk, attn_Wv, attn_Wo (D, D), Wout (D, C), bout (C,)
      (projections without biases: "q, k, v, out projections 64×64"; a key bias would have
      a gradient of exactly 0 in exact arithmetic, rounding noise in float32, which no
      scaled error check can judge)
  W8: rnn_Wx (I, H), rnn_Wh (H, H), rnn_b (H,), Wout (H, C), bout (C,)
Inputs: W7 x = token ids (B, T) int64, W8 x = (B, T, I); t = one-hot targets (B, C).
"""
from __future__ import annotations

import numpy as np

W7 = dict(vocab=10_000, dim=64, heads=4, T=64, B=32, classes=10)
W8 = dict(input=32, hidden=128, T=32, B=64, classes=10)


def param_shapes(kind: str) -> dict[str, tuple]:
    if kind == "w7":
        D, V, C = W7["dim"], W7["vocab"], W7["classes"]
        out = {"emb_weight": (V, D)}
        for k in "qkvo":
            out[f"attn_W{k}"] = (D, D)
        out.update(Wout=(D, C), bout=(C,))
        return out
    I, H, C = W8["input"], W8["hidden"], W8["classes"]
    return {"rnn_Wx": (I, H), "rnn_Wh": (H, H), "rnn_b": (H,), "Wout": (H, C), "bout": (C,)}


def make_data(kind: str, seed: int, dtype: str) -> dict:
    """Weights N(0, 1)/√fan_in (the embedding table N(0, 1)), biases 0.1·N(0, 1), one-hot
    targets; drawn in float64, then cast."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    cfg = W7 if kind == "w7" else W8
    B, T, C = cfg["B"], cfg["T"], cfg["classes"]
    if kind == "w7":
        x = rng.integers(0, W7["vocab"], size=(B, T)).astype(np.int64)
    else:
        x = rng.standard_normal((B, T, W8["input"])).astype(dt)
    params = {}
    for name, shape in param_shapes(kind).items():
        if len(shape) == 1:
            params[name] = (0.1 * rng.standard_normal(shape)).astype(dt)
        elif name == "emb_weight":
            params[name] = rng.standard_normal(shape).astype(dt)
        else:
            params[name] = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(dt)
    labels = rng.integers(0, C, size=B)
    t = np.zeros((B, C))
    t[np.arange(B), labels] = 1.0
    return {"inputs": {"x": x, "t": t.astype(dt)}, "params": params, "dirs": {}, "consts": {},
            "labels": labels}


def flops(kind: str) -> tuple[float, float]:
    """(value-and-grad, forward) matmul FLOPs, 2 per multiply-add.  Value-and-grad counts
    the forward products, dW of every weight and dX of every product whose input needs a
    gradient (W7: all of them, down to the embedding; W8: not the x_t Wx of the data)."""
    if kind == "w7":
        B, T, D, H, C = W7["B"], W7["T"], W7["dim"], W7["heads"], W7["classes"]
        proj = 4 * 2.0 * B * T * D * D                   # q, k, v, out
        attn = 2 * 2.0 * B * H * T * T * (D // H)        # q kᵀ and p v
        head = 2.0 * B * D * C
        return 3 * (proj + attn + head), proj + attn + head
    B, T, I, H, C = W8["B"], W8["T"], W8["input"], W8["hidden"], W8["classes"]
    xw, hw, head = 2.0 * B * T * I * H, 2.0 * B * (T - 1) * H * H, 2.0 * B * H * C
    return 2 * xw + 3 * hw + 3 * head, xw + hw + head   # h0 = 0: T − 1 recurrent products


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _xent(logits, t):
    """Mean softmax cross-entropy with one-hot t, and d loss / d logits."""
    B = logits.shape[0]
    m = logits.max(axis=1, keepdims=True)
    ls = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -(t * ls).sum() / B, (np.exp(ls) - t) / B


def w7_value_and_grad(x, t, P, fwd_only=False):
    """Loss and gradients of W7 (order of param_shapes), by hand."""
    H = W7["heads"]
    E = P["emb_weight"][x]                                           # (B, T, D)
    B, T, D = E.shape
    dh = D // H
    proj = {k: E @ P[f"attn_W{k}"] for k in "qkv"}
    q, k, v = (proj[c].reshape(B, T, H, dh).transpose(0, 2, 1, 3) for c in "qkv")
    scale = 1.0 / np.sqrt(dh)
    p = _softmax((q @ k.transpose(0, 1, 3, 2)) * scale)              # (B, H, T, T)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    hres = E + o @ P["attn_Wo"]
    pooled = hres.mean(axis=1)
    loss, dlogits = _xent(pooled @ P["Wout"] + P["bout"], t)
    if fwd_only:
        return [loss]
    g = {"Wout": pooled.T @ dlogits, "bout": dlogits.sum(0)}
    dh_res = np.broadcast_to((dlogits @ P["Wout"].T)[:, None, :] / T, (B, T, D))
    g["attn_Wo"] = o.reshape(-1, D).T @ dh_res.reshape(-1, D)
    do = (dh_res @ P["attn_Wo"].T).reshape(B, T, H, dh).transpose(0, 2, 1, 3)
    dp = do @ v.transpose(0, 1, 3, 2)
    dv = p.transpose(0, 1, 3, 2) @ do
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
    dE = np.array(dh_res)
    for c, dz in (("q", dq), ("k", dk), ("v", dv)):
        dz = dz.transpose(0, 2, 1, 3).reshape(B, T, D)
        g[f"attn_W{c}"] = E.reshape(-1, D).T @ dz.reshape(-1, D)
        dE += dz @ P[f"attn_W{c}"].T
    demb = np.zeros_like(P["emb_weight"])
    np.add.at(demb, x.reshape(-1), dE.reshape(-1, D))
    g["emb_weight"] = demb
    return [loss] + [g[name] for name in param_shapes("w7")]


def w8_value_and_grad(x, t, P, fwd_only=False):
    """Loss and gradients of W8 (order of param_shapes): backpropagation through time."""
    B, T, _ = x.shape
    xw = x @ P["rnn_Wx"] + P["rnn_b"]
    hs, h = [], None
    for s in range(T):
        h = np.tanh(xw[:, s] if h is None else xw[:, s] + h @ P["rnn_Wh"])
        hs.append(h)
    loss, dlogits = _xent(h @ P["Wout"] + P["bout"], t)
    if fwd_only:
        return [loss]
    g = {"Wout": h.T @ dlogits, "bout": dlogits.sum(0)}
    dWx, dWh, db = (np.zeros_like(P[k]) for k in ("rnn_Wx", "rnn_Wh", "rnn_b"))
    dh = dlogits @ P["Wout"].T
    for s in range(T - 1, -1, -1):
        dz = dh * (1.0 - hs[s] ** 2)
        dWx += x[:, s].T @ dz
        db += dz.sum(0)
        if s > 0:
            dWh += hs[s - 1].T @ dz
            dh = dz @ P["rnn_Wh"].T
    g.update(rnn_Wx=dWx, rnn_Wh=dWh, rnn_b=db)
    return [loss] + [g[name] for name in param_shapes("w8")]


def numpy_step(kind: str, data: dict, fwd_only: bool = False):
    fn = w7_value_and_grad if kind == "w7" else w8_value_and_grad
    x, t, P = data["inputs"]["x"], data["inputs"]["t"], data["params"]
    return lambda: fn(x, t, P, fwd_only)
