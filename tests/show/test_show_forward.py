"""Forward mode in the views: tangents in dot notation (ẋ), beside bars (x̄)."""
from __future__ import annotations

import numpy as np

import adjit as aj
from adjit.show import equations, trace
from adjit.show.names import Name
from test_show_conv import well_formed


def mlp():
    """y = σ(x W1 + b1) W2 + b2, the tangent moving W1 along V."""
    x = aj.input("x", (None, 3))
    W1, b1 = aj.param("W1", (3, 4)), aj.param("b1", (4,))
    W2, b2 = aj.param("W2", (4, 2)), aj.param("b2", (2,))
    V = aj.input("V", (3, 4))
    z1 = x @ W1 + b1
    h1 = aj.sigmoid(z1)
    y = h1 @ W2 + b2
    aj.show.name_nodes({"z1": z1, "h1": h1, "y": y})
    return x, W1, V, y


def body(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines()]


def test_dot_marks_in_text_and_latex():
    assert Name.parse("x").dotted().unicode() == "ẋ"
    assert Name.parse("W1").dotted().unicode() == "Ẇ1"
    assert Name.parse("W1").dotted().latex() == r"\dot{W}_{1}"
    assert Name.parse("z1").barred().dotted().unicode() == "z\u0304\u03071"
    assert Name.parse("z1").barred().dotted().latex() == r"\dot{\bar{z}}_{1}"
    assert Name.parse("logits").dotted().unicode() == "l\u0307ogits"
    assert Name.parse("logits").dotted().latex() == r"\dot{\mathrm{logits}}"


def test_jvp_of_an_mlp_reads_in_dot_notation():
    x, W1, V, y = mlp()
    text = body(equations([y, aj.jvp(y, [W1], [V])]).unicode)
    assert text[3:] == [
        "forward",
        "  z1 = x W1 + b1                            (B, 4)",
        "  h1 = σ(z1)                                (B, 4)",
        "  y  = h1 W2 + b2                           (B, 2)",
        "tangent",
        "  Ẇ1 = V                                    (3, 4)",
        "  ż1 = x Ẇ1                                 (B, 4)",
        "  ḣ1 = ż1 ∘ h1 ∘ (1 − h1)                   (B, 4)",
        "  ẏ  = ḣ1 W2                                (B, 2)"]


def test_simplified_stage_keeps_the_dots():
    x, W1, V, y = mlp()
    f = aj.compile([y, aj.jvp(y, [W1], [V])], backend="interp")
    text = body(equations(f, "simplified").unicode)
    # fuse merged σ′ into the product: the fused node carries the dot of h1 (and of z1)
    assert text[-5:] == [
        "tangent",
        "  Ẇ1 = V                                    (3, 4)",
        "  ż1 = x Ẇ1                                 (B, 4)",
        "  ḣ1 = ż1 ∘ h1 ∘ (1 − h1)                   (B, 4)",
        "  ẏ  = ḣ1 W2                                (B, 2)"]
    assert any(n.op == "fused" and n.meta.get("dots") for n in f.graph.order())


def test_hvp_dots_the_error_signals_after_the_backward_pass():
    x, W1, V, y = mlp()
    L = aj.sum(y * y)
    aj.show.name_nodes({"L": L})
    text = body(equations(aj.hvp(L, W1, V)).unicode)
    sections = [t for t in text if t in ("forward", "backward", "tangent")]
    assert sections == ["forward", "backward", "tangent"]
    assert text[-1] == "  W̄̇1 = xᵀ z̄̇1                                (3, 4)"
    assert text[-2].startswith("  z̄̇1 = ((ẏ L̄ + ẏ L̄) W2ᵀ) ∘ h1 ∘ (1 − h1) + ")
    f = aj.compile(aj.hvp(L, W1, V), backend="interp")
    simple = body(equations(f, "simplified").unicode)
    assert [t for t in simple if t in ("forward", "backward", "tangent")] == sections
    assert simple[-1] == "  W̄̇1 = xᵀ z̄̇1                                (3, 4)"


def test_latex_of_tangents_is_well_formed():
    x, W1, V, y = mlp()
    tex = equations(aj.jvp(y, [W1], [V])).latex
    for want in (r"& \textbf{tangent} \\",
                 r"\dot{W}_{1} &= V && \in \mathbb{R}^{3 \times 4} \\",
                 r"\dot{z}_{1} &= x \dot{W}_{1} && \in \mathbb{R}^{B \times 4} \\",
                 r"\dot{y} &= \dot{h}_{1} W_{2} && \in \mathbb{R}^{B \times 2} \\"):
        assert want in tex.splitlines(), want
    well_formed(tex)
    x, W1, V, y = mlp()
    hess = equations(aj.hvp(aj.sum(y * y), W1, V)).latex
    assert r"\dot{\bar{W}}_{1} &= {x}^{\top} \dot{\bar{z}}_{1} && \in \mathbb{R}^{3 \times 4} \\" \
        in hess.splitlines()
    well_formed(hess)


def test_number_tangent_and_its_trace():
    a = aj.input("a", ())
    t = aj.jvp(a * a, a, 1.0)
    assert body(equations(t).unicode)[2:] == [
        "tangent",
        "  ȧ  = 1                                    ()",
        "  t1 = ȧ a + ȧ a                            ()"]
    tr = trace(t, {"a": 3.0})
    assert "tangent trace (forward mode)" in tr.unicode.splitlines()
    assert float(tr.value("ȧ")) == 1.0 and float(tr.value("t1")) == 6.0


def test_trace_shows_tangent_values():
    x, W1, V, y = mlp()
    rng = np.random.default_rng(0)
    vals = {"x": rng.normal(size=(2, 3)), "V": rng.normal(size=(3, 4)),
            "W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=4),
            "W2": rng.normal(size=(4, 2)), "b2": rng.normal(size=2)}
    tr = trace(aj.jvp(y, [W1], [V]), vals)
    zdot = vals["x"] @ vals["V"]
    h = 1 / (1 + np.exp(-(vals["x"] @ vals["W1"] + vals["b1"])))
    np.testing.assert_allclose(tr.value("ż1"), zdot)
    np.testing.assert_allclose(tr.value("ḣ1"), zdot * h * (1 - h))
    np.testing.assert_allclose(tr.value("ẏ"), (zdot * h * (1 - h)) @ vals["W2"])
    rows = [r[0] for r in tr.rows("tangent")]
    assert rows[:2] == ["Ẇ1", "ż1"] and "ẏ" in rows
    assert r"\textbf{tangent trace}" in tr.latex and "| tangent trace | value |" in tr.markdown
