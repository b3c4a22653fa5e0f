"""Gathers with integer index nodes, and their adjoint, the scatter-add.  One record each.

* ``take(a, indices, axis)``: ``out[pre, i..., post] = a[pre, indices[i...], post]``
  (numpy's ``np.take``); the index node may hold the batch axis (an embedding's ids).
* ``take_along_axis(a, indices, axis)``: ``out[..., i, ...] = a[..., indices[..., i, ...],
  ...]`` (numpy's ``np.take_along_axis``, shapes broadcast by the front end).
* ``scatter_add(g, indices)``: the adjoint of either (attribute ``along``): a zeroed array
  of ``shape`` to which each element of ``g`` is added at its index.  Its own VJP is the
  gather again, so gradients differentiate again.  The cost is O(size of ``g``) beyond
  zeroing the output: an embedding's backward costs O(B·T·dim), never O(vocab·dim).

Index semantics (every backend): a negative index ``-n <= i < 0`` counts from the end as
in numpy.  Indices read from an integer input are checked at call time against
``-n <= i < n`` (``Op.index_range``; a ``DTypeError`` names the input); indices computed
in the graph, and along an axis whose size is the batch size, are clamped into
``[0, n - 1]`` after wrapping (JAX's ``mode="clip"``), so no kernel ever reads outside
the array; reading along the batch axis at batch size 0 gives zeros.
"""
from __future__ import annotations

import numpy as np

from ..ir import INT_DTYPES, FLOAT_DTYPES, DTypeError, Node, ShapeError, TensorType, label, \
    shape_str
from .registry import Op, Shown, make, register
from .tangents import through_first


def _F():
    from .. import frontend
    return frontend


def normalize(idx: np.ndarray, n: int) -> np.ndarray:
    """numpy's negative indices, then clamped into [0, n - 1] (the reference of every
    backend's index arithmetic)."""
    i = np.asarray(idx).astype(np.int64)
    i = np.where(i < 0, i + n, i)
    return np.clip(i, 0, max(n - 1, 0))


def _check_index(idx: Node, where: str) -> None:
    if idx.dtype not in INT_DTYPES:
        raise DTypeError(f"{where}: indices {label(idx)} must be int32 or int64, got {idx.dtype}")


def _range(node: Node, k: int, axis_size, what: str):
    n = axis_size
    if k != 1 or n is None:
        return None        # the batch size: known at call time only (clamped)
    return (-n, n, f"{what} along axis {node.attr('axis')} of size {n}")


# --- take --------------------------------------------------------------------------------
def _take_rule(inputs, attrs):
    a, idx = inputs
    axis = attrs["axis"]
    where = f"take({label(a)}, {label(idx)}, axis={axis})"
    _check_index(idx, where)
    if not 0 <= axis < a.ndim:
        raise ShapeError(f"{where}: axis out of range for shape {shape_str(a.shape)}")
    if a.shape[axis] == 0 and (None in idx.shape or int(np.prod(idx.shape)) > 0):
        raise ShapeError(f"{where}: cannot take from the empty axis of {shape_str(a.shape)}")
    return TensorType(a.shape[:axis] + idx.shape + a.shape[axis + 1:], a.dtype)


def _take_numpy(args, node, env):
    a, idx = args
    axis = node.attr("axis")
    if a.shape[axis] == 0:      # the batch axis at batch size 0: nothing to read
        return np.zeros(node.type.concrete(env.batch), dtype=node.dtype)
    return np.take(a, normalize(idx, a.shape[axis]), axis=axis)


def _take_vjp(node, g, needs):
    a, idx = node.inputs
    return [scatter_add(g, idx, a.shape, node.attr("axis")) if needs[0] else None, None]


register(Op("take", _take_rule, _take_numpy, _take_vjp, jvp=through_first, arity=2, zero_preserving=True,
            display="take",
            shown=lambda node, dropped=(): Shown(index=(":",) * node.attr("axis") + (1,),
                                                 note=f"axis {node.attr('axis')}"),
            index_range=lambda node, k: _range(node, k, node.inputs[0].shape[node.attr("axis")],
                                               "take")))


