"""tan, erf, log2 and exp2 for :mod:`.mathfn`: branch-free, no libm, every target.

Written from the same pieces as mathfn's functions (fma, fabs, copysign, fcmp + select,
bitcasts, integer arithmetic; no comparison with an infinity, which LLVM turns into
llvm.is.fpclass), so they inline into elementwise loops that vectorize and lower on NVPTX.

* tan:  (float32: computed in float64 and rounded once) sin/cos's reduction (Cody–Waite below PH_MIN, Payne–Hanek above: every finite x),
  both polynomials on r, then sin r / cos r, or -cos r / sin r in odd quadrants (r is never
  0 there: the floats closest to odd multiples of pi/2 leave |r| >= 2^-61).  ±inf and NaN
  give NaN, tan(-0) = -0.
* erf:  |x| < 1: x + x E(x^2) in one fma (E(z) = erf(√z)/√z - 1), exact to rounding for tiny
  and subnormal x.  1 <= |x|: 1 - exp(-x^2) R(|x| - c) with R = erfcx = exp(a^2) erfc(a)
  interpolated on three intervals (f64 [1, 2, 3.25, 6], f32 [1, 2, 3, 4]), one polynomial
  whose coefficients (and centre c) are chosen per lane with selects; x^2 is split exactly
  (x*x + fma(x, x, -x*x)), so exp(-x^2) carries no rounding of the square.  |x| is clamped to
  the last edge (erf rounds to ±1 there), the sign copied back.  The erfc term is at most
  0.16 of the result, so its few ulp of relative error shrink to a fraction of erf's ulp.
* log2: mathfn's log reduction x = 2^e m, then e + log1p(m - 1)·log2(e) with a two-part
  log2(e): exact for powers of two, subnormals scaled first, log's special values.
* exp2: k = rint(x), r = x - k exact (|r| <= 1/2), 2^r = 1 + (u + (u_lo + t(u))) with
  u = r ln2 split exactly (u_lo = fma(r, ln2_hi, -u) + r ln2_lo) and expm1's tail t, times
  2^k as two power-of-two factors (gradual underflow, exact for integer x).

Polynomials: Chebyshev-node interpolants (60-digit mpmath) rounded to the dtype;
``tests/llvm/test_mathfn_special.py::test_coefficients_rederive`` re-derives them.
"""
from __future__ import annotations

import llvmlite.ir as ir

SPECIAL = frozenset({"tan", "erf", "log2", "exp2"})

_K = {
    "f64": dict(
        LOG2E=(1.4426950408889634, 2.0355273740931033e-17),
        # exp2 clamp: k stays in [-(BIAS+MANT+1), EMAX+2] (pow2's two-factor range)
        EXP2_LO=-1076.0, EXP2_HI=1025.0,
        ERF_SMALL=(0.1283791670955126, -0.37612638903183754, 0.11283791670955126, -0.026866170645131218, 0.005223977625441674, -0.0008548327023403001, 0.00012055332978879483, -1.4925650236967501e-05, 1.6462110782018636e-06, -1.636576864883207e-07, 1.4806027146128752e-08, -1.2277734486795524e-09, 9.323723518153027e-11, -6.1967364287877e-12, 2.8067128195611264e-13),
        ERF_EDGES=(1.0, 2.0, 3.25, 6.0),
        ERFCX=((0.3215854164543175, -0.16362291773256007, 0.07615103985548055, -0.03293090529956347, 0.013377340952802835, -0.005145957547915988, 0.0018861348854630824, -0.0006619300686179933, 0.00022330981211640024, -7.265888759557882e-05, 2.286543658874603e-05, -6.975285854904505e-06, 2.061689065129881e-06, -5.946998373950516e-07, 1.8038197652346406e-07, -4.932844202000261e-08), (0.201887554546017, -0.06846950572892327, 0.022155102007594147, -0.006874908639327199, 0.0020542334146405983, -0.0005930183703082426, 0.00016585339833791974, -4.5043772116960885e-05, 1.1903365968436155e-05, -3.0660904713620524e-06, 7.710203310541425e-07, -1.8951492167329703e-07, 4.545544935884079e-08, -1.0715458300575687e-08, 2.6884317150606827e-09, -6.08256809180353e-10), (0.11931528862713212, -0.024712747294529092, 0.005018832390017592, -0.0010004316607322968, 0.0001959179786437399, -3.772440196103744e-05, 7.147543774423848e-06, -1.3334377499205751e-06, 2.4509037869244533e-07, -4.441146464267734e-08, 7.946712783377646e-09, -1.401480754025808e-09, 2.383527698387152e-10, -4.103768250052303e-11, 8.825219730906356e-12, -1.4753011917062674e-12)),
    ),
    "f32": dict(
        LOG2E=(1.4426950216293335, 1.925963033500011e-08),
        EXP2_LO=-151.0, EXP2_HI=129.0,
        ERF_SMALL=(0.12837916612625122, -0.37612637877464294, 0.11283791065216064, -0.026866132393479347, 0.005223783664405346, -0.0008542637806385756, 0.00011956562229897827, -1.3909339941164944e-05, 1.0589380963210715e-06),
        ERF_EDGES=(1.0, 2.0, 3.0, 4.0),
        ERFCX=((0.32158541679382324, -0.1636229008436203, 0.0761510357260704, -0.03293146565556526, 0.013377516530454159, -0.005137920379638672, 0.001883612829260528, -0.0007043126388452947, 0.00023661853629164398), (0.21080636978149414, -0.0743473470211029, 0.02493799664080143, -0.008001601323485374, 0.002467045094817877, -0.0007331319502554834, 0.00021090180962346494, -6.129817484179512e-05, 1.6586711353738792e-05), (0.15529365837574005, -0.041323576122522354, 0.01066113356500864, -0.0026730773970484734, 0.0006526869838126004, -0.00015542558685410768, 3.617241236497648e-05, -8.46785133035155e-06, 1.8864914181904169e-06)),
    ),
}


