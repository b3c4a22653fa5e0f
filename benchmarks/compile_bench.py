"""Cold compile time per workload, split by stage (no disk cache anywhere).

    python benchmarks/compile_bench.py                       # W1-W6, median of 5
    python benchmarks/compile_bench.py --workloads W3,W5 --runs 7 --json out.json

Per workload and run, in one process after imports and a warm-up compile per dtype, which
builds the GEMM library and the thread pool (once per process; normally loaded from the
disk cache in milliseconds, built from scratch they take ~1.1 s for float32 and ~1.0 s
for float64, once per machine):

* ``total``     ``aj.compile(outs, cache=False)``: the number users see;
* ``passes``    the pass pipeline (fold, cse, fuse: sympy and the Graph rebuilds);
* ``lower``     Plan + lowering to LLVM IR text (``build``: llvmlite.ir objects,
  ``text``: printing them), as :class:`Lowering` reports it;
* ``llvm``      wall time of :func:`compile_ir` (parse, optimize, codegen, link);
  ``parse`` / ``optimize`` / ``codegen`` are the sums over the modules compiled (they run
  in parallel threads, so they can add up to more than ``llvm``), ``cpu`` the CPU time of
  those threads (the work, whatever else runs on the machine); ``modules`` and
  ``kernels`` say how many modules and kernel functions were compiled.
* ``min``       the fastest ``total``.

The split stages are timed on a fresh graph each run, separately from ``total``.  Times
are medians over ``--runs`` (seconds); sympy's cache is cleared before each run.  LLVM
work runs on ``ADJIT_COMPILE_THREADS`` threads (default: the CPUs this process may use),
so a busy machine shows in ``llvm`` far more than in ``cpu``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import sympy

sys.path.insert(0, os.path.dirname(__file__))

import adjit as aj  # noqa: E402
from adjit.backends.lowering import target  # noqa: E402
from adjit.backends.llvm.codegen import Lowering  # noqa: E402
from adjit.backends.lowering.plan import Plan  # noqa: E402
from adjit.backends.llvm.runtime import DATA_OFFSET  # noqa: E402
from adjit.ir import Graph  # noqa: E402
from adjit.passes import PIPELINE, run_pipeline  # noqa: E402
from models import build  # noqa: E402
from workloads import make_data, select  # noqa: E402

COLUMNS = ("total", "min", "passes", "lower", "build", "text", "llvm", "parse", "optimize",
           "codegen", "cpu")


def split_once(wl, lam) -> dict:
    """One cold compile, stage by stage, on the same path as aj.compile's llvm backend."""
    outs = build(wl, lam)
    t0 = time.perf_counter()
    graph = run_pipeline(Graph(outs, "traced"), PIPELINE)[-1]
    t1 = time.perf_counter()
    lw = Lowering(Plan(graph), DATA_OFFSET)
    ir_text = lw.lower()
    t2 = time.perf_counter()
    jit = target.compile_ir(ir_text, opt_level=2, cache=False, name="adjit")
    t3 = time.perf_counter()
    row = {"passes": t1 - t0, "lower": t2 - t1, "llvm": t3 - t2}
    lt = getattr(lw, "timings", None) or {}
    row["build"], row["text"] = lt.get("build", float("nan")), lt.get("text", float("nan"))
    jt = getattr(jit, "timings", None) or {}
    for k in ("parse", "optimize", "codegen", "cpu"):
        row[k] = jt.get(k, float("nan"))
    row["modules"] = jt.get("modules", 1)
    row["kernels"] = lw.n_kernels
    return row


def total_once(wl, lam) -> float:
    outs = build(wl, lam)
    t0 = time.perf_counter()
    aj.compile(outs, cache=False)
    return time.perf_counter() - t0


def fresh() -> None:
    """Forget what an earlier compile left in process-wide caches (sympy's), so every run
    is a first compile of its model."""
    sympy.core.cache.clear_cache()
    gc.collect()


def measure(wl, runs: int) -> dict:
    lam = make_data(wl)["consts"].get("lam")
    totals, rows = [], []
    for _ in range(runs):
        fresh()
        totals.append(total_once(wl, lam))
        fresh()
        rows.append(split_once(wl, lam))
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out["total"] = statistics.median(totals)
    out["min"] = min(totals)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default=None, help="comma-separated keys, e.g. W3,W5")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    os.environ["ADJIT_CACHE"] = "0"          # no object or compiled-function cache
    wls = select(args.workloads.split(",") if args.workloads else None)
    for wl in {w.dtype: w for w in select(None) if not w.scalar}.values():
        total_once(wl, None)                 # warm-up: GEMM library per dtype, pool, imports
    results = {}
    print(f"{'workload':9}" + "".join(f"{c:>9}" for c in COLUMNS) + "  modules kernels")
    for wl in wls:
        r = results[wl.key] = measure(wl, args.runs)
        print(f"{wl.key:9}" + "".join(f"{r[c]:9.3f}" for c in COLUMNS)
              + f"  {r['modules']:7.0f} {r['kernels']:7.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "seconds": results}, f, indent=1)


if __name__ == "__main__":
    main()
