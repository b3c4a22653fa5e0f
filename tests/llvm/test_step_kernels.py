"""Kernels that exist for speed keep results identical: the fold of a sum of zero pads into
one concatenate (an unrolled loop's input gradient), the llvm block-copy concatenate, and
the batched matmul whose stack of products is shared with the pool's worker."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.passes import fold
from adjit.backends.llvm import matmul as llvm_matmul

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "ptx"))
from ptx_helpers import compare, emulated  # noqa: E402


def _unrolled(T=7, D=5, dtype="float64"):
    """sum_t w_t · x[:, t]: the gradient wrt x is a sum of T pads, one per step."""
    x = aj.input("x", (None, T, D), dtype=dtype)
    w = aj.param("w", (T, D), dtype=dtype)
    loss = aj.sum(aj.stack([x[:, t] * w[t] * (t + 1.0) for t in range(T)], axis=0) ** 2)
    return x, w, loss


def test_sum_of_pads_folds_into_one_concatenate():
    x, w, loss = _unrolled()
    gx = aj.grad(loss, [x])[0]
    folded = fold(aj.Graph([gx]))
    ops = folded.op_counts()
    assert ops.get("pad", 0) == 0, ops    # (one concatenate more: the forward's stack)
    assert folded.rewrites.get("pad+pad=concatenate") == 1
    assert folded.rewrites.get("pad+pad=pad(concatenate)") == 5


@pytest.mark.parametrize("batch", [0, 1, 4])
def test_unrolled_gradient_matches_numpy(batch):
    T, D = 7, 5
    x, w, loss = _unrolled(T, D)
    gx, gw = aj.grad(loss, [x, w])
    rng = np.random.default_rng(batch)
    X, W = rng.standard_normal((batch, T, D)), rng.standard_normal((T, D))
    X.flat[:1] = -0.0 if X.size else X.flat[:1]
    scale = np.arange(1.0, T + 1)[:, None]
    want_gx = 2 * X * (W * scale) ** 2
    want_gw = 2 * (X ** 2).sum(0) * W * scale ** 2
    interp = aj.compile([gx, gw], backend="interp")(x=X, w=W)
    llvm = aj.compile([gx, gw], backend="llvm")(x=X, w=W)
    for got in (interp, llvm):
        np.testing.assert_allclose(got[0], want_gx, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got[1], want_gw, rtol=1e-12, atol=1e-300)
    for a, b in zip(interp, llvm):
        np.testing.assert_array_equal(a, b)


def test_pads_apart_or_overlapping_are_kept():
    x = aj.input("x", (None, 6, 3))
    a, b, c = x[:, 0:2], x[:, 3:5], x[:, 1:3]
    for y in (aj.pad(a, ((0, 0), (0, 4), (0, 0))) + aj.pad(b, ((0, 0), (3, 1), (0, 0))),
              aj.pad(a, ((0, 0), (0, 4), (0, 0))) + aj.pad(c, ((0, 0), (1, 3), (0, 0))),
              aj.pad(a, ((0, 0), (0, 4), (0, 0)), constant_values=1.0)
              + aj.pad(x[:, 2:6], ((0, 0), (2, 0), (0, 0)))):
        folded = fold(aj.Graph([y]))
        assert "concatenate" not in folded.op_counts()
        X = np.random.default_rng(0).standard_normal((3, 6, 3))
        np.testing.assert_array_equal(aj.compile(y, backend="llvm")(x=X),
                                      aj.compile(y, backend="interp")(x=X))


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_concatenate_of_many_operands(dtype):
    """The llvm block copy against numpy: 12 operands, an empty one, the batch axis in front,
    bools given as arbitrary nonzero bytes."""
    sizes = [1, 3, 0, 2, 1, 1, 4, 1, 2, 1, 1, 5]
    xs = [aj.input(f"x{k}", (None, n, 3), dtype=dtype) for k, n in enumerate(sizes)]
    y = aj.concatenate(xs, axis=1)
    f, rng = aj.compile(y, backend="llvm"), np.random.default_rng(1)
    for batch in (0, 1, 5):
        vals = {}
        for k, n in enumerate(sizes):
            v = rng.integers(-3, 4, size=(batch, n, 3))
            vals[f"x{k}"] = (v.astype(np.uint8) * 7).view(np.bool_) if dtype == "bool" \
                else v.astype(dtype)
        want = np.concatenate([vals[f"x{k}"] for k in range(len(sizes))], axis=1)
        got = f(**{k: v for k, v in vals.items() if k != "x2"})   # (the empty one is dropped)
        if dtype == "bool":
            want = want.view(np.uint8) != 0
        np.testing.assert_array_equal(got, want)


def test_unrolled_gradient_on_ptx_emulation():
    x, w, loss = _unrolled(T=4, D=3, dtype="float32")
    gx = aj.grad(loss, [x])[0]
    X = np.random.default_rng(2).standard_normal((3, 4, 3)).astype(np.float32)
    W = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    compare(emulated(gx), gx, dict(x=X, w=W), "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 2, 9])
def test_batched_matmul_shared_with_the_worker(dtype, batch):
    """Stacks above SPLIT_MNK: each product computed by one thread exactly as alone, so
    the llvm result equals the same kernel run with the split off (bit for bit), and numpy
    within rounding; operands transposed views and broadcast over a batch axis."""
    a = aj.input("a", (None, 3, 64, 48), dtype=dtype)
    b = aj.input("b", (1, 3, 40, 48), dtype=dtype)
    c = aj.input("c", (None, 3, 64, 40), dtype=dtype)
    ys = [a @ aj.swapaxes(b, -1, -2), aj.swapaxes(a, -1, -2) @ c]
    rng = np.random.default_rng(batch)
    vals = {"a": rng.standard_normal((batch, 3, 64, 48)).astype(dtype),
            "b": rng.standard_normal((1, 3, 40, 48)).astype(dtype),
            "c": rng.standard_normal((batch, 3, 64, 40)).astype(dtype)}
    assert 3 * 64 * 40 * 48 * 2 >= llvm_matmul.SPLIT_MNK
    split = aj.compile(ys, backend="llvm", cache=False)(**vals)
    old = llvm_matmul.SPLIT_MNK
    llvm_matmul.SPLIT_MNK = 1 << 62
    try:
        alone = aj.compile(ys, backend="llvm", cache=False)(**vals)
    finally:
        llvm_matmul.SPLIT_MNK = old
    want = [vals["a"] @ np.swapaxes(vals["b"], -1, -2), np.swapaxes(vals["a"], -1, -2) @ vals["c"]]
    tol = 1e-4 if dtype == "float32" else 1e-12
    for s, o, w in zip(split, alone, want):
        np.testing.assert_array_equal(s, o)
        np.testing.assert_allclose(s, w, rtol=tol, atol=tol * 10)
