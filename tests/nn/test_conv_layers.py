"""nn.Conv1d/Conv2d, the pooling layers, Flatten, ReLU and BatchNorm1d/2d: shapes and
errors at declaration, parameters and PyTorch's initialization, composition in
nn.Sequential, running statistics through updates=, gradients of a small conv net against
finite differences of a numpy reference (float64), and llvm against the interpreter."""
import math

import numpy as np
import pytest

import adjit as aj
from adjit import nn
from layertools import assert_backends_agree, check_layer_grads

RNG = np.random.default_rng(15)


# --- numpy references (PyTorch semantics) ---------------------------------------------------
def np_conv(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of (N, C, *S) with (O, C/groups, *K), by explicit loops over taps."""
    nd = x.ndim - 2
    st, dl, pd = ((v,) * nd if isinstance(v, int) else tuple(v)
                  for v in (stride, dilation, padding))
    x = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pd))
    K = W.shape[2:]
    out = tuple((n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(x.shape[2:], K, st, dl))
    O, Cg = W.shape[0], W.shape[1]
    Og = O // groups
    z = np.zeros((x.shape[0], O) + out)
    for g in range(groups):
        xs = x[:, g * Cg:(g + 1) * Cg]
        Ws = W[g * Og:(g + 1) * Og]
        for tap in np.ndindex(*K):
            idx = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                        for t, d, s, o in zip(tap, dl, st, out))
            win = xs[(slice(None), slice(None)) + idx]                  # (N, Cg, *out)
            z[:, g * Og:(g + 1) * Og] += np.einsum("nc...,oc->no...", win,
                                                   Ws[(slice(None), slice(None)) + tap])
    if b is not None:
        z += b.reshape((1, O) + (1,) * nd)
    return z


def np_pool(x, k, s, red):
    nd = x.ndim - 2
    k, s = (k,) * nd if isinstance(k, int) else k, (s,) * nd if isinstance(s, int) else s
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, t) for t in s)]
    return red(win, axis=tuple(range(-nd, 0)))


def values_for(layer, rng=RNG):
    """Random parameter values (not the init: a bias far from zero)."""
    return {p.name: rng.standard_normal(p.shape) for p in layer.params}


def interp(outputs, **values):
    return aj.compile(outputs, backend="interp")(**values)


# --- Conv1d / Conv2d ----------------------------------------------------------------------
CONV2D = [   # (C_in, C_out, kernel, stride, padding, dilation, groups, spatial)
    (1, 6, 3, 1, 1, 1, 1, (8, 8)),
    (3, 4, (2, 3), (2, 1), (0, 2), 1, 1, (7, 5)),
    (4, 6, 3, 2, 1, 2, 2, (9, 9)),
    (4, 4, 3, 1, "same", 1, 4, (5, 6)),          # depthwise, "same"
    (2, 3, 1, 1, "valid", 1, 1, (1, 1)),
]


@pytest.mark.parametrize("cin,cout,k,s,p,d,g,spatial", CONV2D)
@pytest.mark.parametrize("batch", [1, 7])
def test_conv2d_layer_matches_the_numpy_convolution(cin, cout, k, s, p, d, g, spatial, batch):
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, name="c")
    x = aj.input("x", (None, cin) + spatial)
    z = conv(x)
    xv = RNG.standard_normal((batch, cin) + spatial)
    vals = values_for(conv)
    pad = p
    if p == "same":
        pad = tuple((d * (kk - 1)) // 2 for kk in conv.kernel_size)
    elif p == "valid":
        pad = 0
    want = np_conv(xv, vals["Wc"], vals["bc"], s, pad, d, g)
    assert z.shape == (None, cout) + want.shape[2:]
    (got,) = interp([z], x=xv, **vals)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,s,p,d,g,L", [(3, 1, 0, 1, 1, 9), (2, 2, 1, 1, 2, 7),
                                         (3, 1, "same", 2, 1, 5), (1, 3, 0, 1, 1, 1)])
def test_conv1d_layer_matches_the_numpy_convolution(k, s, p, d, g, L):
    conv = nn.Conv1d(2, 4, k, stride=s, padding=p, dilation=d, groups=g, name="c",
                     bias=False)
    assert conv.params == [conv.W] and conv.bias is None
    x = aj.input("x", (None, 2, L))
    xv = RNG.standard_normal((3, 2, L))
    vals = values_for(conv)
    pad = d * (k - 1) // 2 if p == "same" else p
    (got,) = interp([conv(x)], x=xv, **vals)
    np.testing.assert_allclose(got, np_conv(xv, vals["Wc"], None, s, pad, d, g), rtol=1e-12,
                               atol=1e-12)


def test_conv_layer_parameters_are_registered_with_pytorch_layouts():
    conv = nn.Conv2d(6, 16, (3, 5), groups=2, name="2")
    assert [p.name for p in conv.params] == ["W2", "b2"]
    assert conv.W.shape == (16, 3, 3, 5) and conv.b.shape == (16,)
    assert conv.weight is conv.W and conv.bias is conv.b
    assert all(p.op == "param" for p in conv.params)
    assert conv.kernel_size == (3, 5) and conv.stride == (1, 1) and conv.padding == (0, 0)
    assert nn.Conv1d(2, 3, 4, name="a").W.shape == (3, 2, 4)
    assert nn.Conv2d(1, 1, 3, dtype="float32").W.dtype == "float32"
    assert "Conv2d(6, 16" in repr(conv)


@pytest.mark.parametrize("layer,fan_in", [(lambda: nn.Conv2d(6, 16, 3), 54),
                                          (lambda: nn.Conv2d(8, 32, (3, 5), groups=4), 30),
                                          (lambda: nn.Conv1d(4, 64, 7), 28)])
def test_conv_init_is_pytorchs_uniform_with_bound_one_over_sqrt_fan_in(layer, fan_in):
    conv = layer()
    v = conv.init(0)
    bound = 1 / math.sqrt(fan_in)
    W, b = v[conv.W.name], v[conv.b.name]
    assert W.shape == conv.W.shape and W.dtype == np.float64 and W.flags.c_contiguous
    assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a) has standard deviation a / √3; thousands of draws keep it within 10 %
    assert abs(W.std() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    assert np.abs(b).max() > 0                                      # not zeros, as PyTorch
    again = conv.init(0)
    assert all(np.array_equal(v[k], again[k]) for k in v)           # the seed fixes it
    assert not np.array_equal(conv.init(1)[conv.W.name], W)


def test_conv_init_accepts_named_initializers_with_conv_fans_and_callables():
    conv = nn.Conv2d(16, 64, 3, name="h", init="he_normal")
    W = conv.init(0)["Wh"]
    assert W.shape == (64, 16, 3, 3)
    assert abs(W.std() - math.sqrt(2 / (16 * 9))) < 0.05 * math.sqrt(2 / (16 * 9))
    ones = nn.Conv1d(2, 3, 2, init=lambda rng, shape, dtype: np.ones(shape, dtype))
    assert np.array_equal(ones.init(0)["W"], np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="unknown initializer"):
        nn.Conv2d(1, 2, 3, init="nope")


def test_conv_layer_errors_at_declaration():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        nn.Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="out_channels=6 is not divisible by groups=4"):
        nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="in_channels=3 is not divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(aj.ShapeError, match="kernel_size"):
        nn.Conv2d(1, 2, (3, 3, 3))
    with pytest.raises(aj.ShapeError, match="stride must be >= 1"):
        nn.Conv1d(1, 2, 3, stride=0)
    with pytest.raises(aj.ShapeError, match="padding='same' needs stride 1"):
        nn.Conv2d(1, 2, 3, stride=2, padding="same")
    with pytest.raises(aj.ShapeError, match="padding must be"):
        nn.Conv2d(1, 2, 3, padding="full")
    conv = nn.Conv2d(3, 4, 3, name="1")
    with pytest.raises(aj.ShapeError, match=r"x has 1 channels, W1 expects 3"):
        conv(aj.input("x", (None, 1, 8, 8)))
    with pytest.raises(aj.ShapeError, match=r"\(N, C, H, W\)"):
        conv(aj.input("x", (None, 3, 8)))
    with pytest.raises(aj.ShapeError, match="smaller than the kernel"):
        conv(aj.input("x", (None, 3, 2, 8)))
    with pytest.raises(aj.DTypeError):
        conv(aj.input("x", (None, 3, 8, 8), dtype="int32"))


# --- pooling, Flatten, ReLU -----------------------------------------------------------------
@pytest.mark.parametrize("layer,fn,red", [(nn.MaxPool2d, "max_pool2d", np.max),
                                          (nn.AvgPool2d, "avg_pool2d", np.mean)])
@pytest.mark.parametrize("k,s,spatial", [(2, None, (8, 8)), (3, 2, (7, 9)), ((2, 1), 1, (3, 4))])
def test_pool2d_layers_match_numpy(layer, fn, red, k, s, spatial):
    pool = layer(k, s)
    assert pool.params == [] and pool.init(0) == {}
    assert pool.stride == (pool.kernel_size if s is None else (s, s) if isinstance(s, int) else s)
    x = aj.input("x", (None, 3) + spatial)
    xv = RNG.standard_normal((2, 3) + spatial)
    (got,) = interp([pool(x)], x=xv)
    np.testing.assert_allclose(got, np_pool(xv, k, k if s is None else s, red), rtol=1e-12)
    (direct,) = interp([getattr(aj, fn)(x, k, s)], x=xv)
    np.testing.assert_array_equal(got, direct)


@pytest.mark.parametrize("layer,red", [(nn.MaxPool1d, np.max), (nn.AvgPool1d, np.mean)])
def test_pool1d_layers_match_numpy(layer, red):
    x = aj.input("x", (None, 2, 9))
    xv = RNG.standard_normal((4, 2, 9))
    (got,) = interp([layer(3, 2)(x)], x=xv)
    np.testing.assert_allclose(got, np_pool(xv, 3, 2, red), rtol=1e-12)


def test_pool_layers_pass_pytorchs_options_through():
    x = aj.input("x", (None, 2, 5, 5))
    xv = -np.abs(RNG.standard_normal((3, 2, 5, 5))) - 1        # negative: -inf padding shows
    mx = nn.MaxPool2d(3, 2, padding=1)
    (got,) = interp([mx(x)], x=xv)
    padded = np.pad(xv, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    np.testing.assert_array_equal(got, np_pool(padded, 3, 2, np.max))
    (got,) = interp([nn.MaxPool2d(2, 1, dilation=2)(x)], x=xv)
    taps = [xv[:, :, a:a + 3, b:b + 3] for a in (0, 2) for b in (0, 2)]   # dilation 2
    np.testing.assert_array_equal(got, np.max(taps, axis=0))
    for include in (True, False):
        (got,) = interp([nn.AvgPool2d(3, 2, 1, count_include_pad=include)(x)], x=xv)
        zero = np.pad(xv, ((0, 0), (0, 0), (1, 1), (1, 1)))
        count = np.pad(np.ones((5, 5)), 1)
        want = np_pool(zero, 3, 2, np.sum) / (9 if include else np_pool(
            count[None, None], 3, 2, np.sum))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert "count_include_pad=False" in repr(nn.AvgPool2d(2, count_include_pad=False))
    with pytest.raises(aj.ShapeError, match="ceil_mode"):
        nn.MaxPool2d(2, ceil_mode=True)(x)


@pytest.mark.parametrize("layer,size,red", [(nn.AdaptiveAvgPool2d, (2, 3), np.mean),
                                            (nn.AdaptiveMaxPool2d, 2, np.max)])
def test_adaptive_pool2d_layers(layer, size, red):
    x = aj.input("x", (None, 3, 4, 6))
    xv = RNG.standard_normal((2, 3, 4, 6))
    o = (size, size) if isinstance(size, int) else size
    k = (4 // o[0], 6 // o[1])
    (got,) = interp([layer(size)(x)], x=xv)
    np.testing.assert_allclose(got, np_pool(xv, k, k, red), rtol=1e-12)


@pytest.mark.parametrize("layer,red", [(nn.AdaptiveAvgPool1d, np.mean),
                                       (nn.AdaptiveMaxPool1d, np.max)])
def test_adaptive_pool1d_layers(layer, red):
    x = aj.input("x", (None, 3, 6))
    xv = RNG.standard_normal((2, 3, 6))
    (got,) = interp([layer(3)(x)], x=xv)
    np.testing.assert_allclose(got, np_pool(xv, 2, 2, red), rtol=1e-12)


def test_global_average_pooling_layer():
    x = aj.input("x", (None, 5, 3, 4))
    xv = RNG.standard_normal((2, 5, 3, 4))
    y = nn.AdaptiveAvgPool2d(1)(x)
    assert y.shape == (None, 5, 1, 1)
    (got,) = interp([y], x=xv)
    np.testing.assert_allclose(got, xv.mean(axis=(2, 3), keepdims=True), rtol=1e-12)


def test_pool_layer_errors_at_declaration():
    with pytest.raises(aj.ShapeError, match="at most half the kernel"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(aj.ShapeError, match="kernel_size must be >= 1"):
        nn.AvgPool2d(0)
    with pytest.raises(aj.ShapeError, match="stride"):
        nn.MaxPool1d(2, stride=(1, 1))


@pytest.mark.parametrize("shape,start,end,want", [
    ((None, 16, 2, 2), 1, -1, (None, 64)), ((None, 3, 4, 5), 2, 3, (None, 3, 20)),
    ((None, 3, 4, 5), 1, 2, (None, 12, 5)), ((2, 3, 4), 0, -1, (24,)),
    ((None, 7), 1, -1, (None, 7)), ((None,), 0, 0, (None,)), ((5, None, 2), -1, -1, (5, None, 2))])
def test_flatten_merges_the_named_axes(shape, start, end, want):
    x = aj.input("x", shape)
    y = nn.Flatten(start, end)(x)
    assert y.shape == want
    xv = RNG.standard_normal(tuple(3 if d is None else d for d in shape))
    (got,) = interp([y], x=xv)
    np.testing.assert_array_equal(got, xv.reshape(tuple(3 if d is None else d for d in want)))


def test_flatten_errors():
    with pytest.raises(aj.ShapeError, match="cannot merge the batch axis"):
        nn.Flatten(0)(aj.input("x", (None, 3, 4)))
    with pytest.raises(aj.ShapeError, match="out of range"):
        nn.Flatten(3)(aj.input("x", (None, 3, 4)))
    with pytest.raises(aj.ShapeError, match="start_dim comes after end_dim"):
        nn.Flatten(2, 1)(aj.input("x", (None, 3, 4)))
    with pytest.raises(ValueError, match="start_dim must be an int"):
        nn.Flatten(1.0)


def test_relu_layer():
    x = aj.input("x", (None, 4))
    xv = np.array([[-1.0, 0.0, 2.0, -np.inf]])
    (got,) = interp([nn.ReLU()(x)], x=xv)
    np.testing.assert_array_equal(got, [[0.0, 0.0, 2.0, 0.0]])
    assert nn.ReLU().params == []


# --- Sequential: a small conv net ------------------------------------------------------------
def small_net(dtype="float64"):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, name="c1", dtype=dtype), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(3, 4, 2, name="c2", dtype=dtype),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3, name="f", dtype=dtype))


def np_small_net(x, Wc1, bc1, Wc2, bc2, Wf, bf):
    h = np.maximum(np_conv(x, Wc1, bc1, padding=1), 0)
    h = np_pool(h, 2, 2, np.max)
    h = np.maximum(np_conv(h, Wc2, bc2), 0)
    return h.reshape(h.shape[0], -1) @ Wf + bf


def test_sequential_conv_net_collects_parameters_and_initial_values():
    net = small_net()
    assert [p.name for p in net.params] == ["Wc1", "bc1", "Wc2", "bc2", "Wf", "bf"]
    v = net.init(3)
    assert sorted(v) == sorted(p.name for p in net.params)
    assert net(aj.input("x", (None, 2, 6, 6))).shape == (None, 3)
    assert repr(net).startswith("Sequential(Conv2d, ReLU, MaxPool2d, Conv2d")
    with pytest.raises(ValueError, match="give the layers distinct name="):
        nn.Sequential(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("batch", [1, 7])
def test_small_conv_net_gradients_match_finite_differences(batch):
    net = small_net()
    x = aj.input("x", (None, 2, 6, 6))
    y = net(x)
    vals = {"x": RNG.standard_normal((batch, 2, 6, 6)), **values_for(net)}
    (got,) = interp([y], **vals)
    np.testing.assert_allclose(got, np_small_net(**vals), rtol=1e-12, atol=1e-12)
    check_layer_grads(y, [x] + net.params, vals, np_small_net, seed=batch)


@pytest.mark.parametrize("batch", [1, 7])
def test_small_conv_net_llvm_matches_the_interpreter(batch):
    net = small_net()
    x = aj.input("x", (None, 2, 6, 6))
    t = aj.input("t", (None,), dtype="int64")
    loss = aj.cross_entropy(net(x), t)
    outputs = [loss] + aj.grad(loss, [x] + net.params)
    vals = {"x": RNG.standard_normal((batch, 2, 6, 6)), "t": RNG.integers(0, 3, batch),
            **values_for(net)}
    assert_backends_agree(outputs, vals, rtol=1e-10)


# --- BatchNorm2d / BatchNorm1d ---------------------------------------------------------------
def np_bn_train(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    s = (1, -1) + (1,) * (x.ndim - 2)
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w.reshape(s) + b.reshape(s)


def test_batchnorm2d_trains_on_batch_statistics_and_updates_the_running_ones():
    bn = nn.BatchNorm2d(3, 1e-3, 0.2, name="bn1")          # PyTorch's order: eps, momentum
    assert bn.eps == 1e-3 and bn.momentum == 0.2
    x = aj.input("x", (None, 3, 4, 5))
    y = bn(x)
    xv = RNG.standard_normal((6, 3, 4, 5)) * 2 + 1
    vals = {**bn.init(0), "x": xv, "bn1_weight": RNG.uniform(0.5, 2, 3),
            "bn1_bias": RNG.standard_normal(3)}
    rm, rv = vals["bn1_running_mean"], vals["bn1_running_var"]      # updated in place
    f = aj.compile([y], backend="interp", updates=bn.updates)
    (got,) = f(**vals)
    np.testing.assert_allclose(got, np_bn_train(xv, vals["bn1_weight"], vals["bn1_bias"], 1e-3),
                               rtol=1e-10, atol=1e-12)
    n = 6 * 4 * 5
    np.testing.assert_allclose(rm, 0.2 * xv.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.8 + 0.2 * xv.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-12)

    y_eval = bn.eval()(x)                                  # evaluation: the running statistics
    (got,) = interp([y_eval], **{**vals, "bn1_running_mean": rm, "bn1_running_var": rv})
    s = (1, 3, 1, 1)
    want = (xv - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-3) * \
        vals["bn1_weight"].reshape(s) + vals["bn1_bias"].reshape(s)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_batchnorm2d_in_a_sequential_conv_block_with_updates():
    block = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False, name="c"),
                          nn.BatchNorm2d(4, name="bn"), nn.ReLU())
    x = aj.input("x", (None, 2, 5, 5))
    y = block(x)
    assert [p.name for p in block.params] == ["Wc", "bn_weight", "bn_bias"]
    assert [s.name for s in block.state] == ["bn_running_mean", "bn_running_var"]
    assert set(block.updates) == set(block.state)
    vals = {**block.init(0), "x": RNG.standard_normal((3, 2, 5, 5))}
    for backend in ("interp", "llvm"):
        state = {k: vals[k].copy() for k in ("bn_running_mean", "bn_running_var")}
        aj.compile([aj.sum(y)], backend=backend, updates=block.updates)(**{**vals, **state})
        np.testing.assert_allclose(state["bn_running_mean"], 0.1 * np_conv(
            vals["x"], vals["Wc"], padding=1).mean(axis=(0, 2, 3)), rtol=1e-10)
    assert_backends_agree([y] + aj.grad(aj.sum(y * y), block.params),
                          {k: v for k, v in vals.items() if "running" not in k})


def test_batchnorm_nd_check_the_rank():
    with pytest.raises(aj.ShapeError, match=r"BatchNorm2d 'bn': expected inputs \(N, C, H, W\)"):
        nn.BatchNorm2d(3)(aj.input("x", (None, 3)))
    with pytest.raises(aj.ShapeError, match="BatchNorm2d"):
        nn.BatchNorm2d(3)(aj.input("x", (None, 4, 2, 2)))
    with pytest.raises(aj.ShapeError, match=r"BatchNorm1d 'bn': expected inputs \(N, C\)"):
        nn.BatchNorm1d(3)(aj.input("x", (None, 3, 2, 2)))
    assert nn.BatchNorm1d(3)(aj.input("x", (None, 3))).shape == (None, 3)
    assert nn.BatchNorm1d(3)(aj.input("x", (None, 3, 7))).shape == (None, 3, 7)
    with pytest.raises(aj.DTypeError):
        nn.BatchNorm2d(3)(aj.input("x", (None, 3, 2, 2), dtype="int64"))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    assert isinstance(nn.BatchNorm2d(2), nn.BatchNorm)


# --- against PyTorch, where it is installed ---------------------------------------------------
def test_conv_layer_forward_and_init_bound_agree_with_torch():
    torch = pytest.importorskip("torch")
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, name="t")
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    fan_in = ref.weight[0].numel()
    assert conv.fan_in == fan_in
    bound = float(ref.weight.detach().abs().max()), float(ref.bias.detach().abs().max())
    assert max(bound) <= 1 / math.sqrt(fan_in)
    vals = {"Wt": ref.weight.detach().numpy(), "bt": ref.bias.detach().numpy()}
    xv = RNG.standard_normal((2, 4, 7, 7))
    (got,) = interp([conv(aj.input("x", (None, 4, 7, 7)))], x=xv, **vals)
    np.testing.assert_allclose(got, ref(torch.from_numpy(xv)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
