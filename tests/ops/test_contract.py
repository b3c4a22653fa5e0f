"""matmul_sum (ops/contract.py): a stack of products summed over its batch axes.

The weight gradient of ``x @ W`` over a sequence (``x: (B, T, D)``) is one matmul_sum,
run on llvm as ONE GEMM with K = B·T when ``x`` is read transposed, else as one
accumulating GEMM per batch element; on ptx each tile loops over the stack.  Both sum in
another order than numpy's product-then-sum: compared within rounding (1e-12 float64,
1e-5 float32 relative to the largest value)."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.ir import DTypeError, ShapeError
from adjit.ops.contract import matmul_sum

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "ptx"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from gradtools import check_model  # noqa: E402
from ptx_helpers import assert_close, compare, emulated  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-5}


def _close(got, want, dtype):
    scale = max(float(np.max(np.abs(want))) if np.size(want) else 0.0, 1e-30)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def _ops(outputs):
    return [n.op for n in aj.compile(outputs, backend="interp").graph.nodes]


def _forms(dtype):
    """matmul_sum over (None, 3) batch axes with each operand plain or a transpose view."""
    p = aj.input("p", (None, 3, 5, 4), dtype=dtype)      # (*batch, K=5, M=4)
    q = aj.input("q", (None, 3, 5, 6), dtype=dtype)      # (*batch, K=5, N=6)
    r = aj.input("r", (None, 3, 4, 5), dtype=dtype)      # (*batch, M=4, K=5)
    s = aj.input("s", (None, 3, 6, 5), dtype=dtype)      # (*batch, N=6, K=5)
    sw = lambda v: aj.swapaxes(v, -1, -2)
    outs = [matmul_sum(sw(p), q), matmul_sum(r, q), matmul_sum(sw(p), sw(s)), matmul_sum(r, sw(s))]
    ref = lambda v: [np.matmul(np.swapaxes(v["p"], -1, -2), v["q"]).sum((0, 1)),
                     np.matmul(v["r"], v["q"]).sum((0, 1)),
                     np.matmul(np.swapaxes(v["p"], -1, -2), np.swapaxes(v["s"], -1, -2)).sum((0, 1)),
                     np.matmul(v["r"], np.swapaxes(v["s"], -1, -2)).sum((0, 1))]
    return outs, ref


def _values(batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = dict(p=(batch, 3, 5, 4), q=(batch, 3, 5, 6), r=(batch, 3, 4, 5), s=(batch, 3, 6, 5))
    vals = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    if batch:
        vals["q"][0, 1, 2] = 0.0                # zero rows and negative values
        vals["r"][-1, 0] *= -1e3
    return vals


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 2, 7])
def test_forward_every_operand_form(dtype, batch):
    """Interpreter, llvm (one GEMM when the left operand is a transpose view, else an
    accumulating GEMM per element) and numpy agree; batch 0 gives zeros."""
    outs, ref = _forms(dtype)
    vals = _values(batch, dtype)
    want = ref(vals)
    interp = aj.compile(outs, backend="interp")(**vals)
    llvm = aj.compile(outs, backend="llvm", cache=False)(**vals)
    for i, l, w in zip(interp, llvm, want):
        assert i.shape == w.shape and l.dtype == np.dtype(dtype)
        _close(i, w, dtype)
        _close(l, w, dtype)
    if batch == 0:
        assert all(not np.any(l) for l in llvm)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_ptx_emulation_every_operand_form(batch):
    outs, _ = _forms("float32")
    compare(emulated(outs), outs, _values(batch, "float32"), "float32")


def test_ptx_emulation_more_tiles_than_one():
    """Output larger than one 64x64 tile, K not a multiple of the K step."""
    a = aj.input("a", (None, 70, 65), dtype="float32")
    b = aj.input("b", (None, 70, 67), dtype="float32")
    out = matmul_sum(aj.swapaxes(a, -1, -2), b)
    rng = np.random.default_rng(5)
    vals = dict(a=rng.standard_normal((3, 70, 65)).astype("float32"),
                b=rng.standard_normal((3, 70, 67)).astype("float32"))
    compare(emulated(out), out, vals, "float32")


def test_gradient_against_finite_differences():
    """The VJP of matmul_sum itself (ḡ broadcast over the batch), so what differentiates a
    weight gradient again (second order) is checked against finite differences."""
    rng = np.random.default_rng(1)
    vals = dict(a=rng.standard_normal((2, 3, 4, 5)), b=rng.standard_normal((2, 3, 5, 6)))
    check_model(lambda a, b: aj.sin(matmul_sum(a, b)),
                lambda a, b: np.sin(np.matmul(a, b).sum((0, 1))), vals,
                {"a": (2, 3, 4, 5), "b": (2, 3, 5, 6)})


@pytest.mark.parametrize("batch", [1, 3])
def test_weight_gradient_of_a_product_over_a_sequence(batch):
    """W in (B, T, D) @ (D, E) and V in (F, T) @ (B, T, D) get their gradients as one
    matmul_sum each; checked against finite differences (with x too)."""
    rng = np.random.default_rng(batch)
    vals = dict(x=rng.standard_normal((batch, 4, 3)), w=rng.standard_normal((3, 5)),
                v=rng.standard_normal((2, 4)))
    shapes = dict(x=(None, 4, 3), w=(3, 5), v=(2, 4))
    check_model(lambda x, w, v: aj.tanh(x @ w) + aj.sum((v @ x) ** 2),
                lambda x, w, v: np.tanh(x @ w) + np.sum((v @ x) ** 2),
                vals, shapes)
    x, w = aj.input("x", (None, 4, 3)), aj.input("w", (3, 5))
    assert "matmul_sum" in _ops(aj.grad(aj.sum(aj.tanh(x @ w)), [w]))


def test_second_order_through_the_weight_gradient():
    """d/dx of ||dL/dW||² with L = Σ tanh(x @ W): the derivative of a matmul_sum against
    finite differences of the first-order gradient computed by numpy."""
    rng = np.random.default_rng(4)
    X, W = rng.standard_normal((3, 4, 2)), rng.standard_normal((2, 5))
    x, w = aj.input("x", (None, 4, 2)), aj.input("w", (2, 5))
    (gw,) = aj.grad(aj.sum(aj.tanh(x @ w)), [w])
    assert "matmul_sum" in _ops(gw)
    (gx,) = aj.grad(aj.sum(gw * gw), [x])

    def f(Xv):
        G = (1 - np.tanh(Xv @ W) ** 2)
        gwv = np.einsum("btd,bte->de", Xv, G)
        return np.sum(gwv * gwv)
    h, num = 1e-6, np.zeros_like(X)
    for i in np.ndindex(X.shape):
        up, dn = X.copy(), X.copy()
        up[i] += h
        dn[i] -= h
        num[i] = (f(up) - f(dn)) / (2 * h)
    for backend in ("interp", "llvm"):
        got = aj.compile(gx, backend=backend, cache=False)(x=X, w=W) if backend == "llvm" \
            else aj.compile(gx, backend=backend)(x=X, w=W)
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 5])
def test_linear_layer_gradients_llvm_and_ptx_against_interp(dtype, batch):
    x = aj.input("x", (None, 7, 6), dtype=dtype)
    w = aj.input("w", (6, 9), dtype=dtype)
    v = aj.input("v", (3, 7), dtype=dtype)
    loss = aj.sum(aj.tanh(x @ w)) + aj.sum((v @ x) ** 2)
    grads = aj.grad(loss, [w, v, x])
    rng = np.random.default_rng(batch)
    vals = dict(x=rng.standard_normal((batch, 7, 6)).astype(dtype),
                w=rng.standard_normal((6, 9)).astype(dtype),
                v=rng.standard_normal((3, 7)).astype(dtype))
    want = aj.compile(grads, backend="interp")(**vals)
    got = aj.compile(grads, backend="llvm", cache=False)(**vals)
    for g, w_ in zip(got, want):
        assert_close(g, w_, dtype)
    compare(emulated(grads), grads, vals, dtype)


def test_bad_operands_are_refused():
    a = aj.input("a", (None, 3, 4))
    with pytest.raises(ShapeError, match="batch dimensions"):
        matmul_sum(a, aj.input("b", (2, 4, 5)))
    with pytest.raises(ShapeError, match="inner sizes"):
        matmul_sum(a, aj.input("c", (None, 3, 5)))
    with pytest.raises(ShapeError, match="rank >= 3"):
        matmul_sum(aj.input("d", (3, 4)), aj.input("e", (4, 5)))
    with pytest.raises(DTypeError):
        matmul_sum(a, aj.input("f", (None, 4, 5), dtype="float32"))


# --- sums of products aᵀb fold into one matmul_sum (passes/products.py) ------------------
def _rnn(T, H=3, I=2, dtype="float64"):
    x = aj.input("x", (None, T, I), dtype=dtype)
    wx, wh = aj.input("wx", (I, H), dtype=dtype), aj.input("wh", (H, H), dtype=dtype)
    h = None
    for t in range(T):
        z = x[:, t] @ wx
        h = aj.tanh(z if h is None else z + h @ wh)
    return x, wx, wh, aj.sum(h * h)


def _rnn_numpy(X, Wx, Wh):
    h = None
    for t in range(X.shape[1]):
        z = X[:, t] @ Wx
        h = np.tanh(z if h is None else z + h @ Wh)
    return np.sum(h * h)


def _optimized_ops(outputs):
    return [n.op for n in aj.compile(outputs, backend="interp").graph.nodes]


def test_recurrent_weight_gradient_is_one_product():
    """Σ_t h_{t-1}ᵀ ḡ_t over T = 6 steps: the 5 products become one matmul_sum (with the
    input weight's, which the pad sums fold to); no rank-2 (H, H) matmul is left."""
    x, wx, wh, loss = _rnn(6)
    gwh = aj.grad(loss, [wh])[0]
    g = aj.compile(gwh, backend="interp").graph
    sums = [n for n in g.nodes if n.op == "matmul_sum"]
    assert len(sums) == 1 and sums[0].inputs[0].shape == (5, 3, None)
    assert not [n for n in g.nodes if n.op == "matmul" and n.shape == (3, 3)]


@pytest.mark.parametrize("batch", [1, 4])
def test_recurrent_weight_gradient_against_finite_differences(batch):
    rng = np.random.default_rng(batch)
    X, Wx, Wh = rng.standard_normal((batch, 5, 2)), rng.standard_normal((2, 3)), \
        rng.standard_normal((3, 3)) * 0.5
    x, wx, wh, loss = _rnn(5)
    gx, gwx, gwh = aj.grad(loss, [x, wx, wh])

    def fd(f, P, h=1e-6):
        out = np.zeros_like(P)
        for i in np.ndindex(P.shape):
            up, dn = P.copy(), P.copy()
            up[i] += h
            dn[i] -= h
            out[i] = (f(up) - f(dn)) / (2 * h)
        return out
    want = [fd(lambda v: _rnn_numpy(v, Wx, Wh), X), fd(lambda v: _rnn_numpy(X, v, Wh), Wx),
            fd(lambda v: _rnn_numpy(X, Wx, v), Wh)]
    vals = dict(x=X, wx=Wx, wh=Wh)
    for got in (aj.compile([gx, gwx, gwh], backend="interp")(**vals),
                aj.compile([gx, gwx, gwh], backend="llvm", cache=False)(**vals)):
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(g_, w_, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_recurrent_gradients_llvm_and_ptx_against_unoptimized_interp(dtype, batch):
    """Against the interpreter with no passes (products then adds, numpy's order)."""
    x, wx, wh, loss = _rnn(7, H=5, I=3, dtype=dtype)
    grads = aj.grad(loss, [x, wx, wh])
    rng = np.random.default_rng(batch)
    vals = dict(x=rng.standard_normal((batch, 7, 3)).astype(dtype),
                wx=rng.standard_normal((3, 5)).astype(dtype),
                wh=(rng.standard_normal((5, 5)) * 0.5).astype(dtype))
    want = aj.compile(grads, backend="interp", passes=())(**vals)
    for got in (aj.compile(grads, backend="llvm", cache=False)(**vals),
                emulated(grads)(**vals)):
        for g_, w_ in zip(got, want):
            assert_close(g_, w_, dtype)


def test_sums_of_static_products_and_ones_that_do_not_join():
    """aᵀb + cᵀd + eᵀf with a static K joins; a term of another K, a product whose left
    operand is not a transpose, and a rank-3 product stay as written; all equal numpy."""
    rng = np.random.default_rng(7)
    names = dict(a=(4, 3), b=(4, 2), c=(4, 3), d=(4, 2), e=(4, 3), f=(4, 2), p=(6, 3),
                 q=(6, 2), r=(3, 4), s=(4, 2))
    n = {k: aj.input(k, s) for k, s in names.items()}
    v = {k: rng.standard_normal(s) for k, s in names.items()}
    v["c"][1] = [np.inf, -0.0, 2.0]
    T = aj.transpose
    joined = T(n["a"]) @ n["b"] + T(n["c"]) @ n["d"] + T(n["e"]) @ n["f"]
    mixed = T(n["a"]) @ n["b"] + T(n["p"]) @ n["q"] + n["r"] @ n["s"]
    want = [v["a"].T @ v["b"] + v["c"].T @ v["d"] + v["e"].T @ v["f"],
            v["a"].T @ v["b"] + v["p"].T @ v["q"] + v["r"] @ v["s"]]
    assert _optimized_ops(joined).count("matmul_sum") == 1
    assert "matmul" not in _optimized_ops(joined)
    assert "matmul_sum" not in _optimized_ops(mixed)
    for backend in ("interp", "llvm"):
        got = aj.compile([joined, mixed], backend=backend)(**v)
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(g_, w_, rtol=1e-12, atol=1e-12)
    got = emulated([joined, mixed])(**{k: x.astype("float32") for k, x in v.items()})
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_product_of_a_row_broadcast_is_a_broadcast_product(batch):
    """matmul(broadcast(x) along rows, w) -> broadcast(matmul(x, w)): the same dot
    products, so equal to numpy; gradients against finite differences; llvm and ptx
    emulation against the interpreter."""
    rng = np.random.default_rng(batch)
    vals = dict(x=rng.standard_normal((batch, 1, 4)), w=rng.standard_normal((4, 3)))
    vals["x"][..., 1] = -0.0
    build = lambda x, w: aj.tanh(aj.broadcast_to(x, (None, 6, 4)) @ w)
    ref = lambda x, w: np.tanh(np.broadcast_to(x, (x.shape[0], 6, 4)) @ w)
    if batch:
        check_model(build, ref, vals, {"x": (None, 1, 4), "w": (4, 3)})
    x, w = aj.input("x", (None, 1, 4)), aj.input("w", (4, 3))
    out = build(x, w)
    products = [n for n in aj.compile(out, backend="interp").graph.nodes if n.op == "matmul"]
    assert len(products) == 1 and products[0].shape[-2] == 1
    want = ref(**vals)
    np.testing.assert_allclose(aj.compile(out, backend="llvm", cache=False)(**vals), want,
                               rtol=1e-12, atol=1e-12)
    v32 = {k: v.astype("float32") for k, v in vals.items()}
    x, w = aj.input("x", (None, 1, 4), "float32"), aj.input("w", (4, 3), "float32")
    out = build(x, w)
    compare(emulated(out), out, v32, "float32")
