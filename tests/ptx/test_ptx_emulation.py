"""The ptx kernels run over their thread grid on the CPU (the emulation), against the interpreter.

The emulated kernels are the GPU kernels' code in the CPU flavour (see
adjit/backends/ptx/kernel.py), driven by the same launch sequence and buffer plan, so these
tests check the kernels' per-thread logic, the block-level and grid-level reductions, the
shared-memory matmul tiles and the runtime without a GPU.
"""
import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import lower
from adjit.ops import REGISTRY
from ptx_helpers import (ELEMENTWISE, compare, elementwise_args, emulated, every_elementwise_op,
                         mlp, mlp_args, softmax_args, softmax_regression)

# Every registered op, and the tests here that run it through the emulated kernels.
COVERED = {**{name: ["test_every_elementwise_op_and_its_gradient"] for name in ELEMENTWISE},
           "input": ["test_models"], "param": ["test_models"], "fused": ["test_models"],
           "const": ["test_structural_ops"], "batch_size": ["test_structural_ops"],
           "broadcast": ["test_structural_ops"], "reshape": ["test_structural_ops"],
           "transpose": ["test_structural_ops"], "cast": ["test_structural_ops"],
           "stop_gradient": ["test_structural_ops"], "one_hot": ["test_structural_ops"],
           "sum": ["test_reductions_every_path"], "max": ["test_reductions_every_path"],
           "matmul": ["test_matmul_tiles_and_transposed_products"],
           "matmul_sum": ["test_summed_products"],   # (and tests/ops/test_contract.py)
           # --- moves (and tests/ops/test_moves.py) ---
           "slice": ["test_moves"], "pad": ["test_moves"], "concatenate": ["test_moves"],
           # gathers and reductions (more in tests/ops/test_gathers.py, test_reductions.py)
           **{op: ["test_gathers_and_reductions"] for op in (
               "take", "take_along_axis", "scatter_add", "min", "prod", "argmax", "argmin")},
           "philox": ["test_random_numbers"],   # (and tests/ops/test_random.py)
           # convolutions (and tests/ops/test_conv_backends.py)
           **{op: ["test_convolutions"] for op in (
               "conv", "conv_transpose", "conv_weight", "unfold", "fold")},
           # --- pooling (and tests/ops/test_pooling.py) ---
           **{op: ["test_pooling"] for op in (
               "max_pool", "pool_argmax", "avg_pool", "avg_pool_grad")}}


def test_every_registered_op_is_covered():
    assert sorted(COVERED) == sorted(REGISTRY), set(REGISTRY) ^ set(COVERED)
    for tests in COVERED.values():
        assert all(t in globals() for t in tests), tests


