"""``aj.compile(..., check_nans=True)`` names the first node producing NaN/inf."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj

BACKENDS = ["interp", "llvm"]


def compile_(outputs, backend, **kw):
    opts = {"opt_level": 1} if backend == "llvm" else {}
    return aj.compile(outputs, backend=backend, check_nans=True, **opts, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_the_op_the_user_name_and_the_shape(backend):
    x = aj.input("x", (None, 3))
    w = aj.param("w", (3,))
    h = aj.sqrt(x * w - 1.0)
    h.meta["name"] = "h"
    L = aj.sum(aj.tanh(h))
    f = compile_([L, aj.grad(L, w)], backend)
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ok = f(x=X, w=np.array([2.0, 1.0, 1.0]))       # finite: no error, results as usual
    assert np.isfinite(ok[0])
    with pytest.raises(aj.NonFiniteError) as err:
        f(x=X, w=np.array([2.0, 0.25, 1.0]))       # x*w - 1 < 0 at (0, 1) only
    e = err.value
    assert isinstance(e, FloatingPointError) and e.output == 0
    assert e.node.op == "sqrt" and e.node.name == "h" and e.index == (0, 1)
    assert e.nan == 1 and e.inf == 0 and e.stage == "traced"
    msg = str(e)
    assert "sqrt" in msg and "'h'" in msg and "(2, 3)" in msg and "index (0, 1)" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_follows_the_selected_operand_not_a_discarded_one(backend):
    """log(x) is NaN where x < 0, but `where` discards it there; the inf comes from 1/y."""
    x = aj.input("x", (4,))
    y = aj.input("y", (4,))
    out = aj.where(x > 0, aj.log(x), 0.0) + 1.0 / y
    f = compile_(out, backend)
    f(x=np.array([-1.0, 1, 2, 3]), y=np.ones(4))   # the discarded NaN raises nothing
    with pytest.raises(aj.NonFiniteError) as err:
        f(x=np.array([-1.0, 1, 2, 3]), y=np.array([1.0, 1, 0, 1]))
    assert err.value.node.op == "div" and err.value.index == (2,) and err.value.inf == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_blames_an_input_that_brings_nan_in(backend):
    x = aj.input("x", (None, 2))
    f = compile_(aj.sum(aj.exp(x), axis=1), backend)
    with pytest.raises(aj.NonFiniteError, match=r"input 'x' float64\(3, 2\) was given 1 NaN"):
        f(x=np.array([[0.0, 1.0], [np.nan, 0.0], [2.0, 2.0]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_overflow_in_a_gradient(backend):
    x = aj.param("x", (3,))
    L = aj.sum(aj.exp(x * x))
    f = compile_([L, aj.grad(L, x)], backend)
    with pytest.raises(aj.NonFiniteError) as err:
        f(x=np.array([1.0, 30.0, 0.0]))            # exp(900) overflows
    assert err.value.node.op == "exp" and err.value.index == (1,)


def test_in_place_updates_are_checked_against_the_values_before_the_call():
    w = aj.param("w", (2,))
    x = aj.input("x", (2,))
    L = aj.sum(w * x)
    f = aj.compile(L, opt_level=1, check_nans=True, updates={w: aj.log(w)})
    W = np.array([2.0, 3.0])
    f(w=W, x=np.ones(2))
    np.testing.assert_allclose(W, np.log([2.0, 3.0]))
    W2 = np.array([1.0, -1.0])
    with pytest.raises(aj.NonFiniteError) as err:
        f(w=W2, x=np.ones(2))
    assert err.value.node.op == "log" and err.value.index == (1,)


def test_off_by_default_and_inspection_still_works():
    x = aj.input("x", (2,))
    f = aj.compile(aj.log(x), opt_level=1)
    assert np.isnan(f(x=np.array([-1.0, 1.0]))[0])
    g = aj.compile(aj.log(x), opt_level=1, check_nans=True)
    assert "adjit_entry" in g.llvm_ir and g.cache_info


@pytest.mark.parametrize("backend", BACKENDS)
def test_bound_and_native_calls_are_checked_too(backend):
    """No route around the check: a bound function's calls and well-formed arrays (which
    would otherwise take the native fast path) raise as plain calls do."""
    x = aj.input("x", (None, 2))
    w = aj.param("w", (2,))
    f = compile_(aj.log(x @ w), backend)
    assert type(f).__call__ is aj.Compiled.__call__          # no native __call__
    bad = np.array([[-1.0, -1.0]])
    with pytest.raises(aj.NonFiniteError):
        f(x=bad, w=np.ones(2))
    with pytest.raises(aj.NonFiniteError):
        f.bind(w=np.ones(2))(x=bad)
