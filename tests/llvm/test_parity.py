"""The llvm backend against the numpy interpreter (the oracle), op by op and model by model.

float64 results must agree to rtol 1e-10 (no approximation but the inline math functions,
accurate to a few ulp), float32 to 1e-5.
"""
import numpy as np
import pytest

import adjit as aj
from adjit.ops import REGISTRY
from gradtools import each_elementwise_op

RTOL = {"float64": 1e-10, "float32": 1e-5}


def assert_close(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = np.max(np.abs(want)) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * max(scale, 1e-30))


def both(outputs, **args):
    fi = aj.compile(outputs, backend="interp")
    fl = aj.compile(outputs, backend="llvm", opt_level=1)
    return fi(**args), fl(**args)


ELEMENTWISE = sorted(n for n, op in REGISTRY.items() if op.elementwise)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_elementwise_op_and_its_gradient(dtype):
    """One module holding every elementwise op's forward and gradient, shapes (B, 5) and (5,)."""
    rng = np.random.default_rng(1)
    x = aj.input("x", (None, 5), dtype)
    y = aj.param("y", (5,), dtype)
    c = aj.input("c", (None, 5), "bool")
    outs, loss = [], 0.0
    for _, out, _ in each_elementwise_op(x, y, c):
        outs.append(out)
        if out.dtype != "bool":
            loss = loss + aj.sum(out * out)
    gx, gy = aj.grad(loss, [x, y])
    args = dict(x=rng.standard_normal((7, 5)).astype(dtype), y=rng.standard_normal(5).astype(dtype),
                c=rng.standard_normal((7, 5)) > 0)
    ri, rl = both(outs + [loss, gx, gy], **args)
    for name, a, b in zip(ELEMENTWISE + ["loss", "gx", "gy"], ri, rl):
        if a.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert_close(b, a, dtype)


def mlp(dtype, act=aj.sigmoid):
    x = aj.input("x", (None, 6), dtype)
    t = aj.input("t", (None, 3), dtype)
    W1, b1 = aj.param("W1", (6, 8), dtype), aj.param("b1", (8,), dtype)
    W2, b2 = aj.param("W2", (8, 3), dtype), aj.param("b2", (3,), dtype)
    y = act(x @ W1 + b1) @ W2 + b2
    return (x, t, W1, b1, W2, b2), y


def values(dtype, batch, rng):
    return dict(x=rng.standard_normal((batch, 6)).astype(dtype),
                t=rng.standard_normal((batch, 3)).astype(dtype),
                W1=(rng.standard_normal((6, 8)) / 2).astype(dtype), b1=rng.standard_normal(8).astype(dtype),
                W2=(rng.standard_normal((8, 3)) / 3).astype(dtype), b2=rng.standard_normal(3).astype(dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss_kind", ["mse", "xent", "max"])
def test_models_all_batch_sizes(dtype, loss_kind):
    rng = np.random.default_rng(2)
    (x, t, *params), y = mlp(dtype, act=aj.tanh if loss_kind == "xent" else aj.sigmoid)
    if loss_kind == "mse":
        loss = 0.5 * aj.sum((y - t) ** 2) / 4
    elif loss_kind == "xent":
        loss = aj.cross_entropy(aj.relu(y) - y * 0.5, aj.softmax(t))
    else:
        loss = aj.mean(aj.max(y - t, axis=1)) + aj.mean(aj.logsumexp(y, axis=0))
    grads = aj.grad(loss, params)
    fi = aj.compile([loss] + grads, backend="interp")
    fl = aj.compile([loss] + grads, backend="llvm", opt_level=1)
    for batch in (1, 7, 64, 1000):
        args = values(dtype, batch, rng)
        for a, b in zip(fi(**args), fl(**args)):
            assert_close(b, a, dtype)


def test_hvp_matches_interpreter():
    rng = np.random.default_rng(3)
    (x, t, *params), y = mlp("float64")
    loss = aj.mse(y, t)
    vs = [aj.input(f"v{k}", p.shape) for k, p in enumerate(params)]
    dot = sum(aj.sum(g * v) for g, v in zip(aj.grad(loss, params), vs))
    hvp = aj.grad(dot, params)
    args = values("float64", 7, rng)
    args.update({f"v{k}": rng.standard_normal(p.shape) for k, p in enumerate(params)})
    ri, rl = both(hvp, **args)
    for a, b in zip(ri, rl):
        assert_close(b, a, "float64")


def test_integer_labels_transposes_and_outputs_that_are_views():
    rng = np.random.default_rng(4)
    x = aj.input("x", (None, 4))
    lab = aj.input("lab", (None,), "int64")
    W = aj.param("W", (4, 3))
    logits = x @ W
    loss = aj.cross_entropy(logits, lab)
    gW = aj.grad(loss, W)
    outs = [loss, gW, W.T, aj.reshape(W, (3, 4)), x, aj.transpose(x) @ x, aj.mean(x, axis=0)]
    args = dict(x=rng.standard_normal((9, 4)), lab=rng.integers(0, 3, 9), W=rng.standard_normal((4, 3)))
    ri, rl = both(outs, **args)
    for a, b in zip(ri, rl):
        assert_close(b, a, "float64")


def test_zero_batch_and_results_do_not_alias():
    x = aj.input("x", (None, 3))
    f = aj.compile([aj.sum(x * 2.0, axis=1), aj.sum(x)], backend="llvm", opt_level=1)
    a, s = f(x=np.zeros((0, 3)))
    assert a.shape == (0,) and float(s) == 0.0
    r1 = f(x=np.ones((2, 3)))
    r2 = f(x=np.full((2, 3), 5.0))
    assert r1[0].tolist() == [6.0, 6.0] and r2[0].tolist() == [30.0, 30.0]
