"""Products whose columns operand is an unfold read as a *window* (lowering/plan.py:
``Plan.windows``): the columns are never stored for the whole batch.

* ``matmul(A, reshape(unfold(x)))`` (a convolution): per image ``n``, its ``C·ΠK x ΠO``
  columns are unfolded into this thread's scratch, then one GEMM
  ``out[n] = op(A)[n] @ cols``.  Images are taken from a shared counter by this thread and
  the pool's workers (each with its own scratch and GEMM workspace).
* ``matmul_sum(A, transpose(reshape(unfold(x))))`` (its weight gradient): the result's
  columns are cut into blocks of whole register tiles as in :mod:`.matmul_sum`; a block is
  summed over the batch by one thread, which per image unfolds only that block's rows of
  the columns and accumulates ``op(A)[n] @ rowsᵀ``.

The unfolded columns of W10's 32 x 64 x 32 x 32 images are 75 MB: written by the unfold,
read by the forward product and again by the weight gradient, through memory each time
(the products ran at 175 GFLOP/s on one core against 220 with cache-resident columns).
An image's columns, 2.4 MB, stay in the cache between their unfold and the product.
Results equal the stored path's exactly (the same GEMM calls on the same values).
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...ir import Node
from . import pool
from .gemm import gemm_params
from .matmul_sum import max_blocks
from .windows import emit_fold_rows, emit_unfold_rows, lower_fold
from .matmul import SPLIT_MNK
from ..lowering.irkit import c32, c64, imin, loop
from ..lowering.loops import size_value
from ..lowering.plan import dim, folded_product

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()


def lower_fold_step(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a fold step: its product computed inside it
    when the plan made that product a window, else :func:`.windows.lower_fold`."""
    prod = folded_product(lw.plan, node)
    return lower_fold(lw, node) if prod is None else lower_window_fold(lw, node, prod)


def _operands(lw, node: Node, unfold: Node):
    a, bnode = node.inputs
    ta = a.op == "transpose" and lw.plan.storage[a.id].kind == "view"
    sa = a.inputs[0] if ta else a
    x = unfold.inputs[0]
    dt = "f32" if node.dtype == "float32" else "f64"
    gemm = lw.declare_gemm(lw.module, dt)
    fn, b = lw._new_kernel(node, [a, bnode, x], workspace=True)
    rows = emit_unfold_rows(lw.module, unfold, fn.args[0].type.pointee, f"{fn.name}.rows")
    return a, ta, sa, x, dt, gemm, fn, b, rows


def lower_window_matmul(lw, node: Node, unfold: Node):
    """The kernel of ``matmul(A, reshape(unfold(x)))`` with the unfold a window."""
    a, ta, sa, x, dt, gemm, fn, b, rows = _operands(lw, node, unfold)
    M, K, N = a.shape[-2], a.shape[-1], node.shape[-1]
    lda, per_x = sa.shape[-1], math.prod(x.shape[1:])
    sa_n = 0 if a.ndim < 3 or a.shape[0] == 1 else M * K    # one A for all images, or one each
    T = fn.args[0].type

    def body(ib, n, out, pa, scr, px, work):
        ib.call(rows, [ib.gep(px, [ib.mul(n, c64(per_x))]), scr, c64(0), c64(K)])
        ib.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, 0), c64(M), c64(N),
                       c64(K), ib.gep(pa, [ib.mul(n, c64(sa_n))]), c64(lda), scr, c64(N),
                       ib.gep(out, [ib.mul(n, c64(M * N))]), c64(N), ir.Constant(I32, 0),
                       work])
    images = lambda ib, batch: size_value(ib, dim(node.shape[0]), batch)   # noqa: E731
    items = _items(lw, fn, T, "image", body, images, lw.plan.windows[unfold.id])
    _run(lw, b, fn, items, images, M * N * K)
    return fn, [a, node.inputs[1], x]


def lower_window_matmul_sum(lw, node: Node, unfold: Node):
    """The kernel of ``matmul_sum(A, transpose(reshape(unfold(x))))``, the unfold a window."""
    a, ta, sa, x, dt, gemm, fn, b, rows = _operands(lw, node, unfold)
    M, L, N = a.shape[-2], a.shape[-1], node.shape[-1]     # N = C·ΠK rows of the columns
    lda, per_x = sa.shape[-1], math.prod(x.shape[1:])
    sa_n = M * L
    block = gemm_params(dt, lw.target)["NR"]
    width = max(block, -(-N // max_blocks() // block) * block)
    n_blocks = -(-N // width)
    T = fn.args[0].type

    def body(ib, c, out, pa, scr, px, work):
        first = ib.mul(c, c64(width))
        w = ib.sub(imin(ib, ib.add(first, c64(width)), c64(N)), first)
        po = ib.gep(out, [first])

        def call(k, pa_, accumulate):
            ib.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, 1), c64(M), w, k, pa_,
                           c64(lda), scr, c64(L), po, c64(N), ir.Constant(I32, accumulate),
                           work])
        call(c64(0), pa, 0)                   # this block of the result = 0 (K = 0)
        batch = ib.function.args[6]
        with loop(ib, c64(0), size_value(ib, dim(a.shape[0]), batch), 1, "img") as n:
            ib.call(rows, [ib.gep(px, [ib.mul(n, c64(per_x))]), scr, first, ib.add(first, w)])
            call(c64(L), ib.gep(pa, [ib.mul(n, c64(sa_n))]), 1)
    items = _items(lw, fn, T, "block", body, lambda ib, batch: c64(n_blocks),
                   lw.plan.windows[unfold.id])
    _run(lw, b, fn, items, lambda ib, batch: c64(n_blocks), M * N * L,
         size_value(b, dim(a.shape[0]), fn.args[-1]))
    return fn, [a, node.inputs[1], x]


