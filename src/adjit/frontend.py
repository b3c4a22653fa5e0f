"""The builder API: inputs, parameters, constants, operators and primitive functions.

This module owns broadcasting and dtype promotion, so the IR below it only ever sees
operands of equal shape and dtype (explicit ``broadcast`` and ``cast`` nodes).

Dtype policy (numpy's promotion, NEP 50): float32 with float64 gives float64 (an
explicit cast node is inserted); Python numbers are "weak" and take the dtype of the
node they meet, so ``x * 2`` stays float32 for a float32 ``x``.

>>> import adjit as aj
>>> x = aj.input("x", (None, 3))
>>> (x * 2 + 1).shape
(None, 3)
"""
from __future__ import annotations

import builtins
import numbers
from typing import Sequence

import numpy as np

from .ir import (FLOAT_DTYPES, ConstValue, DTypeError, Node, ShapeError, TensorType, label,
                 shape_str)
from .ops.registry import REGISTRY, make
from .ops.structural import kept_shape


# --- leaves -----------------------------------------------------------------------------
def _leaf(kind: str, name: str, shape, dtype: str) -> Node:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} name must be a Python identifier, got {name!r}")
    shape = (shape,) if isinstance(shape, int) or shape is None else tuple(shape)
    ttype = TensorType(shape, np.dtype(dtype).name)
    if kind == "param" and ttype.has_batch:
        raise ShapeError(f"param {name!r}: parameters have static shapes, got {shape_str(shape)}")
    return make(kind, (), {"name": name, "type": ttype}, name=name)


def input(name: str, shape=(), dtype: str = "float64") -> Node:
    """Data bound by name at call time.  ``None`` in ``shape`` is the batch dimension."""
    return _leaf("input", name, shape, dtype)


def param(name: str, shape=(), dtype: str = "float64") -> Node:
    """A trainable parameter (static shape), bound by name at call time."""
    return _leaf("param", name, shape, dtype)


def const(value, dtype: str | None = None) -> Node:
    """A constant array baked into the graph."""
    arr = np.asarray(value, dtype=dtype)
    if arr.dtype.kind == "f" and arr.dtype.name not in FLOAT_DTYPES:
        arr = arr.astype("float64")
    return make("const", (), {"value": ConstValue(arr)})


def _lift(x, like: Node | None = None) -> Node:
    """Python numbers and arrays become constants; numbers take ``like``'s dtype (weak)."""
    if isinstance(x, Node):
        return x
    if isinstance(x, (bool, np.bool_)):
        return const(x, "bool")
    if isinstance(x, numbers.Number):
        dtype = like.dtype if like is not None and like.dtype in FLOAT_DTYPES else "float64"
        return const(x, dtype)
    if isinstance(x, np.ndarray):
        return const(x)
    raise TypeError(f"cannot use {type(x).__name__} in an adjit expression")


# --- broadcasting and promotion --------------------------------------------------------
def broadcast_shapes(nodes: Sequence[Node], where: str) -> tuple:
    """numpy's rule over the operands' shapes, with None (the batch size) matching None or 1."""
    ndim = builtins.max(n.ndim for n in nodes)
    out = []
    for i in range(1, ndim + 1):
        dims = {n.shape[-i] for n in nodes if i <= n.ndim} - {1}
        if len(dims) > 1:
            shapes = " and ".join(shape_str(n.shape) for n in nodes)
            names = ", ".join(label(n) for n in nodes)
            raise ShapeError(f"{where}: shapes {shapes} do not broadcast ({names})")
        out.append(dims.pop() if dims else 1)
    return tuple(reversed(out))


def broadcast_to(x: Node, shape) -> Node:
    x, shape = _lift(x), tuple(shape)
    return x if x.shape == shape else make("broadcast", (x,), {"shape": shape})


def cast(x: Node, dtype: str) -> Node:
    dtype = np.dtype(dtype).name
    return x if x.dtype == dtype else make("cast", (x,), {"dtype": dtype})


def _promote(nodes: list[Node], where: str) -> list[Node]:
    dtypes = {n.dtype for n in nodes}
    if len(dtypes) == 1:
        return nodes
    if dtypes <= set(FLOAT_DTYPES):
        return [cast(n, "float64") for n in nodes]
    listed = ", ".join(f"{n.dtype} ({label(n)})" for n in nodes)
    raise DTypeError(f"{where}: cannot mix {listed}")


class _Where:
    def __init__(self, op, nodes):
        self.op, self.nodes = op, nodes

    def __str__(self):
        return f"{self.op}({', '.join(label(n) for n in self.nodes)})"


def _elementwise(op: str, *operands) -> Node:
    anchor = next((o for o in operands if isinstance(o, Node) and o.dtype in FLOAT_DTYPES), None)
    nodes = [_lift(o, anchor) for o in operands]
    where = _Where(op, nodes)      # (named only in an error: labels cost on long chains)
    shape = broadcast_shapes(nodes, where)
    # the condition of `where` stays bool; the data operands share one dtype
    k = 1 if op == "where" else 0
    nodes = nodes[:k] + _promote(nodes[k:], where)
    return make(op, [broadcast_to(n, shape) for n in nodes])


