"""Generated matrix-multiply kernels (GotoBLAS-style, written with llvmlite.ir only).

:func:`emit_gemm` adds ``adjit_gemm_f32`` / ``adjit_gemm_f64`` to a module, C signature::

    void adjit_gemm_<dt>(i32 transA, i32 transB, i64 M, i64 N, i64 K, T* A, i64 lda,
                         T* B, i64 ldb, T* C, i64 ldc, i32 accumulate, T* work)

computing, row-major, ``C[M,N] = op(A) @ op(B)`` (``+ C`` when accumulate != 0); op(A) is
M x K (with transA, A is stored K x M, leading dimension lda), op(B) is K x N (with transB,
B is stored N x K).  ``work``: :func:`gemm_workspace_elems` elements, 64-byte aligned, one
half per thread (each half = an MC x KC panel of A + a KC x NC panel of B).  C must not
overlap A, B or work; A and B may overlap (both are only read).  Any M, N, K >= 0.

Structure (sizes are runtime values, blocking constants are Python ints):
  * ``jc`` over N by NC, ``pc`` over K by KC: pack op(B) into NR-wide k-major slivers (zero
    padded); ``ic`` over M by MC: pack op(A) into MR-wide slivers; ``jr``/``ir`` over the
    NR x MR tiles call the micro-kernel: MR x NR accumulators in MR*NV vectors <VL x T>,
    per k one broadcast of A per row, NV loads of B, hand-declared ``llvm.fma.v*``.  Full
    tiles update C with vector ops, edge tiles go through a stack tile.
  * Small products (M*N*K <= SMALL_MNK) skip packing: the kernel reads A through runtime
    strides (rows past the edge re-read the last valid row; their results are dropped) and
    B rows in place (only a ragged last strip, or all of B when transB, is packed).
  * Large products (M*N*K >= THREAD_MNK) are split along N (or M) and one half runs on a
    pthread created by the generated code (glibc >= 2.34 exports pthread_* from libc and
    MCJIT resolves them from the process).  If pthread_create fails that half runs inline.

Invariants: addresses are GEPs only (no inttoptr); the micro-kernel's k loop runs kc >= 1
times (K == 0 is handled first: C = 0 unless accumulating); the first K block overwrites C
unless accumulate, later blocks add to it.
"""

from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

__all__ = ["emit_gemm", "gemm_workspace_elems", "gemm_params", "gemm_symbol"]

I1, I32, I64, I8P = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()

# Blocking per dtype.  MR x (NV*VL) is the register tile (12 accumulators + 2 B vectors +
# 1 broadcast = 15 of the 16 ymm registers); KC*NR*size (16 KiB) keeps a B sliver in L1,
# MC*KC*size (~120-150 KiB) keeps the A panel in L2 (512 KiB/core), KC*NC in L3.
_PARAMS = {
    "f32": dict(MR=6, VL=8, NV=2, KC=256, MC=120, NC=2048),
    "f64": dict(MR=6, VL=4, NV=2, KC=256, MC=72, NC=1024),
}
# M*N*K thresholds (measured with benchmarks/gemm_bench.py on a 2-core znver3).
SMALL_MNK = {"f32": 64 * 64 * 64, "f64": 64 * 64 * 64}
THREAD_MNK = {"f32": 128 * 128 * 256, "f64": 128 * 128 * 128}
MAX_THREADS = 2


def gemm_params(dtype: str) -> dict:
    """Blocking parameters for ``dtype`` ('f32'/'f64'), with NR = NV*VL added."""
    p = dict(_PARAMS[dtype])
    p["NR"] = p["NV"] * p["VL"]
    return p


def gemm_symbol(dtype: str) -> str:
    """Name of the generated entry point for ``dtype``."""
    return f"adjit_gemm_{dtype}"


