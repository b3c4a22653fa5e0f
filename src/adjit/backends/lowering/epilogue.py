"""Epilogues: an elementwise map computed inside the matrix product it reads.

A dense layer is ``E = act(M + b)`` with ``M = x @ W``: two kernels, and M goes to memory and
back once.  With ``Plan(..., epilogues=True)`` (the ptx backend) the product kernel applies
E's expression to each element of M before storing it, and M is never stored: M gets the
``inline`` storage and E takes M's place in the schedule (E becomes the step that runs the
product; the backend lowers it as M's product with E as its epilogue).

:func:`epilogue_user` says when that is sound; everything must hold, else nothing fuses:

* M is a ``matmul`` or ``matmul_sum`` (float32/float64) with storage of its own: not a
  graph output, not already given storage (an output slot), not a window;
* E is M's only user and reads M exactly once;
* E is elementwise (an elementwise op or a ``fused`` region: one scalar expression per
  element) of M's exact shape and dtype, so it reads M at its own element (no broadcast of
  M, no reduction);
* every other operand of E is available where M runs: a leaf (input, param, const, batch
  size) or a node already scheduled (a step before M), views of those followed.

E may itself be an output, or an ``updates=`` (in-place) output: such an output is copied into
the caller's buffer after every step (``Plan.copies``) from E's own temporary, so computing
E earlier changes nothing for the input it overwrites.  The arena lifetimes follow the new
order: E's output is live from M's old position, and the step reading M's operands is E
(``Plan._lifetimes`` extends an inline operand's reads to its inputs).
"""
from __future__ import annotations

from ...ir import Graph, Node
from ...ops.registry import REGISTRY, get_op

GEMM_OPS = frozenset({"matmul", "matmul_sum"})
FLOATS = ("float32", "float64")


def _elementwise(node: Node) -> bool:
    spec = REGISTRY.get(node.op)
    return node.op == "fused" or (spec is not None and spec.elementwise)


def epilogue_user(graph: Graph, node: Node, available, is_view) -> Node | None:
    """The map E that the product ``node`` (M) may compute as its epilogue, or None.

    ``available(n)``: whether the value ``n`` (not a view) exists when M runs (a leaf, or
    a step scheduled before M); ``is_view(n)``: whether ``n`` reads another node's storage
    (its ``inputs[0]``)."""
    if node.op not in GEMM_OPS or node.dtype not in FLOATS:
        return None
    if any(o is node for o in graph.outputs):
        return None
    users = graph.users(node)
    if len(users) != 1:
        return None
    e = users[0]
    if (not _elementwise(e) or tuple(e.shape) != tuple(node.shape) or e.dtype != node.dtype
            or sum(i is node for i in e.inputs) != 1):
        return None
    for i in e.inputs:
        if i is node:
            continue
        while is_view(i):
            i = i.inputs[0]
        if not (get_op(i.op).leaf or available(i)):
            return None
    return e


def fused_product(plan, node: Node) -> Node | None:
    """The product whose epilogue the step ``node`` is (computed by one kernel), else None."""
    return getattr(plan, "epilogue_of", {}).get(node.id)
