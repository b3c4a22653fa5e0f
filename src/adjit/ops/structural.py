"""Structural ops: leaves, shape movement, reductions, matmul.  One record each.

Shapes may hold ``None``, the batch dimension, bound at call time; ``env.batch`` is its
value in the interpreter.
"""
from __future__ import annotations

import numpy as np

from ..ir import (DTYPES, FLOAT_DTYPES, INT_DTYPES, DTypeError, ShapeError, TensorType,
                  label, shape_str)
from .registry import Op, register
from .tangents import cast_jvp, product_rule, through_first


def _F():
    from .. import frontend
    return frontend


def _concrete(node, env):
    return node.type.concrete(env.batch)


# --- leaves -----------------------------------------------------------------------------
def _leaf_rule(inputs, attrs):
    return attrs["type"]


register(Op("input", _leaf_rule, lambda args, node, env: env.values[node.attr("name")],
            arity=0, doc="data bound by name at call time"))
register(Op("param", _leaf_rule, lambda args, node, env: env.values[node.attr("name")],
            arity=0, doc="a trainable parameter bound by name at call time"))
register(Op("const", lambda inputs, attrs: TensorType(attrs["value"].array.shape,
                                                      attrs["value"].array.dtype.name),
            lambda args, node, env: node.attr("value").array, arity=0))
register(Op("batch_size", lambda inputs, attrs: TensorType((), attrs["dtype"]),
            lambda args, node, env: np.asarray(env.require_batch(), dtype=node.dtype), arity=0,
            doc="the bound batch size as a scalar (for means over the batch)"))


# --- broadcast (numpy rule: right-aligned) -----------------------------------------------------
def broadcast_axes(in_shape: tuple, out_shape: tuple) -> tuple[int, ...]:
    """Axes of out_shape that broadcasting created or stretched (what the VJP sums)."""
    lead = len(out_shape) - len(in_shape)
    stretched = [lead + i for i, d in enumerate(in_shape) if d == 1 and out_shape[lead + i] != 1]
    return tuple(range(lead)) + tuple(stretched)


def _broadcast_rule(inputs, attrs):
    (x,), shape = inputs, attrs["shape"]
    lead = len(shape) - x.ndim
    ok = lead >= 0 and all(d == 1 or d == shape[lead + i] for i, d in enumerate(x.shape))
    if not ok:
        raise ShapeError(f"cannot broadcast {label(x)} of shape {shape_str(x.shape)} "
                         f"to {shape_str(shape)}")
    return TensorType(shape, x.dtype)


def _broadcast_vjp(node, g, needs):
    x = node.inputs[0]
    axes = broadcast_axes(x.shape, node.shape)
    summed = _F().sum(g, axis=axes) if axes else g
    return [_F().reshape(summed, x.shape) if summed.shape != x.shape else summed]


# --- supports (see Op.support): where a cotangent may be nonzero, mapped back through an op
def any_over(m, axes, dtype):
    """Whether the bool node ``m`` holds a true element along ``axes`` (reduced away).
    Exact: a sum of 0s and 1s is positive iff one is 1."""
    F = _F()
    ones = F.where(m, F.const(1.0, dtype), 0.0)
    return F.sum(ones, axis=tuple(axes)) > 0.0


def _broadcast_support(node, k, m):
    x = node.inputs[0]
    axes = broadcast_axes(x.shape, node.shape)
    hit = any_over(m, axes, node.dtype) if axes else m
    return _F().reshape(hit, x.shape)


register(Op("broadcast", _broadcast_rule,
            lambda args, node, env: np.broadcast_to(args[0], _concrete(node, env)),
            _broadcast_vjp, jvp=through_first, arity=1, support=_broadcast_support,
            zero_preserving=True,
            linear=True, moves_values=True))


# --- reshape / transpose ------------------------------------------------------------------
def _static_size(shape):
    return int(np.prod([d for d in shape if d is not None], dtype=np.int64))


def _reshape_rule(inputs, attrs):
    (x,), shape = inputs, attrs["shape"]
    if (x.shape.count(None) != shape.count(None)
            or _static_size(x.shape) != _static_size(shape)):
        raise ShapeError(f"cannot reshape {label(x)} of shape {shape_str(x.shape)} "
                         f"to {shape_str(shape)}")
    return TensorType(shape, x.dtype)


register(Op("reshape", _reshape_rule,
            lambda args, node, env: np.reshape(args[0], _concrete(node, env)),
            lambda node, g, needs: [_F().reshape(g, node.inputs[0].shape)], arity=1,
            jvp=through_first,
            support=lambda node, k, m: _F().reshape(m, node.inputs[0].shape), view=True,
            zero_preserving=True, linear=True, moves_values=True))


def _transpose_rule(inputs, attrs):
    (x,), perm = inputs, attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose of {label(x)} (rank {x.ndim}): bad axes {perm}")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


