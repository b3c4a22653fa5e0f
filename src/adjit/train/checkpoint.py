"""Saving and loading parameters (and optimizer state) as ``.npz`` files.

Keys are ``params/<name>`` and ``state/<name>``; loading copies into existing arrays
in place, so compiled steps and anyone holding those arrays see the loaded values.
"""
from __future__ import annotations

import os

import numpy as np


def save_npz(path, params: dict, state: dict | None = None) -> str:
    """Write ``params`` (and ``state``) to ``path`` (``.npz`` appended when missing)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"state/{k}": np.asarray(v) for k, v in (state or {}).items()})
    np.savez(path, **arrays)
    return path


def load_npz(path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(params, state)`` dicts read from a file written by :func:`save_npz`."""
    params, state = {}, {}
    with np.load(os.fspath(path), allow_pickle=False) as f:
        for key in f.files:
            group, _, name = key.partition("/")
            if group == "params":
                params[name] = f[key]
            elif group == "state":
                state[name] = f[key]
            else:
                raise ValueError(f"{path}: unexpected entry {key!r} (not written by adjit)")
    return params, state


def copy_into(targets: dict[str, np.ndarray], values: dict, what: str, source) -> None:
    """Copy every ``values[k]`` into ``targets[k]`` in place, checking names and shapes."""
    missing = sorted(targets.keys() - values.keys())
    unknown = sorted(values.keys() - targets.keys())
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise KeyError(f"{source}: {what} do not match the model ({'; '.join(parts)})")
    for k, arr in targets.items():
        v = np.asarray(values[k])
        if v.shape != arr.shape:
            raise ValueError(f"{source}: {what[:-1]} {k!r} has shape {v.shape}, "
                             f"the model expects {arr.shape}")
    for k, arr in targets.items():
        np.copyto(arr, values[k], casting="same_kind")
