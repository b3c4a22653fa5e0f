"""The llvm kernels of ``unfold`` (im2col) and ``fold`` (col2im), ops/unfold.py: row
copies and row adds instead of the map rules' per-element index arithmetic (fold's map
rule tests and loads every one of the ``Πkernel`` taps per output element).

For an image ``n``, a channel ``c`` and a kernel tap ``k``, the windows ``o`` whose input
position ``p = o·stride - lo + k·dilation`` lies inside the image form one box (bounds per
tap and axis, :func:`_box`), so

    unfold: cols[n, c, k, o] = x[n, c, o·s + shift(k)] inside the box, 0 outside it
            (per row: a zero run, a copy, a zero run);
    fold:   out[n, c] = 0;  for k in taps: for o in box(k): out[n, c, o·s + shift(k)]
            += cols[n, c, k, o]

whose innermost loops read a contiguous column row and, at stride 1, write a contiguous
row (vectorized).  Per output element fold adds the taps in the map rule's order (k
row-major), so both give the same sums.  Rows of the batch are split over the pool's
threads (:func:`.parallel.emit_step`).  The ptx backend keeps the map rules
(backends/lowering/windows.py: a gather suits a grid).
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...ir import Node
from ..lowering.irkit import c64, imax, imin, loop
from ..lowering.plan import Size, dim, numel
from .parallel import emit_step

I64 = ir.IntType(64)


def lower_fold(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a fold step."""
    cols = node.inputs[0]
    kernel, spatial = tuple(node.attr("kernel")), tuple(node.attr("spatial"))
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    nd, C = len(kernel), node.shape[1]
    outs = tuple(cols.shape[2 + nd:])
    plane, window = math.prod(spatial), math.prod(outs)
    part, b = lw._new_kernel(node, [cols], extra=(I64,), suffix=".part")
    out, src, batch, rows = part.args
    T = out.type.pointee
    zero = ir.Constant(T, 0.0)
    with loop(b, 0, b.mul(rows, c64(C * plane)), 1, "zero") as i:
        b.store(zero, b.gep(out, [i]))
    o_strides = [math.prod(outs[a + 1:]) for a in range(nd)]
    p_strides = [math.prod(spatial[a + 1:]) for a in range(nd)]
    with loop(b, 0, b.mul(rows, c64(C)), 1, "nc") as nc:
        obase = b.mul(nc, c64(plane))
        cbase = b.mul(nc, c64(math.prod(kernel) * window))
        _taps(b, nd, kernel, outs, spatial, stride, dil, pad, o_strides, p_strides,
              out, src, obase, cbase)
    b.ret_void()
    fn, b = lw._new_kernel(node, [cols])
    emit_step(lw.module, b, fn, part, dim(node.shape[0]), numel(cols.shape), 1,
              [Size(C * plane), Size(math.prod(cols.shape[1:]))])
    return fn, [cols]


def lower_unfold(lw, node: Node):
    """``Lowering -> (fn, operands)`` for an unfold step."""
    x = node.inputs[0]
    kernel, spatial = tuple(node.attr("kernel")), tuple(x.shape[2:])
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    nd, C = len(kernel), x.shape[1]
    outs = tuple(node.shape[2 + nd:])
    plane, window, taps = math.prod(spatial), math.prod(outs), math.prod(kernel)
    part, b = lw._new_kernel(node, [x], extra=(I64,), suffix=".part")
    out, src, batch, rows = part.args
    o_strides = [math.prod(outs[a + 1:]) for a in range(nd)]
    p_strides = [math.prod(spatial[a + 1:]) for a in range(nd)]

    def box_level(a, ks, xo, co):
        _box_rows(b, src, out, a, ks, xo, co, stride, dil, pad, spatial, outs, o_strides,
                  p_strides)

    def tap_level(a, ks, t, xo, co):
        if a == nd:
            box_level(0, ks, xo, b.add(co, b.mul(t, c64(window))))
            return
        with loop(b, 0, kernel[a], 1, f"k{a}") as k:
            tap_level(a + 1, ks + [k], b.add(b.mul(t, c64(kernel[a])), k), xo, co)

    with loop(b, 0, b.mul(rows, c64(C)), 1, "nc") as nc:
        tap_level(0, [], c64(0), b.mul(nc, c64(plane)), b.mul(nc, c64(taps * window)))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x])
    emit_step(lw.module, b, fn, part, dim(node.shape[0]), numel(node.shape), 1,
              [Size(C * taps * window), Size(C * plane)])
    return fn, [x]


