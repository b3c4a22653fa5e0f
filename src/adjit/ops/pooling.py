"""Pooling (PyTorch's ``max_pool1d/2d``, ``avg_pool1d/2d``, ``adaptive_*``) as four records.

* ``max_pool(x)``: ``(N, C, *S)`` -> ``(N, C, *O)``, the maximum of each window (padding
  counts as -inf and is never selected).  NaN propagates: a window holding a NaN gives
  NaN.  A dilated window may hold padding only (``max_pool2d`` of a 1-wide axis with
  padding 1, dilation 2): its value is -inf, as in PyTorch, and it passes no gradient.
* ``pool_argmax(x)``: int64 ``(N, C, *O)``, the flat spatial index (into ``ΠS``) of the
  element ``max_pool`` selects: the FIRST maximum in row-major window order (PyTorch's CPU
  kernel among ties), a NaN counting as larger than every number (so the first NaN of a
  window); ``ΠS`` for a window of padding only.  No gradient.  ``max_pool``'s VJP is the
  scatter-add of the cotangent at these indices (``scatter_add`` along the flattened
  spatial axis, one slot longer when some window holds padding only, that slot dropped),
  so overlapping windows accumulate and second order works (the scatter's VJP is a
  gather).
* ``avg_pool(x)``: the window sums divided by ``Πkernel`` (``count_include_pad``) or by the
  number of input (non-padding) elements of each window.  Linear.
* ``avg_pool_grad(g)``: its adjoint, ``(N, C, *O)`` -> ``(N, C, *spatial)``: each input
  element gets ``g[o] / divisor[o]`` summed over the windows ``o`` that read it.  Each of
  the pair's VJP is the other.

Attributes: ``kernel``, ``stride``, ``dilation``, ``pad`` (ops/window.py); the average pair
also ``include`` (count_include_pad), ``avg_pool_grad`` also ``spatial``.  The map rules
(backends/lowering/pools.py) serve both native backends.
"""
from __future__ import annotations

import numpy as np

from ..ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, TensorType, label, shape_str
from .registry import Op, make, register
from .tangents import through_first
from .window import attrs as window_attrs, ints, out_shape, spatial_operand
from .window import out_size as out_size_1


def _F():
    from .. import frontend
    return frontend


GEOMETRY = ("kernel", "stride", "dilation", "pad")


def geometry(node) -> dict:
    return {k: node.attr(k) for k in GEOMETRY}


def _avg_attrs(node) -> dict:
    return dict(geometry(node), include=node.attr("include"))


# --- numpy references ------------------------------------------------------------------------
def _taps(kernel, stride, dilation, pad, spatial, out):
    """``(flat, inside)`` per kernel tap in row-major order: the flat spatial index read by
    each window (clamped into range) and whether that position is an input element."""
    for tap in np.ndindex(*kernel):
        pos = [np.arange(o) * s + k * d - lo
               for o, s, k, d, (lo, _) in zip(out, stride, tap, dilation, pad)]
        grids = np.meshgrid(*pos, indexing="ij")
        inside = np.ones(out, bool)
        flat = np.zeros(out, np.int64)
        for p, n in zip(grids, spatial):
            inside &= (p >= 0) & (p < n)
            flat = flat * n + np.clip(p, 0, n - 1)
        yield flat, inside


def max_pool_numpy(x: np.ndarray, kernel, stride, dilation, pad):
    """``(values, flat indices)`` of each window's selected element (the rule above)."""
    spatial = x.shape[2:]
    out = out_shape(spatial, kernel, stride, dilation, pad, "max_pool")
    xf = x.reshape(x.shape[:2] + (int(np.prod(spatial)),))
    best = np.full(x.shape[:2] + out, -np.inf, x.dtype)
    idx = np.full(x.shape[:2] + out, int(np.prod(spatial)), np.int64)
    found = np.zeros(x.shape[:2] + out, bool)
    with np.errstate(invalid="ignore"):
        for flat, inside in _taps(kernel, stride, dilation, pad, spatial, out):
            v = xf[..., flat.reshape(-1)].reshape(best.shape)
            better = (v > best) | (np.isnan(v) & ~np.isnan(best))
            take = inside & (~found | better)
            best = np.where(take, v, best)
            idx = np.where(take, flat, idx)
            found |= inside
    return best, idx


