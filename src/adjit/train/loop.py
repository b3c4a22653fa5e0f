"""The training loop: one compiled call per mini-batch, epochs, validation, early stopping.

:class:`Trainer` compiles ``aj.compile([loss], updates=optimizer.updates(loss))``: one
native call does the forward pass, the backward pass and the optimizer's update, which
the call writes into the parameter and state arrays in place.  The Trainer owns the
parameter arrays (``trainer.params``); the optimizer owns its state (``opt.state``).
Both are plain numpy arrays, readable and writable between calls (write in place:
``trainer.params["W1"][...] = ...``).

With ``backend="ptx"`` the parameters and optimizer state stay on the GPU while training
(see ``docs/ptx.md``, "Device-resident state"): a step uploads the batch and downloads the
loss.  ``trainer.params``, :meth:`Trainer.state_to_host`, ``fit`` (at its end),
``evaluate``, ``predict``, ``save`` and ``load`` bring the state back to the host arrays
first; the next step uploads it again, so changes made to the arrays in between are used.
Between steps, ``optimizer.state`` arrays are current only after one of these.

>>> import adjit as aj, numpy as np
>>> from adjit import nn, optim, train
>>> x, t = aj.input("x", (None, 2)), aj.input("t", (None, 1))
>>> mlp = nn.MLP([2, 8, 1], activation="tanh")
>>> loss = aj.mse(mlp(x), t)
>>> trainer = train.Trainer(loss, mlp.init(seed=0), optim.Adam(mlp.params, lr=0.05),
...                         backend="interp")
>>> X = np.random.default_rng(0).normal(size=(64, 2)); T = X[:, :1] * X[:, 1:]
>>> h = trainer.fit({"x": X, "t": T}, epochs=30, batch_size=16, progress=False)
>>> h.loss[-1] < h.loss[0] / 4
True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..compiled import compile as _compile
from ..ir import Graph, Node
from ..random import is_key
from ..updates import check_updates
from .batches import check_data, minibatches
from .checkpoint import copy_into, load_npz, save_npz
from .progress import Progress, resolve_mode


@dataclass
class History:
    """Per-epoch records of :meth:`Trainer.fit` (``None`` where there is no validation set)."""

    epoch: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def plot(self, path) -> str:
        """Save the loss curve to ``path`` (needs matplotlib, ``adjit[plot]``)."""
        from .plot import plot_history
        return plot_history(self, path)


def accuracy(predictions: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of correct predictions (over every position of sequence predictions).

    Scores with a class axis last (``(n, k)`` or ``(n, ..., k)``, k > 1) are compared by
    argmax over that axis with integer labels of one dimension fewer (``(n, ...)``) or
    with one-hot labels of the same shape; single outputs (``(n,)``, ``(n, 1)``,
    ``(n, ..., 1)``) are thresholded against targets of as many elements.
    """
    p, t = np.asarray(predictions), np.asarray(targets)
    if p.ndim >= 2 and p.shape[-1] > 1:
        truth = t.argmax(axis=-1) if t.shape == p.shape else t
        if truth.shape != p.shape[:-1]:
            raise ValueError(f"accuracy: scores {p.shape} need integer labels "
                             f"{p.shape[:-1]} or one-hot labels {p.shape}, got {t.shape}")
        return float(np.mean(p.argmax(axis=-1) == truth))
    if p.size != t.size or len(p) != len(t):
        raise ValueError(f"accuracy: predictions {p.shape} and targets {t.shape} differ in size")
    guess = p.reshape(len(p), -1) > threshold
    truth = t.reshape(len(t), -1) > threshold
    return float(np.mean(guess == truth))


