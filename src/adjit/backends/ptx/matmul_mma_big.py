"""The large tensor-core kernel: 128 x 128 tiles, 64 x 32 per warp, double-buffered, split-K.

Same products and rounding as :mod:`.matmul_mma` (``precision="tf32" | "bf16"``: operands
rounded while staged, ``mma.sync`` per the ISA fragment layouts, FP32 accumulation), for
products big enough to fill the GPU (:func:`.matmul_mma.choose`).  Stacks, broadcast
operands and ``matmul_sum`` come from :class:`.matmul.Product`.

* **Tiles.** A block computes a 128 x 128 tile of C with 8 warps (2 along M x 4 along N),
  each warp 64 x 32 of it: 4 x 4 fragments of 16 x 8, 64 f32 accumulators per lane.
* **Words.** Shared memory holds 32-bit *words*: one rounded tf32 value, or two rounded
  bf16 values packed as the mma wants them (the lower K index in the low half).  A staged
  row (one row of op(A) or one column of op(B), K contiguous) holds BKW = 16 words of K:
  BK = 16 elements for tf32 (two mma K-slices of 8), 32 for bf16 (two of 16).  Each slice
  is 8 words, and inside it the words are *permuted*: logical word w of the slice sits at
  ``2 (w % 4) + w // 4``.  The mma sums over K, so reordering K alike in A and B changes
  nothing but the order of the sum; it makes the two words a lane needs from one row
  (word t and t + 4 for lane t % 4 = t: a0/a2, a1/a3, b0/b1 in both precisions) adjacent,
  so every fragment register pair is one 64-bit ``ld.shared`` (:data:`A_LOADS`,
  :data:`B_LOADS`, checked against :func:`.matmul_mma.a_elem`/``b_elem`` by
  :func:`fragment_pairs_ok`).
* **Padding.** Rows are LDS = 24 words apart (16 + 8 of padding).  A 64-bit load is served
  per half-warp: lanes (g, t), g < 4, read words ``24 g + 2 t + {0, 1}`` mod 32 = 8 (3g mod 4)
  + 2t + {0, 1}: all 32 banks once, no conflict (LDS = 20 or 16 would conflict).  Two stages
  of 256 rows x 24 words are 48 KiB, the static shared-memory limit.
* **Staging.** Per K-tile each thread loads one run of 8 words' worth of elements of op(A)
  and of op(B) along whichever dimension is contiguous in memory (8 or 16 floats: two or
  four 16-byte vector loads when the matrix allows it at run time -- base 16-byte aligned,
  the other stride a multiple of 4 -- else scalar loads); out-of-range elements read 0 from
  a clamped address.  K-contiguous: the thread has a whole permuted slice of one row and
  stores it as two 16-byte vectors; otherwise it has one word column of 8 rows (8 scalar
  stores, banks ``perm(q)``: a warp's 16 columns x 2 runs, 2-way at most).
* **Double buffer** (the scheme and race argument of :mod:`.matmul_big`): prologue stages
  K-tile kt0 into stage 0, barrier; each step loads tile kt+1 into registers, computes from
  stage ``cur``, stores the rounded registers into stage ``1 - cur``, barrier.  In the CPU
  emulation a step is two thread loops: (1) load the next tile and store it into
  ``1 - cur`` *first*, then publish the fragment registers read from ``cur`` to a scratch;
  (2) each lane's mma from its warp's published registers (:func:`.matmul_mma.mma_emulated_warp`).
  Storing before reading is the most hostile order a GPU could show, so writing into the
  stage being read, or reading the stage being written, gives wrong products there.
* **Split-K.** ``ints[0]`` = S: block b works on split ``b % S`` of the tiles that
  :meth:`.matmul.Product.each_tile` hands to block ``b // S`` of ``nctaid / S`` (the grid is
  a multiple of S); split s covers K-tiles ``[s chunk, (s+1) chunk)`` and writes its partial C
  to ``work[s]``; :func:`.matmul_big.lower_split_sum` adds them in order s = 0, 1, ...
"""
from __future__ import annotations

from llvmlite import ir

from ..lowering.irkit import c32, c64
from ..lowering.loops import size_value
from ..lowering.plan import numel
from ..lowering.printer import F32, intrinsic
from .kernel import GPU
from .lower import ITEMSIZE, MAX_GRID, NTID, Launch, blocks
from .matmul import fetch, final_epilogue
from .matmul_big import _vptr, lower_split_sum, whole_c_epilogue
from .matmul_mma import (A_REGS, B_REGS, I32, _V, a_elem, b_elem, mma_emulated_warp, mma_hw,
                         round_bits)

