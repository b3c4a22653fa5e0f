"""The llvm kernels of the convolutions kept by ``passes.expand`` (ops/conv_direct.py: one
input channel, groups 1, 2-d, stride 1, dilation 1, output rows of at most 32): computed
from the image, without its unfolded windows (ΠK times the image, written once and read
twice by the unfold + product form).  With ``x (N, 1, H, W)``, padding ``(lo_h, lo_w)``:

* ``conv``, per image ``n`` and output row ``oh``: the accumulators of every output channel
  and every vector of the row (``C_out × ⌈OW/VL⌉`` registers), then per tap ``(i, j)`` one
  masked load of input row ``oh + i - lo_h`` at column offset ``j - lo_w`` (lanes on the
  padding, or the whole row when it is padding, read 0) and a multiply-add per output
  channel: ``z = Σ_k W[o, k]·x_k``, taps in row-major order, the padding adding ``W·0``;
* ``conv_weight``, per tap row ``i`` and block of output channels ``o`` (split over the
  pool's threads): accumulators per ``(o, j)`` (one input vector serves every channel of
  the block), a loop over the images and output rows adding
  ``g[n, o, oh, :] · x[n, 0, oh + i - lo_h, j - lo_w + :]``, then a tree sum of the lanes.

Masks are constants per (vector, tap) and the row's validity a splat, so the loops are
straight-line vector code.  Anything else (a batch-free shape, f16) uses the map rules of
backends/lowering/convs.py (shared with the ptx backend).
"""
from __future__ import annotations


from llvmlite import ir

from ...ir import Node
from ...ops.conv_direct import kind
from ..lowering.irkit import c64, declare, loop
from ..lowering.loops import accumulate, size_value
from ..lowering.plan import ZERO, Size, dim, numel
from ..lowering.printer import LLVM_TYPES
from .parallel import emit_step

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
SUFFIX = {"float32": "f32", "float64": "f64"}


class _Vec:
    """Vector helpers of one kernel: masked loads/stores, splats, multiply-adds."""

    def __init__(self, module, b, dtype: str):
        self.b, self.T = b, LLVM_TYPES[dtype]
        self.VL = 16 if dtype == "float32" else 8
        self.V = ir.VectorType(self.T, self.VL)
        self.M = ir.VectorType(I1, self.VL)
        sfx = f"v{self.VL}{SUFFIX[dtype]}"
        self.align = ir.Constant(I32, 4 if dtype == "float32" else 8)
        self._load = declare(module, f"llvm.masked.load.{sfx}.p0", ir.FunctionType(
            self.V, [self.V.as_pointer(), I32, self.M, self.V]))
        self._store = declare(module, f"llvm.masked.store.{sfx}.p0", ir.FunctionType(
            ir.VoidType(), [self.V, self.V.as_pointer(), I32, self.M]))
        self._fma = declare(module, f"llvm.fmuladd.{sfx}", ir.FunctionType(
            self.V, [self.V, self.V, self.V]))
        self.zero = ir.Constant(self.V, [0.0] * self.VL)

    def mask(self, lanes) -> ir.Constant:
        return ir.Constant(self.M, [int(bool(v)) for v in lanes])

    def load(self, ptr, mask):
        b = self.b
        return b.call(self._load, [b.bitcast(ptr, self.V.as_pointer()), self.align, mask,
                                   self.zero])

    def store(self, v, ptr, mask):
        b = self.b
        b.call(self._store, [v, b.bitcast(ptr, self.V.as_pointer()), self.align, mask])

    def splat(self, v):
        b = self.b
        one = b.insert_element(ir.Constant(self.V, None), v, ir.Constant(I32, 0))
        return b.shuffle_vector(one, ir.Constant(self.V, None),
                                ir.Constant(ir.VectorType(I32, self.VL), [0] * self.VL))

    def fma(self, a, x, acc):
        return self.b.call(self._fma, [a, x, acc])

    def hsum(self, v):
        """The sum of the lanes (a tree of halves)."""
        b, n = self.b, self.VL
        while n > 1:
            n //= 2
            hi = b.shuffle_vector(v, ir.Constant(v.type, None), ir.Constant(
                ir.VectorType(I32, self.VL), list(range(n, 2 * n)) + [n] * (self.VL - n)))
            v = b.fadd(v, hi)
        return b.extract_element(v, ir.Constant(I32, 0))