register(Op("transpose", _transpose_rule,
            lambda args, node, env: np.transpose(args[0], node.attr("perm")),
            lambda node, g, needs: [_F().transpose(g, tuple(np.argsort(node.attr("perm"))))],
            arity=1, jvp=through_first,
            support=lambda node, k, m: _F().transpose(m, tuple(np.argsort(node.attr("perm")))),
            zero_preserving=True, linear=True, moves_values=True))


# --- reductions -------------------------------------------------------------------------
def _reduce_rule(name):
    def infer(inputs, attrs):
        (x,), axes = inputs, attrs["axes"]
        if any(not 0 <= a < x.ndim for a in axes) or len(set(axes)) != len(axes):
            raise ShapeError(f"{name} of {label(x)} with shape {shape_str(x.shape)}: "
                             f"bad axes {axes}")
        if x.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"{name} of {label(x)}: needs a float dtype, got {x.dtype}")
        return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)
    return infer


def kept_shape(shape: tuple, axes: tuple) -> tuple:
    """The reduced shape with 1s kept at the reduced axes (numpy's keepdims=True)."""
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _unreduce(g, x, axes):
    """Broadcast a reduction's cotangent (or result) back over the reduced axes."""
    F = _F()
    return F.broadcast_to(F.reshape(g, kept_shape(x.shape, axes)), x.shape)


def _sum_vjp(node, g, needs):
    return [_unreduce(g, node.inputs[0], node.attr("axes"))]


def extremum_vjp(node, g, needs):
    """max's and min's VJP: the subgradient shared equally among tied extremes (as JAX)."""
    F, x, axes = _F(), node.inputs[0], node.attr("axes")
    mask = F.cast(F.equal(x, _unreduce(node, x, axes)), x.dtype)
    count = F.sum(mask, axis=axes)
    return [mask * _unreduce(g / count, x, axes)]


def extremum_jvp(node, tangents):
    """max's and min's JVP, the transpose of their VJP: the mean of the tangent over the
    tied extremes (a select, so a NaN or inf tangent elsewhere never reaches it)."""
    F, x, axes, t = _F(), node.inputs[0], node.attr("axes"), tangents[0]
    if t is None:
        return None
    hit = F.equal(x, _unreduce(node, x, axes))
    count = F.sum(F.cast(hit, x.dtype), axis=axes)
    return F.sum(F.where(hit, t, 0.0), axis=axes) / count


def _reduce_support(node, k, m):
    # the VJP broadcasts the cotangent back over the reduced axes, and so does the mask
    # (max sends it to the tied maxima only: a subset)
    return _unreduce(m, node.inputs[0], node.attr("axes"))


register(Op("sum", _reduce_rule("sum"),
            lambda args, node, env: np.sum(args[0], axis=node.attr("axes")).astype(node.dtype),
            _sum_vjp, jvp=through_first, arity=1, support=_reduce_support, zero_preserving=True, linear=True,
            display="Σ"))
register(Op("max", _reduce_rule("max"),
            lambda args, node, env: np.max(args[0], axis=node.attr("axes"), initial=-np.inf
                                           ).astype(node.dtype),
            extremum_vjp, jvp=extremum_jvp, arity=1, support=_reduce_support,
            latex=r"\max"))


# --- matmul -----------------------------------------------------------------------------
# The primitive is numpy's matmul over operands of equal rank >= 2: the last two axes are
# the matrices, the leading ones batch axes that broadcast (equal, or 1 on one side; None,
# the batch size, matches None or 1).  1-D operands and unequal ranks are the public
# function's (ops/products.py: matmul), which reshapes into this form.
def batch_broadcast(a_batch: tuple, b_batch: tuple, where: str) -> tuple | None:
    """The broadcast of two equal-length batch shapes (None when they do not match)."""
    out = []
    for x, y in zip(a_batch, b_batch):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def check_product(where: str, a, b, min_rank: int) -> None:
    """What every product op requires (matmul, matmul_sum): equal ranks of at least
    ``min_rank``, equal inner sizes, one float dtype."""
    if a.ndim != b.ndim or a.ndim < min_rank:
        raise ShapeError(f"{where}: takes operands of equal rank >= {min_rank}, got "
                         f"shapes {shape_str(a.shape)} and {shape_str(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"{where}: inner sizes {a.shape[-1]} and {b.shape[-2]} differ "
                         f"(shapes {shape_str(a.shape)} and {shape_str(b.shape)})")
    if a.dtype != b.dtype or a.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: needs one float dtype, got {a.dtype} and {b.dtype}")


def _matmul_rule(inputs, attrs):
    a, b = inputs
    where = f"{label(a)} @ {label(b)}"
    check_product(where, a, b, 2)
    batch = batch_broadcast(a.shape[:-2], b.shape[:-2], where)
    if batch is None:
        raise ShapeError(f"{where}: batch dimensions {shape_str(a.shape[:-2])} and "
                         f"{shape_str(b.shape[:-2])} do not broadcast")
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def swap_last(x):
    """x with its last two axes swapped (the matrices transposed)."""
    n = x.ndim
    return _F().transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _stretched(operand, node):
    """Batch axes the product broadcast ``operand`` along (what its cotangent sums)."""
    return tuple(i for i, d in enumerate(operand.shape[:-2]) if d == 1 and node.shape[i] != 1)


