"""The map rule of ``philox`` (adjit.ops.random): one Philox4x64-10 block per element.

Element ``i`` (the row-major linear index of its full output index) is lane ``i % 4`` of
the block of counter ``(i // 4 + 1, stream, 0, 0)`` under key ``(k0 | k1 << 32, 0)``,
then converted exactly to the node's dtype -- the stream of numpy's ``np.random.Philox``
that the interpreter reads (see :mod:`adjit.ops.random`).  The 64x64 -> 128-bit products
are ``mul i128`` of zero-extended operands, high and low halves taken apart: x86 lowers
it to one ``mul``, NVPTX to ``mul.lo.u64`` / ``mul.hi.u64``.  Each element computes its
whole block (four lanes, one kept): no state is shared between elements, so the kernel
parallelizes and vectorizes like any map.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from .elements import MAP_RULES, MapRule, linear_offset

I32, I64, I128 = ir.IntType(32), ir.IntType(64), ir.IntType(128)
F32, F64 = ir.FloatType(), ir.DoubleType()

M0, M1 = 0xD2E7470EE14C6C93, 0xCA5A826395121157     # Philox4x64 multipliers
W0, W1 = 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B     # Weyl key increments
ROUNDS = 10


def _c64(v: int) -> ir.Constant:
    """An i64 constant from an unsigned 64-bit value (llvmlite prints it signed)."""
    return ir.Constant(I64, v - (1 << 64) if v >= 1 << 63 else v)


def _mulhilo(b: ir.IRBuilder, m: int, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(high, low) 64-bit halves of the 128-bit product ``m * x`` (unsigned)."""
    p = b.mul(ir.Constant(I128, m), b.zext(x, I128))
    return b.trunc(b.lshr(p, ir.Constant(I128, 64)), I64), b.trunc(p, I64)


def philox_block(b: ir.IRBuilder, ctr: list, key: list) -> list:
    """The four 64-bit words of Philox4x64-10 of counter ``ctr`` (4 i64) under ``key``
    (2 i64), as Random123 and numpy compute them."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(ROUNDS):
        if r:
            k0, k1 = b.add(k0, _c64(W0)), b.add(k1, _c64(W1))
        hi0, lo0 = _mulhilo(b, M0, c0)
        hi1, lo1 = _mulhilo(b, M1, c2)
        c0, c1, c2, c3 = b.xor(b.xor(hi1, c1), k0), lo1, b.xor(b.xor(hi0, c3), k1), lo0
    return [c0, c1, c2, c3]


def _convert(b: ir.IRBuilder, w: ir.Value, dtype: str) -> ir.Value:
    if dtype == "uint32":
        return b.trunc(b.lshr(w, _c64(32)), I32)
    if dtype == "float64":
        return b.fmul(b.uitofp(b.lshr(w, _c64(11)), F64), ir.Constant(F64, 2.0 ** -53))
    return b.fmul(b.uitofp(b.lshr(w, _c64(40)), F32), ir.Constant(F32, 2.0 ** -24))


def _philox(node: Node):
    shape, dtype, stream = node.shape, node.dtype, node.attr("stream")

    def element(b, vals, idx, ctx):
        i = linear_offset(b, ctx, idx, shape)
        k0 = b.zext(ctx.load(0, ir.Constant(I64, 0)), I64)
        k1 = b.zext(ctx.load(0, ir.Constant(I64, 1)), I64)
        key = [b.or_(k0, b.shl(k1, _c64(32))), _c64(0)]
        ctr = [b.add(b.lshr(i, _c64(2)), _c64(1)), _c64(stream), _c64(0), _c64(0)]
        words = philox_block(b, ctr, key)
        lane = b.and_(i, _c64(3))
        w = words[3]
        for k in (2, 1, 0):
            w = b.select(b.icmp_unsigned("==", lane, _c64(k)), words[k], w)
        return _convert(b, w, dtype)
    return element


MAP_RULES["philox"] = MapRule(_philox, gathers=True)
