"""Joining and shaping functions with numpy's names and semantics, made of primitives
(``reshape``, ``transpose``, ``broadcast``, ``slice``, ``concatenate``), so they need no
derivative or lowering rules of their own.

The batch axis (``None``) stays one axis of size B: functions that would change its size
(stacking or repeating along it, tiling it more than once, splitting it) raise ShapeError.
"""
from __future__ import annotations

import numpy as np

from .. import frontend as F
from ..ir import Node, ShapeError, label, shape_str
from .indexing import getitem
from .moves import concatenate


def _axis(axis, ndim: int, x, what: str) -> int:
    try:
        axis = int(axis)
    except TypeError:
        raise TypeError(f"{what}: axis must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{what}: axis {axis} is out of range for {ndim} axes "
                         f"({label(x)} of shape {shape_str(x.shape)})")
    return axis % ndim


def _axes(axes, ndim: int, x, what: str) -> tuple[int, ...]:
    axes = (axes,) if np.ndim(axes) == 0 else tuple(axes)
    out = tuple(_axis(a, ndim, x, what) for a in axes)
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: repeated axis in {axes}")
    return out


def expand_dims(x, axis) -> Node:
    """numpy's ``expand_dims``: new axes of size 1 at ``axis`` (an int or a tuple, counted
    in the result's axes)."""
    x = F._lift(x)
    axes = _axes(axis, x.ndim + (1 if np.ndim(axis) == 0 else len(axis)), x, "expand_dims")
    it = iter(x.shape)
    return F.reshape(x, tuple(1 if a in axes else next(it)
                              for a in range(x.ndim + len(axes))))


def squeeze(x, axis=None) -> Node:
    """numpy's ``squeeze``: drop axes of size 1 (all of them when ``axis`` is None).  The
    batch axis is never dropped by ``axis=None`` (its size is not known to be 1)."""
    x = F._lift(x)
    if axis is None:
        axes = tuple(a for a, n in enumerate(x.shape) if n == 1)
    else:
        axes = _axes(axis, x.ndim, x, "squeeze")
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            size = "B" if x.shape[bad[0]] is None else x.shape[bad[0]]
            raise ShapeError(f"squeeze of {label(x)} {shape_str(x.shape)}: axis {bad[0]} "
                             f"has size {size}, not 1")
    return F.reshape(x, tuple(n for a, n in enumerate(x.shape) if a not in axes))


def swapaxes(x, axis1: int, axis2: int) -> Node:
    """numpy's ``swapaxes``."""
    x = F._lift(x)
    a, b = (_axis(v, x.ndim, x, "swapaxes") for v in (axis1, axis2))
    perm = list(range(x.ndim))
    perm[a], perm[b] = b, a
    return F.transpose(x, tuple(perm))


