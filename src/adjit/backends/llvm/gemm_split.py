"""A large GEMM on all the pool's threads: the caller and the workers (see :mod:`.pool`).

The product is cut along the larger of M and N into chunks of whole register tiles (at
least PER_THREAD per thread) that the threads take from a shared counter (so a late or
preempted worker costs the others at most the chunk it holds; one that never starts
costs nothing, the caller takes them all).

Cut along N (the usual case: N >= M), every chunk multiplies the same op(A).  When op(A),
packed, fits the shared part of the workspace, it is packed once, in pieces (one K block x
one MC row block each) that the threads take from a second counter; each thread then waits
until every piece taken is done -- only ever for a piece another thread is packing, never
for one not started -- and runs its chunks with :func:`gemm._emit_serial`'s ``shared_a``
variant, which packs only its own columns of B.  Chunks are then cheap, so there are more of
them (SHARED_PER_THREAD per thread) and the threads end closer together.  Otherwise (cut along M, or
op(A) too large) each chunk is a whole serial product and re-packs the operand it shares.

Workspace, in elements (:func:`workspace_elems`): the caller's holds an MC x KC panel of
A and a KC x NC panel of B (twice: the layout predates the N-worker pool), or in the
shared layout its KC x CWMAX panel of B, a second one unused, then the shared packed op(A)
(the rest of the same buffer); each worker packs into its own workspace (the pool's).
"""
from __future__ import annotations

import llvmlite.ir as ir

from . import pool
from ..lowering.irkit import at as _at, c32 as _c32, c64 as _c64, function as _function
from ..lowering.irkit import imax as _max, imin as _min

I1, I32, I64, I8P = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()

MAX_THREADS = 2
CHUNKS = 4          # chunks per product when each re-packs the shared operand (at least,
PER_THREAD = 2      # and this many per thread)
CHUNKS_SHARED = 8   # chunks per product once op(A) is packed once for all threads (at
SHARED_PER_THREAD = 4   # least, and this many per thread)
# Widest chunk (columns) of the shared layout: its B panel, KC x CWMAX, is what each thread
# keeps of the workspace; the rest holds the packed op(A).
CWMAX = {"f32": 256, "f64": 128}

# job fields: the entry's 12 operands, then
W_WORK, W_SPLIT_N, W_NCHUNK, W_TILES, W_NEXT = 12, 13, 14, 15, 16
W_APK, W_MP, W_NPIECE, W_NIC, W_PNEXT, W_PDONE = 17, 18, 19, 20, 21, 22


