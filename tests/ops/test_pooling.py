"""Pooling: aj.max_pool1d/2d, avg_pool1d/2d and the adaptive pools (ops max_pool,
pool_argmax, avg_pool, avg_pool_grad).

The oracle is written here with plain Python loops over windows and taps (independent of
adjit's vectorised numpy references): forward values, the element each max window selects
(the first maximum in row-major window order; the first NaN), and the averages with either
divisor.  Gradients are checked against finite differences in float64 on inputs without
ties, tie rules by hand, and the llvm backend and the ptx emulation against the interpreter.
"""
from __future__ import annotations

import itertools
import math
import os
import sys

import numpy as np
import pytest

import adjit as aj

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ptx"))
from gradtools import check_model  # noqa: E402
from ptx_helpers import assert_close, compare, emulated  # noqa: E402


# --- the oracle: loops ---------------------------------------------------------------------
def _geometry(S, k, s, p, d):
    nd = len(S)
    k, s, p, d = ((v,) * nd if isinstance(v, int) else tuple(v) for v in (k, s or k, p, d))
    out = tuple((n + 2 * pp - dd * (kk - 1) - 1) // ss + 1
                for n, kk, ss, pp, dd in zip(S, k, s, p, d))
    return k, s, p, d, out


def _windows(S, k, s, p, d, out):
    """(output position, [(tap input position, flat index)] of the taps inside)."""
    for o in itertools.product(*map(range, out)):
        taps = []
        for t in itertools.product(*map(range, k)):
            pos = tuple(oo * ss - pp + tt * dd for oo, ss, pp, tt, dd in zip(o, s, p, t, d))
            if all(0 <= q < n for q, n in zip(pos, S)):
                taps.append((pos, int(np.ravel_multi_index(pos, S))))
        yield o, taps


