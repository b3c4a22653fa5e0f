"""``f.bind(...)``: arguments checked once and fixed for every later call."""
import numpy as np
import pytest

import adjit as aj

BACKENDS = [("interp", {}), ("llvm", {"opt_level": 1})]


def model():
    x, t = aj.input("x", (None, 3)), aj.input("t", (None, 2))
    W, v = aj.param("W", (3, 2)), aj.param("v", (3, 2))
    loss = aj.mse(aj.tanh(x @ W), t)
    g = aj.grad(loss, W)
    v_new = 0.9 * v + g
    return loss, g, {W: W - 0.1 * v_new, v: v_new}


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_bound_step_matches_the_plain_call(backend, opts):
    loss, g, updates = model()
    f = aj.compile([loss, g], backend=backend, updates=updates, **opts)
    rng = np.random.default_rng(3)
    W0 = rng.normal(size=(3, 2))
    Wa, va, Wb, vb = W0.copy(), np.zeros((3, 2)), W0.copy(), np.zeros((3, 2))
    step = f.bind(W=Wa, v=va)
    assert step.input_names == ["t", "x"]
    for k in range(5):
        X, T = rng.normal(size=(4 + k, 3)), rng.normal(size=(4 + k, 2))
        got = step(x=X, t=T)
        want = f(x=X, t=T, W=Wb, v=vb)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13)
        np.testing.assert_allclose(Wa, Wb, rtol=1e-13)
        if k == 2:    # a plain call in between must not leave stale pointers behind
            f(x=X, t=T, W=Wb.copy(), v=vb.copy())
    Wa[...] = 0.0     # writing into a bound array is how a caller changes it
    L0 = step(x=np.ones((2, 3)), t=np.zeros((2, 2)))[0]
    assert float(L0) == 0.0


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_two_bindings_of_one_function_stay_apart(backend, opts):
    x, w = aj.input("x", (None,)), aj.param("w", ())
    f = aj.compile(aj.sum(x * w), backend=backend, **opts)
    g2, g3 = f.bind(w=np.asarray(2.0)), f.bind(w=np.asarray(3.0))
    for _ in range(3):
        assert float(g2(x=np.ones(4))) == 8.0
        assert float(g3(x=np.ones(4))) == 12.0


def test_bind_checks_once_and_names_problems():
    loss, g, updates = model()
    f = aj.compile([loss, g], backend="llvm", opt_level=1, updates=updates)
    with pytest.raises(TypeError, match="unknown 'Q'"):
        f.bind(Q=np.zeros(3))
    with pytest.raises(aj.ShapeError, match="'W'"):
        f.bind(W=np.zeros((2, 3)), v=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'v' is updated in place"):
        f.bind(W=np.zeros((3, 2)), v=np.zeros((3, 2), np.float32))
    step = f.bind(W=np.zeros((3, 2)), v=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="missing 't'"):
        step(x=np.ones((2, 3)))
    with pytest.raises(TypeError, match="unknown 'W'"):
        step(x=np.ones((2, 3)), t=np.ones((2, 2)), W=np.zeros((3, 2)))


def test_bound_batch_dimension_must_agree():
    x, y = aj.input("x", (None, 2)), aj.input("y", (None, 2))
    f = aj.compile(aj.sum(x * y), backend="llvm", opt_level=1)
    g = f.bind(y=np.ones((3, 2)))
    assert float(g(x=np.ones((3, 2)))) == 6.0
    with pytest.raises(aj.ShapeError, match="batch size 4 given.*batch size 3"):
        g(x=np.ones((4, 2)))


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_inputs_the_lowered_graph_no_longer_reads(backend, opts):
    """A gradient takes the model's inputs even where the passes removed every use."""
    x, t = aj.input("x", (None,)), aj.input("t", (None,))
    w = aj.param("w", ())
    loss = aj.sum(w * x + aj.sign(t))         # d/dw reads x only; t has no use left
    f = aj.compile(aj.grad(loss, w), backend=backend, **opts)
    assert "t" in f.input_names
    X = np.array([1.0, 2.0])
    assert float(f(x=X, t=X, w=1.0)) == 3.0
    assert float(f.bind(t=X)(x=X, w=1.0)) == 3.0
    assert float(f.bind(w=np.asarray(1.0))(x=X, t=X)) == 3.0