BM = BN = 128
WARPS_M, WARPS_N = 2, 4
FM, FN = 4, 4                       # 16 x 8 fragments per warp along M and N
WM, WN = 16 * FM, 8 * FN            # 64 x 32 per warp
assert WARPS_M * WARPS_N * 32 == NTID and WARPS_M * WM == BM and WARPS_N * WN == BN
BKW = 16                            # words of K per staged row
SLICE = 8                           # words per mma K-slice
LDS = BKW + 8                       # row stride in words (see Padding)
STAGE = (BM + BN) * LDS             # words per stage: A's rows, then B's
PER_WORD = {"tf32": 1, "bf16": 2}   # elements per word
REGS = FM * A_REGS + FN * B_REGS    # fragment registers per lane and slice
# the 64-bit fragment loads of lane (g, t): (row beyond g, (register at word 2t, at 2t + 1))
A_LOADS = ((0, (0, 2)), (8, (1, 3)))
B_LOADS = ((0, (0, 1)),)
V4F, V4I, V2I = ir.VectorType(F32, 4), ir.VectorType(I32, 4), ir.VectorType(I32, 2)


def perm(w: int) -> int:
    """Where logical word ``w`` of a row is stored (the words of each slice permuted)."""
    return (w & ~7) | ((w & 3) << 1) | ((w >> 2) & 1)


