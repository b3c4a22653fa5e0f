"""Run the reference workloads: adjit beside its peers, in one process.

    python benchmarks/run.py [--workloads W1,W3] [--repeat N] [--quick]
                             [--threads N] [--peers numpy,jax] [--json out.json]

Thread counts are pinned through the environment BEFORE numpy, torch or jax
is imported (hence the late imports below): ``--threads N`` (default: every CPU the process may use) gives adjit and
every peer N threads and pins the process to N CPUs (see threads.py).  The report's head
names the CPU, its ISA and the FMA peak and memory bandwidth measured on those N cores
(``adjit.machine_peaks()``); W4's target line gives adjit's share of that peak.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="", help="comma list, e.g. W1,W3 (default: all)")
    p.add_argument("--repeat", type=int, default=None,
                   help="independent timing passes; the table quotes medians over passes "
                        "(default 3, 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="short timing budget (smoke run)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for adjit and every peer; the process is pinned to that "
                        "many CPUs when it may use as many (default: every allowed CPU)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per implementation, all passes together "
                        "(default 1.5, 0.2 with --quick)")
    p.add_argument("--peers", default="",
                   help="only these entries: python,numpy,torch,compile,jax,interp,llvm")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--no-settle", action="store_true",
                   help="start each timing block right after the previous entry's, next to "
                        "any thread pool it left spinning (default: wait until the process "
                        "is idle; see timing.settle_threads)")
    p.add_argument("--torch-cache", action="store_true",
                   help="let torch.compile use its on-disk cache (default: a fresh, "
                        "temporary cache directory, so compile times are cold)")
    return p.parse_args(argv)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import threads  # noqa: E402  (no heavy imports: numpy etc. come after the settings)

args = parse_args()
args.threads = args.threads or threads.allowed_cpus()
THREAD_ENV, PINNED = threads.apply(args.threads)
if not args.torch_cache and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _inductor_dir = tempfile.mkdtemp(prefix="adjit-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_dir
    atexit.register(shutil.rmtree, _inductor_dir, ignore_errors=True)

import numpy as np  # noqa: E402

import peers  # noqa: E402
import timing  # noqa: E402
import report  # noqa: E402
from workloads import as_float64, make_data, select  # noqa: E402


def _factories():
    """(selector, factory) in table order; torch/jax/adjit imported here, lazily."""
    import models
    import peers_jax
    import peers_torch
    if peers_torch.torch is not None:
        peers_torch.torch.set_num_threads(args.threads)
        try:
            peers_torch.torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    fs = [("python", peers.make_python), ("numpy", peers.make_numpy),
          ("numpy", peers.make_numpy_fwd),
          ("torch", peers_torch.make_eager), ("compile", peers_torch.make_compiled),
          ("jax", peers_jax.make_jit)]
    for backend, sel in (("interp", "interp"), ("llvm", "llvm")):
        fs.append((sel, lambda wl, d, b=backend: models.make_adjit(wl, d, b)))
        fs.append((sel, lambda wl, d, b=backend: models.make_adjit(wl, d, b, fwd_only=True)))
    return fs, (peers_torch, peers_jax, models)


def run_workload(wl, factories, wanted, budget, repeat):
    data = make_data(wl)
    if wl.per_example:                       # W12: its own entries (pex_bench.py)
        import pex_bench
        factories = pex_bench.factories()
    ref = peers.reference(wl, as_float64(data))
    impls, skipped, failed = [], [], []
    if wl.kind == "w11":                 # Jacobian entries, not value-and-grad ones
        import jac_workloads
        factories = jac_workloads.factories()
    for sel, factory in factories:
        if wanted and sel not in wanted:
            continue
        if not args.no_settle:     # compile / first call, not the previous entry's threads
            timing.settle_threads()
        try:
            impl = factory(wl, data)
        except Exception as exc:  # noqa: BLE001 - Skip, or an entry that crashed while building
            msg = str(exc) if isinstance(exc, peers.Skip) else \
                f"setup raised {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            name = {"interp": "adjit interp", "llvm": "adjit", "compile": "torch.compile",
                    "torch": "torch eager", "jax": "jax jit"}.get(sel, sel)
            # entries that never apply stay silent; one line per entry family
            if "only for" not in msg and (name, msg) not in skipped:
                skipped.append((name, msg))
                print(f"  [{wl.key}] skip {name}: {msg}", flush=True)
            continue
        ok, why = timing.check(impl, ref, wl.rtol)
        print(f"  [{wl.key}] {impl.name}: {'ok' if ok else 'FAILED'} ({why})"
              + (f", first call/compile {impl.compile_s:.2f} s" if impl.compile_s else ""),
              flush=True)
        (impls if ok else failed).append(impl if ok else (impl.name, why))
    adjit_name = next((n for n in ("adjit", "adjit interp") if n in [i.name for i in impls]), None)
    passes = [timing.measure(impls, budget / repeat, settle=not args.no_settle)
              for _ in range(repeat)] if impls else []
    stats = timing.summarize(passes, adjit_name) if passes else {}
    rows = []
    for impl in impls:
        rows.append({"name": impl.name, "note": impl.note, "fwd_only": impl.fwd_only,
                     "is_adjit": impl.is_adjit, "compile_s": impl.compile_s,
                     "compile_warm_s": impl.compile_warm_s, **stats[impl.name]})
    return {"key": wl.key, "group": wl.group, "title": wl.title, "dtype": wl.dtype,
            "batch": wl.batch, "flops": wl.flops(), "fwd_flops": wl.forward_flops(),
            "rows": rows, "skipped": skipped, "failed": failed}


def header(mods) -> str:
    peers_torch, peers_jax, models = mods
    lines = [f"python {platform.python_version()} on {platform.machine()}, "
             f"{os.cpu_count()} logical CPUs; numpy {np.__version__}"]
    if peers_torch.torch is not None:
        t = peers_torch.torch
        lines.append(f"torch {t.__version__}: num_threads={t.get_num_threads()}, "
                     f"interop_threads={t.get_num_interop_threads()}")
    else:
        lines.append(f"torch unavailable: {peers_torch.available()}")
    if peers_jax.jax is not None:
        lines.append(f"jax {peers_jax.jax.__version__} ({peers_jax.jax.default_backend()})")
    else:
        lines.append(f"jax unavailable: {peers_jax.available()}")
    lines.append("adjit: " + (models.available() or "importable"))
    lines.append("load average at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
                 + f" (on {os.cpu_count()} CPUs; other processes compete for the cores)")
    lines.append("torch.compile cache: " + os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default"))
    lines.append("threads: " + PINNED + "; " + ", ".join(f"{k}={v!r}" for k, v in THREAD_ENV.items()))
    lines.append("timing blocks: " + ("back to back (--no-settle)" if args.no_settle else
                                      "each starts once the process is idle (settle)"))
    return "\n".join(lines)


MACHINE: dict = {}


def machine_line() -> str:
    """The CPU, its ISA and the FMA peak / bandwidth measured on the cores in use."""
    try:
        import adjit
        timing.settle_threads()
        p = adjit.machine_peaks()
    except Exception as exc:  # noqa: BLE001 - the report still runs without it
        return f"machine: peaks not measured ({type(exc).__name__}: {exc})"
    MACHINE.update(cpu=p.cpu, cores=p.cores, fma_f32=p.fma_f32, fma_f64=p.fma_f64,
                   bandwidth=p.bandwidth)
    return "machine: " + p.line()


def main():
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    budget = args.budget or (0.2 if quick else 1.5)
    wanted = {s.strip().lower() for s in args.peers.split(",") if s.strip()}
    wls = select(args.workloads.split(",") if args.workloads else None)
    factories, mods = _factories()
    head = header(mods) + "\n" + machine_line()
    print(head + f"\ntiming: {repeat} pass(es), {budget:g} s per implementation in all, "
          "blocks interleaved round-robin\n", flush=True)
    peak = None
    if any(wl.kind in ("w9", "w10") for wl in wls):
        import conv_workloads
        timing.settle_threads()
        peak = conv_workloads.measured_peak()
        print(f"measured peak: {peak:.1f} GFLOP/s (numpy float32 GEMM 2048^3, "
              f"{args.threads} threads, best of 10)\n", flush=True)
    results, t0 = [], time.perf_counter()
    for wl in wls:
        print(f"== {wl.key}: {wl.title}", flush=True)
        results.append(run_workload(wl, factories, wanted, budget, repeat))
        if wl.kind in ("w9", "w10"):
            results[-1]["peak"] = peak
    print()
    for res in results:
        print(report.table(res))
    print("## Targets (adjit = llvm backend when available, else the interpreter; "
          "value-and-grad / loss-only = time of the compiled gradient step over the loss-only one)\n")
    print(report.targets(results, MACHINE or None))
    print(f"total wall time {time.perf_counter() - t0:.0f} s; load average at end: "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"header": head, "repeat": repeat, "budget_s": budget, "peak": peak,
                       "machine": MACHINE, "results": results}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
