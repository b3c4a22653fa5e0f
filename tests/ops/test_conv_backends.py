"""Convolutions on the native backends: the llvm backend and the ptx grid emulation against
the interpreter (itself checked against the loop oracle in test_conv.py), float32 and
float64, batch sizes 0, 1, 7 and 64, odd spatial sizes, huge and tiny magnitudes, and ±inf /
NaN in the input.

Semantics of non-finite values (the interpreter is the reference, and it agrees with the
direct loop): padding is an exact zero *input value*, so with finite weights a padding tap
adds exactly 0 (never NaN); an inf or NaN in ``x`` reaches exactly the outputs whose window
reads it, as ``x·W[k]`` (so inf times a zero tap gives NaN, as in numpy and PyTorch).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx"), str(Path(__file__).parent)]

import adjit as aj  # noqa: E402
import conv_oracle as ref
from ptx_helpers import compare, emulated

# (tag, nd, C_in, C_out, spatial, kernel, options): odd sizes, 1x1, kernel == input size,
# groups (depthwise, multiplier), dilation, stride, every padding form
CASES = [
    ("a", 1, 2, 3, (9,), (3,), dict(stride=2, padding=1)),
    ("b", 1, 4, 4, (8,), (4,), dict(padding="same", dilation=2, groups=4)),
    ("c", 2, 3, 4, (7, 5), (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ("d", 2, 2, 6, (7, 5), (3, 3), dict(padding="same", groups=2)),
    ("e", 2, 3, 2, (1, 1), (1, 1), {}),
    ("f", 2, 2, 3, (7, 5), (7, 5), dict(padding="valid")),
    ("g", 2, 1, 1, (1, 1), (3, 3), dict(padding=1)),
    ("h", 3, 2, 2, (4, 3, 5), (2, 2, 3), dict(stride=(1, 2, 1), padding=(1, 0, 1), groups=2)),
]
# (tag, nd, C_in, C_out/groups, spatial of g, kernel, options)
TRANSPOSED = [
    ("t", 1, 2, 3, (4,), (3,), dict(stride=2, padding=1, output_padding=1)),
    ("u", 2, 4, 1, (3, 2), (3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                                        groups=2, dilation=(1, 2))),
]
BATCHES = (0, 1, 7, 64)


def _model(dtype):
    """Every case's output and the gradients in x, W, b of a nonlinear loss of all of them."""
    outs, leaves, loss = [], [], 0.0
    for tag, nd, ci, co, S, K, opt in CASES:
        x = aj.input("x" + tag, (None, ci) + S, dtype)
        W = aj.param("W" + tag, (co, ci // opt.get("groups", 1)) + K, dtype)
        b = aj.param("b" + tag, (co,), dtype)
        z = getattr(aj, f"conv{nd}d")(x, W, b, **opt)
        outs.append(z)
        leaves += [x, W, b]
        loss = loss + aj.sum(aj.tanh(z) * z)
    for tag, nd, ci, cog, S, K, opt in TRANSPOSED:
        g = aj.input("x" + tag, (None, ci) + S, dtype)
        W = aj.param("W" + tag, (ci, cog) + K, dtype)
        b = aj.param("b" + tag, (cog * opt.get("groups", 1),), dtype)
        z = getattr(aj, f"conv_transpose{nd}d")(g, W, b, **opt)
        outs.append(z)
        leaves += [g, W, b]
        loss = loss + aj.sum(aj.tanh(z) * z)
    return outs + [loss] + aj.grad(loss, leaves)


def _args(f_or_outs, batch, dtype, seed, scale=(1.0, 1.0)):
    """Random values for every input of the model; x·scale[0], W·scale[1]."""
    rng = np.random.default_rng(seed)
    args = {}
    for tag, nd, ci, co, S, K, opt in CASES:
        args["x" + tag] = rng.standard_normal((batch, ci) + S) * scale[0]
        args["W" + tag] = rng.standard_normal((co, ci // opt.get("groups", 1)) + K) * scale[1]
        args["b" + tag] = rng.standard_normal(co) * scale[0] * scale[1]
    for tag, nd, ci, cog, S, K, opt in TRANSPOSED:
        args["x" + tag] = rng.standard_normal((batch, ci) + S) * scale[0]
        args["W" + tag] = rng.standard_normal((ci, cog) + K) * scale[1]
        args["b" + tag] = rng.standard_normal(cog * opt.get("groups", 1)) * scale[0] * scale[1]
    return {k: v.astype(dtype) for k, v in args.items()}


MAGNITUDES = {"float64": [(1.0, 1.0), (1e150, 1e-3), (1e-160, 1e-3)],
              "float32": [(1.0, 1.0), (1e17, 1e-2), (1e-17, 1e-3)]}


@pytest.mark.parametrize("backend", ["llvm", "ptx"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_match_the_interpreter(backend, dtype):
    """One compiled graph per backend and dtype, called at every batch size and magnitude."""
    outs = _model(dtype)
    f = aj.compile(outs, backend="llvm") if backend == "llvm" else emulated(outs)
    for batch in BATCHES:
        for k, scale in enumerate(MAGNITUDES[dtype]):
            if batch == 64 and k:
                continue
            got = compare(f, outs, _args(outs, batch, dtype, seed=batch + k, scale=scale), dtype)
            assert got[0].shape[0] == batch


def _nonfinite_args(dtype):
    """x with +inf, -inf and NaN at chosen positions (a corner: inside the padding's reach,
    and an interior point), finite weights with one exact zero tap."""
    args = _args(None, 3, dtype, seed=11)
    for tag, nd, *_ in CASES + TRANSPOSED:
        x = args["x" + tag]
        x[0, 0][(0,) * nd] = np.inf
        x[1, -1][tuple(s // 2 for s in x.shape[2:])] = np.nan
        x[2, 0][tuple(s - 1 for s in x.shape[2:])] = -np.inf
        args["W" + tag][(0, 0) + (0,) * nd] = 0.0
    return args


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inf_and_nan_reach_exactly_the_windows_that_read_them(dtype):
    outs = _model(dtype)[:len(CASES) + len(TRANSPOSED)]
    args = _nonfinite_args(dtype)
    want = aj.compile(outs, backend="interp")(**args)
    # the interpreter against the direct loop (finite padding taps add nothing)
    for (tag, nd, ci, co, S, K, opt), w in zip(CASES, want):
        a = {k: args[k + tag].astype("float64") for k in "xWb"}
        with np.errstate(invalid="ignore"):
            direct = ref.conv(a["x"], a["W"], a["b"], **opt)
        np.testing.assert_array_equal(np.isnan(w), np.isnan(direct), err_msg=tag)
        np.testing.assert_array_equal(np.isposinf(w), np.isposinf(direct), err_msg=tag)
        assert np.isfinite(w[0, :, ...]).sum() < w[0].size       # the inf did arrive
    for (tag, nd, ci, cog, S, K, opt), w in zip(TRANSPOSED, want[len(CASES):]):
        a = {k: args[k + tag].astype("float64") for k in "xWb"}
        with np.errstate(invalid="ignore"):
            direct = ref.conv_transpose(a["x"], a["W"], a["b"], **opt)
        np.testing.assert_array_equal(np.isnan(w), np.isnan(direct), err_msg=tag)
    # depthwise (case b): item 0's inf stays in channel 0
    assert np.isfinite(want[1][0, 1:]).all()
    for f in (aj.compile(outs, backend="llvm"), emulated(outs)):
        compare(f, outs, args, dtype)


def test_an_infinite_weight_meets_the_padding_zeros():
    """Padding is a zero input value (PyTorch pads with zeros, then multiplies): an inf
    weight tap that reaches the padding gives inf·0 = NaN there, on every backend; the
    transposed convolution crops instead of padding, so no NaN comes from its border."""
    x, W = aj.input("x", (None, 2, 5, 4)), aj.param("W", (3, 2, 3, 3))
    g = aj.input("g", (None, 3, 4, 3))
    outs = [aj.conv2d(x, W, padding=1), aj.conv_transpose2d(g, W, stride=2, padding=1)]
    rng = np.random.default_rng(4)
    args = dict(x=rng.standard_normal((2, 2, 5, 4)), W=rng.standard_normal((3, 2, 3, 3)),
                g=rng.standard_normal((2, 3, 4, 3)))
    args["W"][1, 0, 0, 0] = np.inf
    want = aj.compile(outs, backend="interp")(**args)
    with np.errstate(invalid="ignore"):
        padded = ref.conv(np.pad(args["x"], [(0, 0), (0, 0), (1, 1), (1, 1)]), args["W"])
    np.testing.assert_array_equal(np.isnan(want[0]), np.isnan(padded))
    assert np.isnan(want[0][:, 1, 0, :]).all() and not np.isnan(want[0][:, 1, 1:, 1:]).any()
    assert not np.isnan(want[1]).any() and np.isinf(want[1]).any()
    for f in (aj.compile(outs, backend="llvm"), emulated(outs)):
        compare(f, outs, args, "float64")


def test_records_with_asymmetric_padding_on_the_native_backends():
    """conv, conv_transpose, conv_weight, unfold and fold made directly (pads (lo, hi) no
    public function gives), the batch axis None, compiled with and without the pipeline
    (Compiled expands the records when the user's passes omit it)."""
    from adjit.ops.conv import conv_node, conv_transpose_node, conv_weight_node
    from adjit.ops.registry import make
    outs, shapes = [], {}
    for tag, (S, K, st, dil, pad, G) in enumerate([
            ((9,), (3,), (2,), (1,), ((1, 2),), 2),
            ((6, 5), (3, 2), (1, 2), (2, 1), ((2, 1), (0, 3)), 1),
            ((3, 4, 5), (2, 2, 2), (1, 2, 1), (1, 1, 2), ((1, 0), (0, 0), (1, 1)), 1)]):
        a = {"stride": st, "dilation": dil, "pad": pad, "groups": G}
        x, W = aj.input(f"x{tag}", (None, 2) + S), aj.param(f"W{tag}", (4, 2 // G) + K)
        z = conv_node(x, W, a)
        g = aj.input(f"g{tag}", z.shape)
        geo = {"kernel": K, "stride": st, "dilation": dil, "pad": pad}
        u = make("unfold", (x,), geo)
        c = aj.input(f"c{tag}", u.shape)
        outs += [z, conv_transpose_node(g, W, a, S), conv_weight_node(x, g, a, K), u,
                 make("fold", (c,), dict(geo, spatial=S))]
        shapes.update({n.name: n.shape for n in (x, W, g, c)})
    fs = (aj.compile(outs, backend="llvm", passes=()), emulated(outs))
    for batch in (0, 3):
        rng = np.random.default_rng(batch)
        args = {k: rng.standard_normal(tuple(batch if d is None else d for d in s))
                for k, s in shapes.items()}
        for f in fs:
            compare(f, outs, args, "float64")
