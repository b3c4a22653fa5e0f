"""A small expression IR for the differential fuzzer, independent of adjit's op records.

Each :class:`E` node names an operation and can be (1) built into an adjit graph with the
public front end, (2) evaluated by its own numpy reference (written here from the maths,
not from adjit's sympy forms or derivative rules), and (3) printed as the adjit source
that builds it, so a failing case is its own reproducer.

Composites (softmax, log_softmax, logsumexp, mse, cross_entropy) are single nodes here:
the reference computes them from their definitions (scipy's conventions for infinities),
so a NaN that adjit's decomposition produces where the maths is finite shows up.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

import adjit as aj
import fuzz_ir_more as more
import fuzz_ir_windows as windows
from adjit import frontend as F


@dataclass(eq=False)
class E:
    op: str                          # see BUILD / REF below
    args: tuple = ()
    attrs: dict = field(default_factory=dict)
    shape: tuple = ()                # None: the batch dimension
    dtype: str = "float64"

    def walk(self, seen=None):
        """Every node once, children before parents."""
        seen = set() if seen is None else seen
        if id(self) in seen:
            return
        seen.add(id(self))
        for a in self.args:
            yield from a.walk(seen)
        yield self


def leaf(name, shape, dtype="float64", kind="input", role="float", **attrs):
    return E("leaf", (), dict(name=name, kind=kind, role=role, **attrs), tuple(shape), dtype)


# --- numpy references, by op name ---------------------------------------------------------
def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


ELEMENTWISE_REF = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.where(np.isnan(x), x, np.maximum(x, 0)),
    "softplus": lambda x: np.logaddexp(np.zeros_like(x), x), "sqrt": np.sqrt, "abs": np.abs,
    "sign": np.sign, "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
    "equal": np.equal, "not_equal": np.not_equal, "where": np.where,
    **more.ELEMENTWISE_MORE,
}
COMPARE_OPS = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


def _lse(x, axis, keepdims=False):
    """log(sum(exp(x))) with scipy's conventions: an all -inf slice gives -inf."""
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _log_softmax(x, axis):
    """x - logsumexp(x); a slice holding +inf is NaN throughout (inf/inf, as PyTorch)."""
    top = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return np.where(top == np.inf, np.nan, x - _lse(x, axis, keepdims=True))


def _xent(z, t):
    ls = _log_softmax(z, -1)
    if t.dtype.kind in "iu":
        picked = np.take_along_axis(ls, t[..., None].astype(np.int64), -1)[..., 0]
        return -np.mean(picked) + 0.0          # +0 for a zero loss, as below
    # 0 log 0 = 0.  + 0.0: a loss of exactly 0 is +0 (-mean(...) of zeros would be -0.0, a
    # sign of zero the maths does not give and adjit's contract does not promise)
    return -np.mean(np.sum(np.where(t == 0, 0.0, t * ls), axis=-1)) + 0.0


def _concrete(shape, batch):
    return tuple(batch if d is None else d for d in shape)


