"""Map rules: one output element of a map-shaped op, shared by the llvm and ptx backends.

A *map-shaped* op computes each output element on its own: elementwise ops and ``fused``
regions (their sympy form, printed by :class:`.printer.ScalarPrinter`), and structural ops
that move elements (broadcast, transpose, cast, one_hot, slices, gathers, ...).  Each has
one :class:`MapRule` in :data:`MAP_RULES` (elementwise ops and ``fused`` share the scalar
rule); both backends walk the output shape and call it, so no op's element math is written
twice.

A rule is ``element(node) -> fn(b, vals, idx, ctx) -> value``:

* without ``gathers``, ``vals`` hold one element per operand, read at the operand's
  *access* (strides over the output dims: ``access(node)``, by default numpy broadcasting),
  bools as i1; ``idx`` are the loop indices of the (possibly merged) output dims;
* with ``gathers``, nothing is read beforehand: ``idx`` is the full multi-index of the
  output element (one i64 per output dim, never merged) and the rule reads what it needs
  with ``ctx.load(k, offset)`` (operand ``k`` at a flat element offset; bools as i1).

``ctx`` also offers ``ctx.size(s)`` (the i64 value of a :class:`.plan.Size`, batch
included) and ``ctx.batch``.  A bool result is returned as i1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp
from llvmlite import ir

from ...ir import Node
from ...ops.fused import leaf_value
from ...ops.registry import REGISTRY
from .loops import contiguous, transpose_access
from .printer import LLVM_TYPES, ScalarPrinter

I64 = ir.IntType(64)


@dataclass(frozen=True)
class MapRule:
    element: Callable                    # element(node) -> fn(b, vals, idx, ctx)
    access: Callable | None = None       # access(node) -> one stride list per operand
    gathers: bool = False                # operands read by the rule itself (ctx.load)


def linear_offset(b: ir.IRBuilder, ctx, idx: list, shape: tuple) -> ir.Value:
    """The row-major flat offset of multi-index ``idx`` in an array of ``shape``."""
    off = ir.Constant(I64, 0)
    for i, s in zip(idx, contiguous(shape)):
        off = b.add(off, b.mul(i, ctx.size(s)))
    return off


# --- elementwise ops and fused regions: the sympy scalar form ---------------------------------
def _scalar(node: Node):
    if node.op == "fused":
        expr = node.attr("expr")
    else:
        expr = REGISTRY[node.op].scalar(*[leaf_value(k, i.dtype)
                                          for k, i in enumerate(node.inputs)])
    # the result's dtype; for a bool result, that of its first float operand
    cdtype = node.dtype if node.dtype in ("float32", "float64") else next(
        (i.dtype for i in node.inputs if i.dtype in ("float32", "float64")), "float64")
    dtypes = tuple(i.dtype for i in node.inputs)
    return lambda b, vals, idx, ctx: ScalarPrinter(b, cdtype, lambda k: vals[k],
                                                   dtypes).emit(expr)


SCALAR = MapRule(_scalar)


# --- structural ops that move or convert elements --------------------------------------------
def _cast(node: Node):
    if node.dtype not in LLVM_TYPES:
        raise NotImplementedError(f"cast to {node.dtype}")
    src, dst = node.inputs[0].dtype, node.dtype

    def convert(b, vals, idx, ctx):
        v = vals[0]
        if dst == "bool":
            if src == "bool":
                return v
            if src in ("int32", "int64", "uint32"):
                return b.icmp_signed("!=", v, ir.Constant(v.type, 0))
            return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
        T = LLVM_TYPES[dst]
        if src == "bool":
            return b.uitofp(v, T)
        if src in ("int32", "int64"):
            return b.sitofp(v, T)
        if src == "uint32":
            return b.uitofp(v, T)
        return v if src == dst else (b.fpext(v, T) if dst == "float64" else b.fptrunc(v, T))
    return convert


def _one_hot(node: Node):
    if node.dtype not in ("float32", "float64"):
        raise NotImplementedError(f"one_hot to {node.dtype}")
    T, x = LLVM_TYPES[node.dtype], node.inputs[0]

    def onehot(b, vals, idx, ctx):
        lab = ctx.load(0, linear_offset(b, ctx, idx[:-1], x.shape))
        lab = lab if lab.type == I64 else b.sext(lab, I64)
        return b.uitofp(b.icmp_signed("==", lab, idx[-1]), T)
    return onehot


def _same(node: Node):
    return lambda b, vals, idx, ctx: vals[0]


MAP_RULES: dict[str, MapRule] = {
    "broadcast": MapRule(_same),
    "transpose": MapRule(_same, access=lambda node: [
        transpose_access(node.inputs[0].shape, node.attr("perm"))]),
    "cast": MapRule(_cast),
    "one_hot": MapRule(_one_hot, gathers=True),
}


from . import gathers as _gathers  # noqa: E402,F401  (adds the rules of take, argmax, ...)


def map_rule(op: str) -> MapRule | None:
    """The map rule of ``op``, or None when it is not map-shaped."""
    spec = REGISTRY.get(op)
    if op == "fused" or (spec is not None and spec.elementwise):
        return SCALAR
    return MAP_RULES.get(op)


def element_fn(node: Node):
    """``fn(b, vals, idx, ctx)`` for one output element of ``node`` (see the module
    docstring); raises NotImplementedError when the op is not map-shaped."""
    rule = map_rule(node.op)
    if rule is None:
        raise NotImplementedError(f"no element-by-element lowering for op {node.op!r} "
                                  f"({node.dtype})")
    return rule.element(node)


_CHEAP = (sp.Max, sp.Min, sp.Abs, sp.Piecewise, sp.ITE)


def element_cost(node: Node) -> int:
    """Rough work per output element (:attr:`adjit.ops.Op.cost`); a fused region counts
    1 plus 4 per function call in its expression (a transcendental, a power)."""
    if node.op == "fused":
        expr = node.attr("expr")
        calls = sum(1 for e in sp.preorder_traversal(expr)
                    if (isinstance(e, sp.Function) and not isinstance(e, _CHEAP))
                    or (isinstance(e, sp.Pow) and not e.exp.is_Integer))
        return 1 + 4 * calls
    spec = REGISTRY.get(node.op)
    if spec is None:
        return 1
    return spec.cost(node) if callable(spec.cost) else spec.cost


# map rules kept in their own modules (they add themselves to MAP_RULES)
from . import moves  # noqa: E402,F401  (slice, pad, concatenate)
from . import philox  # noqa: E402,F401  (adds the philox rule to MAP_RULES)
from . import windows  # noqa: E402,F401  (unfold, fold)
from . import pools  # noqa: E402,F401  (max_pool, pool_argmax, avg_pool, avg_pool_grad)
from . import convs  # noqa: E402,F401  (conv, conv_weight of one input channel)