def _geometry(node: Node, x: Node, outs):
    (lh, _), (lw_, _) = node.attr("pad")
    H, W = x.shape[2:]
    OH, OW = outs
    return H, W, OH, OW, lh, lw_


def _chunks(vec: _Vec, OW: int):
    """(first column, columns) of each vector of an output row."""
    return [(c, min(vec.VL, OW - c)) for c in range(0, OW, vec.VL)]


def _in_mask(vec, c, n, j, lo, W, ok):
    """Lanes of the vector at output column c (n valid) reading input column c+l+j-lo
    inside [0, W), and'ed with the row's validity ``ok`` (an i1)."""
    static = vec.mask(l < n and 0 <= c + l + j - lo < W for l in range(vec.VL))
    return vec.b.and_(static, vec.b.select(ok, vec.mask([1] * vec.VL),
                                           vec.mask([0] * vec.VL)))


def _other_path(lw, node: Node, channels):
    """The step when it is not the one-input-channel kernel: the map rule (a dtype or shape
    the kernels do not take) or the channel-vector kernel ``channels``; else None."""
    if node.inputs[0].dtype not in SUFFIX or kind(node) is None:
        return lw._map(node)
    if kind(node) == "channels":
        return channels(lw, node)
    return None


def lower_conv(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a kept ``conv`` step."""
    other = _other_path(lw, node, _conv_channels)
    if other is not None:
        return other
    x, Wt = node.inputs
    Co, (kh, kw) = Wt.shape[0], Wt.shape[2:]
    H, W, OH, OW, lo_h, lo_w = _geometry(node, x, node.shape[2:])
    part, b = lw._new_kernel(node, [x, Wt], extra=(I64,), suffix=".part")
    out, src, wts, batch, rows = part.args
    vec = _Vec(lw.module, b, node.dtype)
    chunks = _chunks(vec, OW)
    with loop(b, 0, rows, 1, "n") as n:
        xo, oo = b.mul(n, c64(H * W)), b.mul(n, c64(Co * OH * OW))
        with loop(b, 0, OH, 1, "oh") as oh:
            accs = [[vec.zero] * len(chunks) for _ in range(Co)]
            for i in range(kh):
                h = b.add(oh, c64(i - lo_h)) if i != lo_h else oh
                ok = b.icmp_unsigned("<", h, c64(H))
                row = b.add(xo, b.mul(b.select(ok, h, c64(0)), c64(W)))
                for j in range(kw):
                    ws = [vec.splat(b.load(b.gep(wts, [c64((o * kh + i) * kw + j)])))
                          for o in range(Co)]
                    for ci, (c, cnt) in enumerate(chunks):
                        v = vec.load(b.gep(src, [b.add(row, c64(c + j - lo_w))]),
                                     _in_mask(vec, c, cnt, j, lo_w, W, ok))
                        for o in range(Co):
                            accs[o][ci] = vec.fma(ws[o], v, accs[o][ci])
            base = b.add(oo, b.mul(oh, c64(OW)))
            for o in range(Co):
                for ci, (c, cnt) in enumerate(chunks):
                    vec.store(accs[o][ci], b.gep(out, [b.add(base, c64(o * OH * OW + c))]),
                              vec.mask(l < cnt for l in range(vec.VL)))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x, Wt])
    emit_step(lw.module, b, fn, part, dim(node.shape[0]), numel(node.shape), kh * kw,
              [Size(Co * OH * OW), Size(H * W), ZERO])
    return fn, [x, Wt]


def lower_conv_weight(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a kept ``conv_weight`` step."""
    other = _other_path(lw, node, _conv_weight_channels)
    if other is not None:
        return other
    x, g = node.inputs
    Co, (kh, kw) = g.shape[1], node.attr("kernel")
    H, W, OH, OW, lo_h, lo_w = _geometry(node, x, g.shape[2:])
    OB = max(1, min(Co, 16 // kw))          # output channels per row of the split
    blocks = -(-Co // OB)
    part, b = lw._new_kernel(node, [x, g], extra=(I64, I64), suffix=".part")
    out, src, gs, batch, rows, first = part.args
    vec = _Vec(lw.module, b, node.dtype)
    chunks = _chunks(vec, OW)
    N = size_value(b, dim(x.shape[0]), batch)
    with loop(b, 0, rows, 1, "r") as rr:
        r = b.add(rr, first)                 # (tap row i, block of output channels)
        i, o0 = b.udiv(r, c64(blocks)), b.mul(b.urem(r, c64(blocks)), c64(OB))
        # the last block may hold fewer channels: its extra ones repeat the block's first
        # (read, never stored)
        chans = [b.select(b.icmp_unsigned("<", b.add(o0, c64(k)), c64(Co)),
                          b.add(o0, c64(k)), o0) for k in range(OB)]

        def per_row(oh, accs, n):
            h = b.sub(b.add(oh, i), c64(lo_h))
            ok = b.icmp_unsigned("<", h, c64(H))
            row = b.add(b.mul(n, c64(H * W)), b.mul(b.select(ok, h, c64(0)), c64(W)))
            accs = list(accs)
            for c, cnt in chunks:
                xs = [vec.load(b.gep(src, [b.add(row, c64(c + j - lo_w))]),
                               _in_mask(vec, c, cnt, j, lo_w, W, ok)) for j in range(kw)]
                for k, o in enumerate(chans):
                    grow = b.mul(b.add(b.mul(b.add(b.mul(n, c64(Co)), o), c64(OH)), oh),
                                 c64(OW))
                    gv = vec.load(b.gep(gs, [b.add(grow, c64(c))]),
                                  vec.mask(l < cnt for l in range(vec.VL)))
                    for j in range(kw):
                        accs[k * kw + j] = vec.fma(gv, xs[j], accs[k * kw + j])
            return accs

        def per_image(n, accs):
            return accumulate(b, c64(0), c64(OH), c64(1), list(accs),
                              lambda oh, a: per_row(oh, a, n))
        accs = accumulate(b, c64(0), N, c64(1), [vec.zero] * (OB * kw), per_image)
        for k in range(OB):
            o = b.add(o0, c64(k))
            with b.if_then(b.icmp_unsigned("<", o, c64(Co))):
                for j in range(kw):
                    at = b.add(b.mul(b.add(b.mul(o, c64(kh)), i), c64(kw)), c64(j))
                    b.store(vec.hsum(accs[k * kw + j]), b.gep(out, [at]))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x, g])
    emit_step(lw.module, b, fn, part, Size(kh * blocks), numel(g.shape), kh * kw,
              [ZERO, ZERO, ZERO], first=True)
    return fn, [x, g]


def _conv_channels(lw, node: Node):
    """A forward conv with a vector of output channels per output position: per image,
    output row and block of positions, the accumulators ``[position][channel vector]``
    over the input channels and tap rows (loops) and the tap columns (unrolled), each
    weight vector (from a ``[c, i, j][o]`` copy on the stack) times a broadcast input
    element; the row then goes through a ``[ow][o]`` tile to ``z[n, o, oh, :]``."""
    x, Wt = node.inputs
    C, Co, (kh, kw) = x.shape[1], node.shape[1], Wt.shape[2:]
    H, W, OH, OW, lo_h, lo_w = _geometry(node, x, node.shape[2:])
    CK = C * kh * kw
    part, b = lw._new_kernel(node, [x, Wt], extra=(I64,), suffix=".part")
    out, src, wts, batch, rows = part.args
    vec = _Vec(lw.module, b, node.dtype)
    VL, T = vec.VL, vec.T
    NV = Co // VL
    full = vec.mask([1] * VL)

    def stack(n):
        a = b.alloca(ir.ArrayType(T, n))
        a.align = 64
        return b.bitcast(a, T.as_pointer())
    wt, tile = stack(CK * Co), stack(OW * Co)
    with loop(b, 0, Co, 1, "o") as o:
        with loop(b, 0, CK, 1, "k") as k:
            b.store(b.load(b.gep(wts, [b.add(b.mul(o, c64(CK)), k)])),
                    b.gep(wt, [b.add(b.mul(k, c64(Co)), o)]))
    PB = max(1, min(OW, 20 // NV))              # positions per block of accumulators
    zero_s = ir.Constant(T, 0.0)
    with loop(b, 0, rows, 1, "n") as n:
        with loop(b, 0, OH, 1, "oh") as oh:
            for s0 in range(0, OW, PB):
                cnt = min(PB, OW - s0)

                def per_row(i, accs, c):
                    h = b.sub(b.add(oh, i), c64(lo_h))
                    ok = b.icmp_unsigned("<", h, c64(H))
                    row = b.mul(b.add(b.mul(b.add(b.mul(n, c64(C)), c), c64(H)),
                                      b.select(ok, h, c64(0))), c64(W))
                    accs = list(accs)
                    for j in range(kw):
                        k = b.add(b.mul(b.add(b.mul(c, c64(kh)), i), c64(kw)), c64(j))
                        wv = [vec.load(b.gep(wt, [b.add(b.mul(k, c64(Co)), c64(v * VL))]),
                                       full) for v in range(NV)]
                        for p in range(cnt):
                            sp = _splat_input(b, vec, src, row, s0 + p + j - lo_w, W, ok,
                                              zero_s)
                            for v in range(NV):
                                accs[p * NV + v] = vec.fma(wv[v], sp, accs[p * NV + v])
                    return accs

                def per_channel(c, accs):
                    return accumulate(b, c64(0), c64(kh), c64(1), list(accs),
                                      lambda i, a: per_row(i, a, c))
                accs = accumulate(b, c64(0), c64(C), c64(1), [vec.zero] * (cnt * NV),
                                  per_channel)
                for p in range(cnt):
                    for v in range(NV):
                        vec.store(accs[p * NV + v],
                                  b.gep(tile, [c64((s0 + p) * Co + v * VL)]), full)
            base = b.add(b.mul(n, c64(Co * OH * OW)), b.mul(oh, c64(OW)))
            with loop(b, 0, Co, 1, "o") as o:
                zrow = b.add(base, b.mul(o, c64(OH * OW)))
                for ow in range(OW):
                    b.store(b.load(b.gep(tile, [b.add(o, c64(ow * Co))])),
                            b.gep(out, [b.add(zrow, c64(ow))]))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x, Wt])
    emit_step(lw.module, b, fn, part, dim(node.shape[0]), numel(node.shape), CK,
              [Size(Co * OH * OW), Size(C * H * W), ZERO])
    return fn, [x, Wt]


def _conv_weight_channels(lw, node: Node):
    """A weight gradient with a vector of output channels per weight tap: each part takes
    input channels ``c`` (rows); per image, ``ḡ[n]`` goes through a ``[position][o]`` tile,
    then per ``(c, i)`` the accumulators ``[j][channel vector]`` (kept on the stack between
    images) add ``ḡ[n, :, oh, ow] · x[n, c, oh + i - lo_h, ow + j - lo_w]`` over the output
    positions; the sums go out as ``W̄[o, c, i, j]``."""
    x, g = node.inputs
    C, Co, (kh, kw) = x.shape[1], g.shape[1], node.attr("kernel")
    H, W, OH, OW, lo_h, lo_w = _geometry(node, x, g.shape[2:])
    L = OH * OW
    part, b = lw._new_kernel(node, [x, g], extra=(I64, I64), suffix=".part")
    out, src, gs, batch, rows, first = part.args
    vec = _Vec(lw.module, b, node.dtype)
    VL, T = vec.VL, vec.T
    NV = Co // VL
    R = max(1, min(OW, 12 // (kw * NV)))
    full = vec.mask([1] * VL)
    zero_s = ir.Constant(T, 0.0)

    def stack(n):
        a = b.alloca(ir.ArrayType(T, n))
        a.align = 64
        return b.bitcast(a, T.as_pointer())
    per_c = kh * kw * Co
    gt, acc = stack(L * Co), stack(C * per_c)
    with loop(b, 0, b.mul(rows, c64(per_c)), 1, "z") as z:
        b.store(zero_s, b.gep(acc, [z]))
    N = size_value(b, dim(x.shape[0]), batch)
    with loop(b, 0, N, 1, "n") as n:
        gimg = b.mul(n, c64(Co * L))
        with loop(b, 0, L, 1, "q") as q:          # the tile [position][o] of this image
            vals = [b.load(b.gep(gs, [b.add(gimg, b.add(q, c64(o * L)))])) for o in range(Co)]
            for v in range(NV):                   # (a vector built from Co scalar loads)
                t = ir.Constant(vec.V, None)
                for l in range(VL):
                    t = b.insert_element(t, vals[v * VL + l], ir.Constant(I32, l))
                vec.store(t, b.gep(gt, [b.add(b.mul(q, c64(Co)), c64(v * VL))]), full)
        with loop(b, 0, rows, 1, "cr") as cr:
            c = b.add(cr, first)
            plane = b.mul(b.add(b.mul(n, c64(C)), c), c64(H * W))
            with loop(b, 0, kh, 1, "i") as i:
                at = b.mul(b.add(b.mul(cr, c64(kh)), i), c64(kw * Co))
                ptrs = [b.gep(acc, [b.add(at, c64(j * Co + v * VL))])
                        for j in range(kw) for v in range(NV)]
                # R sets of accumulators (position ow adds into set ow % R): independent
                # multiply-add chains; summed before they go back to the stack
                start = [vec.load(p, full) for p in ptrs] + [vec.zero] * (len(ptrs) * (R - 1))

                def per_row(oh, accs):
                    h = b.sub(b.add(oh, i), c64(lo_h))
                    ok = b.icmp_unsigned("<", h, c64(H))
                    row = b.add(plane, b.mul(b.select(ok, h, c64(0)), c64(W)))
                    accs = list(accs)
                    for ow in range(OW):
                        base = (ow % R) * kw * NV
                        q = b.add(b.mul(oh, c64(OW)), c64(ow))
                        gv = [vec.load(b.gep(gt, [b.add(b.mul(q, c64(Co)), c64(v * VL))]),
                                       full) for v in range(NV)]
                        for j in range(kw):
                            sp = _splat_input(b, vec, src, row, ow + j - lo_w, W, ok, zero_s)
                            for v in range(NV):
                                k = base + j * NV + v
                                accs[k] = vec.fma(gv[v], sp, accs[k])
                    return accs
                accs = accumulate(b, c64(0), c64(OH), c64(1), start, per_row)
                for k, p in enumerate(ptrs):
                    total = accs[k]
                    for r in range(1, R):
                        total = b.fadd(total, accs[r * len(ptrs) + k])
                    vec.store(total, p, full)
    # W̄[o, c, i, j] = acc[c - first][i][j][o]
    with loop(b, 0, rows, 1, "cr") as cr:
        c = b.add(cr, first)
        with loop(b, 0, Co, 1, "o") as o:
            for t in range(kh * kw):
                v = b.load(b.gep(acc, [b.add(b.mul(cr, c64(per_c)), b.add(c64(t * Co), o))]))
                at = b.add(b.mul(b.add(b.mul(o, c64(C)), c), c64(kh * kw)), c64(t))
                b.store(v, b.gep(out, [at]))
    b.ret_void()
    fn, b = lw._new_kernel(node, [x, g])
    emit_step(lw.module, b, fn, part, Size(C), numel(g.shape), C * kh * kw,
              [ZERO, ZERO, ZERO], first=True)
    return fn, [x, g]


def _splat_input(b, vec, src, row, col: int, W: int, ok, zero_s):
    """``src[row + col]`` in every lane: zero for a padding column (``col`` outside
    0..W-1, known when the kernel is emitted) or a padding row (``ok`` false)."""
    xs = zero_s
    if 0 <= col < W:
        xs = b.select(ok, b.load(b.gep(src, [b.add(row, c64(col))])), zero_s)
    return vec.splat(xs)
