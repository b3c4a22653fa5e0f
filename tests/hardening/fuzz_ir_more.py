"""The fuzzer's IR nodes for the second wave of ops (see fuzz_ir.py): numpy references
written from numpy's own functions (never adjit's records), the adjit front-end call that
builds each node, and its source text.

Ops (fuzz IR name: adjit spelling):

* ``getitem``: ``x[key]`` (ints, slices with any step, ``None``, ``...``);
* ``pad``: ``aj.pad(x, widths, constant_values=v)``; ``concat``: ``aj.concatenate``;
* ``take`` / ``take_along``: ``aj.take`` / ``aj.take_along_axis`` with int64/int32 index
  inputs or constants (repeated and negative indices);
* ``min``, ``prod``, ``var``, ``std``, ``argmax``, ``argmin``: reductions with ``axis``
  and ``keepdims`` (``ddof`` for var/std);
* ``einsum``: ``aj.einsum(spec, ...)``;
* ``uniform``: ``aj.random.uniform(key, shape, dtype, minval, maxval)``, its reference
  numpy's ``np.random.Philox`` stream of the key (the mapping documented in
  adjit/ops/random.py).
"""
from __future__ import annotations

import math

import numpy as np

import adjit as aj

_erf1 = np.vectorize(math.erf, otypes=[np.float64])


def erf(x):
    x = np.asarray(x, np.float64)
    return _erf1(x) if x.size else x.copy()


def _sig(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


GELU_C = math.sqrt(2.0 / math.pi)

# numpy references of the new elementwise ops (PyTorch's formulas for the activations:
# silu(-inf) and gelu(-inf) are NaN there too, -inf * 0)
ELEMENTWISE_MORE = {
    "tan": np.tan, "log1p": np.log1p, "expm1": np.expm1, "erf": erf, "log2": np.log2,
    "exp2": np.exp2, "square": lambda x: x * x, "reciprocal": lambda x: 1.0 / x,
    "silu": lambda x: x * _sig(x),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x ** 3))),
    "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "leaky_relu": lambda x, s: np.where(x > 0, x, s * x),
    "elu": lambda x, a: np.where(x > 0, x, a * np.expm1(x)),
    "clip": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    "logical_and": np.logical_and, "logical_or": np.logical_or,
    "logical_xor": np.logical_xor, "logical_not": np.logical_not,
}
LOGICAL_OPS = {"logical_and", "logical_or", "logical_xor", "logical_not"}
REDUCE_MORE = {"min", "prod", "var", "std", "argmax", "argmin"}
MOVES = {"getitem", "pad", "concat", "take", "take_along"}
OPS = MOVES | REDUCE_MORE | {"einsum", "uniform"}
EINSUM_OPTIMIZE = False     # fuzz_check.other_order: numpy's other evaluation order
ZERO_TIES = False           # fuzz_check.other_order: IEEE 754-2019 signs of tied zeros


def zero_ties(op, x, res, axis, keepdims):
    """min/max with IEEE 754-2019 minimum/maximum's zeros (-0 < +0) when ZERO_TIES: numpy's
    reductions return either sign among tied zeros (the last one), the native backends
    -0.0 for min; the sign is not part of adjit's contract, but it flips a later 1/x."""
    if not ZERO_TIES or not np.size(res):
        return res
    want_neg = op == "min"
    x = np.asarray(x)
    hit = np.any((x == 0) & (np.signbit(x) == want_neg), axis=axis, keepdims=keepdims)
    return np.where((res == 0) & hit, -0.0 if want_neg else 0.0, res).astype(np.asarray(res).dtype)


def _concrete(shape, batch):
    return tuple(batch if d is None else d for d in shape)


