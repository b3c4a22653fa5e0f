"""Single-head attention scores with batched matmuls: softmax(q kᵀ/√D) v, forward and
backward (gradients of q, k, v), on the llvm backend against numpy written by hand.

    PYTHONPATH=src python benchmarks/attention_bench.py [B T D]
"""
from __future__ import annotations

import sys
import time

import numpy as np

import adjit as aj


def model(T, D, dtype):
    q, k, v = (aj.input(n, (None, T, D), dtype) for n in "qkv")
    ct = aj.input("ct", (None, T, D), dtype)
    s = (q @ aj.transpose(k, (0, 2, 1))) * (1.0 / np.sqrt(D))
    out = aj.softmax(s, axis=-1) @ v
    loss = aj.sum(out * ct)
    return [out] + aj.grad(loss, [q, k, v])


def numpy_attention(q, k, v, ct):
    D = q.shape[-1]
    s = q @ k.transpose(0, 2, 1) / np.sqrt(D)
    e = np.exp(s - s.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    out = p @ v
    gp = ct @ v.transpose(0, 2, 1)
    gv = p.transpose(0, 2, 1) @ ct
    gs = p * (gp - (gp * p).sum(-1, keepdims=True)) / np.sqrt(D)
    return out, gs @ k, gs.transpose(0, 2, 1) @ q, gv


def best(fn, reps=30):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, float(np.median(times)) * 1e3


def main(B=32, T=64, D=64):
    for dtype in ("float32", "float64"):
        rng = np.random.default_rng(0)
        args = {n: rng.standard_normal((B, T, D)).astype(dtype) for n in ("q", "k", "v", "ct")}
        f = aj.compile(model(T, D, dtype), backend="llvm")
        got, want = f(**args), numpy_attention(*args.values())
        tol = 1e-4 if dtype == "float32" else 1e-10
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        lo, med = best(lambda: f(**args))
        nlo, nmed = best(lambda: numpy_attention(*args.values()))
        print(f"{dtype}: B={B} T={T} D={D} forward+backward  adjit llvm {lo:.2f} ms "
              f"(median {med:.2f})   numpy {nlo:.2f} ms (median {nmed:.2f})")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
