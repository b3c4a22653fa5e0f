"""The LLVM CPU backend: one native entry per compiled function.

``build`` plans buffers (:mod:`.plan`), lowers every step to LLVM IR (:mod:`.codegen`,
with :mod:`.printer` for fused elementwise expressions, :mod:`.gemm` for matmul and
:mod:`.mathfn` for transcendental functions), compiles it for the host CPU through
:mod:`.target` (the only module that touches ``llvmlite.binding``; it also keeps the
disk cache of object code) and wraps the entry in :class:`.runtime.NativeFunction`.
"""
from __future__ import annotations

from ...ir import Graph
from .codegen import Lowering
from .plan import Plan
from .runtime import DATA_OFFSET, NativeFunction
from .target import compile_ir


IN_PLACE_UPDATES = True   # ``updates=`` are written by the native code itself


def build(graph: Graph, opt_level: int = 2, cache: bool | None = None,
          updates: dict[int, str] | None = None, profile: bool = False) -> NativeFunction:
    """``opt_level`` 2 by default: on W3/W5 it compiled 1.5x faster than 3 with the same
    call time (the GEMM library is always built at 3).  ``updates`` maps output indices to the input whose buffer that output overwrites;
    ``profile`` times every step (see :mod:`.profile`)."""
    updates = updates or {}
    plan = Plan(graph, in_place=frozenset(updates))
    ir_text = Lowering(plan, DATA_OFFSET, profile).lower()
    jit = compile_ir(ir_text, opt_level=opt_level, cache=cache, name="adjit")
    return NativeFunction(plan, jit, updates, profile)
