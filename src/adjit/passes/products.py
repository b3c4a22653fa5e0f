"""Sums of products ``aᵀ b`` of one shape become one ``matmul_sum`` of stacked operands.

The weight gradient of ``h @ W`` applied at every step of an unrolled loop (an RNN's
``h_{t-1} @ Wh``) is ``Σ_t h_{t-1}ᵀ ḡ_t``: T separate products, each too small to be
worth the pool's worker, then T-1 adds.  The same sum is one ``matmul_sum`` over the
stacks ``A = stack(h_t)`` and ``B = stack(ḡ_t)`` (ops/contract.py), whose left operand
is read transposed: on llvm, ONE GEMM with ``K = T·K`` (the stacks are one
``(T·K, ·)`` matrix each in row-major memory).  Rule: ``matmul(aᵀ, b) + matmul(cᵀ, d)``
(rank-2 products of equal shapes and dtype, the left operands transposes) ->
``matmul_sum(swap(stack([a, c])), stack([b, d]))``; a side that is already such a
matmul_sum of stacks adds its terms, so a chain of adds becomes one product.  Equal up
to rounding: the GEMM sums the T·K terms in another order than T products then adds.

Also: a product whose left operand is a broadcast along its rows (``broadcast(x)`` with
``x: (..., 1, K)``: a mean pool's gradient spread over the time axis) is the product of
``x`` broadcast: ``matmul(broadcast(x), b) -> broadcast(matmul(x, b))`` (and likewise a
right operand broadcast along its columns).  Exact: every element is the same dot
product, computed once instead of once per row.
"""
from __future__ import annotations

from ..ir import Node
from ..ops.registry import make


def _terms(x: Node):
    """``[(a, b), ...]`` with ``x = Σ aᵀ b`` (rank-2 a, b), or None."""
    if x.op == "matmul" and x.ndim == 2 and x.inputs[0].op == "transpose":
        return [(x.inputs[0].inputs[0], x.inputs[1])]
    if x.op != "matmul_sum" or x.inputs[0].op != "transpose" or x.ndim != 2:
        return None
    sa, sb = x.inputs[0].inputs[0], x.inputs[1]
    if x.inputs[0].attr("perm") != (0, 2, 1) or not (sa.op == sb.op == "concatenate"):
        return None
    if sa.attr("axis") != 0 or sb.attr("axis") != 0 or len(sa.inputs) != len(sb.inputs):
        return None
    if not all(p.op == "reshape" and p.shape[0] == 1 and p.inputs[0].ndim == 2
               for p in sa.inputs + sb.inputs):
        return None
    return [(p.inputs[0], q.inputs[0]) for p, q in zip(sa.inputs, sb.inputs)]


def join_products(node: Node, ins: list[Node]):
    """The rule (see the module docstring); None when it does not apply."""
    if node.op != "add" or len(ins) != 2 or node.ndim != 2:
        return None
    left, right = _terms(ins[0]), _terms(ins[1])
    if left is None or right is None:
        return None
    terms = left + right
    a0, b0 = terms[0]
    if any(a.type != a0.type or b.type != b0.type for a, b in terms) or ins[0].type != node.type \
            or ins[1].type != node.type:
        return None
    A = make("concatenate", tuple(make("reshape", (a,), {"shape": (1,) + a.shape})
                                  for a, _ in terms), {"axis": 0})
    B = make("concatenate", tuple(make("reshape", (b,), {"shape": (1,) + b.shape})
                                  for _, b in terms), {"axis": 0})
    At = make("transpose", (A,), {"perm": (0, 2, 1)})
    return make("matmul_sum", (At, B)), "aᵀb+cᵀd=matmul_sum"


def _spread(x: Node, axis: int) -> Node | None:
    """The operand of ``x`` when ``x`` is a broadcast along ``axis`` only (of equal rank)."""
    if x.op != "broadcast":
        return None
    y = x.inputs[0]
    if y.ndim != x.ndim or y.shape[axis] != 1 or x.shape[axis] == 1:
        return None
    if any(d != e for k, (d, e) in enumerate(zip(y.shape, x.shape)) if k != x.ndim + axis):
        return None
    return y


def spread_products(node: Node, ins: list[Node]):
    """``matmul(broadcast(x), b)`` with x broadcast along the rows only, or ``matmul(a,
    broadcast(y))`` along the columns only: the product of the small operand, broadcast."""
    if node.op != "matmul":
        return None
    a, b = ins
    x, y = _spread(a, -2), _spread(b, -1)
    if x is None and y is None:
        return None
    small = make("matmul", (a if x is None else x, b if y is None else y))
    return make("broadcast", (small,), {"shape": node.shape}), "matmul(broadcast)=broadcast"
