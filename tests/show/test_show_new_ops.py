"""The ops of "Beyond the MLP" in every view: equations (forward and backward, Unicode and
LaTeX, as traced and simplified), pictures, the simplification report and the ``adjit``
command on a model file using them."""
from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
import sympy as sp

import adjit as aj
from adjit.cli import main
from adjit.ops import REGISTRY
from adjit.ops.moves import axis_part
from adjit.show import equations, name_nodes
from adjit.show.dot import dot
from adjit.show.report import report
from adjit.show.terms import record_functions


def eq(outputs, names, wrt=(), stage="traced", form="unicode") -> str:
    """The equations of ``outputs`` + the gradient of the first (named L unless named)
    with respect to ``wrt``."""
    name_nodes(names)
    name_nodes({"L": outputs[0]})
    grads = aj.grad(outputs[0], list(wrt)) if wrt else []
    f = aj.compile(list(outputs) + grads, backend="interp")
    return equations(f, stage).format(form)


def body(text: str) -> str:
    """The equation lines, runs of spaces collapsed (the shape column kept)."""
    return "\n".join(re.sub(r"\s+", " ", ln.strip()) for ln in text.splitlines()[1:])


def expect(text: str) -> str:
    return "\n".join(ln.strip() for ln in textwrap.dedent(text).strip().splitlines())


# --- indexing: x[:, 0] forward, x̄[:, 0] += ȳ backward --------------------------------------------
def slices():
    x, w = aj.input("x", (None, 3)), aj.param("w", (3,))
    h = x * w
    y, z = h[:, 0], h[::-1, 1:]
    L = aj.sum(y) + aj.sum(z * z)
    return [L], dict(h=h, y=y, z=z, L=L), [w]


def test_slices_read_as_indexing_and_their_gradients_accumulate():
    assert body(eq(*slices())) == expect("""
        inputs x (B, 3)
        params w (3,)
        forward
        h = x ∘ w (B, 3)
        y = h[:, 0] (B,)
        z = h[::−1, 1:] (B, 2)
        L = (Σ_batch y) + Σ_batch,axis1 z ∘ z ()
        backward
        L̄ = 1 ()
        ȳ = L̄ (B,)
        z̄ = L̄ z + L̄ z (B, 2)
        h̄[::−1, 1:] += z̄ (B, 3)
        h̄[:, 0] += ȳ (B, 3)
        w̄ = Σ_batch h̄ ∘ x (3,)""")


def test_slices_in_latex_and_markdown():
    tex = eq(*slices(), form="latex")
    for line in (r"y &= h[{:}, 0] && \in \mathbb{R}^{B} \\",
                 r"z &= h[{:}{:}-1, 1{:}] && \in \mathbb{R}^{B \times 2} \\",
                 r"\bar{h}[{:}{:}-1, 1{:}] &\mathrel{+}= \bar{z} && \in \mathbb{R}^{B \times 3} \\",
                 r"\bar{h}[{:}, 0] &\mathrel{+}= \bar{y} && \in \mathbb{R}^{B \times 3} \\"):
        assert line in tex.splitlines(), line
    assert tex.count("{") == tex.count("}")
    md = eq(*slices(), form="markdown")
    assert r"| $\bar{h}[{:}, 0] \mathrel{+}= \bar{y}$ | (B, 3) |" in md


def test_an_error_signal_made_only_of_accumulations_and_one_with_dense_terms():
    x = aj.input("x", (None, 3))
    y = x[-1]                               # the last example of the batch
    text = body(eq([aj.sum(y * y)], dict(y=y), [x]))
    assert text.endswith("ȳ = L̄ y + L̄ y (3,)\nx̄[−1] += ȳ (B, 3)"), text
    x, W = aj.input("x", (None, 4)), aj.param("W", (4, 4))
    h = x @ W
    y = h[:, 1:3]
    L = aj.sum(y * y) + aj.sum(h)
    lines = body(eq([L], dict(h=h, y=y, L=L), [W])).splitlines()
    k = lines.index("h̄ = L̄ (B, 4)")         # the dense part first, then what adds into it
    assert lines[k + 1] == "h̄[:, 1:3] += ȳ (B, 4)" and lines[k + 2] == "W̄ = xᵀ h̄ (4, 4)"
    simplified = body(eq([L], dict(h=h, y=y, L=L), [W], stage="simplified"))
    assert "h̄[:, 1:3] += ȳ (B, 4)" in simplified.splitlines()   # read out of the fused sum


