"""``matmul_sum``: a stack of matrix products summed over its batch axes, as one op.

``matmul_sum(a, b)[M, N] = Σ_batch (a @ b)[batch..., M, N]`` for ``a: (*batch, M, K)`` and
``b: (*batch, K, N)`` of equal batch shapes (``None``, the batch size, included).  It is
the weight gradient of a product over a sequence: for ``y = x @ W`` with ``x: (B, T, D)``,
``W̄ = Σ_b x[b]ᵀ ȳ[b]``, which the matmul VJP (ops/structural.py) writes as
``matmul_sum(swap_last(x), ȳ)``.  On the llvm backend, when ``a`` is read transposed (a
transpose view) and ``b`` is not, the stack is stored as one ``(batch·K, ·)`` matrix each
and the whole sum is ONE GEMM with ``K' = batch·K`` (the summation order differs from a
product per batch element followed by a sum: equal up to rounding); otherwise one GEMM per
batch element accumulates into the result.  A batch of size 0 gives zeros.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, ShapeError, TensorType, label, shape_str
from .registry import Op, make, register
from .tangents import product_rule
from .structural import check_product


def _F():
    from .. import frontend
    return frontend


def _rule(inputs, attrs):
    a, b = inputs
    where = f"matmul_sum({label(a)}, {label(b)})"
    check_product(where, a, b, 3)     # batch axes, then the matrices
    if a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"{where}: batch dimensions {shape_str(a.shape[:-2])} and "
                         f"{shape_str(b.shape[:-2])} differ")
    return TensorType((a.shape[-2], b.shape[-1]), a.dtype)


def _numpy(args, node, env):
    a, b = args
    nb = a.ndim - 2
    return np.matmul(a, b).sum(axis=tuple(range(nb))).astype(node.dtype)


def _vjp(node, g, needs):
    """ā[batch] = ḡ b[batch]ᵀ and b̄[batch] = a[batch]ᵀ ḡ: ḡ broadcast over the batch."""
    from .structural import swap_last
    F, (a, b) = _F(), node.inputs
    gb = F.reshape(g, (1,) * (a.ndim - 2) + g.shape)
    return [F.matmul(gb, swap_last(b)) if needs[0] else None,
            F.matmul(swap_last(a), gb) if needs[1] else None]


register(Op("matmul_sum", _rule, _numpy, _vjp, jvp=product_rule, arity=2, linear=True, display="Σ@",
            doc="a stack of matrix products summed over its batch axes"))


def matmul_sum(a, b) -> Node:
    """``Σ_batch a[batch] @ b[batch]`` for ``a: (*batch, M, K)``, ``b: (*batch, K, N)``
    (equal batch shapes): ``np.matmul(a, b).sum(axis=batch axes)`` as one op."""
    F = _F()
    return make("matmul_sum", (F._lift(a), F._lift(b)))

