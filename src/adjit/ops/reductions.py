"""More reductions: min, prod (records like sum and max), argmax/argmin (integer results, no
gradient), and the composites var and std.  numpy semantics, all with ``axis`` (int, tuple,
None, negative) and ``keepdims``.

* ``min``: its gradient is shared equally among tied minima (as max's, and JAX's).
* ``prod``: its gradient is the product of the *other* elements of the slice, zeros
  included, with no division by zero: from the product ``p`` of the nonzero elements and
  the number ``c`` of zeros in the slice, an element gets ``p / x`` when ``c = 0``, ``p``
  when it is the only zero, and 0 otherwise.  Second derivatives are exact with at most
  one zero in the slice; with two or more they miss the terms of the zero pairs.
* ``argmax``/``argmin``: int64 positions (flattened over the reduced axes, as numpy's
  ``axis=None``), ties and NaN as numpy: the first maximum, and the first NaN where there
  is one.  An empty slice (only possible along the batch axis at batch size 0) gives 0.
* ``var(x, axis, ddof)`` = ``sum((x - mean(x))**2) / max(n - ddof, 0)``, ``std = sqrt(var)``
  (``n - ddof <= 0`` gives inf or NaN, as numpy; the gradient of ``std`` where ``var``
  is 0 is not finite, as in JAX).
"""
from __future__ import annotations

import numpy as np

from ..ir import FLOAT_DTYPES, INT_DTYPES, DTypeError, Node, ShapeError, TensorType, label, \
    shape_str
from .registry import Op, make, register
from .structural import (_reduce_rule, _reduce_support, _unreduce, extremum_jvp, extremum_vjp,
                         kept_shape)


def _F():
    from .. import frontend
    return frontend


# --- min and prod ---------------------------------------------------------------------------
def _prod_vjp(node, g, needs):
    # product of the others: p / x without zeros (p: product of the nonzero elements); with
    # one zero z, p at z and x_z · p / x elsewhere (x_z is 0, but carries its derivative, so
    # the second derivative is exact too); with two or more zeros, 0 (second derivatives
    # there are not: documented)
    F, x, axes = _F(), node.inputs[0], node.attr("axes")
    zero = F.equal(x, 0.0)
    nonzero = F.where(zero, F.const(1.0, x.dtype), x)
    zeros = _unreduce(F.sum(F.where(zero, F.const(1.0, x.dtype), 0.0), axis=axes), x, axes)
    p = _unreduce(make("prod", (nonzero,), {"axes": axes}), x, axes)
    the_zero = _unreduce(F.sum(F.where(zero, x, 0.0), axis=axes), x, axes)
    others = F.where(F.equal(zeros, 0.0), p / nonzero,
                     F.where(F.equal(zeros, 1.0), F.where(zero, p, the_zero * p / nonzero),
                             0.0))
    return [_unreduce(g, x, axes) * others]


def _prod_jvp(node, tangents):
    """Σ ẋ · (product of the others): the VJP's weights (its cotangent all ones) summed
    against the tangent, so zeros in the slice get the same care."""
    F, x, axes, t = _F(), node.inputs[0], node.attr("axes"), tangents[0]
    if t is None:
        return None
    others = _prod_vjp(node, F.broadcast_to(F.const(1.0, node.dtype), node.shape), [True])[0]
    return make("sum", (t * others,), {"axes": axes})


register(Op("min", _reduce_rule("min"),
            lambda args, node, env: np.min(args[0], axis=node.attr("axes"), initial=np.inf
                                           ).astype(node.dtype),
            extremum_vjp, jvp=extremum_jvp, arity=1, support=_reduce_support,
            latex=r"\min"))
register(Op("prod", _reduce_rule("prod"),
            lambda args, node, env: np.prod(args[0], axis=node.attr("axes")).astype(node.dtype),
            _prod_vjp, jvp=_prod_jvp, arity=1, support=_reduce_support, display="Π", latex=r"\prod"))


# --- argmax / argmin ------------------------------------------------------------------------
def _arg_rule(name):
    def infer(inputs, attrs):
        (x,), axes = inputs, attrs["axes"]
        where = f"{name} of {label(x)} with shape {shape_str(x.shape)}"
        if any(not 0 <= a < x.ndim for a in axes) or len(set(axes)) != len(axes):
            raise ShapeError(f"{where}: bad axes {axes}")
        if x.dtype not in FLOAT_DTYPES + INT_DTYPES:
            raise DTypeError(f"{where}: needs a float or integer dtype, got {x.dtype}")
        if any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"{where}: attempt to get {name} of an empty sequence")
        return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), "int64")
    return infer


