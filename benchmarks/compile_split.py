"""One cold compile of a workload, stage by stage, on the llvm backend's own path
(``compile_bench.py --sections split``)."""
from __future__ import annotations

import time

import compile_cases as C


def split_row(wl) -> dict:
    from adjit.backends.llvm import DEFAULT_OPT_LEVEL, MASKED_TAILS
    from adjit.backends.llvm.codegen import Lowering
    from adjit.backends.llvm.runtime import DATA_OFFSET
    from adjit.backends.lowering import target
    from adjit.backends.lowering.plan import Plan
    from adjit.ir import Graph
    from adjit.passes import PIPELINE, run_pipeline
    from models import build
    from workloads import make_data
    outs = build(wl, make_data(wl)["consts"].get("lam"))
    C.fresh()
    t0 = time.perf_counter()
    graph = run_pipeline(Graph(outs, "traced"), PIPELINE)[-1]
    t1 = time.perf_counter()
    lw = Lowering(Plan(graph), DATA_OFFSET)
    ir_text = lw.lower()
    t2 = time.perf_counter()
    jit = target.compile_ir(ir_text, opt_level=DEFAULT_OPT_LEVEL, cache=False, name="adjit",
                            masked_tails=MASKED_TAILS)
    t3 = time.perf_counter()
    row = {"passes": t1 - t0, "lower": t2 - t1, "llvm": t3 - t2}
    row.update({k: lw.timings.get(k, float("nan")) for k in ("build", "text")})
    row.update({k: jit.timings.get(k, float("nan")) for k in ("parse", "optimize", "codegen",
                                                                "cpu")})
    row["modules"], row["kernels"] = jit.timings.get("modules", 1), lw.n_kernels
    return row
