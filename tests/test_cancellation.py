"""Cancelled terms keep numpy's NaN: sympy's algebra cancels x - x, 0*x, x/x and
(a*b + a) - a*b while fusing, as for real numbers; fuse keeps what the cancelled operand
would have contributed for inf, NaN (and a zero divisor), so every backend gives what numpy
gives.  Expected values come from numpy on the same arrays."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj

BACKENDS = ["interp", "llvm", "ptx"]
X = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, -2.0, 3.0, 1e308])
Y = np.array([1.0, 2.0, 3.0, 4.0, -5.0, 6.0, -7.0, 0.0])

CASES = {
    "x - x": (lambda x, y: x - x, lambda x, y: x - x),
    "x * 0": (lambda x, y: x * 0.0, lambda x, y: x * 0.0),
    "0 * x + y": (lambda x, y: 0.0 * x + y, lambda x, y: 0.0 * x + y),
    "x / x": (lambda x, y: x / x, lambda x, y: x / x),
    "y * x / x": (lambda x, y: y * x / x, lambda x, y: y * x / x),
    "0 / x": (lambda x, y: 0.0 / x, lambda x, y: 0.0 / x),
    "(x * y) / y": (lambda x, y: (x * y) / y, lambda x, y: (x * y) / y),
    "minimum(0 / y, x)": (lambda x, y: aj.minimum(0.0 / y, x), lambda x, y: np.minimum(0.0 / y, x)),
    "x - x + y": (lambda x, y: x - x + y, lambda x, y: x - x + y),
    "exp(x - x + 1)": (lambda x, y: aj.exp(x - x + 1.0), lambda x, y: np.exp(x - x + 1.0)),
    "(x*y + x) - x*y": (lambda x, y: (x * y + x) - x * y, lambda x, y: (x * y + x) - x * y),
    "(y + x) - x": (lambda x, y: (y + x) - x, lambda x, y: (y + x) - x),
    # a selection is not arithmetic: the branch not taken adds nothing, NaN or not
    "where(y > 3, x - x, y)": (lambda x, y: aj.where(y > 3.0, x - x, y),
                                lambda x, y: np.where(y > 3.0, x - x, y)),
    # x**0 is 1 for every x, NaN included (numpy.power), so nothing is kept of x there
    "x ** 0 + y": (lambda x, y: x ** 0 + y, lambda x, y: x ** 0 + y),
}


def compile_for(outputs, backend):
    opts = {"emulate": True} if backend == "ptx" else {}
    return aj.compile(outputs, backend=backend, **opts)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cancelled_terms_keep_numpy_nan(case, backend, dtype):
    build, reference = CASES[case]
    x, y = aj.input("x", (None,), dtype), aj.input("y", (None,), dtype)
    f = compile_for([build(x, y) + 0.0 * y], backend)   # every function reads both inputs
    with np.errstate(over="ignore"):            # 1e308 is inf in float32
        xs_all, ys_all = X.astype(dtype), Y.astype(dtype)
    for n in (0, 1, len(X)):                    # batch 0, 1 and the whole table
        xs, ys = xs_all[:n], ys_all[:n]
        got = f(x=xs, y=ys)[0]
        with np.errstate(all="ignore"):
            want = (reference(xs, ys) + 0.0 * ys).astype(dtype)
        assert got.shape == want.shape
        assert np.array_equal(np.isnan(got), np.isnan(want)), (case, got, want)
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=4 * np.finfo(dtype).eps)


def test_no_carrier_without_cancellation():
    """A region where nothing cancels is printed as before: no x - x terms added."""
    x, W = aj.input("x", (None, 3)), aj.param("W", (3, 2))
    L = aj.sum(aj.sigmoid(x @ W) ** 2)
    f = aj.compile([L, aj.grad(L, W)], backend="interp")
    exprs = [n.attr("expr") for n in f.graph.order() if n.op == "fused"]
    assert exprs and not any("zero_of" in str(e) or "one_of" in str(e) for e in exprs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sign_is_not_decided_by_assumptions(backend):
    """sympy reads sign(sigmoid(x)) and sign(exp(x)) as 1 for a real x; numpy gives NaN for
    NaN (and 0 for sigmoid(-inf), exp(-inf))."""
    x = aj.input("x", (None,))
    X = np.array([0.7, np.nan, -np.inf, np.inf, -800.0])
    got = compile_for([aj.sign(aj.sigmoid(x)), aj.sign(aj.exp(x)), aj.sign(aj.abs(x))],
                      backend)(x=X)
    with np.errstate(all="ignore"):
        want = [np.sign(1 / (1 + np.exp(-X))), np.sign(np.exp(X)), np.sign(np.abs(X))]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
