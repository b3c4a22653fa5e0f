"""aj.jacobian and aj.hessian: against two-sided finite differences of numpy references
(float64), reverse against forward mode, the per-example Jacobian against the full
Jacobian's block diagonal (batch 1 and 7), llvm and the ptx emulation against the
interpreter, and the declaration errors.

Each model is written once for both namespaces (``m`` is ``adjit`` or ``numpy``), so the
finite differences never run adjit."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx")]

import adjit as aj  # noqa: E402
from adjit.ir import DTypeError, ShapeError, ancestors  # noqa: E402
from ptx_helpers import compare, emulated  # noqa: E402

H = 1e-6
R = np.random.default_rng(7)
W = R.standard_normal((3, 4))
V = R.standard_normal((4, 2))


def _run(out, backend="interp", **values):
    return aj.compile(out, backend=backend)(**values)


# per-example models: x (..., 3) -> y (..., *out)
def net(m, x):                                    # (.., 3) -> (.., 2): the lecture's MLP
    return m.tanh(x @ W) @ V


def wide(m, x):                                   # (.., 3) -> (.., 2, 2), several ops
    h = m.sin(x @ W[:, :2]) * m.exp(0.3 * x[..., :1])
    return m.stack([h * h, h / (1.0 + x[..., 1:2] ** 2)], axis=-1)


def scalar(m, x):                                 # (.., 3) -> (..): one number per example
    return m.log(1.0 + m.sum(m.tanh(x @ W) ** 2, axis=-1))


MODELS = {"net": (net, (2,)), "wide": (wide, (2, 2)), "scalar": (scalar, ())}


def fd_jacobian(f, x):
    """∂f/∂x by two-sided differences, shape f(x).shape + x.shape."""
    y0 = np.asarray(f(x))
    J = np.zeros(y0.shape + x.shape)
    for j in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[j] = H
        J[(...,) + j] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * H)
    return J


def close(got, want, tol=1e-7):
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
def test_jacobian_unbatched_against_fd(name, mode):
    f, _ = MODELS[name]
    x = aj.input("x", (2, 3))
    x0 = R.standard_normal((2, 3))
    J = aj.jacobian(f(aj, x), x, mode)
    want = fd_jacobian(lambda v: f(np, v), x0)
    assert J.shape == want.shape
    close(_run(J, x=x0), want)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_per_example_jacobian_is_the_block_diagonal(name, batch):
    """With the batch axis first: each example's Jacobian w.r.t. its own input -- the
    diagonal blocks of the full Jacobian (and the off-diagonal blocks are zero)."""
    f, out = MODELS[name]
    x0 = R.standard_normal((batch, 3))
    full = fd_jacobian(lambda v: f(np, v), x0)                   # (B, *out, B, 3)
    full_aj = aj.input("xs", (batch, 3))
    got_full = _run(aj.jacobian(f(aj, full_aj), full_aj), xs=x0)
    close(got_full, full)
    idx = np.arange(batch)
    blocks = np.moveaxis(full, len(out) + 1, 1)[idx, idx]         # (B, *out, 3)
    others = full.copy()
    others[(idx,) + (slice(None),) * len(out) + (idx,)] = 0.0
    assert np.all(np.abs(others) < 1e-8)
    x = aj.input("x", (None, 3))
    results = []
    for mode in ("reverse", "forward", "auto"):
        J = aj.jacobian(f(aj, x), x, mode)
        assert J.shape == (None,) + out + (3,)
        results.append(_run(J, x=x0))
        close(results[-1], blocks)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


def test_jacobian_of_a_pooled_output_and_of_a_parameter():
    """x batched, y not (a sum over examples): reverse mode, y.shape + x.shape with the batch
    axis in the middle; y batched, x a parameter: forward mode, (B, *y[1:], *x.shape)."""
    x = aj.input("x", (None, 3))
    x0 = R.standard_normal((5, 3))
    pooled = aj.sum(net(aj, x), axis=0)                          # (2,)
    J = aj.jacobian(pooled, x)
    assert J.shape == (2, None, 3)
    close(_run(J, x=x0), fd_jacobian(lambda v: np.sum(net(np, v), axis=0), x0))
    with pytest.raises(ShapeError, match="forward mode needs one JVP per element"):
        aj.jacobian(pooled, x, "forward")
    Wp = aj.param("Wp", (3, 4))
    y = aj.tanh(x @ Wp) @ V                                      # (B, 2)
    J = aj.jacobian(y, Wp)
    assert J.shape == (None, 2, 3, 4)
    close(_run(J, x=x0, Wp=W), fd_jacobian(lambda w: np.tanh(x0 @ w) @ V, W))
    with pytest.raises(ShapeError, match="reverse mode needs one VJP per element"):
        aj.jacobian(y, Wp, "reverse")


def test_per_example_jacobian_refuses_pooled_examples():
    x = aj.input("x", (None, 3))
    centered = x - aj.mean(x, axis=0)                             # batch norm's mean
    with pytest.raises(ShapeError, match="mixes the examples"):
        aj.jacobian(aj.tanh(centered), x)
    with pytest.raises(ShapeError, match="mixes the examples"):
        aj.jacobian(x * aj.sum(x), x)


def test_jacobian_edge_cases():
    x = aj.input("x", (None, 3))
    const_y = aj.broadcast_to(aj.const(2.0), (4,))                # does not depend on x
    u = aj.input("u", (4,))
    J = aj.jacobian(u * 1.0, aj.input("z", (2,)))
    assert J.shape == (4, 2)
    np.testing.assert_array_equal(_run(J, u=np.ones(4), z=np.ones(2)), np.zeros((4, 2)))
    e = aj.input("e", (0,))
    J = aj.jacobian(aj.sin(e), e)
    assert J.shape == (0, 0)
    assert _run(J, e=np.zeros(0)).shape == (0, 0)
    J = aj.jacobian(aj.exp(x), x)                                 # batch 0
    assert _run(J, x=np.zeros((0, 3))).shape == (0, 3, 3)
    assert const_y.shape == (4,)


def test_jacobian_float32_and_errors():
    x = aj.input("x", (None, 3), "float32")
    J = aj.jacobian(aj.tanh(x * 2.0), x)
    assert J.dtype == "float32"
    x0 = R.standard_normal((2, 3)).astype("float32")
    got = _run(J, x=x0)
    want = np.stack([np.diag(2 * (1 - np.tanh(2 * r) ** 2)) for r in x0.astype("f8")])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    i = aj.input("i", (3,), "int64")
    with pytest.raises(DTypeError, match="must be float"):
        aj.jacobian(aj.cast(i, "float64"), i)
    with pytest.raises(DTypeError, match="must be float"):
        aj.jacobian(i, aj.input("f", (3,)))
    with pytest.raises(ValueError, match="mode must be one of"):
        aj.jacobian(x, x, "sideways")
    with pytest.raises(TypeError, match="must be a node"):
        aj.jacobian(np.ones(3), x)


# ------------------------------------------------------------------ Hessians

def fd_hessian(f, x, h=1e-4):
    """Second differences of the scalar numpy function f, shape x.shape + x.shape."""
    n = x.size
    Hm = np.zeros((n, n))
    flat = x.reshape(-1)
    for i in range(n):
        for j in range(n):
            def at(si, sj):
                v = flat.copy()
                v[i] += si * h
                v[j] += sj * h
                return float(f(v.reshape(x.shape)))
            Hm[i, j] = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)
    return Hm.reshape(x.shape + x.shape)


def small_network():
    """The lecture's worked example: a 2 -> 3 tanh -> 1 network's squared error, as a
    function of its first weight matrix."""
    X = R.standard_normal((4, 2))
    T = R.standard_normal((4, 1))
    W2 = R.standard_normal((3, 1))

    def loss(m, W1):
        return 0.5 * m.sum((m.tanh(X @ W1) @ W2 - T) ** 2)
    return loss


def test_hessian_of_a_small_network_against_fd():
    loss = small_network()
    W1 = aj.param("W1", (2, 3))
    w0 = R.standard_normal((2, 3))
    Hn = aj.hessian(loss(aj, W1), W1)
    assert Hn.shape == (2, 3, 2, 3)
    got = _run(Hn, W1=w0)
    want = fd_hessian(lambda w: loss(np, w), w0)
    close(got, want, tol=1e-5)
    flat = got.reshape(6, 6)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-12, atol=1e-14)
    # each row is a Hessian-vector product
    v = aj.input("v", (2, 3))
    v0 = R.standard_normal((2, 3))
    hv = _run(aj.hvp(loss(aj, W1), W1, v), W1=w0, v=v0)
    np.testing.assert_allclose(np.tensordot(got, v0, 2), hv, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 7])
def test_per_example_hessian(batch):
    """L a sum of per-example terms, x batched: the diagonal blocks (B, 3, 3)."""
    x = aj.input("x", (None, 3))
    x0 = R.standard_normal((batch, 3))
    Hn = aj.hessian(aj.sum(scalar(aj, x)), x)
    assert Hn.shape == (None, 3, 3)
    got = _run(Hn, x=x0)
    for b in range(batch):
        close(got[b], fd_hessian(lambda v: scalar(np, v), x0[b]), tol=1e-5)


def test_hessian_errors():
    x = aj.input("x", (3,))
    with pytest.raises(ShapeError, match="must be a scalar"):
        aj.hessian(aj.sin(x), x)
    i = aj.input("i", (3,), "int64")
    with pytest.raises(DTypeError, match="must be float"):
        aj.hessian(aj.sum(aj.cast(i, "float64")), i)
    with pytest.raises(DTypeError, match="must be float"):
        aj.hessian(aj.cast(aj.sum(x), "int64"), x)
    xb = aj.input("xb", (None, 3))
    with pytest.raises(ShapeError, match="mixes the examples"):
        aj.hessian(aj.sum(xb) ** 2, xb)


# ------------------------------------------------------------------ native backends

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_llvm_equals_interp(dtype):
    x = aj.input("x", (None, 3), dtype)
    outs = [aj.jacobian(net(aj, x), x, "reverse"), aj.jacobian(wide(aj, x), x, "forward"),
            aj.hessian(aj.sum(scalar(aj, x)), x)]
    x0 = R.standard_normal((7, 3)).astype(dtype)
    want = _run(outs, x=x0)
    got = _run(outs, "llvm", x=x0)
    tol = 1e-10 if dtype == "float64" else 1e-5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.max(np.abs(w)))


def test_ptx_emulation_equals_interp():
    x = aj.input("x", (None, 3))
    outs = [aj.jacobian(net(aj, x), x), aj.hessian(aj.sum(scalar(aj, x)), x)]
    compare(emulated(outs), outs, {"x": R.standard_normal((5, 3))}, "float64")


def test_reverse_jacobian_is_one_product_per_layer():
    """The m backward passes are one computation on m seeds: the stack is moved to the
    seeds, so this MLP's Jacobian holds x @ W and 2 backward products, not 1 + 2m."""
    C = R.standard_normal((4, 6))
    x = aj.input("x", (None, 3))
    J = aj.jacobian(aj.tanh(x @ W) @ C, x, "reverse")
    products = [n for n in ancestors([J]) if n.op == "matmul"]
    assert len(products) == 3, len(products)    # x @ W, and the two backward ones
    x0 = R.standard_normal((5, 3))
    close(_run(J, x=x0), np.stack([fd_jacobian(lambda v: np.tanh(v @ W) @ C, r) for r in x0]))
