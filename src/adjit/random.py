"""Random numbers in the graph, from a key input: ``aj.random.uniform(key, shape)``, ...

A *key* is a ``(2,)`` uint32 array, as JAX's raw keys, declared with
:func:`key_input` (``aj.input("key", (2,), dtype="uint32")``) and bound at call time like
any input.  The same key gives the same numbers on every backend (interp, llvm, ptx: bit
for bit), and a different key gives independent ones: pass a fresh key to each call (the
:class:`adjit.train.Trainer` does so at every step).  Shapes may hold the batch dimension
``None``: one draw per example.

The bits are numpy's Philox4x64-10 stream (``np.random.Philox``): see
:mod:`adjit.ops.random` for the exact mapping, which lets a user reproduce any draw with
numpy alone.  As in JAX, reusing one key for two draws of the same kind gives the same
numbers: :func:`split` or :func:`fold_in` make new keys.

>>> import adjit as aj, numpy as np
>>> key = aj.random.key_input()
>>> u = aj.random.uniform(key, (None, 3))
>>> x = aj.input("x", (None, 3))
>>> f = aj.compile(u + 0.0 * x, backend="interp")
>>> v = f(key=np.array([0, 42], np.uint32), x=np.zeros((2, 3)))
>>> v.shape, bool(((0 <= v) & (v < 1)).all())
((2, 3), True)
"""
from __future__ import annotations

import math
import numbers

from . import frontend as F
from .ir import FLOAT_DTYPES, DTypeError, Node, label
from .ops.random import FOLD_STREAM, KEY_DTYPE, SPLIT_STREAM, check_key
from .ops.registry import make

_KEYS: dict[str, Node] = {}


def key_input(name: str = "key") -> Node:
    """The ``(2,)`` uint32 input ``name`` that holds a random key.  Asking twice for one
    name gives the same node (so several layers can share the model's key)."""
    node = _KEYS.get(name)
    if node is None:
        node = _KEYS[name] = F.input(name, (2,), KEY_DTYPE)
    return node


def is_key(node: Node) -> bool:
    """Whether ``node`` is a key *input* (bound by name, uint32, shape (2,)): what the
    Trainer feeds a fresh key at every step."""
    return node.op == "input" and node.dtype == KEY_DTYPE and node.shape == (2,)


def _shape(shape) -> tuple:
    if shape is None or isinstance(shape, numbers.Integral):
        return (shape,)
    shape = tuple(shape)
    for d in shape:
        if d is not None and (not isinstance(d, numbers.Integral) or d < 0):
            raise ValueError(f"bad dimension {d!r} in shape {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def _float(dtype: str, who: str) -> str:
    import numpy as np
    name = np.dtype(dtype).name
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"aj.random.{who}: dtype must be float32 or float64, got {name}")
    return name


def bits(key: Node, shape=(), stream: int = 0) -> Node:
    """Random uint32 values (every bit uniform), as ``jax.random.bits``.  ``stream``
    picks one of 2**32 independent streams of the key (the other functions use 0)."""
    check_key(key, "aj.random.bits")
    return make("philox", (key,), {"shape": _shape(shape), "dtype": "uint32",
                                   "stream": int(stream)})


def uniform(key: Node, shape=(), dtype: str = "float64", minval=0.0, maxval=1.0) -> Node:
    """Uniform numbers on ``[minval, maxval)`` (``jax.random.uniform``).  On ``[0, 1)`` they
    are multiples of 2**-53 (float64) or 2**-24 (float32), every one equally likely;
    other bounds are ``minval + (maxval - minval) * u``."""
    check_key(key, "aj.random.uniform")
    dtype = _float(dtype, "uniform")
    u = make("philox", (key,), {"shape": _shape(shape), "dtype": dtype, "stream": 0})
    if isinstance(minval, Node) or isinstance(maxval, Node) or (minval, maxval) != (0.0, 1.0):
        u = minval + (maxval - minval) * u
    return u


