"""Backward equations in backprop notation: Unicode, LaTeX or Markdown.

>>> import adjit as aj
>>> x1, x2 = aj.input("x1", ()), aj.input("x2", ())
>>> f = aj.log(x1) + x1 * x2 - aj.sin(x2)
>>> aj.show.name_nodes({"f": f})
1
>>> print(aj.show.equations([f] + aj.grad(f, [x1, x2])).unicode)  # doctest: +NORMALIZE_WHITESPACE
equations (as traced)
inputs  x1 (), x2 ()
forward
  f = ln(x1) + x1 x2 − sin(x2)          ()
backward
  f̄ = 1                                 ()
  x̄2 = −f̄ cos(x2) + f̄ x1               ()
  x̄1 = f̄ x2 + f̄ / x1                  ()
"""
from __future__ import annotations

import unicodedata
from typing import Sequence

from ..ir import Graph, Node, Staged, shape_str
from .lines import Line, Plan, plan
from .names import Naming
from .render import Printer

FORMS = ("unicode", "latex", "markdown")
_SHAPE_COLUMN = 44


def width(text: str) -> int:
    """Display width: combining marks (the bars) take no column."""
    return sum(0 if unicodedata.combining(c) else 1 for c in text)


def stage_graphs(target, stage: str = "traced") -> list[tuple[str, Graph, list | None]]:
    """``(title, graph, forward)`` for a Compiled (``stage``: traced, simplified, both, or
    a pass name), a Graph, a node or a list of nodes.  ``forward`` lists the positions of
    forward outputs, read off the traced graph: after passes one node can be both a
    forward value and an error signal, so a later stage cannot tell by itself."""
    if isinstance(target, Node):
        target = [target]
    if isinstance(target, (list, tuple)):
        target = Graph(list(target), "traced")
    if isinstance(target, Graph):
        return [(_title(target.stage), target, None)]
    if not isinstance(target, Staged):
        raise TypeError(f"cannot show {type(target).__name__}; pass a compiled function, a Graph "
                        f"or nodes")
    if stage == "both":
        return stage_graphs(target, "traced") + stage_graphs(target, "simplified")
    traced = target.stages[0]
    naming = Naming(traced)
    forward = [k for k, o in enumerate(traced.outputs)
               if o.id not in naming.backward and o.id not in naming.tangent]
    if stage == "simplified":
        passes = " · ".join(g.stage for g in target.stages[1:]) or "no passes"
        return [(f"simplified, after {passes}", target.graph, forward)]
    by_name = {g.stage: g for g in target.stages}
    if stage not in by_name:
        raise ValueError(f"unknown stage {stage!r}; choose traced, simplified, both or one of "
                         f"{', '.join(by_name)}")
    return [(_title(stage), by_name[stage], forward)]


def _title(stage: str) -> str:
    return "as traced" if stage == "traced" else f"after {stage}"


class Equations:
    """Equations of one or more graphs; ``str()`` is Unicode, ``.latex`` and ``.markdown``
    the other forms.  Displays as LaTeX in Jupyter."""

    def __init__(self, plans: Sequence[tuple[str, Plan]]):
        self.plans = list(plans)

    def format(self, form: str = "unicode") -> str:
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
        return getattr(self, form)

    @property
    def unicode(self) -> str:
        return "\n\n".join(_unicode(t, p) for t, p in self.plans)

    @property
    def latex(self) -> str:
        return "\n\n".join(_latex(t, p, comments=True) for t, p in self.plans)

    @property
    def markdown(self) -> str:
        return "\n\n".join(_markdown(t, p) for t, p in self.plans)

    def __str__(self) -> str:
        return self.unicode

    def __repr__(self) -> str:
        return self.unicode

    def _repr_latex_(self) -> str:
        return "\n".join("$$" + _latex(t, p, comments=False) + "$$" for t, p in self.plans)

    def _repr_markdown_(self) -> str:
        return self.markdown


def equations(target, stage: str = "traced") -> Equations:
    """The forward, backward and tangent equations of ``target`` in backprop notation.

    ``target`` is a compiled function (``stage`` = 'traced', 'simplified', 'both' or a
    pass name), a Graph, a node or a list of nodes.  Error signals carry a bar (v̄),
    tangents (forward mode, :func:`adjit.jvp`) a dot (v̇), values the user did not name
    get generated names (v1, v2, ... forward; a1, ... adjoint; t1, ... tangent), and each
    line ends with the value's shape.
    """
    return Equations([(title, plan(g, forward=fw)) for title, g, fw in stage_graphs(target, stage)])


