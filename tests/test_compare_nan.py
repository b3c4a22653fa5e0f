"""Comparisons follow IEEE 754 and numpy on every backend, NaN included.

``==`` is true only for ordered equal operands, ``!=`` is its exact negation (true for NaN),
and ``< <= > >=`` are false whenever an operand is NaN -- also for identical operands
(``x != x`` is numpy's ``isnan``) and for infinities (``abs(x) < inf`` is ``isfinite``).
The passes (fuse, cse) and the printers must neither fold such comparisons by reflexivity or
by sympy's assumptions (its real symbols are finite), nor negate one (``not (a < b)`` is not
``a >= b`` with NaN).  Expected values come from numpy; gradients are also checked with
two-sided finite differences in float64.
"""
from __future__ import annotations

import operator

import numpy as np
import pytest

import adjit as aj
from gradtools import finite_differences

BACKENDS = ["interp", "llvm", "ptx"]
DTYPES = ["float64", "float32"]
# name: (the Python operator, which builds a node from nodes and numbers; numpy's function)
OPS = {"equal": (operator.eq, np.equal), "not_equal": (operator.ne, np.not_equal),
       "less": (operator.lt, np.less), "less_equal": (operator.le, np.less_equal),
       "greater": (operator.gt, np.greater), "greater_equal": (operator.ge, np.greater_equal)}
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 1e-300]


def compile_on(outputs, backend):
    if backend == "ptx":
        return aj.compile(outputs, backend="ptx", emulate=True, opt_level=0)
    return aj.compile(outputs, backend=backend)


def pairs(dtype):
    """Every ordered pair of special values (x, y)."""
    v = np.array(SPECIAL, dtype=dtype)
    return np.repeat(v, len(v)), np.tile(v, len(v))


