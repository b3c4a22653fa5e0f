"""Layers and initializers: ordinary graph nodes, seeded values, clear errors."""
import numpy as np
import pytest

import adjit as aj
from adjit import nn


def test_mlp_is_the_graph_written_by_hand():
    x = aj.input("x", (None, 3))
    mlp = nn.MLP([3, 5, 2], activation="tanh", output_activation="sigmoid")
    y = mlp(x)
    assert [p.name for p in mlp.params] == ["W1", "b1", "W2", "b2"]
    assert [p.shape for p in mlp.params] == [(3, 5), (5,), (5, 2), (2,)]
    P = mlp.init(seed=4)
    X = np.random.default_rng(0).normal(size=(6, 3))
    got = aj.compile(y, backend="interp")(x=X, **P)
    h = np.tanh(X @ P["W1"] + P["b1"])
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(h @ P["W2"] + P["b2"]))), rtol=1e-14)


def test_mlp_gradients_match_finite_differences():
    x, t = aj.input("x", (None, 3)), aj.input("t", (None,), dtype="int64")
    mlp = nn.MLP([3, 4, 4, 3], activation="softplus")
    loss = aj.cross_entropy(mlp(x), t)
    values = {**mlp.init(seed=1), "x": np.random.default_rng(2).normal(size=(5, 3)),
              "t": np.array([0, 2, 1, 1, 0])}
    values = {k: v + 0.1 if k.startswith("b") else v for k, v in values.items()}  # nonzero biases
    report = aj.check_grads(loss, mlp.params, values, rtol=1e-6)
    assert report.ok and report.checked > 0


def test_dense_without_bias_and_custom_activation():
    layer = nn.Dense(2, 3, activation=lambda z: z * z, name="_sq", bias=False)
    assert [p.name for p in layer.params] == ["W_sq"]
    X = np.array([[1.0, 2.0]])
    W = layer.init(0)["W_sq"]
    out = aj.compile(layer(aj.input("x", (None, 2))), backend="interp")(x=X, W_sq=W)
    np.testing.assert_allclose(out, (X @ W) ** 2, rtol=1e-14)


def test_init_is_seeded_and_scaled():
    a = nn.MLP([64, 256, 10], dtype="float32").init(seed=7)
    b = nn.MLP([64, 256, 10], dtype="float32").init(seed=7)
    c = nn.MLP([64, 256, 10], dtype="float32").init(seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"])
    assert a["W1"].dtype == np.float32 and a["W1"].flags.c_contiguous
    assert not np.any(a["b1"])
    # ReLU hidden layer: He, std sqrt(2 / 64); linear output layer: Glorot uniform
    assert np.std(a["W1"]) == pytest.approx(np.sqrt(2 / 64), rel=0.05)
    bound = np.sqrt(6 / (256 + 10))
    assert np.abs(a["W2"]).max() <= bound and np.abs(a["W2"]).max() > 0.9 * bound
    g = nn.glorot_normal(np.random.default_rng(0), (400, 600))
    assert np.std(g) == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    u = nn.he_uniform(0, (500, 100))
    assert np.var(u) == pytest.approx(2 / 500, rel=0.03)


def test_bad_layer_arguments_are_named():
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        nn.MLP([2, 3], activation="relux")
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        nn.Dense(2, 3, init="xavier")
    with pytest.raises(ValueError, match="n_out must be a positive int"):
        nn.Dense(2, 0)
    with pytest.raises(ValueError, match="at least the input and output"):
        nn.MLP([4])
    with pytest.raises(TypeError, match="seed must be"):
        nn.MLP([2, 2]).init(seed="zero")
    layer = nn.Dense(3, 2, name="1")
    with pytest.raises(ValueError, match="W1: expected inputs with last dimension 3"):
        layer(aj.input("x", (None, 4)))
