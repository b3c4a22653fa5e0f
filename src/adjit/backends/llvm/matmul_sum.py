"""The llvm ``matmul_sum`` kernel: ``C[M, N] = Σ_batch op(A)[batch, M, K] @ op(B)[batch, K, N]``.

When ``A`` is a transpose view of ``(*batch, K, M)`` and ``B`` is stored untransposed as
``(*batch, K, N)`` (the weight gradient ``Σ_b x[b]ᵀ ȳ[b]`` of a product over a sequence),
both stacks are, in row-major memory, one ``(batch·K, M)`` and one ``(batch·K, N)``
matrix, and the sum is ONE GEMM ``Aᵀ B`` with ``K' = batch·K`` (large enough products
are then shared with the pool's worker by the GEMM itself).  Otherwise the result is
zeroed (a GEMM with K = 0) and one GEMM per batch element accumulates into it.  Both
sum in another order than a product per element followed by a sum: equal up to rounding.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.loops import emit_nest, merge_dims, size_value
from ..lowering.plan import batch_strides, numel
from .matmul import gemm_operands

I32 = ir.IntType(32)


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
    gemm_call(ir.Constant(ir.IntType(64), 0), pa, pb, 0)      # C = 0 (K = 0)
    sizes, accs = merge_dims(batch_shape, [batch_strides(a, sa, a), batch_strides(bnode, sb, a)])

    def call(offsets, indices):
        oa, ob = offsets
        gemm_call(sv(numel((K,))), b.gep(pa, [oa]), b.gep(pb, [ob]), 1)

    emit_nest(b, sizes, accs, batch, call)
    b.ret_void()
    return fn, [a, bnode]