@pytest.mark.parametrize("key, want", [
    ((slice(None), 0), "x[:, 0]"), ((0,), "x[0]"), ((-1, slice(1, None)), "x[−1, 1:]"),
    ((slice(-2, None),), "x[−2:]"), ((slice(2, 5),), "x[2:5]"), ((slice(3, None, -1),), "x[3::−1]"),
    ((slice(-1, -4, -1),), "x[:−4:−1]"), ((slice(None), slice(None, None, 2)), "x[:, ::2]"),
    ((slice(None), slice(4, 1, -1)), "x[:, 4:1:−1]"), ((slice(None), slice(0, 1)), "x[:, :1]"),
    ((slice(None), slice(5, 6)), "x[:, 5:]"), ((slice(None, None, -1),), "x[::−1]")])
def test_index_text_is_numpys_shortest(key, want):
    x = aj.input("x", (None, 6))
    y = x[key]
    assert body(eq([y], dict(y=y))).splitlines()[2].startswith(f"y = {want} ")


def test_axis_part_matches_numpy():
    """Every placement's text, evaluated by numpy, picks the same elements."""
    for n in range(0, 6):
        for start in range(-n - 1, n + 1):
            for stop in range(-n - 1, n + 1):
                for step in (1, 2, 3, -1, -2):
                    s = slice(start, stop, step)
                    r = range(*s.indices(n))
                    if len(r) == 0:
                        continue
                    text = axis_part(n, len(r), r.start, r.step)
                    assert list(np.arange(n)[eval(f"np.s_[{text}]")]) == list(r), (s, text)


# --- gathers: E[ids] forward, Ē += scatter(ids, ē) backward -----------------------------------
def embedding():
    E, ids = aj.param("E", (10, 3)), aj.input("ids", (None, 2), dtype="int64")
    e = aj.take(E, ids, axis=0)
    return [aj.sum(e * e)], dict(e=e), [E]


def test_take_and_its_scatter():
    assert body(eq(*embedding())) == expect("""
        inputs ids (B, 2)
        params E (10, 3)
        forward
        e = E[ids] (B, 2, 3)
        L = Σ_batch,axis1,axis2 e ∘ e ()
        backward
        L̄ = 1 ()
        ē = L̄ e + L̄ e (B, 2, 3)
        Ē += scatter(ids, ē) (10, 3)""")
    tex = eq(*embedding(), form="latex")
    assert r"e &= E[\mathrm{ids}] && \in \mathbb{R}^{B \times 2 \times 3} \\" in tex
    assert (r"\bar{E} &\mathrel{+}= \operatorname{scatter}\left(\mathrm{ids}, \bar{e}\right) "
            r"&& \in \mathbb{R}^{10 \times 3} \\") in tex
    assert "Ē += scatter(ids, ē)" in body(eq(*embedding(), stage="simplified"))


def test_take_along_another_axis_and_take_along_axis():
    F = aj.param("F", (3, 10))
    j, i = aj.input("j", (4,), dtype="int64"), aj.input("i", (3, 1), dtype="int64")
    t, g = aj.take(F, j, axis=1), aj.take_along_axis(F, i, axis=1)
    text = body(eq([aj.sum(t) + aj.sum(g)], dict(t=t, g=g), [F]))
    for line in ("t = F[:, j] (3, 4)", "g = take_along_axis(F, i; axis 1) (3, 1)",
                 "F̄ += scatter_along_axis(i, ḡ; axis 1) (3, 10)",
                 "F̄ += scatter(j, t̄; axis 1) (3, 10)"):
        assert line in text.splitlines(), line
    tex = eq([aj.sum(t) + aj.sum(g)], dict(t=t, g=g), [F], form="latex")
    assert r"t &= F[{:}, j] && \in \mathbb{R}^{3 \times 4} \\" in tex
    assert (r"g &= \operatorname{take\_along\_axis}\left(F, i;\ \text{axis 1}\right) "
            r"&& \in \mathbb{R}^{3 \times 1} \\") in tex