# --- take_along_axis -----------------------------------------------------------------------
def _along_rule(inputs, attrs):
    a, idx = inputs
    axis = attrs["axis"]
    where = f"take_along_axis({label(a)}, {label(idx)}, axis={axis})"
    _check_index(idx, where)
    if a.ndim != idx.ndim or not 0 <= axis < a.ndim or any(
            d != e for k, (d, e) in enumerate(zip(a.shape, idx.shape)) if k != axis):
        raise ShapeError(f"{where}: shapes {shape_str(a.shape)} and {shape_str(idx.shape)} "
                         f"must agree except along axis {axis}")
    if a.shape[axis] == 0 and (None in idx.shape or int(np.prod(idx.shape)) > 0):
        raise ShapeError(f"{where}: cannot take from the empty axis of {shape_str(a.shape)}")
    return TensorType(idx.shape, a.dtype)


def _along_numpy(args, node, env):
    a, idx = args
    axis = node.attr("axis")
    if a.shape[axis] == 0:      # the batch axis at batch size 0: nothing to read
        return np.zeros(idx.shape, dtype=node.dtype)
    return np.take_along_axis(a, normalize(idx, a.shape[axis]), axis=axis)


def _along_vjp(node, g, needs):
    a, idx = node.inputs
    return [scatter_add(g, idx, a.shape, node.attr("axis"), along=True) if needs[0] else None,
            None]


register(Op("take_along_axis", _along_rule, _along_numpy, _along_vjp, jvp=through_first,
            arity=2,
            zero_preserving=True, display="take_along_axis",
            shown=lambda node, dropped=(): Shown(note=f"axis {node.attr('axis')}"),
            index_range=lambda node, k: _range(node, k, node.inputs[0].shape[node.attr("axis")],
                                               "take_along_axis")))


# --- scatter_add -----------------------------------------------------------------------------
def _scatter_rule(inputs, attrs):
    g, idx = inputs
    shape, axis, along = attrs["shape"], attrs["axis"], attrs["along"]
    where = f"scatter_add({label(g)}, {label(idx)}, axis={axis})"
    _check_index(idx, where)
    if g.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: needs float values, got {g.dtype}")
    if not 0 <= axis < len(shape):
        raise ShapeError(f"{where}: axis out of range for shape {shape_str(shape)}")
    want = (idx.shape if along else shape[:axis] + idx.shape + shape[axis + 1:])
    if along and (len(shape) != idx.ndim or any(
            d != e for k, (d, e) in enumerate(zip(shape, idx.shape)) if k != axis)):
        want = None
    if want is None or g.shape != want:
        raise ShapeError(f"{where}: values of shape {shape_str(g.shape)} do not fit indices "
                         f"{shape_str(idx.shape)} into {shape_str(shape)}")
    return TensorType(shape, g.dtype)


def _scatter_numpy(args, node, env):
    g, idx = args
    axis, along = node.attr("axis"), node.attr("along")
    shape = node.type.concrete(env.batch)
    out = np.zeros(shape, dtype=node.dtype)
    if shape[axis] == 0:        # nothing was read (the batch axis at batch size 0)
        return out
    i = normalize(idx, shape[axis])
    if along:
        grid = list(np.indices(i.shape, sparse=True))
        grid[axis] = i
        np.add.at(out, tuple(grid), g)
    else:
        k = i.ndim
        moved = np.moveaxis(g, list(range(axis, axis + k)), list(range(k)))
        np.add.at(np.moveaxis(out, axis, 0), i, moved)
    return out


def _scatter_vjp(node, g, needs):
    idx, axis = node.inputs[1], node.attr("axis")
    if not needs[0]:
        return [None, None]
    op = "take_along_axis" if node.attr("along") else "take"
    return [make(op, (g, idx), {"axis": axis}), None]


def _scatter_shown(node, dropped=()) -> Shown:
    axis, along = node.attr("axis"), node.attr("along")
    return Shown(into=True, name="scatter_along_axis" if along else "scatter", args=(1, 0),
                 note=f"axis {axis}" if axis or along else "")


