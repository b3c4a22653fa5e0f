"""The large matrix-product kernel: 128 x 128 tiles, 8 x 8 per thread, double-buffered, split-K.

Same products as :mod:`.matmul` (C[..., M, N] = op(A) @ op(B), transposes read through
strides, batch stacks and broadcast operands, ``matmul_sum``), for the products big enough to
fill the GPU (:func:`.matmul.choose` decides).

* **Tiles.** A block computes a BM x BN = 128 x 128 tile of C with 256 threads in a 16 x 16
  grid; thread (ty, tx) owns the 8 x 8 outputs at rows ``64 g + 4 ty + r`` and columns
  ``64 h + 4 tx + c`` (g, h < 2; r, c < 4), so each step along K reads its 8 values of A and 8
  of B from shared memory as four 16-byte vectors (a warp's B reads are 64 consecutive
  values, its A reads two broadcasts) and issues 64 FMAs.
* **Loads.** Per BK = 8 step every thread loads 4 elements of op(A) and 4 of op(B), as one
  16-byte vector (two in float64) along whichever dimension is contiguous in memory, when the
  matrix allows it at run time: base address 16-byte aligned and the other stride a multiple
  of the vector width (then the contiguous size is one too, so a vector is all inside or all
  outside the matrix).  Otherwise (odd K, odd batch strides, ...) the same elements are read
  one by one.  Elements outside the matrix read as 0 from a clamped address (never out of
  bounds).  Both shared tiles are k-major with rows padded by 4 values (no bank
  conflicts when a K-contiguous operand is stored transposed).
* **Double buffer.** Two shared stages.  The loop over K-tiles is, per block::

      stage tile kt0 into buffer 0;                      barrier
      for kt in [kt0, kt1):  load tile kt+1 into registers; compute from buffer (kt-kt0)%2;
                             store the registers into the other buffer;   barrier

  One barrier per step is enough: in step kt a thread reads only buffer cur and writes only
  buffer 1-cur.  Buffer 1-cur was last read in step kt-1, and every thread passed the barrier
  ending step kt-1 before any thread writes it in step kt; buffer cur was written in step kt-1
  (or the prologue) before that same barrier.  The next tile's (or next matrix's) prologue
  writes buffer 0 after the barrier ending the last step, and the epilogue touches only
  registers.  (The CPU emulation runs each barrier-delimited region as a loop over threads,
  which is the same order of effects; the two buffers are disjoint, so it sees no race a GPU
  would not have.)  The load of tile kt+1 in the last step reads zeros or in-range data and is
  never used.
* **Epilogue.** A fused map (:class:`.matmul.Product`) is applied per element before the
  stores of C (vector or scalar), when S = 1; with S > 1 the partials are stored raw and the
  summing kernel applies it.
* **Split-K.** With ``S`` > 1 splits (integer argument), block task ``(s, matrix, tile)``
  covers K-tiles ``[s*chunk, min((s+1)*chunk, ktiles))`` and writes its partial tile to
  ``work[s]`` (each partial a full C, zeros where its range is empty); a second kernel adds the
  S partials element by element in the order s = 0, 1, ..., S-1, so the result is
  deterministic (it depends on S, which depends only on the shape).
"""
from __future__ import annotations

from llvmlite import ir

from ..lowering.irkit import c64, loop
from ..lowering.loops import accumulate
from ..lowering.printer import intrinsic
from .lower import NTID

BM = BN = 128
BK = 8
TM = TN = 8
PAD = 4
# Resident blocks per SM asked of ptxas (``minctasm``).  2 caps the kernel at 128 registers,
# and ptxas (CUDA 13) then spills 20-80 bytes in float32; 1 lets it use 139 (sm_80) to 195
# (sm_90) registers without spilling.  Which is faster is for a GPU to tell.
MIN_BLOCKS = 1
SA, SB = BM + PAD, BN + PAD           # row strides of the shared A (k-major) and B tiles
STAGE = BK * SA + BK * SB             # elements of one shared stage (A then B)
PER = BM * BK // NTID                 # elements of each operand a thread loads per step: 4
assert BM == BN and PER == 4 and TM == 8


def _vptr(b, ptr, vt):
    """``ptr`` as a pointer to vectors ``vt``, in its own address space."""
    return b.bitcast(ptr, vt.as_pointer(ptr.type.addrspace))


def _vec(T):
    return 2 if isinstance(T, ir.DoubleType) else 4


