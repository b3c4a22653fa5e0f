"""sin and cos for :mod:`.mathfn`: argument reduction valid for every finite float.

sin/cos reduce x to r = x - q*pi/2 with |r| <= ~pi/4 and evaluate one of two polynomials on r
chosen by q mod 4.  Two reductions are computed for every element and one is selected, so the
code stays branch-free (it vectorizes, and the ptx target can lower it):

* **Cody–Waite** (|x| < PH_MIN): q = rint(x*2/pi), r = x - q*pi/2 with a three-part pi/2 and
  FMA.  The first step is exact (q*pi/2_hi and x are multiples of ulp(1), their difference is
  below 1).  A few flops; accurate where it is used (measured <= 1.5 ulp f64, <= 1 ulp f32).
* **Payne–Hanek** (|x| >= PH_MIN, every finite x): x = M * 2^(E-P+1) with the integer
  mantissa M (P = 24 / 53 bits).  Bits of 2/pi whose product with x is a multiple of 4 are
  skipped: the window of W = 32L bits (L = 3 / 6 words of 32 bits) of 2/pi that starts at
  the bit of weight 2^(P-E) is cut from the table :data:`TWO_OVER_PI` (two zero words in
  front, then 2/pi's fraction bits) with two word loads and a shift per word.  M times the
  window is formed exactly with 32x32 -> 64-bit integer products and carries (mod 2^W): its
  top two bits are x*2/pi mod 4, the rest the fraction, truncated with an error below
  2^(P+2-W) (2^-70 f32, 2^-137 f64).  The fraction is rounded to nearest (q), converted to a
  double exactly in pieces (magic-number conversion, Fast2Sum) and multiplied by pi/2 as a
  double-double.  The closest floats to multiples of pi/2 leave |r| >= 2^-30 (f32) and
  2^-61 (f64), far above the truncation error, so r is accurate to about 0.5 ulp everywhere.
  float32 runs this in float64 arithmetic and rounds r once to float32.

Only integer add/and/or/shift/mul, loads from a constant table, magic-number conversions
between integer and float, fma and selects: no libm, no comparison with an infinity.  ±inf
give NaN through ``r + (x - x)`` (0 for finite x), NaN propagates through both paths.
"""
from __future__ import annotations

import llvmlite.ir as ir

I32, I64 = ir.IntType(32), ir.IntType(64)
F64 = ir.DoubleType()

#: 2/pi = 0.A2F9836E 4E441529 ... in hex: floor(2/pi * 2^(32*37)) as 37 big-endian 32-bit
#: words, after two zero words (the window for small exponents starts before the binary
#: point).  ``tests/llvm/test_mathfn.py::test_two_over_pi_table`` re-derives it.
TWO_OVER_PI = (0, 0,
    0xA2F9836E, 0x4E441529, 0xFC2757D1, 0xF534DDC0, 0xDB629599, 0x3C439041, 0xFE5163AB,
    0xDEBBC561, 0xB7246E3A, 0x424DD2E0, 0x06492EEA, 0x09D1921C, 0xFE1DEB1C, 0xB129A73E,
    0xE88235F5, 0x2EBB4484, 0xE99C7026, 0xB45F7E41, 0x3991D639, 0x835339F4, 0x9C845F8B,
    0xBDF9283B, 0x1FF897FF, 0xDE05980F, 0xEF2F118B, 0x5A0A6D1F, 0x6D367ECF, 0x27CB09B7,
    0x4F463F66, 0x9E5FEA2D, 0x7527BAC7, 0xEBE5F17B, 0x3D0739F7, 0x8A5292EA, 0x6BFB5FB1,
    0x1F8D5D08, 0x56033046)
PAD_BITS = 64                       # the two zero words
TABLE_NAME = "adjit_two_over_pi_bits"

#: Per dtype: P mantissa bits (implicit one included), L window words, PH_MIN the |x| from
#: which Payne–Hanek is selected (Cody–Waite's measured accuracy holds well past it).
PH = {"f32": dict(P=24, L=3, PH_MIN=2.0 ** 14), "f64": dict(P=53, L=6, PH_MIN=2.0 ** 30)}

PIO2_DD = (1.5707963267948966, 6.123233995736766e-17)      # pi/2 as a double-double
_MAGIC52 = 0x4330000000000000                               # bits of 2^52
_MASK32 = 0xFFFFFFFF


