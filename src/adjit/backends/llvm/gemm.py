"""Generated matrix-multiply kernels (GotoBLAS-style, written with llvmlite.ir only).

:func:`emit_gemm` adds ``adjit_gemm_f32`` / ``adjit_gemm_f64`` to a module, C signature::

    void adjit_gemm_<dt>(i32 transA, i32 transB, i64 M, i64 N, i64 K, T* A, i64 lda,
                         T* B, i64 ldb, T* C, i64 ldc, i32 accumulate, T* work)

computing, row-major, ``C[M,N] = op(A) @ op(B)`` (``+ C`` when accumulate != 0); op(A) is
M x K (with transA, A is stored K x M, leading dimension lda), op(B) is K x N (with transB,
B is stored N x K).  ``work``: :func:`gemm_workspace_elems` elements, 64-byte aligned (its
layout: :mod:`.gemm_split`).  C must not
overlap A, B or work; A and B may overlap (both are only read).  Any M, N, K >= 0.

Structure (sizes are runtime values, blocking constants are Python ints):
  * ``jc`` over N by NC, ``pc`` over K by KC: pack op(B) into NR-wide k-major slivers (zero
    padded); ``ic`` over M by MC: pack op(A) into MR-wide slivers; ``jr``/``ir`` over the
    NR x MR tiles call the micro-kernel: MR x NR accumulators in MR*NV vectors <VL x T>,
    per k one broadcast of A per row, NV loads of B, hand-declared ``llvm.fma.v*`` (fmul +
    fadd where the CPU has no FMA).  Full tiles update C with vector ops, edge tiles go
    through a stack tile; rows short of MR in packed A have their own edge kernels.
    MR, NV, VL and the blocking KC/MC/NC come from the target description
    (:mod:`.gemm_shape`: e.g. 6 x 16 f32 on AVX2, 8 x 32 on AVX-512, 8 x 12 on NEON).
  * Small products (M*N*K <= SMALL_MNK), and products whose N fits one NR-wide sliver
    (a packed A panel would then be used once), skip packing: the kernel reads A through runtime
    strides (rows past the edge re-read the last valid row; their results are dropped) and
    B rows in place (only a ragged last strip, or all of B when transB, is packed).
  * Large products (M*N*K >= THREAD_MNK) are cut along N (or M) into chunks that this
    thread and the persistent worker threads of :mod:`.pool` share (:mod:`.gemm_split`;
    glibc >= 2.34 exports pthread_* from libc and MCJIT resolves them from the process).
    When the pool is busy with another caller's product or unavailable, this thread
    runs every chunk.

Invariants: addresses are GEPs only (no inttoptr); the micro-kernel's k loop runs kc >= 1
times (K == 0 is handled first: C = 0 unless accumulating); the first K block overwrites C
unless accumulate, later blocks add to it.
"""

from __future__ import annotations

import llvmlite.ir as ir

from . import gemm_split as _split, pool
from ..lowering.irkit import at as _at, c32 as _c32, c64 as _c64, declare as _declare, function as _function
from ..lowering.irkit import imin as _min, loop as _loop, vload as _vload, vstore as _vstore
from .gemm_pack import emit_pack as _emit_pack
from .gemm_shape import A_PANEL_BYTES, B_PANEL_BYTES, gemm_params

__all__ = ["emit_gemm", "gemm_workspace_elems", "gemm_params", "gemm_symbol",
           "MAX_WORKSPACE_BYTES", "thread_mnk"]

I1, I32, I64, I8P = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()

