"""Random graphs for the fuzz test: ops drawn from the op registry, shapes with a batch
dimension and broadcasting, float32 and float64, int labels and bool masks.

:func:`draw_case` builds, from a hypothesis ``data`` object, a model (an output node and
the scalar loss ``sum(output * u)`` with a random cotangent ``u``), the float leaves to
differentiate, and the values to call it with.  Elementwise ops come from the registry
with the test domain it declares: an operand is mapped into a restricted domain with
``lo + (hi - lo) * sigmoid(e)`` (as the parity tests do).  :func:`near_kink` says whether
the values sit within ``eps`` of a point where the model is not differentiable (a kink
declared in the registry, a comparison flipping, a tie in a max), where finite
differences do not measure the derivative.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import adjit as aj
from adjit import frontend as F
from adjit.ops import REGISTRY

DEFAULT_DOMAIN = (-2.0, 2.0)
# float operands only; the logical ops (bool operands) combine comparisons in ``where``
_FLOAT = {n: op for n, op in REGISTRY.items() if op.elementwise and "operands" not in op.extra}
UNARY = sorted(n for n, op in _FLOAT.items() if op.arity == 1)
BINARY = sorted(n for n, op in _FLOAT.items() if op.arity == 2 and op.differentiable)
COMPARE = sorted(n for n, op in _FLOAT.items() if op.arity == 2 and not op.differentiable)
LOGICAL = sorted(n for n, op in REGISTRY.items() if op.elementwise and "operands" in op.extra)
STEPS = {"floor": 0.0, "ceil": 0.0, "round": 0.5}     # piecewise constant: jumps at k + this
MAX_DEPTH = 4
CONSTANTS = [0.0, 1.0, -1.0, 0.5, 2.0, 3.0]     # the identities fold knows, and others


@dataclass
class Case:
    dtype: str
    n: int
    batch: int
    leaves: dict = field(default_factory=dict)     # name -> node
    used: set = field(default_factory=set)         # names of leaves the model reads
    values: dict = field(default_factory=dict)
    output: object = None
    loss: object = None

    def leaf(self, kind: str, name: str, shape, dtype=None):
        if name not in self.leaves:
            make = aj.param if kind == "param" else aj.input
            self.leaves[name] = make(name, shape, dtype or self.dtype)
        self.used.add(name)
        return self.leaves[name]

    @property
    def wrt(self):
        return [self.leaves[k] for k in sorted(self.used)
                if self.leaves[k].dtype in ("float32", "float64") and k != "u"]


def _into_domain(e, op_name):
    lo, hi = REGISTRY[op_name].domain
    if (lo, hi) == DEFAULT_DOMAIN or not isinstance(e, aj.Node):
        return e
    return lo + (hi - lo) * aj.sigmoid(e)


def _unary(name, e):
    e = _into_domain(e, name)
    return -e if name == "neg" else F._elementwise(name, e)


def expr(data, case: Case, shape: tuple, depth: int):
    """A random expression of the given shape (batch dimension None)."""
    n = case.n
    if shape == (None, 1) and n != 1:             # a column, broadcast along the features
        return aj.reshape(expr(data, case, (None,), depth), (None, 1))
    kinds = ["leaf"] if depth <= 0 else ["leaf", "unary", "unary", "binary", "binary",
                                         "where", "structural", "cast", "clip"]
    kind = data.draw(st.sampled_from(kinds))
    if kind == "leaf":
        return _leaf(data, case, shape)
    if kind == "unary":
        return _unary(data.draw(st.sampled_from(UNARY)), expr(data, case, shape, depth - 1))
    if kind == "binary":
        op = data.draw(st.sampled_from(BINARY))
        a = expr(data, case, shape, depth - 1)
        if data.draw(st.integers(0, 3)) == 0:     # a Python number: folding identities
            b = data.draw(st.sampled_from(CONSTANTS))
            if op in ("div", "pow") and b <= 0:
                b = 2.0
        else:
            b = expr(data, case, data.draw(st.sampled_from(_broadcastable(shape, n))),
                     depth - 1)
        if data.draw(st.booleans()):
            a, b = b, a
        return F._elementwise(op, _into_domain(a, op), _into_domain(b, op))
    if kind == "where":
        if shape == (None, n) and data.draw(st.booleans()):
            cond = case.leaf("input", "mask", (None, n), "bool")
        else:
            cmp = data.draw(st.sampled_from(COMPARE))
            cond = F._elementwise(cmp, expr(data, case, shape, depth - 2),
                                  expr(data, case, shape, depth - 2))
            logical = data.draw(st.sampled_from([None, None] + LOGICAL))
            if logical == "logical_not":
                cond = aj.logical_not(cond)
            elif logical:
                cond = F._elementwise(logical, cond, expr(data, case, shape, depth - 2) > 0.0)
        return aj.where(cond, expr(data, case, shape, depth - 1),
                        expr(data, case, data.draw(st.sampled_from(_broadcastable(shape, n))),
                             depth - 1))
    if kind == "clip":
        lo = data.draw(st.sampled_from([-1.0, -0.5, 0.0]))
        return aj.clip(expr(data, case, shape, depth - 1), lo,
                       data.draw(st.sampled_from([0.5, 1.0, lo])))
    if kind == "cast":
        other = "float32" if case.dtype == "float64" else "float64"
        return aj.cast(aj.cast(expr(data, case, shape, depth - 1), other), case.dtype)
    return _structural(data, case, shape, depth)


def _broadcastable(shape, n):
    """Shapes whose operands broadcast to ``shape`` without changing it."""
    if shape == (None, n):
        return [(None, n), (n,), (), (None, 1)]
    return [shape, ()]


def _leaf(data, case: Case, shape):
    n = case.n
    options = {(None, n): [("input", "x"), ("input", "y")], (n,): [("param", "w"), ("param", "v")],
               (): [("param", "s")], (None,): [("input", "t")]}[shape]
    kind, name = data.draw(st.sampled_from(options))
    return case.leaf(kind, name, shape)


def _structural(data, case: Case, shape, depth):
    n = case.n
    sub = lambda s: expr(data, case, s, depth - 1)                      # noqa: E731
    if shape == (None, n):
        pick = data.draw(st.sampled_from(["matmul", "softmax", "log_softmax", "reshape",
                                          "transpose2"]))
        if pick == "matmul":
            return sub((None, n)) @ case.leaf("param", "W", (n, n))
        if pick in ("softmax", "log_softmax"):
            return getattr(aj, pick)(sub((None, n)), axis=1)
        if pick == "reshape":                  # a row vector broadcast over the batch
            return sub((None, n)) * aj.reshape(sub((n,)), (1, n))
        return aj.transpose(aj.transpose(sub((None, n)) + 0.5))
    if shape == (n,):
        pick = data.draw(st.sampled_from(["sum", "mean", "max", "gram"]))
        if pick == "gram":
            return aj.sum(aj.transpose(sub((None, n))) @ sub((None, n)), axis=0)
        return getattr(aj, pick)(sub((None, n)), axis=0)
    if shape == (None,):
        pick = data.draw(st.sampled_from(["sum", "mean", "max", "logsumexp"]))
        return getattr(aj, pick)(sub((None, n)), axis=1)
    pick = data.draw(st.sampled_from(["sum", "mean", "max", "xent"]))   # shape ()
    if pick == "xent":
        return aj.cross_entropy(sub((None, n)), case.leaf("input", "lab", (None,), "int64"))
    return getattr(aj, pick)(sub(data.draw(st.sampled_from([(None, n), (n,), (None,)]))))


def draw_case(data) -> Case:
    case = Case(dtype=data.draw(st.sampled_from(["float64", "float64", "float64", "float32"])),
                n=data.draw(st.integers(1, 3)), batch=data.draw(st.sampled_from([1, 2, 3, 5])))
    shape = data.draw(st.sampled_from([(None, case.n), (case.n,), (None,), ()]))
    case.output = expr(data, case, shape, MAX_DEPTH)
    u = case.leaf("input", "u", case.output.shape)
    case.loss = aj.sum(case.output * u)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for name in sorted(case.used):
        node = case.leaves[name]
        full = tuple(case.batch if d is None else d for d in node.shape)
        if node.dtype == "bool":
            v = rng.random(full) < 0.5
        elif node.dtype == "int64":
            v = rng.integers(0, case.n, full)
        else:
            v = rng.standard_normal(full).astype(node.dtype)
        case.values[name] = v
    return case


def near_kink(graph: aj.Graph, vals: dict, eps: float) -> bool:
    """True if some non-differentiable point is within ``eps`` of the values."""
    for n in graph.order():
        ins = [np.asarray(vals[i.id], dtype=float) for i in n.inputs]
        spec = REGISTRY[n.op]
        if n.op in COMPARE or n.op in ("maximum", "minimum"):
            gap = np.abs(ins[0] - ins[1])
        elif spec.extra.get("kinks") is not None:
            gap = np.abs(spec.extra["kinks"](*ins))
        elif n.op == "sign":
            gap = np.abs(ins[0])
        elif n.op in STEPS:
            q = ins[0] - STEPS[n.op]
            gap = np.abs(q - np.round(q))
        elif n.op == "max":
            if all(u.op == "stop_gradient" for u in graph.users(n)):
                continue                         # the max-shift of a stable softmax
            x, axes = ins[0], n.attr("axes")
            moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
            flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
            if flat.shape[-1] < 2:
                continue
            top2 = np.sort(flat, axis=-1)[..., -2:]
            gap = top2[..., 1] - top2[..., 0]
        else:
            continue
        if gap.size and float(np.min(gap)) < eps:
            return True
    return False