def lower_window_fold(lw, node: Node, prod: Node):
    """The kernel of ``fold(reshape(matmul(A, B)))`` with the product a window
    (lowering/plan.py: ``window_product``): per image ``n`` and block of channels, the
    block's rows of ``op(A) @ B[n]`` into this thread's scratch, then folded into
    ``out[n]`` (:func:`.windows.emit_fold_rows`)."""
    a, bnode = prod.inputs
    ta = a.op == "transpose" and lw.plan.storage[a.id].kind == "view"
    sa = a.inputs[0] if ta else a
    cols = node.inputs[0]
    gemm = lw.declare_gemm(lw.module, "f32" if node.dtype == "float32" else "f64")
    fn, b = lw._new_kernel(node, [a, cols, bnode], workspace=True)
    T = fn.args[0].type
    fold = emit_fold_rows(lw.module, node, T.pointee, f"{fn.name}.rows")
    M, K, L = prod.shape[1], a.shape[-1], prod.shape[2]
    C, lda = node.shape[1], sa.shape[-1]
    taps, plane = M // C, math.prod(node.shape[2:])
    per = lw.plan.windows[prod.id]
    cb = per // L // taps                      # channels per block
    n_blocks = -(-C // cb)

    def body(ib, n, out, pa, scr, pb, work):
        po = ib.gep(out, [ib.mul(n, c64(C * plane))])
        pbn = ib.gep(pb, [ib.mul(n, c64(K * L))])
        with loop(ib, c64(0), c64(n_blocks), 1, "blk") as k:
            c0 = ib.mul(k, c64(cb))
            c1 = imin(ib, ib.add(c0, c64(cb)), c64(C))
            r0, rows = ib.mul(c0, c64(taps)), ib.mul(ib.sub(c1, c0), c64(taps))
            pak = ib.gep(pa, [r0 if ta else ib.mul(r0, c64(lda))])
            ib.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, 0), rows, c64(L),
                           c64(K), pak, c64(lda), pbn, c64(L), scr, c64(L),
                           ir.Constant(I32, 0), work])
            ib.call(fold, [scr, po, c0, c1])
    images = lambda ib, batch: size_value(ib, dim(node.shape[0]), batch)   # noqa: E731
    items = _items(lw, fn, T, "image", body, images, per)
    _run(lw, b, fn, items, images, M * L * K)
    return fn, [a, cols, bnode]


# A job: out, a, scratch, x, batch, counter.
def _job_type(T):
    return ir.LiteralStructType([T] * 4 + [I64, I64.as_pointer()])


def _items(lw, step, T, name, body, count, per):
    """``void items(T* out, T* a, T* scratch, T* x, T* work, i64 thread, i64 batch,
    i64* counter)``: take item indices until none are left, ``body`` for each."""
    fty = ir.FunctionType(ir.VoidType(), [T] * 5 + [I64, I64, I64.as_pointer()])
    fn = ir.Function(lw.module, fty, name=f"{step.name}.items")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    out, pa, scratch, px, work, thread, batch, counter = fn.args
    ib = ir.IRBuilder(fn.append_basic_block("entry"))
    scr = ib.gep(scratch, [ib.mul(thread, c64(per))])
    c, head, done = pool.take_each(ib, counter, count(ib, batch), name)
    body(ib, c, out, pa, scr, px, work)
    ib.branch(head)
    ib.position_at_end(done)
    ib.ret_void()
    return fn


def _run(lw, b, step, items, count, mnk, images=None):
    """The step's body: ``items`` on this thread alone, or shared with the pool's workers
    when there are two items or more and ``images`` (default: the items) products of
    ``mnk`` multiply-adds hold SPLIT_MNK in all."""
    out, pa, scratch, px, work, batch = step.args
    T = out.type
    counter = b.alloca(I64, name="counter")
    b.store(c64(0), counter)
    args = [out, pa, scratch, px, b.bitcast(work, T), c64(0), batch, counter]
    if not pool.available():
        b.call(items, args)
        b.ret_void()
        return
    n = count(b, batch)
    total = b.mul(n if images is None else images, c64(mnk))
    with b.if_then(b.or_(b.icmp_signed("<", n, c64(2)),
                         b.icmp_signed("<", total, c64(SPLIT_MNK)))):
        b.call(items, args)
        b.ret_void()
    JOB = _job_type(T)
    job = b.alloca(JOB, name="job")
    for i, v in enumerate([out, pa, scratch, px, batch, counter]):
        b.store(v, b.gep(job, [c32(0), c32(i)]))
    fn, jb = pool.job_function(lw.module, f"{step.name}.job")    # slot s: scratch s
    jp = jb.bitcast(fn.args[0], JOB.as_pointer())
    f = [jb.load(jb.gep(jp, [c32(0), c32(i)])) for i in range(6)]
    jb.call(items, f[:4] + [jb.bitcast(fn.args[2], T), fn.args[1], f[4], f[5]])
    jb.ret_void()
    pool.share(lw.module, b, fn, b.bitcast(job, I8P), lambda: b.call(items, args),
               most=lw.plan.window_threads)
    b.ret_void()