# M*N*K thresholds, measured with `benchmarks/gemm_bench.py --crossover` (2-vCPU znver3).
# Unpacked fast path: wins only up to ~32^3 (packing pays for itself from 32x64x64 on).
# Threads: a pool worker (see pool.py) takes a chunk in ~1 us when it is spinning
# and ~10-30 us when it sleeps, so the split paid from 32x64x64 on when the machine was
# otherwise idle.  But a worker preempted while it holds a chunk makes the caller wait a
# scheduler slice (profile_steps.py showed 6 us products taking 50-80 us on a busy
# machine), a risk per hand-over whatever the product's size; so only products of ~50 us
# and more (f32 64x128x256, f64 64x128x128) are split, where the gain is worth it.
SMALL_MNK = {"f32": 32 ** 3, "f64": 32 ** 3}
THREAD_MNK = {"f32": 1 << 21, "f64": 1 << 20}
MAX_THREADS = _split.MAX_THREADS
# One workspace size for the GEMM of every target (runtime.py's per thread, each pool
# worker's): MAX_THREADS threads' panels, each at most gemm_shape's A + B panel bounds
# (plus the 16-element rounding of the layout), so a process that runs several CPUs'
# libraries never hands one a buffer sized for another.  emit_gemm checks it.
MAX_WORKSPACE_BYTES = -(-MAX_THREADS * (A_PANEL_BYTES + B_PANEL_BYTES + 16 * 8) // 64) * 64


def thread_mnk(dtype: str, target=None) -> int:
    """M*N*K from which a product is shared with the pool on ``target`` (a CpuTarget;
    None: THREAD_MNK).  THREAD_MNK is a time (~50 us of one core, see above), measured on
    AVX2 and kept for AVX-512 and NEON (a Neoverse core's four 128-bit FMA pipes match
    AVX2's two 256-bit ones).  SSE-only x86-64 has no FMA and 4-lane vectors, a quarter
    of AVX2's peak per cycle, so its products reach that time at a quarter of the size."""
    t = THREAD_MNK[dtype]
    return t // 4 if target is not None and target.isa == "x86-64-sse" else t


_thread_mnk = thread_mnk        # (emit_gemm's argument of that name shadows it)


def gemm_symbol(dtype: str, cpu: str | None = None) -> str:
    """Name of the generated entry point for ``dtype``: ``adjit_gemm_<dtype>`` for the
    host (``cpu`` None or "host"), else suffixed with the CPU name, mangled injectively
    into C identifier characters: ``adjit_gemm_f32__x86_64_v3`` (a name of lower-case
    letters, digits and '-': each '-' becomes '_'), any other name as ``___`` + its hex."""
    base = f"adjit_gemm_{dtype}"
    if cpu is None or cpu == "host":
        return base
    if all(c.isdigit() or "a" <= c <= "z" or c == "-" for c in cpu) and cpu[:1].isalnum():
        return f"{base}__{cpu.replace('-', '_')}"
    return f"{base}___{cpu.encode().hex()}"


def gemm_workspace_elems(dtype: str, target=None) -> int:
    """Elements of T the ``work`` argument must hold on ``target`` (covers MAX_THREADS
    threads; at most MAX_WORKSPACE_BYTES, which buffers are sized with).

    The same number of bytes for both dtypes (the larger of the two layouts'), so one
    buffer of ``gemm_workspace_elems("f64") * 8`` bytes serves either."""
    need = max(_split.workspace_elems(gemm_params(dt, target)) * sz
               for dt, sz in (("f32", 4), ("f64", 8)))
    sz = 4 if dtype == "f32" else 8
    return -(-need // 64) * 64 // sz


def _ENTRY_ARGS(T):
    tp = T.as_pointer()
    return [I32, I32, I64, I64, I64, tp, I64, tp, I64, tp, I64, I32, tp]


_ENTRY_NAMES = "transA transB M N K A lda B ldb C ldc accumulate work".split()


def _emit_kernel(module, dt, p, T, a_packed, b_packed, rows_m=None):
    """Micro-kernel: C[mr x nr] (+)= A-sliver(kc) . B-sliver(kc), tile MR x NR.

    Signature (kc, a, a_rs, a_cs, b, b_ks, c, ldc, mr, nr, beta).  Packed A uses
    a_rs=1, a_cs=MR and packed B b_ks=NR as compile-time constants (arguments ignored).
    Requires kc >= 1, 1 <= mr <= MR, 1 <= nr <= NR; for strided B, nr == NR.  With
    ``rows_m`` (packed A and B only): a tile of rows_m < MR rows (mr == rows_m).
    """
    MR, VL, NV, NR, esz = p["MR"], p["VL"], p["NV"], p["NR"], (4 if dt == "f32" else 8)
    SL = MR                              # packed A: sliver width (a row's k values SL apart)
    if rows_m is not None:               # an edge variant: rows_m < MR rows, packed A
        MR = rows_m
    tp, vt = T.as_pointer(), ir.VectorType(T, VL)
    if p["FMA"]:
        fma_fn = _declare(module, f"llvm.fma.v{VL}{dt}", ir.FunctionType(vt, [vt] * 3))

        def fma(x, y, z):
            return b.call(fma_fn, [x, y, z])
    else:   # no FMA unit: llvm.fma would be a libm call per lane
        def fma(x, y, z):
            return b.fadd(b.fmul(x, y), z)
    name = f"adjit_gemm_{dt}.kern.{'p' if a_packed else 's'}{'p' if b_packed else 's'}"
    name += f".m{rows_m}" if rows_m is not None else ""
    fn, b = _function(module, name, ir.VoidType(),
                      [I64, tp, I64, I64, tp, I64, tp, I64, I64, I64, I32],
                      "kc a a_rs a_cs b b_ks c ldc mr nr beta".split(), noalias=(1, 4, 6))
    fn.attributes.add("noinline")   # own register allocation; measured faster than inlined
    kc, a, a_rs, a_cs, bp, b_ks, c, ldc, mr, nr, beta = fn.args
    tile = b.alloca(T, size=_c64(MR * NR), name="tile")
    if a_packed:
        rows, a_cs = [_at(b, a, i) for i in range(MR)], _c64(SL)
    else:   # rows past mr re-read row mr-1 (always valid); their results are discarded
        rows = [_at(b, a, b.mul(_min(b, _c64(i), b.sub(mr, _c64(1))), a_rs)) for i in range(MR)]
    b_ks = _c64(NR) if b_packed else b_ks
    zero, undef = ir.Constant(vt, [0.0] * VL), ir.Constant(vt, ir.Undefined)
    splat = ir.Constant(ir.VectorType(I32, VL), [0] * VL)

    pre, body, done = b.block, b.append_basic_block("k.body"), b.append_basic_block("k.done")
    b.branch(body)
    b.position_at_end(body)         # do { ... } while (++k < kc): kc >= 1
    k = b.phi(I64, "k")
    k.add_incoming(_c64(0), pre)
    acc = [[b.phi(vt, f"acc{i}_{v}") for v in range(NV)] for i in range(MR)]
    brow = _at(b, bp, b.mul(k, b_ks))
    bv = [_vload(b, _at(b, brow, v * VL), vt, esz) for v in range(NV)]
    koff = b.mul(k, a_cs)
    new = []
    for i in range(MR):
        s = b.load(_at(b, rows[i], koff), align=esz)
        s = b.shuffle_vector(b.insert_element(undef, s, _c32(0)), undef, splat)
        new.append([fma(s, bv[v], acc[i][v]) for v in range(NV)])
    for i, v in ((i, v) for i in range(MR) for v in range(NV)):
        acc[i][v].add_incoming(zero, pre)
        acc[i][v].add_incoming(new[i][v], body)
    k1 = b.add(k, _c64(1))
    k.add_incoming(k1, body)
    b.cbranch(b.icmp_signed("<", k1, kc), body, done)

    b.position_at_end(done)
    add = b.icmp_signed("!=", beta, _c32(0))
    full = b.and_(b.icmp_signed("==", mr, _c64(MR)), b.icmp_signed("==", nr, _c64(NR)))
    with b.if_else(full) as (then, other):
        with then:   # whole tile: vector load/add/store straight into C
            for i, v in ((i, v) for i in range(MR) for v in range(NV)):
                ptr = _at(b, c, b.mul(_c64(i), ldc), v * VL)
                old = b.select(add, _vload(b, ptr, vt, esz), zero)
                _vstore(b, b.fadd(new[i][v], old), ptr, esz)
        with other:  # edge tile: spill to the stack tile, copy the valid mr x nr part
            for i, v in ((i, v) for i in range(MR) for v in range(NV)):
                _vstore(b, new[i][v], _at(b, tile, i * NR + v * VL), esz)
            with _loop(b, 0, mr, 1, "ei") as i:
                with _loop(b, 0, nr, 1, "ej") as j:
                    cp = _at(b, c, b.mul(i, ldc), j)
                    val = b.load(_at(b, tile, b.mul(i, _c64(NR)), j), align=esz)
                    old = b.select(add, b.load(cp, align=esz), ir.Constant(T, 0.0))
                    b.store(b.fadd(val, old), cp, align=esz)
    b.ret_void()
    return fn


def _call_kernel(b, kern, kargs, direct, b_packed, a_direct):
    """Call the kernel variant for the operands' layout (A in place when direct)."""
    with b.if_else(direct) as (d_then, d_else):
        with d_then:
            dargs = kargs[:1] + [a_direct] + kargs[2:]
            with b.if_else(b_packed) as (bp_then, bp_else):
                with bp_then:
                    b.call(kern[False, True], dargs)
                with bp_else:
                    b.call(kern[False, False], dargs)
        with d_else:
            _call_packed(b, kern, kargs)


def _call_packed(b, kern, kargs):
    """The packed kernel for a whole row tile, or the edge variant for its mr < MR rows
    (the whole-tile kernel computed MR rows and dropped the rest: W3's batch of 32 is
    5 tiles of 6 rows and one of 2; its products ran 2-6 % faster with edge kernels)."""
    fn = b.function
    done = fn.append_basic_block("kern.done")
    cases = [fn.append_basic_block(f"kern.m{m}") for m in range(1, len(kern["edge"]) + 1)]
    full = fn.append_basic_block("kern.full")
    sw = b.switch(kargs[8], full)              # mr
    for m, blk in enumerate(cases, start=1):
        sw.add_case(ir.Constant(I64, m), blk)
        b.position_at_end(blk)
        b.call(kern["edge"][m - 1], kargs)
        b.branch(done)
    b.position_at_end(full)
    b.call(kern[True, True], kargs)
    b.branch(done)
    b.position_at_end(done)


def _emit_serial(module, dt, p, T, small_mnk, kern, pack_a, pack_b, shared_a=False):
    """One thread's blocked GEMM (the entry point's signature).

    With ``shared_a`` the function takes two more arguments, ``apk`` and ``mp``: op(A)
    already packed in full (K block pc at ``apk + pc*mp``, its MR-slivers kc apart; mp =
    M rounded up to MR), and ``work`` holds only the B panel.  It never packs A then.
    """
    MR, NR, KC, MC, NC = p["MR"], p["NR"], p["KC"], p["MC"], p["NC"]
    extra = ([T.as_pointer(), I64], ["apk", "mp"]) if shared_a else ([], [])
    fn, b = _function(module, f"adjit_gemm_{dt}.serial{'.shared' if shared_a else ''}",
                      ir.VoidType(), _ENTRY_ARGS(T) + extra[0], _ENTRY_NAMES + extra[1],
                      noalias=(5, 7, 9, 12))
    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum, work = fn.args[:13]
    one = _c64(1)
    trans_a, trans_b = b.icmp_signed("!=", ta, _c32(0)), b.icmp_signed("!=", tb, _c32(0))
    a_rs, a_cs = b.select(trans_a, one, lda), b.select(trans_a, lda, one)   # op(A)[i,k]
    b_ks, b_js = b.select(trans_b, one, ldb), b.select(trans_b, ldb, one)   # op(B)[k,j]
    if shared_a:
        direct = ir.Constant(I1, 0)
        Ap, Bp = None, work
    else:
        # A unpacked also when one B sliver covers N: a packed A panel would serve it once
        direct = b.or_(b.icmp_signed("<=", b.mul(b.mul(M, N), K), _c64(small_mnk)),
                       b.icmp_signed("<=", N, _c64(NR)))
        Ap, Bp = work, _at(b, work, MC * KC)
    pack_all_b = b.or_(b.not_(direct), trans_b)
    acc_first = b.icmp_signed("!=", accum, _c32(0))
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
                if shared_a:
                    Ap = _at(b, fn.args[13], b.mul(pc, fn.args[14]), b.mul(ic, kc))
                else:
                    with b.if_then(b.not_(direct)):
                        b.call(pack_a, [ta, mc, kc, ablk, lda, Ap])
                with _loop(b, 0, nc, NR, "jr") as jr:
                    nr = _min(b, _c64(NR), b.sub(nc, jr))
                    ragged = b.and_(b.not_(pack_all_b), b.icmp_signed("<", nr, _c64(NR)))
                    with b.if_then(ragged):   # direct mode, last strip: pad it to NR
                        b.call(pack_b, [_c32(1), nr, kc, _at(b, bblk, jr), ldb, Bp])
                    b_packed = b.or_(pack_all_b, ragged)
                    bsl = b.select(b_packed, _at(b, Bp, b.select(pack_all_b, b.mul(jr, kc),
                                                                  _c64(0))), _at(b, bblk, jr))
                    with _loop(b, 0, mc, MR, "ir") as i:
                        mr = _min(b, _c64(MR), b.sub(mc, i))
                        ct = _at(b, C, b.mul(b.add(ic, i), ldc), jc, jr)
                        kargs = [kc, _at(b, Ap, b.mul(i, kc)), a_rs, a_cs, bsl, ldb, ct, ldc,
                                 mr, nr, beta]
                        if shared_a:
                            _call_packed(b, kern, kargs)
                        else:
                            _call_kernel(b, kern, kargs, direct, b_packed,
                                         _at(b, ablk, b.mul(i, a_rs)))
    b.ret_void()
    return fn


def emit_gemm(module: ir.Module, dtype: str, *, threads: int = MAX_THREADS,
              small_mnk: int | None = None, thread_mnk: int | None = None,
              target=None, params: dict | None = None, name: str | None = None
              ) -> ir.Function:
    """Add ``adjit_gemm_<dtype>`` (or ``name``: the library's per-CPU symbols, see
    :func:`gemm_symbol`) to ``module`` and return it.

    Idempotent: if the module already has the function it is returned as is (keyword
    arguments then ignored).  ``threads`` (1 or 2) caps the threads; ``small_mnk`` and
    ``thread_mnk`` override SMALL_MNK / :func:`thread_mnk` (benchmarks use them).  ``target``
    (a CpuTarget; None: the CPU code is generated for) decides the tiles and blocking
    (:mod:`.gemm_shape`); the IR is portable vector IR, so a module emitted for one
    target also runs, slower, on another (if that CPU has the instructions its code
    was generated with).  ``params`` overrides entries of the derived parameters
    (benchmarks, tests).  ValueError when the workspace the parameters need exceeds
    MAX_WORKSPACE_BYTES.

    >>> m = ir.Module(); f = emit_gemm(m, "f32"); f.name, emit_gemm(m, "f32") is f
    ('adjit_gemm_f32', True)
    """
    if dtype not in ("f32", "f64"):
        raise ValueError(f"dtype must be 'f32' or 'f64', got {dtype!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 1..{MAX_THREADS}")
    name = name or gemm_symbol(dtype)
    if name in module.globals:
        return module.globals[name]
    if target is None:
        from ..lowering.target.description import describe
        target = describe()
    p = dict(gemm_params(dtype, target), **(params or {}))
    p["NR"] = p["NV"] * p["VL"]
    esz = 4 if dtype == "f32" else 8
    if _split.workspace_elems(p) * esz > MAX_WORKSPACE_BYTES:
        raise ValueError(f"the {dtype} GEMM for {target.name!r} needs "
                         f"{_split.workspace_elems(p) * esz} workspace bytes, more than the "
                         f"{MAX_WORKSPACE_BYTES} every buffer holds (gemm_shape's panel bounds)")
    T = ir.FloatType() if dtype == "f32" else ir.DoubleType()
    MR, NR = p["MR"], p["NR"]
    small = SMALL_MNK[dtype] if small_mnk is None else small_mnk
    kern = {(ap, bp): _emit_kernel(module, dtype, p, T, ap, bp)
            for ap, bp in ((True, True), (False, True), (False, False))}
    kern["edge"] = [_emit_kernel(module, dtype, p, T, True, True, m) for m in range(1, MR)]
    pack_a, pack_b = _emit_pack(module, dtype, p, T, MR), _emit_pack(module, dtype, p, T, NR)
    serial = _emit_serial(module, dtype, p, T, small, kern, pack_a, pack_b)
    threads = threads if pool.available() else 1

    fn, b = _function(module, name, ir.VoidType(), _ENTRY_ARGS(T), _ENTRY_NAMES,
                      noalias=(5, 7, 9, 12))
    fn.linkage = ""                 # the one exported symbol
    args = list(fn.args)
    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum, work = args
    c0 = _c64(0)
    with b.if_then(b.or_(b.icmp_signed("<=", M, c0), b.icmp_signed("<=", N, c0))):
        b.ret_void()
    with b.if_then(b.icmp_signed("<=", K, c0)):
        with b.if_then(b.icmp_signed("==", accum, _c32(0))):   # empty sum: C = 0
            with _loop(b, 0, M, 1, "zi") as i:
                with _loop(b, 0, N, 1, "zj") as j:
                    b.store(ir.Constant(T, 0.0), _at(b, C, b.mul(i, ldc), j))
        b.ret_void()
    big = b.icmp_signed(">=", b.mul(b.mul(M, N), K),
                        _c64(_thread_mnk(dtype, target) if thread_mnk is None else thread_mnk))
    split_n = b.and_(b.icmp_signed(">=", N, M), b.icmp_signed(">=", N, _c64(2 * NR)))
    split_m = b.and_(b.not_(split_n), b.icmp_signed(">=", M, _c64(2 * MR)))
    if threads == 1:
        b.call(serial, args)
        b.ret_void()
        return fn
    with b.if_then(b.not_(b.and_(big, b.or_(split_n, split_m)))):
        b.call(serial, args)
        b.ret_void()
    shared = _emit_serial(module, dtype, p, T, small, kern, pack_a, pack_b, shared_a=True)
    _split.emit_split(module, b, dtype, p, T, args, serial, shared, pack_a)
    b.ret_void()
    return fn