def loop_max(x, kernel, stride=None, padding=0, dilation=1):
    """(values, flat index selected in each window)."""
    x = np.asarray(x)
    S = x.shape[2:]
    k, s, p, d, out = _geometry(S, kernel, stride, padding, dilation)
    y = np.zeros(x.shape[:2] + out, x.dtype)
    arg = np.zeros(x.shape[:2] + out, np.int64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o, taps in _windows(S, k, s, p, d, out):
                best, where = None, None
                for pos, f in taps:
                    v = x[(n, c) + pos]
                    if best is None or v > best or (math.isnan(v) and not math.isnan(best)):
                        best, where = v, f
                y[(n, c) + o], arg[(n, c) + o] = best, where
    return y, arg


def loop_max_grad(x, u, **geo):
    """d/dx sum(max_pool(x) * u): each window's u added at its selected element."""
    _, arg = loop_max(x, **geo)
    g = np.zeros(x.shape[:2] + (int(np.prod(x.shape[2:])),))
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for o in np.ndindex(*arg.shape[2:]):
            g[n, c, arg[(n, c) + o]] += u[(n, c) + o]
    return g.reshape(x.shape)


def loop_avg(x, kernel, stride=None, padding=0, count_include_pad=True):
    x = np.asarray(x)
    S = x.shape[2:]
    k, s, p, d, out = _geometry(S, kernel, stride, padding, 1)
    y = np.zeros(x.shape[:2] + out, x.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o, taps in _windows(S, k, s, p, d, out):
                total = sum(float(x[(n, c) + pos]) for pos, _ in taps)
                y[(n, c) + o] = total / (math.prod(k) if count_include_pad else len(taps))
    return y


def loop_avg_grad(x_shape, u, kernel, stride=None, padding=0, count_include_pad=True):
    S = x_shape[2:]
    k, s, p, d, out = _geometry(S, kernel, stride, padding, 1)
    g = np.zeros(x_shape)
    for n in range(x_shape[0]):
        for c in range(x_shape[1]):
            for o, taps in _windows(S, k, s, p, d, out):
                div = math.prod(k) if count_include_pad else len(taps)
                for pos, _ in taps:
                    g[(n, c) + pos] += u[(n, c) + o] / div
    return g


POOL = {1: (aj.max_pool1d, aj.avg_pool1d), 2: (aj.max_pool2d, aj.avg_pool2d)}

# (spatial, kernel, stride, padding, dilation): overlapping and disjoint windows, padding,
# dilation, odd sizes, a window per axis as large as the input
CASES = [
    ((9,), 3, None, 0, 1), ((9,), 3, 1, 1, 1), ((8,), 2, 3, 1, 1), ((7,), 3, 2, 1, 2),
    ((5,), 5, 1, 2, 1),
    ((5, 7), 3, 2, 1, 1), ((6, 5), (2, 3), 1, (1, 0), 1), ((7, 7), 2, None, 0, 1),
    ((7, 6), 3, (2, 1), 1, (2, 1)), ((4, 4), (4, 1), 1, 0, 1),
]


def _noties(shape, seed):
    """Values with no ties and well apart (finite differences see no kink)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.37 - 0.1 * n).astype(np.float64)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("batch", [1, 7])
def test_max_pool_forward_and_gradient(case, batch):
    S, k, s, p, d = case
    fn = POOL[len(S)][0]
    x = _noties((batch, 2) + S, batch)
    geo = dict(kernel=k, stride=s, padding=p, dilation=d)
    check_model(lambda x: fn(x, k, s, p, d), lambda x: loop_max(x, **geo)[0],
                {"x": x}, {"x": (None, 2) + S})


@pytest.mark.parametrize("case", [c for c in CASES if c[4] == 1], ids=str)
@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("batch", [1, 7])
def test_avg_pool_forward_and_gradient(case, include, batch):
    S, k, s, p, _ = case
    fn = POOL[len(S)][1]
    x = np.random.default_rng(batch).standard_normal((batch, 3) + S)
    check_model(lambda x: fn(x, k, s, p, count_include_pad=include),
                lambda x: loop_avg(x, k, s, p, include), {"x": x}, {"x": (None, 3) + S})


def test_batch_64_and_the_gradient_routes():
    """64 samples: forward values, and the gradient is exactly the cotangent routed to the
    selected elements (max) or shared over the window (avg)."""
    x = _noties((64, 2, 5, 7), 3)
    u = np.random.default_rng(1).standard_normal((64, 2, 3, 4))
    xn, un = aj.input("x", (None, 2, 5, 7)), aj.input("u", (None, 2, 3, 4))
    ym, ya = aj.max_pool2d(xn, 3, 2, 1), aj.avg_pool2d(xn, 3, 2, 1, count_include_pad=False)
    outs = [ym, ya] + aj.grad(aj.sum(ym * un), [xn]) + aj.grad(aj.sum(ya * un), [xn])
    got = aj.compile(outs, backend="interp")(x=x, u=u)
    np.testing.assert_array_equal(got[0], loop_max(x, 3, 2, 1)[0])
    np.testing.assert_allclose(got[1], loop_avg(x, 3, 2, 1, False), rtol=1e-13)
    np.testing.assert_allclose(got[2], loop_max_grad(x, u, kernel=3, stride=2, padding=1),
                               rtol=1e-13)
    np.testing.assert_allclose(got[3], loop_avg_grad(x.shape, u, 3, 2, 1, False), rtol=1e-12,
                               atol=1e-15)


# --- ties, infinities, NaN, signed zeros --------------------------------------------------------
def _special():
    """(N=3, C=2, 4, 5) with all-equal windows, -inf windows, NaN, ±0 ties and repeats."""
    x = np.zeros((3, 2, 4, 5))
    x[0, 0] = 1.0                                      # every window all equal
    x[0, 1] = -np.inf                                  # all -inf (padding is -inf too)
    x[1, 0] = np.where(np.arange(20).reshape(4, 5) % 3 == 0, 2.0, -1.0)   # repeated maxima
    x[1, 1, 1, 1], x[1, 1, 2, 3], x[1, 1, 0, 4] = np.nan, np.nan, np.inf
    x[2, 0] = np.array([-0.0, 0.0, -0.0, 0.0, 0.0] * 4).reshape(4, 5)      # signed zeros
    x[2, 1] = np.arange(20.0).reshape(4, 5) % 4       # ties across overlapping windows
    return x


GEOS = [dict(kernel=3, stride=1, padding=1), dict(kernel=2, stride=2, padding=1),
        dict(kernel=(2, 3), stride=(1, 2), padding=(1, 0)),
        dict(kernel=2, stride=1, padding=0, dilation=2)]


@pytest.mark.parametrize("geo", GEOS, ids=str)
def test_max_pool_ties_and_special_values(geo):
    """The value and the routed gradient of the loops: the first maximum of each window,
    the first NaN, a real -inf (never the padding), the first of ±0."""
    x = _special()
    y, _ = loop_max(x, **geo)
    u = np.random.default_rng(0).standard_normal(y.shape)
    xn, un = aj.input("x", (None, 2, 4, 5)), aj.input("u", (None,) + y.shape[1:])
    out = aj.max_pool2d(xn, geo["kernel"], geo["stride"], geo["padding"], geo.get("dilation", 1))
    outs = [out] + aj.grad(aj.sum(out * un), [xn])
    want_g = loop_max_grad(x, u, **geo)
    for backend in ("interp", "llvm"):
        got = aj.compile(outs, backend=backend)(x=x, u=u)
        np.testing.assert_array_equal(got[0], y)
        np.testing.assert_array_equal(np.signbit(got[0]), np.signbit(y))
        np.testing.assert_allclose(got[1], want_g, rtol=1e-14)
    got = emulated(outs)(x=x, u=u)
    np.testing.assert_array_equal(got[0], y)
    np.testing.assert_allclose(got[1], want_g, rtol=1e-14)


def test_pool_argmax_is_the_first_maximum():
    from adjit.ops import make
    x = _special()
    xn = aj.input("x", (None, 2, 4, 5))
    geo = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pad=((1, 1), (1, 1)))
    idx = make("pool_argmax", (xn,), geo)
    want = loop_max(x, 3, 1, 1)[1]
    for f in (aj.compile(idx, backend="interp"), aj.compile(idx, backend="llvm"), emulated(idx)):
        np.testing.assert_array_equal(f(x=x), want)


def test_a_window_of_padding_only():
    """Dilation 2 over a 1-wide axis padded by 1 reads (-1, 1): padding only.  Its value is
    -inf (PyTorch's) and it passes no gradient; the other windows route as usual."""
    x = np.array([3.0, -1.0, 2.0, 5.0]).reshape(1, 1, 4, 1)
    xn = aj.input("x", (None, 1, 4, 1))
    y = aj.max_pool2d(xn, (2, 2), (2, 1), (0, 1), 2)
    assert y.shape == (None, 1, 1, 1)
    y2 = aj.max_pool2d(xn, (1, 2), 1, (0, 1), (1, 2))      # every window padding only
    outs = [y, y2] + aj.grad(aj.sum(y * 3.0) + aj.sum(y2), [xn])
    for f in (aj.compile(outs, backend="interp"), aj.compile(outs, backend="llvm"),
              emulated(outs)):
        got = f(x=x)
        np.testing.assert_array_equal(got[0], [[[[-np.inf]]]])
        np.testing.assert_array_equal(got[1], np.full((1, 1, 4, 1), -np.inf))
        np.testing.assert_array_equal(got[2], np.zeros((1, 1, 4, 1)))


def test_overlapping_windows_accumulate():
    """A constant input, kernel 3, stride 1, padding 1: each element is the first maximum of
    every window whose first input element it is, so the corner collects 4 windows."""
    x = np.ones((1, 1, 3, 3))
    xn = aj.input("x", (None, 1, 3, 3))
    g = aj.grad(aj.sum(aj.max_pool2d(xn, 3, 1, 1)), xn)
    want = np.zeros((1, 1, 3, 3))
    for o in np.ndindex(3, 3):       # the first element inside each window
        want[0, 0, max(o[0] - 1, 0), max(o[1] - 1, 0)] += 1
    np.testing.assert_array_equal(want, [[[[4, 2, 0], [2, 1, 0], [0, 0, 0]]]])
    for backend in ("interp", "llvm"):
        np.testing.assert_array_equal(aj.compile(g, backend=backend)(x=x), want)
    # avg_pool: every element gets 1/9 from each window that reads it
    ga = aj.grad(aj.sum(aj.avg_pool2d(xn, 3, 1, 1)), xn)
    np.testing.assert_allclose(aj.compile(ga, backend="llvm")(x=x),
                               loop_avg_grad((1, 1, 3, 3), np.ones((1, 1, 3, 3)), 3, 1, 1))


# --- second order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2])
def test_second_order_max_pool(nd):
    """d/dx of a function of d/dx sum(max_pool(x)**3): the routing of 3·y² is itself
    differentiated (the scatter's VJP is a gather)."""
    S = (7,) if nd == 1 else (5, 6)
    geo = dict(kernel=3, stride=2, padding=1)
    x = _noties((2, 2) + S, nd)

    def ref(x):
        y, _ = loop_max(x, **geo)
        return loop_max_grad(x, 3 * y ** 2, **geo)
    fn = POOL[nd][0]
    check_model(lambda x: aj.grad(aj.sum(fn(x, 3, 2, 1) ** 3), x), ref, {"x": x},
                {"x": (None, 2) + S})


@pytest.mark.parametrize("include", [True, False])
def test_second_order_avg_pool(include):
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 6))

    def ref(x):
        y = loop_avg(x, 3, 2, 1, include)
        return loop_avg_grad(x.shape, np.sin(y), 3, 2, 1, include) ** 2
    check_model(lambda x: aj.grad(aj.sum(-aj.cos(aj.avg_pool2d(x, 3, 2, 1,
                                                                count_include_pad=include))),
                                   x) ** 2, ref, {"x": x}, {"x": (None, 2, 5, 6)})


# --- adaptive pools --------------------------------------------------------------------------------
def test_adaptive_pools():
    x = np.random.default_rng(4).standard_normal((3, 2, 4, 6))
    xn = aj.input("x", (None, 2, 4, 6))
    g = aj.adaptive_avg_pool2d(xn, 1)
    assert g.shape == (None, 2, 1, 1) and g.op != "avg_pool"      # a mean, not 24 taps
    outs = [g, aj.adaptive_avg_pool2d(xn, (2, 3)), aj.adaptive_avg_pool2d(xn, (None, 2)),
            aj.adaptive_max_pool2d(xn, (2, 2)), aj.adaptive_max_pool2d(xn, 1),
            aj.adaptive_avg_pool1d(aj.reshape(xn, (None, 2, 24)), 4),
            aj.adaptive_max_pool1d(aj.reshape(xn, (None, 2, 24)), 3)]
    want = [x.mean(axis=(2, 3), keepdims=True), loop_avg(x, (2, 2)), loop_avg(x, (1, 3)),
            loop_max(x, (2, 3))[0], x.max(axis=(2, 3), keepdims=True),
            loop_avg(x.reshape(3, 2, 24), 6), loop_max(x.reshape(3, 2, 24), 8)[0]]
    for backend in ("interp", "llvm"):
        for got, w in zip(aj.compile(outs, backend=backend)(x=x), want):
            np.testing.assert_allclose(got, w, rtol=1e-13)
    with pytest.raises(aj.ShapeError, match="not a multiple"):
        aj.adaptive_avg_pool2d(xn, (3, 3))
    with pytest.raises(aj.ShapeError, match="positive"):
        aj.adaptive_max_pool2d(xn, 0)


# --- the native backends against the interpreter -------------------------------------------------
def _model(dtype):
    x = aj.input("x", (None, 3, 7, 6), dtype)
    x1 = aj.input("x1", (None, 2, 9), dtype)
    outs = []
    for k, s, p, d in ((3, 2, 1, 1), ((2, 3), 1, (1, 0), 1), (2, 2, 0, 2), (3, 3, 1, 1)):
        y = aj.max_pool2d(x, k, s, p, d)
        outs += [y] + aj.grad(aj.sum(aj.tanh(y) * y), [x])
        if d == 1:
            for inc in (True, False):
                a = aj.avg_pool2d(x, k, s, p, count_include_pad=inc)
                outs += [a] + aj.grad(aj.sum(aj.tanh(a)), [x])
    y1 = aj.max_pool1d(x1, 3, 2, 1)
    a1 = aj.avg_pool1d(x1, 4, 1, 2, count_include_pad=False)
    outs += [y1, a1] + aj.grad(aj.sum(y1 ** 3) + aj.sum(a1 ** 2), [x1])
    gx = aj.grad(aj.sum(aj.max_pool2d(x, 3, 1, 1) ** 3), x)          # second order
    outs += aj.grad(aj.sum(gx * gx), [x])
    return outs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 7])
