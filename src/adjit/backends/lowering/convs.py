"""Map rules of the convolutions kept by ``passes.expand`` (ops/conv_direct.py: groups 1,
stride 1, dilation 1; one input channel, or a forward conv of few weights), added to
:data:`.elements.MAP_RULES`.  They serve
the ptx backend, and the llvm backend where its vector kernels (backends/llvm/convs.py) do
not apply.  With ``x (N, 1, *S)``, padding ``lo`` per axis and taps ``k`` in row-major order:

* ``conv``: ``z[n, o, p] = Σ_c Σ_k W[o, c, k] · x[n, c, p + k - lo]``, a tap on the
  padding reading 0 (so ``W·0`` is added, as the unfolded product does);
* ``conv_weight``: ``W̄[o, 0, k] = Σ_n Σ_p g[n, o, p] · x[n, 0, p + k - lo]``: a loop over
  the batch and the output positions per weight element.
"""
from __future__ import annotations

import itertools
import math

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule
from .irkit import c64
from .loops import reduce_range
from .plan import dim
from .printer import LLVM_TYPES


def _tap(b, ctx, x: Node, image, pos_out, taps, pad, zero):
    """``x[image, pos_out + taps - lo]`` (0 on the padding) for one tap; ``image`` the
    flat index of the ``(n, c)`` plane."""
    spatial = x.shape[2:]
    ok, flat = None, c64(0)
    for p, t, (lo, _), size in zip(pos_out, taps, pad, spatial):
        q = b.add(p, c64(t - lo)) if t != lo else p
        inside = b.icmp_unsigned("<", q, c64(size))          # 0 <= q < size
        ok = inside if ok is None else b.and_(ok, inside)
        flat = b.add(b.mul(flat, c64(size)), b.select(inside, q, c64(0)))
    v = ctx.load(0, b.add(b.mul(image, c64(math.prod(spatial))), flat))
    return b.select(ok, v, zero)


def _conv(node: Node):
    x, W = node.inputs
    C, kernel, pad = x.shape[1], W.shape[2:], node.attr("pad")
    zero = ir.Constant(LLVM_TYPES[node.dtype], 0.0)

    def element(b, vals, idx, ctx):
        n, o, pos = idx[0], idx[1], idx[2:]
        acc = zero
        for c in range(C):
            image = b.add(b.mul(n, c64(C)), c64(c)) if C > 1 else n
            wrow = b.mul(b.add(b.mul(o, c64(C)), c64(c)), c64(math.prod(kernel)))
            for k, taps in enumerate(itertools.product(*map(range, kernel))):
                v = _tap(b, ctx, x, image, pos, taps, pad, zero)
                acc = b.fadd(acc, b.fmul(ctx.load(1, b.add(wrow, c64(k))), v))
        return acc
    return element


def _conv_weight(node: Node):
    x, g = node.inputs
    pad, outs = node.attr("pad"), g.shape[2:]
    zero = ir.Constant(LLVM_TYPES[node.dtype], 0.0)
    window = math.prod(outs)

    def element(b, vals, idx, ctx):
        o, c, taps = idx[0], idx[1], idx[2:]     # (o, c, k...): the taps are runtime values
        C = x.shape[1]

        def per_image(n, acc):
            row = b.mul(b.add(b.mul(n, c64(g.shape[1])), o), c64(window))

            def per_position(q, acc):
                pos, rest = [], q
                for size in reversed(outs):
                    pos.append(b.urem(rest, c64(size)))
                    rest = b.udiv(rest, c64(size))
                pos.reverse()
                image = b.add(b.mul(n, c64(C)), c) if C > 1 else n
                v = _tap_dyn(b, ctx, x, image, pos, taps, pad, zero)
                return b.fadd(acc, b.fmul(ctx.load(1, b.add(row, q)), v))
            return reduce_range(b, c64(window), acc, per_position)
        return reduce_range(b, ctx.size(dim(x.shape[0])), zero, per_image)
    return element


def _tap_dyn(b, ctx, x: Node, image, pos_out, taps, pad, zero):
    """As :func:`_tap` with the taps runtime values (the weight element's index)."""
    spatial = x.shape[2:]
    ok, flat = None, c64(0)
    for p, t, (lo, _), size in zip(pos_out, taps, pad, spatial):
        q = b.sub(b.add(p, t), c64(lo)) if lo else b.add(p, t)
        inside = b.icmp_unsigned("<", q, c64(size))
        ok = inside if ok is None else b.and_(ok, inside)
        flat = b.add(b.mul(flat, c64(size)), b.select(inside, q, c64(0)))
    v = ctx.load(0, b.add(b.mul(image, c64(math.prod(spatial))), flat))
    return b.select(ok, v, zero)


MAP_RULES.update({
    "conv": MapRule(_conv, gathers=True),
    "conv_weight": MapRule(_conv_weight, gathers=True),
})
