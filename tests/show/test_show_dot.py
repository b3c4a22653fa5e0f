"""Pictures: DOT text (golden files), adjoint nodes tinted, fused regions as clusters."""
from __future__ import annotations

import importlib
import os
import re
import shutil
import struct
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from adjit.ir import Graph
from adjit.show.dot import GraphvizMissing, dot, graph_dot, render
from adjit.show.drawing import NotAdjitDot, layout, parse
from adjit.show.names import Naming
from goldens import MODELS, check_golden, compiled

ADJOINT_FILL = 'fillcolor="#fbe3e1"'
dot_module = importlib.import_module("adjit.show.dot")   # adjit.show.dot is also a function


def test_dot_golden():
    _, f = compiled("logistic")
    check_golden("dot_logistic_simplified.dot", f.dot())
    _, f = compiled("mlp")
    check_golden("dot_mlp_traced.dot", f.dot("traced"))


def test_adjoint_nodes_are_distinguishable():
    _, f = compiled("mlp")
    traced = f.traced
    naming = Naming(traced)
    text = graph_dot(traced)
    tinted = {m for m in re.findall(r"^  (n\d+) \[.*" + re.escape(ADJOINT_FILL), text, re.M)}
    ops = {f"n{k}": n for k, n in enumerate(traced.order())}
    want = {k for k, n in ops.items() if naming.is_backward(n) and n.op not in
            ("broadcast", "reshape", "cast", "const", "batch_size")}
    assert tinted == want and len(want) >= 8        # W̄1, b̄1, h̄, z̄, ...: every adjoint op
    assert all(ops[k].meta.get("role") == "adjoint" for k in tinted)


def test_fused_regions_are_clusters():
    _, f = compiled("mlp")
    text = f.dot()
    fused = [n for n in f.graph.order() if n.op == "fused"]
    assert text.count("subgraph cluster_") == len(fused) > 0
    for n in fused:
        members = n.attr("members")
        assert f"fused region ({members} op{'s' if members != 1 else ''})" in text


def test_render_dot_text_and_missing_graphviz_and_matplotlib(tmp_path, monkeypatch):
    _, f = compiled("lecture_scalar")
    out = render(f.dot(), str(tmp_path / "g.dot"))
    assert open(out, encoding="utf-8").read().startswith("digraph adjit {")
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` on this PATH
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # and no matplotlib either
    with pytest.raises(GraphvizMissing, match="sudo apt install graphviz.*pip install matpl"):
        render(f.dot(), str(tmp_path / "g.svg"))
    assert f.traced._repr_svg_() is None               # Jupyter falls back to the listing
    with pytest.raises(ValueError, match="g.jpg"):
        render(f.dot(), str(tmp_path / "g.jpg"))


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    """A PATH without Graphviz, and the once-per-process note not yet said."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(dot_module, "_noted", False)


def test_without_graphviz_matplotlib_draws_svg(tmp_path, no_graphviz, capsys):
    _, f = compiled("mlp")
    path = render(f.dot(), str(tmp_path / "mlp.svg"))
    root = ElementTree.parse(path).getroot()            # well-formed XML
    assert root.tag.endswith("svg") and len(list(root.iter())) > 100
    err = capsys.readouterr().err
    assert "matplotlib drew this picture" in err and "sudo apt install graphviz" in err
    render(f.dot(), str(tmp_path / "again.svg"))
    assert capsys.readouterr().err == ""               # said once per process
    svg = f.graph._repr_svg_()                          # Jupyter gets the same drawing
    assert ElementTree.fromstring(svg).tag.endswith("svg")


def test_without_graphviz_matplotlib_draws_png_and_pdf(tmp_path, no_graphviz):
    _, f = compiled("logistic")
    png = (tmp_path / "g.png")
    render(f.dot("traced"), str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])   # the IHDR chunk
    assert width > 200 and height > 200
    render(f.dot(), str(tmp_path / "g.pdf"))
    assert (tmp_path / "g.pdf").read_bytes()[:5] == b"%PDF-"


def test_drawing_reads_back_the_dot_it_draws():
    _, f = compiled("mlp")
    (pic,) = parse(f.dot())
    graph = f.graph
    fused = [n for n in graph.order() if n.op == "fused"]
    assert len(pic.clusters) == len(fused) > 0
    labels = {a["label"].split("\n")[0] for a in pic.nodes.values()}
    assert {"W̄1 = matmul", "b̄1 = sum", "z̄ = ×"} <= labels     # names as in the DOT
    tinted = [n for n, a in pic.nodes.items() if a.get("fillcolor") == "#fbe3e1"]
    assert len(tinted) >= 6                                    # adjoint nodes stay red
    lo = layout(pic)
    assert set(lo.pos) == set(pic.nodes)
    for a, b, _ in pic.edges:                          # every edge points down the page
        assert lo.pos[a][1] > lo.pos[b][1], (a, b)
    boxes = {}
    for c, (_, members) in pic.clusters.items():       # no other node inside a fused box
        xs = [lo.pos[m][0] for m in members]
        ys = [lo.pos[m][1] for m in members]
        boxes[c] = (min(xs), max(xs), min(ys), max(ys))
    owner = {m: c for c, (_, ms) in pic.clusters.items() for m in ms}
    for n, (x, y) in lo.pos.items():
        for c, (x0, x1, y0, y1) in boxes.items():
            if owner.get(n) != c:
                assert not (x0 <= x <= x1 and y0 <= y <= y1), (n, c)
    with pytest.raises(NotAdjitDot, match="strict digraph"):
        parse("strict digraph g { a -> b }")


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's `dot` is not installed (sudo apt install graphviz)")
def test_render_svg_with_graphviz(tmp_path):
    _, f = compiled("mlp")
    path = render(f.dot(), str(tmp_path / "mlp.svg"))
    svg = open(path, encoding="utf-8").read()
    assert "<svg" in svg and "fused region" in svg
    assert f.graph._repr_svg_().lstrip().startswith(("<?xml", "<svg", "<!--"))


def test_dot_of_nodes_and_graphs():
    m, _ = compiled("lecture_scalar")
    assert dot(m.outputs, "traced").startswith("digraph adjit {")
    assert dot(Graph(m.outputs, "traced")) == dot(m.outputs)


def test_adjit_dot_svg_without_graphviz_as_a_user_runs_it(tmp_path):
    out = tmp_path / "mlp.svg"
    done = subprocess.run([sys.executable, "-m", "adjit.cli", "dot", str(MODELS / "mlp.py"),
                           "-o", str(out)], env={**os.environ, "PATH": str(tmp_path)},
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    assert "sudo apt install graphviz" in done.stderr and "matplotlib drew" in done.stderr
    assert ElementTree.parse(out).getroot().tag.endswith("svg")