@pytest.mark.parametrize("batch", [0, 1, 5])
def test_summed_products(batch):
    """matmul_sum: the weight gradient over a sequence (left operand a transpose view) and
    the other operand forms; each tile loops over the stack."""
    from adjit.ops.contract import matmul_sum
    x = aj.input("sx", (None, 9, 70), "float32")
    y = aj.input("sy", (None, 9, 66), "float32")
    w = aj.param("sw", (70, 5), "float32")
    outs = [matmul_sum(aj.swapaxes(x, -1, -2), y), matmul_sum(x, aj.swapaxes(x, -1, -2)),
            aj.grad(aj.sum(aj.tanh(x @ w)), w)]
    rng = np.random.default_rng(batch)
    args = {"sx": rng.standard_normal((batch, 9, 70)).astype("float32"),
            "sy": rng.standard_normal((batch, 9, 66)).astype("float32"),
            "sw": rng.standard_normal((70, 5)).astype("float32")}
    compare(emulated(outs), outs, args, "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling(dtype):
    """Max and average pools, their gradients (scatter-add at pool_argmax, avg_pool_grad)
    and a second-order term, with NaN, -inf and ties in the windows."""
    x = aj.input("px", (None, 2, 5, 6), dtype)
    y, a = aj.max_pool2d(x, 3, 2, 1), aj.avg_pool2d(x, (2, 3), 1, (1, 0), count_include_pad=False)
    gx = aj.grad(aj.sum(y ** 3) + aj.sum(aj.tanh(a)), x)
    outs = [y, a, gx] + aj.grad(aj.sum(gx * gx), [x])
    for batch in (0, 1, 5):
        v = np.random.default_rng(batch).standard_normal((batch, 2, 5, 6)).astype(dtype)
        if batch:
            v[0, 0, 1, :2], v[-1, 1] = np.nan, -np.inf
        compare(emulated(outs), outs, {"px": v}, dtype)


def test_random_numbers():
    """Philox draws: the interpreter's (numpy's) bits exactly, over partial blocks."""
    key = aj.random.key_input()
    x = aj.input("rx", (None, 3), "float32")
    outs = [aj.random.bits(key, (None, 5)), aj.random.uniform(key, (None, 3), "float32") + x,
            aj.random.uniform(key, (7,)), aj.dropout(x, 0.5, key)]
    f = emulated(outs)
    for batch in (0, 1, 37):
        args = {"key": np.array([batch, 2 ** 32 - 1], np.uint32),
                "rx": np.ones((batch, 3), np.float32)}
        for got, want in zip(f(**args), aj.compile(outs, backend="interp")(**args)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_elementwise_op_and_its_gradient(dtype):
    outs = every_elementwise_op(dtype)
    f = emulated(outs)
    for batch in (1, 37):
        compare(f, outs, elementwise_args(dtype, batch), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_models(dtype):
    """MLP and softmax regression, forward and backward, over batch sizes that leave partial
    blocks and tiles, including the grid-level split of the batch reductions."""
    outs = mlp(dtype)
    f = emulated(outs)
    for batch in (1, 7, 300):
        compare(f, outs, mlp_args(dtype, batch), dtype)
    outs = softmax_regression(dtype)
    f = emulated(outs)
    for batch in (1, 65, 2100):
        compare(f, outs, softmax_args(dtype, batch), dtype)


def test_optimized_kernels():
    """The kernels after LLVM's O3 pipeline (what the GPU gets) compute the same."""
    outs = mlp("float32", act=aj.tanh)
    f = emulated(outs, opt_level=3)
    for batch in (5, 300):
        compare(f, outs, mlp_args("float32", batch), "float32")


def test_hessian_vector_product():
    x, t = aj.input("x", (None, 4)), aj.input("t", (None, 2))
    W, b = aj.param("W", (4, 2)), aj.param("b", (2,))
    loss = aj.mse(aj.tanh(x @ W + b), t)
    vW, vb = aj.input("vW", (4, 2)), aj.input("vb", (2,))
    gW, gb = aj.grad(loss, [W, b])
    hvp = aj.grad(aj.sum(gW * vW) + aj.sum(gb * vb), [W, b])
    rng = np.random.default_rng(5)
    args = dict(x=rng.standard_normal((9, 4)), t=rng.standard_normal((9, 2)),
                W=rng.standard_normal((4, 2)), b=rng.standard_normal(2),
                vW=rng.standard_normal((4, 2)), vb=rng.standard_normal(2))
    compare(emulated(hvp), hvp, args, "float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_moves(dtype):
    """Slices (negative steps, the batch axis), pads and joins, and their gradients."""
    x = aj.input("x", (None, 3, 4), dtype)
    outs = [x[-1, ::-2], x[:, 1:, None, 3:0:-1], aj.pad(x[::-1], ((0, 0), (1, 2), (0, 1)), constant_values=0.5),
            aj.concatenate([x, x[:, :1], x[:, 2:]], axis=1)]
    loss = sum(aj.sum(o * o) * (k + 1.0) for k, o in enumerate(outs))
    outs += aj.grad(loss, [x])
    f = emulated(outs)
    for batch in (1, 6):
        args = {"x": np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(dtype)}
        compare(f, outs, args, dtype)


def test_structural_ops():
    x = aj.input("x", (None, 3, 4), "float32")
    lab = aj.input("lab", (None,), "int32")
    v = aj.param("v", (4,), "float64")
    y = aj.reshape(x, (None, 12))
    outs = [
        aj.broadcast_to(v, (2, 3, 4)),                     # broadcast (output)
        aj.transpose(x, (2, 0, 1)) * 2.0,                  # materialized 3-D transpose
        aj.transpose(y),                                   # transpose as an output
        y,                                                 # a view (reshape) as an output
        aj.cast(x, "float64") + v,                         # cast f32 -> f64, broadcast (B,3,4)
        aj.cast(x > 0.5, "float32"),                       # bool -> float
        aj.cast(v, "float32"),                             # f64 -> f32
        aj.cast(lab, "float64"),                           # int -> float
        aj.one_hot(lab, 5, "float32"),
        aj.stop_gradient(x) + aj.const(np.arange(4.0, dtype="float32")),   # const array
        aj.mean(x, axis=0),                                # batch_size
        aj.equal(x, aj.const(np.float32(0.25))),           # bool output
        x,                                                 # an input as an output
    ]
    f = emulated(outs)
    rng = np.random.default_rng(6)
    for batch in (0, 1, 70):
        args = dict(x=np.round(rng.standard_normal((batch, 3, 4)) * 4).astype("float32") / 4,
                    lab=rng.integers(0, 5, batch).astype("int32"), v=rng.standard_normal(4))
        got = compare(f, outs, args, "float32")
        assert all(g is not args["x"] for g in got)          # results never alias inputs


def _reduce_cases():
    x = aj.input("x", (None, 5), "float64")
    z = aj.input("z", (2, None, 3, 4), "float64")
    return [aj.sum(x), aj.max(x),                            # M = 1: split over blocks
            aj.sum(x, axis=1), aj.max(x, axis=1),            # static R = 5: one thread each
            aj.sum(x, axis=0), aj.max(x, axis=0),            # R = B: one block per output
            aj.sum(z, axis=(0, 2)), aj.max(z, axis=(1, 3)),  # non-adjacent axes
            aj.sum(z, axis=(1,)), aj.sum(aj.reshape(z, (2, None, 12)) * 1.0, axis=(0, 1))]


def test_reductions_every_path():
    outs = _reduce_cases()
    f = emulated(outs)
    rng = np.random.default_rng(7)
    for batch in (0, 3, 1000):
        args = dict(x=rng.standard_normal((batch, 5)), z=rng.standard_normal((2, batch, 3, 4)))
        args["x"][:, 2] = np.round(args["x"][:, 2])         # ties for max
        compare(f, outs, args, "float64")
    # batch 1000 really takes the grid-level path (partials, then a final block)
    kinds = {L.what.rsplit(" ", 1)[-1] for L in f.launches if L.when(1000)}
    assert {"(partials)", "(final)"} <= kinds
    assert lower.splits(1, 5000) > 1 and lower.splits(lower.SPLIT_BELOW, 10 ** 6) == 1


def test_max_propagates_nan_and_empty_reductions():
    x = aj.input("x", (None, 3))
    outs = [aj.max(x, axis=0), aj.sum(x, axis=0), aj.max(x)]
    f = emulated(outs)
    arr = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, -np.inf]])
    compare(f, outs, dict(x=arr), "float64")
    m0, s0, m = f(x=np.zeros((0, 3)))
    assert m0.tolist() == [-np.inf] * 3 and s0.tolist() == [0.0] * 3 and m == -np.inf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_tiles_and_transposed_products(dtype):
    """Sizes that are not multiples of the 64 x 64 x 16 tiles, every transpose combination,
    and the backward pass's products (G @ W^T, X^T @ G), with B = 0 (K = 0)."""
    a = aj.input("a", (None, 70), dtype)
    w = aj.param("w", (70, 130), dtype)
    c = aj.param("c", (130, 17), dtype)
    h = a @ w
    loss = aj.sum(aj.tanh(h) @ c)
    outs = [h, aj.transpose(w) @ aj.transpose(a), aj.transpose(a) @ a,
            w @ aj.transpose(aj.transpose(w) @ w), loss] + aj.grad(loss, [a, w, c])
    f = emulated(outs)
    rng = np.random.default_rng(8)
    for batch in (0, 1, 65):
        args = dict(a=rng.standard_normal((batch, 70)).astype(dtype),
                    w=(rng.standard_normal((70, 130)) / 8).astype(dtype),
                    c=rng.standard_normal((130, 17)).astype(dtype))
        compare(f, outs, args, dtype)


def test_many_batch_sizes_reuse_and_free_buffers():
    """Repeated calls with different batch sizes (buffers per batch size, the oldest freed)."""
    outs = mlp("float64")
    f = emulated(outs)
    ref = aj.compile(outs, backend="interp")
    for batch in (3, 5, 6, 7, 9, 3, 11):
        args = mlp_args("float64", batch, seed=batch)
        for g, w in zip(f(**args), ref(**args)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert len(f._impl._states) <= 4


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sin_cos_of_huge_arguments(dtype):
    """sin/cos are accurate over the whole float range in the kernels (Payne–Hanek argument
    reduction past 2^30 / 2^14; they were NaN past 2^50 / 2^22), ±inf and NaN give NaN."""
    f32 = dtype == "float32"
    rng = np.random.default_rng(4)
    mag = np.exp(rng.uniform(0, np.log(3e38 if f32 else 1e300), 4000))
    x = np.concatenate([mag, -mag, [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e7, 1e16, 1e22]])
    x = x.astype(dtype)
    node = aj.input("x", (None,), dtype)
    outs = [aj.sin(node), aj.cos(node)]
    ref_dt = np.float64 if f32 else np.longdouble
    for opt in (0, 3):
        got = emulated(outs, opt_level=opt)(x=x)
        for y, ref in zip(got, (np.sin, np.cos)):
            with np.errstate(invalid="ignore"):
                want = ref(x.astype(ref_dt)).astype(dtype)
            assert (np.isnan(y) == np.isnan(want)).all()
            ok = ~np.isnan(want)
            ulps = np.abs(y[ok].astype(ref_dt) - want[ok]) / np.spacing(np.abs(want[ok]))
            assert ulps.max() <= 2, (dtype, opt, ulps.max(), x[ok][np.argmax(ulps)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gathers_and_reductions(dtype):
    E = aj.param("E", (6, 3), dtype)
    ids = aj.input("ids", (None, 2), "int64")
    x = aj.input("x", (None, 70), dtype)
    best = aj.take_along_axis(x, aj.argmin(x, axis=1, keepdims=True), 1)
    loss = (aj.sum(aj.take(E, ids, axis=0) ** 2) + aj.sum(best) + aj.sum(aj.min(x, axis=0))
            + aj.sum(aj.prod(x, axis=1)))
    outs = [loss, aj.argmax(x, axis=1), aj.min(x), aj.prod(x, axis=0)] + aj.grad(loss, [E, x])
    f = emulated(outs)
    rng = np.random.default_rng(3)
    for batch in (0, 1, 9):
        args = {"E": rng.standard_normal((6, 3)).astype(dtype),
                "ids": rng.integers(-6, 6, size=(batch, 2)),
                "x": rng.uniform(0.9, 1.1, size=(batch, 70)).astype(dtype)}
        compare(f, outs, args, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_convolutions(dtype):
    """conv2d with stride, padding, dilation and groups, conv_transpose1d, and the gradients
    (conv_transpose and conv_weight records, all expanded to unfold/fold and products)."""
    x, W, b = (aj.input("x", (None, 4, 7, 5), dtype), aj.param("W", (6, 2, 3, 2), dtype),
               aj.param("b", (6,), dtype))
    g, V = aj.input("g", (None, 3, 4), dtype), aj.param("V", (3, 2, 3), dtype)
    z = aj.conv2d(x, W, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    t = aj.conv_transpose1d(g, V, stride=2, padding=1, output_padding=1)
    loss = aj.sum(aj.tanh(z) * z) + aj.sum(t * t)
    outs = [z, t, loss] + aj.grad(loss, [x, W, b, g, V])
    f = emulated(outs)
    rng = np.random.default_rng(8)
    for batch in (0, 1, 7):
        args = {"x": rng.standard_normal((batch, 4, 7, 5)), "W": rng.standard_normal((6, 2, 3, 2)),
                "b": rng.standard_normal(6), "g": rng.standard_normal((batch, 3, 4)),
                "V": rng.standard_normal((3, 2, 3))}
        compare(f, outs, {k: v.astype(dtype) for k, v in args.items()}, dtype)