def test_llvm_and_ptx_emulation_match_the_interpreter(dtype, batch):
    outs = _model(dtype)
    rng = np.random.default_rng(batch)
    args = {"x": rng.standard_normal((batch, 3, 7, 6)).astype(dtype),
            "x1": rng.standard_normal((batch, 2, 9)).astype(dtype)}
    if batch:
        args["x"][0, 0, :2] = np.nan
        args["x"][-1, 1] = -np.inf
        args["x"][0, 2] = 0.5                                          # ties
    want = aj.compile(outs, backend="interp")(**args)
    got = aj.compile(outs, backend="llvm")(**args)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, dtype, what=f"llvm output {k}")
    compare(emulated(outs), outs, args, dtype)


# --- clear errors ---------------------------------------------------------------------------------
def test_errors_name_the_problem():
    x = aj.input("img", (None, 3, 8, 8))
    with pytest.raises(aj.ShapeError, match="kernel_size must be >= 1"):
        aj.max_pool2d(x, 0)
    with pytest.raises(aj.ShapeError, match="kernel_size must be an int or a tuple of 2"):
        aj.avg_pool2d(x, (2, 2, 2))
    with pytest.raises(aj.ShapeError, match="at most half the kernel size"):
        aj.max_pool2d(x, 3, padding=2)
    with pytest.raises(aj.ShapeError, match="at most half"):
        aj.avg_pool1d(aj.input("s", (None, 2, 5)), 2, padding=(2,))
    with pytest.raises(aj.ShapeError, match=r"img must have shape \(N, C, H, W\)"):
        aj.max_pool2d(aj.input("img", (None, 8, 8)), 2)
    with pytest.raises(aj.ShapeError, match=r"\(N, C, L\)"):
        aj.avg_pool1d(x, 2)
    with pytest.raises(aj.ShapeError, match="ceil_mode"):
        aj.max_pool2d(x, 2, ceil_mode=True)
    with pytest.raises(aj.ShapeError, match="smaller than the kernel"):
        aj.max_pool2d(x, 9)
    with pytest.raises(aj.ShapeError, match="stride must be >= 1"):
        aj.avg_pool2d(x, 2, stride=0)
    with pytest.raises(aj.ShapeError, match="padding must be an int"):
        aj.max_pool2d(x, 3, padding="same")
    with pytest.raises(aj.DTypeError, match="float"):
        aj.max_pool2d(aj.input("ids", (None, 3, 8, 8), "int64"), 2)


