"""Graphviz pictures of graphs: DOT text, rendered to SVG/PNG when ``dot`` is installed
(else drawn with matplotlib, see :mod:`adjit.show.drawing`).

Forward values are white, adjoint values (error signals and what computes them) are
red-tinted, inputs blue, parameters yellow.  A ``fused`` node is drawn as a green
cluster holding its expression tree, so the regions the fuse pass merged stay visible.
Node ids are positions in the graph's order, so the text is stable from run to run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import sympy as sp

from ..ir import AdjitError, Graph, Node, shape_str
from ..ops.registry import REGISTRY
from .equations import stage_graphs
from .lines import plan
from .names import INVISIBLE, Naming
from .render import number
from .terms import record_shown

GRAPHVIZ_HINT = ("Graphviz's `dot` program is not on PATH. Install it with `sudo apt install "
                 "graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS); `pip install "
                 "graphviz` is not enough, it only wraps the program. Write `-o out.dot` to get "
                 "the DOT text without it.")
MATPLOTLIB_HINT = (" Or `pip install matplotlib` (the `plot` extra) for a plainer picture drawn "
                   "without Graphviz.")
FALLBACK_NOTE = ("adjit: Graphviz's `dot` is not installed, so matplotlib drew this picture; "
                 "Graphviz lays graphs out better: `sudo apt install graphviz` (Debian/Ubuntu) "
                 "or `brew install graphviz` (macOS).")
_STYLE = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#dbe9fb"',
    "param": 'shape=box, style="rounded,filled", fillcolor="#fff2c6"',
    "const": 'shape=plaintext, fontsize=10',
    "small": 'shape=box, fontsize=9, height=0.25, color="#999999", fontcolor="#555555"',
    "forward": 'shape=ellipse, style=filled, fillcolor="#ffffff"',
    "adjoint": 'shape=ellipse, style=filled, fillcolor="#fbe3e1", color="#b03a2e"',
}
_LEGEND = ("blue: inputs · yellow: parameters · white: forward values · red: adjoint values "
           "(error signals) · green: fused regions · double border: outputs")
def _ordered(n: Node) -> bool:
    """Whether a picture numbers the node's operands (their order matters)."""
    spec = REGISTRY.get(n.op)
    return spec is not None and len(n.inputs) >= 2 and not spec.commutative


_SYMPY_OPS = {"Add": "+", "Mul": "×", "Pow": "pow", "log": "ln", "real_log": "ln",
              "real_pow": "pow", "real_sqrt": "sqrt", "ieee_eq": "Equality",
              "ieee_ne": "Unequality", "ieee_lt": "StrictLessThan", "ieee_le": "LessThan",
              "ieee_gt": "StrictGreaterThan", "ieee_ge": "GreaterThan",
              "ieee_zero": "x−x", "ieee_div": "÷", "real_sign": "sign"}


