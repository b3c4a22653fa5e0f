"""The llvm kernels of ``max_pool`` and ``pool_argmax`` (ops/pooling.py) for windows without
padding: every tap of every window then lies inside the input, so the map rule's per-tap
tests (inside? anything selected yet?) drop out and the kernel is loops over the image
rows ``(n, c)`` and the output positions, the taps unrolled, the innermost loop over the
last output axis reading each tap at a constant offset (vectorized by LLVM).

The scan is the map rule's (backends/lowering/pools.py): taps in row-major order, a tap
replaces the current one when it is greater, or a NaN while the current one is not (the
first maximum; the first NaN).  With padding the map rule is used (the ptx backend always
uses it).  Rows of the batch are split over the pool's threads (:func:`.parallel.emit_step`).
"""
from __future__ import annotations

import itertools
import math

from llvmlite import ir

from ...ir import Node
from ..lowering.irkit import c64, declare, loop
from ..lowering.printer import LLVM_TYPES
from ..lowering.plan import Size, dim, numel
from .parallel import emit_step

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)


def _suffix(t) -> str:
    return {"float": "f32", "double": "f64", "i64": "i64"}[str(t)]


def lower_max_pool(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a max_pool or pool_argmax step."""
    x = node.inputs[0]
    if any(lo or hi for lo, hi in node.attr("pad")):
        return lw._map(node)
    want_index = node.op == "pool_argmax"
    kernel, stride, dil = node.attr("kernel"), node.attr("stride"), node.attr("dilation")
    spatial, outs = tuple(x.shape[2:]), tuple(node.shape[2:])
    nd, C = len(kernel), x.shape[1]
    plane, window = math.prod(spatial), math.prod(outs)
    p_strides = [math.prod(spatial[a + 1:]) for a in range(nd)]
    o_strides = [math.prod(outs[a + 1:]) for a in range(nd)]
    # taps of the axes before the last (offsets of rows), the last axis' taps per row
    rows_taps = [sum(t * d * ps for t, d, ps in zip(combo, dil, p_strides))
                 for combo in itertools.product(*[range(k) for k in kernel[:-1]])]
    s, d, kw, ow = stride[-1], dil[-1], kernel[-1], outs[-1]
    T = LLVM_TYPES[x.dtype]
    VL = 16 if x.dtype == "float32" else 8
    OT = T if not want_index else I64

    def span(n):                 # input elements the windows of n outputs read
        return (n - 1) * s + (kw - 1) * d + 1
    LW = -(-span(VL) // VL) * VL
    wide, lanes = ir.VectorType(T, LW), ir.VectorType(OT, VL)
    part, b = lw._new_kernel(node, [x], extra=(I64,), suffix=".part")
    out, src, batch, rows = part.args
    mload = declare(lw.module, f"llvm.masked.load.v{LW}{_suffix(T)}.p0", ir.FunctionType(
        wide, [wide.as_pointer(), I32, ir.VectorType(I1, LW), wide]))
    vec = ir.VectorType(T, VL)
    vload = declare(lw.module, f"llvm.masked.load.v{VL}{_suffix(T)}.p0", ir.FunctionType(
        vec, [vec.as_pointer(), I32, ir.VectorType(I1, VL), vec]))
    mstore = declare(lw.module, f"llvm.masked.store.v{VL}{_suffix(OT)}.p0", ir.FunctionType(
        ir.VoidType(), [lanes, lanes.as_pointer(), I32, ir.VectorType(I1, VL)]))
    align_in = ir.Constant(I32, 4 if x.dtype == "float32" else 8)
    align_out = ir.Constant(I32, 4 if OT == T and x.dtype == "float32" else 8)
    undef_w = ir.Constant(wide, None)

    def splat(v, vt):
        one = b.insert_element(ir.Constant(vt, None), v, ir.Constant(I32, 0))
        return b.shuffle_vector(one, ir.Constant(vt, None), ir.Constant(
            ir.VectorType(I32, vt.count), [0] * vt.count))

    def chunk(xa, oa, c, n):
        """Outputs c .. c+n of the last axis (n static): one masked load per row of taps,
        the taps of the last axis shuffled out of it (at stride 1, one masked load per
        tap: LLVM 22 was seen to drop a lane extraction from the shuffled form when a
        single output was left)."""
        lmask = ir.Constant(ir.VectorType(I1, LW), [int(i < span(n)) for i in range(LW)])
        start = b.add(xa, b.mul(c, c64(s)))            # flat offset of the first window
        best = where = None
        nmask = ir.Constant(ir.VectorType(I1, VL), [int(i < n) for i in range(VL)])
        for r in rows_taps:
            at = b.gep(src, [b.add(base, b.add(start, c64(r)) if r else start)])
            if s > 1:
                row = b.call(mload, [b.bitcast(at, wide.as_pointer()), align_in, lmask,
                                     ir.Constant(wide, [0.0] * LW)])
            for j in range(kw):
                sel = [o * s + j * d for o in range(VL)]
                if s > 1:
                    v = b.shuffle_vector(row, undef_w,
                                         ir.Constant(ir.VectorType(I32, VL), sel))
                else:       # stride 1: each tap's lanes are contiguous, one load per tap
                    v = b.call(vload, [b.bitcast(b.gep(at, [c64(j * d)]), vec.as_pointer()),
                                       align_in, nmask, ir.Constant(vec, [0.0] * VL)])
                flat = None
                if want_index:
                    flat = b.add(splat(b.add(start, c64(r)) if r else start, lanes),
                                 ir.Constant(lanes, sel))
                if best is None:
                    best, where = v, flat
                    continue
                take = b.or_(b.fcmp_ordered(">", v, best),
                             b.and_(b.fcmp_unordered("uno", v, v),
                                    b.fcmp_ordered("ord", best, best)))
                best = b.select(take, v, best)
                if want_index:
                    where = b.select(take, flat, where)
        smask = ir.Constant(ir.VectorType(I1, VL), [int(i < n) for i in range(VL)])
        dst = b.gep(out, [b.add(obase, b.add(oa, c))])
        b.call(mstore, [where if want_index else best, b.bitcast(dst, lanes.as_pointer()),
                        align_out, smask])

    def level(a, xo, oo):
        """Loops over output axis ``a``; ``xo``: flat spatial offset of the window start."""
        if a + 1 == nd:
            full = ow // VL * VL
            if full:
                with loop(b, 0, full, VL, "c") as c:
                    chunk(xo, oo, c, VL)
            if ow > full:
                chunk(xo, oo, c64(full), ow - full)
            return
        with loop(b, 0, outs[a], 1, f"o{a}") as o:
            level(a + 1, b.add(xo, b.mul(o, c64(stride[a] * p_strides[a]))),
                  b.add(oo, b.mul(o, c64(o_strides[a]))))

    with loop(b, 0, b.mul(rows, c64(C)), 1, "nc") as nc:
        base, obase = b.mul(nc, c64(plane)), b.mul(nc, c64(window))
        level(0, c64(0), c64(0))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x])
    emit_step(lw.module, b, fn, part, dim(node.shape[0]), numel(x.shape), 1,
              [Size(C * window), Size(C * plane)])
    return fn, [x]
