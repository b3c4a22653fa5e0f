"""The lecture's two-layer MLP: declare it, differentiate it, compile it, check it.

Run:  python examples/mlp.py
"""
import time

import numpy as np

import adjit as aj

B, D, H, K = 64, 784, 128, 10
x = aj.input("x", (None, D), dtype="float32")      # None: the batch size, bound at call time
t = aj.input("t", (None, K), dtype="float32")
W1, b1 = aj.param("W1", (D, H), dtype="float32"), aj.param("b1", (H,), dtype="float32")
W2, b2 = aj.param("W2", (H, K), dtype="float32"), aj.param("b2", (K,), dtype="float32")

h = aj.sigmoid(x @ W1 + b1)
y = h @ W2 + b2
loss = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))
grads = aj.grad(loss, [W1, b1, W2, b2])             # graph nodes, not numbers

rng = np.random.default_rng(0)
values = dict(x=rng.standard_normal((B, D)).astype("float32"),
              t=np.eye(K, dtype="float32")[rng.integers(0, K, B)],
              W1=(rng.standard_normal((D, H)) / np.sqrt(D)).astype("float32"), b1=np.zeros(H, "float32"),
              W2=(rng.standard_normal((H, K)) / np.sqrt(H)).astype("float32"), b2=np.zeros(K, "float32"))

interp = aj.compile([loss] + grads, backend="interp")
t0 = time.perf_counter()
native = aj.compile([loss] + grads)                  # backend="llvm" is the default
print(f"compiled in {time.perf_counter() - t0:.3f} s ({native.cache_info})")
print("simplification:\n" + native.report())

L, *g = native(**values)
Li, *gi = interp(**values)
print(f"loss {float(L):.6f} (interpreter {float(Li):.6f})")
print("max |llvm - interp| per gradient:", [float(np.max(np.abs(a - b))) for a, b in zip(g, gi)])

small = {k: v for k, v in values.items()}
print(aj.check_grads(loss, [W1, b1, W2, b2], small))


def per_call(f, n):
    f(**values)
    t0 = time.perf_counter()
    for _ in range(n):
        f(**values)
    return (time.perf_counter() - t0) / n * 1e6


print(f"per call: compiled {per_call(native, 200):.0f} µs, interpreted {per_call(interp, 20):.0f} µs")
