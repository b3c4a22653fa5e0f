"""``compile(..., updates=...)``: state written in place, checked against numpy step by step."""
import numpy as np
import pytest

import adjit as aj

BACKENDS = [("interp", {}), ("llvm", {"opt_level": 1})]


def momentum_model():
    x = aj.input("x", (None, 3))
    t = aj.input("t", (None, 2))
    W = aj.param("W", (3, 2))
    v = aj.param("v", (3, 2))
    loss = aj.mse(aj.tanh(x @ W), t)
    g = aj.grad(loss, W)
    v_new = 0.9 * v + g
    return x, t, W, v, loss, g, {W: W - 0.1 * v_new, v: v_new}


def numpy_step(X, T, W, v):
    y = np.tanh(X @ W)
    loss = np.mean((y - T) ** 2)
    g = X.T @ ((2.0 / y.size) * (y - T) * (1 - y ** 2))
    v = 0.9 * v + g
    return loss, g, W - 0.1 * v, v


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_momentum_steps_match_numpy(backend, opts):
    x, t, W, v, loss, g, updates = momentum_model()
    f = aj.compile([loss, g], backend=backend, updates=updates, **opts)
    rng = np.random.default_rng(1)
    Wa, va = rng.normal(size=(3, 2)), np.zeros((3, 2))
    Wr, vr = Wa.copy(), va.copy()
    for step in range(4):
        X, T = rng.normal(size=(5 + step, 3)), rng.normal(size=(5 + step, 2))
        L, G = f(x=X, t=T, W=Wa, v=va)
        Lr, Gr, Wr, vr = numpy_step(X, T, Wr, vr)
        # the returned gradient is taken at the parameters from before the call
        np.testing.assert_allclose(L, Lr, rtol=1e-12)
        np.testing.assert_allclose(G, Gr, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(Wa, Wr, rtol=1e-10)
        np.testing.assert_allclose(va, vr, rtol=1e-10)


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_every_new_value_reads_the_old_state(backend, opts):
    a, b = aj.param("a", (4,)), aj.param("b", (4,))
    f = aj.compile(aj.sum(a * b), backend=backend, updates={a: a + b, b: a - b}, **opts)
    A, B = np.arange(4.0), np.full(4, 10.0)
    out = f(a=A, b=B)
    assert float(out) == pytest.approx(float(np.sum(np.arange(4.0) * 10.0)))
    np.testing.assert_array_equal(A, np.arange(4.0) + 10.0)
    np.testing.assert_array_equal(B, np.arange(4.0) - 10.0)


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_returned_outputs_do_not_alias_state(backend, opts):
    w = aj.param("w", (3,))
    f = aj.compile([w * 1.0, w * 2.0], backend=backend, updates={w: w * 2.0}, **opts)
    W = np.ones(3)
    first, doubled = f(w=W)
    np.testing.assert_array_equal(W, 2.0)
    f(w=W)
    np.testing.assert_array_equal(first, 1.0)
    np.testing.assert_array_equal(doubled, 2.0)
    np.testing.assert_array_equal(W, 4.0)


@pytest.mark.parametrize("backend,opts", BACKENDS)
def test_state_array_must_be_the_callers_own(backend, opts):
    w = aj.param("w", (3,), dtype="float32")
    f = aj.compile(aj.sum(w), backend=backend, updates={w: w - 1.0}, **opts)
    with pytest.raises(ValueError, match="'w' is updated in place.*float64"):
        f(w=np.ones(3))                      # would be converted into a copy
    with pytest.raises(ValueError, match="read-only"):
        ro = np.ones(3, dtype=np.float32)
        ro.flags.writeable = False
        f(w=ro)
    with pytest.raises(ValueError, match="not C-contiguous"):
        f(w=np.ones(6, dtype=np.float32)[::2])
    with pytest.raises(ValueError, match="got list"):
        f(w=[1.0, 2.0, 3.0])
    ok = np.ones(3, dtype=np.float32)
    f(w=ok)
    np.testing.assert_array_equal(ok, 0.0)


def test_bad_updates_are_refused_at_compile_time():
    w, u = aj.param("w", (3,)), aj.param("u", (3,))
    loss = aj.sum(w * u)
    with pytest.raises(TypeError, match="aj.param or aj.input"):
        aj.compile(loss, updates={w * 2.0: w})
    with pytest.raises(TypeError, match="graph node"):
        aj.compile(loss, updates={w: np.zeros(3)})
    with pytest.raises(ValueError, match=r"new value of 'w' has type"):
        aj.compile(loss, updates={w: aj.sum(w)})
    with pytest.raises(ValueError, match="updated twice"):
        aj.compile(loss, updates=[(w, u), (w, u)])
    with pytest.raises(ValueError, match="exchanging state"):
        aj.compile(loss, backend="interp", updates={w: u, u: w})


def test_updated_input_need_not_appear_in_outputs():
    w = aj.param("w", (2,))
    step = aj.param("step", ())
    f = aj.compile(aj.sum(w), backend="llvm", opt_level=1, updates={step: step + 1.0})
    s = np.zeros(())
    for _ in range(3):
        f(w=np.ones(2), step=s)
    assert float(s) == 3.0