def padding_only(spatial, kernel, stride, dilation, pad) -> bool:
    """Whether some window reads padding only (possible with dilation)."""
    for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pad):
        for o in range(out_size_1(n, k, s, d, lo, hi)):
            if not any(0 <= o * s - lo + t * d < n for t in range(k)):
                return True
    return False


def divisor(spatial, kernel, stride, pad, include: bool) -> np.ndarray:
    """The divisor of each window of an average pool (shape ``out``), float64."""
    out = out_shape(spatial, kernel, stride, (1,) * len(kernel), pad, "avg_pool")
    if include:
        return np.full(out, float(np.prod(kernel)))
    per = []
    for n, k, s, (lo, _), o in zip(spatial, kernel, stride, pad, out):
        start = np.arange(o) * s - lo
        per.append((np.minimum(start + k, n) - np.maximum(start, 0)).astype(np.float64))
    d = per[0]
    for p in per[1:]:
        d = np.multiply.outer(d, p)
    return d


def avg_pool_numpy(x, kernel, stride, pad, include):
    spatial = x.shape[2:]
    out = out_shape(spatial, kernel, stride, (1,) * len(kernel), pad, "avg_pool")
    xf = x.reshape(x.shape[:2] + (int(np.prod(spatial)),))
    acc = np.zeros(x.shape[:2] + out, x.dtype)
    for flat, inside in _taps(kernel, stride, (1,) * len(kernel), pad, spatial, out):
        acc = acc + np.where(inside, xf[..., flat.reshape(-1)].reshape(acc.shape), 0)
    return (acc / divisor(spatial, kernel, stride, pad, include)).astype(x.dtype)


def avg_pool_grad_numpy(g, spatial, kernel, stride, pad, include):
    nd = len(kernel)
    out = g.shape[2:]
    w = (g / divisor(spatial, kernel, stride, pad, include)).astype(g.dtype)
    res = np.zeros(g.shape[:2] + (int(np.prod(spatial)),), g.dtype)
    wf = w.reshape(g.shape[:2] + (int(np.prod(out)),))
    for flat, inside in _taps(kernel, stride, (1,) * nd, pad, spatial, out):
        sel = inside.reshape(-1)
        np.add.at(res, (slice(None), slice(None), flat.reshape(-1)[sel]), wf[..., sel])
    return res.reshape(g.shape[:2] + tuple(spatial))


# --- records -----------------------------------------------------------------------------------
def _window_rule(name, dtype=None):
    def infer(inputs, attrs):
        (x,) = inputs
        k = attrs["kernel"]
        where = f"{name}({label(x)})"
        if x.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"{where}: needs a float operand, got {x.dtype}")
        if x.ndim != len(k) + 2 or any(s is None for s in x.shape[1:]):
            raise ShapeError(f"{where}: needs (N, C, +{len(k)} static axes), "
                             f"got {shape_str(x.shape)}")
        out = out_shape(x.shape[2:], k, attrs["stride"], attrs["dilation"], attrs["pad"], where)
        return TensorType(x.shape[:2] + out, dtype or x.dtype)
    return infer


def _grad_rule(inputs, attrs):
    (g,) = inputs
    k, spatial = attrs["kernel"], attrs["spatial"]
    where = f"avg_pool_grad({label(g)})"
    out = out_shape(spatial, k, attrs["stride"], attrs["dilation"], attrs["pad"], where)
    if g.ndim != len(k) + 2 or tuple(g.shape[2:]) != out or g.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"{where}: needs float (N, C, *{out}), got {shape_str(g.shape)} "
                         f"{g.dtype}")
    return TensorType(g.shape[:2] + tuple(spatial), g.dtype)


def _max_np(args, node, env):
    return max_pool_numpy(args[0], **geometry(node))[0]


def _argmax_np(args, node, env):
    return max_pool_numpy(args[0], **geometry(node))[1]


def _avg_np(args, node, env):
    return avg_pool_numpy(args[0], node.attr("kernel"), node.attr("stride"), node.attr("pad"),
                          node.attr("include"))


