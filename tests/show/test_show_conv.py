"""Convolutions in every view: the equations (Unicode, LaTeX, Markdown) write conv,
conv_transpose and conv_weight by name with their operands in backprop notation and their
non-default attributes after a semicolon; a conv bias's gradient is a sum over the batch
and the spatial axes; pictures name conv, unfold and fold nodes with their attributes; the
report names the expand stage and what each expansion computes with; the worked example
agrees with the compiled gradient."""
from __future__ import annotations

import re

import numpy as np
import pytest

import adjit as aj
from adjit.ops import REGISTRY
from adjit.show import equations, name_nodes, trace
from adjit.show.dot import dot
from adjit.show.report import report


def conv_net(stride=2, padding=1):
    """x (B, 1, 8, 8) -> conv2d with bias -> relu -> conv2d (stride, padding) -> flatten
    -> linear -> cross-entropy, and the gradient in every parameter."""
    x = aj.input("x", (None, 1, 8, 8))
    y = aj.input("y", (None,), dtype="int64")
    W1, b1 = aj.param("W1", (4, 1, 3, 3)), aj.param("b1", (4,))
    W2 = aj.param("W2", (6, 4, 3, 3))
    z1 = aj.conv2d(x, W1, b1)
    h1 = aj.relu(z1)
    z2 = aj.conv2d(h1, W2, stride=stride, padding=padding)
    f = aj.reshape(z2, (None, -1))
    W3, b3 = aj.param("W3", (f.shape[1], 10)), aj.param("b3", (10,))
    z3 = f @ W3 + b3
    L = aj.cross_entropy(z3, y)
    name_nodes(dict(z1=z1, h1=h1, z2=z2, f=f, z3=z3, L=L))
    params = [W1, b1, W2, W3, b3]
    return aj.compile([L] + aj.grad(L, params), backend="interp"), params


def lines(text: str) -> list[str]:
    """Equation lines, runs of spaces collapsed (the shape column kept)."""
    return [re.sub(r"\s+", " ", ln.strip()) for ln in text.splitlines()]


def conv_lines(text: str) -> list[str]:
    return [ln for ln in lines(text) if "conv" in ln or ln.startswith(("b̄1", "z̄2 ", "z̄1 "))]


# --- equations ----------------------------------------------------------------------------------
def test_conv_net_equations_in_backprop_notation():
    f, _ = conv_net()
    assert conv_lines(equations(f).unicode) == [
        "z1 = conv(x, W1) + b1 (B, 4, 6, 6)",
        "z2 = conv(h1, W2; stride 2, pad 1) (B, 6, 3, 3)",
        "z̄2 = f̄ (B, 6, 3, 3)",
        "h̄1 = conv_transpose(z̄2, W2; stride 2, pad 1) (B, 4, 6, 6)",
        "W̄2 = conv_weight(h1, z̄2; stride 2, pad 1) (6, 4, 3, 3)",
        "z̄1 = where([h1 > 0], h̄1, 0) (B, 4, 6, 6)",
        "b̄1 = Σ_batch,h,w z̄1 (4,)",
        "W̄1 = conv_weight(x, z̄1) (4, 1, 3, 3)",
    ]


def test_default_attributes_are_not_written():
    f, _ = conv_net(stride=1, padding=0)
    text = equations(f).unicode
    assert "z2 = conv(h1, W2) " in text and ";" not in text
    assert "h̄1 = conv_transpose(z̄2, W2) " in text


