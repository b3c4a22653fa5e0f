"""The training loop: mini-batches, fit, early stopping, checkpoints, progress, plots, data."""
import sys

import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim, train
from adjit.train import data as digits_data
from adjit.train import progress


def regression(seed=0, n=40):
    x, t = aj.input("x", (None, 2)), aj.input("t", (None, 1))
    mlp = nn.MLP([2, 6, 1], activation="tanh")
    y = mlp(x)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return mlp, y, aj.mse(y, t), {"x": X, "t": np.sin(X[:, :1]) * X[:, 1:]}


def test_minibatches_cover_every_row_once_and_the_last_is_smaller():
    data = {"x": np.arange(22.0).reshape(11, 2), "i": np.arange(11)}
    batches = list(train.minibatches(data, 4, rng=0))
    assert [len(b["i"]) for b in batches] == [4, 4, 3]
    seen = np.concatenate([b["i"] for b in batches])
    assert sorted(seen) == list(range(11)) and list(seen) != list(range(11))
    for b in batches:                                  # rows stay together
        np.testing.assert_array_equal(b["x"][:, 0], 2.0 * b["i"])
    again = np.concatenate([b["i"] for b in train.minibatches(data, 4, rng=0)])
    np.testing.assert_array_equal(seen, again)          # seeded
    assert [len(b["i"]) for b in train.minibatches(data, 4, drop_last=True)] == [4, 4]
    with pytest.raises(ValueError, match="'i' has 3 rows but 'x' has 11"):
        list(train.minibatches({"x": data["x"], "i": np.arange(3)}, 2))
    with pytest.raises(ValueError, match="batch_size"):
        list(train.minibatches(data, 0))


@pytest.mark.parametrize("backend,opts", [("interp", {}), ("llvm", {"opt_level": 1})])
def test_fit_steps_match_manual_steps_with_a_smaller_last_batch(backend, opts):
    mlp, y, loss, data = regression(n=10)
    trainer = train.Trainer(loss, mlp.init(0), optim.SGD(mlp.params, lr=0.1), backend=backend,
                            **opts)
    manual = train.Trainer(loss, mlp.init(0), optim.SGD(mlp.params, lr=0.1, name="sgd2"),
                           backend="interp")
    hist = trainer.fit(data, epochs=2, batch_size=4, seed=5, progress=False)
    rng, losses = np.random.default_rng(5), []
    for _ in range(2):
        sizes, total = [], 0.0
        for batch in train.minibatches(data, 4, rng=rng):
            sizes.append(len(batch["x"]))
            total += manual.step(**batch) * len(batch["x"])
        losses.append(total / 10)
        assert sizes == [4, 4, 2]
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-12)
    for k in trainer.params:
        np.testing.assert_allclose(trainer.params[k], manual.params[k], rtol=1e-11, atol=1e-14)


def test_fit_lowers_the_loss_and_reports_validation():
    mlp, y, loss, data = regression()
    _, _, _, val = regression(seed=1)
    trainer = train.Trainer(loss, mlp.init(0), optim.Adam(mlp.params, lr=0.05), backend="interp")
    hist = trainer.fit(data, epochs=20, batch_size=8, val=val, progress=False)
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    assert hist.val_loss[-1] < hist.val_loss[0] and hist.val_accuracy == [None] * 20
    assert trainer.evaluate(val)["loss"] == pytest.approx(hist.val_loss[-1], rel=1e-12)
    chunked = trainer.evaluate(val, batch_size=7)["loss"]     # weighted by chunk size
    assert chunked == pytest.approx(hist.val_loss[-1], rel=1e-12)


def test_early_stopping_restores_the_best_parameters():
    mlp, y, loss, data = regression()
    val = {"x": data["x"], "t": -data["t"]}          # fitting the data makes this worse
    make = lambda name: train.Trainer(loss, mlp.init(0),  # noqa: E731
                                      optim.SGD(mlp.params, lr=0.2, name=name), backend="interp")
    trainer, one_epoch = make("a"), make("b")
    hist = trainer.fit(data, epochs=50, batch_size=8, val=val, patience=3, progress=False)
    assert hist.stopped_early and len(hist.loss) == 4 and hist.best_epoch == 0
    assert all(v > hist.val_loss[0] for v in hist.val_loss[1:])
    one_epoch.fit(data, epochs=1, batch_size=8, progress=False)      # same seed, same batches
    for k in trainer.params:
        np.testing.assert_array_equal(trainer.params[k], one_epoch.params[k])


