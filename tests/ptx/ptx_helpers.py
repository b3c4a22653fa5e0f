"""Shared by the ptx tests: the CPU grid emulation against the interpreter, and small models."""
from __future__ import annotations

import numpy as np

import adjit as aj
from adjit.ops import REGISTRY
from gradtools import each_elementwise_op

# The ptx kernels use no approximate instructions (math comes from mathfn, accurate to a few
# ulp), so float32 is held to 1e-5 here, tighter than the 1e-4; what differs from the
# interpreter is the order of summation (block trees, split reductions) and FMA contraction.
RTOL = {"float64": 1e-10, "float32": 1e-5}


def assert_close(got, want, dtype, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    if want.dtype == bool or want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    scale = float(np.max(np.abs(want[np.isfinite(want)]))) if np.isfinite(want).any() else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * max(scale, 1e-30),
                               err_msg=what)


def emulated(outputs, **options):
    """The ptx backend with its kernels run over the thread grid on the CPU (O0: fast to build)."""
    options.setdefault("opt_level", 0)
    return aj.compile(outputs, backend="ptx", emulate=True, **options)


def compare(f, outputs, args: dict, dtype: str):
    """Run the ptx function ``f`` and the interpreter on ``args``; compare every output."""
    want = aj.compile(outputs, backend="interp")(**args)
    got = f(**args)
    if not isinstance(want, tuple):
        want, got = (want,), (got,)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, dtype, what=f"output {k}")
    return got


ELEMENTWISE = sorted(n for n, op in REGISTRY.items() if op.elementwise)


def every_elementwise_op(dtype, tag=""):
    """One graph holding every elementwise op's forward value and the gradient of their
    squared sum, with operands (B, 5) and (5,) mapped into each op's domain (inputs x, y, c,
    their names followed by ``tag``)."""
    x = aj.input("x" + tag, (None, 5), dtype)
    y = aj.param("y" + tag, (5,), dtype)
    c = aj.input("c" + tag, (None, 5), "bool")
    outs, loss = [], 0.0
    for _, out, xs in each_elementwise_op(x, y, c):
        outs.append(out)
        if out.dtype != "bool":
            loss = loss + aj.sum(out * out)
    return outs + [loss] + aj.grad(loss, [x, y])


def elementwise_args(dtype, batch, seed=1, tag=""):
    rng = np.random.default_rng(seed)
    return {"x" + tag: rng.standard_normal((batch, 5)).astype(dtype),
            "y" + tag: rng.standard_normal(5).astype(dtype),
            "c" + tag: rng.standard_normal((batch, 5)) > 0}


def mlp(dtype, sizes=(6, 8, 3), act=aj.sigmoid):
    """Two-layer MLP with squared error (the W2 shape, small): [loss, dW1, db1, dW2, db2]."""
    x = aj.input("x", (None, sizes[0]), dtype)
    t = aj.input("t", (None, sizes[2]), dtype)
    W1, b1 = aj.param("W1", sizes[:2], dtype), aj.param("b1", sizes[1:2], dtype)
    W2, b2 = aj.param("W2", sizes[1:], dtype), aj.param("b2", sizes[2:], dtype)
    y = act(x @ W1 + b1) @ W2 + b2
    loss = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))
    return [loss] + aj.grad(loss, [W1, b1, W2, b2])


def mlp_args(dtype, batch, sizes=(6, 8, 3), seed=2):
    rng = np.random.default_rng(seed)
    k, h, n = sizes
    return dict(x=rng.standard_normal((batch, k)).astype(dtype),
                t=rng.standard_normal((batch, n)).astype(dtype),
                W1=(rng.standard_normal((k, h)) / np.sqrt(k)).astype(dtype),
                b1=(0.1 * rng.standard_normal(h)).astype(dtype),
                W2=(rng.standard_normal((h, n)) / np.sqrt(h)).astype(dtype),
                b2=(0.1 * rng.standard_normal(n)).astype(dtype))


def softmax_regression(dtype, features=7, classes=4):
    """Softmax regression with integer labels: [loss, dW, db]."""
    x = aj.input("x", (None, features), dtype)
    lab = aj.input("lab", (None,), "int64")
    W, b = aj.param("W", (features, classes), dtype), aj.param("b", (classes,), dtype)
    loss = aj.cross_entropy(x @ W + b, lab)
    return [loss] + aj.grad(loss, [W, b])


def softmax_args(dtype, batch, features=7, classes=4, seed=3):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((batch, features)).astype(dtype),
                lab=rng.integers(0, classes, batch),
                W=(rng.standard_normal((features, classes)) / 3).astype(dtype),
                b=(0.1 * rng.standard_normal(classes)).astype(dtype))


def every_elementwise_op_fused(dtype, tag=""):
    """Every elementwise op summed into one expression F (so the default pipeline fuses them
    into a few kernels); returns [sum(F), dF/dx, dF/dy].  Bool results feed a ``where``.
    x and y have one shape, so the backward pass is elementwise too (no broadcast sums)."""
    x = aj.input("x" + tag, (None, 5), dtype)
    y = aj.input("y" + tag, (None, 5), dtype)
    c = aj.input("c" + tag, (None, 5), "bool")
    total = 0.0
    for _, out, xs in each_elementwise_op(x, y, c):
        a, b = (x, y) if xs[0].dtype == "bool" else xs[:2]      # (logical ops: bool operands)
        total = total + (aj.where(out, a, b) if out.dtype == "bool" else out)
    loss = aj.sum(total)
    return [loss] + aj.grad(loss, [x, y])
