"""aj.per_example_grad: each example's gradient equals aj.grad of that example's loss alone
(a Python loop over single-example batches on the interpreter), and a two-sided finite
difference of that example's loss in float64; llvm equals the interpreter; graphs that mix
examples, and uses of a parameter without a per-example rule, are refused."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from adjit import nn
from adjit.ir import ShapeError

BATCHES = (1, 7, 0)


def _xent(logits, t):
    return -aj.sum(t * aj.log_softmax(logits, axis=-1), axis=-1)


def mlp_model():
    x, t = aj.input("x", (None, 5)), aj.input("t", (None, 3))
    net = nn.MLP([5, 4, 3], activation="tanh")
    losses = _xent(net(x), t)

    def data(rng, B):
        return {"x": rng.standard_normal((B, 5)), "t": np.eye(3)[rng.integers(0, 3, B)]}
    return losses, net.params, net.init(0), data


def relu_mlp_model():
    """W3's shape in small: ReLU layers, squared error, weights used through W.T and 2·W."""
    x, y = aj.input("x", (None, 4)), aj.input("y", (None, 2))
    W1, b1 = aj.param("W1", (6, 4)), aj.param("b1", (6,))
    W2, s = aj.param("W2", (6, 2)), aj.param("s", ())
    h = aj.relu(x @ W1.T + b1)
    out = h @ (W2 * s) + aj.reshape(b1[:2], (1, 2))
    losses = aj.sum((out - y) ** 2, axis=1)
    rng = np.random.default_rng(1)
    vals = {"W1": rng.standard_normal((6, 4)), "b1": rng.standard_normal(6),
            "W2": rng.standard_normal((6, 2)), "s": np.array(1.3)}

    def data(rng, B):
        return {"x": rng.standard_normal((B, 4)), "y": rng.standard_normal((B, 2))}
    return losses, [W1, b1, W2, s], vals, data


def conv_model():
    x, t = aj.input("x", (None, 2, 6, 6)), aj.input("t", (None, 3))
    c1 = nn.Conv2d(2, 4, 3, padding=1, name="c1")
    c2 = nn.Conv2d(4, 4, 3, stride=2, groups=2, name="c2")
    d = nn.Dense(4 * 2 * 2, 3, name="d")
    h = aj.max_pool2d(aj.relu(c1(x)), 1)
    h = aj.tanh(c2(h))
    losses = _xent(d(aj.reshape(h, (None, 16))), t)
    params = c1.params + c2.params + d.params
    vals = {**c1.init(0), **c2.init(1), **d.init(2)}

    def data(rng, B):
        return {"x": rng.standard_normal((B, 2, 6, 6)), "t": np.eye(3)[rng.integers(0, 3, B)]}
    return losses, params, vals, data


def seq_model():
    """Embedding, RNN, attention, mean over time, linear: the sequence layers."""
    ids, t = aj.input("ids", (None, 4), dtype="int64"), aj.input("t", (None, 3))
    emb = nn.Embedding(7, 4, name="emb")
    rnn = nn.RNN(4, 4, name="rnn")
    att = nn.Attention(4, heads=2, causal=True, name="att")
    d = nn.Dense(4, 3, name="d")
    hs, _ = rnn(emb(ids))
    losses = _xent(d(aj.mean(att(hs), axis=1)), t)
    params = emb.params + rnn.params + att.params + d.params
    vals = {**emb.init(0), **rnn.init(1), **att.init(2), **d.init(3)}
    vals = {k: v + 0.1 * np.random.default_rng(4).standard_normal(v.shape) for k, v in vals.items()}

    def data(rng, B):
        return {"ids": rng.integers(0, 7, (B, 4)), "t": np.eye(3)[rng.integers(0, 3, B)]}
    return losses, params, vals, data


MODELS = {"mlp": mlp_model, "relu_mlp": relu_mlp_model, "conv": conv_model, "seq": seq_model}


def _loop(losses, params, vals, batch, B):
    """The reference: aj.grad of one example's loss, example by example."""
    g = aj.compile(aj.grad(aj.sum(losses), params), backend="interp")
    rows = [g(**{k: v[b:b + 1] for k, v in batch.items()}, **vals) for b in range(B)]
    return [np.stack([r[k] for r in rows]) if B else None for k in range(len(params))]


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_per_example_equals_loop_of_grads(model, B):
    losses, params, vals, data = MODELS[model]()
    batch = data(np.random.default_rng(B), B)
    got = aj.compile(aj.per_example_grad(losses, params), backend="interp")(**batch, **vals)
    want = _loop(losses, params, vals, batch, B)
    for p, g, w in zip(params, got, want):
        assert g.shape == (B,) + p.shape, (p.name, g.shape)
        if B:
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=p.name)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_per_example_against_finite_differences(model):
    losses, params, vals, data = MODELS[model]()
    B = 3
    batch = data(np.random.default_rng(11), B)
    got = aj.compile(aj.per_example_grad(losses, params), backend="interp")(**batch, **vals)
    f = aj.compile(losses, backend="interp")
    rng, h = np.random.default_rng(5), 1e-6
    for p, g in zip(params, got):
        d = rng.standard_normal(p.shape)
        plus = f(**batch, **{**vals, p.name: vals[p.name] + h * d})
        minus = f(**batch, **{**vals, p.name: vals[p.name] - h * d})
        fd = (plus - minus) / (2 * h)                        # one directional FD per example
        an = np.tensordot(g, d, axes=d.ndim) if d.ndim else g * d
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-8, err_msg=p.name)