def per_thread_elems(p: dict) -> int:
    return -(-(p["MC"] * p["KC"] + p["KC"] * p["NC"]) // 16) * 16   # 64-byte multiple


def workspace_elems(p: dict) -> int:
    return MAX_THREADS * per_thread_elems(p)


def shared_capacity(p: dict, dtype: str) -> int:
    """Elements of the workspace left for the shared packed op(A)."""
    return workspace_elems(p) - MAX_THREADS * p["KC"] * CWMAX[dtype]


def _field(b, job, i):
    return b.gep(job, [_c32(0), _c32(i)])


def _emit_chunks(module, name, p, job_t, serial, shared, pack_a):
    """``void chunks(job*, T* work)``: pack shared A pieces (if any), then run chunks."""
    KC, MC = p["KC"], p["MC"]
    fn, b = _function(module, f"{name}.chunks", ir.VoidType(), [job_t.as_pointer(),
                      job_t.elements[W_WORK]], ["job", "work"])
    job, work = fn.args
    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum = (b.load(_field(b, job, i))
                                                      for i in range(12))
    split_n = b.icmp_signed("!=", b.load(_field(b, job, W_SPLIT_N)), _c32(0))
    n_chunks = b.load(_field(b, job, W_NCHUNK))
    apk, mp, n_pieces, n_ic = (b.load(_field(b, job, i))
                               for i in (W_APK, W_MP, W_NPIECE, W_NIC))
    one, trans_a = _c64(1), b.icmp_signed("!=", ta, _c32(0))
    a_rs, a_cs = b.select(trans_a, one, lda), b.select(trans_a, lda, one)   # op(A) strides
    b_js = b.select(b.icmp_signed("!=", tb, _c32(0)), ldb, one)     # op(B) column stride
    # pack op(A): K block x MC rows
    c, head, done = pool.take_each(b, _field(b, job, W_PNEXT), n_pieces, "piece")
    pcb = b.sdiv(c, n_ic)
    pc, ic = b.mul(pcb, _c64(KC)), b.mul(b.sub(c, b.mul(pcb, n_ic)), _c64(MC))
    kc, mc = _min(b, _c64(KC), b.sub(K, pc)), _min(b, _c64(MC), b.sub(M, ic))
    b.call(pack_a, [ta, mc, kc, _at(b, A, b.mul(ic, a_rs), b.mul(pc, a_cs)), lda,
                    _at(b, apk, b.mul(pc, mp), b.mul(ic, kc))])
    b.atomic_rmw("add", _field(b, job, W_PDONE), one, "release")
    b.branch(head)
    b.position_at_end(done)
    # Every piece is taken; wait for those other threads are still packing (yielding the
    # CPU now and then: with more threads than cores the packer may be waiting for it).
    spin, ready = fn.append_basic_block("piece.wait"), fn.append_basic_block("piece.ready")
    before = b.block
    b.branch(spin)
    b.position_at_end(spin)
    k = b.phi(I64, "spins")
    k.add_incoming(_c64(0), before)
    pool.pause(module, b, k)
    k.add_incoming(b.add(k, _c64(1)), b.block)
    packed = b.load_atomic(_field(b, job, W_PDONE), "acquire", 8)
    b.cbranch(b.icmp_signed("<", packed, n_pieces), spin, ready)
    b.position_at_end(ready)

    # chunk c: tiles [c*T/n, (c+1)*T/n)
    c, head, done = pool.take_each(b, _field(b, job, W_NEXT), n_chunks, "chunk")
    unit, tiles = b.select(split_n, _c64(p["NR"]), _c64(p["MR"])), b.load(_field(b, job, W_TILES))
    off = b.mul(b.sdiv(b.mul(c, tiles), n_chunks), unit)
    end = b.mul(b.sdiv(b.mul(b.add(c, one), tiles), n_chunks), unit)
    with b.if_else(split_n) as (cols, rows):
        with cols:
            n = b.sub(_min(b, end, N), off)
            part = [ta, tb, M, n, K, A, lda, _at(b, B, b.mul(off, b_js)), ldb,
                    _at(b, C, off), ldc, accum, work]
            with b.if_else(b.icmp_signed(">", n_pieces, _c64(0))) as (sh, own):
                with sh:
                    b.call(shared, part + [apk, mp])
                with own:
                    b.call(serial, part)
        with rows:
            m = b.sub(_min(b, end, M), off)
            b.call(serial, [ta, tb, m, N, K, _at(b, A, b.mul(off, a_rs)), lda, B, ldb,
                            _at(b, C, b.mul(off, ldc)), ldc, accum, work])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn


def emit_split(module, b, dtype, p, T, args, serial, shared, pack_a):
    """At ``b`` (in the entry point, for a product worth several threads): post the
    product to the pool, run chunks on this thread too, then close the job and wait for
    the workers inside it."""
    MR, NR, KC, MC = p["MR"], p["NR"], p["KC"], p["MC"]
    name = f"adjit_gemm_{dtype}"
    tp = T.as_pointer()
    job_t = ir.LiteralStructType(list(args[i].type for i in range(13))
                                 + [I32, I64, I64, I64, tp, I64, I64, I64, I64, I64])
    run_chunks = _emit_chunks(module, name, p, job_t, serial, shared, pack_a)
    job_fn, jb = pool.job_function(module, f"{name}.job")     # a worker's part, own workspace
    jp = jb.bitcast(job_fn.args[0], job_t.as_pointer())
    jb.call(run_chunks, [jp, jb.bitcast(job_fn.args[2], tp)])
    jb.ret_void()

    ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accum, work = args
    c0, one = _c64(0), _c64(1)
    split_n = b.and_(b.icmp_signed(">=", N, M), b.icmp_signed(">=", N, _c64(2 * NR)))
    mp = b.mul(b.sdiv(b.add(M, _c64(MR - 1)), _c64(MR)), _c64(MR))
    use_shared = b.and_(split_n, b.icmp_signed("<=", b.mul(mp, K),
                                               _c64(shared_capacity(p, dtype))))
    n_ic = b.sdiv(b.add(M, _c64(MC - 1)), _c64(MC))
    n_pieces = b.select(use_shared, b.mul(n_ic, b.sdiv(b.add(K, _c64(KC - 1)), _c64(KC))), c0)
    # Chunks of whole tiles along the cut dimension, as even as tiles allow: `parts` of
    # them (fewer when there are fewer tiles), more when a shared-layout chunk would be
    # wider than CWMAX (an even number, so both threads can end together).
    units, U = b.select(split_n, N, M), b.select(split_n, _c64(NR), _c64(MR))
    tiles = b.sdiv(b.add(units, b.sub(U, one)), U)
    widest = 2 * (CWMAX[dtype] // NR)
    wide = b.mul(b.sdiv(b.add(tiles, _c64(widest - 1)), _c64(widest)), _c64(2))
    threads = b.call(pool.declare_threads(module), [])
    parts = b.select(use_shared, _max(b, _max(b, _c64(CHUNKS_SHARED), wide),
                                      b.mul(threads, _c64(SHARED_PER_THREAD))),
                     _max(b, _c64(CHUNKS), b.mul(threads, _c64(PER_THREAD))))
    n_chunks = _min(b, parts, tiles)
    panel = MAX_THREADS * KC * CWMAX[dtype]
    job = b.alloca(job_t, name="job")
    fields = list(args[:12]) + [work, b.zext(split_n, I32), n_chunks, tiles, c0,
                                _at(b, work, panel), mp, n_pieces, n_ic, c0, c0]
    for i, v in enumerate(fields):
        b.store(v, _field(b, job, i))
    pool.share(module, b, job_fn, job, lambda: b.call(run_chunks, [job, work]))