class GraphvizMissing(AdjitError):
    """Rendering needs Graphviz's ``dot`` program (or matplotlib), and neither is installed."""


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(graph: Graph, title: str | None = None, forward=None) -> str:
    """DOT text for one graph (``forward`` as for :class:`~adjit.show.names.Naming`)."""
    naming = plan(graph, forward=forward).naming     # the names the equations use (ȳ, v1)
    ids = {n.id: f"n{k}" for k, n in enumerate(graph.order())}
    outs = {o.id for o in graph.outputs}
    label = f"{title or graph.stage}\n{_LEGEND}"
    lines = ["digraph adjit {", '  graph [rankdir=TB, fontname="Helvetica", fontsize=12, '
             f'label={_quote(label)}, labelloc=t];',
             '  node [fontname="Helvetica", fontsize=11];', '  edge [color="#555555"];']
    for n in graph.order():
        nid = ids[n.id]
        if n.op == "fused":
            lines += _fused_cluster(n, nid, ids, naming, n.id in outs)
            continue
        lines.append(f"  {nid} [label={_quote(_label(n, naming))}, {_style(n, naming)}"
                     f"{', peripheries=2' if n.id in outs else ''}];")
        for k, i in enumerate(n.inputs):
            slot = f" [label={_quote(str(k))}, fontsize=9]" if _ordered(n) else ""
            lines.append(f"  {ids[i.id]} -> {nid}{slot};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _style(n: Node, naming: Naming) -> str:
    if n.op in ("input", "param", "const"):
        return _STYLE[n.op]
    if n.op in INVISIBLE or n.op == "batch_size":
        return _STYLE["small"]
    return _STYLE["adjoint" if naming.is_backward(n) else "forward"]


def _label(n: Node, naming: Naming) -> str:
    if n.op in ("input", "param"):
        return f"{n.name}\n{shape_str(n.shape)}"
    if n.op == "const":
        return repr(n.attr("value"))
    if n.op == "batch_size":
        return "B"
    name = naming.name(n)
    head = f"{name.unicode()} = " if name is not None else ""
    return f"{head}{op_label(n)}\n{shape_str(n.shape)}"


def op_label(n: Node) -> str:
    """The op as a picture names it, with the attributes that matter: ``slice [:, 0:1]``,
    ``take axis 0``, ``concatenate axis 1``, ``philox uniform stream 1``."""
    spec = REGISTRY.get(n.op)
    if spec is None:
        return n.op
    shown = record_shown(n)
    if shown is not None:
        words = [n.op] + ([shown.name] if shown.name not in (None, n.op, spec.shown_as) else [])
        if shown.index and not shown.into and not any(isinstance(p, int) for p in shown.index):
            words.append("[" + ", ".join(shown.index) + "]")
        if shown.note:
            words.append(shown.note)
        return " ".join(words)
    return n.op


def _fused_cluster(n: Node, nid: str, ids: dict, naming: Naming, is_output: bool) -> list[str]:
    """The fused node as a cluster of its expression tree; the root keeps the node's id."""
    backward = naming.is_backward(n)
    name = naming.name(n)
    members = n.attr("members")
    title = _quote(f"fused region ({members} op{'s' if members != 1 else ''})")
    lines = [f"  subgraph cluster_{nid} {{",
             f'    label={title}; '
             'style="rounded,filled"; fillcolor="#e6f4e4"; color="#4f8a4b"; fontsize=10;']
    counter, external = [0], []

    def walk(e, root: bool) -> str:
        if e.is_Symbol:
            return ids[n.inputs[int(e.name[1:])].id]
        me = nid if root else f"{nid}_{counter[0]}"
        counter[0] += 1
        op = _SYMPY_OPS.get(type(e).__name__, type(e).__name__)
        numbers = [number(int(a) if a.is_Integer else float(a)) for a in e.args if a.is_Number]
        label = op + ("" if not numbers else " " + ", ".join(numbers))
        if root:
            head = f"{name.unicode()} = " if name is not None else ""
            label = f"{head}{label}\n{shape_str(n.shape)}"
        style = _STYLE["adjoint" if backward else "forward"]
        extra = ", peripheries=2" if root and is_output else ""
        lines.append(f"    {me} [label={_quote(label)}, {style}{extra}];")
        for a in e.args:
            if not a.is_Number:
                # an edge inside the cluster would pull an outside node into it
                (external if a.is_Symbol else lines).append(f"    {walk(a, False)} -> {me};")
        return me

    expr = n.attr("expr")
    if expr.is_Symbol or expr.is_Number:        # a copy or a constant: one node
        expr = sp.Function("copy")(expr)
    walk(expr, True)
    return lines + ["  }"] + external


def dot(target, stage: str = "simplified") -> str:
    """DOT text for a compiled function's ``stage`` (traced, simplified or a pass name),
    or for a Graph, a node or a list of nodes."""
    return "".join(graph_dot(g, f"{title} ({len(g)} nodes)", fw)
                   for title, g, fw in stage_graphs(target, stage))


def render(dot_text: str, path: str) -> str:
    """Write ``dot_text`` to ``path``: ``.dot``/``.gv`` as text, ``.svg``/``.png``/``.pdf``
    through Graphviz.  Without Graphviz the picture is drawn with matplotlib instead (a
    note on stderr says how to install Graphviz); without either, raises
    :class:`GraphvizMissing` with the install hint."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(dot_text)
        return path
    if ext not in ("svg", "png", "pdf"):
        raise ValueError(f"cannot write {path!r}: use a .svg, .png, .pdf or .dot file name")
    exe = shutil.which("dot")
    if exe is None:
        picture = _without_graphviz(dot_text, ext)
        if picture is None:
            raise GraphvizMissing(GRAPHVIZ_HINT + MATPLOTLIB_HINT)
        with open(path, "w" if ext == "svg" else "wb", **_text(ext)) as fh:
            fh.write(picture)
        return path
    done = subprocess.run([exe, f"-T{ext}", "-o", path], input=dot_text.encode("utf-8"),
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        raise AdjitError(f"dot failed on {path!r}: {done.stderr.decode(errors='replace').strip()}")
    return path


def svg(target, stage: str = "simplified") -> str | None:
    """SVG text of the picture (for Jupyter): Graphviz's, else matplotlib's drawing, else
    None when neither is installed."""
    exe = shutil.which("dot")
    if exe is None:
        return _without_graphviz(dot(target, stage), "svg")
    done = subprocess.run([exe, "-Tsvg"], input=dot(target, stage).encode("utf-8"),
                          capture_output=True, timeout=120)
    return done.stdout.decode("utf-8") if done.returncode == 0 else None


def _text(ext: str) -> dict:
    return {"encoding": "utf-8"} if ext == "svg" else {}


_noted = False


def _without_graphviz(dot_text: str, fmt: str):
    """The picture drawn by :mod:`adjit.show.drawing`, or None without matplotlib.  Says
    once per process, on stderr, that Graphviz draws it better."""
    global _noted
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .drawing import NotAdjitDot, draw
    try:
        picture = draw(dot_text, fmt)
    except NotAdjitDot as e:
        raise GraphvizMissing(f"{GRAPHVIZ_HINT} (matplotlib can only draw DOT that adjit "
                              f"wrote: {e})") from None
    if not _noted:
        _noted = True
        print(FALLBACK_NOTE, file=sys.stderr)
    return picture
