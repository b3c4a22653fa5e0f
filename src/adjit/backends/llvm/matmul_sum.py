"""The llvm ``matmul_sum`` kernel: ``C[M, N] = Σ_batch op(A)[batch, M, K] @ op(B)[batch, K, N]``.

When ``A`` is a transpose view of ``(*batch, K, M)`` and ``B`` is stored untransposed as
``(*batch, K, N)`` (the weight gradient ``Σ_b x[b]ᵀ ȳ[b]`` of a product over a sequence),
both stacks are, in row-major memory, one ``(batch·K, M)`` and one ``(batch·K, N)``
matrix, and the sum is ONE GEMM ``Aᵀ B`` with ``K' = batch·K`` (large enough products
are then shared with the pool's workers by the GEMM itself).  Otherwise the result is
zeroed (a GEMM with K = 0) and one GEMM per batch element accumulates into it.  Both
sum in another order than a product per element followed by a sum: equal up to rounding.

Those per-element products are often too small for the GEMM to share one with the pool's
workers (a convolution's weight gradient on small images: ``(C_out, L) @ (L, C·ΠK)`` per
image), and sharing each large one costs a hand-over per product, so when the stack holds
enough work the result is cut into blocks of whole register tiles' columns (or rows, when
it has more rows; 2 per thread, at least 8) that the threads take from a shared counter, each block summed over the
whole stack by one thread: every element is computed exactly as without the split,
whichever thread takes it.  (W10's weight gradients, 32 products (64 x 1024) @ (1024 x
576): 8.1 ms with each product shared, 7.3-7.5 ms in blocks, two threads.)
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from . import pool
from .gemm import gemm_params
from ..lowering.irkit import c64, imin
from ..lowering.loops import emit_nest, merge_dims, size_value
from ..lowering.plan import Size, batch_strides, numel
from .matmul import gemm_operands, split_items

I32, I64 = ir.IntType(32), ir.IntType(64)
BLOCK = None        # columns (rows) per block, at least: None = the GEMM's tile width NR
MIN_BLOCKS = 8


def max_blocks() -> int:
    """Column (row) blocks a split matmul_sum is cut into: 2 per core, at least
    MIN_BLOCKS (fixed at compile time; the pool's threads take them)."""
    from ..lowering.target.description import num_threads
    return max(MIN_BLOCKS, 2 * num_threads())


def lower_matmul_sum(lw, node: Node):
    """Build the kernel of one matmul_sum step for the llvm ``Lowering`` ``lw``."""
    a, bnode, ta, tb, sa, sb, (M, K, N), (lda, ldb), gemm, fn, b = gemm_operands(lw, node)
    batch_shape = a.shape[:-2]
    out, pa, pb, work, batch = fn.args
    sv = lambda s: size_value(b, s, batch)

    def gemm_call(k, pa_, pb_, accumulate):
        b.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, int(tb)), sv(numel((M,))),
                      sv(numel((N,))), k, pa_, sv(numel((lda,))), pb_, sv(numel((ldb,))),
                      out, sv(numel((N,))), ir.Constant(I32, accumulate),
                      b.bitcast(work, pa.type)])

    if ta and not tb:
        gemm_call(sv(numel(batch_shape + (K,))), pa, pb, 0)
        b.ret_void()
        return fn, [a, bnode]
    sizes, accs = merge_dims(batch_shape, [batch_strides(a, sa, a), batch_strides(bnode, sb, a)])
    dt = "f32" if node.dtype == "float32" else "f64"
    block = BLOCK or gemm_params(dt, lw.target)["NR"]
    if (sizes and pool.available() and None not in (M, N, K)
            and max(M, N) > block):
        _blocks(lw, node, fn, b, gemm, sizes, accs, block)
        return fn, [a, bnode]
    gemm_call(ir.Constant(ir.IntType(64), 0), pa, pb, 0)      # C = 0 (K = 0)

    def call(offsets, indices):
        oa, ob = offsets
        gemm_call(sv(numel((K,))), b.gep(pa, [oa]), b.gep(pb, [ob]), 1)

    emit_nest(b, sizes, accs, batch, call)
    b.ret_void()
    return fn, [a, bnode]


def _blocks(lw, node, step, b, gemm, sizes, accs, block):
    """The step's body: blocks of the result's columns (rows) summed over the stack, taken
    by this thread and the pool's workers (:func:`.matmul.split_items`)."""
    a, bnode = node.inputs
    view = lambda n: n.op == "transpose" and lw.plan.storage[n.id].kind == "view"  # noqa
    ta, tb = view(a), view(bnode)
    sa, sb = (a.inputs[0] if ta else a), (bnode.inputs[0] if tb else bnode)
    M, K, N = a.shape[-2], a.shape[-1], node.shape[-1]
    lda, ldb = sa.shape[-1], sb.shape[-1]
    cols = N >= M                       # cut along the longer side
    side = N if cols else M
    width = -(-side // max_blocks() // block) * block    # whole tiles, <= max_blocks()
    n_blocks = -(-side // width)
    fn, (out, pa, pb, work, batch, counter), ib = pool.items_function(lw.module, step)
    c, head, done = pool.take_each(ib, counter, c64(n_blocks), "block")
    first = ib.mul(c, c64(width))
    w = ib.sub(imin(ib, ib.add(first, c64(width)), c64(side)), first)
    if cols:      # columns first.. of C and of op(B)
        po, pa0 = ib.gep(out, [first]), pa
        pb0 = ib.gep(pb, [ib.mul(first, c64(ldb)) if tb else first])
        m, n = c64(M), w
    else:         # rows first.. of C and of op(A)
        po, pb0 = ib.gep(out, [ib.mul(first, c64(N))]), pb
        pa0 = ib.gep(pa, [first if ta else ib.mul(first, c64(lda))])
        m, n = w, c64(N)

    def call(k, pa_, pb_, accumulate):
        ib.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, int(tb)), m, n, k,
                       pa_, c64(lda), pb_, c64(ldb), po, c64(N), ir.Constant(I32, accumulate),
                       work])

    call(c64(0), pa0, pb0, 0)                 # this block of C = 0 (K = 0)

    def each(offsets, indices):
        oa, ob = offsets
        call(c64(K), ib.gep(pa0, [oa]), ib.gep(pb0, [ob]), 1)

    emit_nest(ib, sizes, accs, batch, each)
    ib.branch(head)
    ib.position_at_end(done)
    ib.ret_void()
    per_block = Size(-(-M * N * K // n_blocks)) * numel(a.shape[:-2])
    split_items(lw.module, b, step, fn, [Size(n_blocks)], per_block)
