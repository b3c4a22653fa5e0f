"""Convolutions on the interpreter: forward against a direct loop oracle (conv_oracle.py,
no unfold), gradients of first and second order against finite differences, the records
``conv``/``conv_transpose``/``conv_weight``/``unfold``/``fold`` against each other
(adjointness), the expansion, and the declaration errors.  The native backends are in
test_conv_backends.py."""
from __future__ import annotations

import itertools
import zlib

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx"), str(Path(__file__).parent)]

import adjit as aj  # noqa: E402
import conv_oracle as ref
from adjit.ir import DTypeError, ShapeError
from adjit.ops import REGISTRY
from adjit.ops.conv import conv_node, conv_transpose_node, conv_weight_node
from adjit.ops.registry import make
from adjit.passes import expand
from gradtools import check_model, run

CONV = {1: aj.conv1d, 2: aj.conv2d, 3: aj.conv3d}
TRANSPOSE = {1: aj.conv_transpose1d, 2: aj.conv_transpose2d}


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# (spatial, kernel, stride, padding, dilation, groups, C_in, C_out): every padding form,
# "same" with odd and even kernels, dilation, groups 1 / 2 / depthwise / channel multiplier,
# kernel == input, 1x1 inputs and kernels, odd sizes
FORWARD = [
    ((9,), (3,), 1, 0, 1, 1, 2, 3), ((9,), (4,), 2, 1, 1, 1, 1, 2),
    ((8,), (3,), 1, "same", 2, 1, 2, 2), ((8,), (4,), 1, "same", 1, 2, 4, 2),
    ((7,), (7,), 1, "valid", 1, 1, 3, 1), ((6,), (2,), 3, (2,), 2, 3, 3, 6),
    ((7, 5), (3, 3), 1, 1, 1, 1, 3, 4), ((7, 5), (3, 2), (2, 1), (1, 0), (1, 2), 1, 3, 4),
    ((6, 6), (2, 4), 1, "same", 1, 1, 2, 3), ((6, 5), (3, 3), 1, "same", (2, 1), 2, 4, 2),
    ((5, 4), (3, 3), 1, "valid", 1, 4, 4, 4),      # depthwise
    ((5, 4), (2, 2), 2, 1, 1, 2, 2, 6),            # channel multiplier 3
    ((1, 1), (1, 1), 1, 0, 1, 1, 3, 2), ((1, 1), (3, 3), 1, 1, 1, 1, 1, 1),
    ((7, 5), (7, 5), 1, 0, 1, 1, 2, 3),            # kernel == input: one output
    ((4, 5, 3), (2, 3, 2), 1, 0, 1, 1, 2, 3), ((5, 4, 4), (3, 2, 3), (2, 1, 2), (1, 1, 0),
                                                (1, 2, 1), 2, 2, 4),
    ((4, 4, 4), (3, 3, 3), 1, "same", 1, 2, 2, 2),
]
IDS = [f"{len(c[0])}d-{'x'.join(map(str, c[0]))}-k{'x'.join(map(str, c[1]))}-s{c[2]}-p{c[3]}"
       f"-d{c[4]}-g{c[5]}" for c in FORWARD]


