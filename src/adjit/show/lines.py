"""Which values of a graph get a line of their own, and what each line says.

Equations mode (backprop notation): a value gets a line when the user named it, when it
is an output, when it is the error signal (bar) of a named value, when it is used more
than once (so it is written once and referred to by name), or when writing it inline
would make an expression longer than :data:`MAX_INLINE` operations.  Everything else is
written inline where it is used.  Trace mode (worked examples) gives every forward
operation and every error signal a line, like the lecture's evaluation trace.

An error signal shared by several primals (``add`` passes its cotangent through) is one
node; the others get alias lines such as ``b̄ = z̄``.

Accumulations (equations mode, backward): an error signal is a sum of contributions, and
a contribution that adds values into zeros (the VJP of a slice is a pad, the VJP of a
gather a scatter-add: records whose ``Shown`` says ``into``) is written as its own
``+=`` line, as lecture code accumulates gradients: ``x̄ = c̄[:, 2:] Wᵀ`` then
``x̄[:, 0] += ȳ`` and ``Ē += scatter(ids, ȳ)``.  An error signal starts at 0, so one
made only of such contributions has ``+=`` lines only.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ir import Graph, Node
from ..ops.registry import REGISTRY
from .names import INVISIBLE, Name, Naming
from .terms import Term, from_node, from_sympy, name, scalarish, shown_term, written_dropped
from .tidy import tidy

MAX_INLINE = 10
_TRIVIAL = ("const", "batch_size") + INVISIBLE


@dataclass(eq=False)   # compared by identity: a node field compares into a bool node
class Line:
    """``lhs = rhs`` for ``node``; ``section`` is 'forward', 'backward' or 'tangent'.  An
    accumulation has ``op`` ``+=`` and, when it adds into part of the value, ``at``: the
    indexed left-hand side (``x̄[:, 0]``)."""

    node: Node
    lhs: Name
    rhs: Term
    section: str
    alias: bool = False
    op: str = "="
    at: Term | None = None


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
        derived = naming.is_backward(n) or naming.is_tangent(n)
        if (n.id in outputs or n.name or naming.primal(n, named_only=True) is not None
                or (n.op not in _TRIVIAL and mode == "trace" and (bar or not derived))):
            chosen.add(n.id)
    _cap_inline(graph, chosen, eff)
    for n in graph.order():                 # the bar of an unnamed primal names the primal
        p = naming.primal(n) if n.id in chosen else None
        if p is not None and not p.name:
            chosen.add(p.id)
    for n in graph.order():                 # generated names in topological order
        if n.id in chosen:
            naming.generate(n)

    def ref(m: Node, section: str = "forward"):
        if section == "tangent" and m.id in seeded:          # the user's tangent: ẇ
            return name(seeded[m.id])
        if m.op in ("input", "param") or m.id in chosen:
            return name(naming.generate(m))
        return None

    lines = []
    seeded: dict[int, Name] = {}     # named seeds, once their alias line ẇ = V is written
    for n in graph.order():
        if n.id not in chosen and n.id not in naming.seeds:
            continue
        section = naming.section(n)
        if n.name and n.id in naming.seeds and n.id not in seeded:
            v = naming.seeds[n.id][0]
            seeded[n.id] = naming.generate(v).dotted()
            lines.append(Line(n, seeded[n.id], name(naming.generate(n)), "tangent", alias=True))
        if n.id not in chosen:
            continue
        lhs = naming.generate(n)
        inner = lambda m, n=n, s=section: None if m is n else ref(m, s)   # noqa: E731
        split = (_accumulations(n, chosen, eff, inner)
                 if mode == "equations" and section == "backward" else None)
        if split is None:
            lines.append(Line(n, lhs, tidy(from_node(n, inner)), section))
        else:
            dense, adds = split
            if dense is not None:
                lines.append(Line(n, lhs, tidy(dense), section))
            for index, rhs in adds:
                at = Term("index", (name(lhs),), index) if index else None
                lines.append(Line(n, lhs, tidy(rhs), section, op="+=", at=at))
        for p in naming.bars.get(n.id, ()):
            if p.name or (mode == "trace" and p.id in chosen):
                alias = naming.generate(p).barred()
                if alias != lhs:
                    lines.append(Line(n, alias, name(lhs), "backward", alias=True))
        for p in naming.dots.get(n.id, ()):
            if p.name or (mode == "trace" and p.id in chosen):
                alias = naming.generate(p).dotted()
                if alias != lhs and naming.mark(n) == "d":
                    lines.append(Line(n, alias, name(lhs), "tangent", alias=True))
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


# --- accumulations: x̄[:, 0] += ȳ, Ē += scatter(ids, ȳ) -----------------------------------------
def _into(a: Node, n: Node, chosen: set, eff: dict):
    """``a``'s Shown when ``a`` is a contribution to ``n`` that adds into zeros, else None."""
    spec = REGISTRY.get(a.op)
    if spec is None or spec.shown is None or a.shape != n.shape:
        return None
    if a is not n and (a.id in chosen or eff[a.id] != 1):
        return None
    shown = spec.shown(a, written_dropped(a) if a.op == "pad" else ())
    return shown if shown.into else None


def _adds(a: Node, shown, ref) -> tuple:
    """``(index, rhs)`` of the ``+=`` line of contribution ``a``."""
    if shown.index:
        return shown.index, from_node(a.inputs[0], ref)
    sub = [from_node(i, ref) for i in a.inputs]
    return (), shown_term(a, sub, shown)


def _accumulations(n: Node, chosen: set, eff: dict, ref):
    """``(dense, [(index, rhs), ...])`` when ``n`` is a sum with contributions that add
    into zeros (``dense``: the term of the others, None when there are none), else None."""
    if n.op == "fused":
        return _fused_accumulations(n, chosen, eff, ref)
    leaves: list[Node] = []

    def walk(m: Node) -> None:
        if m.op == "add" and m.shape == n.shape and (
                m is n or (m.id not in chosen and eff[m.id] == 1)):
            for i in m.inputs:
                walk(i)
        else:
            leaves.append(m)

    walk(n)
    adds, dense = [], None
    for leaf in leaves:
        shown = _into(leaf, n, chosen, eff)
        if shown is not None:
            adds.append(_adds(leaf, shown, ref))
        else:
            t = from_node(leaf, ref)
            dense = t if dense is None else Term("add", (dense, t), "+")
    return (dense, adds) if adds else None


def _fused_accumulations(n: Node, chosen: set, eff: dict, ref):
    """As :func:`_accumulations` for a fused region whose expression is a sum."""
    expr = n.attr("expr")
    terms = expr.as_ordered_terms() if expr.is_Add else [expr]
    adds, rest = [], []
    for t in terms:
        shown = None
        if (t.is_Symbol and t.name.startswith("x") and t.name[1:].isdigit()
                and sum(u.has(t) for u in terms) == 1):
            shown = _into(n.inputs[int(t.name[1:])], n, chosen, eff)
        if shown is not None:
            adds.append(_adds(n.inputs[int(t.name[1:])], shown, ref))
        else:
            rest.append(t)
    if not adds:
        return None
    dense = None
    if rest:
        leaves = {f"x{k}": (from_node(i, ref), scalarish(i)) for k, i in enumerate(n.inputs)}
        dense = from_sympy(sp.Add(*rest), leaves)
    return dense, adds