class Trainer:
    """Trains ``loss`` with ``optimizer``, starting from the arrays in ``params``.

    Parameters
    ----------
    loss : scalar node (a mean over the batch).
    params : ``{name: initial array}`` for every parameter the loss uses (copied, and
        converted to the declared dtype); e.g. ``mlp.init(seed)``.
    optimizer : an :mod:`adjit.optim` optimizer over (some of) those parameters;
        the others stay fixed.
    predictions : optional node (scores or probabilities) used for accuracy and
        :meth:`predict` (for a model with BatchNorm, build it in evaluation mode).
    targets : the input accuracy compares against; inferred when the loss has exactly
        one data input that ``predictions`` does not use.
    updates : extra state updates ``{leaf: new value}`` applied by every step beside the
        optimizer's, e.g. ``model.updates`` (BatchNorm's running statistics); their
        leaves' starting arrays go in ``params`` (``model.init(seed)`` has them) and are
        written in place, like the parameters.
    backend, compile options : passed to :func:`adjit.compile`.
    key_seed : seed of the random keys the Trainer feeds (see below).

    Random keys: every *key input* of the model -- an input of dtype uint32 and shape
    ``(2,)``, as :func:`adjit.random.key_input` declares (``nn.Dropout`` uses one named
    ``"key"``) -- is fed by the Trainer, not by the data: step ``n`` (counted from 1 over
    the Trainer's life, ``trainer.steps`` so far) gets
    ``np.random.SeedSequence([key_seed, k, n]).generate_state(2, np.uint32)`` for the
    ``k``-th key input in name order, so every step draws fresh random numbers (dropout
    masks) and a run is reproducible from ``key_seed``.  ``evaluate`` and ``predict`` use
    the fixed key of ``n = 0``.  ``step(**batch)`` uses a key the caller passes instead.
    """

    def __init__(self, loss: Node, params: dict, optimizer, *, predictions: Node | None = None,
                 targets: str | None = None, updates=None, backend: str = "llvm",
                 key_seed: int = 0,
                 **compile_options):
        if not isinstance(loss, Node) or loss.shape != ():
            raise TypeError(f"Trainer: loss must be a scalar node, got {loss!r}")
        self.loss, self.optimizer, self.predictions = loss, optimizer, predictions
        if backend == "ptx":      # the parameters and optimizer state stay on the device
            compile_options = {"resident": True, **compile_options}
        self.backend, self._options = backend, compile_options
        extra = check_updates(updates)
        outputs = [loss] + ([predictions] if predictions is not None else [])
        outputs += [n for pair in extra for n in pair]
        leaves = {n.name: n for n in Graph(outputs).inputs}
        declared = {p.name: p for p in optimizer.params}
        missing = sorted(k for k in declared if k not in leaves)
        if missing:
            raise ValueError(f"Trainer: the loss does not use the optimized parameters "
                             f"{', '.join(missing)}")
        declared.update({k: n for k, n in leaves.items() if k in params})
        missing = sorted(k for k in declared if k not in params)
        unknown = sorted(k for k in params if k not in leaves)
        if missing or unknown:
            raise KeyError("Trainer: params " + "; ".join(
                (["missing " + ", ".join(missing)] if missing else []) +
                (["unknown " + ", ".join(unknown)] if unknown else [])))
        self._params: dict[str, np.ndarray] = {
            k: np.array(params[k], dtype=declared[k].dtype, order="C", copy=True)
            for k in sorted(declared)}
        for k, arr in self._params.items():
            if arr.shape != declared[k].shape:
                raise ValueError(f"Trainer: param {k!r} has shape {arr.shape}, "
                                 f"declared {declared[k].shape}")
        self.key_names = sorted(k for k, n in leaves.items() if is_key(n)
                                and k not in self._params and k not in optimizer.state)
        self.key_seed, self.steps = int(key_seed), 0
        self.data_names = sorted(k for k, n in leaves.items()
                                 if k not in self._params and k not in optimizer.state
                                 and k not in self.key_names)
        self.targets = targets if targets is not None else self._infer_targets(leaves)
        step_updates = optimizer.updates(loss)
        clash = sorted(k.name for k, _ in extra if k in step_updates)
        if clash:
            raise ValueError(f"Trainer: updates= and the optimizer both update "
                             f"{', '.join(clash)}")
        step_updates.update(dict(extra))
        self._step = _compile([loss], backend=backend, updates=step_updates, **compile_options)
        self._eval = self._predict = None
        self._fixed = {**self._params, **optimizer.state}
        # parameters and optimizer state are checked once and fixed: each step passes
        # only the batch (the arrays are updated in place, never replaced)
        self._bound = self._step.bind(**{k: v for k, v in self._fixed.items()
                                         if k in self._step.input_names})

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameter arrays ``{name: array}``, current (brought back from the device
        first where the backend keeps them there; see :meth:`state_to_host`)."""
        self.state_to_host()
        return self._params

    def state_to_host(self) -> dict[str, np.ndarray]:
        """Bring the parameters and optimizer state back into their host arrays (where the
        backend keeps them on its device, as ptx does; elsewhere nothing to do) and return
        them ``{name: array}``.  The arrays are writeable afterwards; the next step uploads
        them again."""
        return self._bound.state_to_host()

    def _infer_targets(self, leaves) -> str | None:
        if self.predictions is None:
            return None
        used = {n.name for n in Graph([self.predictions]).inputs}
        left = [k for k in self.data_names if k not in used]
        return left[0] if len(left) == 1 else None

    # -- one step --------------------------------------------------------------------------
    @property
    def step_function(self):
        """The compiled step (``adjit.Compiled``): takes data, params and optimizer state."""
        return self._step

    def step(self, **batch) -> float:
        """One update on one mini-batch (arrays by input name); returns the batch loss
        (at the parameters from before the update).  Key inputs not in ``batch`` get the
        next step's keys."""
        batch = {**self.next_keys(), **batch}
        (loss,) = self._bound(**batch)
        return float(loss)

    def keys(self, n: int) -> dict[str, np.ndarray]:
        """The keys fed at step ``n`` (0: evaluation): ``{key input name: (2,) uint32}``."""
        return {name: np.random.SeedSequence([self.key_seed, k, n]).generate_state(2, np.uint32)
                for k, name in enumerate(self.key_names)}

    def next_keys(self) -> dict[str, np.ndarray]:
        """The keys of the next step (and count the step)."""
        self.steps += 1
        return self.keys(self.steps)

    # -- evaluation ------------------------------------------------------------------------
    def _evaluator(self):
        if self._eval is None:
            outs = [self.loss] + ([self.predictions] if self.predictions is not None else [])
            self._eval = _compile(outs, backend=self.backend, **self._options)
        return self._eval

    def predict(self, data: dict, batch_size: int | None = None) -> np.ndarray:
        """The ``predictions`` node's values on ``data``, batch by batch.

        ``data`` needs only the inputs ``predictions`` reads (no labels); other arrays
        in it are ignored.
        """
        if self.predictions is None:
            raise ValueError("Trainer.predict: the Trainer was made without predictions=")
        if self._predict is None:
            self._predict = _compile([self.predictions], backend=self.backend, **self._options)
        f = self._predict
        needed = [k for k in f.input_names if k not in self.params]
        missing = [k for k in needed if k not in data]
        if missing:
            raise KeyError(f"Trainer.predict: data lacks {', '.join(missing)} (the predictions "
                           f"read {', '.join(needed)})")
        inputs = {k: data[k] for k in needed}
        params = {k: self.params[k] for k in f.input_names if k in self.params}
        n = check_data(inputs, "prediction data") if inputs else None
        batched = self.predictions.ndim > 0 and self.predictions.shape[0] is None
        if n is None or not batched:      # no data, or no batch axis to split: one call
            (out,) = f(**inputs, **params)
            return out
        return np.concatenate([f(**batch, **params)[0]
                               for batch in minibatches(inputs, batch_size or n, shuffle=False)])

    def evaluate(self, data: dict, batch_size: int | None = None) -> dict:
        """``{"loss": mean loss, "accuracy": fraction or None}`` on ``data``.

        ``batch_size=None`` evaluates in one call (the batch size is bound at call time).
        """
        loss, acc, _ = self._evaluate(data, batch_size)
        return {"loss": loss, "accuracy": acc}

    def _evaluate(self, data, batch_size):
        n = check_data(data, "evaluation data")
        self.state_to_host()
        f = self._evaluator()
        params = {k: self.params[k] for k in f.input_names if k in self.params}
        keys = {k: v for k, v in self.keys(0).items() if k in f.input_names}
        total, preds = 0.0, []
        for batch in minibatches(data, batch_size or n, shuffle=False):
            m = len(next(iter(batch.values())))
            out = f(**{k: batch[k] for k in batch if k in f.input_names}, **params, **keys)
            total += float(out[0]) * m
            if self.predictions is not None:
                preds.append(out[1])
        pred = np.concatenate(preds) if preds else None
        acc = None
        if pred is not None and self.targets is not None and self.targets in data:
            acc = accuracy(pred, data[self.targets])
        return total / n, acc, pred

    # -- the loop --------------------------------------------------------------------------
    def fit(self, data: dict, *, epochs: int = 10, batch_size: int = 32, val: dict | None = None,
            shuffle: bool = True, seed=0, patience: int | None = None, min_delta: float = 0.0,
            restore_best: bool = True, progress=None) -> History:
        """Train for ``epochs`` passes over ``data`` (``{input name: array}``).

        Each epoch sets the learning rate from the optimizer's schedule, shuffles (seeded
        by ``seed``), runs one compiled step per mini-batch (the last one smaller), then
        evaluates on ``val``.  With ``patience``, training stops after that many epochs
        without an improvement of the monitored loss (validation loss, else training
        loss) by more than ``min_delta``, and the best parameters are restored.
        ``progress``: None/True (tqdm bar if installed, else lines), "lines", False.
        """
        n = check_data(data)
        names = set(self.data_names)
        if set(data) != names:
            raise KeyError(f"fit: data has {sorted(data)}, the loss takes {sorted(names)}")
        if val is not None:
            check_data(val, "val")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        rng = np.random.default_rng(seed)
        hist = History()
        bar = Progress(epochs, resolve_mode(progress))
        best, best_params, wait = math.inf, None, 0
        try:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                lr = self.optimizer.start_epoch(epoch)
                total = 0.0
                for batch in minibatches(data, batch_size, shuffle=shuffle, rng=rng):
                    (loss,) = self._bound(**batch, **self.next_keys())
                    total += float(loss) * len(batch[self.data_names[0]])
                seconds = time.perf_counter() - t0
                train_loss = total / n
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"fit: the training loss became {train_loss} in "
                                             f"epoch {epoch + 1} (lr {lr:g}); try a smaller "
                                             "learning rate")
                ev = self.evaluate(val) if val is not None else {"loss": None, "accuracy": None}
                for key, value in (("epoch", epoch), ("loss", train_loss), ("val_loss", ev["loss"]),
                                   ("val_accuracy", ev["accuracy"]), ("lr", lr),
                                   ("seconds", seconds)):
                    getattr(hist, key).append(value)
                bar.epoch(epoch, {"loss": train_loss, "val_loss": ev["loss"],
                                  "val_accuracy": ev["accuracy"], "lr": lr}, seconds)
                if patience is None:
                    continue
                monitored = train_loss if ev["loss"] is None else ev["loss"]
                if monitored < best - min_delta:
                    best, wait, hist.best_epoch = monitored, 0, epoch
                    best_params = {k: v.copy() for k, v in self.params.items()}
                else:
                    wait += 1
                    if wait >= patience:
                        hist.stopped_early = True
                        bar.note(f"early stop after epoch {epoch + 1}: no improvement for "
                                 f"{patience} epochs (best epoch {hist.best_epoch + 1})")
                        break
        finally:
            bar.close()
            self.state_to_host()
        if best_params is not None and restore_best:
            copy_into(self.params, best_params, "params", "restore best")
        return hist

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path, optimizer: bool = True) -> str:
        """Write the parameters (and the optimizer state) to an ``.npz`` file; returns its path."""
        params = self.params                      # (brings the state to the host)
        return save_npz(path, params, self.optimizer.state if optimizer else None)

    def load(self, path, optimizer: bool = True) -> None:
        """Read parameters (and optimizer state, if saved) from ``path``, in place."""
        params, state = load_npz(path)
        copy_into(self.params, params, "params", path)
        self.state_to_host()
        if optimizer and state:
            copy_into(self.optimizer.state, state, "optimizer states", path)
