"""Map rules of the gathers (take, take_along_axis) and of argmax/argmin, added to
:data:`.elements.MAP_RULES`: each output element is computed on its own, from the full
output index (``gathers=True``), so both native backends lower them with no more code.

Index arithmetic (every backend, as :func:`adjit.ops.gathers.normalize`): a negative
index gets ``n`` added, then the index is clamped into ``[0, n - 1]``, so no kernel reads
outside the array (inputs' indices were checked at call time).  Along an axis that is
empty at call time (the batch axis at batch size 0) nothing is read and the result is 0.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule, linear_offset
from .irkit import c64
from .loops import accumulate
from .plan import dim, numel, row_major_strides

I1, I64 = ir.IntType(1), ir.IntType(64)


def wrap_index(b: ir.IRBuilder, v: ir.Value, n: ir.Value) -> ir.Value:
    """An index value (i32 or i64) as an i64 in ``[0, n - 1]``: negative ones count from
    the end, then clamped (n > 0)."""
    v = v if v.type == I64 else b.sext(v, I64)
    v = b.select(b.icmp_signed("<", v, c64(0)), b.add(v, n), v)
    v = b.select(b.icmp_signed("<", v, c64(0)), c64(0), v)
    last = b.sub(n, c64(1))
    return b.select(b.icmp_signed(">", v, last), last, v)


def _zero(T: ir.Type) -> ir.Constant:
    return ir.Constant(T, 0.0 if isinstance(T, (ir.FloatType, ir.DoubleType)) else 0)


def _read(b, ctx, k: int, offset, n: ir.Value, static: bool):
    """Operand ``k`` at ``offset``; when the axis size ``n`` may be 0 at call time, only
    if it is not (else 0)."""
    if static:
        return ctx.load(k, offset)
    pre = b.block
    read, join = b.append_basic_block("gather.read"), b.append_basic_block("gather.join")
    b.cbranch(b.icmp_signed(">", n, c64(0)), read, join)
    b.position_at_end(read)
    v = ctx.load(k, offset)
    end = b.block
    b.branch(join)
    b.position_at_end(join)
    phi = b.phi(v.type, "gathered")
    phi.add_incoming(v, end)
    phi.add_incoming(_zero(v.type), pre)
    return phi


def _take(node: Node):
    a, idx = node.inputs
    axis, k = node.attr("axis"), idx.ndim
    static = a.shape[axis] is not None

    def elem(b, vals, out, ctx):
        n = ctx.size(dim(a.shape[axis]))
        pos = linear_offset(b, ctx, out[axis:axis + k], idx.shape)
        j = wrap_index(b, ctx.load(1, pos), n)
        where = linear_offset(b, ctx, list(out[:axis]) + [j] + list(out[axis + k:]), a.shape)
        return _read(b, ctx, 0, where, n, static)
    return elem


def _take_along(node: Node):
    a, idx = node.inputs
    axis = node.attr("axis")
    static = a.shape[axis] is not None

    def elem(b, vals, out, ctx):
        n = ctx.size(dim(a.shape[axis]))
        j = wrap_index(b, ctx.load(1, linear_offset(b, ctx, out, idx.shape)), n)
        where = linear_offset(b, ctx, list(out[:axis]) + [j] + list(out[axis + 1:]), a.shape)
        return _read(b, ctx, 0, where, n, static)
    return elem


# --- argmax / argmin: each output element scans its slice ------------------------------------
def _arg(node: Node):
    x, axes = node.inputs[0], node.attr("axes")
    biggest = node.op == "argmax"
    is_float = x.dtype in ("float32", "float64")
    strides = row_major_strides(x.shape)
    kept = [d for d in range(x.ndim) if d not in axes]
    bits = 32 if x.dtype == "int32" else 64

    def better(b, v, best):
        if not is_float:
            return b.icmp_signed(">" if biggest else "<", v, best)
        # past the best, or the first NaN (a NaN best stays)
        return b.and_(b.fcmp_unordered(">" if biggest else "<", v, best),
                      b.fcmp_ordered("==", best, best))

    def elem(b, vals, out, ctx):
        base = c64(0)
        for i, d in zip(out, kept):
            base = b.add(base, b.mul(i, ctx.size(strides[d])))
        counts = [ctx.size(dim(x.shape[d])) for d in axes]
        total = ctx.size(numel([x.shape[d] for d in axes]))

        def update(r, accs):
            best, at = accs
            off, rest = base, r
            for d, cnt in zip(reversed(axes), reversed(counts)):
                q = b.udiv(rest, cnt) if len(axes) > 1 else None
                i = b.sub(rest, b.mul(q, cnt)) if q is not None else rest
                off = b.add(off, b.mul(i, ctx.size(strides[d])))
                rest = q
            v = ctx.load(0, off)
            take = better(b, v, best)
            return [b.select(take, v, best), b.select(take, r, at)]
        init = _start(x.dtype, biggest, bits)
        return accumulate(b, c64(0), total, c64(1), [init, c64(0)], update)[1]
    return elem


def _start(dtype: str, biggest: bool, bits: int) -> ir.Constant:
    if dtype == "float32":
        return ir.Constant(ir.FloatType(), float("-inf") if biggest else float("inf"))
    if dtype == "float64":
        return ir.Constant(ir.DoubleType(), float("-inf") if biggest else float("inf"))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return ir.Constant(ir.IntType(bits), lo if biggest else hi)


MAP_RULES.update({
    "take": MapRule(_take, gathers=True),
    "take_along_axis": MapRule(_take_along, gathers=True),
    "argmax": MapRule(_arg, gathers=True),
    "argmin": MapRule(_arg, gathers=True),
})


# --- scatter_add (not map-shaped: the kernels live in each backend) --------------------------
def scatter_sizes(node: Node):
    """``(P, I, Q, N)`` of a scatter_add: its values ``g`` read as ``[P, I, Q]`` row-major
    (``P`` the dims before the axis, ``I`` the positions along it, ``Q`` the dims after)
    and the output as ``[P, N, Q]``.  Element ``(p, i, q)`` of ``g`` is added at
    ``(p, j, q)`` with ``j`` the wrapped index at ``i`` (take) or at ``(p, i, q)``
    (``along``: the indices are shaped like ``g``)."""
    g, idx = node.inputs
    shape, axis = node.attr("shape"), node.attr("axis")
    inner = idx.shape[axis] if node.attr("along") else None
    positions = dim(inner) if node.attr("along") else numel(idx.shape)
    return numel(shape[:axis]), positions, numel(shape[axis + 1:]), dim(shape[axis])
