"""Mini-batches of named arrays: shuffled once per epoch, the last batch smaller.

The batch dimension of a compiled function is bound at call time, so the last,
smaller batch needs no padding and no recompilation.

>>> import numpy as np
>>> data = {"x": np.arange(10.0).reshape(5, 2), "t": np.arange(5)}
>>> [len(b["t"]) for b in minibatches(data, 2, shuffle=False)]
[2, 2, 1]
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


def check_data(data: dict, what: str = "data") -> int:
    """The common number of rows of every array in ``data`` (a dict name -> array)."""
    if not isinstance(data, dict) or not data:
        raise TypeError(f"{what} must be a non-empty dict {{input name: array}}, "
                        f"got {type(data).__name__}")
    n = None
    for name, arr in data.items():
        rows = np.shape(arr)[0] if np.ndim(arr) else None
        if rows is None:
            raise ValueError(f"{what}[{name!r}] must have a batch (first) dimension, "
                             f"got shape {np.shape(arr)}")
        if n is None:
            n, first = rows, name
        elif rows != n:
            raise ValueError(f"{what}: {name!r} has {rows} rows but {first!r} has {n}")
    if n == 0:
        raise ValueError(f"{what} holds no examples")
    return n


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def minibatches(data: dict, batch_size: int, *, shuffle: bool = True, rng=None,
                drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{name: rows}`` batches covering ``data`` once.

    With ``shuffle`` the rows are permuted once (``rng``: a numpy Generator or seed)
    and each batch is a contiguous slice of the permuted copy, so no batch is copied
    again.  The last batch holds the remaining ``n % batch_size`` rows unless
    ``drop_last``.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = check_data(data)
    arrays = {k: np.asarray(v) for k, v in data.items()}
    if shuffle:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        perm = rng.permutation(n)
        arrays = {k: np.ascontiguousarray(v[perm]) for k, v in arrays.items()}
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield {k: v[i:i + batch_size] for k, v in arrays.items()}