def moveaxis(x, source, destination) -> Node:
    """numpy's ``moveaxis``: move axes ``source`` to positions ``destination`` (ints or
    sequences of one length), keeping the others in order."""
    x = F._lift(x)
    src = _axes(source, x.ndim, x, "moveaxis")
    dst = _axes(destination, x.ndim, x, "moveaxis")
    if len(src) != len(dst):
        raise ShapeError("moveaxis: source and destination must have the same number of axes")
    order = [a for a in range(x.ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return F.transpose(x, tuple(order))


def stack(xs, axis: int = 0) -> Node:
    """numpy's ``stack``: join arrays of one shape along a new ``axis``."""
    if isinstance(xs, (Node, np.ndarray)) or not hasattr(xs, "__iter__"):
        raise TypeError("stack takes a sequence of arrays, e.g. aj.stack([a, b])")
    nodes = [F._lift(x) for x in xs]
    if not nodes:
        raise ShapeError("stack: needs at least one array")
    shapes = {n.shape for n in nodes}
    if len(shapes) != 1:
        raise ShapeError(f"stack({', '.join(label(n) for n in nodes)}): all arrays must have "
                         f"one shape, got {', '.join(shape_str(n.shape) for n in nodes)}")
    a = _axis(axis, nodes[0].ndim + 1, nodes[0], "stack")
    return concatenate([expand_dims(n, a) for n in nodes], axis=a)


def split(x, indices_or_sections, axis: int = 0) -> list[Node]:
    """numpy's ``split``: ``sections`` equal pieces (an int dividing the axis), or the
    pieces between sorted ``indices`` (a sequence; as numpy, indices past the end give
    empty pieces).  The batch axis cannot be split."""
    x = F._lift(x)
    if x.ndim == 0:
        raise ShapeError(f"split of {label(x)}: a 0-d array cannot be split")
    a = _axis(axis, x.ndim, x, "split")
    n = x.shape[a]
    if n is None:
        raise ShapeError(f"split of {label(x)} {shape_str(x.shape)}: cannot split the batch "
                         "axis (its pieces' sizes would depend on B)")
    if np.ndim(indices_or_sections) == 0:
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ShapeError(f"split of {label(x)} {shape_str(x.shape)}: {k} sections do not "
                             f"divide axis {a} of size {n} equally")
        bounds = [i * (n // k) for i in range(1, k)]
    else:
        bounds = [int(i) for i in indices_or_sections]
    edges = [0] + bounds + [None]
    lead = (slice(None),) * a
    return [getitem(x, lead + (slice(lo, hi),)) for lo, hi in zip(edges[:-1], edges[1:])]


def repeat(x, repeats: int, axis=None) -> Node:
    """numpy's ``repeat`` with one int ``repeats``: each element ``repeats`` times in a row
    along ``axis`` (of the flattened array when None)."""
    x = F._lift(x)
    if np.ndim(repeats) != 0:
        raise NotImplementedError("repeat: only one int count for every element is supported")
    r = int(repeats)
    if r < 0:
        raise ShapeError(f"repeat of {label(x)}: negative count {r}")
    if axis is None:
        if x.type.has_batch:
            raise ShapeError(f"repeat of {label(x)} {shape_str(x.shape)} with axis=None "
                             "flattens the batch axis: give an axis")
        x, a = F.reshape(x, (-1,)), 0
    else:
        a = _axis(axis, x.ndim, x, "repeat")
    n = x.shape[a]
    if n is None and r != 1:
        raise ShapeError(f"repeat of {label(x)} {shape_str(x.shape)} along the batch axis: "
                         f"its size would be {r}·B")
    if r == 1:
        return x
    inner = x.shape[:a + 1] + (1,) + x.shape[a + 1:]
    wide = x.shape[:a + 1] + (r,) + x.shape[a + 1:]
    return F.reshape(F.broadcast_to(F.reshape(x, inner), wide),
                     x.shape[:a] + (n * r,) + x.shape[a + 1:])


def tile(x, reps) -> Node:
    """numpy's ``tile``: the whole array ``reps[k]`` times along axis k (``reps`` an int or
    a tuple; the shorter of ``reps`` and the shape is padded with 1s in front)."""
    x = F._lift(x)
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ShapeError(f"tile of {label(x)}: negative repetitions {reps}")
    ndim = max(x.ndim, len(reps))
    reps = (1,) * (ndim - len(reps)) + reps
    x = F.reshape(x, (1,) * (ndim - x.ndim) + x.shape)
    for n, r in zip(x.shape, reps):
        if n is None and r != 1:
            raise ShapeError(f"tile of {label(x)} {shape_str(x.shape)}: the batch axis can "
                             f"only be tiled once, got {r}")
    if all(r == 1 for r in reps):
        return x
    pairs = [d for n in x.shape for d in (1, n)]
    wide = [d for n, r in zip(x.shape, reps) for d in (r, n)]
    out = tuple(None if n is None else n * r for n, r in zip(x.shape, reps))
    return F.reshape(F.broadcast_to(F.reshape(x, tuple(pairs)), tuple(wide)), out)


__all__ = ["expand_dims", "squeeze", "swapaxes", "moveaxis", "stack", "split",
           "repeat", "tile"]
