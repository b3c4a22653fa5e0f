"""The double-where mask follows a value through structural ops.

In ``where(c, f(x), g(x))`` the branch not taken may hold inf or NaN (sqrt or log of a
negative number or 0, NaN data); the gradient must still be exact and finite there.  Each
case below puts such a value behind a structural op -- sum, mean, max, broadcast, reshape,
transpose, matmul, the composites built from them (logsumexp, log_softmax, softmax,
cross_entropy) -- inside the unused branch, and checks, on the interpreter, llvm and the
ptx emulation: the gradient is finite and equals two-sided finite differences of a numpy
reference in float64; the Hessian-vector product is finite and equals mixed second
differences of the same reference.  Expected values never come from adjit.
"""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj

BACKENDS = ["interp", "llvm", "ptx"]
B = 4
ROWS = np.array([[True], [False], [True], [False]])            # which rows take f(x)
# rows that take f hold values where f is smooth; the others hold its singular points
X = np.array([[0.5, 1.5, 2.0], [-1.0, 0.0, 4.0], [3.0, 0.7, 1.2], [0.0, -2.0, np.inf]])


def compile_on(outputs, backend):
    if backend == "ptx":
        return aj.compile(outputs, backend="ptx", emulate=True, opt_level=0)
    return aj.compile(outputs, backend=backend)


def _log_softmax(a):
    m = np.max(a, axis=-1, keepdims=True)
    return a - m - np.log(np.sum(np.exp(a - m), axis=-1, keepdims=True))


def _lse(a):
    m = np.max(a, axis=-1, keepdims=True)
    return m + np.log(np.sum(np.exp(a - m), axis=-1, keepdims=True))


def _where(c, f, other):
    """numpy's where, computing the branch only where it is used (as the maths reads)."""
    with np.errstate(all="ignore"):
        return np.where(c, f, other)


HOT = np.eye(3)[[0, 2, 1, 0]]
P_NEG = np.array([[-1.0, 1.0, 4.0]])                         # a broadcast (1, 3) parameter
COLS = np.array([[False, True, True], [False, False, True], [False, True, False],
                 [False, True, True]])                       # column 0 never takes sqrt(p)
XT = np.array([[1.0, -1.0, 2.0], [0.0, 3.0, 0.5]])           # (2, 3), transposed
CT = np.array([[True, False], [False, True], [True, True]])  # (3, 2): where sqrt(XTᵀ) is used
W = np.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]])

