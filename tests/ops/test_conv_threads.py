"""The llvm paths that only run on large steps, against the interpreter: steps big enough
for the pool's worker to take part (rows of a step split over threads), and the llvm
kernels of unfold / fold (row copies over each tap's box of windows).

* unfold and fold kernels: large planes, batch >= 2, with every padding and stride form
  that moves a tap's box (padding wider than the kernel, stride above the kernel so some
  positions are read by no window, dilation, 1-D and 3-D), float64 held to 1e-12;
* matmul_sum cut into column or row blocks shared by both threads (a convolution's weight
  gradient on small images, one block per 16 columns/rows);
* gathering map rules (slice, pad, take, take_along_axis, one_hot, argmax, concatenate,
  pools, random bits) split over the pool by rows, each part told its first row: equal
  to the interpreter exactly (they move values; random bits are a function of the index).

On a machine with one CPU the pool has no worker and the same code runs on the caller: the
results must not depend on that (nor on which thread takes which rows).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import adjit as aj  # noqa: E402

TOL = {"float64": 1e-12, "float32": 2e-5}


def _close(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
        return
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def _both(outs, args, dtype, exact=False):
    want = aj.compile(outs, backend="interp")(**args)
    got = aj.compile(outs, backend="llvm")(**args)
    for g, w in zip(got, want):
        if exact:
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
        else:
            _close(g, w, dtype)


# (nd, C_in, C_out, spatial, kernel, options): each plane big enough that unfold's and
# fold's steps are split at batch 9
BIG = [
    (2, 8, 12, (21, 19), (3, 3), dict(padding=1)),
    (2, 3, 5, (20, 17), (2, 3), dict(padding=(4, 3), stride=(3, 4))),     # pad > kernel
    (2, 4, 4, (25, 23), (3, 2), dict(stride=(4, 3), dilation=(2, 3))),    # gaps
    (1, 6, 7, (701,), (5,), dict(padding="same", dilation=3)),
    (3, 2, 3, (9, 8, 10), (3, 2, 3), dict(padding=(1, 2, 0), stride=(1, 2, 2))),
    (2, 6, 6, (22, 22), (3, 3), dict(padding=1, groups=3)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", range(len(BIG)))
def test_large_convolutions_and_gradients_match_the_interpreter(case, dtype):
    nd, ci, co, S, K, opt = BIG[case]
    x = aj.input("x", (None, ci) + S, dtype)
    W = aj.param("W", (co, ci // opt.get("groups", 1)) + K, dtype)
    z = getattr(aj, f"conv{nd}d")(x, W, **opt)
    u = aj.input("u", (None,) + z.shape[1:], dtype)
    loss = aj.sum(z * u) + aj.sum(aj.tanh(z))
    rng = np.random.default_rng(case)
    for batch in (9, 1):
        args = {"x": rng.standard_normal((batch, ci) + S).astype(dtype),
                "W": rng.standard_normal(W.shape).astype(dtype),
                "u": rng.standard_normal((batch,) + z.shape[1:]).astype(dtype)}
        _both([z, loss] + aj.grad(loss, [x, W]), args, dtype)


def test_a_large_transposed_convolution_with_output_padding():
    g = aj.input("g", (None, 6, 15, 14), "float64")
    W = aj.param("W", (6, 4, 3, 4), "float64")
    y = aj.conv_transpose2d(g, W, stride=(2, 3), padding=(1, 2), output_padding=(1, 2))
    loss = aj.sum(y * y)
    rng = np.random.default_rng(3)
    args = {"g": rng.standard_normal((11, 6, 15, 14)), "W": rng.standard_normal((6, 4, 3, 4))}
    _both([y, loss] + aj.grad(loss, [g, W]), args, "float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("co, ci, k, S", [(6, 1, (5, 5), (28, 28)),     # column blocks
                                          (16, 6, (5, 5), (14, 14)),
                                          (40, 1, (2, 2), (19, 19)),     # row blocks
                                          (33, 2, (1, 1), (30, 30))])
def test_weight_gradients_in_blocks_shared_by_both_threads(co, ci, k, S, dtype):
    """A weight gradient of many small per-image products (summed over the batch in
    column or row blocks that both threads take)."""
    x = aj.input("x", (None, ci) + S, dtype)
    W = aj.param("W", (co, ci) + k, dtype)
    z = aj.conv2d(x, W, padding=k[0] // 2)
    u = aj.input("u", (None,) + z.shape[1:], dtype)
    loss = aj.sum(z * u)
    rng = np.random.default_rng(co)
    for batch in (64, 2, 0):
        args = {"x": rng.standard_normal((batch, ci) + S).astype(dtype),
                "W": rng.standard_normal((co, ci) + k).astype(dtype),
                "u": rng.standard_normal((batch,) + z.shape[1:]).astype(dtype)}
        _both(aj.grad(loss, [W]), args, dtype)


def test_large_gathering_steps_split_over_rows_equal_the_interpreter():
    """Each of these steps holds >= 2^17 elements over >= 2 rows, so its rows are split
    over the pool; values only move, so the results are equal bit for bit."""
    x = aj.input("x", (None, 40, 50, 70), "float64")
    idx = aj.input("idx", (500,), "int64")
    along = aj.input("along", (None, 40000), "int64")
    lab = aj.input("lab", (None, 700), "int64")
    key = aj.random.key_input("key")
    outs = [x[:, ::-3, 5:45, ::2],                                # slice, negative step
            aj.pad(x, ((0, 0), (2, 1), (3, 0), (0, 4))),
            aj.take(aj.reshape(x, (None, 400, 350)), idx, axis=2),
            aj.take_along_axis(aj.reshape(x, (None, 140000))[:, :50000], along, axis=1),
            aj.one_hot(lab, 250),
            aj.argmax(x, axis=3),
            aj.concatenate([x, -x], axis=1),
            aj.max_pool2d(x, 3, stride=2, padding=1),
            aj.avg_pool2d(x, 2),
            aj.random.bits(key, (300, 900))]
    rng = np.random.default_rng(0)
    for batch in (7, 1, 0):
        args = {"x": rng.standard_normal((batch, 40, 50, 70)),
                "idx": rng.integers(-350, 350, size=500),
                "along": rng.integers(-50000, 50000, size=(batch, 40000)),
                "lab": rng.integers(0, 250, size=(batch, 700)),
                "key": np.array([3, 5], dtype=np.uint32)}
        _both(outs, args, "float64", exact=True)
