"""The llvm kernels of max_pool / pool_argmax for windows without padding
(backends/llvm/pools.py: masked vector loads, taps shuffled out of each row) against the
interpreter: values, selected indices and routed gradients, bit for bit, on inputs full of
ties, NaN, ±inf and ±0, for geometries that exercise full vector chunks, the masked tail,
overlapping windows, gaps between windows (stride > kernel), dilation and 1-d pools, in
float32 and float64, at batch sizes 0, 1 and 7.  The ptx emulation keeps the map rules and
is compared too."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.ops import make
from adjit.ops.pooling import geometry

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ptx"))
from ptx_helpers import emulated  # noqa: E402

# (spatial, kernel, stride, dilation): 2-d unless the spatial shape has one axis
GEOS = [
    ((28, 28), 2, 2, 1),          # LeNet's first pool: 14 outputs (one masked chunk)
    ((10, 10), 2, 2, 1),          # LeNet's second pool
    ((9, 70), 2, 2, 1),           # 35 outputs per row: two full f32 chunks and a tail
    ((7, 37), 3, 2, 1),           # overlapping windows, odd sizes
    ((6, 40), 3, 1, 1),           # stride 1: 38 outputs
    ((8, 11), (2, 3), (3, 4), 1),  # gaps between windows; the last window ends early
    ((9, 23), 2, 1, (2, 3)),      # dilation
    ((5, 5), 5, 5, 1),            # one window per image
    ((1, 33), (1, 2), (1, 2), 1),  # height 1
    ((50,), 3, 2, 1),             # 1-d
    ((17,), 4, 4, 1),             # 1-d, stride = kernel, a remainder left out
    ((2, 3), (1, 3), (1, 1), 1),  # one output per row at stride 1 (a miscompiled shuffle
    ((2,), 2, 1, 1),              # form of these two, found by tests/hardening)
]

SPECIAL = np.array([-1.0, 0.0, -0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, 1.0, 2.0, 0.5, -3.0])


def _data(shape, seed, dtype):
    """Values drawn from a small set (ties everywhere) with NaN, ±inf and ±0 among them,
    and one image of distinct normals."""
    rng = np.random.default_rng(seed)
    x = SPECIAL[rng.integers(0, len(SPECIAL), size=shape)]
    if shape[0] > 1:
        x[1] = rng.standard_normal(shape[1:])
    return x.astype(dtype)


def _pool(x, kernel, stride, dil):
    fn = aj.max_pool1d if x.ndim == 3 else aj.max_pool2d
    return fn(x, kernel, stride, 0, dil)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geo", GEOS, ids=str)
def test_unpadded_max_pool_kernels_match_the_interpreter(geo, dtype):
    spatial, kernel, stride, dil = geo
    C = 3
    xn = aj.input("x", (None, C) + spatial, dtype)
    y = _pool(xn, kernel, stride, dil)
    idx = make("pool_argmax", (xn,), geometry(y))
    un = aj.input("u", (None,) + y.shape[1:], dtype)
    outs = [y, idx] + aj.grad(aj.sum(y * un), [xn])
    f_interp, f_llvm = aj.compile(outs, backend="interp"), aj.compile(outs, backend="llvm")
    f_ptx = emulated(outs)
    for batch in (0, 1, 7):
        x = _data((batch, C) + spatial, batch, dtype)
        u = np.random.default_rng(batch + 1).standard_normal((batch,) + y.shape[1:])
        args = dict(x=x, u=u.astype(dtype))
        want = f_interp(**args)
        for name, f in (("llvm", f_llvm), ("ptx emulation", f_ptx)):
            got = f(**args)
            for k, (g, w) in enumerate(zip(got, want)):
                np.testing.assert_array_equal(g, w, err_msg=f"{name} output {k}, batch {batch}")
                if k == 0:
                    np.testing.assert_array_equal(np.signbit(g), np.signbit(w))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_pools_split_over_threads_match_the_interpreter(dtype):
    """LeNet's first pool at batch 64: the pool kernels and the scatter of the gradient
    (rows split over the pool's threads) equal the interpreter exactly."""
    xn = aj.input("x", (None, 6, 28, 28), dtype)
    y = aj.max_pool2d(xn, 2)
    un = aj.input("u", (None, 6, 14, 14), dtype)
    outs = [y, make("pool_argmax", (xn,), geometry(y))] + aj.grad(aj.sum(y * un), [xn])
    x = _data((64, 6, 28, 28), 5, dtype)
    u = np.random.default_rng(6).standard_normal((64, 6, 14, 14)).astype(dtype)
    want = aj.compile(outs, backend="interp")(x=x, u=u)
    got = aj.compile(outs, backend="llvm")(x=x, u=u)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
