"""Display names: the user's names, bars for error signals, dots for tangents, readable
generated names.

A node is shown by, in order of preference: its user name (``aj.input/param(name)`` or a
model-file variable, see :func:`adjit.show.name_nodes`); a bar over the name of the
primal value it is the error signal of (``meta['bars']``, set by :func:`adjit.grad`);
a dot over the name of the primal value it is the tangent of (``meta['dots']``, set by
:func:`adjit.jvp`: Newton's notation, ż = ẋ W + x Ẇ); or a generated name -- ``v1, v2,
...`` for forward values (the lecture's evaluation trace), ``a1, a2, ...`` for other
adjoint temporaries and ``t1, t2, ...`` for other tangent temporaries.  Generated names
never collide with a user name in the same graph.

Marks stack: the tangent of the error signal z̄ (forward-over-reverse, :func:`adjit.hvp`)
is the dot over z̄, written z̄̇ (``\\dot{\\bar{z}}``): read from the letter outwards, "the
tangent of the error signal of z".
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from ..ir import Graph, Node, ancestors

#: ops that only move or convert values; equations show their operand
INVISIBLE = ("broadcast", "reshape", "cast")
_MACRON, _OVERLINE, _DOT = "\u0304", "\u0305", "\u0307"
_SPLIT = re.compile(r"^(?P<base>[^\W\d_]+?)(?P<num>\d*)$")


@dataclass(frozen=True)
class Name:
    """A printable name: ``base`` letters, an optional numeric and text subscript, and
    marks over the letters: ``marks`` is a string of ``'b'`` (bar) and ``'d'`` (dot),
    innermost first (``'bd'``: the dot over the bar, the tangent of an error signal)."""

    base: str
    num: str = ""
    sub: str = ""
    marks: str = ""

    @classmethod
    def parse(cls, text: str) -> "Name":
        """``'W1'`` -> W with subscript 1, ``'L_reg'`` -> L with subscript reg."""
        head, _, sub = text.partition("_")
        m = _SPLIT.match(head)
        if not m or not head:
            return cls(text)
        return cls(m["base"], m["num"], sub)

    def barred(self) -> "Name":
        return Name(self.base, self.num, self.sub, self.marks + "b")

    def dotted(self) -> "Name":
        return Name(self.base, self.num, self.sub, self.marks + "d")

    @property
    def bar(self) -> bool:
        return "b" in self.marks

    @property
    def dot(self) -> bool:
        return "d" in self.marks

    @property
    def plain(self) -> str:
        """The identifier as typed (no bar): what collision checks compare."""
        return self.base + self.num + (f"_{self.sub}" if self.sub else "")

    def unicode(self) -> str:
        base = self.base
        for m in self.marks:
            if m == "b":           # a bar over every letter: one line over a long name
                mark = _MACRON if len(self.base) == 1 else _OVERLINE
                base = "".join(c + mark for c in base) if len(self.base) > 1 else base + mark
            else:                  # one dot, over the first letter (dots on each would read as
                i = 1              # umlauts); after that letter's other marks
                while i < len(base) and unicodedata.combining(base[i]):
                    i += 1
                base = base[:i] + _DOT + base[i:]
        # NFC: a bar over y, a, e, ... becomes the precomposed letter (ȳ, ẋ), as typed text has it
        return unicodedata.normalize("NFC", base + self.num + (f"_{self.sub}" if self.sub else ""))

    def latex(self) -> str:
        base = self.base if len(self.base) == 1 else rf"\mathrm{{{self.base}}}"
        for m in self.marks:
            if m == "b":
                base = rf"\bar{{{base}}}" if len(self.base) == 1 else rf"\overline{{{base}}}"
            else:
                base = rf"\dot{{{base}}}"
        subs = [s for s in (self.num, rf"\mathrm{{{self.sub}}}" if self.sub else "") if s]
        return base + (f"_{{{','.join(subs)}}}" if subs else "")


def _resolve(graph: Graph, key: str, extra: dict, role: str) -> dict[int, list[Node]]:
    """``{node id: [primals]}`` from ``meta[key]`` (bars or dots) and a pass's extra
    annotations; a primal several nodes claim goes to one: a node of ``role`` first, then
    the later node."""
    claimed = {n.id: list(n.meta.get(key, ())) + list(extra.get(n.id, ()))
               for n in graph.order()}
    claims: dict[int, list[Node]] = {}
    for n in graph.order():
        for p in claimed[n.id]:
            claims.setdefault(p.id, []).append(n)
    winner = {p: max(ns, key=lambda n: (n.meta.get("role") == role, n.id))
              for p, ns in claims.items()}
    out: dict[int, list[Node]] = {}
    for n in graph.order():
        mine = []
        for p in claimed[n.id]:
            if winner[p.id] is n and all(p is not q for q in mine):
                mine.append(p)
        if mine:
            out[n.id] = mine
    return out


class Naming:
    """Who is who in one graph: user names, error signals (bars), tangents (dots) and
    generated names.

    ``bars[node.id]`` lists the primal nodes whose error signal ``node`` is, ``dots[node.id]``
    those whose tangent it is.  When passes merged values, several nodes may claim one
    primal; an adjoint node made by :func:`adjit.grad` (a tangent node made by
    :func:`adjit.jvp`) wins over a forward node, then the later node.

    ``seeds[node.id]`` lists the variables whose tangent the user gave as ``node`` (the
    ``tangents`` of :func:`adjit.jvp`): the tangent equations call it ẇ.
    """

    def __init__(self, graph: Graph, forward: Sequence[int] | None = None):
        """``forward``: positions of the graph's outputs that are forward values (by
        default those computed from neither an error signal nor a tangent)."""
        self.graph = graph
        self.members = {n.id for n in graph.order()}
        self.bars = _resolve(graph, "bars", getattr(graph, "extra_bars", {}), "adjoint")
        self.dots = _resolve(graph, "dots", getattr(graph, "extra_dots", {}), "tangent")
        self.seeds: dict[int, list[Node]] = {}
        for n in graph.order():
            for v, t in n.meta.get("seeds", ()):
                if t.id in self.members and all(v is not q for q in self.seeds.get(t.id, ())):
                    self.seeds.setdefault(t.id, []).append(v)
        for t, vs in self.seeds.items():   # an unnamed seed (2 V, a number) is called ẇ
            if t not in self.dots and t not in self.bars and not self.graph.nx.nodes[t]["node"].name:
                self.dots[t] = list(vs)
        self._classify()
        if forward is None:
            forward = [k for k, o in enumerate(graph.outputs)
                       if o.id not in self.backward and o.id not in self.tangent]
        needed = {n.id for n in ancestors([graph.outputs[k] for k in forward])}
        self.backward -= needed
        self.tangent -= needed
        self.taken = {Name.parse(n.name).plain for n in graph.order() if n.name}
        self.generated: dict[int, Name] = {}
        self._counters = {"v": 0, "a": 0, "t": 0}

    def _classify(self) -> None:
        """backward: made by grad, an error signal, or computed from one; tangent: made by
        jvp, a tangent, or computed from one -- unless a forward output needs it (after
        passes a value can be both, e.g. y - t is the loss's and ȳ).  A value computed
        from both (a pass merged them) goes with the later derivative: the tangent in
        forward-over-reverse (HVP, tangents of error signals), else the error signal."""
        self.backward: set[int] = set()
        self.tangent: set[int] = set()
        mixed: list[Node] = []
        for n in self.graph.order():
            if n.op in ("input", "param"):
                continue
            role = n.meta.get("role")
            if role == "tangent" or n.id in self.dots or n.id in self.seeds:
                self.tangent.add(n.id)
            elif role == "adjoint" or n.id in self.bars:
                self.backward.add(n.id)
            else:
                b = any(i.id in self.backward for i in n.inputs)
                t = any(i.id in self.tangent for i in n.inputs)
                if b and t:
                    mixed.append(n)
                    self.backward.add(n.id)
                elif b:
                    self.backward.add(n.id)
                elif t:
                    self.tangent.add(n.id)
        over_reverse = any(n.meta.get("role") == "tangent" and
                           any(i.id in self.backward for i in n.inputs)
                           for n in self.graph.order())
        #: the sections in the order their values are computed: a JVP of a gradient
        #: (forward-over-reverse, :func:`adjit.hvp`) moves error signals, so its tangents
        #: come after them; a gradient of a JVP reads tangents, so they come first
        self.sections = (("forward", "backward", "tangent") if over_reverse
                         else ("forward", "tangent", "backward"))
        if over_reverse:
            for n in mixed:
                self.backward.discard(n.id)
                self.tangent.add(n.id)

    # -- questions ------------------------------------------------------------------------
    def user(self, node: Node) -> Name | None:
        return Name.parse(node.name) if node.name else None

    def is_backward(self, node: Node) -> bool:
        return node.id in self.backward

    def is_tangent(self, node: Node) -> bool:
        return node.id in self.tangent

    def section(self, node: Node) -> str:
        """'forward', 'backward' or 'tangent'."""
        return ("backward" if node.id in self.backward else
                "tangent" if node.id in self.tangent else "forward")

    def mark(self, node: Node) -> str | None:
        """How ``node`` is named after a primal: 'b' (its error signal), 'd' (its tangent),
        or None."""
        order = ("d", "b") if node.meta.get("role") == "tangent" else ("b", "d")
        for m in order:
            if self._marks(node, m):
                return m
        return None

    def _marks(self, node: Node, m: str) -> list:
        """The primals ``node`` is the error signal ('b') or tangent ('d') of.  A node of
        another graph (the error signal z̄ a JVP of a gradient moved, when only its
        tangent is computed) says so in its own meta."""
        if node.id in self.members:
            return (self.bars if m == "b" else self.dots).get(node.id, [])
        return list(node.meta.get("bars" if m == "b" else "dots", ()))

    def primal(self, node: Node, named_only: bool = False) -> Node | None:
        """The primal ``node`` is the error signal or tangent of (a named one first), else
        None (see :meth:`mark`)."""
        m = self.mark(node)
        primals = () if m is None else self._marks(node, m)
        for p in primals:
            if p.name:
                return p
        if named_only:
            return None
        # an unnamed primal the passes removed has no line to refer to; prefer a visible op
        present = [p for p in primals if p.id in self.members]
        if not present:   # z̄ moved by a JVP of a gradient, absent itself: named after z
            present = [p for p in primals if self.mark(p) is not None]
        return next((p for p in present if p.op not in INVISIBLE), present[0] if present else None)

    def name(self, node: Node) -> Name | None:
        """The node's display name if it has one without generating (user name, or bar)."""
        if node.name:
            return self.user(node)
        p = self.primal(node)
        if p is not None:
            base = self.name(p) or self.generated.get(p.id)
            return self._marked(base, node) if base is not None else None
        return self.generated.get(node.id)

    def _marked(self, base: Name, node: Node) -> Name:
        return base.barred() if self.mark(node) == "b" else base.dotted()

    def generate(self, node: Node) -> Name:
        """The node's name, generating one (``v3`` forward, ``a2`` adjoint) if needed."""
        known = self.name(node)
        if known is not None:
            return known
        p = self.primal(node)
        if p is not None:                     # the bar of an unnamed primal: name the primal
            return self._marked(self.generate(p), node)
        prefix = {"backward": "a", "tangent": "t", "forward": "v"}[self.section(node)]
        while True:
            self._counters[prefix] += 1
            candidate = Name(prefix, str(self._counters[prefix]))
            if candidate.plain not in self.taken:
                break
        self.taken.add(candidate.plain)
        self.generated[node.id] = candidate
        return candidate
