"""``nn.Sequential``: layers (and plain functions of a node) applied in order.

>>> import adjit as aj
>>> from adjit import nn
>>> model = nn.Sequential(nn.Dense(4, 8, name="1"), aj.tanh, nn.LayerNorm(8),
...                       nn.Dense(8, 3, name="2"))
>>> y = model(aj.input("x", (None, 4)))
>>> [p.name for p in model.params], y.shape
(['W1', 'b1', 'ln_weight', 'ln_bias', 'W2', 'b2'], (None, 3))
"""
from __future__ import annotations

import numpy as np

from ..ir import Node
from .init import rng_from


class Sequential:
    """``Sequential(l1, l2, ...)(x) = ... l2(l1(x))``.

    A layer is anything callable on a node: adjit layers (their ``.params``, ``.state``,
    ``.updates`` and ``.init`` are collected) and plain functions such as ``aj.relu``.
    Two layers declaring parameters of the same name are refused (give them distinct
    ``name=``).  ``.train()`` / ``.eval()`` switch every layer that has modes (BatchNorm,
    Dropout) for the calls that follow.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: layer {i} ({layer!r}) is not callable")
        self.layers = list(layers)
        names = [n.name for n in self.params + self.state]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Sequential: two layers declare {', '.join(map(repr, dup))}; "
                             "give the layers distinct name= arguments")

    def __call__(self, x: Node):
        for layer in self.layers:
            x = layer(x)
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self.layers[i])
        return self.layers[i]

    def _collect(self, attr: str) -> list[Node]:
        out: list[Node] = []
        for layer in self.layers:
            for node in getattr(layer, attr, None) or []:
                if all(node is not seen for seen in out):
                    out.append(node)
        return out

    @property
    def params(self) -> list[Node]:
        """Every trained parameter, layer by layer (each once)."""
        return self._collect("params")

    @property
    def state(self) -> list[Node]:
        """Every state leaf (BatchNorm's running statistics), layer by layer."""
        return self._collect("state")

    @property
    def updates(self) -> dict[Node, Node]:
        """The state updates of every layer's latest training-mode call."""
        out: dict[Node, Node] = {}
        for layer in self.layers:
            out.update(getattr(layer, "updates", None) or {})
        return out

    def train(self, mode: bool = True) -> "Sequential":
        for layer in self.layers:
            if hasattr(layer, "train") and callable(layer.train):
                layer.train(mode)
        return self

    def eval(self) -> "Sequential":
        return self.train(False)

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """Initial values of every parameter and state leaf, layer by layer from one
        Generator (so ``seed`` fixes the whole model)."""
        rng = rng_from(seed)
        values: dict[str, np.ndarray] = {}
        for layer in self.layers:
            if hasattr(layer, "init") and callable(layer.init):
                values.update(layer.init(rng))
        return values

    def __repr__(self):
        inner = ", ".join(type(layer).__name__ if hasattr(layer, "params")
                          else getattr(layer, "__name__", repr(layer)) for layer in self.layers)
        return f"Sequential({inner})"
