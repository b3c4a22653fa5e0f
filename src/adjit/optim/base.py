"""The optimizer base class: update rules as graph nodes, state in numpy arrays.

An optimizer turns gradients into ``{leaf: new value}`` for
``aj.compile(..., updates=...)``, so one native call does the forward pass, the
backward pass and the update.  Its state (momentum, moments, the step counter, the
learning rate) is declared as :func:`adjit.input` leaves named
``f"{name}_{key}_{param}"`` (e.g. ``adam_m_W1``) or ``f"{name}_{key}"`` (``adam_lr``),
and lives in the numpy arrays of ``opt.state``, which are passed to the compiled step
along with the parameters and written in place by it.

Weight decay is L2 regularization added to the gradient, ``g + weight_decay · p``
(the gradient of ``weight_decay / 2 · Σ p²``), as in PyTorch's ``weight_decay``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import frontend as F
from ..autodiff import grad as _grad
from ..ir import FLOAT_DTYPES, Node
from .schedules import as_schedule


class Optimizer:
    """Common machinery; subclasses implement :meth:`rules`.

    Parameters
    ----------
    params : list of parameter nodes (``aj.param``) to train.
    lr : a number or a schedule (:mod:`adjit.optim.schedules`).
    weight_decay : L2 coefficient added to every gradient (0 for none).
    name : prefix of the state leaves' names (use distinct names for two optimizers).
    """

    def __init__(self, params: Sequence[Node], lr, *, weight_decay: float = 0.0,
                 name: str = "opt"):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: no parameters to optimize")
        for p in self.params:
            leaf = isinstance(p, Node) and p.op in ("param", "input")
            if not leaf or p.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{type(self).__name__}: expected float aj.param nodes, got {p!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: a parameter is listed twice ({names})")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        self.name = name
        self.schedule = as_schedule(lr)
        # scalars (learning rate, step counter) in the widest parameter dtype
        self.dtype = "float64" if any(p.dtype == "float64" for p in self.params) else "float32"
        self.state: dict[str, np.ndarray] = {}
        self._leaves: dict[str, Node] = {}
        self._lr = self._leaf("lr", (), self.dtype, fill=self.schedule(0))

    # -- state -------------------------------------------------------------------------
    def _leaf(self, key: str, shape, dtype, fill: float = 0.0) -> Node:
        """The state leaf ``f"{name}_{key}"`` (declared once) and its numpy array."""
        full = f"{self.name}_{key}"
        if full not in self._leaves:
            self._leaves[full] = F.input(full, shape, dtype=dtype)
            self.state[full] = np.full(shape, fill, dtype=np.dtype(dtype))
        return self._leaves[full]

    def slot(self, key: str, p: Node) -> Node:
        """Per-parameter state shaped like ``p`` (momentum, moments), starting at zero."""
        return self._leaf(f"{key}_{p.name}", p.shape, p.dtype)

    def scalar(self, key: str, fill: float = 0.0) -> Node:
        """A 0-d state value (a step counter) in the optimizer's scalar dtype."""
        return self._leaf(key, (), self.dtype, fill)

    @property
    def lr(self) -> float:
        """The current learning rate (read from, and written into, its 0-d state array)."""
        return float(self.state[f"{self.name}_lr"])

    @lr.setter
    def lr(self, value: float):
        self.state[f"{self.name}_lr"][...] = value

    def start_epoch(self, epoch: int) -> float:
        """Set the learning rate from the schedule for ``epoch`` (0-based); returns it."""
        self.lr = self.schedule(epoch)
        return self.lr

    def reset(self) -> None:
        """Zero every moment and counter, and restart the schedule at epoch 0."""
        for arr in self.state.values():
            arr[...] = 0
        self.start_epoch(0)

    # -- update rules --------------------------------------------------------------------
    def updates(self, loss: Node | None = None, *, grads: Sequence[Node] | None = None
                ) -> dict[Node, Node]:
        """``{param or state leaf: new value}`` for ``aj.compile(..., updates=...)``.

        Give the scalar ``loss`` (its gradients are taken with :func:`adjit.grad`) or the
        gradient nodes ``grads`` (one per parameter, in order), e.g. to also return them.
        Every right-hand side reads the values from before the call.
        """
        if (loss is None) == (grads is None):
            raise TypeError(f"{type(self).__name__}.updates: give either loss or grads=")
        if grads is None:
            grads = _grad(loss, self.params)
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}.updates: {len(grads)} gradients for "
                             f"{len(self.params)} parameters")
        for p, g in zip(self.params, grads):
            if not isinstance(g, Node) or g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.updates: the gradient for {p.name!r} "
                                 f"must be a node of shape {p.shape}, got {g!r}")
        if self.weight_decay:
            grads = [g + self.weight_decay * p for p, g in zip(self.params, grads)]
        return dict(self.rules(grads))

    def lr_for(self, p: Node) -> Node:
        """The learning-rate leaf in ``p``'s dtype."""
        return F.cast(self._lr, p.dtype)

    def rules(self, grads: list[Node]) -> list[tuple[Node, Node]]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self):
        names = ", ".join(p.name for p in self.params)
        return f"{type(self).__name__}([{names}], lr={self.lr:g}, state={sorted(self.state)})"