@pytest.mark.parametrize("build, want", [
    (lambda x, W: aj.conv1d(x, W, stride=2, padding=1, dilation=2, groups=2),
     "conv(x, W; stride 2, pad 1, dilation 2, groups 2)"),
    (lambda x, W: aj.conv2d(x, W, stride=(2, 1), padding=(1, 0)),
     "conv(x, W; stride (2, 1), pad (1, 0))"),
    (lambda x, W: aj.conv2d(x, W, padding="same"),       # an even kernel: the odd pad high
     "conv(x, W; pad ((0, 1), (0, 1)))"),
    (lambda x, W: aj.conv3d(x, W, dilation=(1, 2, 1)),
     "conv(x, W; dilation (1, 2, 1))"),
    (lambda x, W: aj.conv_transpose2d(x, W, stride=2, padding=1, output_padding=1),
     "conv_transpose(x, W; stride 2, pad 1)"),
])
def test_attributes_after_the_operands(build, want):
    shapes = {"conv(x, W; stride 2, pad 1, dilation 2, groups 2)": ((None, 4, 9), (4, 2, 3)),
              "conv(x, W; stride (2, 1), pad (1, 0))": ((None, 2, 5, 5), (3, 2, 3, 3)),
              "conv(x, W; pad ((0, 1), (0, 1)))": ((None, 2, 5, 5), (3, 2, 2, 2)),
              "conv(x, W; dilation (1, 2, 1))": ((None, 1, 5, 6, 5), (2, 1, 2, 2, 2)),
              "conv_transpose(x, W; stride 2, pad 1)": ((None, 2, 4, 4), (2, 3, 3, 3))}
    xs, ws = shapes[want]
    x, W = aj.input("x", xs), aj.param("W", ws)
    z = build(x, W)
    name_nodes({"z": z})
    assert f"z = {want} " in equations([z]).unicode


def test_gradients_of_a_transposed_convolution_and_of_groups():
    u, V = aj.input("u", (None, 2, 5, 5)), aj.param("V", (2, 3, 2, 2))
    t = aj.conv_transpose2d(u, V, stride=(2, 1), padding=(1, 0))
    x, W = aj.input("x", (None, 4, 9)), aj.param("W", (4, 2, 3))
    z = aj.conv1d(x, W, b=aj.param("c", (4,)), groups=2)
    L = aj.sum(t * t) + aj.sum(z)
    name_nodes(dict(t=t, z=z, L=L))
    text = lines(equations(aj.grad(L, [u, V, W, aj.param("c", (4,))])).unicode)
    for want in ("ū = conv(t̄, V; stride (2, 1), pad (1, 0)) (B, 2, 5, 5)",
                 "V̄ = conv_weight(t̄, u; stride (2, 1), pad (1, 0)) (2, 3, 2, 2)",
                 "W̄ = conv_weight(x, z̄; groups 2) (4, 2, 3)"):
        assert want in text, (want, text)


def test_bias_gradient_sums_over_the_batch_and_the_spatial_axes():
    for nd, axes in ((1, "l"), (2, "h,w"), (3, "d,h,w")):
        x = aj.input("x", (None, 2) + (5,) * nd)
        W, b = aj.param("W", (3, 2) + (2,) * nd), aj.param("b", (3,))
        z = aj.conv1d(x, W, b) if nd == 1 else aj.conv2d(x, W, b) if nd == 2 else \
            aj.conv3d(x, W, b)
        L = aj.sum(z * z)
        name_nodes(dict(z=z, L=L))
        text = lines(equations([L] + aj.grad(L, [b])).unicode)
        assert f"L = Σ_batch,c,{axes} z ∘ z ()" in text
        assert f"b̄ = Σ_batch,{axes} z̄ (3,)" in text, text


def test_sums_without_windows_keep_axis_numbers():
    h, w = aj.input("h", (None, 3, 4, 5)), aj.param("w", (3, 1, 1))
    L = aj.sum(h * w)
    name_nodes({"L": L})
    text = lines(equations([L] + aj.grad(L, [w])).unicode)
    assert "L = Σ_batch,axis1,axis2,axis3 h ∘ w ()" in text
    assert any(ln.startswith("w̄ = Σ_batch,axis2,axis3 ") for ln in text), text


