"""Ops that move elements at affine positions: ``slice``, ``pad``, ``concatenate``.

``slice`` and ``pad`` share one description per axis, a *placement*: ``L`` positions
``start + i·step`` (``i < L``, ``step != 0``, negative steps reverse) in an axis of size
``n``.  ``slice`` reads them (``out[i] = x[start + i·step]``, ``L`` the result's size);
``pad`` writes its operand there and the constant elsewhere (``out[start + i·step] =
x[i]``, ``L`` the operand's size, ``n`` the result's).  So each is the other's VJP:
slice -> pad with 0 (numpy's ``lo = start``, ``interior = |step| - 1``, ``hi`` from the
result's size), pad -> slice.  ``concatenate``'s VJP is one slice per operand.

On the batch axis (``None``, size B bound at call time) a placement is

* the whole axis: ``L`` is B too, ``start, step`` = ``0, 1`` or ``-1, -1`` (reversed);
* ``L`` static positions from the front (``start >= 0``) or from the back (``start < 0``
  reads ``B + start``): the call then needs B large enough to hold them
  (:attr:`Op.min_batch`, checked at call time, naming the node).
"""
from __future__ import annotations

import numpy as np

from ..ir import DTYPES, DTypeError, ShapeError, TensorType, label, shape_str
from .registry import Op, Shown, make, register
from .tangents import jointly, remake, through_first


def _F():
    from .. import frontend
    return frontend


# --- placements ------------------------------------------------------------------------------
def check_placement(n, L, start: int, step: int, where: str) -> None:
    """Raise ShapeError unless ``L`` positions ``start + i·step`` fit an axis of size ``n``
    (None: the batch size), as described in the module docstring."""
    if step == 0:
        raise ShapeError(f"{where}: step 0")
    if n is None:
        if L is None:
            if (start, step) not in ((0, 1), (-1, -1)):
                raise ShapeError(f"{where}: a batch-sized result must be the whole batch axis "
                                 f"(start, step = 0, 1 or -1, -1), got {start}, {step}")
        elif L and start < 0 and start + max(0, (L - 1) * step) >= 0:
            raise ShapeError(f"{where}: positions from the back of the batch axis run past it "
                             f"(start {start}, step {step}, {L} positions)")
        return
    if L is None:
        raise ShapeError(f"{where}: a batch-sized result cannot come from a static axis ({n})")
    if L and not (0 <= start < n and 0 <= start + (L - 1) * step < n):
        raise ShapeError(f"{where}: {L} positions from {start} by {step} do not fit an axis "
                         f"of size {n}")


def batch_need(n, L, start: int, step: int) -> int:
    """The smallest batch size holding the placement (0: any)."""
    if n is not None or L is None or L == 0:
        return 0
    last = start + (L - 1) * step
    if start >= 0:
        return max(start, last) + 1
    return -min(start, last)


def numpy_slice(start: int, step: int, L: int) -> slice:
    """The Python slice of ``L`` positions ``start + i·step`` (``start`` resolved, >= 0)."""
    if L == 0:
        return slice(0, 0, 1)
    stop = start + L * step
    return slice(start, None if stop < 0 else stop, step)


def _resolved(start: int, n_bound: int) -> int:
    return start + n_bound if start < 0 else start


def _placements(node, moved_shape, env):
    """Python slices (bound to ``env.batch``) of ``node``'s placement per axis; ``moved`` is
    the shape of the L side."""
    full = node.attr("shape") if node.op == "pad" else node.inputs[0].shape
    out = []
    for n, L, s, st in zip(full, moved_shape, node.attr("start"), node.attr("step")):
        nb = env.require_batch() if n is None else n
        Lb = env.require_batch() if L is None else L
        out.append(numpy_slice(_resolved(s, nb), st, Lb))
    return tuple(out)


def _min_batch(node) -> int:
    if node.op == "slice":
        full, moved = node.inputs[0].shape, node.shape
    else:
        full, moved = node.shape, node.inputs[0].shape
    return max((batch_need(n, L, s, st) for n, L, s, st in
                zip(full, moved, node.attr("start"), node.attr("step"))), default=0)


