"""Display names: the user's names, bars for error signals, readable generated names.

A node is shown by, in order of preference: its user name (``aj.input/param(name)`` or a
model-file variable, see :func:`adjit.show.name_nodes`); a bar over the name of the
primal value it is the error signal of (``meta['bars']``, set by :func:`adjit.grad`);
or a generated name -- ``v1, v2, ...`` for forward values (the lecture's evaluation
trace) and ``a1, a2, ...`` for other adjoint temporaries.  Generated names never
collide with a user name in the same graph.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from ..ir import Graph, Node, ancestors

#: ops that only move or convert values; equations show their operand
INVISIBLE = ("broadcast", "reshape", "cast")
_MACRON, _OVERLINE = "\u0304", "\u0305"
_SPLIT = re.compile(r"^(?P<base>[^\W\d_]+?)(?P<num>\d*)$")


@dataclass(frozen=True)
class Name:
    """A printable name: ``base`` letters, an optional numeric and text subscript, a bar."""

    base: str
    num: str = ""
    sub: str = ""
    bar: bool = False

    @classmethod
    def parse(cls, text: str) -> "Name":
        """``'W1'`` -> W with subscript 1, ``'L_reg'`` -> L with subscript reg."""
        head, _, sub = text.partition("_")
        m = _SPLIT.match(head)
        if not m or not head:
            return cls(text)
        return cls(m["base"], m["num"], sub)

    def barred(self) -> "Name":
        return Name(self.base, self.num, self.sub, True)

    @property
    def plain(self) -> str:
        """The identifier as typed (no bar): what collision checks compare."""
        return self.base + self.num + (f"_{self.sub}" if self.sub else "")

    def unicode(self) -> str:
        base = self.base
        if self.bar:
            mark = _MACRON if len(base) == 1 else _OVERLINE
            base = "".join(c + mark for c in base)
        # NFC: a bar over y, a, e, ... becomes the precomposed letter (ȳ), as typed text has it
        return unicodedata.normalize("NFC", base + self.num + (f"_{self.sub}" if self.sub else ""))

    def latex(self) -> str:
        base = self.base if len(self.base) == 1 else rf"\mathrm{{{self.base}}}"
        if self.bar:
            base = rf"\bar{{{base}}}" if len(self.base) == 1 else rf"\overline{{{base}}}"
        subs = [s for s in (self.num, rf"\mathrm{{{self.sub}}}" if self.sub else "") if s]
        return base + (f"_{{{','.join(subs)}}}" if subs else "")


class Naming:
    """Who is who in one graph: user names, error signals (bars) and generated names.

    ``bars[node.id]`` lists the primal nodes whose error signal ``node`` is.  When passes
    merged values, several nodes may claim one primal; an adjoint node made by
    :func:`adjit.grad` wins over a forward node, then the later node.
    """

    def __init__(self, graph: Graph, forward: Sequence[int] | None = None):
        """``forward``: positions of the graph's outputs that are forward values (by
        default those not computed from an error signal)."""
        self.graph = graph
        self.members = {n.id for n in graph.order()}
        extra = getattr(graph, "extra_bars", {})   # set by passes on nodes they did not make
        claimed = {n.id: list(n.meta.get("bars", ())) + list(extra.get(n.id, ()))
                   for n in graph.order()}
        claims: dict[int, list[Node]] = {}
        for n in graph.order():
            for p in claimed[n.id]:
                claims.setdefault(p.id, []).append(n)
        winner = {p: max(ns, key=lambda n: (n.meta.get("role") == "adjoint", n.id))
                  for p, ns in claims.items()}
        self.bars: dict[int, list[Node]] = {}
        for n in graph.order():
            mine = []
            for p in claimed[n.id]:
                if winner[p.id] is n and all(p is not q for q in mine):
                    mine.append(p)
            if mine:
                self.bars[n.id] = mine
        # backward: made by grad, an error signal, or computed from one -- unless a forward
        # output needs it (after passes a value can be both, e.g. y - t is the loss's and ȳ)
        self.backward: set[int] = set()
        for n in graph.order():
            if (n.meta.get("role") == "adjoint" or n.id in self.bars
                    or any(i.id in self.backward for i in n.inputs)):
                if n.op not in ("input", "param"):
                    self.backward.add(n.id)
        if forward is None:
            forward = [k for k, o in enumerate(graph.outputs) if o.id not in self.backward]
        self.backward -= {n.id for n in ancestors([graph.outputs[k] for k in forward])}
        self.taken = {Name.parse(n.name).plain for n in graph.order() if n.name}
        self.generated: dict[int, Name] = {}
        self._counters = {"v": 0, "a": 0}

    # -- questions ------------------------------------------------------------------------
    def user(self, node: Node) -> Name | None:
        return Name.parse(node.name) if node.name else None

    def is_backward(self, node: Node) -> bool:
        return node.id in self.backward

    def primal(self, node: Node, named_only: bool = False) -> Node | None:
        """The primal ``node`` is the error signal of (a named one first), else None."""
        primals = self.bars.get(node.id, ())
        for p in primals:
            if p.name:
                return p
        if named_only:
            return None
        # an unnamed primal the passes removed has no line to refer to; prefer a visible op
        present = [p for p in primals if p.id in self.members]
        return next((p for p in present if p.op not in INVISIBLE), present[0] if present else None)

    def name(self, node: Node) -> Name | None:
        """The node's display name if it has one without generating (user name, or bar)."""
        if node.name:
            return self.user(node)
        p = self.primal(node)
        if p is not None:
            base = self.name(p) or self.generated.get(p.id)
            return base.barred() if base is not None else None
        return self.generated.get(node.id)

    def generate(self, node: Node) -> Name:
        """The node's name, generating one (``v3`` forward, ``a2`` adjoint) if needed."""
        known = self.name(node)
        if known is not None:
            return known
        p = self.primal(node)
        if p is not None:                     # the bar of an unnamed primal: name the primal
            return self.generate(p).barred()
        prefix = "a" if self.is_backward(node) else "v"
        while True:
            self._counters[prefix] += 1
            candidate = Name(prefix, str(self._counters[prefix]))
            if candidate.plain not in self.taken:
                break
        self.taken.add(candidate.plain)
        self.generated[node.id] = candidate
        return candidate
