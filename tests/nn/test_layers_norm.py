"""nn.LayerNorm, nn.BatchNorm, nn.Sequential and nn.Linear against PyTorch's formulas in
numpy: forward, gradients (finite differences), running statistics, llvm = interp."""
import doctest

import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim, train
from layertools import assert_backends_agree, check_layer_grads


# --- numpy references (PyTorch semantics) ------------------------------------------------------
def np_layer_norm(x, w, b, k, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)      # biased, as torch
    return (x - mu) / np.sqrt(var + eps) * w + b


def _bshape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def np_batch_norm_train(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w.reshape(_bshape(x)) + b.reshape(_bshape(x))


def np_running(x, rm, rv, momentum=0.1):
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // x.shape[1]
    unbiased = x.var(axis=axes) * n / max(n - 1, 1)          # torch: unbiased (n > 1)
    return (1 - momentum) * rm + momentum * x.mean(axis=axes), \
        (1 - momentum) * rv + momentum * unbiased


def np_batch_norm_eval(x, w, b, rm, rv, eps=1e-5):
    s = _bshape(x)
    return (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + eps) * w.reshape(s) + b.reshape(s)


RNG = np.random.default_rng(14)


def _affine(values, layer, rng=RNG):
    """Non-trivial weight and bias (init gives ones and zeros)."""
    values[layer.weight.name] = rng.uniform(0.5, 2.0, layer.weight.shape)
    values[layer.bias.name] = rng.standard_normal(layer.bias.shape)
    return values


# --- LayerNorm -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,normalized", [((None, 5), 5), ((None, 3, 4), (3, 4)),
                                              ((2, None, 6), (6,)), ((None, 1), 1)])
def test_layer_norm_matches_torch_formula_and_finite_differences(shape, normalized):
    ln = nn.LayerNorm(normalized)
    x = aj.input("x", shape)
    y = ln(x)
    assert y.shape == shape and [p.name for p in ln.params] == ["ln_weight", "ln_bias"]
    k = len(ln.normalized_shape)
    for batch in (1, 4):
        X = RNG.standard_normal(tuple(batch if d is None else d for d in shape)) * 3 + 1
        values = _affine({"x": X}, ln)
        ref = lambda x, ln_weight, ln_bias: np_layer_norm(x, ln_weight, ln_bias, k)  # noqa: E731
        got = aj.compile(y, backend="interp")(**values)
        np.testing.assert_allclose(got, ref(**values), rtol=1e-12, atol=1e-12)
        if shape[-1] > 1:     # a single normalized value has a zero derivative everywhere
            check_layer_grads(y, [x] + ln.params, values, ref)
        assert_backends_agree(y, values)


def test_layer_norm_constant_rows_give_the_bias_and_batch_zero_runs():
    ln = nn.LayerNorm(4, eps=1e-5)
    x = aj.input("x", (None, 4))
    f = aj.compile(ln(x), backend="llvm")
    values = _affine({"x": np.full((3, 4), 7.0)}, ln)
    np.testing.assert_allclose(f(**values), np.broadcast_to(values["ln_bias"], (3, 4)),
                               rtol=1e-12)
    assert f(**{**values, "x": np.zeros((0, 4))}).shape == (0, 4)
    plain = nn.LayerNorm(4, elementwise_affine=False)
    assert plain.params == [] and plain.init() == {}
    X = RNG.standard_normal((5, 4))
    np.testing.assert_allclose(aj.compile(plain(x), backend="interp")(x=X),
                               np_layer_norm(X, 1.0, 0.0, 1), rtol=1e-12)


def test_layer_norm_float32_on_llvm():
    ln = nn.LayerNorm(8, dtype="float32")
    x = aj.input("x", (None, 8), "float32")
    y = ln(x)
    assert y.dtype == "float32"
    values = _affine({"x": RNG.standard_normal((6, 8)).astype("float32")}, ln)
    values = {k: v.astype("float32") for k, v in values.items()}
    got = aj.compile(y, backend="llvm")(**values)
    want = np_layer_norm(*(values[k].astype("float64") for k in ("x", "ln_weight", "ln_bias")), 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- BatchNorm -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(None, 3), (None, 3, 5), (4, 2)])
