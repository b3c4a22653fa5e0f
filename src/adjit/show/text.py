"""Text listing of a graph: one line per node, stable ids, op, operands, type, name."""
from __future__ import annotations

from ..ir import Graph, Node, Staged


def _attr_text(node: Node) -> str:
    parts = []
    for k, v in node.attrs:
        if k in ("type", "name"):
            continue
        parts.append(f"{k}={v}")
    return ("{" + ", ".join(parts) + "}") if parts else ""


def graph_listing(graph: Graph) -> str:
    """``%3 = matmul(%0, %1) : float32(B, 128)  # h`` lines, numbered in topological order."""
    from .names import Naming
    bars = Naming(graph).bars     # claims resolved: passes may have annotated shared nodes
    ids = {n.id: k for k, n in enumerate(graph.order())}
    outs = {o.id: k for k, o in enumerate(graph.outputs)}
    lines = [f"graph [{graph.stage}] ({len(graph)} nodes)"]
    for n in graph.order():
        if n.op in ("input", "param"):
            rhs = f"{n.op} {n.name!r}"
        else:
            rhs = f"{n.op}({', '.join('%' + str(ids[i.id]) for i in n.inputs)}){_attr_text(n)}"
        notes = []
        if n.name and n.op not in ("input", "param"):
            notes.append(n.name)
        if bars.get(n.id):
            notes.append("bar of " + ", ".join(_who(b, ids) for b in bars[n.id]))
        if n.meta.get("role") == "adjoint":
            notes.append("adjoint")
        if n.id in outs:
            notes.append(f"output {outs[n.id]}")
        tail = f"  # {'; '.join(notes)}" if notes else ""
        lines.append(f"  %{ids[n.id]} = {rhs} : {n.type}{tail}")
    return "\n".join(lines)


def _who(node: Node, ids: dict) -> str:
    return node.name or (f"%{ids[node.id]}" if node.id in ids else f"{node.op}#{node.id}")


def listing(target, stage: str = "all") -> str:
    """Listings of a compiled function's stages, or of one Graph.

    ``stage``: 'all' (the forward graph, the traced graph with its raw adjoint, then the
    output of every pass), 'forward', 'traced', 'simplified' (the last stage) or a pass
    name.
    """
    if isinstance(target, Graph):
        return graph_listing(target)
    if not isinstance(target, Staged):
        raise TypeError(f"cannot list {type(target).__name__}; pass a compiled function or a Graph")
    by_name = {g.stage: g for g in target.stages}
    if stage == "all":
        graphs = [target.forward] + list(target.stages)
    elif stage == "forward":
        graphs = [target.forward]
    elif stage == "simplified":
        graphs = [target.graph]
    elif stage in by_name:
        graphs = [by_name[stage]]
    else:
        raise ValueError(f"unknown stage {stage!r}; choose all, forward, simplified or one of "
                         f"{', '.join(by_name)}")
    return "\n\n".join(graph_listing(g) for g in graphs)
