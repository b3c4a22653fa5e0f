"""Numerically stable forms by default: no overflow at logits of ±1000.

Expected values are computed by hand in float64 with the max-shift written out here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import adjit as aj
from gradtools import run

BIG = np.array([[1000.0, -1000.0, 0.0],
                [-1000.0, 1000.0, 999.0],
                [1000.0, 1000.0, 1000.0]])


def _log_softmax_rows(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_log_softmax_at_plus_minus_1000():
    z = aj.input("z", (None, 3))
    got = run(aj.log_softmax(z), z=BIG)
    assert np.all(np.isfinite(got))
    # row 1 by hand: log(1 + e^-1) ≈ 0.31326; row 2: every entry is −log 3
    expected = np.array([[0.0, -2000.0, -1000.0],
                         [-2000.0 - math.log1p(math.exp(-1)), -math.log1p(math.exp(-1)),
                          -1 - math.log1p(math.exp(-1))],
                         [-math.log(3)] * 3])
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-13)
    np.testing.assert_allclose(got, _log_softmax_rows(BIG), rtol=1e-15)
    probs = run(aj.softmax(z), z=BIG)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(probs[2], [1 / 3] * 3, rtol=1e-15)


def test_cross_entropy_at_plus_minus_1000_with_gradients():
    z = aj.input("z", (None, 3))
    labels = aj.input("labels", (None,), dtype="int64")
    L = aj.cross_entropy(z, labels)
    lab = np.array([1, 0, 2])
    Lv, gz = run([L, aj.grad(L, z)], z=BIG, labels=lab)
    logp = _log_softmax_rows(BIG)
    assert np.isfinite(Lv) and np.all(np.isfinite(gz))
    np.testing.assert_allclose(Lv, -np.mean(logp[np.arange(3), lab]), rtol=1e-14)
    assert float(Lv) == pytest.approx((2000 + (2000 + math.log1p(math.exp(-1)))
                                       + math.log(3)) / 3, rel=1e-14)
    onehot = np.eye(3)[lab]
    np.testing.assert_allclose(gz, (np.exp(logp) - onehot) / 3, rtol=1e-13, atol=1e-300)
    # one-hot labels give the same numbers
    t = aj.input("t", (None, 3))
    L2 = aj.cross_entropy(z, t)
    np.testing.assert_allclose(run(L2, z=BIG, t=onehot), Lv, rtol=1e-15)
    np.testing.assert_allclose(run(aj.grad(L2, z), z=BIG, t=onehot), gz, rtol=1e-15,
                               atol=1e-300)


def test_softplus_at_plus_minus_1000():
    x = aj.input("x", (4,))
    X = np.array([1000.0, -1000.0, 40.0, -40.0])
    y, g = run([aj.softplus(x), aj.grad(aj.sum(aj.softplus(x)), x)], x=X)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))
    # softplus(x) = max(x, 0) + log(1 + e^-|x|); e^-1000 underflows to exactly 0
    np.testing.assert_allclose(y, [1000.0, 0.0, 40 + math.exp(-40), math.exp(-40)],
                               rtol=1e-15)
    assert y[1] == 0.0
    np.testing.assert_allclose(g, [1.0, 0.0, 1 / (1 + math.exp(-40)), math.exp(-40)],
                               rtol=1e-14, atol=0)


def test_logsumexp_of_huge_values():
    z = aj.input("z", (None, 3))
    got = run(aj.logsumexp(z, axis=1), z=BIG)
    np.testing.assert_allclose(got, [1000.0, 1000.0 + math.log1p(math.exp(-1)),
                                     1000.0 + math.log(3)], rtol=1e-15)
    everything = run(aj.logsumexp(z, axis=None), z=BIG * 1e300 / 1000)   # ±1e300
    assert everything == pytest.approx(1e300 + math.log(4), rel=1e-15)
    g = run(aj.grad(aj.logsumexp(z, axis=None), z), z=BIG)
    assert np.all(np.isfinite(g))
    e = np.exp(BIG - BIG.max())
    np.testing.assert_allclose(g, e / e.sum(), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(g.sum(), 1.0, rtol=1e-14)


def test_sigmoid_at_plus_minus_1000():
    x = aj.input("x", (3,))
    X = np.array([1000.0, -1000.0, 0.0])
    y, g = run([aj.sigmoid(x), aj.grad(aj.sum(aj.sigmoid(x)), x)], x=X)
    np.testing.assert_array_equal(y, [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.25])     # y(1 − y)


def test_float32_log_softmax_at_plus_minus_1000():
    z = aj.input("z", (None, 3), dtype="float32")
    got = run(aj.log_softmax(z), z=BIG.astype("float32"))
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _log_softmax_rows(BIG), rtol=1e-6, atol=1e-4)
