"""W6 (HVP of W3's loss) two ways: today's reverse-over-reverse and aj.hvp's
forward-over-reverse.  Prints node counts (traced, after the passes, kernels), cold compile
time and the median call time of each; checks they agree.

    python benchmarks/hvp_compare.py [--repeat 200] [--threads 2]

W6's benchmark definition (benchmarks/models.py: build) is not changed by this script.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

import adjit as aj  # noqa: E402
from workloads import WORKLOADS, make_data  # noqa: E402
from models import _shapes, feeds, mlp  # noqa: E402


def build(wl, mode: str):
    dt = wl.dtype
    x, t, params, h = mlp(wl)
    loss = aj.cross_entropy(h, t)
    dirs = [aj.input(f"v_{n}", s, dtype=dt) for n, s in zip(wl.param_names(), _shapes(wl))]
    if mode == "forward-over-reverse":
        return [loss] + aj.hvp(loss, params, dirs)
    grads = aj.grad(loss, params)
    dot = aj.sum(grads[0] * dirs[0])
    for g, v in zip(grads[1:], dirs[1:]):
        dot = dot + aj.sum(g * v)
    return [loss] + aj.grad(dot, params)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=300)
    p.add_argument("--backend", default="llvm")
    args = p.parse_args()
    wl = next(w for w in WORKLOADS if w.key == "W6")
    data = make_data(wl)
    kw = feeds(data)
    results = {}
    aj.compile(build(wl, "reverse-over-reverse"), backend=args.backend, cache=False)  # warm-up
    for mode in ("reverse-over-reverse", "forward-over-reverse"):
        outs = build(wl, mode)
        t0 = time.perf_counter()
        f = aj.compile(outs, backend=args.backend, cache=False)
        cold = time.perf_counter() - t0
        traced = len(f.stages[0].order())
        final = f.graph.op_counts()
        for _ in range(20):
            f(**kw)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            f(**kw)
            times.append(time.perf_counter() - t0)
        results[mode] = f(**kw)
        print(f"{mode:22s} traced nodes {traced:4d}  after passes {sum(final.values()):4d} "
              f"(matmul {final.get('matmul', 0)}, matmul_sum {final.get('matmul_sum', 0)}, "
              f"fused {final.get('fused', 0)}, sum {final.get('sum', 0)})  "
              f"compile {cold * 1e3:7.1f} ms  call median {statistics.median(times) * 1e6:8.1f} us"
              f"  min {min(times) * 1e6:8.1f} us")
    a, b = results.values()
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-5)
    print("the two agree (rtol 2e-4, float32)")


if __name__ == "__main__":
    main()