# name: (inputs {name: (shape, dtype, value)}, the float inputs to differentiate,
#        adjit model, numpy reference)
CASES = {
    "sum, keepdims (fuzz case 114: x ** x)": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.sum(x ** x, axis=-1, keepdims=True), 0.0),
        lambda x, c: _where(c, np.sum(x ** x, axis=-1, keepdims=True), 0.0)),
    "sum over everything": (
        {"x": ((None, 3), "float64", X), "s": ((), "bool", np.array(False))}, ["x"],
        lambda x, s: aj.where(s, aj.sum(aj.sqrt(x)), 1.0),
        lambda x, s: _where(s, np.sum(np.sqrt(x)), 1.0)),
    "mean": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.mean(aj.log(x), axis=1, keepdims=True), 0.0),
        lambda x, c: _where(c, np.mean(np.log(x), axis=1, keepdims=True), 0.0)),
    "max (a NaN row: no maximum to send the cotangent to)": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.max(aj.sqrt(x), axis=1, keepdims=True), 0.0),
        lambda x, c: _where(c, np.max(np.sqrt(x), axis=1, keepdims=True), 0.0)),
    "broadcast of a parameter (fuzz case 102)": (
        {"p": ((1, 3), "float64", P_NEG), "c": ((None, 3), "bool", COLS),
         "y": ((None, 3), "float64", X[[0, 2, 0, 2]])}, ["p", "y"],
        lambda p, c, y: aj.where(c, aj.sqrt(p) / y, -2.0),
        lambda p, c, y: _where(c, np.sqrt(p) / y, -2.0)),
    "reshape": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1, 1), "bool", ROWS[:, :, None])}, ["x"],
        lambda x, c: aj.where(c, aj.reshape(aj.sqrt(x), (None, 3, 1)), 0.0),
        lambda x, c: _where(c, np.sqrt(x).reshape(-1, 3, 1), 0.0)),
    "transpose": (
        {"x": ((2, 3), "float64", XT), "c": ((3, 2), "bool", CT)}, ["x"],
        lambda x, c: aj.where(c, aj.transpose(aj.sqrt(x)) * 3.0, 0.0),
        lambda x, c: _where(c, np.sqrt(x).T * 3.0, 0.0)),
    "matmul, rows not taken hold NaN data (fuzz case 100)": (
        {"x": ((None, 3), "float64", np.where(ROWS, X, np.nan)),
         "w": ((3, 2), "float64", W), "c": ((None, 1), "bool", ROWS)}, ["x", "w"],
        lambda x, w, c: aj.where(c, x @ w, 0.0),
        lambda x, w, c: _where(c, x @ w, 0.0)),
    "matmul, NaN data and no row taken": (
        {"x": ((None, 3), "float64", X), "w": ((3, 2), "float64", np.full((3, 2), np.nan)),
         "s": ((), "bool", np.array(True))}, ["x", "w"],
        lambda x, w, s: aj.where(s, -2.0, x @ w),
        lambda x, w, s: _where(s, -2.0, x @ w)),
    "matmul of sqrt": (
        {"x": ((None, 3), "float64", X), "w": ((3, 2), "float64", W),
         "c": ((None, 1), "bool", ROWS)}, ["x", "w"],
        lambda x, w, c: aj.where(c, aj.sqrt(x) @ w, 0.0),
        lambda x, w, c: _where(c, np.sqrt(x) @ w, 0.0)),
    "logsumexp": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.logsumexp(aj.sqrt(x), axis=-1, keepdims=True), 0.0),
        lambda x, c: _where(c, _lse(np.sqrt(x)), 0.0)),
    "log_softmax": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.log_softmax(aj.log(x), axis=-1), 0.0),
        lambda x, c: _where(c, _log_softmax(np.log(x)), 0.0)),
    "softmax": (
        {"x": ((None, 3), "float64", X), "c": ((None, 1), "bool", ROWS)}, ["x"],
        lambda x, c: aj.where(c, aj.softmax(aj.sqrt(x), axis=-1), 0.0),
        lambda x, c: _where(c, np.exp(_log_softmax(np.sqrt(x))), 0.0)),
    "cross_entropy, integer labels": (
        {"x": ((None, 3), "float64", X), "t": ((None,), "int64", np.array([0, 2, 1, 0])),
         "s": ((), "bool", np.array(False)), "y": ((), "float64", np.array(0.5))}, ["x", "y"],
        lambda x, t, s, y: aj.where(s, aj.cross_entropy(aj.sqrt(x), t), y * y),
        lambda x, t, s, y: _where(s, -np.mean(np.sum(HOT * _log_softmax(np.sqrt(x)), -1)),
                                  y * y)),
    "cross_entropy, one-hot labels": (
        {"x": ((None, 3), "float64", X), "t": ((None, 3), "float64", HOT),
         "s": ((), "bool", np.array(False)), "y": ((), "float64", np.array(0.5))}, ["x", "y"],
        lambda x, t, s, y: aj.where(s, aj.cross_entropy(aj.log(x), t), y * y),
        lambda x, t, s, y: _where(s, -np.mean(np.sum(t * _log_softmax(np.log(x)), -1)),
                                  y * y)),
}


def _setup(name):
    spec, wrt, build, reference = CASES[name]
    nodes = {k: aj.input(k, shape, dtype) for k, (shape, dtype, _) in spec.items()}
    values = {k: np.asarray(v, dtype) for k, (_, dtype, v) in spec.items()}
    out = build(**nodes)
    with np.errstate(all="ignore"):
        ref_out = np.asarray(reference(**values))
    u = np.random.default_rng(len(name)).standard_normal(ref_out.shape)
    ct = aj.input("u_ct", out.shape)
    loss = aj.sum(out * ct)

    def f(**vals):                       # the numpy loss, as the maths reads it
        with np.errstate(all="ignore"):
            return float(np.sum(np.asarray(reference(**{**values, **vals})) * u))
    return nodes, values, wrt, out, loss, u, f


def _fd_grad(f, values, k, h=1e-6):
    x = values[k]
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(**{k: up}) - f(**{k: down})) / (2 * h)
    return g