def evaluate(root: E, values: dict, batch: int, dtype: str = "float64", smooth=False):
    """Every node's value (dict id(node) -> array) by the numpy reference.

    ``dtype``: the float type the arithmetic runs in (float64 is the oracle; float32
    estimates the rounding of a float32 model).  ``smooth``: casts are the identity (finite
    differences must not see float32 rounding steps).
    """
    out = {}
    ft = np.dtype(dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for n in root.walk():
            a = [out[id(c)] for c in n.args]
            out[id(n)] = _eval1(n, a, values, batch, ft, smooth)
    return out


def _fl(x, ft):
    x = np.asarray(x)
    return x.astype(ft) if x.dtype.kind == "f" else x


def _eval1(n, a, values, batch, ft, smooth):
    op, at = n.op, n.attrs
    if op == "leaf":
        return _fl(values[at["name"]], ft)
    if op == "num":
        return np.asarray(at["value"], ft)
    if op == "carr":
        return _fl(at["value"], ft)
    if op in ELEMENTWISE_REF:
        return _fl(ELEMENTWISE_REF[op](*a), ft)
    if op in ("sum", "mean", "max"):
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max}[op]
        kw = {"initial": -np.inf} if op == "max" else {}
        r = fn(a[0], axis=at["axis"], keepdims=at["keepdims"], **kw)
        return _fl(more.zero_ties(op, a[0], r, at["axis"], at["keepdims"]) if op == "max" else r,
                   ft)
    if op == "reshape":
        return np.reshape(a[0], _concrete(n.shape, batch))
    if op == "broadcast_to":
        return np.broadcast_to(a[0], _concrete(n.shape, batch))
    if op == "transpose":
        return np.transpose(a[0], at["perm"])
    if op == "matmul":
        return _fl(np.matmul(a[0], a[1]), ft)
    if op == "cast":
        return a[0] if smooth else a[0].astype(at["dtype"]).astype(ft)
    if op == "softmax":
        return _fl(np.exp(_log_softmax(a[0], at["axis"])), ft)
    if op == "log_softmax":
        return _fl(_log_softmax(a[0], at["axis"]), ft)
    if op == "logsumexp":
        return _fl(_lse(a[0], at["axis"], at["keepdims"]), ft)
    if op == "mse":
        return _fl(np.mean((a[0] - a[1]) ** 2), ft)
    if op == "xent":
        return _fl(_xent(a[0], a[1]), ft)
    if op == "one_hot":
        return (a[0][..., None] == np.arange(at["depth"])).astype(ft)
    if op == "to_float":
        return a[0].astype(ft)
    if op in more.OPS:
        return more.reference(n, a, batch, ft, _fl)
    if op in windows.OPS:
        return windows.reference(n, a, batch, ft, _fl)
    if op == "dropout":
        rate = at["rate"]
        if rate == 0.0:
            return a[0]
        keep = dropout_mask(a[1], np.shape(a[0]), n.dtype, rate)
        return np.where(keep, a[0] * (0.0 if rate == 1.0 else 1.0 / (1.0 - rate)), 0.0).astype(ft)
    raise KeyError(f"no reference for {op}")