def _per_thread_elems(dtype: str) -> int:
    p = gemm_params(dtype)
    n = p["MC"] * p["KC"] + p["KC"] * p["NC"]
    return -(-n // 16) * 16          # keeps each thread's half 64-byte aligned


def gemm_workspace_elems(dtype: str) -> int:
    """Elements of T the ``work`` argument must hold (covers MAX_THREADS threads)."""
    return MAX_THREADS * _per_thread_elems(dtype)


def _c64(v):
    return ir.Constant(I64, v)


@contextmanager
def _loop(b, start, stop, step, name):
    """``for (i = start; i < stop; i += step)`` with the test at the top; yields i."""
    start, stop, step = (_c64(x) if isinstance(x, int) else x for x in (start, stop, step))
    pre = b.block
    head, body, done = (b.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)
    yield i
    i.add_incoming(b.add(i, step), b.block)
    b.branch(head)
    b.position_at_end(done)


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _at(b, ptr, *offsets):
    """GEP ptr + sum(offsets) (element units)."""
    for off in offsets:
        ptr = b.gep(ptr, [_c64(off) if isinstance(off, int) else off])
    return ptr


def _vload(b, ptr, vt, align):
    return b.load(b.bitcast(ptr, vt.as_pointer()), align=align)


def _vstore(b, val, ptr, align):
    b.store(val, b.bitcast(ptr, val.type.as_pointer()), align=align)


def _prefetch(b, ptr, write):
    """llvm.prefetch (never faults, so ptr may point past the data)."""
    fn = _declare(b.module, "llvm.prefetch.p0",
                  ir.FunctionType(ir.VoidType(), [I8P, I32, I32, I32]))
    b.call(fn, [b.bitcast(ptr, I8P)] + [ir.Constant(I32, x) for x in (write, 3, 1)])


def _function(module, name, ret, args, names, noalias=()):
    fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    for a, n in zip(fn.args, names):
        a.name = n
    for i in noalias:
        fn.args[i].add_attribute("noalias")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _declare(module, name, fnty):
    """Declare an external/intrinsic function once per module."""
    g = module.globals.get(name)
    return g if g is not None else ir.Function(module, fnty, name=name)


def _emit_kernel(module, dt, p, T, a_packed, b_packed):
    """Micro-kernel: C[mr x nr] (+)= A-sliver(kc) . B-sliver(kc), tile MR x NR.

    Signature (kc, a, a_rs, a_cs, b, b_ks, c, ldc, mr, nr, beta).  Packed A uses
    a_rs=1, a_cs=MR and packed B b_ks=NR as compile-time constants (arguments ignored).
    Requires kc >= 1, 1 <= mr <= MR, 1 <= nr <= NR; for strided B, nr == NR.
    """
    MR, VL, NV, NR = p["MR"], p["VL"], p["NV"], p["NR"]
    tp, vt = T.as_pointer(), ir.VectorType(T, VL)
    fma = _declare(module, f"llvm.fma.v{VL}{dt}", ir.FunctionType(vt, [vt] * 3))
    name = f"adjit_gemm_{dt}.kern.{'p' if a_packed else 's'}{'p' if b_packed else 's'}"
    fn, b = _function(module, name, ir.VoidType(),
                      [I64, tp, I64, I64, tp, I64, tp, I64, I64, I64, I32],
                      ["kc", "a", "a_rs", "a_cs", "b", "b_ks", "c", "ldc", "mr", "nr", "beta"],
                      noalias=(1, 4, 6))
    fn.attributes.add("noinline")   # own register allocation; measured faster than inlined
    kc, a, a_rs, a_cs, bp, b_ks, c, ldc, mr, nr, beta = fn.args
    esz = 4 if dt == "f32" else 8
    tile = b.alloca(T, size=_c64(MR * NR), name="tile")
    if a_packed:
        rows = [_at(b, a, i) for i in range(MR)]
        a_cs = _c64(MR)
    else:   # rows past mr re-read row mr-1 (always valid); their results are discarded
        rows = [_at(b, a, b.mul(_min(b, _c64(i), b.sub(mr, _c64(1))), a_rs)) for i in range(MR)]
    b_ks = _c64(NR) if b_packed else b_ks
    zero = ir.Constant(vt, [0.0] * VL)
    undef = ir.Constant(vt, ir.Undefined)
    splat_mask = ir.Constant(ir.VectorType(I32, VL), [0] * VL)

    # Prefetch the C tile for writing: its lines arrive while the k loop runs.
    for i in range(MR):
        crow = _at(b, c, b.mul(_c64(i), ldc))
        for off in (0, NR - 1):
            _prefetch(b, _at(b, crow, off), 1)
    pre, body, done = b.block, b.append_basic_block("k.body"), b.append_basic_block("k.done")
    b.branch(body)
    b.position_at_end(body)
    k = b.phi(I64, "k")
    k.add_incoming(_c64(0), pre)
    acc = [[b.phi(vt, f"acc{i}_{v}") for v in range(NV)] for i in range(MR)]
    for ph in (ph for row in acc for ph in row):
        ph.add_incoming(zero, pre)
    brow = _at(b, bp, b.mul(k, b_ks))
    bv = [_vload(b, _at(b, brow, v * VL), vt, esz) for v in range(NV)]
    koff = b.mul(k, a_cs)
    new = []
    for i in range(MR):
        s = b.load(_at(b, rows[i], koff), align=esz)
        s = b.shuffle_vector(b.insert_element(undef, s, ir.Constant(I32, 0)), undef, splat_mask)
        new.append([b.call(fma, [s, bv[v], acc[i][v]]) for v in range(NV)])
    k1 = b.add(k, _c64(1))
    for i, v in ((i, v) for i in range(MR) for v in range(NV)):
        acc[i][v].add_incoming(new[i][v], body)
    k.add_incoming(k1, body)
    b.cbranch(b.icmp_signed("<", k1, kc), body, done)

    b.position_at_end(done)
    add = b.icmp_signed("!=", beta, ir.Constant(I32, 0))
    full = b.and_(b.icmp_signed("==", mr, _c64(MR)), b.icmp_signed("==", nr, _c64(NR)))
    with b.if_else(full) as (then, other):
        with then:   # whole tile: vector load/add/store straight into C
            for i in range(MR):
                crow = _at(b, c, b.mul(_c64(i), ldc))
                for v in range(NV):
                    ptr = _at(b, crow, v * VL)
                    old = b.select(add, _vload(b, ptr, vt, esz), zero)
                    _vstore(b, b.fadd(new[i][v], old), ptr, esz)
        with other:  # edge tile: spill to the stack tile, copy the valid mr x nr part
            for i, v in ((i, v) for i in range(MR) for v in range(NV)):
                _vstore(b, new[i][v], _at(b, tile, i * NR + v * VL), esz)
            with _loop(b, 0, mr, 1, "ei") as i:
                crow = _at(b, c, b.mul(i, ldc))
                trow = _at(b, tile, b.mul(i, _c64(NR)))
                with _loop(b, 0, nr, 1, "ej") as j:
                    cp = _at(b, crow, j)
                    val = b.load(_at(b, trow, j), align=esz)
                    old = b.select(add, b.load(cp, align=esz), ir.Constant(T, 0.0))
                    b.store(b.fadd(val, old), cp, align=esz)
    b.ret_void()
    return fn


def _transpose(b, rows):
    """Transpose VL vectors of VL lanes (VL = 8 or 4): unpack, shuffle, 128-bit permute."""
    n = len(rows)

    def sh(x, y, mask):
        return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, n), mask))
    if n == 4:   # t: (r0,r1) and (r2,r3) interleaved in 128-bit lanes; then swap halves
        t0, t1 = sh(rows[0], rows[1], [0, 4, 2, 6]), sh(rows[0], rows[1], [1, 5, 3, 7])
        t2, t3 = sh(rows[2], rows[3], [0, 4, 2, 6]), sh(rows[2], rows[3], [1, 5, 3, 7])
        lo, hi = [0, 1, 4, 5], [2, 3, 6, 7]
        return [sh(t0, t2, lo), sh(t1, t3, lo), sh(t0, t2, hi), sh(t1, t3, hi)]
    t = []
    for i in range(0, 8, 2):
        t += [sh(rows[i], rows[i + 1], [0, 8, 1, 9, 4, 12, 5, 13]),
              sh(rows[i], rows[i + 1], [2, 10, 3, 11, 6, 14, 7, 15])]
    m44, mee = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    # s[c] holds columns c and c+4 of rows 0-3 (s[c+4]: of rows 4-7)
    s = [sh(t[0], t[2], m44), sh(t[0], t[2], mee), sh(t[1], t[3], m44), sh(t[1], t[3], mee),
         sh(t[4], t[6], m44), sh(t[4], t[6], mee), sh(t[5], t[7], m44), sh(t[5], t[7], mee)]
    lo, hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return [sh(s[c], s[c + 4], lo) for c in range(4)] + [sh(s[c], s[c + 4], hi) for c in range(4)]


