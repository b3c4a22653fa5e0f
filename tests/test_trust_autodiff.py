"""Issue 13, items 5, 6, 7 and 9, on the interpreter, llvm and the ptx emulation.

5. Double-where protection for any number of ``where``s and condition nodes: a singular
   value used in several branches has a finite, exact gradient where no branch is taken.
6. A batch dimension that no input binds is a ShapeError naming the node, at compile time.
7. ``== != < <= > >=`` on nodes build bool nodes (scalars on either side, arrays,
   broadcasting); ``bool()`` of a node raises; nodes stay hashable by identity.
9. ``cross_entropy`` with -inf logits outside the target is finite, with a zero gradient
   for the masked classes (PyTorch's values).

Expected values are written by hand with numpy (never produced by adjit); gradients are
also checked against two-sided finite differences in float64 where they are defined.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import adjit as aj
from gradtools import finite_differences

BACKENDS = ["interp", "llvm", "ptx"]


def compile_on(outputs, backend):
    if backend == "ptx":
        return aj.compile(outputs, backend="ptx", emulate=True, opt_level=0)
    return aj.compile(outputs, backend=backend)


def call(f, **values):
    """Call ``f`` with the values it takes (the models below do not all read every input)."""
    return f(**{k: v for k, v in values.items() if k in f.input_names})


# --- 5. double where ------------------------------------------------------------------------
def _safe_log(X, c):
    return np.log(np.where(c, X, 1.0))


# name: (model of x (and the bool input m, equal to x > 0), numpy forward, numpy derivative)
WHERES = {
    "one where": (
        lambda x, m: aj.where(x > 0.0, aj.log(x), 0.0),
        lambda X: np.where(X > 0, _safe_log(X, X > 0), 0.0),
        lambda X: np.where(X > 0, 1 / np.where(X > 0, X, 1.0), 0.0)),
    "two wheres, two condition nodes (the issue's case)": (
        lambda x, m: (lambda l: aj.where(x > 0.0, l, 0.0) + aj.where(x > 0.0, l * l, 0.0))(
            aj.log(x)),
        lambda X: np.where(X > 0, (lambda L: L + L * L)(_safe_log(X, X > 0)), 0.0),
        lambda X: np.where(X > 0, (1 + 2 * _safe_log(X, X > 0)) / np.where(X > 0, X, 1.0),
                           0.0)),
    "three wheres: x > 0, x >= 1e-30 and an equal mask input": (
        lambda x, m: (lambda l, s: aj.where(x > 0.0, l, 0.0) + aj.where(x >= 1e-30, l * l, 0.0)
                      + aj.where(m, s * l, 0.0))(aj.log(x), aj.sqrt(x)),
        lambda X: (lambda L, S: np.where(X > 0, L, 0.0) + np.where(X >= 1e-30, L * L, 0.0)
                   + np.where(X > 0, S * L, 0.0))(_safe_log(X, X > 0), np.sqrt(np.abs(X))),
        lambda X: (lambda Y, L: np.where(X > 0, 1 / Y, 0.0)
                   + np.where(X >= 1e-30, 2 * L / Y, 0.0)
                   + np.where(X > 0, 0.5 * L / np.sqrt(Y) + 1 / np.sqrt(Y), 0.0))(
            np.where(X > 0, X, 1.0), _safe_log(X, X > 0))),
    "nested where beside a plain one": (
        lambda x, m: (lambda l: aj.where(x > 0.0, aj.where(x < 4.0, l * aj.sqrt(x), 2.0), 0.0)
                      + aj.where(x > 0.0, l, 0.0))(aj.log(x)),
        lambda X: (lambda L: np.where((X > 0) & (X < 4), L * np.sqrt(np.abs(X)), 0.0)
                   + np.where(X >= 4, 2.0, 0.0) + np.where(X > 0, L, 0.0))(_safe_log(X, X > 0)),
        lambda X: (lambda Y, L: np.where((X > 0) & (X < 4), np.sqrt(Y) / Y + 0.5 * L / np.sqrt(Y),
                                         0.0) + np.where(X > 0, 1 / Y, 0.0))(
            np.where(X > 0, X, 1.0), _safe_log(X, X > 0))),
    "false branch and true branch": (
        lambda x, m: (lambda l: aj.where(x <= 0.0, -x, l * x) + aj.where(x > 0.0, l * l, 0.0))(
            aj.log(x)),
        lambda X: (lambda L: np.where(X <= 0, -X, L * X) + np.where(X > 0, L * L, 0.0))(
            _safe_log(X, X > 0)),
        lambda X: (lambda Y, L: np.where(X <= 0, -1.0, L + 1 + 2 * L / Y))(
            np.where(X > 0, X, 1.0), _safe_log(X, X > 0))),
}
X_SINGULAR = np.array([-2.0, -0.0, 0.0, 1e-300, 1e-20, 0.5, 2.0, 3.9, 1000.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(WHERES))
def test_double_where_holds_for_any_number_of_wheres_and_conditions(backend, name):
    build, forward, derivative = WHERES[name]
    x, m = aj.input("x", (None,)), aj.input("m", (None,), "bool")
    y = build(x, m)
    f = compile_on([y, aj.grad(aj.sum(y), x)], backend)
    with np.errstate(all="ignore"):
        value, g = call(f, x=X_SINGULAR, m=X_SINGULAR > 0)
    assert np.all(np.isfinite(g)), g
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(value, forward(X_SINGULAR), rtol=1e-12)
        np.testing.assert_allclose(g, derivative(X_SINGULAR), rtol=1e-12)
    assert f.traced.rewrites.get("double_where", 0) >= 1


@pytest.mark.parametrize("name", list(WHERES))
def test_double_where_gradients_match_finite_differences(name):
    build, forward, derivative = WHERES[name]
    x, m = aj.input("x", (None,)), aj.input("m", (None,), "bool")
    X = np.array([-1.5, -0.3, 0.3, 0.9, 2.5, 3.7, 5.0])       # away from the kinks
    g = call(compile_on(aj.grad(aj.sum(build(x, m)), x), "interp"), x=X, m=X > 0)
    fd = finite_differences(lambda V: float(np.sum(forward(V))), X)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(g, derivative(X), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_where_with_twelve_wheres_on_one_singular_value(backend):
    x = aj.input("x", (None,))
    l = aj.log(x)
    thresholds = [0.0] + [0.25 * k for k in range(1, 12)]
    y = sum(aj.where(x > t, l * float(k + 1), 0.0) for k, t in enumerate(thresholds))
    X = np.array([-1.0, 0.0, 0.1, 0.3, 1.0, 2.9, 4.0])
    got = compile_on(aj.grad(aj.sum(y), x), backend)(x=X)
    Y = np.where(X > 0, X, 1.0)
    want = sum(np.where(X > t, (k + 1) / Y, 0.0) for k, t in enumerate(thresholds))
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_double_where_masks_too_big_merge_into_shared_conditions(monkeypatch):
    """Past the size bound, a mask's terms merge into the conditions they share: the guard
    is coarser but still exact, and still finite where the shared condition is off."""
    from adjit import autodiff
    monkeypatch.setattr(autodiff, "_MAX_TERMS", 2)
    x = aj.input("x", (None,))
    l = aj.log(x)
    inner = (aj.where(x > 1.0, l, 0.0) + aj.where(x > 2.0, l * l, 0.0)
             + aj.where(x < 3.0, l * 3.0, 0.0))
    y = aj.sum(aj.where(x > 0.0, inner, 0.0))
    X = np.array([-1.0, 0.0, 0.5, 1.5, 2.5, 3.5])
    got = compile_on(aj.grad(y, x), "interp")(x=X)
    Y = np.where(X > 0, X, 1.0)
    want = np.where(X > 0, np.where(X > 1, 1 / Y, 0.0) + np.where(X > 2, 2 * np.log(Y) / Y, 0.0)
                    + np.where(X < 3, 3 / Y, 0.0), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_where_second_order_with_two_condition_nodes(backend):
    x = aj.input("x", (None,))
    l = aj.log(x)
    y = aj.sum(aj.where(x > 0.0, l * x * x, 0.0) + aj.where(x > 0.0, l * l, 0.0))
    h = aj.grad(aj.sum(aj.grad(y, x)), x)
    X = np.array([-1.0, 0.0, 0.5, 2.0])
    got = compile_on(h, backend)(x=X)
    # y = x² log x + log² x:  y'' = 2 log x + 3 + (2 - 2 log x) / x²
    Y = np.where(X > 0, X, 1.0)
    want = np.where(X > 0, 2 * np.log(Y) + 3 + (2 - 2 * np.log(Y)) / Y ** 2, 0.0)
    assert np.all(np.isfinite(got)), got
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_where_keeps_a_true_singularity_of_a_value_also_used_outside(backend):
    x = aj.input("x", (None,))
    l = aj.log(x)
    y = aj.sum(aj.where(x > 0.0, l, 0.0) + aj.where(x > 0.0, l * l, 0.0) + l)
    g = compile_on(aj.grad(y, x), backend)(x=np.array([0.0, 2.0]))
    assert not np.isfinite(g[0])             # d log x / dx = 1/x is infinite at 0
    assert g[1] == pytest.approx((2 + 2 * math.log(2)) / 2, rel=1e-14)   # (1 + 2 log x + 1) / x


# --- 6. a batch dimension no input binds --------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", [aj.sum, aj.mean])
def test_unbound_batch_dimension_is_a_shape_error_naming_the_node(backend, reduce):
    x0 = aj.input("x0", ())
    out = reduce(aj.broadcast_to(x0, (None,)))
    with pytest.raises(aj.ShapeError, match=r"broadcast\(x0\).*batch") as e:
        compile_on(out, backend)
    assert "no input" in str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batched_input_binds_the_batch_of_a_broadcast(backend):
    x0, x = aj.input("x0", ()), aj.input("x", (None,))
    b = aj.broadcast_to(x0, (None,))
    f = compile_on([aj.sum(b), aj.mean(b) + 0.0 * aj.sum(x)], backend)
    s, m = f(x0=2.5, x=np.zeros(4))
    assert float(s) == 10.0 and float(m) == 2.5
    # a gradient that reads no input still takes the model's batched inputs
    g = compile_on(aj.grad(aj.sum(x), x), backend)(x=np.zeros(3))
    np.testing.assert_array_equal(g, np.ones(3))


# --- 7. comparison operators build nodes -------------------------------------------------------
OPERATORS = {"==": (lambda a, b: a == b), "!=": (lambda a, b: a != b),
             "<": (lambda a, b: a < b), "<=": (lambda a, b: a <= b),
             ">": (lambda a, b: a > b), ">=": (lambda a, b: a >= b)}
VALUES = np.array([-np.inf, -2.0, -0.0, 0.0, 0.5, 2.0, np.inf, np.nan])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(OPERATORS))
def test_comparison_operators_build_nodes_like_numpy(backend, op):
    cmp = OPERATORS[op]
    x = aj.input("x", (None,))
    y = aj.input("y", (None,))
    row = aj.param("row", (3,))
    A = np.array([[0.0, 1.0, -1.0]])
    outs = [cmp(x, 0.0), cmp(0.0, x), cmp(x, y), cmp(x, 2), cmp(np.float64(0.5), x),
            cmp(aj.reshape(x, (None, 1)), row),          # (B, 1) against (3,)
            cmp(row, A)]                                  # a node against an array
    for o in outs:
        assert isinstance(o, aj.Node) and o.dtype == "bool"
    f = compile_on(outs, backend)
    X = VALUES
    Y = np.roll(VALUES, 3)
    R = np.array([-0.0, 0.5, np.nan])
    got = f(x=X, y=Y, row=R)
    want = [cmp(X, 0.0), cmp(0.0, X), cmp(X, Y), cmp(X, 2), cmp(0.5, X),
            cmp(X[:, None], R), cmp(R, A)]
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"output {k}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(OPERATORS))
def test_comparison_operators_on_bool_nodes(backend, op):
    cmp = OPERATORS[op]
    x, y = aj.input("x", (None,)), aj.input("y", (None,))
    p, q = x > 0.0, y > 0.0                   # NaN compares false on both sides
    f = compile_on([cmp(p, q), aj.where(cmp(p, q), x, y)], backend)
    X = np.array([1.0, 1.0, -1.0, -1.0, np.nan, 1.0, np.nan])
    Y = np.array([1.0, -1.0, 1.0, -1.0, 1.0, np.nan, np.nan])
    got_c, got_w = f(x=X, y=Y)
    want_c = cmp(X > 0, Y > 0)
    np.testing.assert_array_equal(got_c, want_c)
    np.testing.assert_array_equal(got_w, np.where(want_c, X, Y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_x_equals_zero_selects(backend):
    x = aj.input("x", (None,))
    y = aj.where(x == 0.0, 1.0, x)
    g = aj.grad(aj.sum(y), x)
    X = np.array([0.0, -0.0, 2.0, -3.0, np.nan])
    value, grad = compile_on([y, g], backend)(x=X)
    np.testing.assert_array_equal(value, [1.0, 1.0, 2.0, -3.0, np.nan])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_x_not_equal_x_finds_nan(backend):
    x = aj.input("x", (None,))
    got = compile_on([x != x, x == x], backend)(x=np.array([np.nan, 1.0, np.inf]))
    np.testing.assert_array_equal(got[0], [True, False, False])
    np.testing.assert_array_equal(got[1], [False, True, True])


def test_nodes_have_no_truth_value_and_hash_by_identity():
    x, y = aj.input("x", (None,)), aj.input("y", (None,))
    for node in (x == y, x != x, x == 0.0, x):
        with pytest.raises(TypeError, match="no truth value.*aj.where.*`is`"):
            bool(node)
    with pytest.raises(TypeError, match="no truth value"):
        if x == x:
            pass
    assert hash(x) == hash(x) and hash(x) != hash(y)
    assert x in [x] and x in {x} and y in {x: 1, y: 2}     # identity comes first
    assert len({x, y, x}) == 2
    with pytest.raises(TypeError, match="no truth value"):
        _ = x in [y]                   # a list search compares values: use `is` or a set
    assert (x == y).op == "equal" and (x != y).op == "not_equal"
    assert (0.0 == x).inputs[0] is x   # reflected: x == 0.0
    # an operand that is no value compares by identity, as Python's default
    assert (x == None) is False and (x != None) is True and (x == "x") is False  # noqa: E711
    assert [None, "a", x].index(x) == 2 and None not in [x, y]


def test_grad_and_passes_never_compare_nodes_by_value():
    """A graph holding many nodes, comparisons and repeated sub-expressions goes through
    grad, every pass and the equations without asking any node for its truth value."""
    x, w = aj.input("x", (None, 3)), aj.param("w", (3,))
    h = aj.tanh(x * w)
    y = aj.sum(aj.where(h == 0.0, 0.0, aj.log(aj.abs(h))) + aj.where(h != h, 0.0, h * h))
    g = aj.grad(y, w)
    f = aj.compile([y, g], backend="interp")
    assert str(f.equations())
    X = np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 3.0]])
    W = np.array([0.3, -1.2, 0.7])
    fd = finite_differences(lambda V: float(f(x=X, w=V)[0]), W + 0)
    with np.errstate(all="ignore"):
        got = f(x=X, w=W)[1]
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


# --- 9. cross-entropy with masked logits --------------------------------------------------------
def _ce_reference(Z, labels):
    """Mean cross-entropy and its gradient by hand: -(z_t - m - log Σ_j exp(z_j - m))."""
    m = np.max(Z, axis=1, keepdims=True)
    e = np.exp(Z - m)
    s = e.sum(axis=1, keepdims=True)
    logp = (Z - m) - np.log(s)
    B = Z.shape[0]
    loss = -np.mean(logp[np.arange(B), labels])
    grad = (e / s - np.eye(Z.shape[1])[labels]) / B
    return loss, grad


MASKED = np.array([[1.0, -np.inf, 2.0, 0.5],
                   [-np.inf, 0.5, 0.0, -np.inf],
                   [3.0, 1.0, -2.0, -np.inf],
                   [-1000.0, -np.inf, 1000.0, 999.0]])
MASKED_LABELS = np.array([0, 1, 2, 3])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["integer labels", "one-hot labels"])
def test_cross_entropy_with_masked_logits_is_finite(backend, dtype, kind):
    z = aj.input("z", (None, 4), dtype)
    if kind == "integer labels":
        lab, labels = aj.input("lab", (None,), "int64"), MASKED_LABELS
    else:
        lab, labels = aj.input("lab", (None, 4), dtype), np.eye(4, dtype=dtype)[MASKED_LABELS]
    L = aj.cross_entropy(z, lab)
    Lv, gz = compile_on([L, aj.grad(L, z)], backend)(z=MASKED.astype(dtype), lab=labels)
    want_L, want_g = _ce_reference(MASKED, MASKED_LABELS)
    tol = {"float64": 1e-13, "float32": 1e-5}[dtype]
    assert np.isfinite(Lv) and np.all(np.isfinite(gz)), (Lv, gz)
    assert float(Lv) == pytest.approx(want_L, rel=tol)
    np.testing.assert_allclose(gz, want_g, rtol=tol, atol=tol * 1e-2)
    assert np.all(gz[np.isneginf(MASKED)] == 0.0)      # masked classes: exactly 0


def test_cross_entropy_masked_gradient_matches_finite_differences():
    z = aj.input("z", (None, 4))
    lab = aj.input("lab", (None,), "int64")
    L = aj.cross_entropy(z, lab)
    f = aj.compile([L, aj.grad(L, z)], backend="interp")
    Z = MASKED[:3].copy()
    _, g = f(z=Z, lab=MASKED_LABELS[:3])
    finite = np.isfinite(Z)
    fd = np.zeros_like(Z)
    for i in zip(*np.nonzero(finite)):
        up, down = Z.copy(), Z.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        fd[i] = (f(z=up, lab=MASKED_LABELS[:3])[0] - f(z=down, lab=MASKED_LABELS[:3])[0]) / 2e-6
    np.testing.assert_allclose(g[finite], fd[finite], rtol=1e-6, atol=1e-9)
    assert np.all(g[~finite] == 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_masked_target_is_inf_and_all_masked_row_is_nan(backend):
    z = aj.input("z", (None, 3))
    lab = aj.input("lab", (None,), "int64")
    L = aj.cross_entropy(z, lab)
    f = compile_on([L, aj.grad(L, z)], backend)
    Lv, g = f(z=np.array([[-np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]]), lab=np.array([0, 2]))
    assert Lv == np.inf                                  # PyTorch: inf
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(g[0], np.array([-1.0, p[0], p[1]]) / 2, rtol=1e-13)
    Lv, _ = f(z=np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]]), lab=np.array([0, 2]))
    assert np.isnan(Lv)                                  # PyTorch: nan
