"""Trainer.predict needs only the inputs its predictions read (no labels)."""
import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim, train


def _trainer(backend="interp"):
    x, t = aj.input("x", (None, 3)), aj.input("t", (None,), "int64")
    mlp = nn.MLP([3, 5, 2], activation="tanh")
    logits = mlp(x)
    return train.Trainer(aj.cross_entropy(logits, t), mlp.init(0), optim.SGD(mlp.params, lr=0.1),
                         predictions=logits, backend=backend)


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_predict_takes_only_the_model_inputs(backend):
    trainer = _trainer(backend)
    X = np.random.default_rng(0).standard_normal((7, 3))
    P = trainer.params
    want = np.tanh(X @ P["W1"] + P["b1"]) @ P["W2"] + P["b2"]
    np.testing.assert_allclose(trainer.predict({"x": X}), want, rtol=1e-12)
    np.testing.assert_allclose(trainer.predict({"x": X}, batch_size=3), want, rtol=1e-12)
    # labels, when given, are ignored (as before)
    np.testing.assert_allclose(trainer.predict({"x": X, "t": np.zeros(7, np.int64)}), want,
                               rtol=1e-12)
    # a batch of one
    np.testing.assert_allclose(trainer.predict({"x": X[:1]}), want[:1], rtol=1e-12)


def test_predict_names_missing_inputs_and_follows_training():
    trainer = _trainer()
    with pytest.raises(KeyError, match="lacks x"):
        trainer.predict({"t": np.zeros(3, np.int64)})
    X = np.random.default_rng(1).standard_normal((8, 3))
    before = trainer.predict({"x": X})
    trainer.fit({"x": X, "t": (X[:, 0] > 0).astype(np.int64)}, epochs=2, progress=False)
    after = trainer.predict({"x": X})     # the same compiled function reads the new params
    P = trainer.params
    np.testing.assert_allclose(after, np.tanh(X @ P["W1"] + P["b1"]) @ P["W2"] + P["b2"],
                               rtol=1e-12)
    assert not np.allclose(before, after)


def test_predict_without_predictions_is_refused():
    w = aj.param("w", (2,))
    x = aj.input("x", (None, 2))
    trainer = train.Trainer(aj.mean(x @ w), {"w": np.ones(2)}, optim.SGD([w], lr=0.1),
                            backend="interp")
    with pytest.raises(ValueError, match="without predictions="):
        trainer.predict({"x": np.ones((2, 2))})
