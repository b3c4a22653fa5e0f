"""Products that read an unfold as a window (lowering/plan.py ``windows``, llvm
window_gemm.py): the columns are unfolded per image inside the product instead of stored.
Checked against the same graph planned with every unfold stored, bit for bit (the same
GEMM calls on the same values), and against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import build
from adjit.backends.lowering.plan import Plan, window_operand


def _graph(dtype, stride, pad, dilation):
    x = aj.input("x", (None, 3, 7, 6), dtype)
    W = aj.param("W", (5, 3, 3, 2), dtype)
    z = aj.conv2d(x, W, stride=stride, padding=pad, dilation=dilation)
    h = aj.conv2d(aj.tanh(z), aj.param("V", (4, 5, 1, 1), dtype))   # 1x1: K = C
    loss = aj.sum(h * h)
    return [loss, h] + aj.grad(loss, [x, W])


CASES = [((1, 1), 1, (1, 1)), ((2, 1), (1, 0), (1, 2)), ((1, 2), "valid", (2, 1))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride,pad,dilation", CASES)
def test_windows_equal_stored_columns(dtype, stride, pad, dilation):
    outs = _graph(dtype, stride, pad, dilation)
    f = aj.compile(outs, backend="llvm")
    g = f._lowered
    plan = Plan(g, windows=True)
    assert plan.windows, "the convolutions' unfolds should be windows"
    assert all(window_operand(plan, n) is not None for n in plan.steps
               if n.op in ("matmul_sum",))
    assert not any(n.op == "unfold" for n in plan.steps)
    stored = build(g, cache=False, windows=False)
    assert not stored.plan.windows
    interp = aj.compile(outs, backend="interp")
    rng = np.random.default_rng(0)
    for batch in (0, 1, 5, 33):
        args = {"x": rng.standard_normal((batch, 3, 7, 6)).astype(dtype),
                "W": rng.standard_normal((5, 3, 3, 2)).astype(dtype),
                "V": rng.standard_normal((4, 5, 1, 1)).astype(dtype)}
        if batch:
            args["x"][0, 1, 2, 3] = np.nan
        got, want = f(**args), stored({k: args[k] for k in ("x", "W", "V")}, batch)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        ref = interp(**args)
        tol = 1e-4 if dtype == "float32" else 1e-10
        for a, b in zip(got, ref):
            scale = np.nanmax(np.abs(b)) if np.size(b) and not np.isnan(b).all() else 1.0
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)