# --- elementwise functions -------------------------------------------------------------------
def _from_record(spec) -> None:
    """``aj.<spec.public>``: the elementwise op as a function of its operands (numbers and
    nodes, broadcast and promoted), made from its record."""
    op = spec.name

    if spec.arity == 1:
        def fn(x):
            return _elementwise(op, x)
    elif spec.arity == 2:
        def fn(a, b):
            return _elementwise(op, a, b)
    else:
        def fn(*operands):
            if len(operands) != spec.arity:
                raise TypeError(f"{spec.public}() takes {spec.arity} operands, "
                                f"got {len(operands)}")
            return _elementwise(op, *operands)
    fn.__name__ = fn.__qualname__ = spec.public
    fn.__doc__ = spec.doc or f"Elementwise {spec.public} (numpy's ``{spec.public}``)."
    fn.__module__ = __name__
    globals()[spec.public] = fn


def record_functions() -> dict:
    """The public functions made from op records (elementwise ops naming ``public``):
    ``{name: function}``, defined in this module too."""
    out = {}
    for spec in REGISTRY.values():
        if spec.elementwise and spec.public:
            if spec.public not in globals():
                _from_record(spec)
            out[spec.public] = globals()[spec.public]
    return out


record_functions()


def log(x):
    """Elementwise natural log.

    Stable forms are built where the operand is a sigmoid: ``log(sigmoid(z))`` becomes
    ``-softplus(-z)`` and ``log(1 - sigmoid(z))`` becomes ``-softplus(z)``, equal in exact
    arithmetic, finite for any finite z (the plain forms give -inf, and NaN gradients,
    from |z| ≈ 40 on).  The result is tagged ``meta['rewrite']`` ('log_sigmoid' or
    'log1m_sigmoid'), which the traced stage's ``rewrites`` counts.
    """
    x = _lift(x)
    if x.op == "sigmoid":
        out, rule = -_elementwise("softplus", -x.inputs[0]), "log_sigmoid"
    elif x.op == "sub" and x.inputs[1].op == "sigmoid" and _all_ones(x.inputs[0]):
        out, rule = -_elementwise("softplus", x.inputs[1].inputs[0]), "log1m_sigmoid"
    else:
        return _elementwise("log", x)
    out.meta["rewrite"] = rule
    return out


def _all_ones(node: Node) -> bool:
    while node.op == "broadcast":
        node = node.inputs[0]
    return node.op == "const" and bool(np.all(node.attr("value").array == 1))


def abs(x):  # noqa: A001 - mirrors numpy's name
    """Elementwise absolute value."""
    return _elementwise("abs", x)


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (broadcasting all three)."""
    return _elementwise("where", cond, a, b)


def safe_where(cond, a, b):
    """``where(cond, a, b)`` that starts no double-where mask in ``grad``, for selections
    whose guards would cost every gradient that uses them: cross_entropy's (its branches'
    derivatives stay finite: log_softmax's backward reads only softmax, 0 at a -inf logit)
    and those in the derivatives of relu, maximum and minimum (documented as unguarded)."""
    node = _elementwise("where", cond, a, b)
    node.meta["safe_branches"] = True
    return node


def _comparison(op: str, symbol: str, nan: str):
    def compare(a, b):
        return _elementwise(op, a, b)
    compare.__name__ = compare.__qualname__ = op
    compare.__doc__ = f"Elementwise ``a {symbol} b`` (a bool node; {nan}), as the operator."
    return compare


_FALSE_ON_NAN = "false where either is NaN"
equal = _comparison("equal", "==", _FALSE_ON_NAN)
not_equal = _comparison("not_equal", "!=", "true where either is NaN, as in numpy")
greater = _comparison("greater", ">", _FALSE_ON_NAN)
greater_equal = _comparison("greater_equal", ">=", _FALSE_ON_NAN)
less = _comparison("less", "<", _FALSE_ON_NAN)
less_equal = _comparison("less_equal", "<=", _FALSE_ON_NAN)


def stop_gradient(x: Node) -> Node:
    """Identity in the forward pass; zero derivative."""
    return make("stop_gradient", (x,))


# --- structural functions --------------------------------------------------------------------
def _axes(x: Node, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    norm = []
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ShapeError(f"axis {a} out of range for {label(x)} of shape {shape_str(x.shape)}")
        norm.append(a % x.ndim)
    return tuple(sorted(set(norm)))


def _keep(y: Node, x: Node, axes, keepdims: bool) -> Node:
    return reshape(y, kept_shape(x.shape, axes)) if keepdims else y


def sum(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Sum over ``axis`` (int, tuple or None for all)."""
    x = _lift(x)
    axes = _axes(x, axis)
    y = make("sum", (x,), {"axes": axes}) if axes else x
    return _keep(y, x, axes, keepdims)


