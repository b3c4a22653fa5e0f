"""``unfold`` (im2col) and its adjoint ``fold`` (col2im): the windows of a convolution laid
out as columns, so a convolution is a matrix product (the lowering of ops/conv.py).

* ``unfold(x)``: ``x: (N, C, *S)`` -> ``(N, C, *kernel, *O)`` with
  ``out[n, c, k..., o...] = x[n, c, o·stride - lo + k·dilation ...]`` (0 where that row is
  padding).  Reshaped to ``(N, C·Πkernel, ΠO)`` (free: row-major), it is the right
  operand of the product ``W (C_out, C·Πkernel) @ cols``.
* ``fold(cols)``: the adjoint: ``(N, C, *kernel, *O)`` -> ``(N, C, *spatial)``, each
  column element added back at the input position it was read from (positions no window
  reads get 0).

Both are linear and each one's VJP is the other, so convolutions differentiate to any
order.  Attributes: ``kernel``, ``stride``, ``dilation``, ``pad`` (ops/window.py);
``fold`` also ``spatial``, the shape it restores.  One map rule each
(backends/lowering/windows.py) serves both native backends.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import ShapeError, TensorType, label, shape_str
from .registry import Op, make, register
from .tangents import through_first
from .window import out_shape, shown as window_shown


def _taps(kernel, stride, dilation, out):
    """``(tap, slices)`` per kernel tap: the padded input rows that tap reads."""
    for tap in np.ndindex(*kernel):
        yield tap, tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                         for k, d, s, o in zip(tap, dilation, stride, out))


def unfold_numpy(x: np.ndarray, kernel, stride, dilation, pad) -> np.ndarray:
    nd = len(kernel)
    out = out_shape(x.shape[2:], kernel, stride, dilation, pad, "unfold")
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pad])
    res = np.zeros(x.shape[:2] + tuple(kernel) + out, x.dtype)
    lead = (slice(None),) * 2
    for tap, rows in _taps(kernel, stride, dilation, out):
        res[lead + tap] = xp[lead + rows]
    assert res.ndim == 2 + 2 * nd
    return res


def fold_numpy(cols: np.ndarray, spatial, kernel, stride, dilation, pad) -> np.ndarray:
    nd = len(kernel)
    out = cols.shape[2 + nd:]
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pad))
    xp = np.zeros(cols.shape[:2] + padded, cols.dtype)
    lead = (slice(None),) * 2
    for tap, rows in _taps(kernel, stride, dilation, out):
        xp[lead + rows] += cols[lead + tap]
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(spatial, pad))
    return xp[lead + crop]


def _unfold_rule(inputs, attrs):
    (x,) = inputs
    k = attrs["kernel"]
    where = f"unfold({label(x)})"
    if x.ndim != len(k) + 2 or any(s is None for s in x.shape[1:]):
        raise ShapeError(f"{where}: needs (N, C, +{len(k)} static axes), got {shape_str(x.shape)}")
    out = out_shape(x.shape[2:], k, attrs["stride"], attrs["dilation"], attrs["pad"], where)
    return TensorType(x.shape[:2] + tuple(k) + out, x.dtype)


def _fold_rule(inputs, attrs):
    (c,) = inputs
    k, spatial = attrs["kernel"], attrs["spatial"]
    nd, where = len(k), f"fold({label(c)})"
    if c.ndim != 2 + 2 * nd or tuple(c.shape[2:2 + nd]) != tuple(k):
        raise ShapeError(f"{where}: needs (N, C, *kernel {k}, *out), got {shape_str(c.shape)}")
    out = out_shape(spatial, k, attrs["stride"], attrs["dilation"], attrs["pad"], where)
    if tuple(c.shape[2 + nd:]) != out:
        raise ShapeError(f"{where}: {spatial} gives {out} windows, the columns hold "
                         f"{tuple(c.shape[2 + nd:])}")
    return TensorType(c.shape[:2] + tuple(spatial), c.dtype)


def geometry(node) -> dict:
    return {k: node.attr(k) for k in ("kernel", "stride", "dilation", "pad")}


def _unfold_np(args, node, env):
    return unfold_numpy(args[0], **geometry(node))


def _fold_np(args, node, env):
    return fold_numpy(args[0], node.attr("spatial"), **geometry(node))


register(Op("unfold", _unfold_rule, _unfold_np,
            lambda node, g, needs: [make("fold", (g,), dict(geometry(node),
                                                           spatial=node.inputs[0].shape[2:]))],
            arity=1, jvp=through_first, linear=True, display="unfold", shown=window_shown,
            doc="the windows of a convolution as columns (im2col)"))
register(Op("fold", _fold_rule, _fold_np,
            lambda node, g, needs: [make("unfold", (g,), geometry(node))],
            arity=1, jvp=through_first, linear=True, display="fold", shown=window_shown,
            cost=lambda node: math.prod(node.attr("kernel")),   # a load per kernel tap
            doc="columns added back at their window positions (col2im), unfold's adjoint"))
