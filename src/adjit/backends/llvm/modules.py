"""How a lowered function's LLVM modules are grouped into the texts compiled together.

``compile_ir`` compiles each text in its own LLVMContext on its own thread, so kernels are
grouped by size into up to ``parts`` texts; the entry goes with the lightest group, the
pool's shared helpers (:mod:`.parallel`) with each group that calls them.
"""
from __future__ import annotations

from llvmlite import ir

from .parallel import emit_support, uses_support
from ..lowering.irkit import balance, module_pieces, module_text
from ..lowering.target import NO_UNROLL

SPLIT_MIN_CHARS = 20_000   # below this much kernel IR, one module (threads cost more)
MAX_PARTS = 8              # more modules than this gain little (each costs ~4 ms)
# Elementwise maps are optimized without LLVM's loop unroller (the vectorizer still
# interleaves their vector loops): it cut 25-30% of LLVM's CPU time on W2-W6 with the same
# call times; reductions, products and the other kernels keep it (the 10-class reductions
# need their unrolled, outer-loop-vectorized form).
UNROLL_MAPS = False



def module_texts(entry_module: ir.Module, modules: list[ir.Module], unroll: list[bool],
                 parts: int) -> list[str]:
    """The kernels in groups of similar size (one group below SPLIT_MIN_CHARS), the
    entry with the lightest group, the pool helpers with each group that calls them.
    Above SPLIT_MIN_CHARS, elementwise maps and the other kernels go to separate
    groups, the maps' optimized without loop unrolling (see UNROLL_MAPS)."""
    memo: dict = {}
    entry = module_pieces(entry_module, memo)
    kernels = [module_pieces(m, memo) for m in modules]
    sizes = [sum(len(t) for _, _, t in k) for k in kernels]
    groups, flags = _groups(sizes, unroll, parts)
    light = min(range(len(groups)), key=lambda g: sum(sizes[k] for k in groups[g]))
    support = []
    if any(uses_support(m) for m in modules):
        emit_support(module := ir.Module(name="adjit_support"))
        support = module_pieces(module, memo)
    texts = []
    for g, group in enumerate(groups):
        calls = any(uses_support(modules[k]) for k in group)
        texts.append(("" if flags[g] else NO_UNROLL)
                     + module_text(([entry] if g == light else [])
                                   + ([support] if calls else [])
                                   + [kernels[k] for k in group]))
    return texts


def _groups(sizes: list[int], unroll: list[bool], parts: int):
    """(groups of module indices, loop unrolling on per group): one group below
    SPLIT_MIN_CHARS or for ``parts`` 1 (unrolled if any member wants it), else groups of
    modules of one kind, each kind in up to ``parts`` groups of similar size (compile_ir
    schedules them on its threads, largest first)."""
    total = sum(sizes)
    if total < SPLIT_MIN_CHARS or parts < 2 or len(set(unroll)) < 2:
        groups = balance(sizes, parts if total >= SPLIT_MIN_CHARS else 1) or [[]]
        return groups, [any(unroll[k] for k in g) or not g for g in groups]
    groups, flags = [], []
    for flag in (True, False):
        idx = [k for k, u in enumerate(unroll) if u == flag]
        size = sum(sizes[k] for k in idx)
        for g in balance([sizes[k] for k in idx], parts if 2 * size >= SPLIT_MIN_CHARS else 1):
            groups.append([idx[j] for j in g])
            flags.append(flag)
    return groups, flags