def _sum_to(g, operand, node):
    axes = _stretched(operand, node)
    if not axes:
        return g
    return _F().reshape(_F().sum(g, axis=axes), operand.shape)


def _product_to(x, y, operand, other, node):
    """``x @ y`` summed to ``operand``'s shape.  When ``operand`` is broadcast over every
    batch axis and ``other`` over none (``W`` in ``(B, T, D) @ (D, E)``), the sum over the
    batch is part of the product: one ``matmul_sum`` (ops/contract.py), which the llvm
    backend runs as one GEMM with the batch folded into K."""
    F, nb = _F(), node.ndim - 2
    if (nb and _stretched(operand, node) == tuple(range(nb))
            and other.shape[:-2] == node.shape[:-2]):
        from .contract import matmul_sum
        return F.reshape(matmul_sum(x, y), operand.shape)
    return _sum_to(F.matmul(x, y), operand, node)


def _matmul_cts(node, g, needs, a, b):
    (a0, b0) = node.inputs
    return [_product_to(g, swap_last(b), a0, b0, node) if needs[0] else None,
            _product_to(swap_last(a), g, b0, a0, node) if needs[1] else None]


def _matmul_vjp(node, g, needs):
    return _matmul_cts(node, g, needs, *node.inputs)


def _matmul_support(node, k, m):
    # A's cotangent G Bᵀ is zero on the rows where G is (in every batch it is summed over);
    # B's, Aᵀ G, on G's zero columns
    F, operand = _F(), node.inputs[k]
    n = node.ndim
    axes = (n - 1 if k == 0 else n - 2,) + _stretched(operand, node)
    hit = any_over(m, axes, node.dtype)
    kept = tuple(1 if i in axes else d for i, d in enumerate(node.shape))
    return F.broadcast_to(F.reshape(hit, kept), operand.shape)


def _matmul_masked_vjp(node, g, needs, supports):
    """The VJP with each operand read as 0 outside its support, where its products meet only
    exact zeros of G: (G Bᵀ)[i, j] = Σ_k G[i, k] B[j, k], and a column k of G that is zero
    everywhere makes B's column k irrelevant; a NaN or inf there would turn 0 · NaN into NaN.
    Exact; the rows of G that are zero in part still multiply the other operand."""
    F, (a, b) = _F(), node.inputs

    def zeroed(v, s):
        if s is None:
            return v
        out = F.where(s, v, 0.0)
        out.meta["rewrite"] = "double_where"
        return out
    return _matmul_cts(node, g, needs, zeroed(a, supports[0]), zeroed(b, supports[1]))


register(Op("matmul", _matmul_rule, lambda args, node, env: np.matmul(args[0], args[1]),
            _matmul_vjp, jvp=product_rule, arity=2, support=_matmul_support, masked_vjp=_matmul_masked_vjp,
            linear=True))


# --- dtype, gradient stops, labels --------------------------------------------------------
def _cast_rule(inputs, attrs):
    if attrs["dtype"] not in DTYPES:
        raise DTypeError(f"cast of {label(inputs[0])}: unknown dtype {attrs['dtype']!r}")
    if attrs["dtype"] == "uint32" and inputs[0].dtype != "uint32":
        raise DTypeError(f"cast of {label(inputs[0])} to uint32: uint32 holds random keys and "
                         "bits only (adjit.random); nothing else converts to it")
    return TensorType(inputs[0].shape, attrs["dtype"])


def _cast_vjp(node, g, needs):
    x = node.inputs[0]
    return [_F().cast(g, x.dtype) if x.dtype in FLOAT_DTYPES else None]


register(Op("cast", _cast_rule, lambda args, node, env: args[0].astype(node.dtype),
            _cast_vjp, jvp=cast_jvp, arity=1, zero_preserving=True, moves_values=True))
register(Op("stop_gradient", lambda inputs, attrs: inputs[0].type,
            lambda args, node, env: args[0], lambda node, g, needs: [None], arity=1,
            differentiable=False, doc="identity whose derivative is zero", view=True,
            moves_values=True, display="stop"))


def _one_hot_rule(inputs, attrs):
    (x,) = inputs
    if x.dtype not in INT_DTYPES:
        raise DTypeError(f"one_hot({label(x)}): labels must be integers, got {x.dtype}")
    return TensorType(x.shape + (attrs["depth"],), attrs["dtype"])


register(Op("one_hot", _one_hot_rule,
            lambda args, node, env: (args[0][..., None] == np.arange(node.attr("depth"))
                                     ).astype(node.dtype),
            lambda node, g, needs: [None], arity=1, differentiable=False, display="onehot",
            index_range=lambda node, k: (0, node.attr("depth"),
                                         f"one_hot with {node.attr('depth')} classes")))
