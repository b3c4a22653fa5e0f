"""Backward equations in backprop notation: golden files and the lecture's lines."""
from __future__ import annotations

import re
import unicodedata

import pytest

import adjit as aj
from adjit.show import equations, name_nodes
from adjit.show.names import Name
from adjit.show.render import Printer
from adjit.show.terms import Term, name, num
from goldens import check_golden, compiled

LECTURE = ["logistic", "mlp", "softmax_regression", "lecture_scalar"]
SUFFIX = {"unicode": "txt", "latex": "tex", "markdown": "md"}


@pytest.mark.parametrize("form", sorted(SUFFIX))
@pytest.mark.parametrize("model", LECTURE)
def test_equations_golden(model, form):
    _, f = compiled(model)
    check_golden(f"equations_{model}.{SUFFIX[form]}", equations(f).format(form) + "\n")


def lines(text: str) -> list[str]:
    """Equation lines (NFC) with runs of spaces collapsed and the shape column dropped."""
    out = []
    for ln in unicodedata.normalize("NFC", text).splitlines():
        ln = re.sub(r" {2,}\(.*\)$", "", ln.strip())
        out.append(re.sub(r"\s+", " ", ln))
    return out


def test_mlp_reads_like_the_lecture():
    _, f = compiled("mlp")
    traced = lines(str(f.equations()))
    for want in ("L̄ = 1", "b̄2 = Σ_batch ȳ", "h̄ = ȳ W2ᵀ", "W̄2 = hᵀ ȳ",
                 "z̄ = h̄ ∘ h ∘ (1 − h)",          # σ′(z) from the forward output h
                 "b̄1 = Σ_batch z̄", "W̄1 = xᵀ z̄", "z = x W1 + b1", "h = σ(z)"):
        assert want in traced, want
    # as traced, ȳ = L̄ · ½ / B · 2 (y − t)^(2 − 1): the ½ and the square's 2 multiply out,
    # the exponent 2 − 1 folds, and the mean's 1/B stays a division
    assert "ȳ = L̄ (y − t) / B" in traced
    simplified = lines(str(f.equations("simplified")))
    assert "z̄ = h̄ ∘ h ∘ (1 − h)" in simplified
    assert "h = σ(x W1 + b1)" in simplified     # z was fused into h's region
    assert not any(ln.startswith("L̄") for ln in simplified)   # the seed 1 folded away
    assert "ȳ = v1 / B" in simplified and "v1 = h W2 + b2 − t" in simplified


def test_fan_out_is_a_sum_of_contributions_and_aliases_are_shown():
    _, f = compiled("logistic")
    eq = lines(str(f.equations()))
    assert "w̄ = R̄ w + z̄ x" in eq          # w feeds R and z: two contributions
    assert "b̄ = z̄" in eq and "L̄ = L̄_reg" in eq         # add passes its error signal through
    assert "R̄ = 0.1 L̄_reg" in eq and "z̄ = ȳ y (1 − y)" in eq
    assert "ȳ = L̄_reg (y − t)" in eq
    assert "w̄ = 0.1 w + z̄ x" in lines(str(f.equations("simplified")))


def test_unnamed_values_get_generated_names_that_avoid_user_names():
    x = aj.input("x", (3,))
    v1 = aj.exp(x) + 1.0                  # a user value called v1
    s = aj.sin(v1)
    loss = aj.sum(s * s)
    name_nodes({"v1": v1})
    eq = lines(str(equations([loss, aj.grad(loss, x)])))
    assert "v1 = exp(x) + 1" in eq
    assert "v2 = Σ sin(v1) ∘ sin(v1)" in eq   # the unnamed loss: v2, since v1 is taken
    assert "v̄1 = (sin(v1) + sin(v1)) ∘ cos(v1)" in eq   # s * s: two contributions


def test_names_parse_and_print():
    assert Name.parse("W1").unicode() == "W1" and Name.parse("W1").latex() == "W_{1}"
    assert Name.parse("L_reg").barred().unicode() == "L\u0304_reg"
    assert Name.parse("L_reg").barred().latex() == r"\bar{L}_{\mathrm{reg}}"
    assert Name.parse("logits").barred().latex() == r"\overline{\mathrm{logits}}"
    assert Name.parse("logits").barred().unicode() == "".join(c + "\u0305" for c in "logits")


a, b, c = (name(Name(s)) for s in "abc")


@pytest.mark.parametrize("term, text, tex", [
    (Term("add", (a, Term("add", (b, c), "+")), "-"), "a − (b + c)", r"a - \left(b + c\right)"),
    (Term("add", (a, Term("neg", (b,))), "+"), "a − b", "a - b"),
    (Term("div", (a, Term("mul", (b, c), "scale")), "/"), "a / (b c)", r"\frac{a}{b c}"),
    (Term("pow", (Term("add", (a, b), "+"), num(2)), "^"), "(a + b)²", r"{\left(a + b\right)}^{2}"),
    (Term("neg", (Term("add", (a, b), "+"),)), "−(a + b)", r"-\left(a + b\right)"),
    (Term("mul", (a, num(0.5)), "scale"), "a · 0.5", r"a \cdot 0.5"),
    (Term("mul", (Term("mul", (a, b), "matmul"), c), "hadamard"), "(a b) ∘ c",
     r"\left(a b\right) \circ c"),
    (Term("add", (Term("sum", (a,), "batch"), b), "+"), "(Σ_batch a) + b",
     r"\left(\sum_{\text{batch}} a\right) + b"),
    (Term("sum", (Term("mul", (a, b), "hadamard"),), "axis1"), "Σ_axis1 a ∘ b",
     r"\sum_{\text{axis }1} a \circ b"),
    (Term("T", (Term("mul", (a, b), "matmul"),)), "(a b)ᵀ", r"{\left(a b\right)}^{\top}"),
    (Term("div", (Term("mul", (num(0.5), Term("sum", (a,), "batch")), "scale"), b), "/"),
     "0.5 (Σ_batch a) / b", r"0.5 \frac{\sum_{\text{batch}} a}{b}"),   # coefficient before \frac
])
def test_precedence_and_forms(term, text, tex):
    assert Printer()(term) == text
    assert Printer(latex=True)(term) == tex


def test_latex_and_markdown_are_well_formed():
    _, f = compiled("softmax_regression")
    tex = f.equations("both").latex
    assert tex.count("{") == tex.count("}") and tex.count(r"\left") == tex.count(r"\right")
    assert tex.count(r"\begin{aligned}") == tex.count(r"\end{aligned}") == 2
    md = f.equations().markdown
    rows = [ln for ln in md.splitlines() if ln.startswith("| $")]
    assert rows and all(ln.count("|") == 3 for ln in rows)   # no stray pipes in the math
    assert f.equations()._repr_latex_().startswith("$$\\begin{aligned}")
    assert "| backward | shape |" in f._repr_markdown_()


def test_bad_form_and_stage_are_named():
    _, f = compiled("lecture_scalar")
    with pytest.raises(ValueError, match="'html'"):
        f.equations().format("html")
    with pytest.raises(ValueError, match="'nope'.*traced, simplified, both"):
        f.equations("nope")
    with pytest.raises(TypeError, match="cannot show int"):
        equations(3)