def _box_rows(b, src, out, a, ks, xo, co, stride, dil, pad, spatial, outs, o_strides,
              p_strides):
    """One (channel, tap) row of the columns from axis ``a`` on: the windows inside the
    image copied from ``src + xo``, the others zeroed, at ``out + co``."""
    nd = len(spatial)
    zero = ir.Constant(out.type.pointee, 0.0)

    def fill(start, count):
        with loop(b, 0, count, 1, "z") as i:
            b.store(zero, b.gep(out, [b.add(start, i)]))

    k, s, d, (lo, _), n, on = ks[a], stride[a], dil[a], pad[a], spatial[a], outs[a]
    shift = b.sub(b.mul(k, c64(d)), c64(lo))
    first, last = _box(b, shift, s, n, on)
    if a + 1 == nd:      # a zero run, a copy, a zero run
        fill(co, first)
        with loop(b, first, last, 1, f"o{a}") as o:
            p = b.add(b.mul(o, c64(s)), shift)
            b.store(b.load(b.gep(src, [b.add(xo, p)])), b.gep(out, [b.add(co, o)]))
        fill(b.add(co, last), b.sub(c64(on), last))
        return
    with loop(b, 0, on, 1, f"o{a}") as o:
        co2 = b.add(co, b.mul(o, c64(o_strides[a])))
        inside = b.and_(b.icmp_signed(">=", o, first), b.icmp_signed("<", o, last))
        with b.if_else(inside) as (yes, no):
            with yes:
                p = b.add(b.mul(o, c64(s)), shift)
                _box_rows(b, src, out, a + 1, ks, b.add(xo, b.mul(p, c64(p_strides[a]))), co2,
                          stride, dil, pad, spatial, outs, o_strides, p_strides)
            with no:
                fill(co2, c64(o_strides[a]))


def emit_unfold_rows(module, node: Node, T, name: str) -> ir.Function:
    """``void rows(T* x_image, T* dst, i64 r0, i64 r1)``: rows ``r0 <= r < r1`` of one
    image's columns (row ``r`` = channel ``r // ΠK``, tap ``r % ΠK``; ``ΠO`` windows each),
    written from ``dst`` on, for the products that read an unfold as a window
    (:mod:`.window_gemm`)."""
    x = node.inputs[0]
    kernel, spatial = tuple(node.attr("kernel")), tuple(x.shape[2:])
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    nd = len(kernel)
    outs = tuple(node.shape[2 + nd:])
    plane, window, taps = math.prod(spatial), math.prod(outs), math.prod(kernel)
    o_strides = [math.prod(outs[a + 1:]) for a in range(nd)]
    p_strides = [math.prod(spatial[a + 1:]) for a in range(nd)]
    tp = T.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [tp, tp, I64, I64]),
                     name=name)
    fn.linkage = "internal"
    for a in fn.args[:2]:
        a.add_attribute("noalias")
    src, out, r0, r1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with loop(b, r0, r1, 1, "r") as r:
        c, t = b.sdiv(r, c64(taps)), b.srem(r, c64(taps))
        ks = [b.srem(b.sdiv(t, c64(math.prod(kernel[a + 1:]))), c64(kernel[a]))
              for a in range(nd)]
        _box_rows(b, src, out, 0, ks, b.mul(c, c64(plane)), b.mul(b.sub(r, r0), c64(window)),
                  stride, dil, pad, spatial, outs, o_strides, p_strides)
    b.ret_void()
    return fn


