"""Convolutions computed directly (ops/conv_direct.py): which nodes
``passes.expand`` keeps, and the llvm vector kernels (backends/llvm/convs.py) and the ptx
emulation (map rules, backends/lowering/convs.py) against the interpreter for the forward
convolution and the weight gradient, at row widths around the vector lengths (16 f32 / 8
f64 lanes), paddings (asymmetric, wider than the image), 1×1 to 5×5 kernels, output
channel counts that leave a partial block, batch sizes 0, 1 and 7, and infinities in the
weights (a tap on the padding adds W·0, as the unfolded product does); and the forward
convolutions of several input channels and their weight gradients, vectorized over 16-64
output channels."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.ops.conv_direct import direct

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ptx"))
from ptx_helpers import emulated  # noqa: E402


def _ops(f):
    return {n.op for n in f.graph.order()}


@pytest.mark.parametrize("kw, kept", [
    (dict(), True),
    (dict(C=2), False),
    (dict(stride=2), False),
    (dict(dilation=2), False),
    (dict(S=(6, 40)), False),         # output rows wider than MAX_WIDTH
    (dict(S=(6, 32)), True),
])
def test_which_convolutions_are_kept(kw, kept):
    C, S = kw.get("C", 1), kw.get("S", (9, 9))
    x = aj.input("x", (None, C) + S)
    W = aj.param("W", (3, C, 3, 3))
    z = aj.conv2d(x, W, padding=1, stride=kw.get("stride", 1),
                  dilation=kw.get("dilation", 1))
    assert direct(z) is kept
    f = aj.compile([aj.sum(z * z)] + aj.grad(aj.sum(z * z), [W]), backend="llvm")
    ops = _ops(f)
    assert ("conv" in ops and "conv_weight" in ops) is kept
    assert ("unfold" in ops) is not kept


@pytest.mark.parametrize("C, Co, k, S, kept", [
    (6, 16, 5, 14, "both"),           # LeNet's second layer
    (2, 32, 3, 8, "both"),
    (2, 16, 3, 30, "conv"),           # the weight gradient's ḡ tile: 16·30·30 > MAX_TILE
    (6, 24, 3, 8, ""),                # not a multiple of 16 output channels
    (2, 128, 1, 8, ""),               # more than 64 output channels
    (64, 64, 3, 8, ""),               # a residual stage's layer: too many weights
])
def test_which_convolutions_of_several_channels_are_kept(C, Co, k, S, kept):
    x = aj.input("x", (None, C, S, S))
    z = aj.conv2d(x, aj.param("W", (Co, C, k, k)), padding=k // 2)
    f = aj.compile(aj.grad(aj.sum(z * z), [x, *z.inputs[1:]]), backend="llvm")
    ops = [n.op for n in f.graph.order()]
    assert ops.count("conv") == int(bool(kept))
    assert ("conv_weight" in ops) is (kept == "both") and ("unfold" in ops) is (kept != "both")


def test_one_dimensional_and_grouped_convolutions_are_expanded():
    x1 = aj.input("x", (None, 1, 20))
    z1 = aj.conv1d(x1, aj.param("W", (2, 1, 3)))
    x2 = aj.input("y", (None, 2, 6, 6))
    z2 = aj.conv2d(x2, aj.param("V", (2, 1, 3, 3)), groups=2)
    assert not direct(z1) and not direct(z2)
    assert "conv" not in _ops(aj.compile([z1, z2], backend="llvm"))


# (H, W, C_out, kernel, padding)
CASES = [
    ((28, 28), 6, (5, 5), 2),          # LeNet's first layer: rows of 28 (16 + 12 lanes)
    ((9, 16), 4, (3, 3), 1),           # exactly one f32 vector, two f64 vectors
    ((5, 17), 7, (2, 3), "same"),      # asymmetric padding, 7 channels: a partial block
    ((3, 1), 3, (1, 1), 0),            # width 1
    ((2, 4), 5, (5, 5), 2),            # a kernel larger than the image
    ((6, 32), 1, (4, 1), (1, 0)),      # the widest kept row, one output channel
    ((7, 9), 3, (3, 5), (0, 2)),
]
# (C_in, H, W, C_out, kernel, padding): forward convs vectorized over output channels
CHANNEL_CASES = [
    (6, (14, 14), 16, (5, 5), 0),      # LeNet's second layer
    (3, (9, 11), 32, (3, 3), 1),
    (2, (7, 20), 16, (2, 3), (1, 0)),  # two blocks of positions, asymmetric kernel
    (4, (5, 5), 64, (1, 1), 0),        # 4 (f32) / 8 (f64) vectors per position
    (2, (3, 32), 16, (3, 3), "same"),  # the widest kept row
    (5, (2, 2), 16, (3, 3), 1),        # more padding than image
]


def _model(case, dtype):
    (H, Wd), Co, k, pad = case
    x = aj.input("x", (None, 1, H, Wd), dtype)
    W = aj.param("W", (Co, 1) + k, dtype)
    b = aj.param("b", (Co,), dtype)
    z = aj.conv2d(x, W, b, padding=pad)
    u = aj.input("u", (None,) + z.shape[1:], dtype)
    return [z] + aj.grad(aj.sum(z * u), [W, b]), z.shape[1:]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_direct_kernels_match_the_interpreter(case, dtype):
    outs, zshape = _model(case, dtype)
    (H, Wd), Co, k, _ = case
    assert "conv" in _ops(aj.compile(outs, backend="interp"))
    fs = {"llvm": aj.compile(outs, backend="llvm"), "ptx emulation": emulated(outs)}
    tol = 2e-5 if dtype == "float32" else 1e-12
    for batch in (0, 1, 7):
        rng = np.random.default_rng(batch)
        args = {"x": rng.standard_normal((batch, 1, H, Wd)).astype(dtype),
                "W": rng.standard_normal((Co, 1) + k).astype(dtype),
                "b": rng.standard_normal(Co).astype(dtype),
                "u": rng.standard_normal((batch,) + zshape).astype(dtype)}
        want = aj.compile(outs, backend="interp")(**args)
        for name, f in fs.items():
            got = f(**args)
            _close(got, want, tol, f"{name}, batch {batch}")


def _close(got, want, tol, where):
    """Every output of the same shape and dtype, within ``30·tol`` of the largest entry."""
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1.0)
        np.testing.assert_allclose(g, w, rtol=0, atol=tol * scale * 30,
                                   err_msg=f"{where}: output {i}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CHANNEL_CASES, ids=str)
def test_channel_vector_convolutions_match_the_interpreter(case, dtype):
    C, (H, Wd), Co, k, pad = case
    x = aj.input("x", (None, C, H, Wd), dtype)
    W = aj.param("W", (Co, C) + k, dtype)
    z = aj.conv2d(x, W, padding=pad)
    u = aj.input("u", (None,) + z.shape[1:], dtype)
    outs = [z] + aj.grad(aj.sum(z * u), [x, W])
    fs = {"llvm": aj.compile(outs, backend="llvm"), "ptx emulation": emulated(outs)}
    assert "conv" in _ops(fs["llvm"])
    tol = 2e-5 if dtype == "float32" else 1e-12
    for batch in (0, 1, 7):
        rng = np.random.default_rng(batch)
        args = {"x": rng.standard_normal((batch, C, H, Wd)).astype(dtype),
                "W": rng.standard_normal(W.shape).astype(dtype),
                "u": rng.standard_normal((batch,) + z.shape[1:]).astype(dtype)}
        want = aj.compile(outs, backend="interp")(**args)
        for name, f in fs.items():
            if name == "ptx emulation" and batch == 7:
                continue                      # (the emulation is slow; 0 and 1 suffice)
            got = f(**args)
            _close(got, want, tol, f"{name}, batch {batch}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_infinite_weights_and_the_padding(dtype):
    """An infinite weight times a padding tap is NaN (W·0), as numpy's padded product."""
    x = aj.input("x", (None, 1, 4, 5), dtype)
    W = aj.param("W", (2, 1, 3, 3), dtype)
    z = aj.conv2d(x, W, padding=1)
    w = np.ones((2, 1, 3, 3), dtype)
    w[0, 0, 0, 0] = np.inf            # reads the padding at the top and left borders
    xv = np.abs(np.random.default_rng(0).standard_normal((3, 1, 4, 5))).astype(dtype) + 1
    want = aj.compile(z, backend="interp")(x=xv, W=w)
    assert np.isnan(want).any() and np.isinf(want).any()
    for f in (aj.compile([z], backend="llvm"), emulated([z])):
        got = f(x=xv, W=w)[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", [1, 2])
def test_large_direct_convolutions_split_over_threads(layer, dtype):
    """LeNet's layers at batch 64 (images, weight rows and input channels split over the
    pool's threads) against the interpreter."""
    if layer == 1:
        outs, zshape = _model(CASES[0], dtype)
        C, S, Co = 1, 28, 6
    else:
        C, S, Co = 6, 14, 16
        x = aj.input("x", (None, C, S, S), dtype)
        W, b = aj.param("W", (Co, C, 5, 5), dtype), aj.param("b", (Co,), dtype)
        z = aj.conv2d(x, W, b)
        u = aj.input("u", (None,) + z.shape[1:], dtype)
        outs, zshape = [z] + aj.grad(aj.sum(z * u), [x, W, b]), z.shape[1:]
    rng = np.random.default_rng(11)
    args = {"x": rng.standard_normal((64, C, S, S)).astype(dtype),
            "W": rng.standard_normal((Co, C, 5, 5)).astype(dtype),
            "b": rng.standard_normal(Co).astype(dtype),
            "u": rng.standard_normal((64,) + zshape).astype(dtype)}
    want = aj.compile(outs, backend="interp")(**args)
    got = aj.compile(outs, backend="llvm")(**args)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        scale = max(float(np.max(np.abs(w))), 1.0)
        np.testing.assert_allclose(g, w, rtol=0, atol=tol * 30 * scale)
