"""Where a workload's native call spends its time, step by step.

    python benchmarks/profile_steps.py                  # every workload
    python benchmarks/profile_steps.py --workloads W3,W4 --calls 200 --top 12

Each workload is compiled with ``aj.compile(..., profile=True)``, called ``--calls`` times
after a warm-up, and the per-step table of ``f.profile()`` is printed with the call's
total time measured from Python beside it (the difference is the Python side: argument
checks, output allocation, the ctypes call).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import adjit as aj  # noqa: E402
from models import build, feeds  # noqa: E402
from workloads import make_data, select  # noqa: E402


def by_op(rows, total_us) -> str:
    """Share of the native time per op kind (fused kernels together), largest first."""
    acc = {}
    for r in rows:
        op = "fused" if r["op"].startswith("fused") else r["op"]
        acc[op] = acc.get(op, 0.0) + r["total_us"]
    return ", ".join(f"{op} {us / max(total_us, 1e-9):.1%}"
                     for op, us in sorted(acc.items(), key=lambda kv: -kv[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default=None, help="comma-separated keys, e.g. W3,W4")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    for wl in select(args.workloads.split(",") if args.workloads else None):
        data = make_data(wl)
        f = aj.compile(build(wl, lam=data["consts"].get("lam")), profile=True)
        kw = feeds(data)
        f(**kw)
        f.reset_profile()
        t0 = time.perf_counter()
        for _ in range(args.calls):
            f(**kw)
        per_call = (time.perf_counter() - t0) / args.calls * 1e6
        rows = f.profile(as_rows=True)
        native = sum(r["total_us"] for r in rows) / args.calls
        print(f"## {wl.key}: {per_call:.1f} µs per call from Python, {native:.1f} µs in "
              f"{len(rows)} native steps")
        print(f.profile(top=args.top))
        print("by op: " + by_op(rows, native * args.calls))
        print()


if __name__ == "__main__":
    main()
