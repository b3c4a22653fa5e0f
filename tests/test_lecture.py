"""The lecture-notes examples, with gradients derived by hand.

Each expected value below is written from the chain rule (and, for the vectorized models,
the backward equations computed in numpy), never from adjit's output.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import adjit as aj
from gradtools import RTOL, run


def test_ln_x1_plus_x1x2_minus_sin_x2():
    x1, x2 = aj.input("x1", ()), aj.input("x2", ())
    y = aj.log(x1) + x1 * x2 - aj.sin(x2)
    g1, g2 = aj.grad(y, [x1, x2])
    yv, gv1, gv2 = run([y, g1, g2], x1=2.0, x2=5.0)
    assert float(yv) == pytest.approx(math.log(2) + 10 - math.sin(5), rel=1e-15)
    assert float(gv1) == pytest.approx(5.5, rel=1e-15)              # 1/x1 + x2
    assert float(gv2) == pytest.approx(2 - math.cos(5), rel=1e-15)  # x1 - cos x2
    aj.check_grads(y, [x1, x2], {"x1": 2.0, "x2": 5.0}, rtol=RTOL)


def test_x_plus_y_times_z():
    x, y, z = aj.input("x", ()), aj.input("y", ()), aj.input("z", ())
    f = (x + y) * z
    vals = {"x": -2.0, "y": 5.0, "z": -4.0}
    out, gx, gy, gz = run([f] + aj.grad(f, [x, y, z]), **vals)
    assert float(out) == -12.0
    assert (float(gx), float(gy), float(gz)) == (-4.0, -4.0, 3.0)   # z, z, x + y


def test_e_equals_a_plus_b_times_b_plus_1():
    a, b = aj.input("a", ()), aj.input("b", ())
    c, d = a + b, b + 1
    e = c * d
    out, ga, gb = run([e] + aj.grad(e, [a, b]), a=2.0, b=1.0)
    assert float(out) == 6.0
    assert float(ga) == 2.0   # b + 1
    assert float(gb) == 5.0   # (b + 1) + (a + b) = a + 2b + 1: b fans out to c and d


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_regularized_logistic_least_squares():
    w, b = aj.param("w", ()), aj.param("b", ())
    x, t = aj.input("x", ()), aj.input("t", ())
    lam = 0.1
    z = w * x + b
    y = aj.sigmoid(z)
    L = 0.5 * (y - t) ** 2 + lam / 2 * w ** 2
    gw, gb = aj.grad(L, [w, b])
    vals = {"w": 0.7, "b": -0.3, "x": 1.5, "t": 1.0}
    Lv, gwv, gbv = run([L, gw, gb], **vals)
    zv = 0.7 * 1.5 - 0.3
    yv = _sigmoid(zv)
    z_bar = (yv - 1.0) * yv * (1 - yv)
    assert float(Lv) == pytest.approx(0.5 * (yv - 1.0) ** 2 + lam / 2 * 0.49, rel=1e-14)
    assert float(gwv) == pytest.approx(z_bar * 1.5 + lam * 0.7, rel=1e-13)   # w̄ = z̄x + λw
    assert float(gbv) == pytest.approx(z_bar, rel=1e-13)                     # b̄ = z̄
    aj.check_grads(L, [w, b], vals, rtol=RTOL)


def mlp_model():
    x = aj.input("x", (None, 4))
    t = aj.input("t", (None, 3))
    W1, b1 = aj.param("W1", (4, 5)), aj.param("b1", (5,))
    W2, b2 = aj.param("W2", (5, 3)), aj.param("b2", (3,))
    h = aj.sigmoid(x @ W1 + b1)
    y = h @ W2 + b2
    L = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))    # ½ Σ (y − t)² / B
    return L, (x, t), (W1, b1, W2, b2)


def mlp_values(B=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((B, 4)), "t": rng.standard_normal((B, 3)),
            "W1": rng.standard_normal((4, 5)) * 0.5, "b1": rng.standard_normal(5) * 0.1,
            "W2": rng.standard_normal((5, 3)) * 0.5, "b2": rng.standard_normal(3) * 0.1}


def test_two_layer_mlp_backward_equations():
    L, _, params = mlp_model()
    v = mlp_values()
    out = run([L] + aj.grad(L, list(params)), **v)
    x, t, W1, b1, W2, b2 = (v[k] for k in ("x", "t", "W1", "b1", "W2", "b2"))
    B = x.shape[0]
    # forward
    z = x @ W1 + b1
    h = _sigmoid(z)
    y = h @ W2 + b2
    Lv = 0.5 * np.sum((y - t) ** 2) / B
    # backward, by hand
    y_bar = (y - t) / B
    W2_bar = h.T @ y_bar
    b2_bar = y_bar.sum(axis=0)
    h_bar = y_bar @ W2.T
    z_bar = h_bar * h * (1 - h)
    W1_bar = x.T @ z_bar
    b1_bar = z_bar.sum(axis=0)
    np.testing.assert_allclose(out[0], Lv, rtol=1e-14)
    for got, want in zip(out[1:], (W1_bar, b1_bar, W2_bar, b2_bar)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    aj.check_grads(L, list(params), v, rtol=RTOL)


def softmax_regression_model():
    x = aj.input("x", (None, 4))
    labels = aj.input("labels", (None,), dtype="int64")
    W, b = aj.param("W", (4, 3)), aj.param("b", (3,))
    L = aj.cross_entropy(x @ W + b, labels)
    return L, (x, labels), (W, b)


def softmax_regression_values(B=7, seed=1):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((B, 4)), "labels": rng.integers(0, 3, B),
            "W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}


def test_softmax_regression_cross_entropy():
    L, _, (W, b) = softmax_regression_model()
    v = softmax_regression_values()
    Lv, gW, gb = run([L] + aj.grad(L, [W, b]), **v)
    x, B = v["x"], v["x"].shape[0]
    logits = x @ v["W"] + v["b"]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(3)[v["labels"]]
    np.testing.assert_allclose(Lv, -np.mean(np.log(p[np.arange(B), v["labels"]])), rtol=1e-14)
    np.testing.assert_allclose(gW, x.T @ (p - onehot) / B, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb, (p - onehot).sum(axis=0) / B, rtol=1e-12, atol=1e-15)
    aj.check_grads(L, [W, b], v, rtol=RTOL)


def logistic_model():
    """Vectorized regularized logistic least squares (used by the pass tests too)."""
    x, t = aj.input("x", (None, 3)), aj.input("t", (None,))
    w, b = aj.param("w", (3,)), aj.param("b", ())
    y = aj.sigmoid(x @ w + b)
    L = 0.5 * aj.mean((y - t) ** 2) + 0.05 * aj.sum(w * w)
    return L, (x, t), (w, b)


def logistic_values(B=8, seed=2):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((B, 3)), "t": (rng.random(B) < 0.5).astype(float),
            "w": rng.standard_normal(3), "b": 0.3}


def test_vectorized_logistic_least_squares():
    L, _, (w, b) = logistic_model()
    v = logistic_values()
    Lv, gw, gb = run([L] + aj.grad(L, [w, b]), **v)
    x, t, B = v["x"], v["t"], len(v["t"])
    y = _sigmoid(x @ v["w"] + v["b"])
    z_bar = (y - t) / B * y * (1 - y)
    np.testing.assert_allclose(Lv, 0.5 * np.mean((y - t) ** 2) + 0.05 * v["w"] @ v["w"],
                               rtol=1e-14)
    np.testing.assert_allclose(gw, x.T @ z_bar + 0.1 * v["w"], rtol=1e-12)   # w̄ = xᵀz̄ + λw
    np.testing.assert_allclose(gb, z_bar.sum(), rtol=1e-12)
