"""Ops computed from other ops (``Op.expand``) written out before a backend lowers them.

A convolution is the matrix product of its unfolded windows (ops/conv.py); the record
says so once, and this pass applies it, so no backend needs a rule of its own and the
later passes (fold's product rules, CSE, fusion) see the product.  The traced graph keeps
the op (the equations view writes ``x̄ = conv_transpose(z̄, W)``).
"""
from __future__ import annotations

from ..ir import Graph
from ..ops.conv_direct import direct
from ..ops.registry import get_op
from .rewrite import rewrite


_MOVES = ("reshape", "transpose", "broadcast")


def _expand(node, ins):
    rule = get_op(node.op).expand
    if rule is None:
        return None
    out = rule(node, ins)
    if out is None:             # the record keeps this node (ops/conv_direct.py)
        return None
    return out, f"{node.op}→{'·'.join(_computed(out, ins)) or 'moves'}"


def _computed(out, ins) -> list[str]:
    """The ops an expansion computes with, first to last (``unfold·matmul``), leaving out
    the moves between them: the report's rule name (``conv→unfold·matmul×2``)."""
    given, made, stack = {i.id for i in ins}, {}, [out]
    while stack:
        n = stack.pop()
        if n.id in given or n.id in made:
            continue
        made[n.id] = n
        stack.extend(n.inputs)
    ops: list[str] = []
    for k in sorted(made):   # id order is topological order
        if made[k].op not in _MOVES and made[k].op not in ops:
            ops.append(made[k].op)
    return ops


def expand(graph: Graph) -> Graph:
    """Replace every op that has an ``expand`` rule by what it computes."""
    return rewrite(graph, _expand, "expand")


def needs_expand(graph: Graph) -> bool:
    """Whether ``graph`` still holds an op a backend only knows through ``expand`` (one
    its record would expand: a kept direct convolution does not count)."""
    return any(get_op(n.op).expand is not None and not direct(n) for n in graph.order())