# --- LaTeX and Markdown ---------------------------------------------------------------------------
def test_latex_of_the_conv_lines():
    f, _ = conv_net()
    tex = equations(f).latex.splitlines()
    for want in (
            r"z_{2} &= \operatorname{conv}\left(h_{1}, W_{2};\ \text{stride 2, pad 1}\right)"
            r" && \in \mathbb{R}^{B \times 6 \times 3 \times 3} \\",
            r"\bar{h}_{1} &= \operatorname{conv\_transpose}\left(\bar{z}_{2}, W_{2};\ "
            r"\text{stride 2, pad 1}\right) && \in \mathbb{R}^{B \times 4 \times 6 \times 6} \\",
            r"\bar{W}_{2} &= \operatorname{conv\_weight}\left(h_{1}, \bar{z}_{2};\ "
            r"\text{stride 2, pad 1}\right) && \in \mathbb{R}^{6 \times 4 \times 3 \times 3} \\",
            r"\bar{b}_{1} &= \sum_{\text{batch},h,w} \bar{z}_{1} && \in \mathbb{R}^{4} \\",
            r"\bar{W}_{1} &= \operatorname{conv\_weight}\left(x, \bar{z}_{1}\right)"
            r" && \in \mathbb{R}^{4 \times 1 \times 3 \times 3} \\"):
        assert want in tex, want
    md = equations(f).markdown
    assert (r"| $\bar{h}_{1} = \operatorname{conv\_transpose}\left(\bar{z}_{2}, W_{2};\ "
            r"\text{stride 2, pad 1}\right)$ | (B, 4, 6, 6) |") in md


def well_formed(tex: str) -> None:
    """Each equation of an aligned block parses as math (matplotlib's TeX parser: no TeX
    installation needed); braces and \\left/\\right pair up; the equations are ASCII, as
    pdflatex wants (``×`` is ``\\times``)."""
    mathtext = pytest.importorskip("matplotlib.mathtext")
    parser = mathtext.MathTextParser("path")
    depth = 0
    for c in tex:
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0, tex
    assert depth == 0 and tex.count(r"\left") == tex.count(r"\right")
    for ln in tex.splitlines():
        if ln.startswith(("%", r"\begin", r"\end", "& ")):
            continue
        assert ln.isascii(), ln
        eq = ln.removesuffix(r" \\").split("&&")[0].replace("&", "").replace(r"\mathrel{+}=", "+=")
        parser.parse(f"${eq}$")


def test_latex_is_well_formed():
    f, _ = conv_net()
    well_formed(equations(f).latex)
    well_formed(equations(f, "simplified").latex)   # unfold(x; kernel 3×3): × in math


# --- the expanded stage: unfold, fold and products -------------------------------
def test_simplified_equations_write_unfold_and_fold_with_their_windows():
    f, _ = conv_net()
    text = lines(equations(f, "simplified").unicode)
    assert "h̄1 = fold(W2ᵀ f̄; kernel 3×3, stride 2, pad 1) (B, 4, 6, 6)" in text, text
    # the weight gradient: the batch's products summed (matmul_sum)
    assert "W̄2 = Σ_batch f̄ unfold(h1; kernel 3×3, stride 2, pad 1)ᵀ (6, 4, 3, 3)" in text
    # the first layer (one input channel) is computed directly (ops/conv_direct.py): kept
    assert "h1 = max(0, conv(x, W1) + b1) (B, 4, 6, 6)" in text, text
    assert "W̄1 = conv_weight(x, z̄1) (4, 1, 3, 3)" in text, text


def test_dot_names_conv_unfold_and_fold_nodes_with_their_attributes():
    f, _ = conv_net()
    traced = dot(f, "traced")
    for label in (r'"z2 = conv stride 2, pad 1\n(B, 6, 3, 3)"',
                  r'"conv\n(B, 4, 6, 6)"',
                  r'"h̄1 = conv_transpose stride 2, pad 1\n(B, 4, 6, 6)"',
                  r'"W̄2 = conv_weight stride 2, pad 1\n(6, 4, 3, 3)"',
                  r'"W̄1 = conv_weight\n(4, 1, 3, 3)"'):
        assert f"[label={label}," in traced, label
    simplified = dot(f)
    assert "unfold" not in traced and "conv_transpose" not in simplified
    # the first layer (one input channel) is computed directly: its nodes stay
    for label in (r'"conv\n(B, 4, 6, 6)"', r'"W̄1 = conv_weight\n(4, 1, 3, 3)"',
                  r'"unfold kernel 3×3, stride 2, pad 1\n(B, 4, 3, 3, 3, 3)"',
                  r'"h̄1 = fold kernel 3×3, stride 2, pad 1\n(B, 4, 6, 6)"'):
        assert f"[label={label}," in simplified, label


