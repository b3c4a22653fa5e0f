"""The LLVM CPU backend: one native entry per compiled function.

``build`` plans buffers (:mod:`.plan`), lowers every step to LLVM IR (:mod:`.codegen`,
with :mod:`.printer` for fused elementwise expressions, :mod:`.gemm` for matmul and
:mod:`.mathfn` for transcendental functions), compiles it for the host CPU through
:mod:`.target` (the only module that touches ``llvmlite.binding``; it also keeps the
disk cache of object code) and wraps the entry in :class:`.runtime.NativeFunction`.
``load_compiled`` / ``store_compiled`` put the compiled-function cache (:mod:`.fncache`)
in front of all that: a hit goes from the traced graph to the native entry directly.
"""
from __future__ import annotations

import os

from ...ir import Graph
from . import fncache
from .codegen import Lowering
from .constants import fill as fill_constants
from ..lowering.plan import Plan
from .runtime import DATA_OFFSET, NativeFunction
from ..lowering import plan as plan_module
from ..lowering.target import compile_ir
from ..protocol import Backend


DEFAULT_OPT_LEVEL = 1
# A model's vectorized loops end in a masked vector iteration, not a vector epilogue and a
# scalar loop (see lowering.target.set_masked_tails): about a third less LLVM time on
# W3/W4/W6, same call times.  ADJIT_MASKED_TAILS=0 turns it off.  (The GEMM library is
# compiled without: its loops are written as vector code.)
MASKED_TAILS = os.environ.get("ADJIT_MASKED_TAILS", "1") != "0"
# Unfolds read only by products are computed inside them, one image at a time
# (lowering/plan.py, .window_gemm); ADJIT_WINDOWS=0 (or the option windows=False) stores
# them in full instead.
WINDOWS = os.environ.get("ADJIT_WINDOWS", "1") != "0"


def _windows(windows: bool | None) -> bool:
    return WINDOWS if windows is None else bool(windows)


def build(graph: Graph, opt_level: int = DEFAULT_OPT_LEVEL, cache: bool | None = None,
          updates: dict[int, str] | None = None, profile: bool = False,
          cpu: str | None = None, windows: bool | None = None) -> NativeFunction:
    """``opt_level`` 1 by default (loop and SLP vectorization are on at levels 1-3): on
    W1-W6 it compiled 10-20% faster than 2 with the same call times, as 2 did against 3
    (the GEMM library is always built at 3).  ``updates`` maps output indices to the input whose buffer that output overwrites;
    ``profile`` times every step (see :mod:`.profile`); ``cpu`` names the CPU to compile
    for (None: ``$ADJIT_CPU``, else the host; see :mod:`.target.cpu`); ``windows`` False
    stores every unfold, folded product and inlined step (None: ``$ADJIT_WINDOWS``)."""
    updates = updates or {}
    plan = Plan(graph, in_place=frozenset(updates), windows=_windows(windows))
    ir_text = Lowering(plan, DATA_OFFSET, profile, cpu=cpu).lower()
    jit = compile_ir(ir_text, opt_level=opt_level, cache=cache, name="adjit", cpu=cpu,
                     masked_tails=MASKED_TAILS)
    fill_constants(plan, jit)
    return NativeFunction(plan, jit, updates, profile)


def _key(traced: Graph, opt_level: int = DEFAULT_OPT_LEVEL, cache: bool | None = None,
         updates: dict[int, str] | None = None, profile: bool = False,
         cpu: str | None = None, windows: bool | None = None) -> str | None:
    """The compiled-function cache key, or None when caching is off.  (Same signature as
    :func:`build`, so unknown options fail the same way.)"""
    if not fncache.enabled(cache):
        return None
    # DATA_OFFSET decides how the entry reads its table (array objects or addresses)
    return fncache.key(traced, {"opt_level": opt_level, "profile": bool(profile),
                                "updates": sorted((updates or {}).items()),
                                "data_offset": DATA_OFFSET, "windows": _windows(windows),
                                "masked_tails": MASKED_TAILS,
                                "fold_block": plan_module.FOLD_BLOCK_BYTES}, cpu)


def load_compiled(traced: Graph, **options) -> tuple[Graph, NativeFunction] | None:
    """(lowered graph, native function) for ``traced`` from the compiled-function cache,
    or None on a miss.  The unoptimized IR is lowered again only if someone reads it."""
    k = _key(traced, **options)
    got = None if k is None else fncache.load(k)
    if got is None:
        return None
    graph, text, _ = got
    updates = options.get("updates") or {}
    profile = bool(options.get("profile"))
    plan = Plan(graph, in_place=frozenset(updates), windows=_windows(options.get("windows")))
    cpu = options.get("cpu")
    jit = fncache.load_linked(text, "adjit", options.get("opt_level", DEFAULT_OPT_LEVEL),
                              lambda: Lowering(plan, DATA_OFFSET, profile, cpu=cpu).lower())
    if jit is None:        # (cache_info names the object-code entry, as for any hit)
        return None
    fill_constants(plan, jit)
    return graph, NativeFunction(plan, jit, updates, profile)


def store_compiled(traced: Graph, graph: Graph, fn: NativeFunction, **options) -> None:
    """Remember ``fn`` (built from ``graph``, lowered from ``traced``) for later compiles."""
    k = _key(traced, **options)
    if k is None or fn.jit.key is None:
        return
    fncache.store(k, graph, fncache.link_text(fn.jit))


# ``updates=`` are written by the native code itself
BACKEND = Backend("llvm", build, in_place_updates=True, load_compiled=load_compiled,
                  store_compiled=store_compiled)
