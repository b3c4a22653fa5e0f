"""The public API of adjit, exactly as outside code uses it."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from gradtools import RTOL, rel_err, run

ISSUE_NAMES = """input param grad compile check_grads exp log sin cos tanh sigmoid relu softplus
sqrt abs maximum minimum where sum mean max matmul transpose reshape softmax log_softmax
logsumexp mse cross_entropy""".split()


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_public_names():
    for name in ISSUE_NAMES:
        assert callable(getattr(aj, name)), name
        assert name in aj.__all__, name


def test_the_issue_example_float32_end_to_end():
    x = aj.input("x", (None, 784), dtype="float32")
    W = aj.param("W", (784, 128), dtype="float32")
    b = aj.param("b", (128,), dtype="float32")
    h = aj.sigmoid(x @ W + b)
    loss = aj.mean(aj.sum(h ** 2, axis=1))
    gW, gb = aj.grad(loss, [W, b])
    assert isinstance(gW, aj.Node) and gW.shape == (784, 128) and gW.dtype == "float32"
    f = aj.compile([loss, gW, gb], backend="interp")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 784)).astype("float32")
    W0 = (rng.standard_normal((784, 128)) * 0.05).astype("float32")
    b0 = (rng.standard_normal(128) * 0.1).astype("float32")
    L, dW, db = f(x=X, W=W0, b=b0)
    # every value, intermediate and result, stays float32
    assert all(r.dtype == np.float32 for r in (L, dW, db))
    assert all(n.dtype == "float32" for g in f.stages for n in g.order() if n.dtype != "bool")
    # against float64 numpy by hand: L = mean_b Σ_j h², h̄ = 2h/B, z̄ = h̄ h (1 - h)
    X64, W64, b64 = (a.astype("float64") for a in (X, W0, b0))
    hh = _sigmoid(X64 @ W64 + b64)
    z_bar = 2 * hh / 3 * hh * (1 - hh)
    np.testing.assert_allclose(L, np.mean(np.sum(hh ** 2, axis=1)), rtol=1e-5)
    np.testing.assert_allclose(dW, X64.T @ z_bar, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(db, z_bar.sum(axis=0), rtol=2e-4, atol=1e-6)
    # check_grads widens the float32 model to float64
    report = aj.check_grads(loss, [b], {"x": X, "W": W0, "b": b0}, elements=8)
    assert report.ok and report.max_error <= RTOL


def test_operators_and_python_numbers():
    x, y = aj.input("x", (3,)), aj.input("y", (2, 3))
    X = np.array([0.5, 1.0, 2.0])
    Y = np.arange(6.0).reshape(2, 3) / 4 + 0.25
    cases = [
        (x + y, X + Y), (x - y, X - Y), (x * y, X * Y), (x / y, X / Y), (y ** x, Y ** X),
        (-x, -X), (2 + x, 2 + X), (x + 2, X + 2), (2 - x, 2 - X), (x - 2, X - 2),
        (3 * x, 3 * X), (x / 4, X / 4), (1 / x, 1 / X), (x ** 2, X ** 2), (2 ** x, 2 ** X),
        (x ** 0.5, np.sqrt(X)), (np.array([1.0, 2.0, 3.0]) * x, X * [1, 2, 3]),
        (y @ x, Y @ X), (y.T, Y.T), (y.T @ y, Y.T @ Y), (+x, X),
    ]
    for node, expected in cases:
        assert isinstance(node, aj.Node)
        values = {k: v for k, v in (("x", X), ("y", Y)) if k in _names(node)}
        np.testing.assert_allclose(run(node, **values), expected, rtol=1e-15)
    assert x.shape == (3,) and y.T.shape == (3, 2) and x.dtype == "float64"
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)


def _names(node):
    return {n.name for n in aj.Graph([node]).inputs}


def test_grad_returns_node_or_list_and_compile_returns_array_or_tuple():
    x, w = aj.input("x", (3,)), aj.param("w", (3,))
    L = aj.sum(x * w * w)
    g = aj.grad(L, w)
    gs = aj.grad(L, [w, x])
    assert isinstance(g, aj.Node) and isinstance(gs, list) and len(gs) == 2
    X, W = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    single = aj.compile(g, backend="interp")(x=X, w=W)
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, 2 * X * W)
    for outputs in (gs, tuple(gs)):
        out = aj.compile(outputs, backend="interp")(x=X, w=W)
        assert isinstance(out, tuple) and len(out) == 2
        np.testing.assert_array_equal(out[1], W * W)
    assert isinstance(aj.compile([L], backend="interp")(x=X, w=W), tuple)
    with pytest.raises(aj.ShapeError, match="scalar"):
        aj.grad(x * w, w)
    with pytest.raises(TypeError):
        aj.grad(L, [np.ones(3)])
    with pytest.raises(TypeError):
        aj.compile([], backend="interp")


def test_declaration_shape_errors_name_both_operands():
    x = aj.input("x", (None, 784))
    W = aj.param("W", (100, 10))
    with pytest.raises(ValueError, match=r"x @ W: inner sizes 784 and 100 differ"):
        x @ W
    v = aj.param("v", (5,))
    with pytest.raises(ValueError, match=r"v @ W: inner sizes 5 and 100 differ"):
        v @ W
    with pytest.raises(ValueError, match=r"v @ u: inner sizes 5 and 4 differ"):
        v @ aj.param("u", (4,))
    a, b = aj.input("a", (3,)), aj.input("b", (2, 4))
    with pytest.raises(aj.ShapeError) as err:
        a + b
    message = str(err.value)
    assert "a" in message and "b" in message and "(3,)" in message and "(2, 4)" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(aj.ShapeError, match="axis"):
        aj.sum(a, axis=1)


def test_dtype_promotion_policy():
    x32 = aj.input("x", (None, 3), dtype="float32")
    w64 = aj.param("w", (3,))
    mixed = x32 * w64
    assert mixed.dtype == "float64"                       # numpy promotion
    assert (x32 * 2).dtype == "float32" and (2.5 - x32).dtype == "float32"  # weak numbers
    assert (x32 @ aj.param("M", (3, 2))).dtype == "float64"
    X = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    out = run(aj.sum(mixed), x=X, w=np.array([0.1, 0.2, 0.3]))
    assert out.dtype == np.float64 and float(out) == pytest.approx(1.4, rel=1e-15)
    g = run(aj.grad(aj.sum(mixed), x32), x=X, w=np.array([0.1, 0.2, 0.3]))
    assert g.dtype == np.float32 and g.shape == (1, 3)
    labels = aj.input("labels", (3,), dtype="int64")
    with pytest.raises(aj.DTypeError, match="labels"):
        labels + w64
    for bad in ("complex128", "str"):
        with pytest.raises((aj.DTypeError, TypeError)):
            aj.input("z", (3,), dtype=bad)


def test_batch_size_is_bound_at_call_time():
    x = aj.input("x", (None, 3))
    t = aj.input("t", (None,))
    w = aj.param("w", (3,))
    L = aj.mean((x @ w - t) ** 2)
    f = aj.compile([L, aj.grad(L, w), x @ w], backend="interp")
    rng = np.random.default_rng(0)
    W = rng.standard_normal(3)
    for B in (1, 7, 64):
        X, T = rng.standard_normal((B, 3)), rng.standard_normal(B)
        Lv, gw, pred = f(x=X, t=T, w=W)
        r = X @ W - T
        assert pred.shape == (B,)
        np.testing.assert_allclose(Lv, np.mean(r ** 2), rtol=1e-14)
        np.testing.assert_allclose(gw, 2 * X.T @ r / B, rtol=1e-13)


def test_call_time_errors():
    x = aj.input("x", (None, 3))
    t = aj.input("t", (None,))
    labels = aj.input("labels", (None,), dtype="int64")
    w = aj.param("w", (3,))
    f = aj.compile(aj.sum((x @ w - t) ** 2) + aj.sum(aj.cast(labels, "float64")),
                   backend="interp")
    ok = {"x": np.ones((7, 3)), "t": np.ones(7), "w": np.ones(3), "labels": np.arange(7)}
    assert np.isfinite(f(**ok))
    with pytest.raises(TypeError, match=r"missing 'w'"):
        f(**{k: v for k, v in ok.items() if k != "w"})
    with pytest.raises(TypeError, match=r"unknown 'bias'"):
        f(**ok, bias=np.ones(3))
    with pytest.raises(ValueError, match=r"input 'x': expected shape \(7, 3\).*got \(7, 4\)"):
        f(**{**ok, "x": np.ones((7, 4))})
    with pytest.raises(ValueError, match=r"input 'x'.*\(4, 3\).*batch size 4.*got \(7, 3\)"):
        f(**{**ok, "t": np.ones(4), "labels": np.arange(4)})
    with pytest.raises(ValueError, match=r"input 'w'.*2-D|input 'w'.*\(3,\)"):
        f(**{**ok, "w": np.ones((3, 1))})
    with pytest.raises(aj.DTypeError, match="'x'"):
        f(**{**ok, "x": np.ones((7, 3)) + 1j})
    with pytest.raises(aj.DTypeError, match="'x'"):
        f(**{**ok, "x": np.full((7, 3), "a")})
    with pytest.raises(aj.DTypeError, match="'labels'"):
        f(**{**ok, "labels": np.zeros(7)})             # float labels are refused
    # ints and lists convert for float inputs
    assert np.isfinite(f(**{**ok, "x": np.ones((7, 3), dtype=int), "w": [1, 2, 3]}))


def test_bool_inputs_bind():
    mask = aj.input("mask", (3,), dtype="bool")
    x = aj.input("x", (3,))
    out = run(aj.where(mask, x, -x), mask=np.array([True, False, True]), x=np.ones(3))
    np.testing.assert_array_equal(out, [1.0, -1.0, 1.0])
    with pytest.raises(aj.DTypeError, match="mask"):
        run(aj.where(mask, x, -x), mask=np.ones(3), x=np.ones(3))


def test_results_do_not_alias_inputs():
    x = aj.input("x", (2, 3))
    f = aj.compile([x, aj.reshape(x, (3, 2)), x.T, x], backend="interp")
    X = np.arange(6.0).reshape(2, 3)
    outs = f(x=X)
    for o in outs:
        assert not np.shares_memory(o, X)
    assert not np.shares_memory(outs[0], outs[3])
    outs[0][0, 0] = 99.0
    assert X[0, 0] == 0.0 and outs[3][0, 0] == 0.0


def _hvp_model():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 2))
    L = aj.sum(aj.tanh(x @ W) ** 2) + aj.sum(aj.sigmoid(W) * W)
    return L, x, W


def test_hvp_against_finite_differences_of_the_gradient():
    L, x, W = _hvp_model()
    v = aj.input("v", (3, 2))
    gW = aj.grad(L, W)
    hvp = aj.grad(aj.sum(gW * v), W)
    f_grad = aj.compile(gW, backend="interp")
    f_hvp = aj.compile(hvp, backend="interp")
    rng = np.random.default_rng(3)
    X, W0, V = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    got = f_hvp(x=X, W=W0, v=V)
    h = 1e-5
    numeric = (f_grad(x=X, W=W0 + h * V) - f_grad(x=X, W=W0 - h * V)) / (2 * h)
    assert np.max(rel_err(got, numeric, floor=1e-9)) <= RTOL
    # symmetry of the Hessian: uᵀ(Hv) = vᵀ(Hu)
    U = rng.standard_normal((3, 2))
    Hu = f_hvp(x=X, W=W0, v=U)
    assert rel_err(np.sum(U * got), np.sum(V * Hu)) <= 1e-12


def test_hvp_of_a_quadratic_is_exact():
    x = aj.input("x", (None, 3))
    t = aj.input("t", (None, 2))
    W = aj.param("W", (3, 2))
    v = aj.input("v", (3, 2))
    L = 0.5 * aj.sum((x @ W - t) ** 2)
    hvp = aj.grad(aj.sum(aj.grad(L, W) * v), W)
    rng = np.random.default_rng(4)
    X, T = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    W0, V = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    got = run(hvp, x=X, t=T, W=W0, v=V)
    np.testing.assert_allclose(got, X.T @ (X @ V), rtol=1e-13)   # H = (XᵀX) ⊗ I
    # and second order through abs / relu / max (piecewise-linear: zero curvature there)
    y = aj.input("y", (4,))
    u = aj.input("u", (4,))
    Y = np.array([-1.5, -0.2, 0.3, 2.0])
    for model, hess_diag in [(aj.sum(aj.abs(y) * y), 2 * np.sign(Y)),
                             (aj.sum(aj.relu(y) ** 2), 2.0 * (Y > 0)),
                             (aj.max(y * y), np.array([0, 0, 0, 2.0]))]:
        hv = run(aj.grad(aj.sum(aj.grad(model, y) * u), y), y=Y, u=np.ones(4))
        np.testing.assert_allclose(hv, hess_diag, rtol=1e-15)


def test_grad_of_unrelated_variable_is_zero():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3,))
    b = aj.param("b", (2, 2))
    L = aj.sum(W * W)
    gx, gb, gW = aj.grad(L, [x, b, W])
    out = aj.compile([gx, gb, gW], backend="interp")(x=np.ones((5, 3)), W=np.ones(3),
                                                       b=np.ones((2, 2)))
    np.testing.assert_array_equal(out[0], np.zeros((5, 3)))
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))
    np.testing.assert_array_equal(out[2], 2 * np.ones(3))


def test_gradient_functions_take_the_models_arguments():
    # d/dx Σ x over the batch reads no input, yet needs the batch size bound from x
    x = aj.input("x", (None, 3))
    f = aj.compile(aj.grad(aj.sum(x), x), backend="interp")
    assert f.input_names == ["x"]
    np.testing.assert_array_equal(f(x=np.zeros((4, 3))), np.ones((4, 3)))
    g = aj.compile(aj.grad(aj.mean(x), x) * 2.0, backend="interp")
    np.testing.assert_allclose(g(x=np.zeros((2, 3))), np.full((2, 3), 2 / 6), rtol=1e-15)


def test_check_grads_reports_a_wrong_gradient():
    x = aj.param("x", (3,))
    wrong = aj.sum(x * aj.stop_gradient(x))      # adjit's derivative x, true derivative 2x
    values = {"x": np.array([0.5, -1.0, 2.0])}
    with pytest.raises(aj.GradientCheckError, match="x"):
        aj.check_grads(wrong, x, values)
    report = aj.check_grads(wrong, x, values, raise_on_failure=False)
    assert not report.ok and report.variable == "x"
    assert report.max_error == pytest.approx(1 / 3, rel=1e-6)     # |x − 2x| / (|x| + |2x|)
    right = aj.check_grads(aj.sum(x * x), x, values)
    assert right.ok and right.checked == 4 and "ok" in str(right)
    with pytest.raises(TypeError):
        aj.check_grads(aj.sum(x * x), x * 2, values)


def test_stages_node_counts_and_report():
    x = aj.input("x", (None, 4))
    t = aj.input("t", (None, 3))
    W1, b1 = aj.param("W1", (4, 8)), aj.param("b1", (8,))
    W2, b2 = aj.param("W2", (8, 3)), aj.param("b2", (3,))
    y = aj.sigmoid(x @ W1 + b1) @ W2 + b2
    L = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))
    f = aj.compile([L] + aj.grad(L, [W1, b1, W2, b2]), backend="interp")
    counts = f.node_counts()
    assert list(counts) == ["traced", "expand", "fold", "cse", "fold-again", "fuse"]
    assert [g.stage for g in f.stages] == list(counts)
    assert counts["fuse"] < counts["traced"]
    assert f.graph is f.stages[-1] and f.traced is f.stages[0]
    assert len(f.forward.outputs) == 1 and f.forward.outputs[0] is L
    report = f.report()
    assert "fuse" in report and str(counts["traced"]) in report
    listing = str(f.traced)
    assert "param 'W1'" in listing and "adjoint" in listing
    assert f.input_names == ["W1", "W2", "b1", "b2", "t", "x"]


def test_printed_graphs_are_stable():
    def build():
        x = aj.input("x", (None, 2))
        w = aj.param("w", (2,))
        L = aj.sum(aj.tanh(x @ w))
        return str(aj.compile([L, aj.grad(L, w)], backend="interp").traced)
    assert build() == build()


def test_check_grads_on_a_batched_float32_classifier():
    x = aj.input("x", (None, 4), dtype="float32")
    labels = aj.input("labels", (None,), dtype="int32")
    W = aj.param("W", (4, 3), dtype="float32")
    L = aj.cross_entropy(x @ W, labels)
    assert L.dtype == "float32"
    rng = np.random.default_rng(5)
    values = {"x": rng.standard_normal((6, 4)).astype("float32"),
              "labels": rng.integers(0, 3, 6).astype("int32"),
              "W": rng.standard_normal((4, 3)).astype("float32")}
    assert aj.check_grads(L, W, values).ok
    assert run(aj.grad(L, W), **values).dtype == np.float32


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_outputs_are_c_contiguous(backend):
    x = aj.input("x", (None, 3))
    f = aj.compile([aj.transpose(x * 2.0), x.T], backend=backend)
    doubled, plain = f(x=np.arange(6.0).reshape(2, 3))
    for out in (doubled, plain):
        assert out.flags.c_contiguous and out.flags.owndata
    np.testing.assert_array_equal(doubled, [[0.0, 6.0], [2.0, 8.0], [4.0, 10.0]])
    np.testing.assert_array_equal(plain, [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]])


def test_check_grads_floor_follows_the_loss_scale():
    w, u = aj.param("w", (3,)), aj.param("u", (2,))
    # d/du = 0 exactly at u = 1, but f(u ± h) rounds at the scale of the loss (~9), so the
    # difference quotient is ~1e-11, not 0: an absolute floor of 1e-7 would call that wrong
    loss = aj.sum(aj.exp(w)) + aj.sum((u - 1.0) ** 3) + 5.0
    rep = aj.check_grads(loss, [w, u], {"w": np.array([0.1, 0.2, 0.3]), "u": np.ones(2)})
    assert rep.ok and rep.checked == 3 + 1 + 2 + 1
    strict = aj.check_grads(loss, [w, u], {"w": np.array([0.1, 0.2, 0.3]), "u": np.ones(2)},
                            h=1e-4, floor=1e-7, raise_on_failure=False)
    assert strict.ok   # the floor is at least the loss-scaled one whatever floor= says
    # a gradient that is really wrong still fails: stop_gradient hides d/dw of sum(w)
    hidden = aj.sum(aj.exp(w)) + aj.stop_gradient(1e-3 * aj.sum(w)) + 5.0
    with pytest.raises(aj.GradientCheckError):
        aj.check_grads(hidden, w, {"w": np.array([0.1, 0.2, 0.3])})