def max(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Maximum over ``axis``; the gradient is shared among tied maxima."""
    x = _lift(x)
    axes = _axes(x, axis)
    y = make("max", (x,), {"axes": axes}) if axes else x
    return _keep(y, x, axes, keepdims)


def count(x: Node, axes) -> Node | int:
    """How many elements ``axes`` of ``x`` hold: an int, or a node when the batch is among them."""
    static = int(np.prod([x.shape[a] for a in axes if x.shape[a] is not None], dtype=np.int64))
    batched = any(x.shape[a] is None for a in axes)
    if not batched:
        return static
    n = make("batch_size", (), {"dtype": x.dtype})
    return n * static if static != 1 else n


def mean(x, axis=None, keepdims: bool = False) -> Node:
    """Mean over ``axis``; over the batch dimension it divides by the bound batch size."""
    x = _lift(x)
    axes = _axes(x, axis)
    return sum(x, axes, keepdims) / count(x, axes)


def reshape(x, shape) -> Node:
    """Reshape; ``None`` keeps the batch dimension, one ``-1`` is inferred (static sizes)."""
    x = _lift(x)
    shape = (shape,) if isinstance(shape, int) or shape is None else tuple(shape)
    if -1 in shape:
        known = int(np.prod([d for d in shape if d not in (-1, None)], dtype=np.int64))
        total = int(np.prod([d for d in x.shape if d is not None], dtype=np.int64))
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {label(x)} of shape {shape_str(x.shape)} "
                             f"to {shape_str(shape)}")
        shape = tuple(total // known if d == -1 else d for d in shape)
    return x if shape == x.shape else make("reshape", (x,), {"shape": shape})


def transpose(x, axes: Sequence[int] | None = None) -> Node:
    """Permute axes (reverse them when ``axes`` is None)."""
    x = _lift(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(  # bad axes: the rule
        a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes)      # names them
    return x if perm == tuple(range(x.ndim)) else make("transpose", (x,), {"perm": perm})


def matmul(a, b) -> Node:
    """Matrix product with numpy's N-D rules (see :func:`adjit.ops.products.matmul`)."""
    from .ops.products import matmul as _matmul
    return _matmul(a, b)


def one_hot(labels: Node, depth: int, dtype: str = "float64") -> Node:
    """Integer labels -> one-hot rows of ``depth`` columns."""
    return make("one_hot", (_lift(labels),), {"depth": int(depth), "dtype": np.dtype(dtype).name})


# --- operators on nodes -------------------------------------------------------------------------
def _install_operators():
    def binop(op, reflected=False):
        if reflected:
            return lambda self, other: _elementwise(op, other, self)
        return lambda self, other: _elementwise(op, self, other)

    for name, op in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"),
                     ("pow", "pow"), ("and", "logical_and"), ("or", "logical_or"),
                     ("xor", "logical_xor")):   # & | ^ ~: bool nodes only (DTypeError)
        setattr(Node, f"__{name}__", binop(op))
        setattr(Node, f"__r{name}__", binop(op, reflected=True))
    # Comparisons build bool nodes, as numpy arrays and JAX tracers do (``x == 0.0`` is a
    # node, not False).  Python reflects them itself: ``0.0 < x`` calls ``x.__gt__(0.0)``.
    for name, op in (("gt", "greater"), ("ge", "greater_equal"), ("lt", "less"),
                     ("le", "less_equal")):
        setattr(Node, f"__{name}__", binop(op))

    def equality(op):
        # an operand that is no value (None, a string, ...) is simply not equal: Python
        # falls back to identity, so `node == None` is False and `None in [x, y]` works
        def compare(self, other):
            if not isinstance(other, (Node, numbers.Number, np.ndarray, np.bool_)):
                return NotImplemented
            return _elementwise(op, self, other)
        return compare

    Node.__eq__, Node.__ne__ = equality("equal"), equality("not_equal")
    Node.__neg__ = lambda self: _elementwise("neg", self)
    Node.__invert__ = lambda self: _elementwise("logical_not", self)
    Node.__pos__ = lambda self: self
    Node.__matmul__ = lambda self, other: matmul(self, other)
    Node.__rmatmul__ = lambda self, other: matmul(other, self)
    Node.T = property(lambda self: transpose(self))
    # numpy's array methods (a place for .min() beside .max())
    from .ops import indexing, shaping  # noqa: F811  (they import this module)
    Node.__getitem__ = lambda self, key: indexing.getitem(self, key)
    Node.__iter__ = lambda self: indexing.iterate(self)
    Node.__abs__ = lambda self: abs(self)
    Node.sum, Node.mean, Node.max = sum, mean, max
    Node.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
    Node.transpose = lambda self, *axes: transpose(
        self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes or None)
    Node.squeeze = lambda self, axis=None: shaping.squeeze(self, axis)
    Node.astype = cast
    # Defining __eq__ would drop the hash: nodes stay hashable by identity, so sets and
    # dicts of nodes work (they test identity first; adjit's own code compares nodes with
    # ``is`` and keys them by id, never with ``==``).  ``bool(x == y)`` raises TypeError.
    Node.__hash__ = object.__hash__


_install_operators()
