"""Reductions that compute their elementwise operand (lowering/plan.py ``inline_reduced``):
``sum((x - m)**2, axes)`` reads x and m and never stores the squares.  Checked against the
interpreter and against the same graph planned with the operand stored."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import build
from adjit.backends.lowering.plan import Plan, inlined_operand


def _stored(g):
    return build(g, cache=False, windows=False)


AXES = [(0, 2, 3), (2, 3), (1,), (0,), (0, 1, 2, 3), (3,)]


@pytest.mark.parametrize("reduce", ["sum", "max", "min", "prod"])
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inline_reductions(reduce, axes, dtype):
    x = aj.input("x", (None, 3, 4, 5), dtype)
    m = aj.param("m", (1, 3, 1, 1), dtype)
    s = aj.param("s", (5,), dtype)
    e = aj.tanh((x - m) * s) + 0.5 if reduce == "prod" else (x - m) ** 2 * s
    r = getattr(aj, reduce)(e, axis=axes)
    outs = [r, aj.sum(x * x)]
    f = aj.compile(outs, backend="llvm")
    plan = Plan(f._lowered, windows=True)
    assert any(inlined_operand(plan, n) is not None for n in plan.steps)
    stored = _stored(f._lowered)
    interp = aj.compile(outs, backend="interp")
    rng = np.random.default_rng(2)
    for batch in (0, 1, 7):
        args = {"x": rng.standard_normal((batch, 3, 4, 5)).astype(dtype),
                "m": rng.standard_normal((1, 3, 1, 1)).astype(dtype),
                "s": rng.standard_normal(5).astype(dtype)}
        if batch > 1:
            args["x"][1, 2, 3, 4] = np.nan
            args["x"][0, 0, 0, 0] = np.inf
        got, ref = f(**args), interp(**args)
        want = stored(dict(args), batch)
        tol = 1e-5 if dtype == "float32" else 1e-12
        for a, b, c in zip(got, ref, want):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
            np.testing.assert_allclose(a, c, rtol=tol, atol=tol)


def test_operands_read_twice_are_stored():
    """An elementwise node also read by another step (or an output) is computed once."""
    x = aj.input("x", (None, 3), "float32")
    e = aj.exp(x) * 2.0
    f = aj.compile([aj.sum(e, axis=0), e * 3.0], backend="llvm")
    plan = Plan(f._lowered, windows=True)
    assert all(inlined_operand(plan, n) is None for n in plan.steps)
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = f(x=v)
    np.testing.assert_allclose(got[0], (np.exp(v) * 2).sum(0), rtol=1e-6)


@pytest.mark.parametrize("axes", [(0, 2, 3), (2, 3), (1, 3), (3,)])
def test_large_reductions_split_over_threads(axes):
    """Big enough for the pool's worker: output rows split over threads, each element
    summed by one thread in one order (the result does not depend on the split)."""
    x = aj.input("x", (None, 64, 16, 32), "float64")
    m = aj.param("m", (1, 64, 1, 1), "float64")
    outs = [aj.sum((x - m) ** 2, axis=axes), aj.max(x, axis=axes), aj.sum(x, axis=axes)]
    f = aj.compile(outs, backend="llvm")
    rng = np.random.default_rng(3)
    for batch in (1, 9):
        xv, mv = rng.standard_normal((batch, 64, 16, 32)), rng.standard_normal((1, 64, 1, 1))
        xv[batch - 1, 5, 3, 7] = np.nan
        got = f(x=xv, m=mv)
        want = [((xv - mv) ** 2).sum(axis=axes), xv.max(axis=axes), xv.sum(axis=axes)]
        for a, w in zip(got, want):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(w))
            np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-9)
        for a, c in zip(got, f(x=xv, m=mv)):
            np.testing.assert_array_equal(a, c)
