"""Convolutions (PyTorch's ``conv1d``/``conv2d``/``conv3d``) as three op records.

* ``conv(x, W)``: ``x: (N, C, *S)``, ``W: (C_out, C/groups, *K)`` -> ``(N, C_out, *O)``,
  ``z[n, o, p] = Σ_{c ∈ group(o), k} W[o, c, k] · x[n, c, p·stride - lo + k·dilation]``
  (a cross-correlation, as in every deep-learning framework).
* ``conv_transpose(g, W)``: its adjoint in ``x`` (``x̄ = conv_transpose(z̄, W)``), shape
  ``(N, C, *spatial)``; with ``g`` any ``(N, C_out, *O)`` it is PyTorch's transposed
  convolution (same weight layout as ``ConvTranspose``: ``W: (C_in_of_g, C/groups, *K)``).
* ``conv_weight(x, g)``: its adjoint in ``W`` (``W̄ = conv_weight(x, z̄)``), shape
  ``(C_out, C/groups, *kernel)``.

The three are bilinear and each one's VJP is written with the other two, so gradients of
any order stay convolutions (HVPs through a conv net).  Attributes: ``stride``,
``dilation``, ``pad`` (``((lo, hi), ...)``, ops/window.py), ``groups``; ``conv_transpose``
also ``spatial`` (the shape it produces), ``conv_weight`` also ``kernel``.

No backend has a rule for them (but see ops/conv_direct.py: a convolution of one input
channel is kept and computed directly): each record's ``expand`` writes it as ``unfold``
(im2col, ops/unfold.py) and a batched matrix product (``matmul``, or ``matmul_sum`` over
the batch for the weight gradient), and ``passes.expand`` applies that before lowering,
so the packed GEMM of each backend does the arithmetic.  The traced graph keeps the
records: the equations view writes ``x̄ = conv_transpose(z̄, W)``.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..ir import FLOAT_DTYPES, DTypeError, ShapeError, TensorType, label, shape_str
from .conv_direct import direct
from .registry import Op, make, register
from .tangents import product_rule
from .unfold import fold_numpy, unfold_numpy
from .window import attrs as window_attrs, ints, is_int, out_shape, padding, spatial_operand
from .window import shown as window_shown


def _F():
    from .. import frontend
    return frontend


def _common(node) -> dict:
    return {k: node.attr(k) for k in ("stride", "dilation", "pad", "groups")}


def _geometry(attrs: dict, kernel) -> dict:
    return window_attrs(kernel, attrs["stride"], attrs["dilation"], attrs["pad"])


def _floats(where: str, *nodes) -> None:
    if any(n.dtype not in FLOAT_DTYPES for n in nodes) or len({n.dtype for n in nodes}) > 1:
        got = ", ".join(f"{label(n)} {n.dtype}" for n in nodes)
        raise DTypeError(f"{where}: needs float operands of one dtype, got {got}")


def _check_weight(where: str, W, nd: int, groups: int, wname: str,
                  transposed: bool = False) -> None:
    """``W (C_out, C_in/groups, *K)``; transposed (PyTorch's ConvTranspose layout):
    ``(C_in, C_out/groups, *K)``; axis 0 divisible by ``groups`` either way."""
    first, second = ("C_in", "C_out") if transposed else ("C_out", "C_in")
    if W.ndim != nd + 2 or any(s is None for s in W.shape):
        dims = ", ".join(["kL"] if nd == 1 else ["kH", "kW"] if nd == 2 else ["k"] * nd)
        raise ShapeError(f"{where}: {wname} must have shape ({first}, {second}/groups, "
                         f"{dims}), got {shape_str(W.shape)}")
    if W.shape[0] % groups:
        what = "input" if transposed else "output"
        raise ShapeError(f"{where}: {wname} has {W.shape[0]} {what} channels, not divisible "
                         f"by groups={groups}")


def check_conv(where: str, x, W, groups: int, nd: int) -> None:
    """The declaration-time rule, naming the operands: ``conv2d(x, W1): x has 3 channels,
    W1 expects 1``."""
    lx, lw = label(x), label(W)
    spatial_operand(x, nd, where, lx)
    _check_weight(where, W, nd, groups, lw)
    want = W.shape[1] * groups
    if x.shape[1] != want:
        per = f" ({W.shape[1]} per group × groups={groups})" if groups > 1 else ""
        raise ShapeError(f"{where}: {lx} has {x.shape[1]} channels, {lw} expects {want}{per}")
    _floats(where, x, W)


# --- shape rules ---------------------------------------------------------------------------
def _conv_rule(inputs, attrs):
    x, W = inputs
    nd = len(attrs["stride"])
    where = f"conv({label(x)}, {label(W)})"
    check_conv(where, x, W, attrs["groups"], nd)
    out = out_shape(x.shape[2:], W.shape[2:], attrs["stride"], attrs["dilation"],
                    attrs["pad"], where, label(x))
    return TensorType((x.shape[0], W.shape[0]) + out, x.dtype)


def _transpose_rule(inputs, attrs):
    g, W = inputs
    nd, G, spatial = len(attrs["stride"]), attrs["groups"], tuple(attrs["spatial"])
    where = f"conv_transpose({label(g)}, {label(W)})"
    spatial_operand(g, nd, where, label(g))
    _check_weight(where, W, nd, G, label(W), transposed=True)
    if g.shape[1] != W.shape[0]:
        raise ShapeError(f"{where}: {label(g)} has {g.shape[1]} channels, {label(W)} "
                         f"expects {W.shape[0]}")
    out = out_shape(spatial, W.shape[2:], attrs["stride"], attrs["dilation"], attrs["pad"],
                    where)
    if tuple(g.shape[2:]) != out:
        raise ShapeError(f"{where}: an output of spatial size {spatial} has {out} windows, "
                         f"{label(g)} has {tuple(g.shape[2:])}")
    _floats(where, g, W)
    return TensorType((g.shape[0], W.shape[1] * G) + spatial, g.dtype)


def _weight_rule(inputs, attrs):
    x, g = inputs
    nd, G, kernel = len(attrs["stride"]), attrs["groups"], tuple(attrs["kernel"])
    where = f"conv_weight({label(x)}, {label(g)})"
    spatial_operand(x, nd, where, label(x))
    spatial_operand(g, nd, where, label(g))
    if x.shape[0] != g.shape[0]:
        raise ShapeError(f"{where}: batch sizes {shape_str(x.shape[:1])} and "
                         f"{shape_str(g.shape[:1])} differ")
    if x.shape[1] % G or g.shape[1] % G:
        raise ShapeError(f"{where}: channels {x.shape[1]} and {g.shape[1]} must be "
                         f"divisible by groups={G}")
    out = out_shape(x.shape[2:], kernel, attrs["stride"], attrs["dilation"], attrs["pad"],
                    where, label(x))
    if tuple(g.shape[2:]) != out:
        raise ShapeError(f"{where}: {label(x)} has {out} windows, {label(g)} has "
                         f"{tuple(g.shape[2:])}")
    _floats(where, x, g)
    return TensorType((g.shape[1], x.shape[1] // G) + kernel, x.dtype)


# --- numpy references ----------------------------------------------------------------------
def _cols(x, kernel, attrs):
    """``(N, G, C/G·ΠK, ΠO)``: x's windows, grouped."""
    c = unfold_numpy(x, kernel, attrs["stride"], attrs["dilation"], attrs["pad"])
    L = math.prod(c.shape[2 + len(kernel):])
    per = math.prod(c.shape[1:2 + len(kernel)]) // attrs["groups"]    # (no -1: batch 0)
    return c.reshape(c.shape[0], attrs["groups"], per, L), c.shape


def _conv_np(args, node, env):
    x, W = args
    a = dict(node.attrs)
    cols, _ = _cols(x, W.shape[2:], a)
    G = a["groups"]
    z = np.einsum("gok,ngkl->ngol", W.reshape(G, W.shape[0] // G, -1), cols)
    return z.reshape((x.shape[0],) + node.shape[1:]).astype(node.dtype)


def _conv_transpose_np(args, node, env):
    g, W = args
    a, G, N = dict(node.attrs), node.attr("groups"), g.shape[0]
    kernel, spatial = W.shape[2:], node.attr("spatial")
    gr = g.reshape(N, G, g.shape[1] // G, -1)
    cols = np.einsum("gok,ngol->ngkl", W.reshape(G, W.shape[0] // G, -1), gr)
    cols = cols.reshape((N, node.shape[1]) + tuple(kernel) + g.shape[2:])
    return fold_numpy(cols, spatial, kernel, a["stride"], a["dilation"],
                      a["pad"]).astype(node.dtype)


def _conv_weight_np(args, node, env):
    x, g = args
    a, G = dict(node.attrs), node.attr("groups")
    cols, _ = _cols(x, node.attr("kernel"), a)
    gr = g.reshape(g.shape[0], G, g.shape[1] // G, math.prod(g.shape[2:]))
    return np.einsum("ngol,ngkl->gok", gr, cols).reshape(node.shape).astype(node.dtype)


# --- derivatives: each record's VJP is written with the other two ---------------------------
def conv_node(x, W, attrs: dict):
    return make("conv", (x, W), attrs)


def conv_transpose_node(g, W, attrs: dict, spatial):
    return make("conv_transpose", (g, W), dict(attrs, spatial=tuple(spatial)))


def conv_weight_node(x, g, attrs: dict, kernel):
    return make("conv_weight", (x, g), dict(attrs, kernel=tuple(kernel)))


def _conv_vjp(node, g, needs):
    x, W = node.inputs
    a = _common(node)
    return [conv_transpose_node(g, W, a, x.shape[2:]) if needs[0] else None,
            conv_weight_node(x, g, a, W.shape[2:]) if needs[1] else None]


def _conv_transpose_vjp(node, u, needs):
    g, W = node.inputs
    a = _common(node)
    return [conv_node(u, W, a) if needs[0] else None,
            conv_weight_node(u, g, a, W.shape[2:]) if needs[1] else None]


def _conv_weight_vjp(node, v, needs):
    x, g = node.inputs
    a = _common(node)
    return [conv_transpose_node(g, v, a, x.shape[2:]) if needs[0] else None,
            conv_node(x, v, a) if needs[1] else None]


# --- lowering: windows as columns, then a batched matrix product ----------------------------
def _grouped(F, t, G: int, rows: int):
    """``(N, C, ...)`` -> ``(N, C·…, L)`` (G = 1) or ``(N, G, C/G·…, L)``."""
    N, L = t.shape[0], rows
    total = math.prod(t.shape[1:]) // L
    return F.reshape(t, (N, total, L) if G == 1 else (N, G, total // G, L))


def _weights(F, W, G: int):
    """``W: (C_out, C/G, *K)`` as ``(1, C_out, C/G·ΠK)`` or ``(1, G, C_out/G, C/G·ΠK)``."""
    per = math.prod(W.shape[1:])
    return F.reshape(W, (1, W.shape[0], per) if G == 1 else (1, G, W.shape[0] // G, per))


def _swap(F, t):
    return F.transpose(t, tuple(range(t.ndim - 2)) + (t.ndim - 1, t.ndim - 2))


def _expand_conv(node, ins):
    if direct(node):            # kept: computed from the image (ops/conv_direct.py)
        return None
    F, (x, W), G = _F(), ins, node.attr("groups")
    cols = make("unfold", (x,), _geometry(dict(node.attrs), W.shape[2:]))
    L = math.prod(node.shape[2:])
    z = make("matmul", (_weights(F, W, G), _grouped(F, cols, G, L)))
    return F.reshape(z, node.shape)


def _expand_conv_transpose(node, ins):
    F, (g, W), G = _F(), ins, node.attr("groups")
    a = dict(node.attrs)
    L = math.prod(g.shape[2:])
    cols = make("matmul", (_swap(F, _weights(F, W, G)), _grouped(F, g, G, L)))
    cols = F.reshape(cols, node.shape[:2] + W.shape[2:] + g.shape[2:])
    return make("fold", (cols,), dict(_geometry(a, W.shape[2:]), spatial=node.shape[2:]))


def _expand_conv_weight(node, ins):
    if direct(node):
        return None
    F, (x, g), G = _F(), ins, node.attr("groups")
    a = dict(node.attrs)
    cols = make("unfold", (x,), _geometry(a, a["kernel"]))
    L = math.prod(g.shape[2:])
    gr, cr = _grouped(F, g, G, L), _swap(F, _grouped(F, cols, G, L))
    if G == 1:
        w = make("matmul_sum", (gr, cr))
    else:
        w = F.sum(make("matmul", (gr, cr)), axis=0)
    return F.reshape(w, node.shape)


_LATEX = r"\operatorname{%s}"
register(Op("conv", _conv_rule, _conv_np, _conv_vjp, jvp=product_rule, arity=2, linear=True,
            display="conv", latex=_LATEX % "conv", expand=_expand_conv, shown=window_shown,
            doc="a convolution (cross-correlation) of x with W"))
register(Op("conv_transpose", _transpose_rule, _conv_transpose_np, _conv_transpose_vjp,
            jvp=product_rule, arity=2, linear=True, display="conv_transpose",
            latex=_LATEX % "conv\\_transpose", expand=_expand_conv_transpose,
            shown=window_shown,
            doc="the transposed convolution: conv's adjoint in x"))
register(Op("conv_weight", _weight_rule, _conv_weight_np, _conv_weight_vjp, jvp=product_rule,
            arity=2,
            linear=True, display="conv_weight", latex=_LATEX % "conv\\_weight",
            expand=_expand_conv_weight, shown=partial(window_shown, hide=("kernel",)),
            doc="the correlation of x with a cotangent: conv's adjoint in W"))


# --- the public functions ------------------------------------------------------------------
def _groups(groups, where: str) -> int:
    if not is_int(groups) or groups < 1:
        raise ShapeError(f"{where}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _bias(F, b, z, where: str):
    """``z + b`` over the channel axis; ``b`` a float vector of ``z``'s channels."""
    b = F._lift(b, z)
    if b.shape != (z.shape[1],):
        raise ShapeError(f"{where}: the bias {label(b)} must have shape ({z.shape[1]},), "
                         f"got {shape_str(b.shape)}")
    if b.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: the bias {label(b)} must be a float vector, got {b.dtype}")
    return z + F.reshape(b, (z.shape[1],) + (1,) * (z.ndim - 2))


def _conv(nd: int, x, W, b, stride, padding_, dilation, groups):
    F = _F()
    x, W = F._lift(x), F._lift(W)
    where = f"conv{nd}d({label(x)}, {label(W)})"
    groups = _groups(groups, where)
    if x.dtype != W.dtype and {x.dtype, W.dtype} <= set(FLOAT_DTYPES):
        x, W = F._promote([x, W], where)
    check_conv(where, x, W, groups, nd)
    kernel = W.shape[2:]
    st = ints("stride", stride, nd, where)
    dil = ints("dilation", dilation, nd, where)
    pad = padding(padding_, kernel, st, dil, where)
    out_shape(x.shape[2:], kernel, st, dil, pad, where, label(x))
    z = conv_node(x, W, {"stride": st, "dilation": dil, "pad": pad, "groups": groups})
    return z if b is None else _bias(F, b, z, where)


def conv1d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's ``F.conv1d``: ``x (N, C, L)``, ``W (C_out, C/groups, k)``, optional bias
    ``(C_out,)``; ``padding`` an int, a 1-tuple, ``"same"`` or ``"valid"``."""
    return _conv(1, x, W, b, stride, padding, dilation, groups)


def conv2d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's ``F.conv2d``: ``x (N, C, H, W)``, ``W (C_out, C/groups, kH, kW)``,
    optional bias ``(C_out,)``; ``stride``, ``padding``, ``dilation`` an int or a pair;
    ``padding`` also ``"same"`` (stride 1) or ``"valid"``; ``groups = C`` is depthwise."""
    return _conv(2, x, W, b, stride, padding, dilation, groups)


def conv3d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's ``F.conv3d``: ``x (N, C, D, H, W)``, ``W (C_out, C/groups, kD, kH, kW)``."""
    return _conv(3, x, W, b, stride, padding, dilation, groups)


def _conv_transpose(nd, x, W, b, stride, padding_, output_padding, dilation, groups):
    F = _F()
    x, W = F._lift(x), F._lift(W)
    where = f"conv_transpose{nd}d({label(x)}, {label(W)})"
    spatial_operand(x, nd, where, label(x))
    groups = _groups(groups, where)
    _check_weight(where, W, nd, groups, label(W), transposed=True)
    if x.shape[1] != W.shape[0]:
        raise ShapeError(f"{where}: {label(x)} has {x.shape[1]} channels, {label(W)} "
                         f"expects {W.shape[0]}")
    if x.dtype != W.dtype and {x.dtype, W.dtype} <= set(FLOAT_DTYPES):
        x, W = F._promote([x, W], where)
    _floats(where, x, W)
    kernel = W.shape[2:]
    st = ints("stride", stride, nd, where)
    dil = ints("dilation", dilation, nd, where)
    if isinstance(padding_, str):
        raise ShapeError(f"{where}: padding must be an int or a tuple, got {padding_!r}")
    pad = padding(padding_, kernel, st, dil, where)
    extra = ints("output_padding", output_padding, nd, where, minimum=0)
    if any(e >= max(s, d) for e, s, d in zip(extra, st, dil)):
        raise ShapeError(f"{where}: output_padding {extra} must be smaller than the stride "
                         f"or the dilation")
    spatial = tuple((i - 1) * s - lo - hi + d * (k - 1) + e + 1
                    for i, s, (lo, hi), d, k, e in zip(x.shape[2:], st, pad, dil, kernel, extra))
    if any(n <= 0 for n in spatial):
        raise ShapeError(f"{where}: the output would have spatial size {spatial}")
    # output_padding >= stride (allowed when the dilation is larger) leaves whole windows
    # of the output that no input position feeds: they read zeros (x padded at the end)
    wins = out_shape(spatial, kernel, st, dil, pad, where)
    if wins != tuple(x.shape[2:]):
        from .moves import pad as pad_
        x = pad_(x, [(0, 0), (0, 0)] + [(0, w - i) for w, i in zip(wins, x.shape[2:])])
    z = conv_transpose_node(x, W, {"stride": st, "dilation": dil, "pad": pad,
                                   "groups": groups}, spatial)
    return z if b is None else _bias(F, b, z, where)


def conv_transpose1d(x, W, b=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """PyTorch's ``F.conv_transpose1d``: ``W (C_in, C_out/groups, k)``."""
    return _conv_transpose(1, x, W, b, stride, padding, output_padding, dilation, groups)


def conv_transpose2d(x, W, b=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """PyTorch's ``F.conv_transpose2d``: ``W (C_in, C_out/groups, kH, kW)``; the output
    size is ``(in - 1)·stride - 2·padding + dilation·(k - 1) + output_padding + 1``."""
    return _conv_transpose(2, x, W, b, stride, padding, output_padding, dilation, groups)
