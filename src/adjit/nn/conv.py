"""Convolution, pooling and shape layers with PyTorch's names, arguments and layouts.

``nn.Conv1d``/``nn.Conv2d`` hold a weight ``(C_out, C_in/groups, *kernel)`` and a bias
``(C_out,)`` and call :func:`adjit.conv1d`/:func:`adjit.conv2d`; the pools call
:func:`adjit.max_pool2d` and friends; ``nn.Flatten`` is a reshape and ``nn.ReLU`` is
:func:`adjit.relu`.  Every layer has ``.params`` and ``.init(seed)``, so they compose in
:class:`adjit.nn.Sequential`, and what they build is the graph a user would write with the
functions (the equations view shows ``conv`` and pooling records by name).

Initialization is PyTorch's default for convolutions (``kaiming_uniform_(a=√5)``): the
weight and the bias are drawn from ``U(−1/√fan_in, 1/√fan_in)`` with
``fan_in = C_in/groups · prod(kernel)``.

>>> import adjit as aj
>>> from adjit import nn
>>> net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, name="c1"), nn.ReLU(), nn.MaxPool2d(2),
...                     nn.Flatten(), nn.Linear(6 * 4 * 4, 10, name="f1"))
>>> y = net(aj.input("x", (None, 1, 8, 8)))
>>> [p.name for p in net.params], y.shape
(['Wc1', 'bc1', 'Wf1', 'bf1'], (None, 10))
"""
from __future__ import annotations

import math

import numpy as np

from .. import frontend as F
from ..ir import Node, ShapeError, label, shape_str
from ..ops.conv import conv1d, conv2d
from ..ops.window import ints, padding as window_padding
from .init import INITIALIZERS, get_initializer, rng_from


def _positive(layer: str, what: str, n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"{layer}: {what} must be a positive int, got {n!r}")
    return int(n)


def _aj():
    import adjit                      # the pooling functions live in adjit's namespace
    return adjit


class _NoParams:
    """A layer without parameters: ``.params`` is empty, ``.init`` gives nothing."""

    @property
    def params(self) -> list[Node]:
        return []

    def init(self, seed=0) -> dict[str, np.ndarray]:
        return {}


# --- convolutions --------------------------------------------------------------------------
class _ConvNd:
    nd = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, name: str = "",
                 dtype: str = "float64", init=None):
        kind = type(self).__name__
        where = f"{kind} {name!r}"
        self.in_channels = _positive(where, "in_channels", in_channels)
        self.out_channels = _positive(where, "out_channels", out_channels)
        self.groups = _positive(where, "groups", groups)
        for what, n in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if n % self.groups:
                raise ValueError(f"{where}: {what}={n} is not divisible by groups={self.groups}")
        nd = self.nd
        self.kernel_size = ints("kernel_size", kernel_size, nd, where)
        self.stride = ints("stride", stride, nd, where)
        self.dilation = ints("dilation", dilation, nd, where)
        window_padding(padding, self.kernel_size, self.stride, self.dilation, where)  # checks
        self.padding = padding if isinstance(padding, str) else \
            ints("padding", padding, nd, where, minimum=0)
        self.name = name
        self._init = None if init is None else _conv_initializer(init)
        self.W = F.param(f"W{name}", (self.out_channels, self.in_channels // self.groups)
                         + self.kernel_size, dtype=dtype)
        self.b = F.param(f"b{name}", (self.out_channels,), dtype=dtype) if bias else None

    @property
    def weight(self) -> Node:
        """The weight parameter ``(C_out, C_in/groups, *kernel)`` (PyTorch's name)."""
        return self.W

    @property
    def bias(self) -> Node | None:
        """The bias parameter ``(C_out,)``, or None."""
        return self.b

    @property
    def params(self) -> list[Node]:
        """``[W, b]`` (or ``[W]`` without bias)."""
        return [self.W] if self.b is None else [self.W, self.b]

    @property
    def fan_in(self) -> int:
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    def __call__(self, x: Node) -> Node:
        fn = conv1d if self.nd == 1 else conv2d
        return fn(x, self.W, self.b, stride=self.stride, padding=self.padding,
                  dilation=self.dilation, groups=self.groups)

    def init(self, seed=0) -> dict[str, np.ndarray]:
        """PyTorch's default: weight and bias ``U(−1/√fan_in, 1/√fan_in)`` (or ``init=``
        for the weight, bias still PyTorch's), drawn from one Generator."""
        rng = rng_from(seed)
        bound = 1.0 / math.sqrt(self.fan_in)
        shape, dt = self.W.shape, np.dtype(self.W.dtype)
        if self._init is None:
            w = rng.uniform(-bound, bound, size=shape)
        else:
            w = self._init(rng, shape, dt)
        out = {self.W.name: np.ascontiguousarray(w, dtype=dt)}
        if self.b is not None:
            out[self.b.name] = np.ascontiguousarray(
                rng.uniform(-bound, bound, size=self.b.shape), dtype=np.dtype(self.b.dtype))
        return out

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                f"{'' if self.groups == 1 else f', groups={self.groups}'}"
                f"{'' if self.b is not None else ', bias=False'})")


