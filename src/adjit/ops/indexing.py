"""``x[key]``: numpy's basic indexing (ints, slices, ``None``, ``...``) as one ``slice`` node
and one ``reshape`` (dropping the int-indexed axes, adding the ``None`` ones).

On the batch axis (``None`` in the shape, size B bound at call time):

* ``:`` keeps it and ``::-1`` reverses it (size B);
* an int drops it; the call needs B > i (B >= -i for a negative i);
* a slice of a static size (``x[:3]``, ``x[-2:]``, ``x[2:5]``) needs B large enough to
  hold it, checked at call time;
* a slice whose size depends on B (``x[1:]``, ``x[::2]``) is refused at declaration:
  its shape could not be written with one batch dimension.

Integer and bool *array* indices are gathers: ``aj.take`` / ``aj.take_along_axis``.
"""
from __future__ import annotations

import operator

import numpy as np

from ..ir import ShapeError, label, shape_str
from .moves import slice_


def _F():
    from .. import frontend
    return frontend


_HUGE = 1 << 40   # two large batch sizes tell a batch-independent slice from the rest


def _as_int(k):
    if isinstance(k, (bool, np.bool_)):
        return None
    try:
        return operator.index(k)
    except TypeError:
        return None


def _static_axis(n: int, k, where: str):
    """(start, step, size) of an int (size None: the axis is dropped) or a slice."""
    if isinstance(k, slice):
        start, stop, step = k.indices(n)      # raises ValueError for step 0
        L = len(range(start, stop, step))
        return (start if L else 0), step, L
    if not -n <= k < n:
        raise ShapeError(f"{where}: index {k} is out of bounds for an axis of size {n}")
    return k % n, 1, None


def _batch_axis(k, where: str):
    """(start, step, size) on the batch axis; start < 0 counts from the back (B + start),
    size None keeps the batch axis, "int" drops it."""
    if not isinstance(k, slice):
        return k, 1, "int"
    step = 1 if k.step is None else _as_int(k.step)
    if k.stop is None and k.start in (None, 0 if step > 0 else -1) and abs(step) == 1:
        return (0, 1, None) if step == 1 else (-1, -1, None)     # the whole axis
    # both ends counted from the front (>= 0), or both from the back (< 0): a fixed size
    start_back = step < 0 if k.start is None else k.start < 0
    stop_back = step > 0 if k.stop is None else k.stop < 0
    a, b = (range(*k.indices(B)) for B in (_HUGE, _HUGE + 1))
    if start_back != stop_back or len(a) != len(b):
        raise ShapeError(f"{where}: the slice {_show(k)} of the batch axis has a size that "
                         "depends on the batch size B (only ':', '::-1', ints and slices of a "
                         "fixed size such as ':3' or '-2:' are supported there)")
    L = len(a)
    if L == 0:
        return 0, 1, 0
    start = a.start if a.start == b.start else a.start - _HUGE   # from the front / back
    return start, a.step, L


def _show(k) -> str:
    if isinstance(k, slice):
        parts = ["" if v is None else str(v) for v in (k.start, k.stop, k.step)]
        return ":".join(parts[:2] if k.step is None else parts)
    if k is None:
        return "None"
    if k is Ellipsis:
        return "..."
    return str(k)


def _refuse(k, where: str):
    raise TypeError(f"{where}: only integers, slices (':'), None and '...' are valid "
                    f"indices here, got {type(k).__name__}; to pick elements with an integer "
                    "array or node, use aj.take(x, indices, axis) or aj.take_along_axis")


def getitem(x, key):
    """``x[key]`` with numpy's basic indexing (see the module docstring)."""
    F = _F()
    x = F._lift(x)
    key = key if isinstance(key, tuple) else (key,)
    written = f"{label(x)}[{', '.join(_show(k) for k in key)}]"
    where = f"{written} of shape {shape_str(x.shape)}"
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, slice) or _as_int(k) is not None):
            _refuse(k, where)
        if isinstance(k, slice) and not all(v is None or _as_int(v) is not None
                                            for v in (k.start, k.stop, k.step)):
            raise TypeError(f"{where}: slice bounds must be integers or None")
    if sum(k is Ellipsis for k in key) > 1:
        raise ShapeError(f"{where}: an index can only have a single ellipsis ('...')")
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > x.ndim:
        raise ShapeError(f"{where}: too many indices ({consumed}) for {x.ndim} axes")
    if Ellipsis not in key:
        key = key + (Ellipsis,)
    e = key.index(Ellipsis)
    key = key[:e] + (slice(None),) * (x.ndim - consumed) + key[e + 1:]
    start, step, sliced, out = [], [], [], []
    axis = 0
    for k in key:
        if k is None:
            out.append(1)
            continue
        k = k if isinstance(k, slice) else _as_int(k)
        if isinstance(k, slice) and k.step is not None and _as_int(k.step) == 0:
            raise ShapeError(f"{where}: slice step cannot be zero")
        n = x.shape[axis]
        if n is None:
            s, st, L = _batch_axis(k, where)
        else:
            s, st, L = _static_axis(n, k, where)
            L = "int" if L is None else L
        if L == "int":
            L = 1
        else:
            out.append(L)
        start.append(s)
        step.append(st)
        sliced.append(L)
        axis += 1
    y = slice_(x, start, step, tuple(sliced))
    if y is not x:
        y.meta["written"] = written
    return F.reshape(y, tuple(out))


def iterate(x):
    """``iter(x)``: the slices ``x[0], x[1], ...`` along a static first axis, as numpy.
    Refused (TypeError) for a 0-d node or a batch-sized first axis (it would never end)."""
    if x.ndim == 0 or x.shape[0] is None:
        raise TypeError(f"cannot iterate over {label(x)} of shape {shape_str(x.shape)}: "
                        "its first axis is " + ("missing" if x.ndim == 0 else "the batch axis"))
    return (getitem(x, i) for i in range(x.shape[0]))


__all__ = ["getitem", "iterate"]