def _arg_numpy(fn):
    def run(args, node, env):
        x, axes = args[0], node.attr("axes")
        rest = [a for a in range(x.ndim) if a not in axes]
        moved = np.transpose(x, rest + list(axes))
        r = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        flat = moved.reshape(moved.shape[:len(rest)] + (r,))
        if flat.shape[-1] == 0:
            return np.zeros(flat.shape[:-1], dtype=np.int64)
        return fn(flat, axis=-1).astype(np.int64)
    return run


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    register(Op(_name, _arg_rule(_name), _arg_numpy(_fn), lambda node, g, needs: [None],
                arity=1, differentiable=False, latex=rf"\operatorname{{{_name}}}"))


# --- public functions ----------------------------------------------------------------------
def _reduce(op: str, x, axis, keepdims: bool) -> Node:
    F = _F()
    x = F._lift(x)
    axes = F._axes(x, axis)
    y = make(op, (x,), {"axes": axes}) if axes else x
    return F.reshape(y, kept_shape(x.shape, axes)) if keepdims else y


def min(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001 - numpy's name
    """Minimum over ``axis`` (numpy's ``np.min``); the gradient is shared among tied minima."""
    return _reduce("min", x, axis, keepdims)


def prod(x, axis=None, keepdims: bool = False) -> Node:
    """Product over ``axis`` (numpy's ``np.prod``); its gradient is exact with zeros in
    the slice (the product of the other elements, no division by zero)."""
    return _reduce("prod", x, axis, keepdims)


def var(x, axis=None, ddof: int = 0, keepdims: bool = False) -> Node:
    """Variance over ``axis``, ``sum((x - mean)**2) / max(n - ddof, 0)`` (numpy's ``np.var``);
    over the batch axis ``n`` is the bound batch size."""
    F = _F()
    x = F._lift(x)
    axes = F._axes(x, axis)
    d = x - F.mean(x, axes, keepdims=True)
    n = F.count(x, axes)
    # numpy's divisor max(n - ddof, 0): ddof >= n gives inf or NaN, never a negative variance
    dof = n - ddof if ddof <= 0 else \
        max(n - ddof, 0) if isinstance(n, int) else F.maximum(n - ddof, 0.0)
    return F.sum(d * d, axes, keepdims) / dof


def std(x, axis=None, ddof: int = 0, keepdims: bool = False) -> Node:
    """Standard deviation, ``sqrt(var(x, axis, ddof))`` (numpy's ``np.std``)."""
    return _F().sqrt(var(x, axis, ddof, keepdims))


def _arg(op: str, x, axis, keepdims: bool) -> Node:
    F = _F()
    x = F._lift(x)
    if axis is not None and not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int or None (numpy), got {axis!r}")
    axes = F._axes(x, axis) if x.ndim else ()
    if not axes:     # a 0-d array: position 0
        y = F.const(np.int64(0))
        return F.reshape(y, (1,) * x.ndim) if keepdims and x.ndim else y
    y = make(op, (x,), {"axes": axes})
    return F.reshape(y, kept_shape(x.shape, axes)) if keepdims else y


def argmax(x, axis=None, keepdims: bool = False) -> Node:
    """Position of the maximum along ``axis`` (int or None: over the flattened array), an
    int64 node with no gradient (numpy's ``np.argmax``): the first maximum among ties,
    the first NaN where a NaN is present."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims: bool = False) -> Node:
    """Position of the minimum along ``axis`` (numpy's ``np.argmin``); see :func:`argmax`."""
    return _arg("argmin", x, axis, keepdims)


# --- Node methods, as on numpy arrays ---------------------------------------------------------
def _install_methods():
    Node.min = lambda self, axis=None, keepdims=False: min(self, axis, keepdims)
    Node.prod = lambda self, axis=None, keepdims=False: prod(self, axis, keepdims)
    Node.var = lambda self, axis=None, ddof=0, keepdims=False: var(self, axis, ddof, keepdims)
    Node.std = lambda self, axis=None, ddof=0, keepdims=False: std(self, axis, ddof, keepdims)
    Node.argmax = lambda self, axis=None, keepdims=False: argmax(self, axis, keepdims)
    Node.argmin = lambda self, axis=None, keepdims=False: argmin(self, axis, keepdims)


_install_methods()

__all__ = ["min", "prod", "var", "std", "argmax", "argmin"]