def _chunks(n, VL):
    """Split n lanes into vector pieces of VL, 4, 2, 1 lanes: [(offset, length)]."""
    out, off = [], 0
    for ln in (VL, 4, 2, 1):
        while n - off >= ln:
            out.append((off, ln))
            off += ln
    return out


def _emit_pack(module, dt, p, T, W):
    """Pack an n x kc panel into W-wide slivers: dst[s*kc + k*W + w] = src(s+w, k).

    Element (w, k) is ``src[w*ld + k]`` (w_contig == 0) or ``src[k*ld + w]`` (w_contig
    != 0); the last sliver is zero padded to W.  Signature (i32 w_contig, i64 n, i64 kc,
    T* src, i64 ld, T* dst).  Access order follows the source: contiguous rows are copied
    row by row across all slivers (sequential reads; sliver-by-sliver order touched one
    page per row and ran 2x slower); strided rows are read VL k at a time and transposed in
    registers.  The partial last sliver uses a plain scalar loop.
    """
    VL, esz = p["VL"], (4 if dt == "f32" else 8)
    tp = T.as_pointer()
    fn, b = _function(module, f"adjit_gemm_{dt}.pack{W}", ir.VoidType(),
                      [I32, I64, I64, tp, I64, tp], ["w_contig", "n", "kc", "src", "ld", "dst"],
                      noalias=(3, 5))
    w_contig, n, kc, src, ld, dst = fn.args
    contig = b.icmp_signed("!=", w_contig, ir.Constant(I32, 0))
    nfull = b.mul(b.sdiv(n, _c64(W)), _c64(W))     # columns in full slivers

    def piece(v, off, ln):   # lanes off..off+ln of vector v
        if ln == VL:
            return v
        return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, ln),
                                                  list(range(off, off + ln))))
    with b.if_else(contig) as (then, other):
        with then:           # rows of contiguous elements: copy W at a time, row by row
            with _loop(b, 0, kc, 1, "kc") as k:
                row = _at(b, src, b.mul(k, ld))
                with _loop(b, 0, nfull, W, "sc") as s:
                    out = _at(b, dst, b.mul(s, kc), b.mul(k, _c64(W)))
                    for off, ln in _chunks(W, VL):
                        vt = ir.VectorType(T, ln)
                        _vstore(b, _vload(b, _at(b, row, s, off), vt, esz), _at(b, out, off), esz)
        with other:          # W strided rows per sliver: transpose VL x VL blocks
            vt = ir.VectorType(T, VL)
            kv = b.mul(b.sdiv(kc, _c64(VL)), _c64(VL))
            with _loop(b, 0, nfull, W, "st") as s:
                rows = [_at(b, src, b.mul(b.add(s, _c64(w)), ld)) for w in range(W)]
                sl = _at(b, dst, b.mul(s, kc))
                with _loop(b, 0, kv, VL, "kt") as k:
                    for g in range(0, W, VL):
                        tr = _transpose(b, [_vload(b, _at(b, rows[g + r], k), vt, esz)
                                            if g + r < W else ir.Constant(vt, [0.0] * VL)
                                            for r in range(VL)])
                        for t in range(VL):
                            out = _at(b, sl, b.mul(b.add(k, _c64(t)), _c64(W)), g)
                            for off, ln in _chunks(min(VL, W - g), VL):
                                _vstore(b, piece(tr[t], off, ln), _at(b, out, off), esz)
                with _loop(b, kv, kc, 1, "kr") as k:
                    out = _at(b, sl, b.mul(k, _c64(W)))
                    for w in range(W):
                        v = b.load(_at(b, rows[w], k), align=esz)
                        b.store(v, _at(b, out, w), align=esz)
    # Partial last sliver: w >= rem stores 0 (w is clamped so every load stays in bounds).
    rem = b.sub(n, nfull)
    with b.if_then(b.icmp_signed(">", rem, _c64(0))):
        ws, ks = b.select(contig, _c64(1), ld), b.select(contig, ld, _c64(1))
        base, sl = _at(b, src, b.mul(nfull, ws)), _at(b, dst, b.mul(nfull, kc))
        last = b.sub(rem, _c64(1))
        cols = [_at(b, base, b.mul(_min(b, _c64(w), last), ws)) for w in range(W)]
        valid = [b.icmp_signed("<", _c64(w), rem) for w in range(W)]
        with _loop(b, 0, kc, 1, "ke") as k:
            koff, out = b.mul(k, ks), _at(b, sl, b.mul(k, _c64(W)))
            for w in range(W):
                v = b.load(_at(b, cols[w], koff), align=esz)
                b.store(b.select(valid[w], v, ir.Constant(T, 0.0)), _at(b, out, w), align=esz)
    b.ret_void()
    return fn


