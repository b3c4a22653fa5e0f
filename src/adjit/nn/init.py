"""Seeded weight initialization: numpy arrays for the parameters of a layer.

Every initializer takes a :class:`numpy.random.Generator` (or an int seed), a shape and
a dtype, and returns a fresh C-contiguous array, so the same seed gives the same model.
Weights are stored (fan_in, fan_out), as in ``z = x @ W + b``.

* Glorot (Xavier): variance 2 / (fan_in + fan_out), for sigmoid, tanh and linear units.
* He (Kaiming): variance 2 / fan_in, for ReLU units.

>>> import numpy as np
>>> W = glorot_uniform(0, (64, 32))
>>> W.shape, W.dtype.name, bool(np.abs(W).max() <= np.sqrt(6 / 96))
((64, 32), 'float64', True)
"""
from __future__ import annotations

import numpy as np


def rng_from(seed) -> np.random.Generator:
    """A Generator from an int seed, ``None`` (fresh entropy) or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, None or a numpy Generator, got {type(seed).__name__}")


def _fans(shape) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return int(np.prod(shape[:-1])), shape[-1]


def _out(values: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.dtype(dtype))


def glorot_uniform(rng, shape, dtype="float64") -> np.ndarray:
    """U(−a, a) with a = √(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return _out(rng_from(rng).uniform(-a, a, size=shape), dtype)


def glorot_normal(rng, shape, dtype="float64") -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return _out(rng_from(rng).normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape), dtype)


def he_normal(rng, shape, dtype="float64") -> np.ndarray:
    """N(0, 2 / fan_in)."""
    fan_in, _ = _fans(shape)
    return _out(rng_from(rng).normal(0.0, np.sqrt(2.0 / fan_in), size=shape), dtype)


def he_uniform(rng, shape, dtype="float64") -> np.ndarray:
    """U(−a, a) with a = √(6 / fan_in)."""
    fan_in, _ = _fans(shape)
    a = np.sqrt(6.0 / fan_in)
    return _out(rng_from(rng).uniform(-a, a, size=shape), dtype)


def zeros(rng, shape, dtype="float64") -> np.ndarray:
    """All zeros (biases); ``rng`` is accepted for a uniform signature and not used."""
    return np.zeros(shape, dtype=np.dtype(dtype))


INITIALIZERS = {"glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
                "he_normal": he_normal, "he_uniform": he_uniform, "zeros": zeros}


def get_initializer(init):
    """An initializer by name (see ``INITIALIZERS``) or a callable ``(rng, shape, dtype)``."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(f"unknown initializer {init!r}; choose one of {', '.join(INITIALIZERS)} "
                         "or pass a function (rng, shape, dtype) -> array")
    return INITIALIZERS[init]
