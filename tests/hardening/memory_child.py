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


def measure(step, n_rss: int, n_traced: int, warmup: int, warm_index=None) -> dict:
    """Warm up, then RSS over ``n_rss`` steps and traced memory over ``n_traced`` more.
    ``warm_index`` fixes the step index during warm-up (else the warm-up walks it)."""
    for i in range(warmup):
        step(i if warm_index is None else warm_index)
    gc.collect()
    r0 = rss()
    for i in range(n_rss):
        step(i)
    gc.collect()
    r1 = rss()
    tracemalloc.start()
    for i in range(min(n_traced, warmup)):       # tracemalloc's own tables settle first
        step(i if warm_index is None else warm_index)
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
    warm_index = None
    if mode in ("calls", "batches"):
        x = aj.input("x", (None, 4))
        w = aj.param("w", (4,))
        L = aj.sum(aj.tanh(x * w) * 2.0 + 1.0)
        f = aj.compile([L, aj.grad(L, w)], backend=backend, **opts)
        W = np.linspace(-1, 1, 4)
        if mode == "calls":
            X = np.ones((2, 4))
            step = lambda i: f(x=X, w=W)                                    # noqa: E731
            warmup = 20000 if backend == "llvm" else 5000
        else:   # every call a batch size not seen before (up to 1000 of them)
            Xs = [np.ones((b, 4)) for b in range(1, 1001)]
            step = lambda i: f(x=Xs[i % len(Xs)], w=W)                      # noqa: E731
            warmup, warm_index = 100, 0
    else:
        cache = mode != "optimizer"

        def step(i):
            x = aj.input("x", (None, 4))
            w = aj.param("w", (4,))
            o = {**opts, "cache": cache} if backend == "llvm" else opts
            aj.compile(aj.sum(x * w + 1.0), backend=backend, **o)(x=X, w=W)
        X, W = np.ones((3, 4)), np.ones(4)
        warmup = 200 if cache else 10     # allocator pools and caches fill first
    rec = measure(step, n_rss, n_traced, warmup, warm_index)
    print(json.dumps({"mode": mode, "backend": backend, **rec}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
