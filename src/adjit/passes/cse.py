"""Common-subexpression elimination: nodes with equal op, inputs and attrs become one."""
from __future__ import annotations

from ..ir import Graph
from ..ops.registry import rebuild
from .rewrite import rewrite


def cse(graph: Graph) -> Graph:
    seen: dict = {}

    def rule(node, inputs):
        if node.op in ("input", "param"):
            return None
        key = (node.op, tuple(i.id for i in inputs), node.attrs)
        if key in seen:
            return seen[key], "cse"
        seen[key] = built = rebuild(node, inputs)
        return built

    return rewrite(graph, rule, "cse")