def normal(key: Node, shape=(), dtype: str = "float64") -> Node:
    """Standard normal numbers (``jax.random.normal``) by Box-Muller from two uniform
    draws of the key, ``u1`` on stream 0 and ``u2`` on stream 1 (independent):
    ``sqrt(-2 log(1 - u1)) * cos(2π u2)``.  ``1 - u1`` is in ``(0, 1]``, so the result is
    finite (at most 8.6 in float64, 5.7 in float32)."""
    check_key(key, "aj.random.normal")
    dtype, shape = _float(dtype, "normal"), _shape(shape)
    u1 = make("philox", (key,), {"shape": shape, "dtype": dtype, "stream": 0})
    u2 = make("philox", (key,), {"shape": shape, "dtype": dtype, "stream": 1})
    return F.sqrt(-2.0 * F.log(1.0 - u1)) * F.cos((2.0 * math.pi) * u2)


def bernoulli(key: Node, p=0.5, shape=None) -> Node:
    """Bool samples, true with probability ``p`` (``jax.random.bernoulli``): ``u < p``
    for ``u`` uniform on ``[0, 1)``, in ``p``'s dtype (float64 for a number).  ``shape``
    defaults to ``p``'s."""
    check_key(key, "aj.random.bernoulli")
    dtype = p.dtype if isinstance(p, Node) and p.dtype in FLOAT_DTYPES else "float64"
    if shape is None:
        shape = p.shape if isinstance(p, Node) else ()
    return uniform(key, shape, dtype) < p


def split(key: Node, num: int = 2) -> tuple:
    """``num`` new keys made from ``key`` (``jax.random.split``; unpack them as in JAX:
    ``k1, k2 = aj.random.split(key)``).  They are independent of each other and of the
    draws made from ``key`` itself."""
    check_key(key, "aj.random.split")
    if not isinstance(num, numbers.Integral) or not 1 <= num < 2 ** 32:
        raise ValueError(f"aj.random.split: num must be a positive int, got {num!r}")
    return tuple(bits(key, (2,), SPLIT_STREAM + j) for j in range(int(num)))


def fold_in(key: Node, data: int) -> Node:
    """A new key from ``key`` and an int ``data`` in ``[0, 2**32)``
    (``jax.random.fold_in``): different ``data`` give independent keys."""
    check_key(key, "aj.random.fold_in")
    if not isinstance(data, numbers.Integral) or not 0 <= data < 2 ** 32:
        raise ValueError(f"aj.random.fold_in: data must be an int in [0, 2**32), got {data!r}")
    return bits(key, (2,), FOLD_STREAM + int(data))


def dropout(x: Node, rate: float, key: Node) -> Node:
    """Inverted dropout (``torch.nn.functional.dropout`` in training, Flax's ``Dropout``):
    each element of ``x`` is zeroed with probability ``rate`` and the kept ones are scaled
    by ``1 / (1 - rate)``, so the expected value is unchanged.  ``rate = 0`` returns ``x``;
    ``rate = 1`` gives zeros (no NaN, even where ``x`` is inf).  The mask is
    ``uniform(key, x.shape) >= rate`` and the gradient is the same mask times the
    cotangent, scaled."""
    if not isinstance(x, Node) or x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"aj.dropout: x must be a float node, got "
                         f"{x.dtype if isinstance(x, Node) else type(x).__name__}")
    check_key(key, f"aj.dropout({label(x)})")
    if isinstance(rate, Node) or not isinstance(rate, numbers.Real) \
            or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"aj.dropout({label(x)}): rate must be a number in [0, 1], "
                         f"got {rate!r}")
    rate = float(rate)
    if rate == 0.0:
        return x
    keep = uniform(key, x.shape, x.dtype) >= rate
    scale = 0.0 if rate == 1.0 else 1.0 / (1.0 - rate)
    return F.where(keep, x * scale, 0.0)


__all__ = ["bernoulli", "bits", "dropout", "fold_in", "is_key", "key_input", "normal", "split",
           "uniform"]