# --- joins, pads, products, reductions, random numbers --------------------------------------
def test_concatenate_and_pad_and_their_gradients():
    a, b = aj.param("a", (2, 3)), aj.param("b", (2, 2))
    c = aj.concatenate([a, b], axis=1)
    p = aj.pad(c, ((1, 0), (0, 2)))
    assert body(eq([aj.sum(p * p)], dict(c=c, p=p), [a, b])) == expect("""
        params a (2, 3), b (2, 2)
        forward
        c = concat(a, b; axis 1) (2, 5)
        p = pad(c; (1, 0), (0, 2)) (3, 7)
        L = Σ p ∘ p ()
        backward
        L̄ = 1 ()
        p̄ = L̄ p + L̄ p (3, 7)
        c̄ = p̄[1:, :5] (2, 5)
        ā = c̄[:, :3] (2, 3)
        b̄ = c̄[:, 3:] (2, 2)""")
    tex = eq([aj.sum(p * p)], dict(c=c, p=p), [a, b], form="latex")
    assert r"c &= \operatorname{concat}\left(a, b;\ \text{axis 1}\right)" in tex
    assert r"p &= \operatorname{pad}\left(c;\ \text{(1, 0), (0, 2)}\right)" in tex
    q = aj.pad(a, 1, constant_values=-1.5)
    assert "q = pad(a; (1, 1), (1, 1); value −1.5) (4, 5)" in body(eq([q], dict(q=q)))


def test_batched_products_read_as_matrix_products():
    P, Bm = aj.param("P", (5, 2, 3)), aj.param("Bm", (5, 3, 4))
    Z = P @ Bm
    assert body(eq([aj.sum(Z * Z)], dict(Z=Z), [P, Bm])).splitlines()[2:] == expect("""
        Z = P Bm (5, 2, 4)
        L = Σ Z ∘ Z ()
        backward
        L̄ = 1 ()
        Z̄ = L̄ Z + L̄ Z (5, 2, 4)
        P̄ = Z̄ Bmᵀ (5, 2, 3)
        B̅m̅ = Pᵀ Z̄ (5, 3, 4)""").splitlines()
    q, k = aj.input("q", (None, 4, 8)), aj.input("k", (None, 4, 8))
    S = q @ aj.swapaxes(k, -1, -2)
    O = aj.einsum("bij,bjd->bid", S, k)
    text = body(eq([O], dict(S=S, O=O)))
    assert "S = q kᵀ (B, 4, 4)" in text and "O = S k (B, 4, 8)" in text
    tex = eq([O], dict(S=S, O=O), form="latex")
    assert r"S &= q {k}^{\top} && \in \mathbb{R}^{B \times 4 \times 4} \\" in tex


def test_reductions():
    x = aj.input("x", (None, 4))
    s, pr, am = aj.min(x, axis=1), aj.prod(x, axis=1), aj.argmax(x, axis=1)
    mn = aj.argmin(x)
    text = body(eq([s, pr, am, mn], dict(s=s, pr=pr, am=am, mn=mn)))
    for line in ("s = min_axis1 x (B,)", "pr = Π_axis1 x (B,)", "am = argmax_axis1 x (B,)",
                 "mn = argmin_batch,axis1 x ()"):
        assert line in text.splitlines(), line
    tex = eq([s, pr, am], dict(s=s, pr=pr, am=am), form="latex")
    for line in (r"s &= \min_{\text{axis }1} x", r"\mathrm{pr} &= \prod_{\text{axis }1} x",
                 r"\mathrm{am} &= \operatorname{argmax}_{\text{axis }1} x"):
        assert line in tex, line
    L = aj.sum(s) + aj.sum(pr)      # their gradients show too (no function left unnamed)
    grad = body(eq([L], dict(s=s, pr=pr), [x]))
    assert "[x = s] ∘ s̄ / (Σ_axis1 [x = s])" in grad and "Π_axis1" in grad


def test_random_numbers_and_dropout():
    x, key = aj.input("x", (None, 4)), aj.random.key_input()
    u = aj.random.uniform(key, (None, 3))
    d = aj.dropout(x, 0.5, key)
    n = aj.random.normal(key, (3,))
    _, k2 = aj.random.split(key)
    b = aj.random.bits(aj.random.fold_in(k2, 7), (2,))
    name_nodes(dict(u=u, d=d, n=n, b=b))
    text = body(equations([u, d, n, b]).unicode)
    for line in ("u = uniform(key) (B, 3)", "d = where([uniform(key) ≥ 0.5], 2 x, 0) (B, 4)",
                 "n = √(−2 ln(1 − uniform(key))) ∘ cos(6.28319 uniform(key; stream 1)) (3,)",
                 "b = bits(fold_in(split(key; 1); 7)) (2,)"):
        assert line in text.splitlines(), line
    tex = equations([u, n]).latex
    assert r"\operatorname{uniform}\left(\mathrm{key};\ \text{stream 1}\right)" in tex


# --- elementwise ops: a fused region names them as the op does ------------------------------
SINGLE = sorted(name for name, op in REGISTRY.items()
                if op.elementwise and op.arity == 1 and op.scalar is not None
                and op.scalar(sp.Symbol("s", real=True)).args == (sp.Symbol("s", real=True),)
                and name not in ("neg", "abs", "sqrt", "logical_not"))


@pytest.mark.parametrize("op", SINGLE + ["clip", "gelu", "silu", "sigmoid"])
def test_fused_regions_name_ops_as_the_op_does(op):
    x, w = aj.input("x", (3,)), aj.param("w", (3,))
    spec = REGISTRY[op]
    extra = [aj.const(-0.5), aj.const(0.5)] if op == "clip" else []
    y = aj.ops.registry.make(op, [x * w] + [aj.broadcast_to(e, (3,)) for e in extra]) + w
    traced = eq([y], dict(y=y))
    simplified = eq([y], dict(y=y), stage="simplified")
    call = f"{spec.shown_as}(x ∘ w"
    assert call in traced and call in simplified, (traced, simplified)
    assert spec.shown_as in eq([y], dict(y=y), stage="simplified", form="latex") or spec.latex


def test_record_functions_cover_the_elementwise_records():
    names = set(record_functions().values())
    for op in SINGLE:
        assert REGISTRY[op].shown_as in names, op
    assert "ceiling" not in names and "real_floor" not in names


@pytest.mark.parametrize("op, tex", [("floor", r"\left\lfloor x \circ w \right\rfloor"),
                                     ("ceil", r"\left\lceil x \circ w \right\rceil"),
                                     ("exp2", r"2^{x \circ w}"),
                                     ("erf", r"\operatorname{erf}\left(x \circ w\right)")])
def test_latex_templates(op, tex):
    x, w = aj.input("x", (3,)), aj.param("w", (3,))
    y = getattr(aj, op)(x * w)
    for stage in ("traced", "simplified"):
        assert tex in eq([y], dict(y=y), stage=stage, form="latex")


# --- pictures and the report --------------------------------------------------------------
def model():
    x, W = aj.input("x", (None, 4)), aj.param("W", (4, 3))
    E, ids = aj.param("E", (10, 3)), aj.input("ids", (None,), dtype="int64")
    key = aj.random.key_input()
    h = aj.dropout(aj.concatenate([x[::-1, 1:3], x @ W], axis=1), 0.25, key)
    e = aj.take(E, ids, axis=0)
    g = aj.take_along_axis(h, aj.argmax(h, axis=1, keepdims=True), axis=1)
    L = aj.sum(h[:, :3] * e) + aj.sum(aj.pad(g, ((0, 0), (1, 1)))) + aj.sum(aj.min(h, axis=1))
    name_nodes(dict(h=h, e=e, g=g, L=L))
    return aj.compile([L] + aj.grad(L, [x, W, E]), backend="interp")


def test_pictures_name_the_new_ops():
    f = model()
    traced, simplified = dot(f, "traced"), dot(f)
    for label in ("slice [::-1, 1:3]", "concatenate axis 1", "take axis 0",
                  "take_along_axis axis 1", "scatter_add\\n",
                  "scatter_add scatter_along_axis axis 1", "philox uniform", "pad (0, 0), (1, 1)",
                  "argmax\\n", "min\\n"):
        assert label in traced, label
    assert "slice [::-1, 1:3]" in simplified and "scatter_add" in simplified
    # the operands of a gather, a scatter and a join are numbered
    edge = re.compile(r'-> (n\d+) \[label="1"')
    numbered = {m.group(1) for m in edge.finditer(traced)}
    for op in ("take axis 0", "concatenate axis 1", "scatter_add\\n"):
        node = re.search(rf'(n\d+) \[label="[^"]*{re.escape(op)}', traced).group(1)
        assert node in numbered, op


def test_report_runs_with_the_new_ops():
    text = report(model())
    assert text.startswith("simplification report (4 outputs")
    for name in ("L ", "x̄ ", "W̄ ", "Ē "):
        assert f"\n  {name}" in text, name
    assert "fuse" in text


def test_equations_of_the_whole_model_check_out():
    f = model()
    for form in ("unicode", "latex", "markdown"):
        text = equations(f, "both").format(form)
        assert text.count("(") == text.count(")") or form == "unicode"
    flat = body(equations(f).unicode)
    assert "Ē += scatter(ids, ē)" in flat and "e = E[ids]" in flat
    assert "+= scatter_along_axis(" in flat and "x̄[::−1, 1:3] += " in flat


# --- the adjit command on a model file using them ------------------------------------------
MODEL = """
import adjit as aj
E = aj.param("E", (10, 3))
ids = aj.input("ids", (None, 2), dtype="int64")
x = aj.input("x", (None, 4))
W = aj.param("W", (3, 3))
e = aj.take(E, ids, axis=0)
z = aj.concatenate([e[:, 0] @ W, x[:, ::-1]], axis=1)
loss = aj.mean(aj.sum(z * z, axis=1)) + aj.sum(aj.min(e, axis=2))
example = {"ids": [[1, 2], [3, 1]], "x": [[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]],
           "E": [[0.1 * i - 0.2 * j for j in range(3)] for i in range(10)],
           "W": [[0.5, -1.0, 0.25], [1.0, 2.0, -0.5], [0.0, 1.5, 1.0]]}
"""


def test_cli_views_on_a_model_file_using_the_new_ops(tmp_path, capsys):
    path = tmp_path / "embed.py"
    path.write_text(MODEL)
    assert main(["explain", str(path)]) == 0
    out = body(capsys.readouterr().out)
    assert "e = E[ids] (B, 2, 3)" in out and "Ē += scatter(ids, ē) (10, 3)" in out
    assert "z = concat(e[:, 0] W, x[:, ::−1]; axis 1) (B, 7)" in out
    assert "ē[:, 0] += z̄[:, :3] Wᵀ (B, 2, 3)" in out
    assert main(["explain", str(path), "--form", "latex"]) == 0
    assert r"\bar{E} &\mathrel{+}= \operatorname{scatter}" in capsys.readouterr().out
    assert main(["explain", str(path), "--example"]) == 0
    assert "Ē" in capsys.readouterr().out
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "simplification report" in out and "take" in out
    assert main(["dot", str(path), "-o", str(tmp_path / "g.dot")]) == 0
    assert "take axis 0" in (tmp_path / "g.dot").read_text(encoding="utf-8")