# --- forms ---------------------------------------------------------------------------------
def _sections(p: Plan):
    for section in p.naming.sections:
        lines = [ln for ln in p.lines if ln.section == section]
        if lines:
            yield section, lines


def _leaves(p: Plan, op: str, latex: bool):
    ns = [n for n in p.given if n.op == op]
    return [(p.naming.user(n).latex() if latex else n.name, shape_str(n.shape)) for n in ns]


def _unicode(title: str, p: Plan) -> str:
    u = Printer(latex=False)
    out = [f"equations ({title})"]
    for op, label in (("input", "inputs"), ("param", "params")):
        leaves = _leaves(p, op, latex=False)
        if leaves:
            out.append(f"{label}  " + ", ".join(f"{n} {s}" for n, s in leaves))
    rows = [(ln, u(ln.at) if ln.at else ln.lhs.unicode(), u(ln.rhs)) for ln in p.lines]
    # an indexed accumulation (x̄[::−1, 1:3] += z̄) does not widen the names' column
    lhs_w = max((width(lhs) for ln, lhs, _ in rows if ln.at is None), default=0)
    for section, lines in _sections(p):
        out.append(section)
        for ln, lhs, rhs in rows:
            if ln not in lines:
                continue
            eq = f"  {lhs}{' ' * max(0, lhs_w - width(lhs))} {ln.op} {rhs}"
            pad = max(2, _SHAPE_COLUMN - width(eq))
            out.append(f"{eq}{' ' * pad}{shape_str(ln.node.shape)}")
    return "\n".join(out)


def latex_space(shape: tuple) -> str:
    """(None, 5) -> \\mathbb{R}^{B \\times 5}; () -> \\mathbb{R}."""
    if not shape:
        return r"\mathbb{R}"
    return r"\mathbb{R}^{" + r" \times ".join("B" if d is None else str(d) for d in shape) + "}"


def _lhs_latex(ln: Line, lx: Printer) -> str:
    return lx(ln.at) if ln.at is not None else ln.lhs.latex()


def _latex_line(ln: Line, lx: Printer) -> str:
    if ln.op != "=":            # x̄ += ...: the += under the other lines' =
        return f"{_lhs_latex(ln, lx)} &\\mathrel{{+}}= {lx(ln.rhs)} && \\in {latex_space(ln.node.shape)}"
    return f"{ln.lhs.latex()} &= {lx(ln.rhs)} && \\in {latex_space(ln.node.shape)}"


def _latex(title: str, p: Plan, comments: bool) -> str:
    lx = Printer(latex=True)
    out = []
    if comments:
        given = "; ".join(f"{label} " + ", ".join(f"{n} {s}" for n, s in _leaves(p, op, False))
                          for op, label in (("input", "inputs"), ("param", "params"))
                          if _leaves(p, op, False))
        out.append(f"% adjit equations ({title}); {given}")
    out.append(r"\begin{aligned}")
    for section, lines in _sections(p):
        out.append(rf"& \textbf{{{section}}} \\")
        out.extend(_latex_line(ln, lx) + r" \\" for ln in lines)
    out.append(r"\end{aligned}")
    return "\n".join(out)


def _markdown(title: str, p: Plan) -> str:
    lx = Printer(latex=True)

    def math(text: str) -> str:
        return "$" + text.replace(r"\left|", r"\left\vert ").replace(r"\right|", r"\right\vert ") + "$"

    given = " · ".join(f"{label} " + ", ".join(f"{math(n)} {s}" for n, s in _leaves(p, op, True))
                       for op, label in (("input", "inputs"), ("param", "parameters"))
                       if _leaves(p, op, True))
    out = [f"**Equations ({title})** · {given}" if given else f"**Equations ({title})**"]
    for section, lines in _sections(p):
        out += ["", f"| {section} | shape |", "|---|---|"]
        out.extend(f"| {math(_lhs_latex(ln, lx) + _latex_op(ln) + lx(ln.rhs))} | "
                   f"{shape_str(ln.node.shape)} |" for ln in lines)
    return "\n".join(out)


def _latex_op(ln: Line) -> str:
    return " = " if ln.op == "=" else r" \mathrel{+}= "