def dropout_mask(key, shape, dtype, rate):
    """The kept elements of aj.dropout: numpy's Philox stream of the key (adjit's
    documented mapping), uniform in the model's dtype, >= rate."""
    k0, k1 = (int(v) for v in key)
    n = int(np.prod(shape, dtype=np.int64))
    w = np.random.Philox(key=np.array([k0 | k1 << 32, 0], np.uint64),
                         counter=np.zeros(4, np.uint64)).random_raw(n) if n else \
        np.zeros(0, np.uint64)
    if dtype == "float32":
        u = (w >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
        return (u >= np.float32(rate)).reshape(shape)
    return ((w >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 >= rate).reshape(shape)


# --- building the adjit graph ------------------------------------------------------------------
def build(root: E, memo=None):
    """The adjit node of ``root`` (shared sub-expressions stay shared)."""
    memo = {} if memo is None else memo
    for n in root.walk():
        if id(n) not in memo:
            memo[id(n)] = _build1(n, [memo[id(c)] for c in n.args])
    return memo[id(root)], memo


def _build1(n, a):
    op, at = n.op, n.attrs
    if op == "leaf":
        make = aj.param if at["kind"] == "param" else aj.input
        return make(at["name"], n.shape, n.dtype)
    if op == "num":
        return at["value"]                         # a Python number: weak dtype
    if op == "carr":
        return aj.const(np.asarray(at["value"], dtype=n.dtype))
    if op == "neg":
        return -a[0]
    if op == "pow":
        return a[0] ** a[1]                        # the operator, as users write it
    if op in ELEMENTWISE_REF:
        return F._elementwise(op, *a)              # registry ops, comparisons included
    if op in ("sum", "mean", "max"):
        return getattr(aj, op)(a[0], axis=at["axis"], keepdims=at["keepdims"])
    if op == "reshape":
        return aj.reshape(a[0], n.shape)
    if op == "broadcast_to":
        return aj.broadcast_to(a[0], n.shape)
    if op == "transpose":
        return aj.transpose(a[0], at["perm"])
    if op == "matmul":
        return a[0] @ a[1]
    if op == "cast":
        return aj.cast(a[0], at["dtype"])
    if op in ("softmax", "log_softmax"):
        return getattr(aj, op)(a[0], axis=at["axis"])
    if op == "logsumexp":
        return aj.logsumexp(a[0], axis=at["axis"], keepdims=at["keepdims"])
    if op == "mse":
        return aj.mse(a[0], a[1])
    if op == "xent":
        return aj.cross_entropy(a[0], a[1])
    if op == "one_hot":
        return aj.one_hot(a[0], at["depth"], n.dtype)
    if op == "to_float":
        return aj.cast(a[0], n.dtype)
    if op == "dropout":
        return aj.dropout(a[0], at["rate"], a[1])
    if op in more.OPS:
        return more.build(n, a)
    if op in windows.OPS:
        return windows.build(n, a)
    raise KeyError(op)


# --- source text (reproducers) -------------------------------------------------------------------
def source(root: E) -> str:
    """Python source that builds ``root`` with adjit (shared nodes get a name)."""
    users = {}
    for n in root.walk():
        for c in n.args:
            users[id(c)] = users.get(id(c), 0) + 1
    lines, names = [], {}
    for n in root.walk():
        text = _src1(n, [names[id(c)] for c in n.args])
        if n.op == "leaf":
            lines.append(f"{n.attrs['name']} = {text}")
            names[id(n)] = n.attrs["name"]
        elif users.get(id(n), 0) > 1 or n is root:
            v = "out" if n is root else f"t{len(lines)}"
            lines.append(f"{v} = {text}")
            names[id(n)] = v
        else:
            names[id(n)] = text
    return "\n".join(lines)


def _src1(n, a):
    op, at = n.op, n.attrs
    if op == "leaf":
        return f"aj.{at['kind']}({at['name']!r}, {n.shape}, {n.dtype!r})"
    if op == "num":
        v = at["value"]
        return (f"({v!r})" if v < 0 else repr(v)) if np.isfinite(v) else f"float('{v}')"
    if op == "carr":
        return f"aj.const(np.array({np.asarray(at['value']).tolist()}, {n.dtype!r}))"
    if op == "neg":
        return f"(-{a[0]})"
    if op == "pow":
        return f"({a[0]} ** {a[1]})"
    if op in ELEMENTWISE_REF:
        return f"F._elementwise({op!r}, {', '.join(a)})"
    if op in ("sum", "mean", "max"):
        return f"aj.{op}({a[0]}, axis={at['axis']}, keepdims={at['keepdims']})"
    if op in ("reshape", "broadcast_to"):
        return f"aj.{op}({a[0]}, {n.shape})"
    if op == "transpose":
        return f"aj.transpose({a[0]}, {at['perm']})"
    if op == "matmul":
        return f"({a[0]} @ {a[1]})"
    if op == "cast":
        return f"aj.cast({a[0]}, {at['dtype']!r})"
    if op in ("softmax", "log_softmax"):
        return f"aj.{op}({a[0]}, axis={at['axis']})"
    if op == "logsumexp":
        return f"aj.logsumexp({a[0]}, axis={at['axis']}, keepdims={at['keepdims']})"
    if op == "mse":
        return f"aj.mse({a[0]}, {a[1]})"
    if op == "xent":
        return f"aj.cross_entropy({a[0]}, {a[1]})"
    if op == "one_hot":
        return f"aj.one_hot({a[0]}, {at['depth']}, {n.dtype!r})"
    if op == "to_float":
        return f"aj.cast({a[0]}, {n.dtype!r})"
    if op == "dropout":
        return f"aj.dropout({a[0]}, {at['rate']!r}, {a[1]})"
    if op in more.OPS:
        return more.source(n, a)
    if op in windows.OPS:
        return windows.source(n, a)
    raise KeyError(op)
