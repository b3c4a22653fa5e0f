"""Memory growth of repeated calls and compilations, measured in a child process.

``python memory_child.py MODE BACKEND N_RSS N_TRACED`` prints one JSON line with the
resident-set growth (bytes) over N_RSS repetitions after a warm-up, and the growth of
memory traced by tracemalloc (Python and numpy allocations still alive) over N_TRACED
further repetitions.  MODE is ``calls``, ``compiles``, ``batches`` (calls cycling
through many batch sizes) or ``optimizer`` (llvm compiles with the disk cache off).
"""
from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import tracemalloc

import numpy as np


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(step, n_rss: int, n_traced: int, warmup: int) -> dict:
    for i in range(warmup):
        step(i)
    gc.collect()
    r0 = rss()
    for i in range(n_rss):
        step(i)
    gc.collect()
    r1 = rss()
    tracemalloc.start()
    for i in range(min(n_traced, warmup)):       # tracemalloc's own tables settle first
        step(i)
    gc.collect()
    t0 = tracemalloc.get_traced_memory()[0]
    for i in range(n_traced):
        step(i)
    gc.collect()
    t1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"rss_growth": r1 - r0, "traced_growth": t1 - t0, "n_rss": n_rss,
            "n_traced": n_traced}


def main(mode: str, backend: str, n_rss: int, n_traced: int) -> None:
    os.environ["ADJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="adjit-mem-")
    import adjit as aj
    opts = {"opt_level": 1} if backend == "llvm" else {}
    if mode in ("calls", "batches"):
        x = aj.input("x", (None, 4))
        w = aj.param("w", (4,))
        L = aj.sum(aj.tanh(x * w) * 2.0 + 1.0)
        f = aj.compile([L, aj.grad(L, w)], backend=backend, **opts)
        W = np.linspace(-1, 1, 4)
        if mode == "calls":
            X = np.ones((2, 4))
            step = lambda i: f(x=X, w=W)                                    # noqa: E731
        else:
            Xs = [np.ones((b, 4)) for b in range(1, 301)]
            step = lambda i: f(x=Xs[i % len(Xs)], w=W)                      # noqa: E731
        warmup = 20000 if mode == "calls" else 300
    else:
        X, W0 = np.ones((3, 4)), np.ones((4, 2))
        cache = mode != "optimizer"

        def step(i):
            x = aj.input("x", (None, 4))
            W = aj.param("W", (4, 2))
            L = aj.sum(aj.sigmoid(x @ W) * 3.0)
            o = {**opts, "cache": cache} if backend == "llvm" else opts
            aj.compile([L, aj.grad(L, W)], backend=backend, **o)(x=X, W=W0)
        warmup = 50
    print(json.dumps({"mode": mode, "backend": backend, **measure(step, n_rss, n_traced, warmup)}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
