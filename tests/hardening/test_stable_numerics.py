"""Numerics stay finite and exact on both backends: logits of ±1000, softplus, log σ(x),
log(1 − σ(x)), and the automatic double-where rule for gradients through `where`.

Expected values are written out by hand in float64 (with the max-shift or the
softplus identity spelled out here), not produced by adjit."""
from __future__ import annotations

import math

import numpy as np
import pytest

import adjit as aj

BACKENDS = ["interp", "llvm"]
BIG = np.array([[1000.0, -1000.0, 0.0],
                [-1000.0, 1000.0, 999.0],
                [1000.0, 1000.0, 1000.0]])
L1E = math.log1p(math.exp(-1))        # log(1 + e^-1)


def run(outputs, backend, **values):
    opts = {"opt_level": 1} if backend == "llvm" else {}
    return aj.compile(outputs, backend=backend, **opts)(**values)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_log_softmax_and_cross_entropy_at_plus_minus_1000(backend, dtype):
    z = aj.input("z", (None, 3), dtype)
    lab = aj.input("lab", (None,), "int64")
    L = aj.cross_entropy(z, lab)
    ls, Lv, gz = run([aj.log_softmax(z), L, aj.grad(L, z)], backend,
                     z=BIG.astype(dtype), lab=np.array([1, 0, 2]))
    expected = np.array([[0.0, -2000.0, -1000.0],
                         [-2000.0 - L1E, -L1E, -1.0 - L1E],
                         [-math.log(3)] * 3])
    tol = {"float64": 1e-15, "float32": 1e-6}[dtype]
    assert ls.dtype == dtype and np.all(np.isfinite(ls)) and np.all(np.isfinite(gz))
    np.testing.assert_allclose(ls, expected, rtol=tol, atol=tol)
    want_L = (2000.0 + (2000.0 + L1E) + math.log(3)) / 3
    assert float(Lv) == pytest.approx(want_L, rel=tol)
    p = np.exp(expected)
    onehot = np.eye(3)[[1, 0, 2]]
    np.testing.assert_allclose(gz, (p - onehot) / 3, rtol=max(tol, 1e-14), atol=tol * 1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softplus_log_sigmoid_and_log_one_minus_sigmoid_never_overflow(backend):
    x = aj.input("x", (None,))
    X = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    outs = [aj.softplus(x), aj.log(aj.sigmoid(x)), aj.log(1.0 - aj.sigmoid(x))]
    grads = [aj.grad(aj.sum(o), x) for o in outs]
    got = run(outs + grads, backend, x=X)
    for g in got:
        assert np.all(np.isfinite(g)), g
    sp, ls, l1ms, dsp, dls, dl1ms = got
    e40 = math.exp(-40)
    # softplus(x) = max(x, 0) + log1p(e^-|x|)
    # log σ(x) = −softplus(−x) and log(1−σ(x)) = −softplus(x)
    np.testing.assert_allclose(sp, [0.0, e40, math.log(2), 40 + e40, 1000.0], rtol=1e-15)
    np.testing.assert_allclose(ls, [-1000.0, -40 - e40, -math.log(2), -e40, 0.0], rtol=1e-15)
    np.testing.assert_allclose(l1ms, [0.0, -e40, -math.log(2), -40 - e40, -1000.0], rtol=1e-15)
    sig = [0.0, e40 / (1 + e40), 0.5, 1 / (1 + e40), 1.0]
    np.testing.assert_allclose(dsp, sig, rtol=1e-14, atol=0)
    np.testing.assert_allclose(dls, sig[::-1], rtol=1e-14, atol=0)       # σ(−x), exactly
    np.testing.assert_allclose(dl1ms, -np.array(sig), rtol=1e-14, atol=0)


def test_stable_log_forms_are_reported_and_gradient_checked():
    x = aj.param("x", (4,))
    L = aj.sum(aj.log(aj.sigmoid(x)) * 2.0 + aj.log(1 - aj.sigmoid(x)))
    f = aj.compile([L, aj.grad(L, x)], backend="interp")
    assert f.traced.rewrites == {"log1m_sigmoid": 1, "log_sigmoid": 1}
    aj.check_grads(L, x, {"x": np.array([-3.0, -0.5, 0.7, 2.5])})
    plain = aj.sum(aj.log(aj.exp(x) + 1.0))                       # no sigmoid: not rewritten
    assert aj.compile(plain, backend="interp").traced.rewrites == {}


SINGULAR = {
    "sqrt": (lambda x: aj.where(x > 0, aj.sqrt(x), 0.0),
             lambda X: np.where(X > 0, 0.5 / np.sqrt(np.maximum(X, 1e-300)), 0.0)),
    "log": (lambda x: aj.where(x > 0, aj.log(x), 0.0),
            lambda X: np.where(X > 0, 1 / np.where(X > 0, X, 1.0), 0.0)),
    "log in the false branch": (lambda x: aj.where(x <= 0, -x, aj.log(x) * x),
                                lambda X: np.where(X <= 0, -1.0,
                                                   np.log(np.where(X > 0, X, 1.0)) + 1)),
    "exp overflow": (lambda x: aj.where(x < 50, aj.exp(x) * x, x),
                     lambda X: np.where(X < 50, np.exp(np.minimum(X, 50)) * (X + 1), 1.0)),
    "nested where": (lambda x: aj.where(x > 0, aj.where(x < 4, aj.log(x) * aj.sqrt(x), 2.0), 0.0),
                     lambda X: np.where((X > 0) & (X < 4),
                                        (lambda Y: 1 / np.sqrt(Y) + np.log(Y) * 0.5 / np.sqrt(Y))(
                                            np.where((X > 0) & (X < 4), X, 1.0)), 0.0)),
    "through a cast": (lambda x: aj.where(x > 0, aj.cast(aj.sqrt(aj.cast(x, "float32")), "float64"),
                                          0.0),
                       lambda X: np.where(X > 0, 0.5 / np.sqrt(np.where(X > 0, X, 1.0)), 0.0)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SINGULAR))
def test_double_where_gives_finite_exact_gradients(backend, name):
    build, derivative = SINGULAR[name]
    x = aj.input("x", (None,))
    X = np.array([-2.0, -0.0, 0.0, 1e-300, 0.5, 2.0, 3.9, 1000.0])
    if "cast" in name:          # 1e-300 rounds to 0 in float32: a true singularity there
        X = X[X != 1e-300]
    y = build(x)
    g = aj.grad(aj.sum(y), x)
    opts = {"opt_level": 1} if backend == "llvm" else {}
    f = aj.compile([y, g], backend=backend, **opts)
    _, got = f(x=X)
    assert np.all(np.isfinite(got)), got
    np.testing.assert_allclose(got, derivative(X), rtol=1e-6 if "cast" in name else 1e-13)
    assert f.traced.rewrites.get("double_where", 0) >= 1


def test_double_where_rule_is_needed_and_exact_where_it_applies():
    """Unguarded, the chain rule gives where(c, g, 0) · 1.5 · sqrt(x) = 0 · NaN at x ≤ 0;
    guarded, the gradient is exact there and equals finite differences elsewhere."""
    x = aj.param("x", (5,))
    y = aj.sum(aj.where(x > 0, aj.sqrt(x) * x, -x))
    X = np.array([-1.5, -0.25, 0.25, 1.0, 2.0])
    aj.check_grads(y, x, {"x": X})
    g = aj.compile(aj.grad(y, x), backend="interp")(x=np.array([-1.0, 0.0, 0.0, 0.0, 4.0]))
    np.testing.assert_array_equal(g, [-1.0, -1.0, -1.0, -1.0, 3.0])


def test_double_where_keeps_true_singularities():
    """A value used outside the branch too keeps its (infinite) gradient: the mask only
    applies where every use of the value is inside the branch."""
    x = aj.input("x", (2,))
    h = aj.log(x)
    y = aj.sum(aj.where(x > 0, h, 0.0)) + aj.sum(h)
    g = aj.compile(aj.grad(y, x), backend="interp")(x=np.array([0.0, 2.0]))
    assert np.isinf(g[0]) and g[1] == pytest.approx(1.0)


def test_double_where_gradients_of_gradients():
    x = aj.param("x", (4,))
    y = aj.sum(aj.where(x > 0, aj.sqrt(x) * x * x, 0.0))
    gx = aj.grad(y, x)
    hx = aj.grad(aj.sum(gx), x)
    X = np.array([-1.0, 0.0, 1.0, 4.0])
    h = aj.compile(hx, backend="interp")(x=X)
    # y = x^2.5 for x > 0: y'' = 3.75 x^0.5
    np.testing.assert_allclose(h, [0.0, 0.0, 3.75, 7.5], rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS + ["ptx"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logsumexp_of_infinite_rows(backend, dtype):
    """A row of -inf (fully masked) gives -inf and a row holding +inf gives +inf, as
    numpy, scipy and PyTorch: the max shift is 0 when the max is infinite (shifting by
    it gave -inf - -inf = NaN).  The gradient is softmax's, NaN where PyTorch's is."""
    x = aj.input("x", (None, 3), dtype)
    rows = np.array([[-np.inf] * 3, [np.inf, 1.0, 2.0], [-np.inf, 0.0, 0.0],
                     [1000.0, 1000.0, -np.inf], [np.nan, 0.0, 0.0]], dtype)
    outs = [aj.logsumexp(x), aj.grad(aj.sum(aj.logsumexp(x)), x)]
    f = (aj.compile(outs, backend="ptx", emulate=True) if backend == "ptx"
         else aj.compile(outs, backend=backend))
    lse, g = f(x=rows)
    want = [-np.inf, np.inf, math.log(2), 1000.0 + math.log(2), np.nan]
    np.testing.assert_allclose(lse, np.array(want, dtype), rtol=1e-6)
    want_g = [[np.nan] * 3, [np.nan, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0],
              [np.nan] * 3]
    np.testing.assert_allclose(g, np.array(want_g, dtype), rtol=1e-6, atol=1e-7)
