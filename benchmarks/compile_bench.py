"""Compile time: big constants, long elementwise chains, W1-W6 beside JAX's first call.

    python benchmarks/compile_bench.py                        # every section
    python benchmarks/compile_bench.py --sections const,chain --chains 250,1000
    python benchmarks/compile_bench.py --sections workloads --workloads W1,W3 --runs 7
    python benchmarks/compile_bench.py --sections split       # W1-W6 stage by stage

Sections (seconds, wall; medians over ``--runs`` unless said otherwise):

* ``const``: ``aj.compile(x * aj.const(c) + 1)`` with a float32 constant of 10^4, 10^5 and
  10^6 elements (target: 10^6 under 0.3 s).
* ``chain``: an elementwise chain of 250 ... 5,000 ops (see ``compile_cases.py``), forward
  only and with ``aj.grad`` of ``sum(y*y)``: graph construction (with grad) and
  ``aj.compile`` (cache off), one run each (target: 5,000 ops under 10 s).
* ``workloads``: W1-W6 built (graph + aj.grad) and compiled with the cache off -- ``cold``
  in this process after a warm-up compile (the llvm backend imported, the GEMM library
  loaded; ``cpu``: the CPU time of all the process's threads, what a busy machine does
  not inflate), ``fresh`` as the first compile of a new process (imports done) --, and
  ``cached`` (served by the compiled-function cache, in this process and in a new one),
  with JAX's first call of ``jit(value_and_grad)`` (trace, compile, run) measured the same
  two ways when jax is importable (targets: cold <= JAX, cached <= 20 ms).
* ``split``: W1-W6's cold compile stage by stage: ``passes`` (fold, cse, fuse),
  ``lower`` (plan + LLVM IR text) and ``llvm`` (parse, optimize, codegen, link; ``cpu``:
  CPU time of the compile threads).

Everything runs with a fresh ``ADJIT_CACHE_DIR`` (deleted at exit) unless ``--cache-dir``
is given; its first compile builds the GEMM library (about 1 s per dtype, once per
machine), before any clock starts.  Times on a shared machine vary by tens of percent from
run to run: read the minimum beside the median.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compile_cases as C  # noqa: E402

SECTIONS = ("const", "chain", "workloads", "split")


def _med(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs)) if xs else (float("nan"), float("nan"))


def _ms(x: float) -> str:
    return f"{x * 1e3:8.1f}" if x == x else "       -"


def run_const(args, out):
    print("\n## big constants (float32, x * c + 1, aj.compile cache off)")
    print(f"{'elements':>10} {'median s':>9} {'min s':>7}")
    for n in (10_000, 100_000, 1_000_000):
        runs = [C.const_compile(n) for _ in range(max(1, args.runs if n < 1_000_000 else 3))]
        med, lo = _med(runs)
        out["const"][n] = {"median": med, "min": lo}
        print(f"{n:>10,} {med:9.3f} {lo:7.3f}", flush=True)


def run_chain(args, out):
    print("\n## elementwise chains (aj.compile cache off; one run each)")
    print(f"{'ops':>6} {'mode':>5} {'graph s':>8} {'compile s':>10} {'ms/op':>6}")
    for n in [int(v) for v in args.chains.split(",")]:
        for grad in (False, True):
            g, c = C.chain_compile(n, grad)
            out["chain"][f"{n}{'+grad' if grad else ''}"] = {"graph": g, "compile": c}
            print(f"{n:>6} {'grad' if grad else 'fwd':>5} {g:8.3f} {c:10.3f} "
                  f"{(g + c) / n * 1e3:6.2f}", flush=True)


def run_workloads(args, out, wls):
    print("\n## W1-W6: compile (graph + grad + aj.compile) and JAX's first call, ms")
    print("  cold/cached: in this process (median, min); fresh: the first compile of a new "
          "process")
    C.warm_adjit()
    jax_ok = _jax_importable()
    if jax_ok:
        C.warm_jax()
    print(f"{'workload':9} {'cold':>8} {'(min)':>8} {'cpu':>8} {'fresh':>8} {'cached':>8}"
          f" {'fresh':>8} {'JAX 1st':>8} {'fresh':>8}  cold/JAX")
    for wl in wls:
        pairs = [C.adjit_compile(wl, cache=False, cpu=True) for _ in range(args.runs)]
        cold, cpu = [p[0] for p in pairs], statistics.median(p[1] for p in pairs)
        C.adjit_compile(wl, cache=True)                    # populates the cache
        cached = [C.adjit_compile(wl, cache=True) for _ in range(args.runs)]
        fresh_cold = C.in_fresh_process(wl.key, "cold")
        fresh_cached = C.in_fresh_process(wl.key, "cached")
        jx = [C.jax_first_call(wl) for _ in range(args.runs)] if jax_ok else []
        fresh_jax = C.in_fresh_process(wl.key, "jax") if jax_ok else None
        (cm, cl), (km, _), (jm, _) = _med(cold), _med(cached), _med(jx)
        nan = float("nan")
        r = out["workloads"][wl.key] = {
            "cold": cm, "cold_min": cl, "cold_cpu": cpu, "cold_fresh": fresh_cold, "cached": km,
            "cached_fresh": fresh_cached, "jax": jm if jx else None, "jax_fresh": fresh_jax}
        ratio = f"{cm / jm:6.2f}" if jx and jm == jm else "     -"
        print(f"{wl.key:9}{_ms(cm)} {_ms(cl)} {_ms(cpu)} {_ms(fresh_cold or nan)} {_ms(km)} "
              f"{_ms(fresh_cached or nan)} {_ms(jm if jx else nan)} {_ms(fresh_jax or nan)}"
              f"  {ratio}", flush=True)
        out["workloads"][wl.key] = r


def _jax_importable() -> bool:
    try:
        import peers_jax
        return not peers_jax.available()
    except Exception:  # noqa: BLE001
        return False


def run_split(args, out, wls):
    from compile_split import split_row
    print("\n## W1-W6 cold compile by stage (seconds, medians)")
    cols = ("passes", "lower", "build", "text", "llvm", "parse", "optimize", "codegen", "cpu")
    print(f"{'workload':9}" + "".join(f"{c:>9}" for c in cols) + "  modules kernels")
    C.warm_adjit()
    for wl in wls:
        rows = [split_row(wl) for _ in range(args.runs)]
        r = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
        out["split"][wl.key] = r
        print(f"{wl.key:9}" + "".join(f"{r[c]:9.3f}" for c in cols)
              + f"  {r['modules']:7.0f} {r['kernels']:7.0f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6")
    ap.add_argument("--chains", default="250,1000,2000,5000", help="chain lengths (ops)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache-dir", default=None, help="use this ADJIT_CACHE_DIR (kept)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--child", nargs=2, metavar=("KEY", "WHAT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        C.child(*args.child)
        return
    if args.cache_dir:
        os.environ["ADJIT_CACHE_DIR"] = args.cache_dir
    else:
        d = os.environ["ADJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="adjit-compile-bench-")
        atexit.register(shutil.rmtree, d, ignore_errors=True)
    import adjit  # noqa: F401
    from adjit.backends.lowering.target.description import describe
    from workloads import select
    print(f"# adjit compile times -- {describe().summary()}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}"
          + (", PYTHONDONTWRITEBYTECODE set (fresh processes compile adjit's sources)"
             if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""))
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    out = {s: {} for s in SECTIONS}
    wls = select(args.workloads.split(","))
    for s in sections:
        if s == "const":
            run_const(args, out)
        elif s == "chain":
            run_chain(args, out)
        elif s == "workloads":
            run_workloads(args, out, wls)
        elif s == "split":
            run_split(args, out, wls)
        else:
            raise SystemExit(f"unknown section {s!r} (one of {', '.join(SECTIONS)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
