"""aj.hvp (forward-over-reverse) against reverse-over-reverse and finite differences; jvp
and grad composed both ways; inputs that break things (where-masked singularities, zeros,
negative bases, ±inf, NaN); declaration errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx")]

import adjit as aj  # noqa: E402
from adjit.ir import DTypeError, ShapeError  # noqa: E402
from gradtools import run  # noqa: E402
from ptx_helpers import emulated  # noqa: E402
import test_where_masks as masks  # noqa: E402


def _rng(seed):
    return np.random.default_rng(seed)


def _reverse_over_reverse(L, params, dirs):
    grads = aj.grad(L, params)
    dot = aj.sum(grads[0] * dirs[0])
    for g, v in zip(grads[1:], dirs[1:]):
        dot = dot + aj.sum(g * v)
    return aj.grad(dot, params)


def _mlp():
    x, t = aj.input("x", (None, 5)), aj.input("t", (None,), "int64")
    W1, b1 = aj.param("W1", (5, 7)), aj.param("b1", (7,))
    W2, b2 = aj.param("W2", (7, 6)), aj.param("b2", (6,))
    W3 = aj.param("W3", (6, 3))
    h = aj.tanh(x @ W1 + b1)
    h = aj.relu(h @ W2 + b2) + 0.1 * aj.sigmoid(h @ W2)
    L = aj.cross_entropy(h @ W3, t) + 0.01 * aj.sum(W1 * W1)
    rng = _rng(1)
    values = {"x": rng.standard_normal((4, 5)), "t": np.array([0, 2, 1, 2]),
              "W1": rng.standard_normal((5, 7)), "b1": rng.standard_normal(7),
              "W2": rng.standard_normal((7, 6)), "b2": rng.standard_normal(6),
              "W3": rng.standard_normal((6, 3))}
    return L, [W1, b1, W2, b2, W3], values


def _convnet():
    x, t = aj.input("x", (None, 2, 6, 6)), aj.input("t", (None,), "int64")
    W1, b1 = aj.param("W1", (4, 2, 3, 3)), aj.param("b1", (4,))
    W2 = aj.param("W2", (4, 2, 2, 2))
    D = aj.param("D", (4 * 1 * 1, 3))
    h = aj.relu(aj.conv2d(x, W1, b1, padding=1))
    h = aj.max_pool2d(h, 2)                                  # (N, 4, 3, 3)
    h = aj.tanh(aj.conv2d(h, W2, groups=2))                   # (N, 4, 2, 2)
    h = aj.avg_pool2d(h, 2)                                  # (N, 4, 1, 1)
    L = aj.cross_entropy(aj.reshape(h, (None, 4)) @ D, t)
    rng = _rng(2)
    values = {"x": rng.standard_normal((3, 2, 6, 6)), "t": np.array([0, 2, 1]),
              "W1": rng.standard_normal((4, 2, 3, 3)) * 0.5, "b1": rng.standard_normal(4),
              "W2": rng.standard_normal((4, 2, 2, 2)) * 0.5, "D": rng.standard_normal((4, 3))}
    return L, [W1, b1, W2, D], values


def _kinks():
    """Ops with kinks, evaluated away from them (|x| >= 0.3 from each kink)."""
    x, y = aj.input("x", (6,)), aj.input("y", (6,))
    L = (aj.sum(aj.abs(x) * y) + aj.sum(aj.maximum(x, y) ** 2) + aj.sum(aj.clip(x * y, -0.5, 0.5))
         + aj.max(x * y) + aj.prod(x) + aj.sum(aj.leaky_relu(x, 0.1) * aj.elu(y, 1.0))
         + aj.min(aj.minimum(x, -y)) ** 2)
    values = {"x": np.array([1.3, -0.8, 2.1, -1.6, 0.9, -2.4]),
              "y": np.array([-0.5, 1.7, 0.4, -1.1, 2.6, 0.6])}
    return L, [x, y], values


MODELS = {"mlp": _mlp, "convnet": _convnet, "kinks": _kinks}


def _dirs(params, seed=3):
    rng = _rng(seed)
    nodes = [aj.input("v_" + p.name, p.shape) for p in params]
    return nodes, {n.name: rng.standard_normal(n.shape) for n in nodes}


@pytest.mark.parametrize("backend", ["interp", "llvm", "ptx"])
@pytest.mark.parametrize("model", list(MODELS))
def test_hvp_equals_reverse_over_reverse(model, backend):
    L, params, values = MODELS[model]()
    dirs, dv = _dirs(params)
    fwd = aj.hvp(L, params, dirs)
    rev = _reverse_over_reverse(L, params, dirs)
    call = {**values, **dv}
    compile_ = emulated if backend == "ptx" else (lambda o: aj.compile(o, backend=backend))
    got, want = compile_(fwd)(**call), compile_(rev)(**call)
    for p, a, b in zip(params, got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=p.name)


@pytest.mark.parametrize("model", list(MODELS))
def test_hvp_against_finite_differences_of_the_gradient(model):
    L, params, values = MODELS[model]()
    dirs, dv = _dirs(params)
    hv = run(aj.hvp(L, params, dirs), **values, **dv)
    g = aj.compile(aj.grad(L, params), backend="interp")
    h = 1e-5
    moved = lambda s: {**values, **{p.name: values[p.name] + s * h * dv["v_" + p.name]  # noqa: E731
                                    for p in params}}
    up, down = g(**moved(1)), g(**moved(-1))
    for p, a, u, d in zip(params, hv, up, down):
        np.testing.assert_allclose(a, (u - d) / (2 * h), rtol=1e-6, atol=1e-7, err_msg=p.name)


def test_hvp_of_the_tiny_example_by_hand():
    x = aj.input("x", (2,))
    hv = aj.hvp(aj.sum(x * x * x) + x[0] * x[1], x, aj.const([1.0, 0.0]))
    np.testing.assert_allclose(run(hv, x=np.array([1.0, 2.0])), [6.0, 1.0])


def test_grad_of_jvp_and_jvp_of_grad():
    """d/dx ⟨u, J(x) v⟩ is the reverse-over-reverse HVP form; d/dv ⟨u, J v⟩ = Jᵀ u;
    jvp of grad is the HVP; jvp of jvp is vᵀ H w."""
    x, v, u, w = (aj.input(n, (None, 3)) for n in "xvuw")
    W = aj.param("W", (3, 3))
    y = aj.tanh(x @ W) * aj.exp(0.3 * x)
    ydot = aj.jvp(y, x, v)
    gx, gv = aj.grad(aj.sum(ydot * u), [x, v])
    vjp = aj.grad(aj.sum(y * u), x)
    want_gx = aj.grad(aj.sum(vjp * v), x)
    L = aj.sum(y * y)
    hv1, hv2 = aj.jvp(aj.grad(L, x), x, v), aj.grad(aj.sum(aj.grad(L, x) * v), x)
    vhw1 = aj.jvp(aj.jvp(L, x, v), x, w)
    vhw2 = aj.sum(hv2 * w)
    rng = _rng(4)
    vals = {k: rng.standard_normal((2, 3)) for k in "xvuw"}
    vals["W"] = rng.standard_normal((3, 3))
    for backend in ("interp", "llvm"):
        got = aj.compile([gx, want_gx, gv, vjp, hv1, hv2, vhw1, vhw2], backend=backend)(**vals)
        for a, b in zip(got[::2], got[1::2]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --- inputs that break things -------------------------------------------------------------
@pytest.mark.parametrize("backend", ["interp", "llvm", "ptx"])
@pytest.mark.parametrize("name", list(masks.CASES))
def test_jvp_through_where_masked_singularities(backend, name):
    """The cases of test_where_masks.py (sqrt, log, NaN data, inf behind structural ops in
    the branch not taken): the tangent is finite and equals finite differences of the
    numpy reference along the tangent; the forward-over-reverse HVP is finite and equals
    mixed second differences."""
    nodes, values, wrt, out, loss, u, f = masks._setup(name)
    rng = _rng(7)
    dirs = {k: rng.standard_normal(values[k].shape) for k in wrt}
    vs = [aj.input("v_" + k, nodes[k].shape) for k in wrt]
    tangent = aj.jvp(loss, [nodes[k] for k in wrt], vs)
    hv = aj.hvp(loss, [nodes[k] for k in wrt], vs)
    fn = masks.compile_on([tangent] + hv, backend)
    call = {**values, "u_ct": u, **{"v_" + k: d for k, d in dirs.items()}}
    h = 1e-6
    with np.errstate(all="ignore"):
        got = fn(**{k: v for k, v in call.items() if k in fn.input_names})
        fd = (f(**{k: values[k] + h * d for k, d in dirs.items()})
              - f(**{k: values[k] - h * d for k, d in dirs.items()})) / (2 * h)
        assert np.isfinite(got[0])
        np.testing.assert_allclose(got[0], fd, rtol=1e-6, atol=1e-8)
        for k, g in zip(wrt, got[1:]):
            assert np.all(np.isfinite(g)), (k, g)
            np.testing.assert_allclose(g, masks._fd_hvp(f, values, wrt, dirs, k),
                                       rtol=1e-5, atol=1e-5, err_msg=k)


def test_a_where_selects_the_tangent_of_its_branch():
    """sqrt and log at 0 and below, under a where: the tangent is exact and finite (never
    0 · inf); outside any where, the tangent is what the maths says (inf at sqrt(0))."""
    x, v = aj.input("x", (5,)), aj.input("v", (5,))
    xs = np.array([0.0, -1.0, 4.0, 0.25, -0.0])
    vs = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    guarded = aj.where(x > 0, aj.sqrt(x) + aj.log(x), 0.0)
    bare = aj.sqrt(x)
    for backend in ("interp", "llvm"):
        f = aj.compile(aj.jvp([guarded, bare], x, v), backend=backend)
        with np.errstate(all="ignore"):
            g, b = f(x=xs, v=vs)
        np.testing.assert_allclose(g, np.where(xs > 0, vs * (0.5 / np.sqrt(np.abs(xs) + (xs <= 0))
                                                          + 1 / np.where(xs > 0, xs, 1)), 0.0))
        assert b[0] == np.inf and np.isnan(b[1])


def test_special_values():
    """Zeros, negative bases for pow, ±inf and NaN, against the derivative's formula."""
    x, v = aj.input("x", (6,)), aj.input("v", (6,))
    xs = np.array([0.0, -2.0, -np.inf, np.inf, np.nan, 3.0])
    vs = np.ones(6)
    outs = aj.jvp([x ** 3, x ** 2.0, aj.exp(x), aj.relu(x), aj.tanh(x), x * 0.0 + 1.0,
                   aj.abs(x)], x, v)
    with np.errstate(all="ignore"):
        got = aj.compile(outs, backend="llvm")(x=xs, v=vs)
        np.testing.assert_array_equal(got[0], 3 * xs ** 2)
        np.testing.assert_array_equal(got[1], 2 * xs)
        np.testing.assert_array_equal(got[2], np.exp(xs))
        np.testing.assert_array_equal(got[3][[0, 1, 2, 3, 5]], [0.0, 0.0, 0.0, 1.0, 1.0])
        np.testing.assert_array_equal(got[4][[0, 1, 2, 3]],
                                      [1.0, 1 - np.tanh(-2.0) ** 2, 0.0, 0.0])
        assert np.isnan(got[4][4]) and np.isnan(got[0][4])     # NaN in, NaN out (as JAX)
        np.testing.assert_array_equal(got[6][[0, 1, 5]], [0.0, -1.0, 1.0])
    # a negative base with a runtime exponent: d/da a**b = b a**(b-1), exact for integer b
    a, b = aj.input("a", (3,)), aj.input("b", (3,))
    t = aj.jvp(a ** b, [a, b], [aj.input("da", (3,)), aj.input("db", (3,))])
    got = run(t, a=np.array([-2.0, 0.0, -3.0]), b=np.array([3.0, 2.0, 0.0]),
              da=np.ones(3), db=np.zeros(3))
    np.testing.assert_array_equal(got, [12.0, 0.0, 0.0])


