"""Float32 matrix products on tensor cores (``precision="tf32"`` or ``"bf16"``): ``mma.sync``.

Asked for by ``aj.compile(..., backend="ptx", precision=...)``; float64 products and the
default ``"fp32"`` use the exact FMA kernel of :mod:`.matmul`.  Operands and the stack of
products (batch axes, ``matmul_sum``) are read as there.

Each block computes a BM x BN = 64 x 64 tile of C with 8 warps (2 along M x 4 along N), each
warp 32 x 16 of it: 2 x 2 fragments of 16 x 8, four f32 accumulators per lane per fragment.
Per BK = 32 wide step of K the block stages op(A) (m-major) and op(B) (n-major) in shared
memory, K contiguous, rows padded to 36 words (the fragment loads of a warp hit 32 distinct
banks); out-of-range rows, columns and K load as zero (clamped address, value selected
away).  Staging *rounds* each operand to the precision (integer arithmetic on the f32 bits,
the same code in both flavours):

* tf32: round to nearest, ties away from zero, to 10 mantissa bits (``cvt.rna.tf32.f32``);
* bf16: round to nearest even to 7 stored mantissa bits (``cvt.rn.bf16.f32``);

NaN stays NaN.  Then per 8 (tf32, ``mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32``) or
16 (bf16, ``m16n8k16 ... bf16``) wide slice of K every lane gathers its fragment registers
from shared memory per the PTX ISA layouts (:func:`a_elem`, :func:`b_elem`, :func:`c_elem`)
and issues the mma (``llvm.nvvm.mma.m16n8k8.row.col.tf32`` / ``...m16n8k16.row.col.bf16``).

The CPU grid emulation cannot run a warp-collective instruction inside one thread's loop, so
there the mma is two regions: every lane stores its fragment registers in a per-block scratch
(one slot per thread and register), and after that loop, every lane computes its four outputs
from the registers of the lanes of its warp, found through the *inverse* layout (which lane
and register holds A[r][k], B[k][n]; written independently from the forward tables, so a
wrong table shows up as a wrong product).  Products of rounded operands are exact in f32; the
emulation adds them in K order with one rounding each (the hardware's order and internal
precision are unspecified: the accuracy bound in docs/ptx.md covers both).
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.irkit import c64
from ..lowering.plan import numel
from ..lowering.printer import F32, intrinsic
from .kernel import GPU
from .lower import NTID
from .matmul import Product, fetch
from .matmul import choose as matmul_choose

PRECISIONS = ("tf32", "bf16")
BM = BN = 64
BK = 32
LDS = BK + 4                         # words per staged row (bank-conflict-free fragments)
WARPS_M, WARPS_N = 2, 4
FM, FN = 2, 2                        # 16 x 8 fragments per warp along M and N
WM, WN = 16 * FM, 8 * FN             # a warp's part of the tile
assert WARPS_M * WARPS_N * 32 == NTID and WARPS_M * WM == BM and WARPS_N * WN == BN
KSTEP = {"tf32": 8, "bf16": 16}      # K of one mma
A_REGS, B_REGS = 4, 2                # 32-bit registers per lane (both shapes)
REGS = FM * A_REGS + FN * B_REGS     # per lane, in the emulation's scratch
MMA = {"tf32": "llvm.nvvm.mma.m16n8k8.row.col.tf32", "bf16": "llvm.nvvm.mma.m16n8k16.row.col.bf16"}
I32 = ir.IntType(32)


# --- the fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8 / m16n8k16") -------------
# g = laneid >> 2 (groupID), t = laneid & 3 (threadID_in_group); i: element index in the lane
# (tf32: one element per register; bf16: two per register, element 2j in the low half of j).
def a_elem(prec: str, g, t, i: int):
    """(row, col) in the 16 x K tile of A of lane (g, t)'s element ``i``."""
    if prec == "tf32":
        return g + 8 * (i % 2), t + 4 * (i // 2)
    return g + 8 * ((i // 2) % 2), t * 2 + (i % 2) + 8 * (i // 4)


def b_elem(prec: str, g, t, i: int):
    """(k, col) in the K x 8 tile of B of lane (g, t)'s element ``i``."""
    if prec == "tf32":
        return t + 4 * i, g
    return t * 2 + (i % 2) + 8 * (i // 2), g


def c_elem(g, t, i: int):
    """(row, col) in the 16 x 8 tile of C/D of lane (g, t)'s accumulator ``i``."""
    return g + 8 * (i // 2), t * 2 + (i % 2)


class _V:
    """An i64 IR value with + and * (by ints or other _V), so the tables above build IR."""

    def __init__(self, b: ir.IRBuilder, v):
        self.b, self.v = b, v

    def _of(self, o):
        return o.v if isinstance(o, _V) else c64(o)

    def __add__(self, o):
        return self if isinstance(o, int) and o == 0 else _V(self.b, self.b.add(self.v, self._of(o)))

    __radd__ = __add__

    def __mul__(self, o):
        return self if isinstance(o, int) and o == 1 else _V(self.b, self.b.mul(self.v, self._of(o)))

    __rmul__ = __mul__


# --- rounding (the same integer code on the GPU and the CPU) ---------------------------------
def round_bits(b: ir.IRBuilder, prec: str, x: ir.Value) -> ir.Value:
    """The f32 ``x`` rounded to ``prec``, as its i32 bit pattern (low bits zero)."""
    c = lambda v: ir.Constant(I32, v)
    bits = b.bitcast(x, I32)
    nan = b.icmp_unsigned(">", b.and_(bits, c(0x7FFFFFFF)), c(0x7F800000))
    if prec == "tf32":      # ties away from zero: add half an ulp to the magnitude, truncate
        r = b.and_(b.add(bits, c(0x1000)), c(-0x2000))
        return b.select(nan, bits, r)
    odd = b.and_(b.lshr(bits, c(16)), c(1))            # ties to even
    r = b.and_(b.add(bits, b.add(c(0x7FFF), odd)), c(-0x10000))
    return b.select(nan, b.and_(b.or_(bits, c(0x400000)), c(-0x10000)), r)


# --- one warp's mma: the instruction, and its emulation from the lanes' registers ------------
def mma_hw(module: ir.Module, b: ir.IRBuilder, prec: str, a_regs, b_regs, c) -> list:
    """``mma.sync`` of this lane's A (4 i32), B (2 i32) registers onto accumulators ``c``
    (4 f32): the lane's 4 results (GPU flavour only: a warp-collective instruction)."""
    ty = ir.LiteralStructType([F32] * 4)
    fn = module.globals.get(MMA[prec]) or ir.Function(
        module, ir.FunctionType(ty, [I32] * 6 + [F32] * 4), name=MMA[prec])
    d = b.call(fn, list(a_regs) + list(b_regs) + list(c))
    return [b.extract_value(d, i) for i in range(4)]


def _element(b, reg, half):
    """The f32 value of a register's element (tf32: the register; bf16: a half)."""
    if half is None:
        return b.bitcast(reg, F32)
    bits = b.and_(reg, ir.Constant(I32, -0x10000)) if half else b.shl(reg, ir.Constant(I32, 16))
    return b.bitcast(bits, F32)


def mma_emulated_warp(b, fma, prec: str, g, t, a_reg, b_reg, c) -> list:
    """What :func:`mma_hw` returns to lane (g, t) (:class:`_V` values), computed from the
    registers of its warp's lanes: ``a_reg(lane, j)`` / ``b_reg(lane, j)`` load register j
    of that lane (an i64 lane index in the warp).  Uses the *inverse* layouts (who holds
    A[row][k], B[k][col]), written independently of :func:`a_elem`/:func:`b_elem`; exact
    products added in K order, one f32 rounding each."""
    out = []
    for i in range(4):
        row, col = c_elem(g, t, i)        # this lane's output (row, col); row % 8 == g
        d = c[i]
        for kk in range(KSTEP[prec]):
            if prec == "tf32":
                la, ja, ha = (g * 4 + kk % 4), (i // 2) + 2 * (kk // 4), None
                lb, jb, hb = col * 4 + kk % 4, kk // 4, None
            else:
                la, ja, ha = g * 4 + (kk % 8) // 2, (i // 2) + 2 * (kk // 8), kk % 2
                lb, jb, hb = col * 4 + (kk % 8) // 2, kk // 8, kk % 2
            av = _element(b, a_reg(la.v, ja), ha)
            bv = _element(b, b_reg(lb.v, jb), hb)
            d = b.call(fma, [av, bv, d])
        out.append(d)
    return out


def choose(M: int, N: int, K: int, mats: int, summed: bool) -> tuple[str, int]:
    """The tensor-core kernel for one product: ``("tile64", 1)`` (this module's 64 x 64
    kernel) or ``("big", S)`` (:mod:`.matmul_mma_big`, 128 x 128 tiles, K split S ways).
    The FP32 rule of :func:`.matmul.choose`: the big kernel from 2^24 multiply-adds on, split
    K when its tiles alone would leave SMs idle (each split at least 256 deep), the 64 x 64
    one when its 4x more tiles fill the GPU better.  Depends on the shape only."""
    return matmul_choose(M, N, K, mats, summed, "float32")


def lower_matmul_mma(lw, name: str, node: Node, precision: str, summed: bool = False) -> None:
    """Add the tensor-core kernels and launches computing the float32 ``node`` (a matmul, or
    a ``matmul_sum`` when ``summed``) to the Lowering ``lw``; :func:`choose` picks the kernel
    per call (only the chosen one is built when every size is static)."""
    if precision not in PRECISIONS:
        raise ValueError(f"no tensor-core kernel for precision {precision!r}")
    d = Product(lw, node, summed)
    pick = lambda B: choose(*d.sizes(B), summed)
    static = all(numel((x,)).power == 0 for x in (d.M, d.N, d.K, *d.batch_shape))
    kinds = {pick(0)[0]} if static else {"tile64", "big"}
    if "tile64" in kinds:
        _lower_tile64(lw, name, d, precision, lambda B: pick(B)[0] == "tile64")
    if "big" in kinds:
        from .matmul_mma_big import lower_mma_big
        lower_mma_big(lw, f"{name}_big", d, precision, lambda B: pick(B)[0] == "big",
                      lambda B: pick(B)[1], splits=not static or pick(0)[1] > 1)


def _lower_tile64(lw, name: str, d: Product, precision: str, when) -> None:
    """The 64 x 64 kernel (module docstring) for the product ``d``."""
    ta, tb = d.ta, d.tb
    k, refs, pa, pb = d.kernel(lw, name)
    b = k.b
    m, n, kk_total = d.m, d.n, d.k
    sa_i, sa_l, sb_l, sb_j = d.sa_i, d.sa_l, d.sb_l, d.sb_j
    zero = ir.Constant(F32, 0.0)
    a_sh, b_sh = k.shared(I32, BM * LDS), k.shared(I32, BN * LDS)
    scratch = k.shared(I32, NTID * REGS) if k.flavor != GPU else None
    acc = k.private(F32, FM * FN * 4)

    def get(ptr, row, col, rows, cols, s_row, s_col):
        return fetch(b, zero, ptr, row, col, rows, cols, s_row, s_col)

    def stage(tid, sh, W, x0, k0, x_contiguous, get):
        """op(X)[x0 + x, k0 + l] rounded into ``sh[x*LDS + l]`` (x < W, l < BK)."""
        for rep in range(W * BK // NTID):
            e = b.add(tid, c64(rep * NTID))
            x, l = ((b.urem(e, c64(W)), b.udiv(e, c64(W))) if x_contiguous else
                    (b.udiv(e, c64(BK)), b.urem(e, c64(BK))))
            v = round_bits(b, precision, get(b.add(x0, x), b.add(k0, l)))
            b.store(v, b.gep(sh, [b.add(b.mul(x, c64(LDS)), l)]))

    def lane_of(tid):
        w, lane = b.udiv(tid, c64(32)), b.urem(tid, c64(32))
        wm, wn = b.udiv(w, c64(WARPS_N)), b.urem(w, c64(WARPS_N))
        return (_V(b, b.mul(wm, c64(WM))), _V(b, b.mul(wn, c64(WN))),
                _V(b, b.lshr(lane, c64(2))), _V(b, b.and_(lane, c64(3))))

    def word(sh, x, l):
        return b.load(b.gep(sh, [(x * LDS + l).v]))

    def fragments(tid, ks):
        """This lane's registers for the K slice at ``ks``: A of each row fragment, B of each
        column fragment (i32, tf32 bits or two bf16 packed)."""
        r0, c0, g, t = lane_of(tid)
        regs = []
        for sh, base, elem, nregs in ((a_sh, r0, a_elem, A_REGS), (b_sh, c0, b_elem, B_REGS)):
            for f in range(FM if sh is a_sh else FN):
                for j in range(nregs):
                    def at(i):
                        x, l = elem(precision, g, t, i)
                        if sh is b_sh:
                            x, l = l, x
                        return word(sh, base + x + f * (16 if sh is a_sh else 8), l + ks)
                    if precision == "tf32":
                        regs.append(at(j))
                    else:                       # element 2j low, 2j+1 high
                        lo, hi = at(2 * j), at(2 * j + 1)
                        regs.append(b.or_(b.and_(hi, ir.Constant(I32, -0x10000)),
                                          b.lshr(lo, ir.Constant(I32, 16))))
        return regs     # FM * A_REGS, then FN * B_REGS

    def mma_gpu(tid, ks):
        regs = fragments(tid, ks)
        for fm in range(FM):
            for fn_ in range(FN):
                q = (fm * FN + fn_) * 4
                d = mma_hw(lw.module, b, precision, regs[fm * A_REGS:(fm + 1) * A_REGS],
                           regs[FM * A_REGS + fn_ * B_REGS:FM * A_REGS + (fn_ + 1) * B_REGS],
                           [b.load(acc.at(q + i)) for i in range(4)])
                for i in range(4):
                    b.store(d[i], acc.at(q + i))

    fma = intrinsic(lw.module, "fma", F32, 3)

    def mma_emulated(tid, ks):
        """The warp's mma from the lanes' registers in ``scratch`` (inverse layouts)."""
        _, _, g, t = lane_of(tid)
        warp0 = b.mul(b.udiv(tid, c64(32)), c64(32))
        reg = lambda lane, j: b.load(b.gep(scratch, [b.add(b.mul(b.add(warp0, lane), c64(REGS)),
                                                          c64(j))]))
        for fm in range(FM):
            for fn_ in range(FN):
                q = (fm * FN + fn_) * 4
                d = mma_emulated_warp(b, fma, precision, g, t,
                                      lambda lane, j: reg(lane, fm * A_REGS + j),
                                      lambda lane, j: reg(lane, FM * A_REGS + fn_ * B_REGS + j),
                                      [b.load(acc.at(q + i)) for i in range(4)])
                for i in range(4):
                    b.store(d[i], acc.at(q + i))

    def products(pa_t, pb_t, m0, n0):
        with k.uniform_loop(c64(0), kk_total, c64(BK), "k0") as k0:
            with k.threads() as tid:
                stage(tid, a_sh, BM, m0, k0, ta,
                      lambda x, l: get(pa_t, x, l, m, kk_total, sa_i, sa_l))
                stage(tid, b_sh, BN, n0, k0, not tb,
                      lambda x, l: get(pb_t, l, x, kk_total, n, sb_l, sb_j))
            k.barrier()
            for ks in range(0, BK, KSTEP[precision]):
                if k.flavor == GPU:
                    with k.threads() as tid:
                        mma_gpu(tid, ks)
                else:       # lanes publish their registers, then the warp's product
                    with k.threads() as tid:
                        for j, r in enumerate(fragments(tid, ks)):
                            b.store(r, b.gep(scratch, [b.add(b.mul(tid, c64(REGS)), c64(j))]))
                    with k.threads() as tid:
                        mma_emulated(tid, ks)
            k.barrier()

    def clear():
        acc.fill(zero)

    def write(pc, m0, n0):
        with k.threads() as tid:
            r0, c0, g, t_ = lane_of(tid)
            for fm in range(FM):
                for fn_ in range(FN):
                    for i in range(4):
                        rr, cc = c_elem(g, t_, i)
                        row = b.add(m0, (r0 + rr + fm * 16).v)
                        col = b.add(n0, (c0 + cc + fn_ * 8).v)
                        inside = b.and_(b.icmp_unsigned("<", row, m), b.icmp_unsigned("<", col, n))
                        with b.if_then(inside):
                            d.store(b, pc, row, col, b.load(acc.at((fm * FN + fn_) * 4 + i)))

    d.each_tile(k, BM, BN, (k.ptrs[0], pa, pb), clear, products, write)
    k.finish()
    d.launch(lw, name, refs, BM, BN, when, f"{d.what} ({precision} mma.sync)")