def _emit_serial(module, dt, p, T, small_mnk):
    """One thread's blocked GEMM (same signature as the entry point)."""
    MR, NR, KC, MC, NC = p["MR"], p["NR"], p["KC"], p["MC"], p["NC"]
    tp = T.as_pointer()
    kern = {(ap, bp): _emit_kernel(module, dt, p, T, ap, bp)
            for ap, bp in ((True, True), (False, True), (False, False))}
    pack_a, pack_b = _emit_pack(module, dt, p, T, MR), _emit_pack(module, dt, p, T, NR)
    fn, b = _function(module, f"adjit_gemm_{dt}.serial", ir.VoidType(), _ENTRY_ARGS(T),
                      _ENTRY_NAMES, noalias=(5, 7, 9, 12))
    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum, work = fn.args
    one, zero32 = _c64(1), ir.Constant(I32, 0)
    trans_a = b.icmp_signed("!=", ta, zero32)
    trans_b = b.icmp_signed("!=", tb, zero32)
    a_rs, a_cs = b.select(trans_a, one, lda), b.select(trans_a, lda, one)   # op(A)[i,k]
    b_ks, b_js = b.select(trans_b, one, ldb), b.select(trans_b, ldb, one)   # op(B)[k,j]
    direct = b.icmp_signed("<=", b.mul(b.mul(M, N), K), _c64(small_mnk))
    pack_all_b = b.or_(b.not_(direct), trans_b)
    Ap, Bp = work, _at(b, work, MC * KC)
    acc_first = b.icmp_signed("!=", accum, zero32)
    with _loop(b, 0, N, NC, "jc") as jc:
        nc = _min(b, _c64(NC), b.sub(N, jc))
        with _loop(b, 0, K, KC, "pc") as pc:
            kc = _min(b, _c64(KC), b.sub(K, pc))
            beta = b.zext(b.or_(acc_first, b.icmp_signed(">", pc, _c64(0))), I32)
            bblk = _at(b, B, b.mul(pc, b_ks), b.mul(jc, b_js))
            with b.if_then(pack_all_b):
                b.call(pack_b, [b.zext(b.not_(trans_b), I32), nc, kc, bblk, ldb, Bp])
            with _loop(b, 0, M, MC, "ic") as ic:
                mc = _min(b, _c64(MC), b.sub(M, ic))
                ablk = _at(b, A, b.mul(ic, a_rs), b.mul(pc, a_cs))
                with b.if_then(b.not_(direct)):
                    b.call(pack_a, [ta, mc, kc, ablk, lda, Ap])
                with _loop(b, 0, nc, NR, "jr") as jr:
                    nr = _min(b, _c64(NR), b.sub(nc, jr))
                    ragged = b.and_(b.not_(pack_all_b), b.icmp_signed("<", nr, _c64(NR)))
                    with b.if_then(ragged):   # direct mode, last strip: pad it to NR
                        b.call(pack_b, [ir.Constant(I32, 1), nr, kc, _at(b, bblk, jr), ldb, Bp])
                    b_packed = b.or_(pack_all_b, ragged)
                    bsl = b.select(b_packed, _at(b, Bp, b.select(pack_all_b, b.mul(jr, kc),
                                                                  _c64(0))), _at(b, bblk, jr))
                    with _loop(b, 0, mc, MR, "ir") as ir_:
                        mr = _min(b, _c64(MR), b.sub(mc, ir_))
                        ct = _at(b, C, b.mul(b.add(ic, ir_), ldc), jc, jr)
                        kargs = [kc, None, a_rs, a_cs, bsl, ldb, ct, ldc, mr, nr, beta]
                        with b.if_else(direct) as (d_then, d_else):
                            with d_then:
                                kargs[1] = _at(b, ablk, b.mul(ir_, a_rs))
                                with b.if_else(b_packed) as (bp_then, bp_else):
                                    with bp_then:
                                        b.call(kern[False, True], kargs)
                                    with bp_else:
                                        b.call(kern[False, False], kargs)
                            with d_else:
                                kargs[1] = _at(b, Ap, b.mul(ir_, kc))
                                b.call(kern[True, True], kargs)
    b.ret_void()
    return fn