class SpecialMixin:
    """tan, erf, log2, exp2 methods of :class:`.mathfn._Emitter` (which supplies b, k, c, ci,
    fma, sel, fcmp, poly, clamp, pow2, round_mul, reduce_cw, reduce_ph, split_exponent,
    log_core, _log_specials, expm1_tail, int_to_float, ft, it, _fabs, _copysign)."""

    @property
    def ks(self) -> dict:
        return _K["f32" if self.it.width == 32 else "f64"]

    def poly_values(self, t, coeffs):
        """sum(coeffs[i] * t^i) for coefficients that are IR values (Horner)."""
        acc = coeffs[-1]
        for cf in reversed(coeffs[:-1]):
            acc = self.fma(acc, t, cf)
        return acc

    # ---- tan -----------------------------------------------------------------------------
    def tan(self, x):
        b = self.b
        if self.it.width == 32:     # float32: in float64 (the quotient would cost 3 ulp)
            wide = type(self)(self.module, "f64")
            wide.b = b
            return b.fptrunc(wide.tan(b.fpext(x, ir.DoubleType())), self.ft)
        sin_r, cos_r, q = self.sincos_reduced(x)
        odd = b.icmp_signed("!=", b.and_(q, self.ci(1)), self.ci(0))
        y = self.sel(odd, b.fneg(b.fdiv(cos_r, sin_r)), b.fdiv(sin_r, cos_r))
        return self.sel(self.fcmp("==", x, self.c(0.0)), x, y)   # keeps the sign of -0

    # ---- erf -----------------------------------------------------------------------------
    def erf(self, x):
        b, ks = self.b, self.ks
        a = b.call(self._fabs, [x])
        # |x| < 1: x + x E(x^2), one rounding
        z = b.fmul(x, x)
        small = self.fma(x, self.poly(z, ks["ERF_SMALL"]), x)
        # |x| >= 1: 1 - exp(-a^2) R(a - c), coefficients selected by interval
        e0, e1, e2, e3 = ks["ERF_EDGES"]
        ac = self.clamp(a, e0, e3)
        in2, in3 = self.fcmp(">=", ac, self.c(e1)), self.fcmp(">=", ac, self.c(e2))

        def pick(v1, v2, v3):
            return self.sel(in3, self.c(v3), self.sel(in2, self.c(v2), self.c(v1)))
        centre = pick(*((lo + hi) / 2 for lo, hi in zip((e0, e1, e2), (e1, e2, e3))))
        t = b.fsub(ac, centre)
        R = self.poly_values(t, [pick(*cs) for cs in zip(*ks["ERFCX"])])
        hi = b.fmul(ac, ac)
        lo = self.fma(ac, ac, b.fneg(hi))                  # ac^2 = hi + lo exactly
        e = self.exp(b.fneg(hi))
        e = self.fma(e, b.fneg(lo), e)                     # exp(-hi - lo) = exp(-hi)(1 - lo)
        large = self.fma(b.fneg(e), R, self.c(1.0))
        large = b.call(self._copysign, [large, x])
        return self.sel(self.fcmp("<", a, self.c(e0)), small, large)

    # ---- log2 ----------------------------------------------------------------------------
    def log2(self, x):
        b, k, ks = self.b, self.k, self.ks
        tiny = self.fcmp("<", x, self.c(k["MIN_NORMAL"]))
        xs = self.sel(tiny, b.fmul(x, self.c(2.0 ** k["SUB_SHIFT"])), x)
        ei, m = self.split_exponent(self.bits(xs))
        e = b.fsub(self.int_to_float(ei), self.sel(tiny, self.c(k["SUB_SHIFT"]), self.c(0.0)))
        l1p = self.log_core(self.c(0.0), b.fsub(m, self.c(1.0)))   # log(m), |.| <= ln2/2
        hi, lo = ks["LOG2E"]
        p = self.fma(l1p, self.c(hi), b.fmul(l1p, self.c(lo)))
        y = b.fadd(e, p)
        return self._log_specials(x, y, self.c(0.0))

    # ---- exp2 ----------------------------------------------------------------------------
    def exp2(self, x):
        b, k, ks = self.b, self.k, self.ks
        xc = self.clamp(x, ks["EXP2_LO"], ks["EXP2_HI"])
        kf, ki = self.round_mul(xc, 1.0)
        r = b.fsub(xc, kf)                                 # exact, |r| <= 1/2
        ln2_hi, ln2_lo = k["LN2"]
        u = b.fmul(r, self.c(ln2_hi))
        u_lo = self.fma(r, self.c(ln2_lo), self.fma(r, self.c(ln2_hi), b.fneg(u)))
        p = b.fadd(self.c(1.0), b.fadd(u, b.fadd(u_lo, self.expm1_tail(u))))
        k1 = b.ashr(ki, self.ci(1))
        k2 = b.sub(ki, k1)
        return b.fmul(b.fmul(p, self.pow2(k1)), self.pow2(k2))