def fragment_pairs_ok(prec: str) -> bool:
    """Every lane's 64-bit loads (:data:`A_LOADS`, :data:`B_LOADS`) fetch exactly the
    registers the ISA layouts (:func:`.matmul_mma.a_elem`, ``b_elem``) put there."""
    E = PER_WORD[prec]
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for elem, loads in ((a_elem, A_LOADS), (b_elem, B_LOADS)):
            for dr, regs in loads:
                for half, j in enumerate(regs):
                    for e in range(E):        # the register's elements: one word, low first
                        x, k = elem(prec, g, t, E * j + e)
                        if elem is b_elem:
                            x, k = k, x
                        if (x, perm(k // E), k % E) != (g + dr, 2 * t + half, e):
                            return False
    return True


def stages(b, sh, kt, kt0):
    """(the stage read, the stage written) in step ``kt`` of a loop from ``kt0``."""
    cur = b.and_(b.sub(kt, kt0), c64(1))
    return b.gep(sh, [b.mul(cur, c64(STAGE))]), b.gep(sh, [b.mul(b.xor(cur, c64(1)), c64(STAGE))])


def lower_mma_big(lw, name: str, d, precision: str, use, S_of, splits: bool = True) -> None:
    """Add the kernel ``name`` for the product ``d`` (a :class:`.matmul.Product`) and its
    launches: run when ``use(B)``, K split ``S_of(B)`` ways (the split launches and the
    final sum only where ``splits``)."""
    assert fragment_pairs_ok(precision)
    E = PER_WORD[precision]
    node = d.node
    k, refs, pa, pb = d.kernel(lw, name, n_ints=1)      # (+ a fused epilogue's operands)
    _body(lw, k, d, precision, E, pa, pb)
    out = ("slot", lw.plan.storage[d.out.id].slot)
    out_mats = (lambda B: 1) if d.summed else (lambda B: d.sizes(B)[3])
    c_size = lambda B: d.sizes(B)[0] * d.sizes(B)[1] * out_mats(B)
    tiles = lambda B: -(-d.sizes(B)[0] // BM) * -(-d.sizes(B)[1] // BN) * out_mats(B)
    grid = lambda B: S_of(B) * max(1, min(tiles(B), MAX_GRID // S_of(B)))
    what = f"{d.what} (128x128 {precision} mma.sync"
    lw.launches.append(Launch(name, (out, *refs), grid=grid, ints=(S_of,), what=what + ")",
                              when=lambda B: use(B) and S_of(B) == 1 and c_size(B) > 0))
    if not splits:
        return
    split = lambda B: use(B) and S_of(B) > 1 and c_size(B) > 0
    fin = f"{name}_splitsum"     # reads the partials in A's place, then E's operands
    kf, refs_f, _ = d.kernel(lw, fin, n_ints=1, reads=[d.a])
    lower_split_sum(kf, size_value(kf.b, numel(node.shape), kf.batch), kf.ints[0],
                    final_epilogue(d))
    lw.launches += [
        Launch(name, (("work",), *refs), grid=grid, ints=(S_of,), when=split,
               work_bytes=lambda B: S_of(B) * c_size(B) * ITEMSIZE[node.dtype],
               what=what + ", split K)"),
        Launch(fin, (out, ("work",), *refs_f[1:]), grid=lambda B: blocks(c_size(B)),
               ints=(S_of,), when=split, what=d.what + " (sum of the K splits)")]


def _body(lw, k, d, prec: str, E: int, a_ptr, b_ptr) -> None:
    b = k.b
    zero = ir.Constant(F32, 0.0)
    m, n, kk = d.m, d.n, d.k
    S = k.ints[0]
    sh = k.shared(I32, 2 * STAGE)
    gpu = k.flavor == GPU
    scratch = None if gpu else k.shared(I32, NTID * 2 * REGS)
    acc = k.private(F32, FM * FN * 4)
    pre = k.private(F32, 8 * E)               # the next K-tile's elements of one operand
    pre_b = k.private(F32, 8 * E)             # ... and of the other
    BK = BKW * E
    ktiles = b.udiv(b.add(kk, c64(BK - 1)), c64(BK))
    chunk = b.udiv(b.add(ktiles, b.sub(S, c64(1))), S)
    c_size = b.mul(b.mul(m, n), c64(1) if d.summed else d.mats)
    ctaid, nctaid = k.ctaid, k.nctaid         # block = (tile block) * S + split
    split = b.urem(ctaid, S)
    k.ctaid, k.nctaid = b.udiv(ctaid, S), b.udiv(nctaid, S)

    def aligned(p, stride):
        addr = b.ptrtoint(p, ir.IntType(64))
        ok = b.icmp_unsigned("==", b.and_(addr, c64(15)), c64(0))
        return b.and_(ok, b.icmp_unsigned("==", b.urem(stride, c64(4)), c64(0)))

    # operand o: (x extent, strides of x and l, x contiguous in memory, words' base row)
    ops = ((m, d.sa_i, d.sa_l, d.ta, 0), (n, d.sb_j, d.sb_l, not d.tb, BM))

    def run(x_contig):
        """This thread's run: (x, l) of its first element in the tile, and the step
        between its 8E elements' starts of 4 (vectors along the contiguous dimension)."""
        tid = k.tid
        if x_contig:      # word column q of rows 8 xr .. 8 xr + 7
            return b.mul(b.udiv(tid, c64(16)), c64(8)), b.mul(b.urem(tid, c64(16)), c64(E))
        return b.udiv(tid, c64(2)), b.mul(b.urem(tid, c64(2)), c64(SLICE * E))

    def gather(p, x0, k0, o, slots, vec_ok):
        """Load this thread's 8E elements of op(X)'s K-tile at (x0, k0) into ``slots``
        (slot 8e + j: element e of word j along x, or element j of the run along K)."""
        xs, s_x, s_l, x_contig, _ = ops[o]
        x, l = run(x_contig)
        gx, gl = b.add(x0, x), b.add(k0, l)
        starts = ([(gx if v % 2 == 0 else b.add(gx, c64(4)), b.add(gl, c64(v // 2)))
                   for v in range(2 * E)] if x_contig else
                  [(gx, b.add(gl, c64(4 * v))) for v in range(2 * E)])
        with b.if_else(vec_ok) as (vector, scalar):
            with vector:
                for v, (vx, vl) in enumerate(starts):
                    in_x, in_l = b.icmp_unsigned("<", vx, xs), b.icmp_unsigned("<", vl, kk)
                    cx = b.select(in_x, vx, b.sub(xs, c64(4 if x_contig else 1)))
                    cl = b.select(in_l, vl, b.sub(kk, c64(1 if x_contig else 4)))
                    ptr = b.gep(p, [b.add(b.mul(cx, s_x), b.mul(cl, s_l))])
                    val = b.load(_vptr(b, ptr, V4F), align=16)
                    for j in range(4):
                        b.store(b.select(b.and_(in_x, in_l), b.extract_element(val, c32(j)), zero),
                                slots.at(4 * v + j))
            with scalar:
                for v, (vx, vl) in enumerate(starts):
                    for j in range(4):
                        ex, el = (b.add(vx, c64(j)), vl) if x_contig else (vx, b.add(vl, c64(j)))
                        b.store(fetch(b, zero, p, ex, el, xs, kk, s_x, s_l), slots.at(4 * v + j))

    def word(vals):
        """The 32-bit word of E loaded elements (low K first), rounded."""
        if E == 1:
            return round_bits(b, prec, vals[0])
        lo, hi = (round_bits(b, prec, v) for v in vals)
        return b.or_(b.and_(hi, c32(-0x10000)), b.lshr(lo, c32(16)))

    def put(dst, o, slots):
        """Store the rounded words of ``slots`` into operand o's rows of stage ``dst``."""
        _, _, _, x_contig, row0 = ops[o]
        x, l = run(x_contig)
        if x_contig:        # 8 rows, one word column q = l / E
            q = b.udiv(l, c64(E))
            pq = b.or_(b.or_(b.and_(q, c64(8)), b.shl(b.and_(q, c64(3)), c64(1))),
                       b.and_(b.lshr(q, c64(2)), c64(1)))
            for j in range(8):
                w = word([b.load(slots.at(8 * e + j)) for e in range(E)])
                b.store(w, b.gep(dst, [b.add(b.mul(b.add(c64(row0 + j), x), c64(LDS)), pq)]))
        else:               # one whole slice of row x: physical word p holds word perm^-1(p)
            words = [word([b.load(slots.at(E * j + e)) for e in range(E)]) for j in range(8)]
            base = b.add(b.mul(b.add(x, c64(row0)), c64(LDS)), b.udiv(l, c64(E)))
            for h in range(2):
                vec = ir.Constant(V4I, ir.Undefined)
                for p in range(4):
                    lw_ = [w for w in range(8) if perm(w) == 4 * h + p][0]
                    vec = b.insert_element(vec, words[lw_], c32(p))
                b.store(vec, _vptr(b, b.gep(dst, [b.add(base, c64(4 * h))]), V4I), align=16)

    def lane():
        tid = k.tid
        w, ln = b.udiv(tid, c64(32)), b.urem(tid, c64(32))
        return (b.mul(b.udiv(w, c64(WARPS_N)), c64(WM)), b.mul(b.urem(w, c64(WARPS_N)), c64(WN)),
                b.lshr(ln, c64(2)), b.and_(ln, c64(3)))

    def fragments(src, s):
        """This lane's registers of K-slice ``s`` from stage ``src``: FM x A_REGS, FN x B_REGS."""
        r0, c0, g, t = lane()
        regs = []
        for row0, nf, step, loads, nr in ((r0, FM, 16, A_LOADS, A_REGS),
                                          (b.add(c0, c64(BM)), FN, 8, B_LOADS, B_REGS)):
            for f in range(nf):
                r = [None] * nr
                for dr, (j0, j1) in loads:
                    row = b.add(row0, b.add(g, c64(f * step + dr)))
                    at = b.add(b.mul(row, c64(LDS)), b.add(b.shl(t, c64(1)), c64(SLICE * s)))
                    pair = b.load(_vptr(b, b.gep(src, [at]), V2I), align=8)
                    r[j0], r[j1] = b.extract_element(pair, c32(0)), b.extract_element(pair, c32(1))
                regs += r
        return regs

    fma = intrinsic(lw.module, "fma", F32, 3)

    def mma(src):
        """(GPU) add stage ``src`` to the accumulators."""
        c = [b.load(acc.at(q)) for q in range(FM * FN * 4)]
        for s in range(BKW // SLICE):
            regs = fragments(src, s)
            for fm in range(FM):
                for fn_ in range(FN):
                    q = (fm * FN + fn_) * 4
                    bo = FM * A_REGS + fn_ * B_REGS
                    c[q:q + 4] = mma_hw(lw.module, b, prec, regs[fm * A_REGS:(fm + 1) * A_REGS],
                                        regs[bo:bo + B_REGS], c[q:q + 4])
        for q in range(FM * FN * 4):
            b.store(c[q], acc.at(q))

    def mma_emulated():
        """(CPU) each lane's mma from the registers its warp published to ``scratch``."""
        tid = k.tid
        _, _, g, t = lane()
        warp0 = b.mul(b.udiv(tid, c64(32)), c64(32))
        reg = lambda ln, j: b.load(b.gep(scratch, [b.add(b.mul(b.add(warp0, ln), c64(2 * REGS)),
                                                         c64(j))]))
        for s in range(BKW // SLICE):
            for fm in range(FM):
                for fn_ in range(FN):
                    q, o = (fm * FN + fn_) * 4, s * REGS
                    bo = o + FM * A_REGS + fn_ * B_REGS
                    res = mma_emulated_warp(
                        b, fma, prec, _V(b, g), _V(b, t),
                        lambda ln, j: reg(ln, o + fm * A_REGS + j), lambda ln, j: reg(ln, bo + j),
                        [b.load(acc.at(q + i)) for i in range(4)])
                    for i in range(4):
                        b.store(res[i], acc.at(q + i))

    def products(pa_t, pb_t, m0, n0):
        vec_a = aligned(pa_t, d.sa_l if d.ta else d.sa_i)       # the non-contiguous stride
        vec_b = aligned(pb_t, d.sb_l if not d.tb else d.sb_j)
        kt0 = b.mul(split, chunk)
        kt1 = b.add(kt0, chunk)
        kt1 = b.select(b.icmp_unsigned("<", kt1, ktiles), kt1, ktiles)

        def load(kt):
            k0 = b.mul(kt, c64(BK))
            gather(pa_t, m0, k0, 0, pre, vec_a)
            gather(pb_t, n0, k0, 1, pre_b, vec_b)
            return lambda dst: (put(dst, 0, pre), put(dst, 1, pre_b))

        with b.if_then(b.icmp_unsigned("<", kt0, kt1)):
            with k.threads():
                load(kt0)(sh)
            k.barrier()
            with k.uniform_loop(kt0, kt1, c64(1), "kt") as kt:
                src, dst = stages(b, sh, kt, kt0)
                with k.threads() as tid:
                    store_next = load(b.add(kt, c64(1)))
                    if gpu:
                        mma(src)
                        store_next(dst)
                    else:       # store first (see the module doc), then publish
                        store_next(dst)
                        for s in range(BKW // SLICE):
                            for j, r in enumerate(fragments(src, s)):
                                slot = b.add(b.mul(tid, c64(2 * REGS)), c64(s * REGS + j))
                                b.store(r, b.gep(scratch, [slot]))
                if not gpu:
                    with k.threads():
                        mma_emulated()
                k.barrier()

    def clear():
        acc.fill(zero)

    def write(pc, m0, n0):
        """C (or split ``split``'s partial) from the accumulators: lane (g, t) holds, per
        fragment, columns 2t and 2t + 1 of rows g and g + 8 (8-byte stores when aligned)."""
        pc = b.gep(pc, [b.mul(split, c_size)])
        finish = whole_c_epilogue(b, d, d.tile_ep, S)
        pairs = b.and_(b.icmp_unsigned("==", b.and_(b.ptrtoint(pc, ir.IntType(64)), c64(7)),
                                       c64(0)),
                       b.icmp_unsigned("==", b.and_(n, c64(1)), c64(0)))
        with k.threads():
            r0, c0, g, t = lane()
            for fm in range(FM):
                for fn_ in range(FN):
                    for h in range(2):
                        q = (fm * FN + fn_) * 4 + 2 * h
                        row = b.add(b.add(m0, r0), b.add(g, c64(16 * fm + 8 * h)))
                        col = b.add(b.add(n0, c0), b.add(b.shl(t, c64(1)), c64(8 * fn_)))
                        ptr = b.gep(pc, [b.add(b.mul(row, n), col)])
                        v = [b.load(acc.at(q)), b.load(acc.at(q + 1))]
                        with b.if_then(b.and_(b.icmp_unsigned("<", row, m),
                                              b.icmp_unsigned("<", col, n))):
                            with b.if_else(pairs) as (two, one):
                                with two:       # (n even: col + 1 < n too)
                                    v2 = finish(v, row, col)
                                    pv = b.insert_element(ir.Constant(ir.VectorType(F32, 2),
                                                                      ir.Undefined), v2[0], c32(0))
                                    pv = b.insert_element(pv, v2[1], c32(1))
                                    b.store(pv, _vptr(b, ptr, pv.type), align=8)
                                with one:
                                    b.store(finish(v[:1], row, col)[0], ptr)
                                    c1 = b.add(col, c64(1))
                                    with b.if_then(b.icmp_unsigned("<", c1, n)):
                                        b.store(finish(v[1:], row, c1)[0], b.gep(ptr, [c64(1)]))

    d.each_tile(k, BM, BN, (k.ptrs[0], a_ptr, b_ptr), clear, products, write)
    k.ctaid, k.nctaid = ctaid, nctaid
    k.finish()