# --- how the views write them -----------------------------------------------------------------
def axis_part(n, L, start: int, step: int, dropped: bool = False) -> str:
    """numpy's index text for one axis's placement (the shortest form): ``':'``, ``'0'``,
    ``'1:3'``, ``'::-1'``, ``'-2:'``, ``'0:6:2'``; ``dropped``: a size-1 range written as
    the int index."""
    if dropped and L == 1:
        return str(start)
    if L == 0:
        return "0:0"
    if L == n and step in (1, -1) and start == (0 if step > 0 else (-1 if n is None else n - 1)):
        return ":" if step == 1 else "::-1"
    stop = start + L * step
    default = 0 if step > 0 else (-1 if n is None else n - 1)
    first = "" if start == default else str(start)
    if n is None:       # the batch axis: from the back runs to its end when stop reaches 0
        last = "" if (start < 0 and step > 0 and stop == 0) or (start >= 0 and stop < 0) \
            else str(stop)
    else:
        last = "" if stop >= n or stop < 0 else str(stop)
    return f"{first}:{last}" + ("" if step == 1 else f":{step}")


def placement_index(full, moved, start, step, dropped=()) -> tuple:
    """The index text of a placement per axis, trailing ``:`` left out (numpy's ``x[0]``
    is ``x[0, :]``)."""
    parts = [axis_part(n, L, s, st, a in dropped)
             for a, (n, L, s, st) in enumerate(zip(full, moved, start, step))]
    while len(parts) > 1 and parts[-1] == ":":
        parts.pop()
    return tuple(parts)


def _slice_shown(node, dropped=()) -> Shown:
    return Shown(index=placement_index(node.inputs[0].shape, node.shape, node.attr("start"),
                                       node.attr("step"), dropped))


def _pad_shown(node, dropped=()) -> Shown:
    (x,), shape = node.inputs, node.shape
    start, step, value = node.attr("start"), node.attr("step"), node.attr("value")
    index = placement_index(shape, x.shape, start, step, dropped)
    plain = not dropped and all(st == 1 and (n is None) == (L is None)
                                for n, L, st in zip(shape, x.shape, step))
    if plain:          # numpy's pad_width: (before, after) per axis
        widths = [(0, 0) if n is None else (s, n - s - L) for n, L, s in zip(shape, x.shape, start)]
        note = ", ".join(f"({a}, {b})" for a, b in widths)
    else:
        note = "at [" + ", ".join(index) + "]"
    if value != 0:
        note += f"; value {value}"
    # the index (where the operand goes) is shown only as an accumulation into zeros
    return Shown(index=index if value == 0 else (), into=value == 0, note=note)


# --- slice -------------------------------------------------------------------------------------
def _placement_rule(inputs, attrs, where: str, slicing: bool):
    """slice's and pad's shape rule: the smaller array's positions ``start + i·step`` lie
    in the larger one, along every axis (slice reads them from x; pad writes x there)."""
    (x,), shape = inputs, attrs["shape"]
    start, step = attrs["start"], attrs["step"]
    if not len(shape) == len(start) == len(step) == x.ndim:
        raise ShapeError(f"{where}: needs one start, step and size per axis")
    big, small = (x.shape, shape) if slicing else (shape, x.shape)
    for n, L, s, st in zip(big, small, start, step):
        check_placement(n, L, s, st, where)
    return TensorType(tuple(shape), x.dtype)


def _slice_rule(inputs, attrs):
    x = inputs[0]
    return _placement_rule(inputs, attrs, f"slice of {label(x)} {shape_str(x.shape)}", True)


def slice_(x, start, step, shape):
    """``out[i] = x[start + i·step]`` per axis (see the module docstring); the identity
    when it takes every element in order."""
    x = _F()._lift(x)
    start, step, shape = tuple(map(int, start)), tuple(map(int, step)), tuple(shape)
    if shape == x.shape and all(s == 0 and st == 1 for s, st in zip(start, step)):
        return x
    return make("slice", (x,), {"start": start, "step": step, "shape": shape})


