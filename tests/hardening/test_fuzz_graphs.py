"""Random graphs from the op registry, checked three ways: the llvm backend against the
interpreter, the interpreter's gradients against finite differences, and the default
pass pipeline against no passes.

Bounded and seeded (``derandomize=True``) so CI sees the same examples every run.  For a
release check, run more examples::

    ADJIT_FUZZ_EXAMPLES=2000 python -m pytest tests/hardening/test_fuzz_graphs.py
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import adjit as aj
from adjit.nancheck import node_values
from fuzz_graphs import draw_case, near_kink

EXAMPLES = int(os.environ.get("ADJIT_FUZZ_EXAMPLES", "50"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
TOL = {"float64": 1e-9, "float32": 2e-4}


def close(got, want, dtype, scale, what):
    """Equal up to rounding: relative to each value and to the scale of the computation."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.dtype, want.dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def scale_of(graph, vals) -> float:
    """The largest magnitude any float node takes: rounding errors are relative to it."""
    mags = [float(np.max(np.abs(v))) for n, v in ((n, vals[n.id]) for n in graph.order())
            if np.asarray(v).dtype.kind == "f" and np.size(v)]
    return max([1.0] + mags)


@SETTINGS
@given(st.data())
def test_random_graphs_three_ways(data):
    case = draw_case(data)
    outputs = [case.output] + aj.grad(case.loss, case.wrt)
    traced = aj.Graph(outputs)
    batch = case.batch
    vals = node_values(traced, case.values, batch)
    # finite, moderate values only: overflow legitimately differs between evaluation orders
    assume(all(np.all(np.isfinite(vals[n.id])) for n in traced.order()
               if np.asarray(vals[n.id]).dtype.kind == "f"))
    scale = scale_of(traced, vals)
    assume(scale < 1e6)

    reference = aj.compile(outputs, backend="interp", passes=[])(**case.values)
    # 1. the pass pipeline changes no value: of the model alone (its nodes fuse into
    #    larger regions) and of the model with its gradients
    model = aj.compile(case.output, backend="interp")
    alone = model(**{k: case.values[k] for k in model.input_names})
    close(alone, reference[0], case.dtype, scale, "passes vs no passes, the model alone")
    optimized = aj.compile(outputs, backend="interp")(**case.values)
    for k, (a, b) in enumerate(zip(optimized, reference)):
        close(a, b, case.dtype, scale, f"passes vs no passes, output {k}")
    # 2. native code agrees with the interpreter (unoptimized and optimized code: the
    #    optimizer is most of the compile time, so half the examples skip it)
    opt_level = data.draw(st.sampled_from([0, 1]))
    native = aj.compile(outputs, backend="llvm", opt_level=opt_level, cache=False)(**case.values)
    for k, (a, b) in enumerate(zip(native, reference)):
        close(a, b, case.dtype, scale, f"llvm vs interp, output {k}")
    # 3. gradients agree with finite differences (in float64), away from kinks.  Rounding
    #    makes the differences noisy at ~1e-12 of the values' scale, so elements smaller
    #    than 1e-5 of it are compared absolutely (check_grads' floor)
    if case.wrt and not near_kink(traced, vals, eps=1e-2):
        aj.check_grads(case.loss, case.wrt, case.values, rtol=1e-6, floor=1e-5 * scale)


# --- found by fuzzing -------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_where_nested_in_a_comparison_keeps_both_branches(backend):
    x, y, z = (aj.input(k, (3,)) for k in "xyz")
    m = aj.input("m", (3,), "bool")
    out = aj.where(x > aj.where(m, y, z), x, -x)
    values = dict(x=np.ones(3), y=np.zeros(3), z=np.full(3, 2.0),
                  m=np.array([True, False, False]))
    # by hand: where(m, y, z) = [0, 2, 2]; x > that = [T, F, F]; result [1, -1, -1]
    np.testing.assert_array_equal(aj.compile(out, backend="interp", passes=[])(**values),
                                  [1.0, -1.0, -1.0])
    opts = {"opt_level": 1} if backend == "llvm" else {}
    np.testing.assert_array_equal(aj.compile(out, backend=backend, **opts)(**values),
                                  [1.0, -1.0, -1.0])


def test_gradient_of_a_maximum_over_a_where():
    y = aj.input("y", (3,))
    s = aj.param("s", ())
    m = aj.input("m", (3,), "bool")
    L = aj.sum(aj.maximum(0.5, aj.where(m, y, s)) * np.array([1.0, 2.0, 4.0]))
    values = dict(y=np.array([1.0, 0.0, 1.0]), s=np.float64(0.3), m=np.array([True, True, False]))
    # by hand: where = [1, 0, 0.3]; only element 0 exceeds 0.5, and it comes from y
    gy, gs = aj.compile(aj.grad(L, [y, s]), backend="interp", passes=[])(**values)
    np.testing.assert_array_equal(gy, [1.0, 0.0, 0.0])
    assert gs == 0.0
    gy, gs = aj.compile(aj.grad(L, [y, s]), backend="interp")(**values)
    np.testing.assert_array_equal(gy, [1.0, 0.0, 0.0])
    assert gs == 0.0
