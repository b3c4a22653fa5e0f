"""Ops computed from other ops (``Op.expand``) written out before a backend lowers them.

A convolution is the matrix product of its unfolded windows (ops/conv.py); the record
says so once, and this pass applies it, so no backend needs a rule of its own and the
later passes (fold's product rules, CSE, fusion) see the product.  The traced graph keeps
the op (the equations view writes ``x̄ = conv_transpose(z̄, W)``).
"""
from __future__ import annotations

from ..ir import Graph
from ..ops.registry import get_op
from .rewrite import rewrite


def _expand(node, ins):
    rule = get_op(node.op).expand
    if rule is None:
        return None
    return rule(node, ins), f"{node.op}=expanded"


def expand(graph: Graph) -> Graph:
    """Replace every op that has an ``expand`` rule by what it computes."""
    return rewrite(graph, _expand, "expand")


def needs_expand(graph: Graph) -> bool:
    """Whether ``graph`` still holds an op a backend only knows through ``expand``."""
    return any(get_op(n.op).expand is not None for n in graph.order())