def test_outputs_and_tangents_of_any_shape_and_results_compose():
    x = aj.input("x", (None, 3))
    v = aj.input("v", (None, 3))
    c = aj.input("c", (2,))
    outs = aj.jvp([x * 2.0, aj.sum(x), c * 3.0], x, v)
    assert [o.shape for o in outs] == [(None, 3), (), (2,)]
    f = aj.compile(outs, backend="interp")
    assert set(f.input_names) >= {"x", "v", "c"}
    got = f(x=np.ones((2, 3)), v=np.full((2, 3), 2.0), c=np.ones(2))
    np.testing.assert_array_equal(got[0], np.full((2, 3), 4.0))
    assert got[1] == 12.0
    np.testing.assert_array_equal(got[2], np.zeros(2))
    # numbers as tangents, and an intermediate value as the variable
    h = aj.exp(x)
    t = aj.jvp(aj.sum(h * h), h, 1.0)
    np.testing.assert_allclose(run(t, x=np.zeros((2, 3))), 12.0)


def test_errors_name_the_operands():
    x, k = aj.input("x", (3,)), aj.input("k", (3,), "int64")
    with pytest.raises(ShapeError, match="tangent .* of variable x"):
        aj.jvp(x * 2.0, x, aj.input("v", (4,)))
    with pytest.raises(DTypeError, match="variable k"):
        aj.jvp(x * 2.0, k, aj.input("v", (3,), "int64"))
    with pytest.raises(DTypeError, match=r"tangent v \(float32\)"):
        aj.jvp(x * 2.0, x, aj.input("v", (3,), "float32"))
    with pytest.raises(TypeError, match="2 variable"):
        aj.jvp(x * 2.0, [x, x], [aj.input("v", (3,))])
    with pytest.raises(DTypeError, match="output"):
        aj.jvp(x > 0.0, x, aj.input("v", (3,)))
    with pytest.raises(ShapeError, match="scalar"):
        aj.hvp(x * 2.0, x, aj.input("v", (3,)))