def emit_fold_rows(module, node: Node, T, name: str) -> ir.Function:
    """``void rows(T* cols, T* out_image, i64 c0, i64 c1)``: channels ``c0 <= c < c1`` of
    one image's fold, from those channels' rows of its columns at ``cols`` (a fold reading
    its product as a window, :func:`.window_gemm.lower_window_fold`); the same sums in the
    same order as :func:`lower_fold`."""
    cols = node.inputs[0]
    kernel, spatial = tuple(node.attr("kernel")), tuple(node.attr("spatial"))
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    nd = len(kernel)
    outs = tuple(cols.shape[2 + nd:])
    plane, window = math.prod(spatial), math.prod(outs)
    tp = T.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [tp, tp, I64, I64]), name=name)
    fn.linkage = "internal"
    for a in fn.args[:2]:
        a.add_attribute("noalias")
    src, out, c0, c1 = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    zero = ir.Constant(T, 0.0)
    with loop(b, b.mul(c0, c64(plane)), b.mul(c1, c64(plane)), 1, "zero") as i:
        b.store(zero, b.gep(out, [i]))
    o_strides = [math.prod(outs[a + 1:]) for a in range(nd)]
    p_strides = [math.prod(spatial[a + 1:]) for a in range(nd)]
    with loop(b, c0, c1, 1, "c") as c:
        _taps(b, nd, kernel, outs, spatial, stride, dil, pad, o_strides, p_strides, out, src,
              b.mul(c, c64(plane)), b.mul(b.sub(c, c0), c64(math.prod(kernel) * window)))
    b.ret_void()
    return fn


def _taps(b, nd, kernel, outs, spatial, stride, dil, pad, o_strides, p_strides, out, src,
          obase, cbase):
    """The loops over the taps, then over each tap's box of windows."""
    def tap_level(a, ks, cofs):
        if a == nd:
            box_level(0, ks, cofs, obase, cbase_k(cofs))
            return
        with loop(b, 0, kernel[a], 1, f"k{a}") as k:
            tap_level(a + 1, ks + [k], b.add(b.mul(cofs, c64(kernel[a])), k))

    def cbase_k(tap_index):
        return b.add(cbase, b.mul(tap_index, c64(math.prod(outs))))

    def box_level(a, ks, cofs, po, co):
        k, s, d, (lo, _), n, on = ks[a], stride[a], dil[a], pad[a], spatial[a], outs[a]
        shift = b.sub(b.mul(k, c64(d)), c64(lo))       # p = o·s + shift
        first, last = _box(b, shift, s, n, on)
        with loop(b, first, last, 1, f"o{a}") as o:
            p = b.add(b.mul(o, c64(s)), shift)
            po2 = b.add(po, b.mul(p, c64(p_strides[a])))
            co2 = b.add(co, b.mul(o, c64(o_strides[a])))
            if a + 1 < nd:
                box_level(a + 1, ks, cofs, po2, co2)
            else:
                at = b.gep(out, [po2])
                b.store(b.fadd(b.load(at), b.load(b.gep(src, [co2]))), at)

    tap_level(0, [], c64(0))


def _box(b, shift, s: int, n: int, on: int):
    """``[first, last)``: the windows o in [0, on) with 0 <= o·s + shift < n."""
    # o >= ceil(-shift / s), o <= floor((n - 1 - shift) / s)
    neg = b.sub(c64(0), shift)
    first = b.select(b.icmp_signed(">", neg, c64(0)),
                     imin(b, b.sdiv(b.add(neg, c64(s - 1)), c64(s)), c64(on)), c64(0))
    top = b.sub(c64(n - 1), shift)
    last = b.select(b.icmp_signed(">=", top, c64(0)),
                    imin(b, b.add(b.sdiv(top, c64(s)), c64(1)), c64(on)), c64(0))
    return first, imax(b, last, first)
