"""``aj.compile(..., updates={leaf: new_value})``: state written in place by the call.

A training step computes new parameters (and optimizer state) from the old ones.  With
``updates``, the compiled function writes each new value into the very array the caller
passed for that input or parameter, after every output has been computed, so one call
does forward, backward and the update, and the state lives in arrays the caller owns
(readable and writable with numpy between calls).  Like Theano's and PyTensor's
``updates``, every right-hand side sees the values from *before* the call.

The arrays given for updated inputs must be exactly what the function writes:
writeable, C-contiguous ndarrays of the declared dtype and shape (no conversion copy
is made for them, since the update would land in the copy).
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node
from .ops.registry import get_op


def check_updates(updates) -> list[tuple[Node, Node]]:
    """Normalize ``updates`` (a dict or pairs) to ``[(leaf, value)]`` and check types."""
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    seen: set[str] = set()
    out = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError("updates: expected a dict {param: new_value} or (param, new_value) pairs")
        leaf, value = pair
        if not isinstance(leaf, Node) or leaf.op not in ("input", "param"):
            raise TypeError(f"updates: a key must be an aj.param or aj.input node, got {leaf!r}")
        if not isinstance(value, Node):
            raise TypeError(f"updates: the new value of {leaf.name!r} must be a graph node, "
                            f"got {type(value).__name__}")
        if leaf.name in seen:
            raise ValueError(f"updates: {leaf.name!r} is updated twice")
        seen.add(leaf.name)
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise ValueError(f"updates: the new value of {leaf.name!r} has type {value.type}, "
                             f"but {leaf.name!r} is {leaf.type}")
        out.append((leaf, value))
    return out


def check_update_sources(graph: Graph, n_returned: int, names: list[str]) -> None:
    """Refuse a new value that is, unchanged, another updated input (the copies would race)."""
    targets = set(names)
    for name, value in zip(names, graph.outputs[n_returned:]):
        root = value
        while get_op(root.op).view:
            root = root.inputs[0]
        if root.op in ("input", "param") and root.name in targets and root.name != name:
            raise ValueError(f"updates: the new value of {name!r} is {root.name!r} unchanged, "
                             f"and {root.name!r} is updated in the same call; exchanging "
                             "state in place is not supported (update one of them per call)")


def check_update_buffers(names: list[str], values: dict, given: dict) -> None:
    """The arrays to be written must be the caller's own arrays, exactly as declared."""
    for name in names:
        arr = values[name]
        if arr is not given[name] or not arr.flags.writeable:
            raise ValueError(
                f"input {name!r} is updated in place, so it must be a writeable C-contiguous "
                f"numpy array of dtype {arr.dtype} and shape {arr.shape} (got "
                f"{_describe(given[name])}); the function would write into a copy")


def _describe(v) -> str:
    if not isinstance(v, np.ndarray):
        return type(v).__name__
    flags = [] if v.flags.writeable else ["read-only"]
    if not v.flags.c_contiguous:
        flags.append("not C-contiguous")
    return " ".join(flags + [f"{v.dtype} array of shape {v.shape}"])
