"""Map rules of the ops that move elements at affine positions (``adjit.ops.moves``):
``slice``, ``pad`` and ``concatenate``.  Each reads its operand(s) at offsets computed
from the full output index (``gathers=True``), so the llvm and ptx backends lower them
with no code of their own.

* ``slice``: ``x[start + i·step]`` per axis (``start < 0`` on the batch axis: ``B + start``);
* ``pad``: the inverse placement, ``q = (o - start) / step`` per axis; the operand's
  element where every ``q`` is whole and in range, the constant elsewhere (a select over
  a load at a clamped, always valid offset: no branch in the loop);
* ``concatenate``: the operand whose range holds the index along the axis, one load
  behind a chain of branches.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule, linear_offset
from .loops import c64
from .plan import dim
from .printer import LLVM_TYPES

I1, I64 = ir.IntType(1), ir.IntType(64)


def _start(b, ctx, start: int, n) -> ir.Value:
    """The resolved start of a placement on an axis of size ``n`` (None: the batch)."""
    if start < 0 and n is None:
        return b.add(ctx.size(dim(None)), c64(start))
    return c64(start)


def _slice(node: Node):
    x = node.inputs[0]
    start, step = node.attr("start"), node.attr("step")

    def element(b, vals, idx, ctx):
        src = [i if (s, st) == (0, 1) else b.add(_start(b, ctx, s, n), b.mul(i, c64(st)))
               for i, n, s, st in zip(idx, x.shape, start, step)]
        return ctx.load(0, linear_offset(b, ctx, src, x.shape))
    return element


def _constant(dtype: str, value):
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    if dtype in ("int32", "int64"):
        return ir.Constant(ir.IntType(int(dtype[3:])), int(value))
    return ir.Constant(LLVM_TYPES[dtype], value)


def _pad(node: Node):
    x = node.inputs[0]
    start, step = node.attr("start"), node.attr("step")
    fill = node.attr("value")
    empty = any(n == 0 for n in x.shape)     # no element to read: all constant

    def element(b, vals, idx, ctx):
        value = _constant(node.dtype, fill)
        if empty:
            return value
        ok, src = ir.Constant(I1, 1), []
        for i, n_out, n, s, st in zip(idx, node.shape, x.shape, start, step):
            if (s, st) == (0, 1) and n_out == n:
                src.append(i)
                continue
            d = b.sub(i, _start(b, ctx, s, n_out))
            q = d if st == 1 else b.neg(d) if st == -1 else b.sdiv(d, c64(st))
            inside = b.icmp_unsigned("<", q, ctx.size(dim(n)))   # 0 <= q < n
            if abs(st) != 1:   # and o lands on a position, not between two
                inside = b.and_(inside, b.icmp_signed("==", b.mul(q, c64(st)), d))
            ok = b.and_(ok, inside)
            src.append(b.select(inside, q, c64(0)))
        v = ctx.load(0, linear_offset(b, ctx, src, x.shape))
        return b.select(ok, v, value)
    return element


def _concatenate(node: Node):
    axis = node.attr("axis")
    ins = node.inputs
    ends, off = [], 0
    for x in ins:
        off += x.shape[axis]
        ends.append(off)

    def element(b, vals, idx, ctx):
        if not any(x.shape[axis] for x in ins):     # an empty result: never runs
            return _constant(node.dtype, 0)
        merge = b.append_basic_block("concat.merge")
        got = []
        for k, x in enumerate(ins):
            lo = ends[k] - x.shape[axis]
            if x.shape[axis] == 0:
                continue
            last = k == len(ins) - 1 or all(y.shape[axis] == 0 for y in ins[k + 1:])
            if not last:
                yes = b.append_basic_block(f"concat.{k}")
                no = b.append_basic_block(f"concat.not{k}")
                b.cbranch(b.icmp_signed("<", idx[axis], c64(ends[k])), yes, no)
                b.position_at_end(yes)
            src = list(idx)
            src[axis] = b.sub(idx[axis], c64(lo)) if lo else idx[axis]
            got.append((ctx.load(k, linear_offset(b, ctx, src, x.shape)), b.block))
            b.branch(merge)
            if last:
                break
            b.position_at_end(no)
        b.position_at_end(merge)
        phi = b.phi(got[0][0].type)
        for v, block in got:
            phi.add_incoming(v, block)
        return phi
    return element


MAP_RULES.update({
    "slice": MapRule(_slice, gathers=True),
    "pad": MapRule(_pad, gathers=True),
    "concatenate": MapRule(_concatenate, gathers=True),
})
