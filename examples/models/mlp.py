"""The lecture's two-layer MLP: 784 → 128 sigmoid → 10 linear, squared error averaged over the batch.

    z = x W1 + b1,   h = σ(z),   y = h W2 + b2,   L = ½ Σ (y − t)² / B

Defines a PyTorch peer for ``adjit bench`` (used only when torch is installed).
"""
import numpy as np

import adjit as aj

D, H, K = 784, 128, 10
x = aj.input("x", (None, D), dtype="float32")      # None: the batch size, bound at call time
t = aj.input("t", (None, K), dtype="float32")
W1 = aj.param("W1", (D, H), dtype="float32")
b1 = aj.param("b1", (H,), dtype="float32")
W2 = aj.param("W2", (H, K), dtype="float32")
b2 = aj.param("b2", (K,), dtype="float32")

z = x @ W1 + b1
h = aj.sigmoid(z)
y = h @ W2 + b2
L = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))

loss = L
wrt = [W1, b1, W2, b2]

_rng = np.random.default_rng(0)
_B = 64
example = {
    "x": _rng.standard_normal((_B, D)).astype("float32"),
    "t": np.eye(K, dtype="float32")[_rng.integers(0, K, _B)],
    "W1": (_rng.standard_normal((D, H)) / np.sqrt(D)).astype("float32"),
    "b1": np.zeros(H, "float32"),
    "W2": (_rng.standard_normal((H, K)) / np.sqrt(H)).astype("float32"),
    "b2": np.zeros(K, "float32"),
}


def torch_peer(values):
    """PyTorch eager forward + backward of the same loss (``adjit bench`` times the closure)."""
    import torch   # ImportError here tells adjit bench that the peer is not installed

    data = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in values.items()}
    params = [data[k].clone().requires_grad_(True) for k in ("W1", "b1", "W2", "b2")]

    def step():
        for p in params:
            p.grad = None
        hh = torch.sigmoid(data["x"] @ params[0] + params[1])
        yy = hh @ params[2] + params[3]
        loss_ = 0.5 * ((yy - data["t"]) ** 2).sum(dim=1).mean()
        loss_.backward()
        return [loss_.detach().numpy()] + [p.grad.numpy() for p in params]

    return step


peers = {"torch": torch_peer}