def philox_uniform(key, shape, dtype, stream=0):
    """aj.random.uniform's [0, 1) numbers: word i of numpy's Philox stream of the key."""
    k0, k1 = (int(v) for v in key)
    n = int(np.prod(shape, dtype=np.int64))
    w = np.random.Philox(key=np.array([k0 | k1 << 32, 0], np.uint64),
                         counter=np.array([0, stream, 0, 0], np.uint64)).random_raw(n) \
        if n else np.zeros(0, np.uint64)
    if dtype == "float32":
        return ((w >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)
    return ((w >> np.uint64(11)).astype(np.float64) * 2.0 ** -53).reshape(shape)


def _arg(fn, x, axis, keepdims):
    x = np.asarray(x)
    if x.size == 0:                     # an empty slice (batch 0): adjit's documented 0
        out = np.zeros(np.delete(x.shape, axis) if axis is not None else (), np.int64)
        return np.expand_dims(out, axis) if keepdims and axis is not None else out
    return fn(x, axis=axis, keepdims=keepdims).astype(np.int64)


def reference(n, a, batch, ft, fl):
    """The value of node ``n`` from its operands' values ``a`` (``fl``: cast floats to the
    working type ``ft``)."""
    op, at = n.op, n.attrs
    if op == "getitem":
        return a[0][at["key"]]
    if op == "pad":
        return np.pad(a[0], at["widths"], constant_values=at["value"])
    if op == "concat":
        return fl(np.concatenate(a, axis=at["axis"]), ft)
    if op == "take":
        return np.take(a[0], a[1], axis=at["axis"])
    if op == "take_along":          # numpy broadcasts the other axes
        if np.shape(a[0])[at["axis"]] == 0:           # batch 0: adjit reads zeros
            s = list(np.broadcast_shapes(np.shape(a[0]), np.shape(a[1])))
            s[at["axis"]] = np.shape(a[1])[at["axis"]]
            return np.zeros(s, a[0].dtype)
        return np.take_along_axis(a[0], a[1], axis=at["axis"])
    if op in ("min", "prod"):
        kw = {"initial": np.inf} if op == "min" else {}
        fn = np.min if op == "min" else np.prod
        r = fn(a[0], axis=at["axis"], keepdims=at["keepdims"], **kw)
        return fl(zero_ties(op, a[0], r, at["axis"], at["keepdims"]) if op == "min" else r, ft)
    if op in ("var", "std"):
        fn = np.var if op == "var" else np.std
        return fl(fn(a[0], axis=at["axis"], ddof=at["ddof"], keepdims=at["keepdims"]), ft)
    if op in ("argmax", "argmin"):
        return _arg(np.argmax if op == "argmax" else np.argmin, a[0], at["axis"], at["keepdims"])
    if op == "einsum":
        return fl(np.einsum(at["spec"], *a, optimize=EINSUM_OPTIMIZE), ft)
    if op == "uniform":
        u = philox_uniform(a[0], _concrete(n.shape, batch), n.dtype)
        lo, hi = at["minval"], at["maxval"]
        return fl(u if (lo, hi) == (0.0, 1.0) else lo + (hi - lo) * u, ft)
    raise KeyError(f"no reference for {op}")


def moved_ids(n, ids, batch):
    """Where each output element of a value-moving node comes from: the op applied to
    arrays of element ids (one numbering over all operands; -1: a pad's constant)."""
    op, at = n.op, n.attrs
    if op == "pad":
        return np.pad(ids[0], at["widths"], constant_values=-1)
    if op == "concat":
        return np.concatenate(ids, axis=at["axis"])
    if op == "getitem":
        return ids[0][at["key"]]
    return None


def build(n, a):
    op, at = n.op, n.attrs
    if op == "getitem":
        return a[0][at["key"]]
    if op == "pad":
        return aj.pad(a[0], at["widths"], constant_values=at["value"])
    if op == "concat":
        return aj.concatenate(list(a), axis=at["spelled_axis"])
    if op == "take":
        return aj.take(a[0], a[1], axis=at["spelled_axis"])
    if op == "take_along":
        return aj.take_along_axis(a[0], a[1], axis=at["spelled_axis"])
    if op in REDUCE_MORE:
        kw = {"ddof": at["ddof"]} if op in ("var", "std") else {}
        return getattr(aj, op)(a[0], axis=at["spelled_axis"], keepdims=at["keepdims"], **kw)
    if op == "einsum":
        return aj.einsum(at["spec"], *a)
    if op == "uniform":
        return aj.random.uniform(a[0], n.shape, n.dtype, at["minval"], at["maxval"])
    raise KeyError(op)


def key_text(key) -> str:
    def one(k):
        if k is None:
            return "None"
        if k is Ellipsis:
            return "..."
        if isinstance(k, slice):
            s = ("" if k.start is None else str(k.start)) + ":" + \
                ("" if k.stop is None else str(k.stop))
            return s + (f":{k.step}" if k.step not in (None, 1) else "")
        return str(k)
    return ", ".join(one(k) for k in key) if key else "()"


def source(n, a):
    op, at = n.op, n.attrs
    if op == "getitem":
        return f"{a[0]}[{key_text(at['key'])}]"
    if op == "pad":
        return f"aj.pad({a[0]}, {at['widths']!r}, constant_values={at['value']!r})"
    if op == "concat":
        return f"aj.concatenate([{', '.join(a)}], axis={at['spelled_axis']})"
    if op == "take":
        return f"aj.take({a[0]}, {a[1]}, axis={at['spelled_axis']})"
    if op == "take_along":
        return f"aj.take_along_axis({a[0]}, {a[1]}, axis={at['spelled_axis']})"
    if op in REDUCE_MORE:
        dd = f", ddof={at['ddof']}" if op in ("var", "std") else ""
        return f"aj.{op}({a[0]}, axis={at['spelled_axis']}{dd}, keepdims={at['keepdims']})"
    if op == "einsum":
        return f"aj.einsum({at['spec']!r}, {', '.join(a)})"
    if op == "uniform":
        return (f"aj.random.uniform({a[0]}, {n.shape}, {n.dtype!r}, {at['minval']!r}, "
                f"{at['maxval']!r})")
    raise KeyError(op)