# --- PyTorch, when installed ----------------------------------------------------------------------
def test_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _noties((4, 3, 7, 6), 9)
    u = np.random.default_rng(0).standard_normal
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), padding=(1, 1)),
               dict(kernel_size=2, stride=1)):
        for ours, theirs, extra in ((aj.max_pool2d, F.max_pool2d, {}),
                                    (aj.avg_pool2d, F.avg_pool2d, {}),
                                    (aj.avg_pool2d, F.avg_pool2d, {"count_include_pad": False})):
            xn = aj.input("x", (4, 3, 7, 6))
            y = ours(xn, **kw, **extra)
            w = u(y.shape)
            got = aj.compile([y] + aj.grad(aj.sum(y * w), [xn]), backend="llvm")(x=x)
            xt = torch.tensor(x, requires_grad=True)
            yt = theirs(xt, **kw, **extra)
            (yt * torch.tensor(w)).sum().backward()
            np.testing.assert_allclose(got[0], yt.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(got[1], xt.grad.numpy(), rtol=1e-12, atol=1e-15)
    # ties: torch's CPU kernel routes to the first maximum too
    t = np.ones((1, 1, 4, 4))
    xn = aj.input("x", (None, 1, 4, 4))
    g = aj.compile(aj.grad(aj.sum(aj.max_pool2d(xn, 3, 1, 1)), xn), backend="interp")(x=t)
    xt = torch.tensor(t, requires_grad=True)
    F.max_pool2d(xt, 3, 1, 1).sum().backward()
    np.testing.assert_array_equal(g, xt.grad.numpy())