def _avg_grad_np(args, node, env):
    return avg_pool_grad_numpy(args[0], node.attr("spatial"), node.attr("kernel"),
                               node.attr("stride"), node.attr("pad"), node.attr("include"))


def _max_vjp(node, g, needs):
    F = _F()
    x = node.inputs[0]
    N, C = x.shape[:2]
    idx = make("pool_argmax", (x,), geometry(node))
    rows = int(np.prod(node.shape[2:], dtype=np.int64))
    size = int(np.prod(x.shape[2:], dtype=np.int64))
    dump = padding_only(x.shape[2:], **geometry(node))     # a slot for padding-only windows
    from .gathers import scatter_add
    gx = scatter_add(F.reshape(g, (N, C, rows)), F.reshape(idx, (N, C, rows)),
                     (N, C, size + dump), axis=2, along=True)
    if dump:
        gx = gx[:, :, :size]
    return [F.reshape(gx, x.shape)]


def _max_jvp(node, tangents):
    """The tangent at the element each window selects (the transpose of the VJP's scatter;
    a padding-only window reads a zero slot)."""
    F, t = _F(), tangents[0]
    if t is None:
        return None
    x = node.inputs[0]
    N, C = x.shape[:2]
    idx = make("pool_argmax", (x,), geometry(node))
    rows = int(np.prod(node.shape[2:], dtype=np.int64))
    size = int(np.prod(x.shape[2:], dtype=np.int64))
    flat = F.reshape(t, (N, C, size))
    if padding_only(x.shape[2:], **geometry(node)):
        from .moves import embed
        flat = embed(flat, (0, 0, 0), (1, 1, 1), (N, C, size + 1))
    from .gathers import take_along_axis
    picked = take_along_axis(flat, F.reshape(idx, (N, C, rows)), axis=2)
    return F.reshape(picked, node.shape)


register(Op("max_pool", _window_rule("max_pool"), _max_np, _max_vjp, jvp=_max_jvp, arity=1,
            zero_preserving=True, display="max_pool", cost=2,
            doc="the maximum of each window (NaN propagates; the first maximum is selected)"))
register(Op("pool_argmax", _window_rule("pool_argmax", "int64"), _argmax_np,
            lambda node, g, needs: [None], arity=1, differentiable=False,
            display="pool_argmax",
            doc="the flat spatial index of the element max_pool selects in each window"))
register(Op("avg_pool", _window_rule("avg_pool"), _avg_np,
            lambda node, g, needs: [make("avg_pool_grad", (g,), dict(
                _avg_attrs(node), spatial=node.inputs[0].shape[2:]))],
            arity=1, jvp=through_first, linear=True, display="avg_pool",
            doc="the mean of each window (divided by the kernel size or the input elements)"))
register(Op("avg_pool_grad", _grad_rule, _avg_grad_np,
            lambda node, g, needs: [make("avg_pool", (g,), _avg_attrs(node))],
            arity=1, jvp=through_first, linear=True, display="avg_pool_grad",
            doc="avg_pool's adjoint: each window's share added back to its elements"))


# --- public functions --------------------------------------------------------------------------
def _window(nd, x, kernel_size, stride, padding, dilation, ceil_mode, name):
    F = _F()
    x = F._lift(x)
    where = f"{name}({label(x)})"
    spatial_operand(x, nd, where, label(x))
    if x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: needs a float operand, got {x.dtype}")
    if ceil_mode:
        raise ShapeError(f"{where}: ceil_mode=True is not supported (the windows end inside "
                         f"the padded input, as with ceil_mode=False)")
    k = ints("kernel_size", kernel_size, nd, where)
    st = k if stride is None else ints("stride", stride, nd, where)
    dil = ints("dilation", dilation, nd, where)
    if isinstance(padding, str):
        raise ShapeError(f"{where}: padding must be an int or a tuple of {nd} ints, "
                         f"got {padding!r}")
    p = ints("padding", padding, nd, where, minimum=0)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ShapeError(f"{where}: padding {p} must be at most half the kernel size {k} "
                         f"(as in PyTorch)")
    pad = tuple((pi, pi) for pi in p)
    out_shape(x.shape[2:], k, st, dil, pad, where)
    return x, window_attrs(k, st, dil, pad)


