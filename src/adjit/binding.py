"""Call-time argument checks, shared by every backend.

Nothing reaches a backend (and no pointer reaches native code) before these checks:

* every declared input and parameter is given by name, and no unknown name is
  (``TypeError`` naming them);
* each value converts to the declared dtype under the input policy below, or a
  ``DTypeError`` names the input;
* ranks and static dimensions match, and every batch dimension (``None``) has the same
  size across all inputs, or a ``ShapeError`` names the input, the expected shape (with
  the bound batch size) and the shape given;
* arrays handed on are C-contiguous, aligned and owned by numpy (copies are made when a
  caller's array is not).

Input policy: Python numbers, lists and arrays are accepted.  Float inputs take any
real number dtype (ints and bools convert; float64 data for a float32 input is
rounded, like numpy's ``astype``).  Integer inputs (labels) take integer arrays only,
bool inputs (masks) bool arrays only.
Complex, object, string and other dtypes are refused.
"""
from __future__ import annotations

import numpy as np

from .ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, shape_str


class Binder:
    """Validates keyword arguments against a graph's declared inputs."""

    def __init__(self, inputs: list[Node]):
        by_name: dict[str, Node] = {}
        for n in inputs:
            other = by_name.setdefault(n.name, n)
            if other is not n:
                raise ValueError(f"two different inputs are named {n.name!r}: "
                                 f"{other.type} and {n.type}")
        self.inputs = [by_name[k] for k in sorted(by_name)]
        self.names = frozenset(by_name)
        self.specs = [(n.name, n.shape, np.dtype(n.dtype), n.dtype in FLOAT_DTYPES)
                      for n in self.inputs]

    def bind(self, kwargs: dict) -> tuple[dict[str, np.ndarray], int | None]:
        if kwargs.keys() != self.names:
            self._name_error(kwargs)
        values: dict[str, np.ndarray] = {}
        batch: int | None = None
        batch_from = None
        for name, shape, dtype, is_float in self.specs:
            arr = _convert(name, kwargs[name], dtype, is_float)
            if arr.ndim != len(shape):
                raise ShapeError(f"input {name!r}: expected {len(shape)}-D shape "
                                 f"{_bound(shape, batch)}, got {arr.shape}")
            for want, got in zip(shape, arr.shape):
                if want is None:
                    if batch is None:
                        batch, batch_from = got, name
                    elif got != batch:
                        raise ShapeError(
                            f"input {name!r}: expected shape {_bound(shape, batch)} "
                            f"(batch size {batch} bound by {batch_from!r}), got {arr.shape}")
                elif want != got:
                    raise ShapeError(f"input {name!r}: expected shape {_bound(shape, batch)}, "
                                     f"got {arr.shape}")
            values[name] = arr
        return values, batch

    def _name_error(self, kwargs):
        missing = sorted(self.names - kwargs.keys())
        unknown = sorted(kwargs.keys() - self.names)
        parts = []
        if missing:
            parts.append("missing " + ", ".join(map(repr, missing)))
        if unknown:
            parts.append("unknown " + ", ".join(map(repr, unknown)))
        raise TypeError(f"{'; '.join(parts)} (the function takes {', '.join(sorted(self.names))})")


def _bound(shape, batch) -> str:
    if batch is None:
        return shape_str(shape)
    return shape_str(tuple(batch if d is None else d for d in shape))


def _convert(name: str, value, dtype: np.dtype, is_float: bool) -> np.ndarray:
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    kind = arr.dtype.kind
    if is_float:
        ok, want = kind in "fiub", "a real number array"
    elif dtype.kind == "b":
        ok, want = kind == "b", "a bool array"
    else:
        ok, want = kind in "iu", "an integer array"
    if not ok:
        raise DTypeError(f"input {name!r}: expected {want} of {dtype.name}, got dtype {arr.dtype}")
    if arr.dtype != dtype or not arr.flags.c_contiguous or not arr.flags.aligned:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr
