"""Worked examples: the lecture's primal and adjoint trace, with numbers from the oracle."""
from __future__ import annotations

import math

import numpy as np
import pytest

from adjit.show import trace
from adjit.show.trace import format_value
from goldens import check_golden, compiled


def test_lecture_trace_reproduces_the_adjoints():
    m, f = compiled("lecture_scalar")
    t = f.trace(**m.example)
    x1, x2 = 2.0, 5.0
    assert float(t.value("x̄1")) == pytest.approx(1 / x1 + x2, rel=1e-15)       # 5.5
    assert float(t.value("x̄2")) == pytest.approx(x1 - math.cos(x2), rel=1e-15)  # 1.716...
    assert float(t.value("f")) == pytest.approx(math.log(x1) + x1 * x2 - math.sin(x2), rel=1e-15)
    text = str(t)
    assert text.rstrip().endswith("x̄1 = f̄ x2 + f̄ / x1                = 5.5")
    assert "x̄2 = v̄4 cos(x2) + f̄ x1" in text and "= 1.716" in text
    check_golden("trace_lecture_scalar.txt", text + "\n")
    check_golden("trace_lecture_scalar.md", t.markdown + "\n")


def test_logistic_trace_matches_the_chain_rule_by_hand():
    m, f = compiled("logistic")
    t = trace(f, m.example)
    w, b, x, tt, lam = 0.7, -0.3, 1.5, 1.0, 0.1
    y = 1 / (1 + math.exp(-(w * x + b)))
    z_bar = (y - tt) * y * (1 - y)
    assert float(t.value("z̄")) == pytest.approx(z_bar, rel=1e-14)
    assert float(t.value("w̄")) == pytest.approx(z_bar * x + lam * w, rel=1e-14)
    assert float(t.value("b̄")) == pytest.approx(z_bar, rel=1e-14)
    assert float(t.value("R̄")) == pytest.approx(lam, rel=1e-15)
    check_golden("trace_logistic.txt", str(t) + "\n")


def test_tensor_trace_summarizes_arrays_and_checks_its_inputs():
    m, f = compiled("softmax_regression")
    t = f.trace(**m.example)
    W_bar = t.value("W̄")
    x, labels = m.example["x"], m.example["labels"]
    logits = x @ m.example["W"] + m.example["b"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(W_bar, x.T @ (p - np.eye(10)[labels]) / len(x), rtol=1e-12,
                               atol=1e-15)
    assert "(32, 10)" in str(t) and "…" in str(t)
    with pytest.raises(TypeError, match="missing 'labels'"):
        f.trace(x=x, W=m.example["W"], b=m.example["b"])
    with pytest.raises(KeyError, match="no row named 'q'"):
        t.value("q")


def test_format_value():
    assert format_value(5.5) == "5.5" and format_value(1.7163378145367738) == "1.716"
    assert format_value(-0.5) == "−0.5" and format_value(np.float32(2.0)) == "2"
    assert format_value(np.array([1.0, 2.5])) == "[1, 2.5]"
    assert format_value(np.arange(6.0).reshape(2, 3)) == "[0, 1, 2, …] (2, 3)"
    assert format_value(np.array(True)) == "1"


def test_trace_latex_form():
    m, f = compiled("lecture_scalar")
    tex = f.trace(**m.example).format("latex")
    assert r"\bar{x}_{1} &= \bar{f} x_{2} + \frac{\bar{f}}{x_{1}} && = 5.5 \\" in tex
    with pytest.raises(ValueError, match="'pdf'"):
        f.trace(**m.example).format("pdf")
