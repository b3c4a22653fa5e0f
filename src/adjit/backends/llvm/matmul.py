"""The llvm matmul kernel: numpy's batched product as calls of the packed GEMM.

``out[..., M, N] = op(A)[..., M, K] @ op(B)[..., K, N]``; ``op`` is a transpose when the
operand is a transpose *view* of the last two axes (the plan's GEMM flag,
:func:`..lowering.plan.is_gemm_transpose`), read through the GEMM's transpose flag.

The batch axes are walked by a loop nest (adjacent axes merged where every operand is
contiguous across them) whose body calls ``adjit_gemm_<dt>`` with each operand's pointer
offset by its batch strides -- 0 along an axis it is broadcast over.  When ``B`` is one
matrix for every batch element and ``A`` is stored untransposed and not broadcast, the
whole stack is one GEMM with ``M·batch`` rows (``(None, T, D) @ (D, E)``, a linear layer
over a sequence), which also lets the GEMM share a large product with the pool's worker.
The GEMMs run one after another in the caller's thread and share the step's workspace.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.loops import emit_nest, merge_dims, size_value
from ..lowering.plan import ZERO, batch_strides, numel, row_major_strides
from .library import declare_gemm

I32 = ir.IntType(32)


def lower_matmul(lw, node: Node):
    """Build the kernel of one matmul step for the llvm ``Lowering`` ``lw``."""
    a, bnode = node.inputs
    view = lambda n: n.op == "transpose" and lw.plan.storage[n.id].kind == "view"
    ta, tb = view(a), view(bnode)
    sa, sb = (a.inputs[0] if ta else a), (bnode.inputs[0] if tb else bnode)
    M, K, N = a.shape[-2], a.shape[-1], node.shape[-1]
    lda, ldb = sa.shape[-1], sb.shape[-1]
    batch_shape = node.shape[:-2]
    acc_out = row_major_strides(node.shape)[:-2]
    acc_a, acc_b = batch_strides(a, sa, node), batch_strides(bnode, sb, node)
    dt = "f32" if node.dtype == "float32" else "f64"
    gemm = declare_gemm(lw.module, dt)
    fn, b = lw._new_kernel(node, [a, bnode], workspace=True)
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
    else:
        sizes, accs = merge_dims(batch_shape, [acc_out, acc_a, acc_b])
        emit_nest(b, sizes, accs, batch, call)
    b.ret_void()
    return fn, [a, bnode]