def _conv_initializer(init):
    """A weight initializer for the ``(C_out, C_in/groups, *kernel)`` layout: the named
    initializers (``he_uniform``, ``glorot_normal``, ...) see fan_in = C_in/groups·prod(kernel)
    and fan_out = C_out (drawn as a (fan_in, fan_out) matrix and laid out); a callable
    ``(rng, shape, dtype)`` gets the weight's own shape."""
    if callable(init):
        return init
    named = get_initializer(init)           # the ValueError names the choices

    def draw(rng, shape, dtype):
        fan_in, fan_out = math.prod(shape[1:]), shape[0]
        return np.ascontiguousarray(named(rng, (fan_in, fan_out), dtype).T.reshape(shape))
    draw.__name__ = init if init in INITIALIZERS else "init"
    return draw


class Conv1d(_ConvNd):
    """``torch.nn.Conv1d``: ``(N, C_in, L) -> (N, C_out, L_out)`` by :func:`adjit.conv1d`.

    Parameters ``W{name}: (C_out, C_in/groups, k)`` and ``b{name}: (C_out,)``;
    ``padding`` an int, a 1-tuple, ``"same"`` or ``"valid"``.
    """
    nd = 1


class Conv2d(_ConvNd):
    """``torch.nn.Conv2d``: ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` by
    :func:`adjit.conv2d`.

    Parameters ``W{name}: (C_out, C_in/groups, kH, kW)`` and ``b{name}: (C_out,)``;
    ``kernel_size``, ``stride``, ``padding``, ``dilation`` an int or a pair, ``padding``
    also ``"same"`` (stride 1) or ``"valid"``; ``groups=in_channels`` is depthwise.
    """
    nd = 2


# --- pooling -------------------------------------------------------------------------------
class _PoolNd(_NoParams):
    nd = 0
    fn = ""

    def __init__(self, kernel_size, stride=None, padding=0, **options):
        where = type(self).__name__
        self.kernel_size = ints("kernel_size", kernel_size, self.nd, where)
        self.stride = self.kernel_size if stride is None else \
            ints("stride", stride, self.nd, where)
        self.padding = ints("padding", padding, self.nd, where, minimum=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ShapeError(f"{where}: padding {self.padding} must be at most half the "
                             f"kernel size {self.kernel_size} (as in PyTorch)")
        self.options = options

    def __call__(self, x: Node) -> Node:
        return getattr(_aj(), self.fn)(x, self.kernel_size, self.stride, self.padding,
                                       **self.options)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{extra})")


class _MaxPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation=dilation, ceil_mode=ceil_mode)


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad)