def _fd_hvp(f, values, wrt, dirs, k, h=1e-4):
    """d/dx_k of the directional derivative along dirs (mixed second differences)."""
    x = values[k]
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        total = 0.0
        for s1 in (1, -1):
            for s2 in (1, -1):
                moved = {j: values[j] + s1 * h * dirs[j] for j in wrt}
                y = np.array(moved[k], dtype=float)
                y[i] += s2 * h
                moved[k] = y
                total += s1 * s2 * f(**moved)
        out[i] = total / (4 * h * h)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_gradient_through_structural_ops_in_the_unused_branch(backend, name):
    nodes, values, wrt, out, loss, u, f = _setup(name)
    grads = aj.grad(loss, [nodes[k] for k in wrt])
    fn = compile_on(grads, backend)
    with np.errstate(all="ignore"):
        got = fn(**{k: v for k, v in {**values, "u_ct": u}.items() if k in fn.input_names})
        for k, g in zip(wrt, got):
            assert np.all(np.isfinite(g)), (k, g)
            np.testing.assert_allclose(g, _fd_grad(f, values, k), rtol=1e-6, atol=1e-8,
                                       err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_hessian_vector_product_through_structural_ops_in_the_unused_branch(backend, name):
    nodes, values, wrt, out, loss, u, f = _setup(name)
    grads = aj.grad(loss, [nodes[k] for k in wrt])
    rng = np.random.default_rng(7)
    dirs = {k: rng.standard_normal(values[k].shape) for k in wrt}
    vs = [aj.input("v_" + k, nodes[k].shape) for k in wrt]
    dot = aj.sum(grads[0] * vs[0])
    for g, v in zip(grads[1:], vs[1:]):
        dot = dot + aj.sum(g * v)
    hvps = aj.grad(dot, [nodes[k] for k in wrt])
    fn = compile_on(hvps, backend)
    call = {**values, "u_ct": u, **{"v_" + k: d for k, d in dirs.items()}}
    with np.errstate(all="ignore"):
        got = fn(**{k: v for k, v in call.items() if k in fn.input_names})
        for k, hv in zip(wrt, got):
            assert np.all(np.isfinite(hv)), (k, hv)
            want = _fd_hvp(f, values, wrt, dirs, k)
            np.testing.assert_allclose(hv, want, rtol=1e-5, atol=1e-5, err_msg=k)


def test_a_mask_crossing_a_structural_op_is_one_bool_node_and_counted():
    x, c = aj.input("x", (None, 3)), aj.input("c", (None, 1), "bool")
    g = aj.grad(aj.sum(aj.where(c, aj.sum(aj.sqrt(x), axis=1, keepdims=True), 0.0)), x)
    f = aj.compile(g, backend="interp")
    assert f.traced.rewrites.get("double_where", 0) >= 1
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(f(x=X, c=ROWS),
                                      np.where(ROWS, 0.5 / np.sqrt(np.abs(X)), 0.0))


def test_graphs_without_where_get_no_guard_and_cross_entropy_keeps_its_graph():
    """No mask, no extra node: an MLP's gradient and cross_entropy's (whose picked
    log-probability is a where over one-hot rows, each holding its 1) have no guard."""
    x, t = aj.input("x", (None, 4)), aj.input("t", (None, 2))
    lab = aj.input("lab", (None,), "int64")
    w1, w2 = aj.param("w1", (4, 5)), aj.param("w2", (5, 2))
    y = aj.sigmoid(x @ w1) @ w2
    for loss in (aj.mean(aj.sum((y - t) ** 2, axis=1)), aj.cross_entropy(y, lab)):
        grads = aj.grad(loss, [w1, w2])
        nodes = aj.Graph(grads).order()
        assert not [n for n in nodes if n.meta.get("rewrite") == "double_where"]
        assert not [n for n in nodes if n.dtype == "bool" and n.op in ("greater", "reshape",
                                                                       "broadcast")]


def test_matmul_limit_rows_taken_in_part():
    """The stated limit: through a matmul the mask is kept per row of A's cotangent (and per
    column of B's).  A row of the product taken in part multiplies B's unused columns by an
    exact 0 inside the product, so NaN data there still gives NaN (as plain autodiff)."""
    a, b = aj.input("a", (2, 2)), aj.input("b", (2, 2))
    m = np.array([[True, False], [True, True]])
    g = aj.grad(aj.sum(aj.where(aj.const(m), a @ b, 0.0)), a)
    with np.errstate(all="ignore"):
        got = aj.compile(g, backend="interp")(a=np.ones((2, 2)),
                                              b=np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert np.isnan(got[0, 0]) and np.isfinite(got[0, 1])
