"""Loop nests over symbolic shapes: the elementwise "map" and the reduction kernels.

An *access* describes how an operand is read while walking an output shape: one stride
per output dimension (``Size``; zero where the operand is broadcast).  Adjacent
dimensions merge when every access is contiguous across them, so a same-shape region
becomes one flat loop the vectorizer handles well.
"""
from __future__ import annotations

from llvmlite import ir

from .irkit import c64, loop
from .plan import ONE, ZERO, Size, dim, row_major_strides

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
REDUCE_FLAGS = ("reassoc", "contract")   # lets the vectorizer reorder sums


def size_value(b: ir.IRBuilder, s: Size, batch: ir.Value) -> ir.Value:
    """The i64 value of a symbolic size."""
    v = c64(s.static)
    for _ in range(s.power):
        v = mul(b, v, batch)
    return v


def _const(v, k) -> bool:
    return isinstance(v, ir.Constant) and v.constant == k


def mul(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """``x * y`` (nsw), without an instruction when either is the constant 0 or 1: fewer
    instructions to build, print, parse and fold (compile time)."""
    if _const(x, 1) or _const(y, 0):
        return y
    if _const(y, 1) or _const(x, 0):
        return x
    return b.mul(x, y, flags=["nsw"])


def add(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """``x + y`` (nsw), without an instruction when either is the constant 0."""
    if _const(x, 0):
        return y
    if _const(y, 0):
        return x
    return b.add(x, y, flags=["nsw"])


def for_range(b: ir.IRBuilder, n: ir.Value, name: str = "i"):
    """``for i in range(n)`` with a phi induction variable (canonical for LLVM's loop passes)."""
    return loop(b, 0, n, 1, name)


def broadcast_access(in_shape: tuple, out_shape: tuple) -> list[Size]:
    """Strides reading a row-major operand under numpy broadcasting to ``out_shape``."""
    strides = row_major_strides(in_shape)
    lead = len(out_shape) - len(in_shape)
    out = []
    for k in range(len(out_shape)):
        j = k - lead
        out.append(ZERO if j < 0 or in_shape[j] == 1 and out_shape[k] != 1 else strides[j])
    return out


def transpose_access(in_shape: tuple, perm: tuple) -> list[Size]:
    strides = row_major_strides(in_shape)
    return [strides[p] for p in perm]


def merge_dims(shape: tuple, accesses: list[list[Size]]):
    """Merge adjacent dims where every access is contiguous across them.

    Returns (sizes, accesses) with sizes a list of Size (one per merged dim).
    """
    sizes = [dim(d) for d in shape]
    accs = [list(a) for a in accesses]
    k = len(sizes) - 2
    while k >= 0:
        if all(a[k] == a[k + 1] * sizes[k + 1] for a in accs):
            sizes[k] = sizes[k] * sizes[k + 1]
            del sizes[k + 1]
            for a in accs:
                del a[k]          # the merged dim keeps the inner stride
        k -= 1
    return sizes, accs


def emit_nest(b: ir.IRBuilder, sizes: list[Size], accesses: list[list[Size]], batch,
              body, inner=None, outer=None):
    """Loop over ``sizes``; call ``body(offsets, indices)`` with one i64 offset per access.

    ``inner(offsets_outer, n_inner, strides_inner)``, when given, replaces the innermost
    loop (used by reductions that keep an accumulator in a register).  ``outer=(lo, hi)``
    restricts the outermost loop to ``lo <= i < hi`` (a chunk of a split kernel).
    """
    n = len(sizes)
    counts = [size_value(b, s, batch) for s in sizes]
    strides = [[size_value(b, s, batch) for s in a] for a in accesses]

    def level(k, offsets, indices):
        if k == n:
            body(offsets, indices)
            return
        if inner is not None and k == n - 1:
            inner(offsets, counts[k], [st[k] for st in strides], indices)
            return
        rng = loop(b, outer[0], outer[1], 1, "d0") if outer is not None and k == 0 else \
            for_range(b, counts[k], f"d{k}")
        with rng as i:
            offs = [add(b, o, mul(b, i, st[k])) for o, st in zip(offsets, strides)]
            level(k + 1, offs, indices + [i])

    level(0, [c64(0)] * len(accesses), [])


def contiguous(shape) -> list[Size]:
    return row_major_strides(shape)


__all__ = ["for_range", "size_value", "mul", "add", "broadcast_access", "transpose_access",
           "merge_dims", "emit_nest", "contiguous", "c64", "REDUCE_FLAGS", "ONE"]


def reduce_range(b: ir.IRBuilder, n: ir.Value, start: ir.Value, step) -> ir.Value:
    """``acc = start; for i in range(n): acc = step(i, acc)``; returns the final acc.

    The accumulator is a phi of the loop header, the shape LLVM recognizes as a reduction.
    """
    pre = b.block
    head = b.append_basic_block("red.head")
    body = b.append_basic_block("red.body")
    done = b.append_basic_block("red.done")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name="r")
    acc = b.phi(start.type, name="acc")
    i.add_incoming(c64(0), pre)
    acc.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    nxt = step(i, acc)
    i.add_incoming(b.add(i, c64(1), flags=["nsw", "nuw"]), b.block)
    acc.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(done)
    return acc


def accumulate(b, start, stop, step, inits: list, update) -> list:
    """``accs = inits; for r in range(start, stop, step): accs = update(r, accs)``; returns the
    final accs.  The accumulators are phis of the loop header (registers, no memory)."""
    pre = b.block
    head, body, done = (b.append_basic_block(f"acc.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    r = b.phi(I64, "r")
    accs = [b.phi(v.type, "acc") for v in inits]
    r.add_incoming(start, pre)
    for a, v in zip(accs, inits):
        a.add_incoming(v, pre)
    b.cbranch(b.icmp_unsigned("<", r, stop), body, done)
    b.position_at_end(body)
    nxt = update(r, accs)
    r.add_incoming(b.add(r, step), b.block)
    for a, v in zip(accs, nxt):
        a.add_incoming(v, b.block)
    b.branch(head)
    b.position_at_end(done)
    return accs