class MaxPool1d(_MaxPoolNd):
    """``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0, dilation=1)``: the maximum
    of each window (:func:`adjit.max_pool1d`); ``stride`` defaults to ``kernel_size``."""
    nd, fn = 1, "max_pool1d"


class MaxPool2d(_MaxPoolNd):
    """``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1)``: the maximum
    of each window (:func:`adjit.max_pool2d`); ``stride`` defaults to ``kernel_size``;
    padding (at most half the kernel) counts as −∞."""
    nd, fn = 2, "max_pool2d"


class AvgPool1d(_AvgPoolNd):
    """``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0, count_include_pad=True)``:
    the mean of each window (:func:`adjit.avg_pool1d`)."""
    nd, fn = 1, "avg_pool1d"


class AvgPool2d(_AvgPoolNd):
    """``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, count_include_pad=True)``:
    the mean of each window (:func:`adjit.avg_pool2d`)."""
    nd, fn = 2, "avg_pool2d"


class _Adaptive(_NoParams):
    fn = ""

    def __init__(self, output_size):
        self.output_size = output_size

    def __call__(self, x: Node) -> Node:
        return getattr(_aj(), self.fn)(x, self.output_size)

    def __repr__(self):
        return f"{type(self).__name__}({self.output_size!r})"


class AdaptiveAvgPool2d(_Adaptive):
    """``torch.nn.AdaptiveAvgPool2d(output_size)``: average pooling to a fixed spatial size
    (:func:`adjit.adaptive_avg_pool2d`); ``1`` is global average pooling."""
    fn = "adaptive_avg_pool2d"


class AdaptiveAvgPool1d(_Adaptive):
    """``torch.nn.AdaptiveAvgPool1d(output_size)`` (:func:`adjit.adaptive_avg_pool1d`)."""
    fn = "adaptive_avg_pool1d"


class AdaptiveMaxPool2d(_Adaptive):
    """``torch.nn.AdaptiveMaxPool2d(output_size)`` (:func:`adjit.adaptive_max_pool2d`)."""
    fn = "adaptive_max_pool2d"


class AdaptiveMaxPool1d(_Adaptive):
    """``torch.nn.AdaptiveMaxPool1d(output_size)`` (:func:`adjit.adaptive_max_pool1d`)."""
    fn = "adaptive_max_pool1d"


# --- shape and activation ------------------------------------------------------------------
class Flatten(_NoParams):
    """``torch.nn.Flatten(start_dim=1, end_dim=-1)``: axes ``start_dim..end_dim`` merged
    into one (``(N, C, H, W) -> (N, C·H·W)``).  The merged axes must be static: the batch
    axis (None) can only be kept, not merged."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        for what, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"Flatten: {what} must be an int, got {v!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def __call__(self, x: Node) -> Node:
        x = F._lift(x)
        nd = max(x.ndim, 1)
        s, e = self.start_dim, self.end_dim
        s, e = s + nd if s < 0 else s, e + nd if e < 0 else e
        where = f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})({label(x)})"
        if not (0 <= s < nd and 0 <= e < nd):
            raise ShapeError(f"{where}: dimensions out of range for shape "
                             f"{shape_str(x.shape)}")
        if s > e:
            raise ShapeError(f"{where}: start_dim comes after end_dim")
        if x.ndim == 0:
            return F.reshape(x, (1,))
        merged = x.shape[s:e + 1]
        if None in merged and len(merged) > 1:
            raise ShapeError(f"{where}: cannot merge the batch axis (None) of "
                             f"{shape_str(x.shape)} with other axes")
        size = None if None in merged else math.prod(merged)
        return F.reshape(x, x.shape[:s] + (size,) + x.shape[e + 1:])

    def __repr__(self):
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"


class ReLU(_NoParams):
    """``torch.nn.ReLU``: :func:`adjit.relu` as a layer."""

    def __call__(self, x: Node) -> Node:
        return F.relu(x)

    def __repr__(self):
        return "ReLU()"
