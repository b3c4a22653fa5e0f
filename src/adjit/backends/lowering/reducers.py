"""The reductions both native backends lower with their reduce kernels: one entry per op,
the value a reduction starts from and how it takes in one more element.

``combine(module, b, acc, v, flags)``: ``flags`` (True: reorder and contract; a tuple of
fast-math flags; False: none) lets LLVM reorder the combination (the llvm backend's
vectorized loops; the ptx kernels fix their own order, a tree in shared memory).
max and min propagate NaN (``llvm.maximum``/``llvm.minimum``), as numpy's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .loops import REDUCE_FLAGS
from .printer import intrinsic


@dataclass(frozen=True)
class Reducer:
    init: float             # the identity of combine
    combine: Callable       # (module, builder, acc, v, flags) -> acc


def _flags(flags) -> tuple:
    """The fast-math flags of a combine: a tuple, or True for REDUCE_FLAGS (reorder and
    contract), False for none."""
    return REDUCE_FLAGS if flags is True else () if flags is False else tuple(flags)


def _extremum(name: str):
    return lambda module, b, acc, v, flags: b.call(intrinsic(module, name, acc.type, 2), [acc, v])


REDUCERS: dict[str, Reducer] = {
    "sum": Reducer(0.0, lambda module, b, acc, v, flags: b.fadd(acc, v, flags=_flags(flags))),
    "prod": Reducer(1.0, lambda module, b, acc, v, flags: b.fmul(acc, v, flags=_flags(flags))),
    "max": Reducer(float("-inf"), _extremum("maximum")),
    "min": Reducer(float("inf"), _extremum("minimum")),
}
