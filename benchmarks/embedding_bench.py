"""An embedding's backward: the scatter-add of B·T rows into a (vocab, dim) gradient.

    python benchmarks/embedding_bench.py                 # vocab 10k and 50k, dim 64, 2048 ids

The adds are O(B·T·dim); zeroing the dense (vocab, dim) gradient is the rest. Prints the
time per call (min of repeats) and the CPU.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import adjit as aj
from adjit.backends.lowering.target import host_info


def bench(V: int, D: int, B: int, T: int, repeat: int = 50) -> float:
    E = aj.param("E", (V, D), "float32")
    ids = aj.input("ids", (None, T), "int64")
    u = aj.input("u", (None, T, D), "float32")
    f = aj.compile(aj.grad(aj.sum(aj.take(E, ids, axis=0) * u), E))
    rng = np.random.default_rng(0)
    args = {"E": np.zeros((V, D), "float32"), "ids": rng.integers(0, V, size=(B, T)),
            "u": rng.standard_normal((B, T, D)).astype("float32")}
    f(**args)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(**args)
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default="10000,50000")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=64)
    a = ap.parse_args(argv)
    print(f"# CPU {host_info()['cpu']}, {os.cpu_count()} CPUs, float32")
    for V in map(int, a.vocab.split(",")):
        us = bench(V, a.dim, a.batch, a.length)
        print(f"vocab {V:>7} x dim {a.dim}, {a.batch * a.length} ids: {us:8.1f} µs per call")


if __name__ == "__main__":
    main()
