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
    # annotations (bars, dots) for nodes this pass did not make
    extra: dict[str, dict[int, list[Node]]] = {"bars": {}, "dots": {}}
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
            _carry_name(node, replacement, first_new)
            for key in ("bars", "dots"):
                _carry_meta(key, node.meta.get(key, ()), node, replacement, first_new, extra)
            new[node.id] = replacement
    for key in ("bars", "dots"):
        for old_id, marks in getattr(graph, f"extra_{key}", {}).items():
            if old_id in new:
                _carry_meta(key, marks, None, new[old_id], first_new, extra)
    result = Graph([new[o.id] for o in graph.outputs], stage)
    result.rewrites = dict(sorted(applied.items()))
    members = {n.id for n in result.order()}
    result.extra_bars = {k: v for k, v in extra["bars"].items() if k in members}
    result.extra_dots = {k: v for k, v in extra["dots"].items() if k in members}
    return result


def _carry_name(old: Node, new: Node, first_new: int) -> None:
    """A node made in this pass takes the name of the node it replaces; so do the tangents
    the user gave to :func:`adjit.jvp` (``meta['seeds']``, read by the views)."""
    if old is new or new.id < first_new:
        return
    if "name" in old.meta and "name" not in new.meta and new.op not in ("input", "param"):
        new.meta["name"] = old.meta["name"]
    if "seeds" in old.meta and "seeds" not in new.meta:
        new.meta["seeds"] = old.meta["seeds"]


def _carry_meta(key: str, marks, old: Node | None, new: Node, first_new: int,
                extra: dict) -> None:
    """Keep user-visible annotations (``key``: 'bars' of error signals, 'dots' of
    tangents) when a node is replaced.

    A node made in this pass takes them in its meta.  A node that existed before (the
    rule answered with an operand, e.g. ``x * 1 -> x``) belongs to earlier stages too, so
    its annotations for this and later stages go to the graph's ``extra_bars`` instead.
    """
    if old is new or not marks:
        return
    fresh = new.id >= first_new
    target = new.meta.setdefault(key, []) if fresh else extra[key].setdefault(new.id, [])
    for m in marks:
        if all(m is not b for b in target):
            target.append(m)
