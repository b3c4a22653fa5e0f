"""Map rules of the pooling ops (ops/pooling.py), added to :data:`.elements.MAP_RULES`.  Each
reads its operand at offsets computed from the full output index (``gathers=True``), the
kernel taps unrolled (the kernel is static and small), so the llvm and ptx backends lower
them with no code of their own.

* ``max_pool`` / ``pool_argmax``: one scan over the taps in row-major order keeps the
  selected value and its flat spatial index: a tap replaces the current one when it is an
  input element (not padding) and either nothing was selected yet, or it is greater, or it
  is a NaN and the current one is not (the first maximum; the first NaN);
* ``avg_pool``: the sum of the taps inside the input (a select over a load at a clamped,
  always valid offset), divided by the divisor (the kernel size, or the count of taps inside);
* ``avg_pool_grad``: input position ``p`` sums, over every tap ``k``, ``g[o] / divisor(o)``
  of the window ``o = (p + lo - k) / s`` when that is whole and in range (as ``fold``).
"""
from __future__ import annotations

import itertools
import math

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule, linear_offset
from .irkit import c64
from .printer import LLVM_TYPES
from .windows import covering_windows

I1 = ir.IntType(1)


def _axis_taps(b, o, n, k, s, d, lo):
    """Per tap of one axis: (inside, clamped input position) of output position ``o``."""
    out = []
    for t in range(k):
        p = b.add(b.mul(o, c64(s)), c64(t * d - lo)) if t * d - lo else b.mul(o, c64(s))
        inside = b.icmp_unsigned("<", p, c64(n))             # 0 <= p < n
        out.append((inside, b.select(inside, p, c64(0))))
    return out


def _window_taps(b, node: Node, idx):
    """(inside, spatial multi-index) of every tap of the window at output index ``idx``, in
    row-major tap order."""
    x = node.inputs[0]
    kernel, stride, dil, pad = (node.attr(a) for a in ("kernel", "stride", "dilation", "pad"))
    axes = [_axis_taps(b, o, n, k, s, d, lo)
            for o, n, k, s, d, (lo, _) in zip(idx[2:], x.shape[2:], kernel, stride, dil, pad)]
    for combo in itertools.product(*[range(k) for k in kernel]):
        ok, pos = ir.Constant(I1, 1), []
        for a, t in enumerate(combo):
            inside, p = axes[a][t]
            ok = b.and_(ok, inside) if a else inside
            pos.append(p)
        yield ok, pos


def _flat(b, pos, spatial):
    f = pos[0]
    for p, n in zip(pos[1:], spatial[1:]):
        f = b.add(b.mul(f, c64(n)), p)
    return f


def _max_scan(node: Node, want_index: bool):
    x = node.inputs[0]
    T = LLVM_TYPES[x.dtype]

    def element(b, vals, idx, ctx):
        # a window of padding only keeps -inf and the index one past the end (ΠS)
        best, where = ir.Constant(T, float("-inf")), c64(math.prod(x.shape[2:]))
        found = ir.Constant(I1, 0)
        for ok, pos in _window_taps(b, node, idx):
            v = ctx.load(0, linear_offset(b, ctx, list(idx[:2]) + pos, x.shape))
            better = b.or_(b.fcmp_ordered(">", v, best),
                           b.and_(b.fcmp_unordered("uno", v, v),
                                  b.fcmp_ordered("ord", best, best)))
            take = b.and_(ok, b.or_(b.not_(found), better))
            best = b.select(take, v, best)
            if want_index:
                where = b.select(take, _flat(b, pos, x.shape[2:]), where)
            found = b.or_(found, ok)
        return where if want_index else best
    return element


def _divisor(b, node: Node, outs, T):
    """The divisor of the window at output positions ``outs`` (float of type T)."""
    kernel, stride, pad = node.attr("kernel"), node.attr("stride"), node.attr("pad")
    if node.attr("include"):
        return ir.Constant(T, float(math.prod(kernel)))
    spatial = node.attr("spatial") if node.op == "avg_pool_grad" else node.inputs[0].shape[2:]
    count = c64(1)
    for o, n, k, s, (lo, _) in zip(outs, spatial, kernel, stride, pad):
        start = b.sub(b.mul(o, c64(s)), c64(lo))
        end = b.add(start, c64(k))
        end = b.select(b.icmp_signed("<", end, c64(n)), end, c64(n))
        start = b.select(b.icmp_signed(">", start, c64(0)), start, c64(0))
        count = b.mul(count, b.sub(end, start))
    return b.sitofp(count, T)


def _avg_pool(node: Node):
    x = node.inputs[0]
    T = LLVM_TYPES[node.dtype]
    zero = ir.Constant(T, 0.0)

    def element(b, vals, idx, ctx):
        acc = zero
        for ok, pos in _window_taps(b, node, idx):
            v = ctx.load(0, linear_offset(b, ctx, list(idx[:2]) + pos, x.shape))
            acc = b.fadd(acc, b.select(ok, v, zero))
        return b.fdiv(acc, _divisor(b, node, idx[2:], T))
    return element


def _avg_pool_grad(node: Node):
    g = node.inputs[0]
    kernel, stride, pad = node.attr("kernel"), node.attr("stride"), node.attr("pad")
    outs = g.shape[2:]
    T = LLVM_TYPES[node.dtype]
    zero = ir.Constant(T, 0.0)

    def element(b, vals, idx, ctx):
        acc = zero
        for _, ok, wins in covering_windows(b, idx[2:], kernel, stride, (1,) * len(kernel),
                                            pad, outs):
            v = ctx.load(0, linear_offset(b, ctx, list(idx[:2]) + wins, g.shape))
            v = b.fdiv(v, _divisor(b, node, wins, T))
            acc = b.fadd(acc, b.select(ok, v, zero))
        return acc
    return element


MAP_RULES.update({
    "max_pool": MapRule(lambda node: _max_scan(node, False), gathers=True),
    "pool_argmax": MapRule(lambda node: _max_scan(node, True), gathers=True),
    "avg_pool": MapRule(_avg_pool, gathers=True),
    "avg_pool_grad": MapRule(_avg_pool_grad, gathers=True),
})