def check(got, want, what, dtype=None):
    """Bools exactly; floats (of ``dtype``) to a few ulp (exp differs by an ulp between
    backends), NaN and infinities where numpy has them."""
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype == bool:
        assert got.dtype == bool, what
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert got.dtype == dtype, (what, got.dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-14, atol=0,
                               err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_comparison_on_special_values(backend, dtype):
    """Each operator on every pair of special values, on identical operands (the same node,
    and two equal sub-expressions that cse merges or sympy canonicalizes to one), against
    constants NaN and ±inf, and fused with arithmetic."""
    x, y = aj.input("x", (None,), dtype), aj.input("y", (None,), dtype)
    X, Y = pairs(dtype)
    cases = []   # (name, node, numpy value)
    with np.errstate(all="ignore"):
        _cases(cases, x, y, X, Y)
    f = compile_on([c[1] for c in cases], backend)
    for (what, _, want), got in zip(cases, f(x=X, y=Y)):
        check(got, np.broadcast_to(want, X.shape), f"{backend} {dtype}: {what}")


def _cases(cases, x, y, X, Y):
    for name, (op, ref) in OPS.items():
        cases += [
            (f"{name}(x, y)", op(x, y), ref(X, Y)),
            (f"{name}(x, x)", op(x, x), ref(X, X)),
            (f"{name}(x + y, y + x)", op(x + y, y + x), ref(X + Y, Y + X)),
            (f"{name}(2x + 1, 2x + 1)", op(2.0 * x + 1.0, 2.0 * x + 1.0), ref(2 * X + 1, 2 * X + 1)),
            (f"{name}(x, nan)", op(x, np.nan), ref(X, np.nan)),
            (f"{name}(x, inf)", op(x, np.inf), ref(X, np.inf)),
            (f"{name}(-inf, x)", op(-np.inf, x), ref(-np.inf, X)),
            (f"{name}(abs(x), inf)", op(aj.abs(x), np.inf), ref(np.abs(X), np.inf)),
            (f"{name}(x*x, y*y) fused", op(x * x, y * y), ref(X * X, Y * Y)),
        ]


def _bool_models(x, y):
    """Comparisons combined by comparisons of bools and by where; NaN makes every ordered
    comparison false, so none of these may be rewritten with a negated relational."""
    F, T = 0.0, 1.0
    return {
        "x != x (isnan)": (x != x, lambda X, Y: X != X),
        "x - y == 0": (x - y == 0.0, lambda X, Y: X - Y == 0),
        "abs(x) < inf (isfinite)": (aj.abs(x) < np.inf, lambda X, Y: np.abs(X) < np.inf),
        "x <= inf": (x <= np.inf, lambda X, Y: X <= np.inf),
        "(x < y) != (x >= y)": ((x < y) != (x >= y), lambda X, Y: (X < Y) != (X >= Y)),
        "(x < y) == (x >= y)": ((x < y) == (x >= y), lambda X, Y: (X < Y) == (X >= Y)),
        "(x > y) < (x <= y)": ((x > y) < (x <= y), lambda X, Y: (X > Y) < (X <= Y)),
        "(x >= y) >= (y > x)": ((x >= y) >= (y > x), lambda X, Y: (X >= Y) >= (Y > X)),
        "(x != x) > (x == x)": ((x != x) > (x == x), lambda X, Y: (X != X) > (X == X)),
        "(x == x) <= (x < y)": ((x == x) <= (x < y), lambda X, Y: (X == X) <= (X < Y)),
        "where(x <= y, 1, where(x > y, 2, 3))": (
            aj.where(x <= y, T, aj.where(x > y, 2.0, 3.0)),
            lambda X, Y: np.where(X <= Y, T, np.where(X > Y, 2.0, 3.0))),
        "where(x < y, where(x >= y, 1, 2), 3)": (
            aj.where(x < y, aj.where(x >= y, T, 2.0), 3.0),
            lambda X, Y: np.where(X < Y, np.where(X >= Y, T, 2.0), 3.0)),
        "where(x == y, 1, where(x != y, 2, 3))": (
            aj.where(x == y, T, aj.where(x != y, 2.0, 3.0)),
            lambda X, Y: np.where(X == Y, T, np.where(X != Y, 2.0, 3.0))),
        "where(x != x, 0, x) (nan filter)": (aj.where(x != x, F, x),
                                             lambda X, Y: np.where(X != X, F, X)),
        "where(x > -inf, where(x < inf, x*y, 0), 0) (finite filter)": (
            aj.where(x > -np.inf, aj.where(x < np.inf, x * y, F), F),
            lambda X, Y: np.where(np.isfinite(X), X * Y, F)),
        "where(abs(x) < inf, exp(x), -1)": (
            aj.where(aj.abs(x) < np.inf, aj.exp(x), -1.0),
            lambda X, Y: np.where(np.abs(X) < np.inf, np.exp(X), -1.0)),
        # a where inside a comparison: sympy folds it out of the condition and must not
        # read the conditions as sets of reals (y < 0 or y >= 0 does not cover NaN)
        "where(x > where(y < 0, 1, where(y >= 0, 2, 3)), x, -x)": (
            aj.where(x > aj.where(y < 0.0, T, aj.where(y >= 0.0, 2.0, 3.0)), x, -x),
            lambda X, Y: np.where(X > np.where(Y < 0, T, np.where(Y >= 0, 2.0, 3.0)), X, -X)),
        "where(where(x != x, y, x) <= y, x, y)": (
            aj.where(aj.where(x != x, y, x) <= y, x, y),
            lambda X, Y: np.where(np.where(X != X, Y, X) <= Y, X, Y)),
        "maximum(x, x) and minimum(x, y)": (aj.maximum(x, x) + aj.minimum(x, y),
                                            lambda X, Y: np.maximum(X, X) + np.minimum(X, Y)),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_combined(backend, dtype):
    x, y = aj.input("x", (None,), dtype), aj.input("y", (None,), dtype)
    X, Y = pairs(dtype)
    models = _bool_models(x, y)
    f = compile_on([m[0] for m in models.values()], backend)
    for (what, (node, ref)), got in zip(models.items(), f(x=X, y=Y)):
        with np.errstate(all="ignore"):
            want = ref(X, Y)
        check(got, want, f"{backend} {dtype}: {what}", node.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_filters_and_their_gradients(backend):
    """``where(x != x, 0, x)`` removes NaN, ``where(abs(x) < inf, x, 0)`` and
    ``where(x > -inf, where(x < inf, x, 0), 0)`` remove NaN and ±inf: the loss is finite and
    its gradient is 0 at the removed entries and the finite differences elsewhere."""
    x = aj.input("x", (None,))
    no_nan = aj.where(x != x, 0.0, x)
    finite = aj.where(aj.abs(x) < np.inf, x, 0.0)
    finite2 = aj.where(x > -np.inf, aj.where(x < np.inf, x, 0.0), 0.0)
    l1 = aj.sum(no_nan * no_nan)
    l2 = aj.sum(finite * finite) + aj.sum(aj.exp(finite2) * 3.0)
    f = compile_on([l1, l2] + aj.grad(l1, [x]) + aj.grad(l2, [x]), backend)

    X = np.array([np.nan, 1.5, -2.0, 0.0, -0.0, np.nan, 0.25])
    v1, v2, g1, g2 = f(x=X)
    keep = ~np.isnan(X)
    np.testing.assert_allclose(v1, np.sum(X[keep] ** 2), rtol=1e-14)
    np.testing.assert_array_equal(g1, np.where(keep, 2 * X, 0.0))

    Xinf = np.array([np.inf, -1.0, np.nan, 0.5, -np.inf, 2.0])
    v1, v2, g1, g2 = f(x=Xinf)
    fin = np.isfinite(Xinf)
    assert np.isnan(v1) or np.isinf(v1)       # inf survives the NaN filter (inf**2 = inf)
    np.testing.assert_allclose(v2, np.sum(Xinf[fin] ** 2) + 3 * np.sum(np.exp(Xinf[fin]))
                               + 3.0 * np.sum(~fin), rtol=1e-14)
    np.testing.assert_allclose(g2, np.where(fin, 2 * Xinf + 3 * np.exp(np.where(fin, Xinf, 0)),
                                            0.0), rtol=1e-14)

    # finite differences at the finite points (the filters are the identity there)
    Xf = np.array([1.5, -2.0, 0.3, -0.7])
    _, _, g1, g2 = f(x=Xf)
    np.testing.assert_allclose(g1, finite_differences(lambda Z: np.sum(Z * Z), Xf), rtol=1e-7)
    np.testing.assert_allclose(g2, finite_differences(lambda Z: np.sum(Z * Z + 3 * np.exp(Z)), Xf), rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_of_identical_operands_are_not_constants(backend):
    """``x op x`` is no constant: its value depends on x (NaN), so the compiled function still
    reads x, and the result differs between NaN and numbers."""
    x = aj.input("x", (None,))
    X = np.array([np.nan, 1.0, -np.inf, 0.0])
    got = compile_on([op(x, x) for op, _ in OPS.values()], backend)(x=X)
    for out, (name, (_, ref)) in zip(got, OPS.items()):
        check(out, ref(X, X), f"{backend}: {name}(x, x)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_x_minus_x_equal_zero_is_isfinite(backend):
    x = aj.input("x", (None,))
    X = np.array([np.nan, np.inf, -np.inf, 1.0])
    check(compile_on([x - x == 0.0], backend)(x=X)[0], np.isfinite(X), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_of_a_comparison_in_another_dtype(backend):
    """A fused region whose comparisons read one float dtype and whose value has another:
    ``where(x32 > 0, 1.0, 2.0)`` is float64 (the llvm printer computed it in float32 and
    failed to store it), ``where(x64 != x64, y32, 0)`` is float32."""
    x32, x64 = aj.input("x32", (None,), "float32"), aj.input("x64", (None,), "float64")
    y32 = aj.input("y32", (None,), "float32")
    outs = [aj.where(x32 > 0.0, 1.0, 2.0),
            aj.where(x64 != x64, y32, 0.0),
            aj.where(x32 * x32 >= 0.25, aj.exp(x64) + 1.0, aj.where(x32 < 0.1, 3.0, -1.0)),
            aj.where(x64 - 0.5 < 1e-300, y32 * 2.0, aj.where(x32 <= x32, y32, 4.0))]
    assert [o.dtype for o in outs] == ["float64", "float32", "float64", "float32"]
    X32 = np.array([np.nan, -1.0, 0.0, 0.3, 0.5, np.inf], np.float32)
    X64 = np.array([0.5, np.nan, -np.inf, 2.0, 0.5 + 1e-16, 1.0])
    Y32 = np.array([1.5, -2.0, 3.0, np.nan, 0.25, -0.0], np.float32)
    got = compile_on(outs, backend)(x32=X32, x64=X64, y32=Y32)
    with np.errstate(all="ignore"):
        want = [np.where(X32 > 0, 1.0, 2.0),
                np.where(X64 != X64, Y32, np.float32(0)),
                np.where(X32 * X32 >= np.float32(0.25), np.exp(X64) + 1.0,
                         np.where(X32 < np.float32(0.1), 3.0, -1.0)),
                np.where(X64 - 0.5 < 1e-300, Y32 * np.float32(2),
                         np.where(X32 <= X32, Y32, np.float32(4)))]
    for k, (g, w, o) in enumerate(zip(got, want, outs)):
        check(g, w.astype(o.dtype), f"{backend}: output {k}", o.dtype)
