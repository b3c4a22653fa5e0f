"""The simplification report, listings, and expression-tree sizes (known values by hand)."""
from __future__ import annotations

import adjit as aj
from adjit.show import listing
from adjit.show.report import report, tree_size
from goldens import compiled


def test_tree_size_by_hand():
    x = aj.input("x", ())
    s = aj.sin(x)
    assert tree_size([x]) == 1
    assert tree_size([s * s]) == 5            # mul(sin(x), sin(x)) = 1 + 2·(1 + 1)
    y = x
    for _ in range(40):
        y = y * y                             # a graph of 41 nodes
    assert tree_size([y]) == 2 ** 41 - 1      # t(k) = 1 + 2 t(k − 1), t(0) = 1


def test_report_lists_each_pass_with_its_rules_and_counts():
    _, f = compiled("logistic")
    text = report(f)
    assert text == f.report()
    counts = f.node_counts()
    for stage, n in counts.items():
        assert any(line.split()[:2] == [stage, str(n)] for line in text.splitlines()), stage
    for stage in f.stages[1:]:
        for rule, k in stage.rewrites.items():
            assert f"{rule}×{k}" in text
    # gradient outputs are named after their variable (b̄, even though b̄ = z̄)
    rows = {line.split()[0]: line for line in text.splitlines() if line.endswith(" nodes")}
    assert set(rows) >= {"L_reg", "w̄", "b̄"}
    sizes = [tree_size([o]) for o in f.traced.outputs]
    assert f"{sum(sizes):,} nodes, against {counts['traced']} in the traced graph" in text


def test_listing_of_every_stage():
    _, f = compiled("mlp")
    text = listing(f)
    headers = [ln for ln in text.splitlines() if ln.startswith("graph [")]
    assert [h.split("]")[0][7:] for h in headers] == ["forward"] + [g.stage for g in f.stages]
    assert "# b̄2" not in text and "bar of b2" in text
    assert listing(f, "simplified") == str(f.graph) and listing(f.traced) == str(f.traced)