def test_batch_norm_training_forward_gradients_and_running_statistics(shape):
    bn = nn.BatchNorm(shape[1], momentum=0.25)
    x = aj.input("x", shape)
    y = bn(x)
    assert y.shape == shape
    assert [p.name for p in bn.params] == ["bn_weight", "bn_bias"]
    assert [s.name for s in bn.state] == ["bn_running_mean", "bn_running_var"]
    batch = 4 if shape[0] is None else shape[0]
    X = RNG.standard_normal((batch,) + shape[1:]) * 2 - 1
    values = _affine({"x": X}, bn)
    running = {"bn_running_mean": RNG.standard_normal(shape[1]),
               "bn_running_var": RNG.uniform(0.5, 2, shape[1])}
    ref = lambda x, bn_weight, bn_bias: np_batch_norm_train(x, bn_weight, bn_bias)  # noqa
    np.testing.assert_allclose(aj.compile(y, backend="interp")(**values), ref(**values),
                               rtol=1e-12, atol=1e-12)
    check_layer_grads(y, [x] + bn.params, values, ref)
    # the running statistics, written in place by the call (interp and llvm alike)
    new_mean, new_var = np_running(X, running["bn_running_mean"], running["bn_running_var"], 0.25)
    for backend in ("interp", "llvm"):
        state = {k: v.copy() for k, v in running.items()}
        f = aj.compile(y, backend=backend, updates=bn.updates)
        f(**{**values, **state})
        np.testing.assert_allclose(state["bn_running_mean"], new_mean, rtol=1e-12)
        np.testing.assert_allclose(state["bn_running_var"], new_var, rtol=1e-12)
    assert_backends_agree(y, values)


def test_batch_norm_eval_mode_uses_the_running_statistics():
    bn = nn.BatchNorm(3)
    x = aj.input("x", (None, 3, 2))
    bn.eval()
    y = bn(x)
    assert bn.updates == {}            # no training call yet: nothing to update
    X = RNG.standard_normal((5, 3, 2))
    values = _affine({"x": X, "bn_running_mean": RNG.standard_normal(3),
                      "bn_running_var": RNG.uniform(0.5, 2, 3)}, bn)
    ref = lambda x, bn_weight, bn_bias, bn_running_mean, bn_running_var: \
        np_batch_norm_eval(x, bn_weight, bn_bias, bn_running_mean, bn_running_var)  # noqa
    np.testing.assert_allclose(aj.compile(y, backend="llvm")(**values), ref(**values),
                               rtol=1e-12)
    check_layer_grads(y, [x] + bn.params, values, ref)
    assert bn(x, training=True).shape == (None, 3, 2) and bn.updates   # one call overrides
    assert not bn.training


def test_batch_norm_batch_of_one_and_zero():
    bn = nn.BatchNorm(2, momentum=0.5)
    x = aj.input("x", (None, 2))
    y = bn(x)
    f = aj.compile(y, backend="llvm", updates=bn.updates)
    state = bn.init()
    out = f(x=np.array([[3.0, -1.0]]), **state)
    # one value per channel: normalized to 0 (+ bias); the running variance moves towards
    # the batch variance 0 (n / max(n - 1, 1) = 1; PyTorch raises here)
    np.testing.assert_array_equal(out, [[0.0, 0.0]])
    np.testing.assert_allclose(state["bn_running_mean"], [1.5, -0.5])
    np.testing.assert_allclose(state["bn_running_var"], [0.5, 0.5])
    with pytest.raises(aj.ShapeError, match="no values per channel"):
        bn(aj.input("e", (0, 2)))


def test_batch_norm_float32():
    bn = nn.BatchNorm(4, dtype="float32")
    x = aj.input("x", (None, 4), "float32")
    y = bn(x)
    state = bn.init()
    X = RNG.standard_normal((16, 4)).astype("float32")
    f = aj.compile(y, backend="llvm", updates=bn.updates)
    got = f(x=X, **state)
    np.testing.assert_allclose(got, np_batch_norm_train(X.astype("float64"), np.ones(4),
                                                        np.zeros(4)), rtol=1e-4, atol=1e-5)
    assert state["bn_running_var"].dtype == np.float32
    np.testing.assert_allclose(state["bn_running_var"], 0.9 + 0.1 * X.var(axis=0, ddof=1),
                               rtol=1e-5)


def test_norm_layers_refuse_bad_inputs_by_name():
    with pytest.raises(aj.ShapeError, match="LayerNorm 'ln'.*ending in \\(4,\\)"):
        nn.LayerNorm(4)(aj.input("x", (None, 3)))
    with pytest.raises(aj.ShapeError, match="BatchNorm 'bn'.*\\(N, 4\\)"):
        nn.BatchNorm(4)(aj.input("x", (None, 3)))
    with pytest.raises(aj.ShapeError, match="BatchNorm"):
        nn.BatchNorm(4)(aj.input("x", (4,)))
    with pytest.raises(aj.DTypeError, match="float"):
        nn.LayerNorm(4)(aj.input("i", (None, 4), "int64"))
    for bad in (dict(num_features=0), dict(num_features=2, momentum=1.5),
                dict(num_features=2, eps=-1.0), dict(num_features=2.0)):
        with pytest.raises(ValueError):
            nn.BatchNorm(**bad)
    with pytest.raises(ValueError):
        nn.LayerNorm(())


