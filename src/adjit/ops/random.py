"""Random numbers in the graph: one primitive, ``philox``, a counter-based generator.

``philox(key; shape, dtype, stream)`` fills ``shape`` (which may hold the batch dimension)
from the Philox4x64-10 stream of a key.  The key is a ``(2,)`` uint32 array ``[k0, k1]``
(JAX's raw key layout), bound like any input.

The stream (what the numpy reference and both native lowerings compute)
--------------------------------------------------------------------------
Element ``i`` of the result (row-major linear index) is made from the 64-bit word ``i``
of the stream of numpy's Philox bit generator::

    np.random.Philox(key=[k0 | k1 << 32, 0], counter=[0, stream, 0, 0]).random_raw(n)[i]

numpy increments the 256-bit counter before each block, so word ``i`` is lane ``i % 4``
of the Philox4x64-10 block of counter ``(i // 4 + 1, stream, 0, 0)`` under key
``(k0 | k1 << 32, 0)``.  Every element is computable on its own (the lowering is a map).
The word ``w`` becomes

* ``uint32``: ``w >> 32`` (the high half);
* ``float64``: ``(w >> 11) * 2**-53``, uniform on ``[0, 1)`` (53 random bits);
* ``float32``: ``(w >> 40) * 2**-24``, uniform on ``[0, 1)`` (24 random bits).

All three are exact (no rounding), so every backend gives the same bits.  ``stream`` picks
an independent stream of the same key (counter word 1): the public functions in
:mod:`adjit.random` use stream 0 for uniform numbers, 1 for the second uniform of
``normal``, ``2**32 + j`` for the ``j``-th key of ``split`` and ``2**33 + d`` for
``fold_in(key, d)``.

No gradient flows to the key (its derivative is zero: random bits are not differentiable).
"""
from __future__ import annotations

import numpy as np

from ..ir import DTypeError, ShapeError, TensorType, label, shape_str
from .registry import Op, Shown, register

KEY_DTYPE = "uint32"
RANDOM_DTYPES = ("uint32", "float32", "float64")
STREAM_LIMIT = 2 ** 64
SPLIT_STREAM, FOLD_STREAM = 2 ** 32, 2 ** 33    # aj.random.split / fold_in's streams


def check_key(key, who: str) -> None:
    """Raise unless ``key`` is a ``(2,)`` uint32 node (a raw key, as JAX's)."""
    if key.dtype != KEY_DTYPE:
        raise DTypeError(f"{who}: the key {label(key)} must be uint32 (a raw key as "
                         f"aj.random.key_input() declares), got {key.dtype}")
    if key.shape != (2,):
        raise ShapeError(f"{who}: the key {label(key)} must have shape (2,), got "
                         f"{shape_str(key.shape)}")


def _philox_rule(inputs, attrs):
    (key,) = inputs
    check_key(key, "philox")
    if attrs["dtype"] not in RANDOM_DTYPES:
        raise DTypeError(f"philox({label(key)}): dtype must be one of "
                         f"{', '.join(RANDOM_DTYPES)}, got {attrs['dtype']!r}")
    stream = attrs["stream"]
    if not isinstance(stream, int) or not 0 <= stream < STREAM_LIMIT:
        raise ValueError(f"philox({label(key)}): stream must be an int in [0, 2**64), "
                         f"got {stream!r}")
    return TensorType(attrs["shape"], attrs["dtype"])


def stream_words(key: np.ndarray, n: int, stream: int = 0) -> np.ndarray:
    """The first ``n`` 64-bit words of ``key``'s stream ``stream`` (numpy's Philox)."""
    k0, k1 = (int(v) for v in np.asarray(key, dtype=np.uint32).reshape(2))
    gen = np.random.Philox(key=np.array([k0 | k1 << 32, 0], dtype=np.uint64),
                           counter=np.array([0, stream, 0, 0], dtype=np.uint64))
    return gen.random_raw(n) if n else np.zeros(0, dtype=np.uint64)


def words_to(words: np.ndarray, dtype: str) -> np.ndarray:
    """The exact conversion of 64-bit words to ``dtype`` (see the module docstring)."""
    if dtype == "uint32":
        return (words >> np.uint64(32)).astype(np.uint32)
    if dtype == "float64":
        return (words >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return ((words >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24))


def _philox_numpy(args, node, env):
    shape = node.type.concrete(env.batch)
    n = int(np.prod(shape, dtype=np.int64))
    return words_to(stream_words(args[0], n, node.attr("stream")), node.dtype).reshape(shape)


def _philox_shown(node, dropped=()) -> Shown:
    """``uniform(key)`` (floats on [0, 1)) or ``bits(key)``, the stream when not 0; the
    keys of ``aj.random.split`` and ``fold_in`` as ``split(key; 1)``, ``fold_in(key; 7)``."""
    s = node.attr("stream")
    if s >= FOLD_STREAM:
        return Shown(name="fold_in", note=str(s - FOLD_STREAM))
    if s >= SPLIT_STREAM:
        return Shown(name="split", note=str(s - SPLIT_STREAM))
    return Shown(name="bits" if node.dtype == "uint32" else "uniform",
                 note="" if s == 0 else f"stream {s}")


register(Op("philox", _philox_rule, _philox_numpy, lambda node, g, needs: [None], arity=1,
            differentiable=False, cost=40, display="philox", shown=_philox_shown,
            doc="random numbers from a key: Philox4x64-10, numpy's stream"))
