"""The llvm matmul kernel: numpy's batched product as calls of the packed GEMM.

``out[..., M, N] = op(A)[..., M, K] @ op(B)[..., K, N]``; ``op`` is a transpose when the
operand is a transpose *view* of the last two axes (the plan's GEMM flag,
:func:`..lowering.plan.is_gemm_transpose`), read through the GEMM's transpose flag.

The batch axes are walked by a loop nest (adjacent axes merged where every operand is
contiguous across them) whose body calls ``adjit_gemm_<dt>`` with each operand's pointer
offset by its batch strides -- 0 along an axis it is broadcast over.  When ``B`` is one
matrix for every batch element and ``A`` is stored untransposed and not broadcast, the
whole stack is one GEMM with ``M·batch`` rows (``(None, T, D) @ (D, E)``, a linear layer
over a sequence), which also lets the GEMM share a large product with the pool's workers.
Otherwise, when the pool exists and the stack holds enough work (``SPLIT_MNK``
multiply-adds in all, known at run time), the threads take products from a shared
counter (the caller with the step's workspace, each worker with its own); each product is
computed by one thread exactly as alone, so the results do not depend on the split.
Below that, or without the pool, the caller runs them all one after another.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from . import pool
from ..lowering.irkit import c32, c64
from ..lowering.loops import add, emit_nest, merge_dims, mul, size_value
from ..lowering.plan import ZERO, batch_strides, numel, row_major_strides

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
SPLIT_MNK = 1 << 19      # multiply-adds in the whole stack: below, one thread does all


def gemm_operands(lw, node: Node):
    """What every product kernel starts with: ``(a, b, ta, tb, sa, sb, (M, K, N), (lda, ldb),
    gemm, fn, builder)`` -- the operands, whether each is a transpose view read through the
    GEMM's flag, the nodes whose storage they read, the sizes, the leading dimensions, the
    GEMM declared in the kernel's module, and the kernel taking the workspace."""
    a, bnode = node.inputs
    view = lambda n: n.op == "transpose" and lw.plan.storage[n.id].kind == "view"
    ta, tb = view(a), view(bnode)
    sa, sb = (a.inputs[0] if ta else a), (bnode.inputs[0] if tb else bnode)
    dims = (a.shape[-2], a.shape[-1], node.shape[-1])
    gemm = lw.declare_gemm(lw.module, "f32" if node.dtype == "float32" else "f64")
    fn, b = lw._new_kernel(node, [a, bnode], workspace=True)
    return a, bnode, ta, tb, sa, sb, dims, (sa.shape[-1], sb.shape[-1]), gemm, fn, b


def lower_matmul(lw, node: Node):
    """Build the kernel of one matmul step for the llvm ``Lowering`` ``lw``."""
    a, bnode, ta, tb, sa, sb, (M, K, N), (lda, ldb), gemm, fn, b = gemm_operands(lw, node)
    batch_shape = node.shape[:-2]
    acc_out = row_major_strides(node.shape)[:-2]
    acc_a, acc_b = batch_strides(a, sa, node), batch_strides(bnode, sb, node)
    out, pa, pb, work, batch = fn.args
    sv = lambda s: size_value(b, s, batch)
    one_gemm = not ta and all(s == ZERO for s in acc_b) and all(
        d == o for d, o in zip(a.shape[:-2], batch_shape))
    rows = numel(batch_shape + (M,)) if one_gemm else numel((M,))

    def call(offsets, indices):
        o, oa, ob = offsets
        b.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, int(tb)), sv(rows),
                      sv(numel((N,))), sv(numel((K,))), b.gep(pa, [oa]), sv(numel((lda,))),
                      b.gep(pb, [ob]), sv(numel((ldb,))), b.gep(out, [o]), sv(numel((N,))),
                      ir.Constant(I32, 0), b.bitcast(work, pa.type)])

    if one_gemm:
        emit_nest(b, [], [[], [], []], batch, call)
        b.ret_void()
        return fn, [a, bnode]
    sizes, accs = merge_dims(batch_shape, [acc_out, acc_a, acc_b])
    if not sizes or not pool.available():
        emit_nest(b, sizes, accs, batch, call)
        b.ret_void()
        return fn, [a, bnode]
    items = _items(lw, fn, gemm, node, sizes, accs,
                   lambda b, batch: [ir.Constant(I32, int(ta)), ir.Constant(I32, int(tb)),
                                     size_value(b, rows, batch), size_value(b, numel((N,)), batch),
                                     size_value(b, numel((K,)), batch)],
                   lambda b, batch: [size_value(b, numel((lda,)), batch),
                                     size_value(b, numel((ldb,)), batch),
                                     size_value(b, numel((N,)), batch)])
    split_items(lw.module, b, fn, items, sizes, numel((M, N, K)))
    return fn, [a, bnode]