def _max_pool(nd, x, kernel_size, stride, padding, dilation, ceil_mode, name):
    x, at = _window(nd, x, kernel_size, stride, padding, dilation, ceil_mode, name)
    return make("max_pool", (x,), at)


def _avg_pool(nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, name):
    x, at = _window(nd, x, kernel_size, stride, padding, 1, ceil_mode, name)
    return make("avg_pool", (x,), dict(at, include=bool(count_include_pad)))


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Node:
    """PyTorch's ``F.max_pool1d``: ``x (N, C, L)``; ``stride`` defaults to ``kernel_size``;
    ``padding <= kernel_size // 2`` counts as -inf.  NaN propagates; the gradient goes to
    the first maximum of each window (row-major), summed over overlapping windows."""
    return _max_pool(1, x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool1d")


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Node:
    """PyTorch's ``F.max_pool2d``: ``x (N, C, H, W)``; see :func:`max_pool1d`."""
    return _max_pool(2, x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> Node:
    """PyTorch's ``F.avg_pool1d``: the mean of each window, padding counted as zeros in
    the divisor (``count_include_pad=True``) or left out of it (False)."""
    return _avg_pool(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     "avg_pool1d")


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> Node:
    """PyTorch's ``F.avg_pool2d``; see :func:`avg_pool1d`."""
    return _avg_pool(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     "avg_pool2d")


def _adaptive_kernel(nd, x, output_size, name):
    F = _F()
    x = F._lift(x)
    where = f"{name}({label(x)}, {output_size!r})"
    spatial_operand(x, nd, where, label(x))
    spatial = x.shape[2:]
    sizes = (output_size,) * nd if isinstance(output_size, int) or output_size is None \
        else tuple(output_size)
    if len(sizes) != nd:
        raise ShapeError(f"{where}: output_size must be an int or a tuple of {nd} ints")
    sizes = tuple(n if o is None else o for o, n in zip(sizes, spatial))
    if any(not isinstance(o, int) or isinstance(o, bool) or o < 1 for o in sizes):
        raise ShapeError(f"{where}: output sizes must be positive ints, got {sizes}")
    if any(n % o for n, o in zip(spatial, sizes)):
        raise ShapeError(f"{where}: the input's spatial size {spatial} is not a multiple of "
                         f"the output size {sizes} (only even windows are supported)")
    return x, tuple(n // o for n, o in zip(spatial, sizes)), sizes


def _adaptive_avg(nd, x, output_size, name):
    x, k, sizes = _adaptive_kernel(nd, x, output_size, name)
    if all(o == 1 for o in sizes):              # global average pooling: one reduction
        return _F().mean(x, axis=tuple(range(2, 2 + nd)), keepdims=True)
    return _avg_pool(nd, x, k, k, 0, False, True, name)


def _adaptive_max(nd, x, output_size, name):
    x, k, _ = _adaptive_kernel(nd, x, output_size, name)
    return _max_pool(nd, x, k, k, 0, 1, False, name)


def adaptive_avg_pool1d(x, output_size) -> Node:
    """PyTorch's ``F.adaptive_avg_pool1d`` when the input length is a multiple of
    ``output_size`` (windows of ``L / output_size``); 1 is a mean over the length."""
    return _adaptive_avg(1, x, output_size, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(x, output_size) -> Node:
    """PyTorch's ``F.adaptive_avg_pool2d`` when each spatial size is a multiple of the
    output size (``None`` keeps an axis); ``1`` is global average pooling (a mean over
    the spatial axes, keepdims)."""
    return _adaptive_avg(2, x, output_size, "adaptive_avg_pool2d")


def adaptive_max_pool1d(x, output_size) -> Node:
    """PyTorch's ``F.adaptive_max_pool1d`` for even windows (see adaptive_avg_pool1d)."""
    return _adaptive_max(1, x, output_size, "adaptive_max_pool1d")


def adaptive_max_pool2d(x, output_size) -> Node:
    """PyTorch's ``F.adaptive_max_pool2d`` for even windows (see adaptive_avg_pool2d)."""
    return _adaptive_max(2, x, output_size, "adaptive_max_pool2d")


__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"]