register(Op("scatter_add", _scatter_rule, _scatter_numpy, _scatter_vjp, jvp=through_first,
            arity=2,
            zero_preserving=True, linear=True, display="scatter", shown=_scatter_shown,
            index_range=lambda node, k: _range(node, k, node.attr("shape")[node.attr("axis")],
                                               "scatter_add")))


# --- public functions ----------------------------------------------------------------------
def _indices(indices) -> Node:
    if isinstance(indices, Node):
        return indices
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"indices must be integers, got an array of dtype {arr.dtype}")
    return _F().const(arr.astype(np.int64))


def _axis(a: Node, axis: int, where: str) -> int:
    if not isinstance(axis, (int, np.integer)) or not -a.ndim <= axis < a.ndim:
        raise ShapeError(f"{where}: axis {axis} out of range for {label(a)} of shape "
                         f"{shape_str(a.shape)}")
    return int(axis) % a.ndim


def _flat(a: Node, where: str) -> Node:
    if None in a.shape:
        raise ShapeError(f"{where} with axis=None flattens {label(a)}, whose shape "
                         f"{shape_str(a.shape)} holds the batch axis; give an axis")
    return _F().reshape(a, (-1,))


def take(a, indices, axis=None) -> Node:
    """Elements of ``a`` at ``indices`` along ``axis`` (numpy's ``np.take``): the result
    has shape ``a.shape[:axis] + indices.shape + a.shape[axis+1:]``; ``axis=None`` reads
    the flattened ``a``.  ``indices``: an int32/int64 node (an input, possibly batched, or
    computed) or an integer array.  Negative indices count from the end; an input's
    indices out of ``[-n, n)`` raise at call time, computed ones are clamped.  The
    gradient with respect to ``a`` is a scatter-add (cost O(size of the result))."""
    F = _F()
    a, idx = F._lift(a), _indices(indices)
    if axis is None:
        a, axis = _flat(a, "take"), 0
    return make("take", (a, idx), {"axis": _axis(a, axis, "take")})


def take_along_axis(a, indices, axis) -> Node:
    """``out[..., i, ...] = a[..., indices[..., i, ...], ...]`` along ``axis`` (numpy's
    ``np.take_along_axis``): ``indices`` has ``a``'s rank and broadcasts against it on the
    other axes; ``axis=None`` reads the flattened ``a`` with 1-D indices.  Index rules as
    :func:`take`."""
    F = _F()
    a, idx = F._lift(a), _indices(indices)
    where = f"take_along_axis({label(a)}, {label(idx)})"
    if axis is None:
        a, axis = _flat(a, "take_along_axis"), 0
    if idx.ndim != a.ndim:
        raise ShapeError(f"{where}: indices of rank {idx.ndim} for an array of rank {a.ndim} "
                         f"(they must have the same rank)")
    axis = _axis(a, axis, "take_along_axis")
    common = []
    for k, (d, e) in enumerate(zip(a.shape, idx.shape)):
        if k == axis:
            continue
        if d != e and 1 not in (d, e):
            raise ShapeError(f"{where}: shapes {shape_str(a.shape)} and {shape_str(idx.shape)} "
                             f"do not broadcast along axis {k}")
        common.append(e if d == 1 else d)
    common = tuple(common)
    a = F.broadcast_to(a, common[:axis] + (a.shape[axis],) + common[axis:])
    idx = F.broadcast_to(idx, common[:axis] + (idx.shape[axis],) + common[axis:])
    return make("take_along_axis", (a, idx), {"axis": axis})


def scatter_add(values, indices, shape, axis: int = 0, along: bool = False) -> Node:
    """The adjoint of :func:`take` (``along=False``) or :func:`take_along_axis`: an array
    of ``shape``, zero, to which each element of ``values`` is added at its index along
    ``axis`` (repeated indices add up).  Index rules as :func:`take`."""
    F = _F()
    g, idx = F._lift(values), _indices(indices)
    shape = tuple(shape)
    axis = int(axis) % max(len(shape), 1)
    return make("scatter_add", (g, idx), {"shape": shape, "axis": axis, "along": bool(along)})


__all__ = ["take", "take_along_axis", "scatter_add"]