def test_accuracy_by_hand():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert train.accuracy(scores, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert train.accuracy(scores, np.eye(2)[[1, 0, 1]]) == 1.0
    assert train.accuracy(np.array([[0.2], [0.7]]), np.array([[0.0], [0.0]])) == 0.5


def test_accuracy_of_sequence_predictions():
    # (n, T, k) scores against (n, T) integer labels or (n, T, k) one-hot labels: the
    # fraction of correct positions (it raised on the reshape before)
    scores = np.array([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]],
                       [[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    assert train.accuracy(scores, labels) == pytest.approx(4 / 6)      # the tie picks 0
    assert train.accuracy(scores, np.eye(2)[labels]) == pytest.approx(4 / 6)
    assert train.accuracy(np.array([[[0.2], [0.7]], [[0.9], [0.1]]]),
                          np.array([[0, 1], [1, 1]])) == 0.75
    with pytest.raises(ValueError, match="labels"):
        train.accuracy(scores, labels[:, :2])
    with pytest.raises(ValueError, match="differ"):
        train.accuracy(np.zeros((3, 1)), np.zeros(2))


def test_classifier_accuracy_uses_the_label_input():
    x, t = aj.input("x", (None, 2)), aj.input("labels", (None,), dtype="int64")
    mlp = nn.MLP([2, 8, 2], activation="relu")
    logits = mlp(x)
    X = np.random.default_rng(0).normal(size=(64, 2))
    data = {"x": X, "labels": (X[:, 0] * X[:, 1] > 0).astype(np.int64)}
    trainer = train.Trainer(aj.cross_entropy(logits, t), mlp.init(1),
                            optim.Adam(mlp.params, lr=0.05), predictions=logits, backend="interp")
    assert trainer.targets == "labels"
    hist = trainer.fit(data, epochs=30, batch_size=16, val=data, progress=False)
    pred = trainer.predict(data)
    assert pred.shape == (64, 2)
    assert hist.val_accuracy[-1] == train.accuracy(pred, data["labels"]) > 0.8


def test_sequence_model_accuracy_per_position():
    # logits (B, T, k) and labels (B, T): evaluate and fit score every position
    ids, labels = aj.input("ids", (None, 3), dtype="int64"), aj.input("y", (None, 3), dtype="int64")
    emb = nn.Embedding(5, 4)
    logits = emb(ids)                                      # (B, 3, 4): a lookup table
    rng = np.random.default_rng(0)
    data = {"ids": rng.integers(0, 5, (40, 3)).astype(np.int64)}
    data["y"] = data["ids"] % 4
    trainer = train.Trainer(aj.cross_entropy(logits, labels), emb.init(0),
                            optim.Adam(emb.params, lr=0.1), predictions=logits, backend="interp")
    assert trainer.targets == "y"
    hist = trainer.fit(data, epochs=20, batch_size=8, val=data, progress=False)
    pred = trainer.predict(data)
    assert pred.shape == (40, 3, 4)
    assert hist.val_accuracy[-1] == trainer.evaluate(data)["accuracy"] \
        == train.accuracy(pred, data["y"]) == 1.0


def test_save_and_load_round_trip(tmp_path):
    mlp, y, loss, data = regression()
    a = train.Trainer(loss, mlp.init(0), optim.Adam(mlp.params, lr=0.01), backend="interp")
    a.fit(data, epochs=2, batch_size=8, progress=False)
    path = a.save(tmp_path / "ckpt")
    assert path.endswith("ckpt.npz")
    b = train.Trainer(loss, mlp.init(9), optim.Adam(mlp.params, lr=0.01, name="adam"),
                      backend="interp")
    b.load(path)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    for k in a.optimizer.state:
        np.testing.assert_array_equal(a.optimizer.state[k], b.optimizer.state[k])
    batch = {k: v[:8] for k, v in data.items()}
    assert a.step(**batch) == b.step(**batch)              # training resumes identically
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    params, state = train.load_npz(path)
    assert sorted(params) == ["W1", "W2", "b1", "b2"] and "adam_t" in state


def test_loading_a_mismatched_checkpoint_names_the_problem(tmp_path):
    mlp, y, loss, data = regression()
    trainer = train.Trainer(loss, mlp.init(0), optim.SGD(mlp.params, lr=0.1), backend="interp")
    params = dict(trainer.params)
    train.save_npz(tmp_path / "missing.npz", {k: v for k, v in params.items() if k != "b2"})
    with pytest.raises(KeyError, match="missing b2"):
        trainer.load(tmp_path / "missing.npz")
    train.save_npz(tmp_path / "shape.npz", {**params, "W1": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"'W1' has shape \(3, 3\), the model expects \(2, 6\)"):
        trainer.load(tmp_path / "shape.npz")


def test_trainer_argument_errors():
    mlp, y, loss, data = regression()
    opt = optim.SGD(mlp.params, lr=0.1)
    with pytest.raises(KeyError, match="missing b2"):
        train.Trainer(loss, {k: v for k, v in mlp.init(0).items() if k != "b2"}, opt)
    with pytest.raises(KeyError, match="unknown W9"):
        train.Trainer(loss, {**mlp.init(0), "W9": np.zeros(2)}, opt)
    with pytest.raises(ValueError, match="does not use the optimized parameters w_other"):
        train.Trainer(loss, mlp.init(0), optim.SGD([aj.param("w_other", ())], lr=0.1))
    trainer = train.Trainer(loss, mlp.init(0), opt, backend="interp")
    with pytest.raises(KeyError, match=r"data has \['x'\], the loss takes \['t', 'x'\]"):
        trainer.fit({"x": data["x"]}, epochs=1, progress=False)
    bad = {"x": np.full((4, 2), np.inf), "t": np.zeros((4, 1))}
    with pytest.raises(FloatingPointError, match="training loss became nan in epoch 1"):
        trainer.fit(bad, epochs=1, progress=False)


def test_progress_lines_and_the_fallback_without_tqdm(capsys, monkeypatch):
    mlp, y, loss, data = regression()
    trainer = train.Trainer(loss, mlp.init(0), optim.SGD(mlp.params, lr=0.1), backend="interp")
    trainer.fit(data, epochs=3, batch_size=8, progress="lines")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  loss ") and "lr 0.1" in lines[0]
    trainer.fit(data, epochs=2, batch_size=8, progress=False)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(progress, "_tqdm", None)             # as if tqdm were not installed
    assert progress.resolve_mode(None) == "lines"
    with pytest.raises(ImportError, match="needs tqdm"):
        progress.resolve_mode("bar")
    monkeypatch.setattr(progress, "_tqdm", progress._NOT_LOADED)
    assert progress.resolve_mode(None) == "bar"              # tqdm is installed in the test env
    trainer.fit(data, epochs=2, batch_size=8)
    assert "2/2" in capsys.readouterr().err


def test_loss_curve_plot(tmp_path, monkeypatch):
    mlp, y, loss, data = regression()
    trainer = train.Trainer(loss, mlp.init(0), optim.SGD(mlp.params, lr=0.1), backend="interp")
    hist = trainer.fit(data, epochs=3, batch_size=8, val=data, progress=False)
    path = hist.plot(tmp_path / "curve.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "adjit\[plot\]"'):
        hist.plot(tmp_path / "again.png")


def test_digits_loader_split_and_missing_sklearn(monkeypatch):
    d = digits_data.load_digits(test_fraction=0.25, seed=3)
    assert d.x_train.shape[1] == 64 and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.dtype == np.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    train_counts, test_counts = np.bincount(d.y_train), np.bincount(d.y_test)
    np.testing.assert_array_equal(test_counts, np.round((train_counts + test_counts) * 0.25))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "adjit\[demo\]"'):
        digits_data.load_digits()
