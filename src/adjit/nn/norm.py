"""Normalization layers: ``LayerNorm`` and ``BatchNorm`` (PyTorch semantics).

Both are compositions of adjit functions (means, squares, ``sqrt``), so their gradients,
printing and compilation are those of the graph a user would write by hand.

``BatchNorm`` has two modes.  In training mode (the default) it normalizes with the
batch's mean and biased variance and records the new running statistics in
``.updates`` (``{running_mean: new, running_var: new}``, the unbiased batch variance as
PyTorch keeps), ready for ``aj.compile(..., updates=...)`` or
``Trainer(..., updates=model.updates)``.  In evaluation mode (``.eval()``) it normalizes
with the running statistics.  The running statistics are :func:`adjit.input` leaves
(state, like an optimizer's moments: not trained), named ``f"{name}_running_mean"`` and
``f"{name}_running_var"``; ``.init()`` gives their starting values (0 and 1) beside the
weight (1) and bias (0).

>>> import adjit as aj, numpy as np
>>> from adjit import nn
>>> bn = nn.BatchNorm(3)
>>> y = bn(aj.input("x", (None, 3)))
>>> sorted(v.name for v in bn.updates), [p.name for p in bn.params]
(['bn_running_mean', 'bn_running_var'], ['bn_weight', 'bn_bias'])
"""
from __future__ import annotations

import numpy as np

from .. import frontend as F
from ..ir import FLOAT_DTYPES, DTypeError, Node, ShapeError


def _check_float(layer: str, x: Node) -> Node:
    if not isinstance(x, Node):
        x = F.const(x)
    if x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{layer}: expected float inputs, got {x!r}")
    return x


def _positive(layer: str, what: str, n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"{layer}: {what} must be a positive int, got {n!r}")
    return int(n)