def test_report_names_the_expand_stage_and_what_it_computes_with():
    f, _ = conv_net()
    text = report(f)
    stages = [ln.split()[0] for ln in text.splitlines()[2:8]]
    assert stages == ["traced", "expand", "fold", "cse", "fold-again", "fuse"]
    expand = next(ln for ln in text.splitlines() if ln.split()[0] == "expand")
    # (the first layer, of one input channel, is kept: ops/conv_direct.py)
    for rule in ("conv→unfold·matmul×1", "conv_transpose→matmul·fold×1",
                 "conv_weight→unfold·matmul_sum×1"):
        assert rule in expand, expand
    x, W = aj.input("x", (None, 4, 6)), aj.param("W", (4, 2, 3))
    grouped = aj.compile(aj.grad(aj.sum(aj.conv1d(x, W, groups=2)), [W]), backend="interp")
    assert "conv_weight→unfold·matmul·sum×1" in report(grouped)


# --- views driven by record fields: a window op without a Shown of its own (pools) ---------
def test_a_window_record_without_shown_is_written_from_its_attributes(monkeypatch):
    f, _ = conv_net()
    before = equations(f).unicode, equations(f, "simplified").unicode, dot(f), dot(f, "traced")
    for op in ("conv", "conv_transpose", "unfold", "fold"):
        monkeypatch.setattr(REGISTRY[op], "shown", None)
    after = equations(f).unicode, equations(f, "simplified").unicode, dot(f), dot(f, "traced")
    assert after == before
    # conv_weight's kernel is its shape: its own Shown hides it, the generic one writes it
    monkeypatch.setattr(REGISTRY["conv_weight"], "shown", None)
    assert "W̄2 = conv_weight(h1, z̄2; kernel 3×3, stride 2, pad 1)" in equations(f).unicode


# --- the worked example ---------------------------------------------------------------------------
def test_trace_of_the_conv_net_agrees_with_the_gradient():
    f, params = conv_net()
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(2, 1, 8, 8)), "y": np.array([1, 3])}
    values.update({p.name: rng.normal(size=p.shape) for p in params})
    t = trace(f, values)
    rows = {name: expr for name, expr, _ in t.rows("backward")}
    assert rows["h̄1"] == "conv_transpose(z̄2, W2; stride 2, pad 1)"
    assert rows["W̄2"] == "conv_weight(h1, z̄2; stride 2, pad 1)"
    assert rows["b̄1"] == "Σ_batch,h,w z̄1"
    L, gW1, gb1, gW2, *_ = f(**values)
    np.testing.assert_allclose(t.value("W̄1"), gW1, rtol=1e-12)
    np.testing.assert_allclose(t.value("b̄1"), gb1, rtol=1e-12)
    np.testing.assert_allclose(t.value("W̄2"), gW2, rtol=1e-12)


class _Window:
    """A node of a window op, as far as ``window.note`` reads it (an average pool)."""

    def __init__(self, **attrs):
        self.attrs = attrs

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


def test_the_note_of_a_pool():
    from adjit.ops.window import note
    pool = dict(kernel=(2, 2), stride=(2, 2), dilation=(1, 1), pad=((0, 0), (0, 0)))
    assert note(_Window(**pool)) == "kernel 2×2, stride 2"
    assert note(_Window(**dict(pool, pad=((1, 1), (0, 1)), include=False))) == \
        "kernel 2×2, stride 2, pad ((1, 1), (0, 1)), count_include_pad False"
    assert note(_Window(**dict(pool, include=True)), hide=("kernel",)) == "stride 2"