def embed(x, start, step, shape, value=0):
    """``pad``: ``out[start + i·step] = x[i]`` per axis, ``value`` elsewhere."""
    x = _F()._lift(x)
    start, step, shape = tuple(map(int, start)), tuple(map(int, step)), tuple(shape)
    if shape == x.shape and all(s == 0 and st == 1 for s, st in zip(start, step)):
        return x
    return make("pad", (x,), {"start": start, "step": step, "shape": shape,
                              "value": _scalar_for(value, x.dtype)})


def _scalar_for(value, dtype):
    if dtype == "bool":
        return bool(value)
    if dtype.startswith("int"):
        return int(value)
    return float(value)


register(Op("slice", _slice_rule,
            lambda args, node, env: np.ascontiguousarray(
                args[0][_placements(node, node.shape, env)]),
            lambda node, g, needs: [embed(g, node.attr("start"), node.attr("step"),
                                          node.inputs[0].shape)],
            arity=1, jvp=through_first,
            support=lambda node, k, m: embed(m, node.attr("start"), node.attr("step"),
                                             node.inputs[0].shape, False),
            zero_preserving=True, linear=True, moves_values=True, display="slice",
            doc="x[start + i·step] along each axis (basic indexing)", shown=_slice_shown,
            min_batch=_min_batch))


# --- pad ---------------------------------------------------------------------------------------
def _pad_rule(inputs, attrs):
    x = inputs[0]
    where = f"pad of {label(x)} {shape_str(x.shape)} to {shape_str(attrs['shape'])}"
    return _placement_rule(inputs, attrs, where, False)


def _pad_numpy(args, node, env):
    shape = node.type.concrete(env.batch)
    out = np.full(shape, node.attr("value"), dtype=node.dtype)
    out[_placements(node, node.inputs[0].shape, env)] = args[0]
    return out


def _pad_jvp(node, tangents):
    """The tangent placed the same way, zeros elsewhere (the fill value is constant)."""
    t = tangents[0]
    return None if t is None else remake(node, (t,), value=_scalar_for(0, node.dtype))


register(Op("pad", _pad_rule, _pad_numpy,
            lambda node, g, needs: [slice_(g, node.attr("start"), node.attr("step"),
                                           node.inputs[0].shape)],
            arity=1, jvp=_pad_jvp,
            support=lambda node, k, m: slice_(m, node.attr("start"), node.attr("step"),
                                              node.inputs[0].shape),
            zero_preserving=True, display="pad", shown=_pad_shown,
            doc="the operand at positions start + i·step of each axis, a constant elsewhere",
            min_batch=_min_batch))


# --- concatenate ------------------------------------------------------------------------------
def _concat_rule(inputs, attrs):
    axis = attrs["axis"]
    names = ", ".join(label(x) for x in inputs)
    where = f"concatenate({names}, axis={axis})"
    if not inputs:
        raise ShapeError("concatenate: needs at least one array")
    first = inputs[0]
    if not 0 <= axis < first.ndim:
        raise ShapeError(f"{where}: axis {axis} out of range for rank {first.ndim}")
    if len({x.dtype for x in inputs}) != 1:
        raise DTypeError(f"{where}: operands of different dtypes "
                         f"({', '.join(x.dtype for x in inputs)})")
    rest = lambda s: s[:axis] + s[axis + 1:]
    for x in inputs:
        if x.ndim != first.ndim or rest(x.shape) != rest(first.shape):
            raise ShapeError(f"{where}: shapes {', '.join(shape_str(x.shape) for x in inputs)} "
                             f"differ outside axis {axis}")
        if x.shape[axis] is None:
            raise ShapeError(f"{where}: cannot join along the batch axis (B); the result's "
                             "size there (a sum of batch sizes) is not a shape adjit can hold")
    total = sum(x.shape[axis] for x in inputs)
    return TensorType(first.shape[:axis] + (total,) + first.shape[axis + 1:], first.dtype)


def _concat_vjp(node, g, needs):
    axis, off, out = node.attr("axis"), 0, []
    for x, need in zip(node.inputs, needs):
        n = x.shape[axis]
        start = tuple(off if a == axis else 0 for a in range(x.ndim))
        out.append(slice_(g, start, (1,) * x.ndim, x.shape) if need else None)
        off += n
    return out


