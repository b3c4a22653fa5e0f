"""Pictures: DOT text (golden files), adjoint nodes tinted, fused regions as clusters."""
from __future__ import annotations

import re
import shutil

import pytest

from adjit.ir import Graph
from adjit.show.dot import GraphvizMissing, dot, graph_dot, render
from adjit.show.names import Naming
from goldens import check_golden, compiled

ADJOINT_FILL = 'fillcolor="#fbe3e1"'


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


def test_render_dot_text_and_missing_graphviz(tmp_path, monkeypatch):
    _, f = compiled("lecture_scalar")
    out = render(f.dot(), str(tmp_path / "g.dot"))
    assert open(out, encoding="utf-8").read().startswith("digraph adjit {")
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` on this PATH
    with pytest.raises(GraphvizMissing, match="sudo apt install graphviz"):
        render(f.dot(), str(tmp_path / "g.svg"))
    assert f.traced._repr_svg_() is None               # Jupyter falls back to the listing
    with pytest.raises(ValueError, match="g.jpg"):
        render(f.dot(), str(tmp_path / "g.jpg"))


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