def _ENTRY_ARGS(T):
    tp = T.as_pointer()
    return [I32, I32, I64, I64, I64, tp, I64, tp, I64, tp, I64, I32, tp]


_ENTRY_NAMES = ["transA", "transB", "M", "N", "K", "A", "lda", "B", "ldb", "C", "ldc",
                "accumulate", "work"]


def emit_gemm(module: ir.Module, dtype: str, *, threads: int = MAX_THREADS,
              small_mnk: int | None = None, thread_mnk: int | None = None) -> ir.Function:
    """Add ``adjit_gemm_<dtype>`` (see the module docstring) to ``module`` and return it.

    Idempotent: if the module already has the function it is returned as is (keyword
    arguments then ignored).  ``threads`` (1 or 2) caps the threads; ``small_mnk`` and
    ``thread_mnk`` override SMALL_MNK / THREAD_MNK (benchmarks use them).

    >>> m = ir.Module(); f = emit_gemm(m, "f32"); f.name, emit_gemm(m, "f32") is f
    ('adjit_gemm_f32', True)
    """
    if dtype not in _PARAMS:
        raise ValueError(f"dtype must be 'f32' or 'f64', got {dtype!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 1..{MAX_THREADS}")
    name = gemm_symbol(dtype)
    if name in module.globals:
        return module.globals[name]
    p, T = gemm_params(dtype), (ir.FloatType() if dtype == "f32" else ir.DoubleType())
    MR, NR = p["MR"], p["NR"]
    serial = _emit_serial(module, dtype, p, T, SMALL_MNK[dtype] if small_mnk is None else small_mnk)
    args_t = ir.LiteralStructType(_ENTRY_ARGS(T))
    field = lambda bld, ptr, i: bld.gep(ptr, [ir.Constant(I32, 0), ir.Constant(I32, i)])
    worker, b = _function(module, f"{name}.worker", I8P, [I8P], ["arg"])   # thread body
    sp = b.bitcast(worker.args[0], args_t.as_pointer())
    b.call(serial, [b.load(field(b, sp, i)) for i in range(len(args_t.elements))])
    b.ret(ir.Constant(I8P, None))

    fn, b = _function(module, name, ir.VoidType(), _ENTRY_ARGS(T), _ENTRY_NAMES,
                      noalias=(5, 7, 9, 12))
    fn.linkage = "external"
    args = list(fn.args)
    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum, work = args
    half2_st, tid = b.alloca(args_t, name="half2"), b.alloca(I64, name="tid")
    zero32, c0, one = ir.Constant(I32, 0), _c64(0), _c64(1)
    with b.if_then(b.or_(b.icmp_signed("<=", M, c0), b.icmp_signed("<=", N, c0))):
        b.ret_void()
    with b.if_then(b.icmp_signed("<=", K, c0)):
        with b.if_then(b.icmp_signed("==", accum, zero32)):   # empty sum: C = 0
            with _loop(b, 0, M, 1, "zi") as i:
                with _loop(b, 0, N, 1, "zj") as j:
                    b.store(ir.Constant(T, 0.0), _at(b, C, b.mul(i, ldc), j))
        b.ret_void()
    big = b.icmp_signed(">=", b.mul(b.mul(M, N), K),
                        _c64(THREAD_MNK[dtype] if thread_mnk is None else thread_mnk))
    split_n = b.and_(b.icmp_signed(">=", N, M), b.icmp_signed(">=", N, _c64(2 * NR)))
    split_m = b.and_(b.not_(split_n), b.icmp_signed(">=", M, _c64(2 * MR)))
    go = b.and_(big, b.or_(split_n, split_m)) if threads > 1 else ir.Constant(I1, 0)
    with b.if_then(b.not_(go)):
        b.call(serial, args)
        b.ret_void()
    # Split the larger of M, N (then each thread re-packs only the smaller operand) at the
    # nearest tile multiple; both halves get at least one full tile.
    n0 = b.mul(b.sdiv(b.add(b.sdiv(N, _c64(2)), _c64(NR // 2)), _c64(NR)), _c64(NR))
    m0 = b.mul(b.sdiv(b.add(b.sdiv(M, _c64(2)), _c64(MR // 2)), _c64(MR)), _c64(MR))
    a_rs = b.select(b.icmp_signed("!=", ta, zero32), one, lda)     # op(A) row stride
    b_js = b.select(b.icmp_signed("!=", tb, zero32), ldb, one)     # op(B) column stride
    M2, N2 = b.sub(M, b.select(split_n, c0, m0)), b.sub(N, b.select(split_n, n0, c0))
    half2 = [ta, tb, M2, N2, K, _at(b, A, b.select(split_n, c0, b.mul(m0, a_rs))), lda,
             _at(b, B, b.select(split_n, b.mul(n0, b_js), c0)), ldb,
             _at(b, C, b.select(split_n, n0, b.mul(m0, ldc))), ldc, accum,
             _at(b, work, _per_thread_elems(dtype))]
    for i, v in enumerate(half2):
        b.store(v, field(b, half2_st, i))
    pcreate = _declare(module, "pthread_create", ir.FunctionType(
        I32, [I64.as_pointer(), I8P, worker.type, I8P]))
    pjoin = _declare(module, "pthread_join", ir.FunctionType(I32, [I64, I8P.as_pointer()]))
    rc = b.call(pcreate, [tid, ir.Constant(I8P, None), worker, b.bitcast(half2_st, I8P)])
    started = b.icmp_signed("==", rc, zero32)
    with b.if_then(b.not_(started)):          # no thread: run that half here
        b.call(serial, half2)
    b.call(serial, [ta, tb, b.select(split_n, M, m0), b.select(split_n, n0, N), K, A, lda,
                    B, ldb, C, ldc, accum, work])
    with b.if_then(started):
        b.call(pjoin, [b.load(tid), ir.Constant(I8P.as_pointer(), None)])
    b.ret_void()
    return fn