# --- Sequential and Linear -------------------------------------------------------------------
def test_sequential_collects_params_state_and_updates():
    model = nn.Sequential(nn.Linear(4, 6, name="1"), nn.BatchNorm(6), aj.relu,
                          nn.LayerNorm(6), nn.Dense(6, 3, name="2"))
    x = aj.input("x", (None, 4))
    y = model(x)
    assert y.shape == (None, 3) and len(model) == 5 and model[2] is aj.relu
    assert [p.name for p in model.params] == ["W1", "b1", "bn_weight", "bn_bias", "ln_weight",
                                              "ln_bias", "W2", "b2"]
    assert [s.name for s in model.state] == ["bn_running_mean", "bn_running_var"]
    assert sorted(k.name for k in model.updates) == ["bn_running_mean", "bn_running_var"]
    P = model.init(seed=3)
    assert sorted(P) == sorted(n.name for n in model.params + model.state)
    assert all(np.array_equal(P[k], model.init(seed=3)[k]) for k in P)
    X = RNG.standard_normal((7, 4))
    h = X @ P["W1"] + P["b1"]
    h = np.maximum(np_batch_norm_train(h, P["bn_weight"], P["bn_bias"]), 0)
    h = np_layer_norm(h, P["ln_weight"], P["ln_bias"], 1)
    f = aj.compile(y, backend="llvm", updates=model.updates)   # takes the running statistics
    np.testing.assert_allclose(f(x=X, **P),
                               h @ P["W2"] + P["b2"], rtol=1e-10, atol=1e-12)
    assert isinstance(model[1:3], nn.Sequential) and len(model[1:3]) == 2
    model.eval()
    assert not model[1].training and model.train() is model and model[1].training
    assert "BatchNorm" in repr(model)


def test_sequential_gradients_match_finite_differences():
    model = nn.Sequential([nn.Dense(3, 5, "tanh", name="1"), nn.LayerNorm(5),
                           nn.Linear(5, 2, name="2")])
    x = aj.input("x", (None, 3))
    y = model(x)
    values = {"x": RNG.standard_normal((4, 3)), **model.init(1)}
    values = _affine(values, model[1])
    values["b1"] = RNG.standard_normal(5)

    def ref(x, W1, b1, ln_weight, ln_bias, W2, b2):
        return np_layer_norm(np.tanh(x @ W1 + b1), ln_weight, ln_bias, 1) @ W2 + b2
    check_layer_grads(y, [x] + model.params, values, ref)


def test_sequential_refuses_duplicate_names_and_non_layers():
    with pytest.raises(ValueError, match="'ln_weight'.*distinct name="):
        nn.Sequential(nn.LayerNorm(3), nn.LayerNorm(3))
    with pytest.raises(TypeError, match="layer 1"):
        nn.Sequential(nn.LayerNorm(3), 5)


def test_linear_is_a_torch_style_dense_layer():
    lin = nn.Linear(3, 2, bias=False, name="0")
    assert [p.name for p in lin.params] == ["W0"] and lin.activation is None


# --- training with BatchNorm through the Trainer ---------------------------------------------------
def test_trainer_updates_batch_norm_statistics_and_predicts_in_eval_mode():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)) * [3.0, 0.5] + [2.0, -1.0]
    T = (X[:, 0] - 2.0 > 0).astype(np.int64)
    model = nn.Sequential(nn.BatchNorm(2, momentum=0.2), nn.Dense(2, 2, name="1"))
    x, t = aj.input("x", (None, 2)), aj.input("t", (None,), "int64")
    loss = aj.cross_entropy(model(x), t)
    model.eval()
    scores = model(x)
    trainer = train.Trainer(loss, model.init(0), optim.SGD(model.params, lr=0.5),
                            predictions=scores, updates=model.updates, backend="llvm")
    assert "bn_running_mean" in trainer.params and "bn_running_mean" not in trainer.data_names
    trainer.fit({"x": X, "t": T}, epochs=40, batch_size=64, shuffle=False, progress=False)
    # with full batches, the running mean follows m ← 0.8 m + 0.2 mean(X) from 0
    np.testing.assert_allclose(trainer.params["bn_running_mean"],
                               (1 - 0.8 ** 40) * X.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(trainer.params["bn_running_var"],
                               0.8 ** 40 + (1 - 0.8 ** 40) * X.var(axis=0, ddof=1), rtol=1e-10)
    P = trainer.params
    want = np_batch_norm_eval(X, P["bn_weight"], P["bn_bias"], P["bn_running_mean"],
                              P["bn_running_var"]) @ P["W1"] + P["b1"]
    np.testing.assert_allclose(trainer.predict({"x": X}), want, rtol=1e-10)
    assert trainer.evaluate({"x": X, "t": T})["accuracy"] > 0.9


def test_trainer_refuses_updates_that_clash_with_the_optimizer():
    w = aj.param("w", (2,))
    loss = aj.sum(w * w)
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="both update w"):
        train.Trainer(loss, {"w": np.ones(2)}, opt, updates={w: w * 0.5}, backend="interp")


@pytest.mark.parametrize("module", ["norm", "container"])
def test_docstring_examples(module):
    import importlib
    mod = importlib.import_module(f"adjit.nn.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
