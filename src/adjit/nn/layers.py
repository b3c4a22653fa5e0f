"""Dense layers and an MLP builder: plain graph nodes, nothing hidden.

A layer declares its parameters with :func:`adjit.param` and, when called on a node,
returns the ordinary expression ``act(x @ W + b)``.  The parameters are listed in
``.params``; ``aj.grad``, ``aj.check_grads``, printing and compiling all see the same
graph the user would have written by hand.  Initial values are numpy arrays from
``.init(seed)``, keyed by parameter name (what a compiled function takes).

>>> import adjit as aj
>>> from adjit import nn
>>> x = aj.input("x", (None, 4))
>>> mlp = nn.MLP([4, 8, 3], activation="tanh")
>>> y = mlp(x)
>>> [p.name for p in mlp.params], y.shape
(['W1', 'b1', 'W2', 'b2'], (None, 3))
>>> sorted(mlp.init(seed=0))
['W1', 'W2', 'b1', 'b2']
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np

from .. import frontend as F
from ..ir import Node
from .init import get_initializer, rng_from

ACTIVATIONS: dict[str, Callable | None] = {
    "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softplus": F.softplus,
    "linear": None, "identity": None,
}


def get_activation(activation) -> Callable | None:
    """An activation by name (see ``ACTIVATIONS``), ``None`` for linear, or a function."""
    if activation is None or callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}, None, or a function of a node")
    return ACTIVATIONS[activation]


def default_init(activation) -> str:
    """He for ReLU units, Glorot for everything else."""
    return "he_normal" if activation in ("relu", F.relu) else "glorot_uniform"


class Dense:
    """``act(x @ W + b)`` with ``W: (n_in, n_out)`` and ``b: (n_out,)``.

    Parameters are named ``f"W{name}"`` and ``f"b{name}"`` (``W1``, ``b1`` for
    ``name="1"``).  ``init`` is an initializer name or function for ``W``; the default
    is He for ReLU and Glorot otherwise.  Biases start at zero.
    """

    def __init__(self, n_in: int, n_out: int, activation=None, *, name: str = "",
                 dtype: str = "float64", init=None, bias: bool = True):
        for what, n in (("n_in", n_in), ("n_out", n_out)):
            if not isinstance(n, (int, np.integer)) or n <= 0:
                raise ValueError(f"Dense {name!r}: {what} must be a positive int, got {n!r}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.activation = get_activation(activation)
        self._init = get_initializer(init if init is not None else default_init(activation))
        self.W = F.param(f"W{name}", (self.n_in, self.n_out), dtype=dtype)
        self.b = F.param(f"b{name}", (self.n_out,), dtype=dtype) if bias else None

    @property
    def params(self) -> list[Node]:
        """The parameter nodes, ``[W, b]`` (or ``[W]`` without bias)."""
        return [self.W] if self.b is None else [self.W, self.b]

    def __call__(self, x: Node) -> Node:
        if x.ndim < 1 or x.shape[-1] != self.n_in:
            raise ValueError(f"Dense {self.W.name}: expected inputs with last dimension "
                             f"{self.n_in}, got {x!r}")
        z = x @ self.W
        if self.b is not None:
            z = z + self.b
        return z if self.activation is None else self.activation(z)

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """Initial values ``{name: array}``; ``seed`` is an int or a numpy Generator."""
        rng = rng_from(seed)
        out = {self.W.name: self._init(rng, self.W.shape, self.W.dtype)}
        if self.b is not None:
            out[self.b.name] = np.zeros(self.b.shape, dtype=self.b.dtype)
        return out


class MLP:
    """A stack of :class:`Dense` layers: ``sizes = [n_in, h1, ..., n_out]``.

    Hidden layers use ``activation``; the last layer uses ``output_activation``
    (default linear: logits for :func:`adjit.cross_entropy`, values for
    :func:`adjit.mse`).  Parameters are ``W1, b1, W2, b2, ...`` (with ``prefix``
    prepended, so two MLPs in one graph get distinct names).
    """

    def __init__(self, sizes: Sequence[int], activation="relu", output_activation=None, *,
                 dtype: str = "float64", init=None, prefix: str = ""):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes must list at least the input and output sizes, "
                             f"got {sizes}")
        self.sizes = sizes
        get_activation(activation), get_activation(output_activation)   # checked even if unused
        n = len(sizes) - 1
        self.layers = [Dense(a, b, activation if i < n else output_activation,
                             name=f"{prefix}{i}", dtype=dtype,
                             init=init if init is not None else default_init(
                                 activation if i < n else output_activation))
                       for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1)]

    @property
    def params(self) -> list[Node]:
        """Every parameter node, layer by layer: ``[W1, b1, W2, b2, ...]``."""
        return [p for layer in self.layers for p in layer.params]

    def __call__(self, x: Node) -> Node:
        for layer in self.layers:
            x = layer(x)
        return x

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """Initial values of every parameter, drawn in layer order from one Generator."""
        rng = rng_from(seed)
        values: dict[str, np.ndarray] = {}
        for layer in self.layers:
            values.update(layer.init(rng))
        return values


class Dropout:
    """Inverted dropout (``torch.nn.Dropout``): zeroes each element with probability
    ``rate`` and scales the kept ones by ``1 / (1 - rate)`` (:func:`adjit.dropout`).

    The random mask comes from ``key`` (a ``(2,)`` uint32 node), by default the model's
    key input ``aj.random.key_input()`` named ``"key"``, which :class:`adjit.train.Trainer`
    feeds a fresh key at every step.  Each application draws from its own key,
    ``aj.random.fold_in(key, h)`` with ``h`` a hash of the layer's ``name`` and of the
    structure of the node it is applied to (its ops and input names, not node ids), so
    masks at different places in a model are independent, and a model built again (in
    this process or another) draws the same masks from the same key.  Two layers applied
    to the very same node share a mask unless their names differ.
    ``layer(x, train=False)`` is ``x`` (evaluation: PyTorch's ``model.eval()``); build the
    evaluation graph with it.  No parameters.
    """

    def __init__(self, rate: float = 0.5, *, key: Node | None = None, name: str = ""):
        from .. import random as R
        if not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1], got {rate!r}")
        self.rate, self.name = float(rate), str(name)
        self.key = key if key is not None else R.key_input()

    @property
    def params(self) -> list[Node]:
        """None: dropout has no parameters."""
        return []

    def key_for(self, x: Node) -> Node:
        """The key this layer draws its mask for ``x`` from."""
        from .. import random as R
        from ..ir import Graph, fingerprint
        h = zlib.crc32(f"{self.name}|{fingerprint(Graph([x]))}".encode())
        return R.fold_in(self.key, h)

    def __call__(self, x: Node, train: bool = True) -> Node:
        from .. import random as R
        if not train or self.rate == 0.0:
            return x
        return R.dropout(x, self.rate, self.key_for(x))

    def init(self, seed=0) -> dict[str, np.ndarray]:
        return {}
class Linear(Dense):
    """``x @ W + b`` with PyTorch's argument names (``torch.nn.Linear(in_features,
    out_features, bias=True)``): a :class:`Dense` layer without activation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 name: str = "", dtype: str = "float64", init=None):
        super().__init__(in_features, out_features, None, name=name, dtype=dtype, init=init,
                         bias=bias)