# A job for the workers: out, a, b, batch, the shared counter.
_JOB = lambda T: ir.LiteralStructType([T.as_pointer()] * 3 + [I64, I64.as_pointer()])  # noqa


def _items(lw, step, gemm, node, sizes, accs, dims, lds):
    """``void items(T* out, T* a, T* b, T* work, i64 batch, i64* counter)``: take product
    indices from ``counter`` until none are left, calling the GEMM for each."""
    fn, (out, pa, pb, work, batch, counter), b = pool.items_function(lw.module, step)
    n = size_value(b, numel(()) if not sizes else _prod(sizes), batch)
    c, head, done = pool.take_each(b, counter, n, "prod")
    offs, rest = [c64(0)] * 3, c
    for k in reversed(range(len(sizes))):
        cnt = size_value(b, sizes[k], batch)
        i = b.urem(rest, cnt) if k else rest
        rest = b.udiv(rest, cnt) if k else rest
        offs = [add(b, o, mul(b, i, size_value(b, acc[k], batch))) for o, acc in zip(offs, accs)]
    (o, oa, ob), (lda, ldb, ldc) = offs, lds(b, batch)
    b.call(gemm, dims(b, batch) + [b.gep(pa, [oa]), lda, b.gep(pb, [ob]), ldb,
                                   b.gep(out, [o]), ldc, ir.Constant(I32, 0), work])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _prod(sizes):
    out = sizes[0]
    for s in sizes[1:]:
        out = out * s
    return out


def split_items(module, b, step, items, sizes, mnk):
    """The step's body: ``items`` on this thread alone, or shared with the workers when the
    ``sizes`` items of ``mnk`` multiply-adds each hold SPLIT_MNK in all."""
    out, pa, pb, work, batch = step.args
    T = out.type
    counter = b.alloca(I64, name="counter")
    b.store(c64(0), counter)
    mine = b.bitcast(work, T)
    n = size_value(b, _prod(sizes), batch)
    total = b.mul(n, size_value(b, mnk, batch))
    alone = b.or_(b.icmp_signed("<", total, c64(SPLIT_MNK)), b.icmp_signed("<", n, c64(2)))
    with b.if_then(alone):
        b.call(items, [out, pa, pb, mine, batch, counter])
        b.ret_void()
    JOB = _JOB(T.pointee)
    job = b.alloca(JOB, name="job")
    for i, v in enumerate([out, pa, pb, batch, counter]):
        b.store(v, b.gep(job, [c32(0), c32(i)]))
    runner = _worker_job(module, step, items, JOB)
    pool.share(module, b, runner, b.bitcast(job, I8P),
               lambda: b.call(items, [out, pa, pb, mine, batch, counter]))
    b.ret_void()


def _worker_job(module, step, items, JOB):
    """``void job(i8* arg, i64 slot, i8* work)``: a worker's share, with its own workspace."""
    fn, b = pool.job_function(module, f"{step.name}.job")
    job = b.bitcast(fn.args[0], JOB.as_pointer())
    f = [b.load(b.gep(job, [c32(0), c32(i)])) for i in range(5)]
    b.call(items, f[:3] + [b.bitcast(fn.args[2], f[0].type)] + f[3:])
    b.ret_void()
    return fn
