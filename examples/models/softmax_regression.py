"""Softmax regression: 64 features (an 8×8 digit image) → 10 classes, mean cross-entropy.

    logits = x W + b,   L = mean over the batch of −log softmax(logits)[label]

``aj.cross_entropy`` is a composite of primitives (a max-shifted log-softmax), so its
backward equations are built from those primitives' rules.
"""
import numpy as np

import adjit as aj

D, K = 64, 10
x = aj.input("x", (None, D))
labels = aj.input("labels", (None,), dtype="int64")
W = aj.param("W", (D, K))
b = aj.param("b", (K,))

logits = x @ W + b
L = aj.cross_entropy(logits, labels)

loss = L
wrt = [W, b]

_rng = np.random.default_rng(1)
_B = 32
example = {
    "x": _rng.standard_normal((_B, D)),
    "labels": _rng.integers(0, K, _B),
    "W": _rng.standard_normal((D, K)) / np.sqrt(D),
    "b": np.zeros(K),
}