def _table(module: ir.Module) -> ir.GlobalVariable:
    """TWO_OVER_PI as 64-bit words (a zero word appended), for the float64 loads."""
    g = module.globals.get(TABLE_NAME)
    if g is None:
        w = list(TWO_OVER_PI) + [0] * (len(TWO_OVER_PI) % 2)
        ty = ir.ArrayType(I64, len(w) // 2)
        g = ir.GlobalVariable(module, ty, TABLE_NAME)
        g.initializer = ir.Constant(ty, [(w[i] << 32) | w[i + 1] for i in range(0, len(w), 2)])
        g.global_constant, g.linkage, g.unnamed_addr, g.align = True, "internal", True, 16
    return g


class TrigMixin:
    """sin/cos methods of :class:`.mathfn._Emitter` (which supplies b, k, c, ci, fma, sel,
    fcmp, poly, round_mul, bits, ft, it, module, fma64)."""

    # ---- Cody–Waite ----------------------------------------------------------------------
    def reduce_cw(self, x):
        p1, p2, p3 = self.k["PIO2"]
        qf, qi = self.round_mul(x, self.k["TWO_OVER_PI"])
        r = self.fma(qf, self.c(-p1), x)          # exact: see the module docstring
        r = self.fma(qf, self.c(-p2), r)
        return self.fma(qf, self.c(-p3), r), qi

    # ---- Payne–Hanek ---------------------------------------------------------------------
    def _u32_to_f64(self, v):
        """v (i64, 0 <= v < 2^52) as a double, exactly: bits(2^52) | v, minus 2^52."""
        b = self.b
        d = b.bitcast(b.or_(v, ir.Constant(I64, _MAGIC52)), F64)
        return b.fsub(d, ir.Constant(F64, 2.0 ** 52))

    def reduce_ph(self, x):
        """(r, q): r as a float of the dtype, q an integer of width ``it`` with
        x = (q + 4n)*pi/2 + r; meaningful for |x| >= 1 (other lanes get garbage, never UB)."""
        b, k = self.b, self.k
        f32 = self.it.width == 32
        ph = PH["f32" if f32 else "f64"]
        P, L = ph["P"], ph["L"]
        mant = k["MANT"]
        c64 = lambda v: ir.Constant(I64, v)               # noqa: E731
        xi = self.bits(x)
        xi = b.zext(xi, I64) if f32 else xi
        e = b.sub(b.and_(b.lshr(xi, c64(mant)), c64(2 * k["EMAX"] + 1)), c64(k["BIAS"]))
        e_min = int(ph["PH_MIN"]).bit_length() - 1            # smaller |x|: garbage lanes
        e = self.sel(b.icmp_signed("<", e, c64(e_min)), c64(e_min), e)
        e = self.sel(b.icmp_signed(">", e, c64(k["EMAX"])), c64(k["EMAX"]), e)   # inf, NaN
        m = b.or_(b.and_(xi, c64((1 << mant) - 1)), c64(1 << mant))
        # The window starts at bit g0 of the table: word j, bit sh.
        g0 = b.add(e, c64(PAD_BITS - P - 1))
        j, sh = b.lshr(g0, c64(5)), b.and_(g0, c64(31))
        j_lo, j_hi = (e_min + PAD_BITS - P - 1) >> 5, (k["EMAX"] + PAD_BITS - P - 1) >> 5
        assert j_hi + L < len(TWO_OVER_PI)
        if j_hi - j_lo < 8:       # float32: a few selects (gathers are slow on x86)
            is_j = {jv: b.icmp_unsigned("==", j, c64(jv)) for jv in range(j_lo + 1, j_hi + 1)}
            words = []
            for i in range(L + 1):
                w = c64(TWO_OVER_PI[j_lo + i])
                for jv, cond in is_j.items():
                    w = self.sel(cond, c64(TWO_OVER_PI[jv + i]), w)
                words.append(w)
            win = []                                      # window words, most significant first
            for i in range(L):
                pair = b.or_(b.shl(words[i], c64(32)), words[i + 1])
                win.append(b.lshr(b.shl(pair, sh), c64(32)))
        else:                     # float64: (L/2 + 1) loads of 64-bit words
            j2, sh2 = b.lshr(g0, c64(6)), b.and_(g0, c64(63))
            tab = _table(self.module)
            w64 = [b.load(b.gep(tab, [ir.Constant(I32, 0), b.add(j2, c64(i))], inbounds=True))
                   for i in range(L // 2 + 1)]
            win = []
            for i in range(L // 2):           # bits from g0 + 64i: a funnel shift, sh2 < 64
                u = b.or_(b.shl(w64[i], sh2), b.lshr(b.lshr(w64[i + 1], c64(1)),
                                                     b.sub(c64(63), sh2)))
                win += [b.lshr(u, c64(32)), b.and_(u, c64(_MASK32))]
        v = win[::-1]                                     # least significant first
        ms = [m] if f32 else [b.and_(m, c64(_MASK32)), b.lshr(m, c64(32))]
        acc = [None] * L

        def add(col, val):
            acc[col] = val if acc[col] is None else b.add(acc[col], val)
        for i, mi in enumerate(ms):                       # M * window mod 2^(32L), exact
            for jj, vj in enumerate(v):
                col = i + jj
                if col >= L:
                    continue
                p = b.mul(mi, vj)                         # < 2^64: operands below 2^32
                add(col, b.and_(p, c64(_MASK32)))
                if col + 1 < L:
                    add(col + 1, b.lshr(p, c64(32)))
        for col in range(L - 1):                          # carries (column sums < 2^36)
            add(col + 1, b.lshr(acc[col], c64(32)))
            acc[col] = b.and_(acc[col], c64(_MASK32))
        top = b.and_(acc[L - 1], c64(_MASK32))
        # Round to nearest: q = (top + 2^29) >> 30, signed fraction top - q*2^30 in [-2^29, 2^29).
        qq = b.lshr(b.add(top, c64(1 << 29)), c64(30))
        ftop = b.sub(top, b.shl(qq, c64(30)))
        # Fraction = ftop*2^-30 + acc[L-2]*2^-62 + acc[L-3]*2^-94 (+ acc[L-4]*2^-126): each
        # piece exact as a double; ftop is offset by 2^51 for the unsigned conversion.
        t = b.fsub(b.bitcast(b.or_(b.add(ftop, c64(1 << 51)), c64(_MAGIC52)), F64),
                   ir.Constant(F64, 2.0 ** 52 + 2.0 ** 51))
        t = b.fmul(t, ir.Constant(F64, 2.0 ** -30))
        pieces = [b.fmul(self._u32_to_f64(acc[L - 2 - i]), ir.Constant(F64, 2.0 ** (-62 - 32 * i)))
                  for i in range(min(L - 1, 3))]
        s = b.fadd(t, pieces[0])                           # Fast2Sum: t = 0 or |t| > |piece|
        err = b.fsub(pieces[0], b.fsub(s, t))
        lo = pieces[-1]
        for pc in reversed(pieces[1:-1]):
            lo = b.fadd(pc, lo)
        lo = b.fadd(err, lo)
        h, l_ = (ir.Constant(F64, v_) for v_ in PIO2_DD)
        r = self.fma64(s, h, self.fma64(s, l_, b.fmul(lo, h)))
        if f32:
            r = b.fptrunc(r, self.ft)
        # The reduction was of |x|: negate both for x < 0.
        neg = b.icmp_signed("<", self.bits(x), self.ci(0))
        q = b.trunc(qq, self.it) if f32 else qq
        return self.sel(neg, b.fneg(r), r), self.sel(neg, b.neg(q), q)

    # ---- sin / cos -----------------------------------------------------------------------
    def sincos_reduced(self, x):
        """(sin r, cos r, q) with x = r + q·π/2, |r| ≤ π/4 (Cody–Waite for small |x|,
        Payne–Hanek beyond); r is NaN for ±inf.  sin, cos and tan share it."""
        b, k = self.b, self.k
        r_cw, q_cw = self.reduce_cw(x)
        r_ph, q_ph = self.reduce_ph(x)
        r_ph = b.fadd(r_ph, b.fsub(x, x))                  # ±inf: NaN (x - x is 0 otherwise)
        big = self.fcmp(">=", b.call(self._fabs, [x]),
                        self.c(PH["f32" if self.it.width == 32 else "f64"]["PH_MIN"]))
        r, q = self.sel(big, r_ph, r_cw), self.sel(big, q_ph, q_cw)
        z = b.fmul(r, r)
        sin_r = self.fma(b.fmul(r, z), self.poly(z, k["S"]), r)
        hz = b.fmul(self.c(0.5), z)
        w = b.fsub(self.c(1.0), hz)
        corr = b.fsub(b.fsub(self.c(1.0), w), hz)          # exact rounding error of w
        cos_r = b.fadd(w, self.fma(b.fmul(z, z), self.poly(z, k["CC"]), corr))
        return sin_r, cos_r, q

    def _sincos(self, x, quadrant_offset):
        b = self.b
        sin_r, cos_r, q = self.sincos_reduced(x)
        n = b.add(q, self.ci(quadrant_offset))             # quadrant = n mod 4
        odd = b.icmp_signed("!=", b.and_(n, self.ci(1)), self.ci(0))
        neg = b.icmp_signed("!=", b.and_(n, self.ci(2)), self.ci(0))
        v = self.sel(odd, cos_r, sin_r)
        return self.sel(neg, b.fneg(v), v)

    def sin(self, x):
        y = self._sincos(x, 0)
        return self.sel(self.fcmp("==", x, self.c(0.0)), x, y)  # keeps the sign of -0

    def cos(self, x):
        return self._sincos(x, 1)
