"""Map rules of the window ops (ops/unfold.py), added to :data:`.elements.MAP_RULES`: both
read their operand at offsets computed from the full output index (``gathers=True``), so
the llvm and ptx backends lower them with no code of their own.

* ``unfold``: output ``(n, c, k..., o...)`` reads ``x[n, c, o·s - lo + k·d ...]``, or 0
  where that row is padding (a select over a load at a clamped, always valid offset: no
  branch in the loop);
* ``fold``: output ``(n, c, p...)`` sums, over every kernel tap ``k``, the column element
  of the window ``o = (p + lo - k·d) / s`` when that is whole and in range (the taps are
  unrolled: the kernel is static and small).
"""
from __future__ import annotations

import itertools

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule, linear_offset
from .irkit import c64
from .printer import LLVM_TYPES

I1 = ir.IntType(1)


def _unfold(node: Node):
    x = node.inputs[0]
    nd = len(node.attr("kernel"))
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    spatial = x.shape[2:]
    zero = ir.Constant(LLVM_TYPES[node.dtype], 0.0)

    def element(b, vals, idx, ctx):
        taps, outs = idx[2:2 + nd], idx[2 + nd:]
        ok, src = ir.Constant(I1, 1), list(idx[:2])
        for k, o, n, s, d, (lo, hi) in zip(taps, outs, spatial, stride, dil, pad):
            p = b.add(b.mul(o, c64(s)), b.mul(k, c64(d)))
            if lo:
                p = b.sub(p, c64(lo))
            if lo or hi:
                inside = b.icmp_unsigned("<", p, c64(n))      # 0 <= p < n
                ok = b.and_(ok, inside)
                p = b.select(inside, p, c64(0))
            src.append(p)
        v = ctx.load(0, linear_offset(b, ctx, src, x.shape))
        return b.select(ok, v, zero)
    return element


def covering_windows(b, pos: list, kernel, stride, dilation, pad, outs):
    """The windows that read input position ``pos`` (one i64 per spatial axis): yields
    ``(tap, ok, window)`` per kernel tap, ``window`` the window index per axis (0 where
    ``ok`` is false: no window reads ``pos`` through that tap).  Shared by the adjoints of
    window ops (fold, avg_pool_grad)."""
    axes = []                       # per axis and tap: (valid, window index)
    for p, kn, s, d, (lo, _), on in zip(pos, kernel, stride, dilation, pad, outs):
        per = []
        for k in range(kn):
            t = b.add(p, c64(lo - k * d)) if lo - k * d else p
            if s == 1:
                o, ok = t, b.icmp_unsigned("<", t, c64(on))
            else:
                o = b.sdiv(t, c64(s))
                ok = b.and_(b.icmp_signed(">=", t, c64(0)),
                            b.icmp_signed("==", b.mul(o, c64(s)), t))
                ok = b.and_(ok, b.icmp_signed("<", o, c64(on)))
            per.append((ok, b.select(ok, o, c64(0))))
        axes.append(per)
    for combo in itertools.product(*[range(k) for k in kernel]):
        ok, wins = ir.Constant(I1, 1), []
        for a, k in enumerate(combo):
            good, o = axes[a][k]
            ok = b.and_(ok, good)
            wins.append(o)
        yield combo, ok, wins


def _fold(node: Node):
    cols = node.inputs[0]
    kernel = node.attr("kernel")
    nd = len(kernel)
    stride, dil, pad = node.attr("stride"), node.attr("dilation"), node.attr("pad")
    outs = cols.shape[2 + nd:]
    zero = ir.Constant(LLVM_TYPES[node.dtype], 0.0)

    def element(b, vals, idx, ctx):
        acc = zero
        for combo, ok, wins in covering_windows(b, idx[2:], kernel, stride, dil, pad, outs):
            src = list(idx[:2]) + [c64(k) for k in combo] + wins
            v = ctx.load(0, linear_offset(b, ctx, src, cols.shape))
            acc = b.fadd(acc, b.select(ok, v, zero))
        return acc
    return element


MAP_RULES.update({
    "unfold": MapRule(_unfold, gathers=True),
    "fold": MapRule(_fold, gathers=True),
})