def _concat_support(node, k, m):
    axis = node.attr("axis")
    off = sum(x.shape[axis] for x in node.inputs[:k])
    x = node.inputs[k]
    return slice_(m, tuple(off if a == axis else 0 for a in range(x.ndim)), (1,) * x.ndim,
                  x.shape)


register(Op("concatenate", _concat_rule,
            lambda args, node, env: np.concatenate(args, axis=node.attr("axis")),
            _concat_vjp, jvp=jointly, support=_concat_support, zero_preserving=True, linear=True,
            display="concat", doc="numpy's concatenate along a static axis",
            shown=lambda node, dropped=(): Shown(note=f"axis {node.attr('axis')}")))


# --- public functions ---------------------------------------------------------------------------
def concatenate(xs, axis: int = 0):
    """numpy's ``concatenate``: join along an existing ``axis`` (negative counts from the
    end).  Float operands of mixed precision join as float64; the batch axis cannot be
    joined along (ShapeError)."""
    F = _F()
    if isinstance(xs, (F.Node, np.ndarray)) or not hasattr(xs, "__iter__"):
        raise TypeError("concatenate takes a sequence of arrays, e.g. aj.concatenate([a, b])")
    nodes = [F._lift(x) for x in xs]
    if not nodes:
        raise ShapeError("concatenate: needs at least one array")
    ndim = nodes[0].ndim
    if ndim == 0:
        raise ShapeError(f"concatenate: zero-dimensional arrays ({label(nodes[0])}) cannot "
                         "be joined")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"concatenate: axis {axis} out of range for rank {ndim}")
    axis %= ndim
    nodes = F._promote(nodes, "concatenate(" + ", ".join(label(n) for n in nodes) + ")")
    node = make("concatenate", nodes, {"axis": axis})      # checks every operand
    kept = [n for n in nodes if n.shape[axis] != 0] or nodes[:1]
    if len(kept) == 1:
        return kept[0]
    return node if len(kept) == len(nodes) else make("concatenate", kept, {"axis": axis})


def _pad_widths(pad_width, ndim: int, what: str):
    try:
        arr = np.asarray(pad_width)
        if arr.dtype.kind not in "iu" or arr.ndim > 2:
            raise ValueError
        arr = np.broadcast_to(arr, (ndim, 2))
    except ValueError:
        raise ShapeError(f"pad of {what}: pad_width {pad_width!r} is not an int, a pair, or "
                         f"one pair per axis ({ndim} axes)") from None
    if (arr < 0).any():
        raise ShapeError(f"pad of {what}: negative pad_width {pad_width!r}")
    return [(int(a), int(b)) for a, b in arr]


def pad(x, pad_width, mode: str = "constant", constant_values=0):
    """numpy's ``pad`` with ``mode='constant'``: ``pad_width`` is an int, a pair
    ``(before, after)`` or one pair per axis; ``constant_values`` one number.  The batch
    axis cannot be padded (its size would not be B)."""
    F = _F()
    x = F._lift(x)
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is supported, got {mode!r}")
    if np.ndim(constant_values) != 0:
        raise ShapeError("pad: constant_values must be one number (per-axis values are not "
                         "supported)")
    widths = _pad_widths(pad_width, x.ndim, label(x))
    shape = []
    for a, (n, (lo, hi)) in enumerate(zip(x.shape, widths)):
        if n is None and (lo or hi):
            raise ShapeError(f"pad of {label(x)} {shape_str(x.shape)}: cannot pad the batch "
                             f"axis {a} (its size would be B + {lo + hi})")
        shape.append(None if n is None else n + lo + hi)
    if x.dtype not in DTYPES:
        raise DTypeError(f"pad of {label(x)}: dtype {x.dtype}")
    return embed(x, tuple(lo for lo, _ in widths), (1,) * x.ndim, tuple(shape),
                 constant_values)


__all__ = ["concatenate", "pad", "slice_", "embed"]
