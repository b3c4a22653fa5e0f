"""A worked example: the primal (forward) trace, then the adjoint trace, with numbers.

Every forward operation, every error signal and every tangent (forward mode,
:func:`adjit.jvp`: the tangent trace) gets a row ``name = expression = value``, like the
lecture's evaluation trace.  The numbers come from the numpy interpreter (the
oracle) run on the traced graph, so they are exactly what the graph computes.

>>> import adjit as aj
>>> x1, x2 = aj.input("x1", ()), aj.input("x2", ())
>>> f = aj.log(x1) + x1 * x2 - aj.sin(x2)
>>> t = aj.show.trace([f] + aj.grad(f, [x1, x2]), {"x1": 2.0, "x2": 5.0})
>>> [round(float(t.value(n)), 3) for n in ("x̄1", "x̄2")]
[5.5, 1.716]
"""
from __future__ import annotations

import numpy as np

from ..ir import shape_str
from .equations import stage_graphs, width
from .lines import Plan, plan
from .render import Printer, number

_ROW_WIDTH = 36
_TITLES = {"forward": "primal trace", "backward": "adjoint trace", "tangent": "tangent trace"}
_ABOUT = {"forward": "forward", "backward": "backward", "tangent": "forward mode"}


def format_value(value) -> str:
    """Scalars to 4 significant digits; small arrays in full; larger ones summarized."""
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        arr = arr.astype(int)
    if arr.ndim == 0:
        return number(arr.item() if arr.dtype.kind in "iu" else _round(arr.item()))
    flat = arr.reshape(-1)
    if flat.size <= 4:
        return "[" + ", ".join(format_value(v) for v in flat) + "]"
    head = ", ".join(format_value(v) for v in flat[:3])
    return f"[{head}, …] {shape_str(arr.shape)}"


def _tex(value) -> str:
    text = format_value(value).replace("−", "-").replace("…", r"\ldots")
    return text if text[:1] != "[" else rf"\text{{{text}}}".replace(r"\ldots", "...")


def _round(v: float):
    text = f"{v:.4g}"
    return float(text) if "e" in text or "." in text or "n" in text else int(float(text))


class Trace:
    """The rows of a worked example; ``str()`` is the Unicode table, ``.markdown`` a table."""

    def __init__(self, plan_: Plan, values: dict, env: dict):
        self.plan, self.inputs, self.env = plan_, values, env

    def _entries(self, section: str):
        """``(given leaf, None, value)`` for the leaves ('forward' only), then
        ``(None, trace line, value)``: what every form prints, in order."""
        if section == "forward":
            for leaf in self.plan.given:
                yield leaf, None, self.env[leaf.id]
        for ln in self.plan.lines:
            if ln.section == section:
                yield None, ln, self.env[ln.node.id]

    def _shown(self) -> list[str]:
        """The sections printed: forward and backward always (as before forward mode),
        the tangent trace when the graph has tangents."""
        has = {ln.section for ln in self.plan.lines}
        return [s for s in self.plan.naming.sections if s != "tangent" or s in has]

    def rows(self, section: str):
        """``(name, expression, value)`` rows of 'forward' (leaves first), 'backward' or
        'tangent'."""
        u = Printer()
        for leaf, ln, v in self._entries(section):
            yield (leaf.name, "", v) if leaf is not None else (ln.lhs.unicode(), u(ln.rhs), v)

    def value(self, name: str):
        """The value of the row named ``name`` (e.g. ``'x̄1'``)."""
        for section in self.plan.naming.sections:
            for n, _, v in self.rows(section):
                if n == name:
                    return v
        raise KeyError(f"no row named {name!r} in this trace")

    @property
    def unicode(self) -> str:
        at = ", ".join(f"{k} = {format_value(v)}" if np.ndim(v) == 0
                       else f"{k} {shape_str(np.shape(v))}" for k, v in self.inputs.items())
        out = [f"worked example at {at}"]
        for section in self._shown():
            out.append(f"{_TITLES[section]} ({_ABOUT[section]})")
            for name, expr, v in self.rows(section):
                eq = f"  {name} = {expr}" if expr else f"  {name}"
                out.append(f"{eq}{' ' * max(2, _ROW_WIDTH - width(eq))}= {format_value(v)}")
        return "\n".join(out)

    @property
    def markdown(self) -> str:
        lx = Printer(latex=True)
        out = []
        for section in self._shown():
            out += [f"| {_TITLES[section]} | value |", "|---|---|"]
            for leaf, ln, v in self._entries(section):
                eq = (self.plan.naming.user(leaf).latex() if leaf is not None
                      else f"{ln.lhs.latex()} = {lx(ln.rhs)}")
                out.append(f"| ${eq}$ | {format_value(v)} |")
            out.append("")
        return "\n".join(out).rstrip()

    @property
    def latex(self) -> str:
        lx = Printer(latex=True)
        out = [r"\begin{aligned}"]
        for section in self._shown():
            out.append(rf"& \textbf{{{_TITLES[section]}}} \\")
            for leaf, ln, v in self._entries(section):
                eq = (f"{self.plan.naming.user(leaf).latex()} &= " if leaf is not None
                      else f"{ln.lhs.latex()} &= {lx(ln.rhs)} && = ")
                out.append(rf"{eq}{_tex(v)} \\")
        return "\n".join(out + [r"\end{aligned}"])

    def format(self, form: str = "unicode") -> str:
        if form not in ("unicode", "latex", "markdown"):
            raise ValueError(f"unknown form {form!r}; choose unicode, latex or markdown")
        return getattr(self, form)

    def __str__(self) -> str:
        return self.unicode

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return self.markdown


def trace(target, values: dict, stage: str = "traced") -> Trace:
    """The worked example of ``target`` (a compiled function, Graph, node or nodes) at
    ``values`` (a dict by input name, like a call's keyword arguments)."""
    from ..compiled import compile as aj_compile
    _, graph, forward = stage_graphs(target, stage)[0]
    p = plan(graph, mode="trace", forward=forward)
    nodes = list(p.given) + [ln.node for ln in p.lines if not ln.alias]
    run = aj_compile(nodes, backend="interp", passes=())
    results = run(**values)
    env = {n.id: v for n, v in zip(nodes, results)}
    return Trace(p, dict(values), env)
