"""Which values of a graph get a line of their own, and what each line says.

Equations mode (backprop notation): a value gets a line when the user named it, when it
is an output, when it is the error signal (bar) of a named value, when it is used more
than once (so it is written once and referred to by name), or when writing it inline
would make an expression longer than :data:`MAX_INLINE` operations.  Everything else is
written inline where it is used.  Trace mode (worked examples) gives every forward
operation and every error signal a line, like the lecture's evaluation trace.

An error signal shared by several primals (``add`` passes its cotangent through) is one
node; the others get alias lines such as ``b̄ = z̄``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph, Node
from .names import INVISIBLE, Name, Naming
from .terms import Term, from_node, name
from .tidy import tidy

MAX_INLINE = 10
_TRIVIAL = ("const", "batch_size") + INVISIBLE


@dataclass(eq=False)   # compared by identity: a node field compares into a bool node
class Line:
    """``lhs = rhs`` for ``node``; ``section`` is 'forward' or 'backward'."""

    node: Node
    lhs: Name
    rhs: Term
    section: str
    alias: bool = False


@dataclass(eq=False)
class Plan:
    """The lines of one graph: ``given`` leaves, then forward and backward lines in order."""

    graph: Graph
    given: list[Node]
    lines: list[Line]
    naming: Naming


def effective_uses(graph: Graph) -> dict[int, int]:
    """How many times each value is read, looking through invisible ops; outputs count once."""
    eff = {n.id: 0 for n in graph.order()}
    for o in graph.outputs:
        eff[o.id] += 1
    for n in reversed(graph.order()):
        for i in n.inputs:
            eff[i.id] += eff[n.id] if n.op in INVISIBLE else 1
    return eff


def plan(graph: Graph, mode: str = "equations", forward=None) -> Plan:
    """Choose the lines of ``graph`` (``mode`` is 'equations' or 'trace'; ``forward`` as
    for :class:`~adjit.show.names.Naming`)."""
    naming = Naming(graph, forward)
    outputs = {o.id for o in graph.outputs}
    eff = effective_uses(graph)
    leaves = [n for n in graph.order() if n.op in ("input", "param")]
    chosen: set[int] = set()
    for n in graph.order():
        if n.op in ("input", "param"):
            continue
        bar = naming.primal(n) is not None
        if (n.id in outputs or n.name or naming.primal(n, named_only=True) is not None
                or (n.op not in _TRIVIAL and mode == "trace" and (
                    bar or not naming.is_backward(n)))):
            chosen.add(n.id)
    _cap_inline(graph, chosen, eff)
    for n in graph.order():                 # the bar of an unnamed primal names the primal
        p = naming.primal(n) if n.id in chosen else None
        if p is not None and not p.name:
            chosen.add(p.id)
    for n in graph.order():                 # generated names in topological order
        if n.id in chosen:
            naming.generate(n)

    def ref(m: Node):
        if m.op in ("input", "param") or m.id in chosen:
            return name(naming.generate(m))
        return None

    lines = []
    for n in graph.order():
        if n.id not in chosen:
            continue
        section = "backward" if naming.is_backward(n) else "forward"
        lhs = naming.generate(n)
        rhs = tidy(from_node(n, lambda m: None if m is n else ref(m)))
        lines.append(Line(n, lhs, rhs, section))
        for p in naming.bars.get(n.id, ()):
            if p.name or (mode == "trace" and p.id in chosen):
                alias = naming.generate(p).barred()
                if alias != lhs:
                    lines.append(Line(n, alias, name(lhs), "backward", alias=True))
    return Plan(graph, leaves, lines, naming)


def _cap_inline(graph: Graph, chosen: set[int], eff: dict[int, int]) -> None:
    """Give a line to a value used more than once (unless it is a single operation on
    named values, cheaper to read inline) or longer than MAX_INLINE operations inline."""
    size: dict[int, int] = {}
    for n in graph.order():
        own = 0 if n.op in _TRIVIAL or n.op in ("input", "param") else 1
        if n.op == "fused":
            own = max(1, n.attr("members", 1))
        total = own + sum(0 if i.id in chosen else size[i.id] for i in n.inputs)
        if own and n.id not in chosen and (total > MAX_INLINE or (eff[n.id] > 1 and total > 1)):
            chosen.add(n.id)
        size[n.id] = 0 if n.id in chosen else total
