"""The one graph-rewriting walk every pass is built on."""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ..ir import Graph, Node
from ..ops.registry import rebuild

Rule = Callable[[Node, list[Node]], "Node | tuple[Node, str] | None"]


def rewrite(graph: Graph, rule: Rule, stage: str) -> Graph:
    """Walk ``graph`` in topological order, rebuilding each node over its rewritten inputs.

    ``rule(node, new_inputs)`` returns ``None`` to keep the node (rebuilt over the new
    inputs), a node to use instead (bookkeeping, not counted), or
    ``(replacement, rule_name)``.  Every rule name applied is counted in the
    result's ``rewrites``, which the simplification report prints.
    """
    new: dict[int, Node] = {}
    applied: Counter = Counter()
    for node in graph.order():
        inputs = [new[i.id] for i in node.inputs]
        out = rule(node, inputs)
        if out is None:
            new[node.id] = rebuild(node, inputs)
        elif isinstance(out, Node):
            new[node.id] = out
        else:
            replacement, name = out
            applied[name] += 1
            _carry_meta(node, replacement)
            new[node.id] = replacement
    result = Graph([new[o.id] for o in graph.outputs], stage)
    result.rewrites = dict(sorted(applied.items()))
    return result


def _carry_meta(old: Node, new: Node) -> None:
    """Keep user-visible annotations (name, adjoint role) when a node is replaced."""
    if old is new:
        return
    for bar in old.meta.get("bars", ()):
        bars = new.meta.setdefault("bars", [])
        if bar not in bars:
            bars.append(bar)
    if "name" in old.meta and "name" not in new.meta and new.op not in ("input", "param"):
        new.meta["name"] = old.meta["name"]
