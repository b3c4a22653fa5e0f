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
    first_new = max((n.id for n in graph.order()), default=-1) + 1
    extra: dict[int, list[Node]] = {}     # annotations for nodes this pass did not make
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
            _carry_meta(node.meta.get("bars", ()), node, replacement, first_new, extra)
            new[node.id] = replacement
    for old_id, bars in getattr(graph, "extra_bars", {}).items():
        if old_id in new:
            _carry_meta(bars, None, new[old_id], first_new, extra)
    result = Graph([new[o.id] for o in graph.outputs], stage)
    result.rewrites = dict(sorted(applied.items()))
    members = {n.id for n in result.order()}
    result.extra_bars = {k: v for k, v in extra.items() if k in members}
    return result


def _carry_meta(bars, old: Node | None, new: Node, first_new: int, extra: dict) -> None:
    """Keep user-visible annotations (error-signal bars, name) when a node is replaced.

    A node made in this pass takes them in its meta.  A node that existed before (the
    rule answered with an operand, e.g. ``x * 1 -> x``) belongs to earlier stages too, so
    its annotations for this and later stages go to the graph's ``extra_bars`` instead.
    """
    if old is new:
        return
    fresh = new.id >= first_new
    if fresh and old is not None and "name" in old.meta and "name" not in new.meta \
            and new.op not in ("input", "param"):
        new.meta["name"] = old.meta["name"]
    if not bars:
        return
    target = new.meta.setdefault("bars", []) if fresh else extra.setdefault(new.id, [])
    for bar in bars:
        if all(bar is not b for b in target):
            target.append(bar)