@pytest.mark.parametrize("B", (1, 7, 0))
@pytest.mark.parametrize("model", ["mlp", "relu_mlp", "conv", "seq"])
def test_llvm_equals_interp(model, B):
    losses, params, vals, data = MODELS[model]()
    batch = data(np.random.default_rng(B + 20), B)
    pe = aj.per_example_grad(losses, params)
    want = aj.compile(pe, backend="interp")(**batch, **vals)
    got = aj.compile(pe, backend="llvm")(**batch, **vals)
    for p, g, w in zip(params, got, want):
        assert g.shape == w.shape == (B,) + p.shape
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12, err_msg=p.name)


def test_mean_of_per_example_is_the_gradient_of_the_mean_float32():
    x, t = aj.input("x", (None, 6), "float32"), aj.input("t", (None, 3), "float32")
    net = nn.MLP([6, 5, 3], activation="relu", dtype="float32")
    losses = _xent(net(x), t)
    rng = np.random.default_rng(3)
    batch = {"x": rng.standard_normal((9, 6)).astype("float32"),
             "t": np.eye(3, dtype="float32")[rng.integers(0, 3, 9)]}
    vals = net.init(0)
    pe = aj.compile(aj.per_example_grad(losses, net.params), backend="llvm")(**batch, **vals)
    g = aj.compile(aj.grad(aj.mean(losses), net.params), backend="llvm")(**batch, **vals)
    for a, b in zip(pe, g):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a.mean(axis=0), b, rtol=1e-5, atol=1e-6)


def test_parameter_the_losses_ignore_gets_zeros_and_single_node():
    x = aj.input("x", (None, 2))
    w, unused = aj.param("w", (2,)), aj.param("u", (3,))
    losses = aj.sum(x * w, axis=1) ** 2
    g, z = aj.per_example_grad(losses, [w, unused])
    out = aj.compile([g, z], backend="interp")(x=[[1.0, 0.0], [0.0, 2.0]], w=[3.0, 1.0],
                                               u=np.zeros(3))
    assert out[0].tolist() == [[6.0, 0.0], [0.0, 8.0]]
    assert out[1].shape == (2, 3) and not out[1].any()
    single = aj.per_example_grad(losses, w)
    assert single.shape == (None, 2)


# --- refusals ------------------------------------------------------------------------------
def test_refuses_a_mean_over_the_batch_before_the_losses():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 3))
    h = x @ W
    centred = h - aj.mean(h, axis=0)                         # batch-norm-like coupling
    with pytest.raises(ShapeError, match=r"per_example_grad.*batch.*W"):
        aj.per_example_grad(aj.sum(centred ** 2, axis=1), W)


def test_refuses_batch_norm():
    x = aj.input("x", (None, 3))
    lin, bn = nn.Dense(3, 3, name="1"), nn.BatchNorm1d(3)
    losses = aj.sum(bn(lin(x)) ** 2, axis=1)
    with pytest.raises(ShapeError, match="W1"):
        aj.per_example_grad(losses, lin.params)


def test_refuses_an_op_without_a_per_example_rule():
    x = aj.input("x", (None, 2, 5, 5))
    W = aj.param("Wt", (2, 3, 3, 3))
    y = aj.conv_transpose2d(x, W)
    with pytest.raises(ShapeError, match=r"conv_transpose.*Wt"):
        aj.per_example_grad(aj.sum(y, axis=(1, 2, 3)), W)


def test_refuses_mixing_along_the_batch_axis():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3,))
    h = x * W
    flipped = h[::-1]                                        # example b reads example B-1-b
    with pytest.raises(ShapeError, match=r"slice mixes examples.*W"):
        aj.per_example_grad(aj.sum(flipped, axis=1), W)
    with pytest.raises(ShapeError, match=r"batch axis is not axis 0.*W"):
        aj.per_example_grad(aj.sum(h @ (h.T @ h), axis=1), W)     # hᵀh sums over examples


def test_refuses_bad_losses_and_parameters():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3,))
    with pytest.raises(ShapeError, match=r"shape \(B,\)"):
        aj.per_example_grad(aj.sum(x * W), W)               # a scalar, not one per example
    with pytest.raises(ShapeError, match=r"shape \(B,\)"):
        aj.per_example_grad(x * W, W)
    with pytest.raises(ShapeError, match="batch axis"):
        aj.per_example_grad(aj.sum(x * W, axis=1), x)
    with pytest.raises(TypeError, match="nodes"):
        aj.per_example_grad(aj.sum(x * W, axis=1), [np.zeros(3)])


def test_refuses_a_parameter_mixed_with_a_sum_over_the_batch():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3,))
    scale = W * aj.sum(x, axis=0)                            # no batch axis, reads every example
    with pytest.raises(ShapeError, match=r"reads batched data.*W"):
        aj.per_example_grad(aj.sum(x * scale, axis=1), W)