def lower_big(lw, name: str, k, d, a_ptr, b_ptr) -> None:
    """Build the body of kernel ``k`` (its ``ints[0]`` = S) for the product described by
    ``d`` (a :class:`.matmul.Product`); ``a_ptr``/``b_ptr`` the operands' pointers."""
    b = k.b
    T = d.T
    V = _vec(T)
    if k.flavor == "gpu" and MIN_BLOCKS > 1:     # ptxas keeps to 65536 / (256 MIN_BLOCKS) registers
        mod = k.module
        hint = mod.add_metadata([k.fn, ir.MetaDataString(mod, "minctasm"),
                                 ir.Constant(ir.IntType(32), MIN_BLOCKS)])
        mod.add_named_metadata("nvvm.annotations").add(hint)
    zero = ir.Constant(T, 0.0)
    fma = intrinsic(lw.module, "fma", T, 3)
    vt4 = ir.VectorType(T, 4)
    vtV = ir.VectorType(T, V)
    S = k.ints[0]
    m, n, kk = d.m, d.n, d.k
    sa_i, sa_l, sb_l, sb_j = d.sa_i, d.sa_l, d.sb_l, d.sb_j
    sh = k.shared(T, 2 * STAGE)
    acc = k.private(T, TM * TN)
    pre = k.private(T, 2 * PER)       # the next tile's elements of A (0..3) and B (4..7)
    tiles_m = b.udiv(b.add(m, c64(BM - 1)), c64(BM))
    tiles_n = b.udiv(b.add(n, c64(BN - 1)), c64(BN))
    tiles_mat = b.mul(tiles_m, tiles_n)
    out_mats = c64(1) if d.summed else d.mats
    tiles = b.mul(b.mul(tiles_mat, out_mats), S)
    ktiles = b.udiv(b.add(kk, c64(BK - 1)), c64(BK))
    chunk = b.udiv(b.add(ktiles, b.sub(S, c64(1))), S)
    c_size = b.mul(b.mul(m, n), out_mats)           # one partial (or C itself)

    def aligned(p, stride):
        """16-byte aligned base and a stride that keeps every vector aligned."""
        addr = b.ptrtoint(p, ir.IntType(64))
        ok = b.icmp_unsigned("==", b.and_(addr, c64(15)), c64(0))
        return b.and_(ok, b.icmp_unsigned("==", b.urem(stride, c64(V)), c64(0)))

    def gather(p, x0, k0, xs, x_contig, s_x, s_l, slot0, vec_ok):
        """Load this thread's PER elements of the BK-wide op tile (x along M or N from x0,
        l along K from k0) into ``pre[slot0:]``; returns their in-tile (x, l) positions."""
        tid = k.tid
        pos = []
        for g in range(PER // V):
            e = b.add(b.mul(tid, c64(PER // V)), c64(g))
            if x_contig:      # groups of V along x
                per_row = BM // V
                l, x = b.udiv(e, c64(per_row)), b.mul(b.urem(e, c64(per_row)), c64(V))
            else:
                per_col = BK // V
                x, l = b.udiv(e, c64(per_col)), b.mul(b.urem(e, c64(per_col)), c64(V))
            pos.append((x, l))
        # (x, l) of the tile is element (x0 + x, k0 + l) of op(X): X[(x0+x)*s_x + (k0+l)*s_l]
        with b.if_else(vec_ok) as (vector, scalar):
            with vector:
                for g, (x, l) in enumerate(pos):
                    gx, gl = b.add(x0, x), b.add(k0, l)
                    inside = b.and_(b.icmp_unsigned("<", gx, xs), b.icmp_unsigned("<", gl, kk))
                    if x_contig:
                        cx = b.select(b.icmp_unsigned("<", gx, xs), gx, b.sub(xs, c64(V)))
                        cl = b.select(b.icmp_unsigned("<", gl, kk), gl, b.sub(kk, c64(1)))
                    else:
                        cx = b.select(b.icmp_unsigned("<", gx, xs), gx, b.sub(xs, c64(1)))
                        cl = b.select(b.icmp_unsigned("<", gl, kk), gl, b.sub(kk, c64(V)))
                    ptr = b.gep(p, [b.add(b.mul(cx, s_x), b.mul(cl, s_l))])
                    v = b.load(_vptr(b, ptr, vtV), align=16)
                    for j in range(V):
                        b.store(b.select(inside, b.extract_element(v, ir.Constant(ir.IntType(32), j)),
                                         zero), pre.at(slot0 + g * V + j))
            with scalar:
                for g, (x, l) in enumerate(pos):
                    for j in range(V):
                        gx = b.add(x0, b.add(x, c64(j)) if x_contig else x)
                        gl = b.add(k0, l if x_contig else b.add(l, c64(j)))
                        in_x, in_l = b.icmp_unsigned("<", gx, xs), b.icmp_unsigned("<", gl, kk)
                        cx = b.select(in_x, gx, b.sub(xs, c64(1)))
                        cl = b.select(in_l, gl, b.sub(kk, c64(1)))
                        v = b.load(b.gep(p, [b.add(b.mul(cx, s_x), b.mul(cl, s_l))]))
                        b.store(b.select(b.and_(in_x, in_l), v, zero), pre.at(slot0 + g * V + j))
        return pos

    def put(base, stride, pos, x_contig, slot0):
        """Store ``pre[slot0:]`` into the shared tile ``base[l*stride + x]``."""
        for g, (x, l) in enumerate(pos):
            if x_contig:
                v = ir.Constant(vtV, ir.Undefined)
                for j in range(V):
                    v = b.insert_element(v, b.load(pre.at(slot0 + g * V + j)),
                                         ir.Constant(ir.IntType(32), j))
                ptr = b.gep(base, [b.add(b.mul(l, c64(stride)), x)])
                b.store(v, _vptr(b, ptr, vtV), align=16)
            else:
                for j in range(V):
                    ptr = b.gep(base, [b.add(b.mul(b.add(l, c64(j)), c64(stride)), x)])
                    b.store(b.load(pre.at(slot0 + g * V + j)), ptr)

    def stage_tile(pa_t, pb_t, m0, n0, kt, vec_a, vec_b, dst):
        """(inside a region) load K-tile ``kt`` and store it into stage ``dst``."""
        k0 = b.mul(kt, c64(BK))
        pos_a = gather(pa_t, m0, k0, m, d.ta, sa_i, sa_l, 0, vec_a)
        pos_b = gather(pb_t, n0, k0, n, not d.tb, sb_j, sb_l, PER, vec_b)
        return lambda: (put(dst, SA, pos_a, d.ta, 0),
                        put(b.gep(dst, [c64(BK * SA)]), SB, pos_b, not d.tb, PER))

    def compute(src):
        """Add the stage ``src`` (A then B) to this thread's accumulators."""
        tid = k.tid
        ty, tx = b.udiv(tid, c64(16)), b.urem(tid, c64(16))
        c = [b.load(acc.at(q)) for q in range(TM * TN)]
        for l in range(BK):
            av, bv = [], []
            for g in range(2):
                pa = b.gep(src, [b.add(c64(l * SA + 64 * g), b.mul(ty, c64(4)))])
                va = b.load(_vptr(b, pa, vt4), align=16)
                pb = b.gep(src, [b.add(c64(BK * SA + l * SB + 64 * g), b.mul(tx, c64(4)))])
                vb = b.load(_vptr(b, pb, vt4), align=16)
                av += [b.extract_element(va, ir.Constant(ir.IntType(32), r)) for r in range(4)]
                bv += [b.extract_element(vb, ir.Constant(ir.IntType(32), r)) for r in range(4)]
            c = [b.call(fma, [av[q // TN], bv[q % TN], c[q]]) for q in range(TM * TN)]
        for q in range(TM * TN):
            b.store(c[q], acc.at(q))

    def products(pa_t, pb_t, m0, n0, kt0, kt1):
        """Add op(A) @ op(B) over K-tiles [kt0, kt1) of one matrix pair to the accumulators."""
        vec_a = aligned(pa_t, sa_l if d.ta else sa_i)      # the non-contiguous stride
        vec_b = aligned(pb_t, sb_l if not d.tb else sb_j)
        with b.if_then(b.icmp_unsigned("<", kt0, kt1)):
            with k.threads():
                stage_tile(pa_t, pb_t, m0, n0, kt0, vec_a, vec_b, sh)()
            k.barrier()
            with k.uniform_loop(kt0, kt1, c64(1), "kt") as kt:
                cur = b.and_(b.sub(kt, kt0), c64(1))
                src = b.gep(sh, [b.mul(cur, c64(STAGE))])
                dst = b.gep(sh, [b.mul(b.xor(cur, c64(1)), c64(STAGE))])
                with k.threads():
                    store_next = stage_tile(pa_t, pb_t, m0, n0, b.add(kt, c64(1)),
                                            vec_a, vec_b, dst)
                    compute(src)
                    store_next()
                k.barrier()

    with k.uniform_loop(k.ctaid, tiles, k.nctaid, "tile") as t:
        # task t = ((split * mats + matrix) * tiles_m + tile row) * tiles_n + tile column
        per_split = b.mul(tiles_mat, out_mats)
        s = b.udiv(t, per_split)
        t = b.sub(t, b.mul(s, per_split))
        mat = c64(0) if d.summed else b.udiv(t, tiles_mat)
        t = b.sub(t, b.mul(mat, tiles_mat))
        tm = b.udiv(t, tiles_n)
        m0, n0 = b.mul(tm, c64(BM)), b.mul(b.sub(t, b.mul(tm, tiles_n)), c64(BN))
        kt0 = b.mul(s, chunk)
        kt1 = b.add(kt0, chunk)
        kt1 = b.select(b.icmp_unsigned("<", kt1, ktiles), kt1, ktiles)
        if d.summed:
            pc = k.ptrs[0]
        else:
            pc, pa_t, pb_t = d.offsets(b, mat, (k.ptrs[0], a_ptr, b_ptr))
        pc = b.gep(pc, [b.mul(s, c_size)])
        acc.fill(zero)
        if d.summed:
            with k.uniform_loop(c64(0), d.mats, c64(1), "mat") as mat:
                _, pa_t, pb_t = d.offsets(b, mat, (k.ptrs[0], a_ptr, b_ptr))
                products(pa_t, pb_t, m0, n0, kt0, kt1)
        else:
            products(pa_t, pb_t, m0, n0, kt0, kt1)
        addr_c = b.ptrtoint(pc, ir.IntType(64))    # rows of C in aligned groups of 4
        vec_c = b.and_(b.icmp_unsigned("==", b.and_(addr_c, c64(15)), c64(0)),
                       b.icmp_unsigned("==", b.urem(n, c64(4)), c64(0)))
        finish = whole_c_epilogue(b, d, d.epilogue(b, mat), S)

        with k.threads() as tid:
            ty, tx = b.udiv(tid, c64(16)), b.urem(tid, c64(16))
            for g in range(2):
                for r in range(4):
                    row = b.add(m0, b.add(c64(64 * g + r), b.mul(ty, c64(4))))
                    with b.if_then(b.icmp_unsigned("<", row, m)):
                        for h in range(2):
                            col = b.add(n0, b.add(c64(64 * h), b.mul(tx, c64(4))))
                            vals = [b.load(acc.at((4 * g + r) * TN + 4 * h + c)) for c in range(4)]
                            ptr = b.gep(pc, [b.add(b.mul(row, n), col)])
                            whole = b.and_(vec_c, b.icmp_unsigned("<", col, n))
                            with b.if_else(whole) as (vector, scalar):
                                with vector:
                                    v = ir.Constant(vt4, ir.Undefined)
                                    for c, x in enumerate(finish(vals, row, col)):
                                        v = b.insert_element(v, x, ir.Constant(ir.IntType(32), c))
                                    b.store(v, _vptr(b, ptr, vt4), align=16)
                                with scalar:
                                    for c in range(4):
                                        cc = b.add(col, c64(c))
                                        with b.if_then(b.icmp_unsigned("<", cc, n)):
                                            (x,) = finish([vals[c]], row, cc)
                                            b.store(x, b.gep(ptr, [c64(c)]))
    k.finish()


def whole_c_epilogue(b, d, ep, S):
    """``finish(vals, row, col)``: for a kernel storing C itself when S = 1 and split-K
    partials otherwise, the values of in-bounds elements (row, col + c) to store -- the
    epilogue ``ep`` applied when S == 1, the raw values for a partial (or without one)."""
    whole_c = b.icmp_unsigned("==", S, c64(1))    # C itself (not a partial): epilogue

    def finish(vals, row, col):
        if d.map is None:
            return vals
        pre = b.block
        with b.if_then(whole_c):
            done = [ep(v, row, b.add(col, c64(c))) for c, v in enumerate(vals)]
            end = b.block
        out = []
        for v, w in zip(vals, done):
            phi = b.phi(v.type)
            phi.add_incoming(w, end)
            phi.add_incoming(v, pre)
            out.append(phi)
        return out
    return finish


def lower_split_sum(k, total, S, finish=None) -> None:
    """Kernel body: ``out[i] = work[i] + work[T + i] + ... + work[(S-1) T + i]`` for i < T
    (``k.ptrs`` = out, work, ...), added in that order; ``finish(b, i, value)``, when given,
    maps the sum before it is stored (a fused epilogue)."""
    b = k.b
    with k.threads() as tid:
        with loop(b, b.add(b.mul(k.ctaid, c64(NTID)), tid), total, b.mul(k.nctaid, c64(NTID)),
                  "i") as i:
            init = b.load(b.gep(k.ptrs[1], [i]))
            (v,) = accumulate(b, c64(1), S, c64(1), [init], lambda s, a: [
                b.fadd(a[0], b.load(b.gep(k.ptrs[1], [b.add(b.mul(s, total), i)])))])
            if finish is not None:
                v = finish(b, i, v)
            b.store(v, b.gep(k.ptrs[0], [i]))
    k.finish()
