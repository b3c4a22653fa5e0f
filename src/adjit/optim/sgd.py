"""Stochastic gradient descent, with optional (Nesterov) momentum."""
from __future__ import annotations

from typing import Sequence

from ..ir import Node
from .base import Optimizer


class SGD(Optimizer):
    """Plain SGD, ``p ← p − lr·g``, or with momentum μ (PyTorch's convention):

    ``v ← μ·v + g``, then ``p ← p − lr·v`` (or ``p ← p − lr·(g + μ·v)`` with
    ``nesterov=True``).  ``g`` includes ``weight_decay·p``.  The velocity ``v`` starts at
    zero and is stored as ``f"{name}_v_{param}"``.

    >>> import adjit as aj
    >>> w = aj.param("w", (2,))
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> f = aj.compile(aj.sum(w * w), backend="interp", updates=opt.updates(aj.sum(w * w)))
    >>> import numpy as np; W = np.array([1.0, -2.0])
    >>> _ = f(w=W, **opt.state); W      # v = 2w, w − 0.1·v
    array([ 0.8, -1.6])
    """

    def __init__(self, params: Sequence[Node], lr=0.01, momentum: float = 0.0, *,
                 nesterov: bool = False, weight_decay: float = 0.0, name: str = "sgd"):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        super().__init__(params, lr, weight_decay=weight_decay, name=name)
        if self.momentum:
            for p in self.params:
                self.slot("v", p)

    def rules(self, grads):
        out = []
        for p, g in zip(self.params, grads):
            lr = self.lr_for(p)
            if not self.momentum:
                out.append((p, p - lr * g))
                continue
            v = self.slot("v", p)
            v_new = self.momentum * v + g
            step = g + self.momentum * v_new if self.nesterov else v_new
            out += [(p, p - lr * step), (v, v_new)]
        return out