class LayerNorm:
    """``(x − mean) / √(var + eps) · weight + bias`` over the last ``len(normalized_shape)``
    axes (biased variance), as ``torch.nn.LayerNorm``.

    ``normalized_shape`` is an int or a tuple; ``weight`` (ones) and ``bias`` (zeros) have
    that shape and are named ``f"{name}_weight"``, ``f"{name}_bias"``
    (``elementwise_affine=False``: no parameters).
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, *, elementwise_affine: bool = True,
                 name: str = "ln", dtype: str = "float64"):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
            else tuple(normalized_shape)
        if not shape:
            raise ValueError(f"LayerNorm {name!r}: normalized_shape must not be empty")
        self.normalized_shape = tuple(_positive(f"LayerNorm {name!r}", "normalized_shape", d)
                                      for d in shape)
        if not eps >= 0:
            raise ValueError(f"LayerNorm {name!r}: eps must be >= 0, got {eps!r}")
        self.eps, self.name = float(eps), name
        self.weight = self.bias = None
        if elementwise_affine:
            self.weight = F.param(f"{name}_weight", self.normalized_shape, dtype=dtype)
            self.bias = F.param(f"{name}_bias", self.normalized_shape, dtype=dtype)

    @property
    def params(self) -> list[Node]:
        """``[weight, bias]`` (empty without the affine part)."""
        return [] if self.weight is None else [self.weight, self.bias]

    def __call__(self, x: Node) -> Node:
        x = _check_float(f"LayerNorm {self.name!r}", x)
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ShapeError(f"LayerNorm {self.name!r}: expected inputs ending in "
                             f"{self.normalized_shape}, got {x!r}")
        axes = tuple(range(x.ndim - k, x.ndim))
        mu = F.mean(x, axis=axes, keepdims=True)
        d = x - mu
        var = F.mean(d * d, axis=axes, keepdims=True)
        y = d / F.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * F.cast(self.weight, x.dtype) + F.cast(self.bias, x.dtype)
        return y

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """``{weight: ones, bias: zeros}`` (``seed`` accepted for a uniform signature)."""
        if self.weight is None:
            return {}
        return {self.weight.name: np.ones(self.normalized_shape, self.weight.dtype),
                self.bias.name: np.zeros(self.normalized_shape, self.bias.dtype)}


class BatchNorm:
    """Batch normalization over axis 1 of ``(N, C)`` (or ``(N, C, L...)``) inputs, as
    ``torch.nn.BatchNorm1d``/``2d``: statistics per channel over every other axis.

    Training mode: ``(x − μ_B) / √(σ²_B + eps) · weight + bias`` with the batch's mean and
    biased variance; ``.updates`` holds ``running ← (1 − momentum)·running +
    momentum·batch`` with the unbiased variance ``σ²_B · n / (n − 1)`` (n values per
    channel; a batch of one value per channel uses ``n / max(n − 1, 1)``, where PyTorch
    raises).  Evaluation mode: the running statistics replace the batch's.
    ``.train()`` / ``.eval()`` switch the mode for later calls (the graph is static: build
    the training and the evaluation graph each with its own call); ``training=`` in a
    call overrides it once.  ``.updates`` belongs to the latest training-mode call.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 affine: bool = True, name: str = "bn", dtype: str = "float64"):
        where = f"{type(self).__name__} {name!r}"
        self.num_features = _positive(where, "num_features", num_features)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{where}: momentum must be in [0, 1], got {momentum!r}")
        if not eps >= 0:
            raise ValueError(f"{where}: eps must be >= 0, got {eps!r}")
        self.momentum, self.eps, self.name = float(momentum), float(eps), name
        self.training = True
        C = (self.num_features,)
        self.weight = self.bias = None
        if affine:
            self.weight = F.param(f"{name}_weight", C, dtype=dtype)
            self.bias = F.param(f"{name}_bias", C, dtype=dtype)
        self.running_mean = F.input(f"{name}_running_mean", C, dtype=dtype)
        self.running_var = F.input(f"{name}_running_var", C, dtype=dtype)
        self._updates: dict[Node, Node] = {}

    @property
    def params(self) -> list[Node]:
        """The trained parameters ``[weight, bias]`` (not the running statistics)."""
        return [] if self.weight is None else [self.weight, self.bias]

    @property
    def state(self) -> list[Node]:
        """The running statistics ``[running_mean, running_var]`` (updated, not trained)."""
        return [self.running_mean, self.running_var]

    @property
    def updates(self) -> dict[Node, Node]:
        """``{running_mean: new, running_var: new}`` of the latest training-mode call."""
        return dict(self._updates)

    def train(self, mode: bool = True) -> "BatchNorm":
        self.training = bool(mode)
        return self

    def eval(self) -> "BatchNorm":
        return self.train(False)

    def __call__(self, x: Node, training: bool | None = None) -> Node:
        where = f"{type(self).__name__} {self.name!r}"
        x = _check_float(where, x)
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ShapeError(f"{where}: expected inputs (N, {self.num_features}"
                             f"{', ...' if x.ndim > 2 else ''}), got {x!r}")
        training = self.training if training is None else bool(training)
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        dt = x.dtype
        if training:
            mu = F.mean(x, axis=axes, keepdims=True)
            d = x - mu
            var = F.mean(d * d, axis=axes, keepdims=True)
            y = d / F.sqrt(var + self.eps)
            n = F.count(x, axes)
            if isinstance(n, int):
                if n == 0:
                    raise ShapeError(f"{where}: no values per channel in {x!r}")
                unbias = n / max(n - 1, 1)
            else:
                n = F.cast(n, dt)
                unbias = n / F.maximum(n - 1.0, 1.0)
            m, rm, rv = self.momentum, self.running_mean, self.running_var
            self._updates = {
                rm: (1.0 - m) * rm + m * F.cast(F.reshape(mu, rm.shape), rm.dtype),
                rv: (1.0 - m) * rv + m * F.cast(F.reshape(var * unbias, rv.shape), rv.dtype)}
        else:
            mean = F.reshape(F.cast(self.running_mean, dt), bshape)
            var = F.reshape(F.cast(self.running_var, dt), bshape)
            y = (x - mean) / F.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * F.reshape(F.cast(self.weight, dt), bshape) \
                + F.reshape(F.cast(self.bias, dt), bshape)
        return y

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """Weight 1, bias 0, running mean 0 and running variance 1 (``seed`` unused)."""
        C, dt = (self.num_features,), self.running_mean.dtype
        out = {self.running_mean.name: np.zeros(C, dt), self.running_var.name: np.ones(C, dt)}
        if self.weight is not None:
            out[self.weight.name] = np.ones(C, self.weight.dtype)
            out[self.bias.name] = np.zeros(C, self.bias.dtype)
        return out


class _BatchNormNd(BatchNorm):
    """BatchNorm with PyTorch's argument order ``(num_features, eps, momentum, affine)``
    and a checked input rank."""
    ranks: tuple[int, ...] = ()
    layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, *, name: str = "bn", dtype: str = "float64"):
        super().__init__(num_features, momentum=momentum, eps=eps, affine=affine, name=name,
                         dtype=dtype)

    def __call__(self, x: Node, training: bool | None = None) -> Node:
        x = _check_float(f"{type(self).__name__} {self.name!r}", x)
        if x.ndim not in self.ranks:
            raise ShapeError(f"{type(self).__name__} {self.name!r}: expected inputs "
                             f"{self.layout} with C = {self.num_features}, got {x!r}")
        return super().__call__(x, training)


class BatchNorm1d(_BatchNormNd):
    """``torch.nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True)``:
    :class:`BatchNorm` on ``(N, C)`` or ``(N, C, L)`` inputs."""
    ranks, layout = (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNormNd):
    """``torch.nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True)``:
    :class:`BatchNorm` on ``(N, C, H, W)`` inputs (statistics per channel over N, H, W)."""
    ranks, layout = (4,), "(N, C, H, W)"
