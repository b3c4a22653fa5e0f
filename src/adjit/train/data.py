"""The 8×8 handwritten digits that scikit-learn ships inside its package (no download).

1797 images of 64 pixels (0–16 gray levels), ten classes.  scikit-learn is an optional
extra: ``pip install "adjit[demo]"``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

INSTALL_HINT = 'pip install "adjit[demo]"'


class Split(NamedTuple):
    """Train and test arrays: pixel rows scaled to [0, 1] and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError("the digits data set comes with scikit-learn, which is not installed; "
                          f"install the demo extras: {INSTALL_HINT}  (or pip install scikit-learn)"
                          ) from None
    bunch = sk_load_digits()
    return bunch.data, bunch.target


def load_digits(test_fraction: float = 0.2, seed: int = 0, dtype: str = "float32") -> Split:
    """A stratified, seeded train/test split of the digits.

    Each class contributes ``round(test_fraction · count)`` images to the test set, so
    both sets keep the class balance.  Pixels are divided by 16 (range [0, 1]); labels
    are int64.

    >>> d = load_digits()                                   # doctest: +SKIP
    >>> d.x_train.shape, d.x_test.shape                     # doctest: +SKIP
    ((1438, 64), (359, 64))
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    X, y = _sklearn_digits()
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.extend(idx[:int(round(test_fraction * len(idx)))])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    X = (np.asarray(X, dtype=np.float64) / 16.0).astype(dtype)
    y = np.asarray(y, dtype=np.int64)
    return Split(np.ascontiguousarray(X[train_idx]), y[train_idx],
                 np.ascontiguousarray(X[test_idx]), y[test_idx])


def one_hot(labels: np.ndarray, k: int = 10, dtype: str = "float32") -> np.ndarray:
    """Integer labels -> one-hot rows (for the squared-error loss)."""
    return np.eye(k, dtype=dtype)[np.asarray(labels)]
