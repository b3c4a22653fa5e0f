"""Folds that compute their product (lowering/plan.py ``window_product``, llvm
window_gemm.py ``lower_window_fold``): an input gradient ``fold(Wᵀ ḡ)`` computed per image
(and block of channels) into scratch and folded at once, never stored for the batch.
Checked against the same graph planned with every product stored, bit for bit (the same
GEMM calls on the same values, the same sums in the same order), and the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
import adjit.backends.lowering.plan as plan_mod
from adjit.backends.llvm import build
from adjit.backends.lowering.plan import Plan, folded_product


def _conv2d_graph(dtype, stride, pad, dilation):
    x = aj.input("x", (None, 3, 7, 6), dtype)
    W = aj.param("W", (5, 3, 3, 2), dtype)
    z = aj.conv2d(x, W, stride=stride, padding=pad, dilation=dilation)
    h = aj.conv2d(aj.relu(z), aj.param("V", (4, 5, 2, 2), dtype), padding=1)
    loss = aj.sum(h * h)
    return [loss] + aj.grad(loss, [x, W]), {"x": (3, 7, 6), "W": (5, 3, 3, 2),
                                             "V": (4, 5, 2, 2)}


def _conv1d_graph(dtype, stride, pad, dilation):
    x = aj.input("x", (None, 2, 9), dtype)
    W = aj.param("W", (3, 2, 3), dtype)
    z = aj.conv1d(x, W, stride=stride[0], padding=pad if isinstance(pad, str) else 1,
                  dilation=dilation[0])
    loss = aj.sum(aj.tanh(z))
    return [loss] + aj.grad(loss, [x, W]), {"x": (2, 9), "W": (3, 2, 3)}


CASES = [((1, 1), 1, (1, 1)), ((2, 1), (1, 0), (1, 2)), ((1, 2), "valid", (2, 1))]


def _stored(g):
    return build(g, cache=False, windows=False)


@pytest.mark.parametrize("block", [1 << 30, 1])       # a whole image, or one channel a block
@pytest.mark.parametrize("make", [_conv2d_graph, _conv1d_graph])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride,pad,dilation", CASES)
def test_folded_products_equal_stored(monkeypatch, block, make, dtype, stride, pad, dilation):
    monkeypatch.setattr(plan_mod, "FOLD_BLOCK_BYTES", block)
    outs, shapes = make(dtype, stride, pad, dilation)
    f = aj.compile(outs, backend="llvm")
    g = f._lowered
    plan = Plan(g, windows=True)
    folds = [n for n in plan.steps if n.op == "fold"]
    assert folds and all(folded_product(plan, n) is not None for n in folds)
    stored = _stored(g)
    assert not stored.plan.windows
    interp = aj.compile(outs, backend="interp")
    rng = np.random.default_rng(1)
    for batch in (0, 1, 5, 33):
        args = {k: rng.standard_normal(((batch,) if k == "x" else ()) + s).astype(dtype)
                for k, s in shapes.items()}
        if batch:
            args["x"][batch - 1, 1, 2] = np.nan     # one image's gradient turns NaN
        got, want = f(**args), stored(dict(args), batch)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        ref = interp(**args)
        tol = 1e-4 if dtype == "float32" else 1e-10
        for a, b in zip(got, ref):
            fin = np.isfinite(b)
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            scale = np.max(np.abs(b[fin])) if fin.any() else 1.0
            np.testing.assert_allclose(a[fin], b[fin], rtol=tol, atol=tol * scale)


def test_products_read_elsewhere_are_stored():
    """A product that is also an output (or read by another step) is computed in full."""
    x = aj.input("x", (None, 4, 5, 5), "float32")
    W = aj.param("W", (3, 4, 3, 3), "float32")
    z = aj.conv2d(x, W, padding=1)
    loss = aj.sum(z * z)
    gx = aj.grad(loss, [x])[0]
    f = aj.compile([loss, gx], backend="llvm")
    plan = Plan(f._lowered, windows=True)
    for n in plan.steps:
        if n.op == "fold":
            p = folded_product(plan, n)
            assert p is not None and len(f._lowered.users(p)) == 1
    assert not plan_mod.window_product(f._lowered, f._lowered.outputs[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_graph_whose_only_product_is_folded_gets_the_gemm_workspace(dtype):
    """A transposed convolution alone: its product runs inside the fold step, the graph has
    no product step, and the GEMM still needs its workspace (a workspace sized for no GEMM
    let the packing write past it: heap corruption found when small convolutions stopped
    being products)."""
    g = aj.input("g", (None, 16, 10, 10), dtype)
    W = aj.param("W", (16, 6, 5, 5), dtype)
    out = aj.conv_transpose2d(g, W)
    f = aj.compile(out)
    plan = Plan(f.graph, windows=True)
    assert not any(n.op in ("matmul", "matmul_sum") for n in plan.steps)
    assert any(folded_product(plan, n) is not None for n in plan.steps)
    assert plan.calls_gemm()
    rng = np.random.default_rng(3)
    args = {"g": rng.standard_normal((7, 16, 10, 10)).astype(dtype),
            "W": rng.standard_normal((16, 6, 5, 5)).astype(dtype)}
    want = aj.compile(out, backend="interp")(**args)
    for _ in range(3):
        np.testing.assert_allclose(f(**args), want, rtol=1e-5 if dtype == "float32" else 1e-12,
                                   atol=1e-4 if dtype == "float32" else 1e-11)