def _case_values(case, batch=2, dtype="float64", bias=True):
    spatial, kernel, _, _, _, groups, ci, co = case
    rng = _rng(case, batch)
    v = {"x": rng.standard_normal((batch, ci) + spatial),
         "W": rng.standard_normal((co, ci // groups) + kernel)}
    if bias:
        v["b"] = rng.standard_normal(co)
    return {k: a.astype(dtype) for k, a in v.items()}


def _case_fns(case):
    spatial, kernel, stride, padding, dilation, groups, ci, co = case
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (lambda x, W, b=None: CONV[len(spatial)](x, W, b, **geo),
            lambda x, W, b=None: ref.conv(x, W, b, **geo))


def test_known_values_by_hand():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    W = np.array([[[1.0, 0.0, -1.0]]])
    xs, Ws = aj.input("x", (None, 1, 4)), aj.param("W", (1, 1, 3))
    out = run([aj.conv1d(xs, Ws, padding=1), aj.conv1d(xs, Ws, padding=1, stride=2),
               aj.conv1d(xs, Ws, aj.const(np.array([10.0])))], x=x, W=W)
    # padded [0 1 2 3 4 0]: 0-2, 1-3, 2-4, 3-0
    np.testing.assert_array_equal(out[0], [[[-2.0, -2.0, -2.0, 3.0]]])
    np.testing.assert_array_equal(out[1], [[[-2.0, -2.0]]])
    np.testing.assert_array_equal(out[2], [[[8.0, 8.0]]])
    # the transposed convolution scatters each input element times the kernel
    g, Wt = aj.input("g", (None, 1, 2)), aj.param("Wt", (1, 1, 3))
    out = run([aj.conv_transpose1d(g, Wt, stride=2),
               aj.conv_transpose1d(g, Wt, stride=2, padding=1, output_padding=1)],
              g=np.array([[[1.0, 2.0]]]), Wt=np.array([[[1.0, 10.0, 100.0]]]))
    np.testing.assert_array_equal(out[0], [[[1.0, 10.0, 102.0, 20.0, 200.0]]])
    np.testing.assert_array_equal(out[1], [[[10.0, 102.0, 20.0, 200.0]]])
    # 2-D, depthwise: each channel with its own kernel
    x2 = np.arange(18.0).reshape(1, 2, 3, 3)
    W2 = np.stack([np.ones((1, 2, 2)), -np.eye(2)[None]])
    xs2, Ws2 = aj.input("x2", (None, 2, 3, 3)), aj.param("W2", (2, 1, 2, 2))
    got = run(aj.conv2d(xs2, Ws2, groups=2), x2=x2, W2=W2)
    np.testing.assert_array_equal(got[0, 0], [[8.0, 12.0], [20.0, 24.0]])
    np.testing.assert_array_equal(got[0, 1], [[-22.0, -24.0], [-28.0, -30.0]])


def test_oracle_agrees_with_torch():
    """The loop oracle itself, against PyTorch where it is installed (not needed in CI)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for case in FORWARD:
        v = _case_values(case)
        spatial, _, stride, padding, dilation, groups, _, _ = case
        fn = getattr(F, f"conv{len(spatial)}d")
        want = fn(*(torch.from_numpy(v[k]) for k in ("x", "W", "b")), stride=stride,
                  padding=padding, dilation=dilation, groups=groups).numpy()
        np.testing.assert_allclose(ref.conv(**v, stride=stride, padding=padding,
                                            dilation=dilation, groups=groups), want,
                                   rtol=1e-12, atol=1e-12)
    for case in TRANSPOSE_CASES:
        v = _transpose_values(case)
        nd, stride, padding, extra, groups, dilation = case[0], *case[3:]
        want = getattr(F, f"conv_transpose{nd}d")(
            *(torch.from_numpy(v[k]) for k in ("g", "W", "b")), stride=stride,
            padding=padding, output_padding=extra, groups=groups, dilation=dilation).numpy()
        np.testing.assert_allclose(ref.conv_transpose(**v, stride=stride, padding=padding,
                                                      output_padding=extra, groups=groups,
                                                      dilation=dilation), want,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", FORWARD, ids=IDS)
def test_forward_matches_the_loop_oracle(case):
    """One graph per geometry: with and without bias, batch None bound to 0, 1 and 3, and
    float32 (the oracle in float64, rounded)."""
    build, oracle = _case_fns(case)
    spatial, kernel, _, _, _, groups, ci, co = case
    for dtype in ("float64", "float32"):
        x = aj.input("x", (None, ci) + spatial, dtype)
        W, b = aj.param("W", (co, ci // groups) + kernel, dtype), aj.param("b", (co,), dtype)
        f = aj.compile([build(x, W, b), build(x, W)], backend="interp")
        for batch in (0, 1, 3):
            v = _case_values(case, batch, dtype)
            got = f(**v)
            want = [oracle(**{k: a.astype("float64") for k, a in v.items()}),
                    oracle(v["x"].astype("float64"), v["W"].astype("float64"))]
            tol = 1e-12 if dtype == "float64" else 1e-5
            for g, w in zip(got, want):
                assert g.dtype == dtype and g.shape == w.shape
                scale = max(1.0, np.abs(w).max(initial=0))
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


# nd, g spatial, kernel, stride, padding, output_padding, groups, dilation
TRANSPOSE_CASES = [
    (1, (5,), (3,), 1, 0, 0, 1, 1), (1, (4,), (3,), 2, 1, 1, 1, 1),
    (1, (3,), (2,), 3, 0, 2, 2, 1), (1, (4,), (3,), 2, 2, 1, 1, 2),
    (2, (3, 4), (3, 2), (2, 1), (1, 0), (1, 0), 1, 1), (2, (2, 3), (2, 2), 2, 0, 0, 2, 1),
    (2, (1, 1), (3, 3), 1, 1, 0, 1, 1), (2, (3, 3), (3, 3), (3, 2), (1, 2), (2, 1), 1, (1, 2)),
    (2, (3, 2), (1, 1), 2, 0, 1, 3, 1),
    # output_padding >= stride (allowed below the dilation): whole output windows unfed
    (1, (1,), (2,), 1, 0, 1, 1, 2), (2, (3, 2), (2, 3), (2, 1), 0, (2, 1), 1, 3),
]
T_IDS = [f"{c[0]}d-{'x'.join(map(str, c[1]))}-k{'x'.join(map(str, c[2]))}-s{c[3]}-p{c[4]}"
         f"-op{c[5]}-g{c[6]}-d{c[7]}" for c in TRANSPOSE_CASES]
CHANNELS = (2, 3)    # C_in of g per group, C_out per group


def _transpose_values(case, batch=2, dtype="float64"):
    nd, spatial, kernel, groups = case[0], case[1], case[2], case[6]
    rng = _rng(case, batch)
    ci, cog = CHANNELS[0] * groups, CHANNELS[1]
    return {"g": rng.standard_normal((batch, ci) + spatial).astype(dtype),
            "W": rng.standard_normal((ci, cog) + kernel).astype(dtype),
            "b": rng.standard_normal(cog * groups).astype(dtype)}


def _transpose_fns(case):
    nd, stride, padding, extra, groups, dilation = case[0], *case[3:]
    geo = dict(stride=stride, padding=padding, output_padding=extra, groups=groups,
               dilation=dilation)
    return (lambda g, W, b=None: TRANSPOSE[nd](g, W, b, **geo),
            lambda g, W, b=None: ref.conv_transpose(g, W, b, **geo))


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=T_IDS)
def test_conv_transpose_matches_the_scatter_loop(case):
    """Forward against the scatter oracle, and gradients in g, W, b against finite
    differences (through tanh)."""
    build, oracle = _transpose_fns(case)
    v = _transpose_values(case)
    shapes = {"g": (None,) + v["g"].shape[1:], "W": v["W"].shape, "b": v["b"].shape}
    check_model(lambda g, W, b: aj.tanh(build(g, W, b)),
                lambda g, W, b: np.tanh(oracle(g, W, b)), v, shapes)


def _grad_cases():
    """A generated grid: every dimension, stride, padding form, dilation and group count,
    combined so that each pair of choices meets in some case."""
    cases = []
    for nd, stride, padding, dilation, groups in itertools.product(
            (1, 2, 3), (1, 2), (0, 1, "same", "valid"), (1, 2), (1, 2)):
        if padding == "same" and stride != 1:
            continue
        if nd == 3 and (stride, dilation) != (1, 1) and padding not in (0, "same"):
            continue          # (keep the 3-D cases few: their oracle loops are slow)
        spatial = {1: (7,), 2: (6, 5), 3: (5, 4, 5)}[nd]
        kernel = {1: (3,), 2: (2, 3), 3: (2, 2, 3)}[nd]
        cases.append((spatial, kernel, stride, padding, dilation, groups, 2 * groups, 2))
    return cases[::2]


GRAD_CASES = _grad_cases()


@pytest.mark.parametrize("case", GRAD_CASES,
                         ids=[f"{len(c[0])}d-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}" for c in GRAD_CASES])
def test_gradients_against_finite_differences(case):
    """x, W and b through a nonlinear loss, against the loop oracle's finite differences."""
    build, oracle = _case_fns(case)
    v = _case_values(case)
    shapes = {"x": (None,) + v["x"].shape[1:], "W": v["W"].shape, "b": v["b"].shape}
    check_model(lambda x, W, b: aj.tanh(build(x, W, b)) * build(x, W),
                lambda x, W, b: np.tanh(oracle(x, W, b)) * oracle(x, W), v, shapes)


@pytest.mark.parametrize("nd, transpose", [(1, False), (2, False), (3, False), (1, True),
                                           (2, True)])
def test_second_order_against_finite_differences_of_the_gradient(nd, transpose):
    """Hessian-vector products through a convolution (the gradient's graph is made of
    conv_transpose/conv_weight/conv records: each differentiates again), and the gradient of
    a scalar function of the gradient, against finite differences of the first-order
    gradient (itself checked above)."""
    case = {1: ((7,), (3,), 2, 1, 1, 2, 4, 2), 2: ((5, 4), (2, 3), 1, "same", (1, 2), 1, 2, 3),
            3: ((4, 3, 4), (2, 2, 3), 1, 1, 1, 2, 2, 2)}[nd]
    if transpose:
        build, _ = _transpose_fns(TRANSPOSE_CASES[1 if nd == 1 else 7])
        v = _transpose_values(TRANSPOSE_CASES[1 if nd == 1 else 7])
        v = {"x": v["g"], "W": v["W"], "b": v["b"]}
    else:
        build, _ = _case_fns(case)
        v = _case_values(case)
    x, W, b = (aj.input(k, (None,) + v[k].shape[1:]) if k == "x" else aj.param(k, v[k].shape)
               for k in ("x", "W", "b"))
    loss = aj.sum(aj.tanh(build(x, W, b)) ** 2)
    grads = aj.grad(loss, [x, W, b])
    dirs = {k: _rng("dir", nd, k).standard_normal(a.shape) for k, a in v.items()}
    dv = [aj.input("d" + k, a.shape if k != "x" else (None,) + a.shape[1:])
          for k, a in dirs.items()]
    hvp = aj.grad(sum(aj.sum(g * d) for g, d in zip(grads, dv)), [x, W, b])
    f = aj.compile(grads + hvp, backend="interp")
    call = {**v, **{"d" + k: a for k, a in dirs.items()}}
    h = 1e-5
    plus = f(**{**call, **{k: v[k] + h * dirs[k] for k in v}})[:3]
    minus = f(**{**call, **{k: v[k] - h * dirs[k] for k in v}})[:3]
    got = f(**call)[3:]
    for k, a, p, m in zip(v, got, plus, minus):
        fd = (p - m) / (2 * h)
        np.testing.assert_allclose(a, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max(), err_msg=k)
    # a scalar function of the gradient, differentiated: adjit's own check as well
    second = aj.sum(grads[0] ** 2) + aj.sum(aj.sin(grads[1])) + aj.sum(grads[2] * grads[2])
    assert aj.check_grads(second, [x, W, b], v, rtol=1e-6).ok


# --- the records directly ------------------------------------------------------------------
RECORD_CASES = [  # nd, N, C, C_out, spatial, kernel, stride, dilation, pad, groups
    (1, 3, 2, 4, (9,), (3,), (2,), (1,), ((1, 2),), 2),
    (2, 2, 3, 2, (6, 5), (3, 2), (1, 2), (2, 1), ((2, 1), (0, 3)), 1),
    (2, 1, 4, 4, (5, 5), (2, 2), (2, 2), (1, 1), ((0, 0), (1, 1)), 4),
    (3, 2, 2, 3, (4, 3, 5), (2, 2, 2), (1, 2, 1), (1, 1, 2), ((1, 0), (0, 0), (1, 1)), 1),
]


@pytest.mark.parametrize("case", RECORD_CASES, ids=[f"{c[0]}d-g{c[-1]}" for c in RECORD_CASES])
def test_records_are_adjoint(case):
    """⟨conv(x, W), g⟩ = ⟨x, conv_transpose(g, W)⟩ = ⟨W, conv_weight(x, g)⟩ and
    ⟨unfold(x), c⟩ = ⟨x, fold(c)⟩ on random data, with asymmetric padding (only reachable
    through the records); conv's values against the loop oracle; each record's numpy
    reference against the expanded graph's values."""
    nd, N, C, Co, S, K, st, dil, pad, G = case
    a = {"stride": st, "dilation": dil, "pad": pad, "groups": G}
    x, W = aj.input("x", (N, C) + S), aj.param("W", (Co, C // G) + K)
    z = conv_node(x, W, a)
    g = aj.input("g", z.shape)
    xt = conv_transpose_node(g, W, a, S)
    wt = conv_weight_node(x, g, a, K)
    geo = {"kernel": K, "stride": st, "dilation": dil, "pad": pad}
    u = make("unfold", (x,), geo)
    c = aj.input("c", u.shape)
    fo = make("fold", (c,), dict(geo, spatial=S))
    rng = _rng(case)
    v = {k: rng.standard_normal(n.shape) for k, n in (("x", x), ("W", W), ("g", g), ("c", c))}
    outs = [z, xt, wt, u, fo]
    f = aj.compile(outs, backend="interp")
    zv, xtv, wtv, uv, fov = f(**v)
    dots = [np.vdot(zv, v["g"]), np.vdot(v["x"], xtv), np.vdot(v["W"], wtv)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-12)
    np.testing.assert_allclose(np.vdot(uv, v["c"]), np.vdot(v["x"], fov), rtol=1e-12)
    # asymmetric padding = explicit zero padding, then a valid convolution
    xp = np.pad(v["x"], [(0, 0), (0, 0)] + list(pad))
    np.testing.assert_allclose(zv, ref.conv(xp, v["W"], stride=st, dilation=dil, groups=G),
                               rtol=1e-12, atol=1e-12)
    env = {}
    for node, got in zip(outs, (zv, xtv, wtv, uv, fov)):
        args = [v[i.name] for i in node.inputs]
        direct = REGISTRY[node.op].numpy(args, node, env)
        np.testing.assert_allclose(direct, got, rtol=1e-12, atol=1e-12, err_msg=node.op)
    # expanded away, and compiled with no passes at all (Compiled expands)
    assert {n.op for n in f.stages[0].order()} >= {"conv", "conv_transpose", "conv_weight"}
    left = {n.op for n in expand(f.stages[0]).order()}
    assert not left & {"conv", "conv_transpose", "conv_weight"}, left
    assert {"unfold", "fold"} <= left
    bare = aj.compile(outs, backend="interp", passes=())(**v)
    for got, want in zip(bare, (zv, xtv, wtv, uv, fov)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- errors at declaration -----------------------------------------------------------------
def _errors():
    x = aj.input("x", (None, 3, 8, 8))
    W1 = aj.param("W1", (4, 1, 3, 3))
    W = aj.param("W", (4, 3, 3, 3))
    return [
        (lambda: aj.conv2d(x, W1), ShapeError, r"conv2d\(x, W1\): x has 3 channels, W1 expects 1"),
        (lambda: aj.conv2d(x, aj.param("W2", (4, 2, 3, 3)), groups=2), ShapeError,
         r"x has 3 channels, W2 expects 4 \(2 per group × groups=2\)"),
        (lambda: aj.conv2d(x, aj.param("W3", (3, 1, 3, 3)), groups=2), ShapeError,
         r"W3 has 3 output channels, not divisible by groups=2"),
        (lambda: aj.conv2d(x, W, groups=0), ShapeError, "groups must be a positive int"),
        (lambda: aj.conv2d(x, aj.param("Wbig", (4, 3, 9, 3))), ShapeError,
         r"conv2d\(x, Wbig\): the x of spatial size \(8, 8\) padded by .* smaller than the kernel"),
        (lambda: aj.conv2d(x, W, dilation=4), ShapeError, "smaller than the kernel"),
        (lambda: aj.conv1d(x, W), ShapeError, r"conv1d\(x, W\): x must have shape \(N, C, L\)"),
        (lambda: aj.conv2d(x, aj.param("W4", (4, 3, 3))), ShapeError,
         r"W4 must have shape \(C_out, C_in/groups, kH, kW\)"),
        (lambda: aj.conv2d(aj.input("x5", (3, None, 8, 8)), W), ShapeError,
         "only axis 0 of x5 may be the batch axis"),
        (lambda: aj.conv2d(x, W, padding="full"), ShapeError,
         "padding must be an int, a tuple, 'same' or 'valid'"),
        (lambda: aj.conv2d(x, W, padding="same", stride=2), ShapeError,
         "padding='same' needs stride 1"),
        (lambda: aj.conv2d(x, W, padding=-1), ShapeError, "padding must be >= 0"),
        (lambda: aj.conv2d(x, W, stride=(1, 0)), ShapeError, "stride must be >= 1"),
        (lambda: aj.conv2d(x, W, stride=(1, 2, 3)), ShapeError,
         "stride must be an int or a tuple of 2"),
        (lambda: aj.conv2d(x, W, dilation=1.5), ShapeError, "dilation must be an int"),
        (lambda: aj.conv2d(x, W, aj.param("bb", (3,))), ShapeError,
         r"the bias bb must have shape \(4,\), got \(3,\)"),
        (lambda: aj.conv2d(aj.input("xi", (None, 3, 8, 8), "int32"),
                           aj.param("Wi", (4, 3, 3, 3), "int32")),
         DTypeError, r"conv2d\(xi, Wi\): needs float operands of one dtype, got xi int32, Wi int32"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt", (2, 4, 3, 3))), ShapeError,
         r"conv_transpose2d\(x, Wt\): x has 3 channels, Wt expects 2"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt6", (3, 4, 3))), ShapeError,
         r"Wt6 must have shape \(C_in, C_out/groups, kH, kW\)"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt7", (3, 4, 3, 3)), groups=2), ShapeError,
         r"conv_transpose2d\(x, Wt7\): Wt7 has 3 input channels, not divisible by groups=2"),
        (lambda: aj.conv_transpose2d(aj.input("xt", (None, 3, 8, 8), "int32"),
                                     aj.param("Wt8", (3, 4, 3, 3))), DTypeError,
         r"conv_transpose2d\(xt, Wt8\): needs float operands of one dtype"),
        (lambda: aj.conv2d(x, W, aj.param("bi", (4,), "int32")), DTypeError,
         r"conv2d\(x, W\): the bias bi must be a float vector, got int32"),
        (lambda: aj.conv2d(x, W, groups=True), ShapeError, "groups must be a positive int"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt2", (3, 4, 3, 3)), padding="same"),
         ShapeError, "padding must be an int or a tuple"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt3", (3, 4, 3, 3)), stride=2,
                                     output_padding=2), ShapeError,
         "output_padding .* must be smaller than the stride or the dilation"),
        (lambda: aj.conv_transpose1d(aj.input("x1", (None, 3, 2)), aj.param("Wt4", (3, 1, 1)),
                                     padding=2), ShapeError, "the output would have spatial size"),
        (lambda: aj.conv_transpose2d(x, aj.param("Wt5", (3, 4, 3, 3)), aj.param("bt", (3,))),
         ShapeError, r"the bias bt must have shape \(4,\)"),
    ]


@pytest.mark.parametrize("k", range(len(_errors())))
def test_errors_name_operands_and_rule(k):
    fn, exc, match = _errors()[k]
    with pytest.raises(exc, match=match):
        fn()


def test_mixed_float_dtypes_promote_and_numpy_ints_are_sizes():
    """float32 with float64 gives float64 (numpy's promotion) for conv and conv_transpose
    alike; numpy integers are accepted wherever an int is (sizes from shape arithmetic)."""
    x, W = aj.input("x", (None, 2, 5), "float32"), aj.param("W", (3, 2, 2), "float64")
    assert aj.conv1d(x, W).dtype == "float64"
    assert aj.conv_transpose1d(aj.input("g", (None, 3, 4), "float32"), W).dtype == "float64"
    assert aj.conv1d(x, W, aj.param("b", (3,), "float32")).dtype == "float64"
    z = aj.conv1d(x, W, stride=np.int64(2), padding=(np.int32(1),), groups=np.int64(1))
    assert z.shape == (None, 3, 3)
    assert aj.conv_transpose1d(aj.input("g2", (None, 2, 4)), aj.param("W2", (2, 1, 3)),
                               stride=np.int64(2), groups=np.int8(2)).shape == (None, 2, 9)
