"""Branch-free scalar math functions written in llvmlite.ir, built to be vectorized.

``llvm.exp`` and friends become one libm call per lane when LLVM vectorizes a loop, and on
NVPTX they do not lower at all (LLVM exits the process).  This module writes each function
from operations that the loop vectorizer widens and every target lowers natively:
fadd/fsub/fmul/fdiv, ``llvm.fma``, ``llvm.fabs``, ``llvm.copysign``, fcmp + select, bitcasts
between float and int, and integer add/sub/and/shift/mul.  There are no branches, no libm
calls and no fast-math flags (the algorithms rely on exact IEEE rounding); the only table is
sin/cos's 2/pi bits (a constant global, float64 only; float32 selects its words).

>>> import llvmlite.ir as ir
>>> m = ir.Module()
>>> f = get_math_fn(m, "exp", "float64")
>>> f.name, f.linkage, get_math_fn(m, "exp", "f64") is f
('adjit_exp_f64', 'internal', True)

Every function is ``internal`` and ``alwaysinline``: once inlined into an elementwise loop the
loop vectorizes to ``<8 x float>`` / ``<4 x double>`` at O3 with host CPU features, and the
unused definition is dropped.  Speed needs hardware FMA (``llvm.fma`` is a libm call without
it); results are the same either way.

Algorithms (polynomials: Chebyshev-node interpolants computed with 60-digit mpmath and
rounded to the dtype; ``tests/llvm/test_mathfn.py::test_coefficients_rederive`` re-derives
every constant):

* exp:   k = rint(x/ln2) by adding a magic constant, r = x - k*ln2 with a two-part ln2 (the
  first FMA step is exact), exp(r) = 1 + (r + r^2 (1/2 + r Q(r))), times 2^k applied as two
  power-of-two factors: p * 2^k1 is exact and * 2^k2 rounds once, so subnormal results are
  correctly produced (gradual underflow, no flush to zero), tiny results round to 0 and
  large ones to +inf.
* expm1: same reduction; s*r + (s - 1) + s*(expm1(r) - r) with s = 2^k in two FMAs, so the
  rounding of expm1(r) is never multiplied by s.  Exact to rounding for tiny x.
* log, log1p: x = 2^e * m with m in [sqrt(1/2), sqrt(2)) by integer arithmetic on the bits;
  with f = m - 1 and s = f/(2+f): log(1+f) = f - (f^2/2 - s (f^2/2 + s^2 T(s^2))).  log
  scales subnormal inputs by 2^(MANT+2) first (exact), so they are as accurate as normals.
  log1p adds the exact rounding error of 1+x (TwoSum), scaled by 2^-e, to f: exact to
  rounding for tiny x, subnormals included.
* tanh:  |x| < 0.55: |x| + |x|^3 P(x^2); otherwise 1 - 2/(expm1(2|x|) + 2), with |x|
  clamped where tanh rounds to 1 and the sign copied back (tanh(-0) = -0).
* sin, cos (:mod:`.mathfn_trig`): r = x - q*pi/2, both polynomials on |r| <= pi/4, quadrant
  chosen with selects.  The reduction is Cody–Waite (three-part pi/2, FMA) below PH_MIN
  (2^14 f32, 2^30 f64) and Payne–Hanek (exact integer product with a window of a 2/pi bit
  table) above: accurate for every finite x; both are computed and one is selected.
* tan, erf, log2, exp2: :mod:`.mathfn_special`.
* pow(a, p) (two operands): numpy.power; exp(p log|a|) with the sign of a for odd integer p,
  integer-valued p found with rint (|p| + 2^MANT - 2^MANT), NaN for finite a < 0 and other p.

Measured over dense grids of the useful ranges (tests/llvm/test_mathfn.py, ``pytest -s``):
float64 max error vs long double, in ulps: exp 0.92, expm1 1.33, log 0.78, log1p 1.19,
tanh 1.55, sin 1.48, cos 1.45 (sin/cos over the whole float range: 1.49); float32: every
function within 1 ulp of the correctly rounded result (max true error 0.79 (log) .. 1.41 (cos) ulps).
"""

from __future__ import annotations

import llvmlite.ir as ir

from .mathfn_special import SPECIAL, SpecialMixin
from .mathfn_trig import TrigMixin

SUPPORTED = frozenset({"exp", "expm1", "log", "log1p", "tanh", "sin", "cos"}) | SPECIAL  # one operand
BINARY = frozenset({"pow"})                                                       # two operands

_DTYPES = {"f32": "f32", "float32": "f32", "f64": "f64", "float64": "f64"}

# Per-dtype constants.  Invariants: MAGIC = 1.5 * 2^MANT, so fl(t + MAGIC) - MAGIC = rint(t)
# and bits(fl(t + MAGIC)) - bits(MAGIC) = rint(t) as an integer, for |t| < 2^(MANT-1).
# Two- and three-part constants are successive roundings of the exact value.
_C = {
    "f64": dict(
        MANT=52, BIAS=1023, EMAX=1023, MAGIC=6755399441055744.0,
        LOG2E=1.4426950408889634, LN2=(0.6931471805599453, 2.3190468138462996e-17),
        TWO_OVER_PI=0.6366197723675814,
        PIO2=(1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33),
        SQRT_HALF_BITS=0x3FE6A09E667F3BCD, MIN_NORMAL=2.0 ** -1022, SUB_SHIFT=54,
        # exp: clamp x so that k stays in [-1077, 1025]; exp(-746) < 2^-1075 rounds to 0,
        # exp(710) overflows.  expm1 rounds to -1 below -40; tanh rounds to 1 above 20.
        EXP_LO=-746.0, EXP_HI=710.0, EXPM1_LO=-40.0, TANH_HI=20.0,
        # expm1(r) = r + r^2 (1/2 + r Q(r)),  |r| <= ln2/2
        Q=(0.16666666666666669, 0.041666666666666664, 0.008333333333330065,
           0.0013888888888886554, 0.00019841269863040545, 2.4801587317135164e-05,
           2.7557268480310024e-06, 2.755728298405588e-07, 2.5100375832561234e-08,
           2.091122972975856e-09),
        # 2 atanh(s) = 2s + s z T(z),  z = s^2 <= ((sqrt2-1)/(sqrt2+1))^2
        T=(0.666666666666667, 0.39999999999899505, 0.28571428625975487, 0.2222221113479508,
           0.18182889125261723, 0.15331721600556042, 0.14616449685043406),
        # sin r = r + r z S(z),  cos r = 1 - z/2 + z^2 C(z),  z = r^2 <= (pi/4 + 1e-3)^2
        S=(-0.16666666666666666, 0.008333333333333331, -0.00019841269841265003,
           2.7557319219291695e-06, -2.5052106215978872e-08, 1.6058529011960858e-10,
           -7.586543634101903e-13),
        # tanh a = a + a z P(z),  z = a^2 <= TANH_SMALL^2
        TANH_SMALL=0.55,
        P=(-0.3333333333333333, 0.13333333333332714, -0.053968253967434016,
           0.021869488493666944, -0.008863234397814355, 0.003592110378689024,
           -0.001455661830100716, 0.0005889360520074057, -0.0002346347410887237,
           8.511313685577672e-05, -2.060276537636634e-05),
        CC=(0.041666666666666664, -0.0013888888888887378, 2.4801587298736863e-05,
            -2.755731725679604e-07, 2.087614315990944e-09, -1.1382408754153254e-11),
    ),
    "f32": dict(
        MANT=23, BIAS=127, EMAX=127, MAGIC=12582912.0,
        LOG2E=1.4426950216293335, LN2=(0.6931471824645996, -1.9046542121259336e-09),
        TWO_OVER_PI=0.6366197466850281,
        PIO2=(1.5707963705062866, -4.371138828673793e-08, -1.7151245100058819e-15),
        SQRT_HALF_BITS=0x3F3504F3, MIN_NORMAL=2.0 ** -126, SUB_SHIFT=25,
        EXP_LO=-104.0, EXP_HI=89.0, EXPM1_LO=-20.0, TANH_HI=10.0,
        Q=(0.1666666716337204, 0.041666556149721146, 0.00833332072943449,
           0.0013926175888627768, 0.00019882690685335547),
        T=(0.6666668653488159, 0.3998878002166748, 0.29579949378967285),
        S=(-0.1666666716337204, 0.008333331905305386, -0.00019840081222355366,
           2.724914793361677e-06),
        TANH_SMALL=0.55,
        P=(-0.3333333134651184, 0.13333113491535187, -0.05390942841768265,
           0.021309388801455498, -0.00661022774875164),
        CC=(0.0416666641831398, -0.0013888300163671374, 2.4547298380639404e-05),
    ),
}


def get_math_fn(module: ir.Module, name: str, dtype: str) -> ir.Function:
    """Return ``adjit_<name>_<f32|f64>`` in ``module``, defining it on first use.

    The function takes (``pow``: two) and returns floats of ``dtype`` ("float32"/"f32" or
    "float64"/"f64"), is ``internal`` and ``alwaysinline``.  Calling it again with the same
    module returns the same function object.
    """
    if name not in SUPPORTED | BINARY:
        raise ValueError(f"unsupported math function {name!r}; "
                         f"supported: {sorted(SUPPORTED | BINARY)}")
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use float32 or float64")
    suffix = _DTYPES[dtype]
    fname = f"adjit_{name}_{suffix}"
    existing = module.globals.get(fname)
    if existing is not None:
        return existing
    em = _Emitter(module, suffix)        # declares the intrinsics first: may raise
    fn = ir.Function(module, ir.FunctionType(em.ft, [em.ft] * (2 if name in BINARY else 1)), name=fname)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    em.b = ir.IRBuilder(fn.append_basic_block("entry"))
    em.b.ret(getattr(em, name)(*fn.args))
    return fn


def _intrinsic(module: ir.Module, name: str, fnty: ir.FunctionType) -> ir.Function:
    """Declare (or reuse) a scalar intrinsic, refusing a clashing earlier declaration (e.g.
    the one-argument llvm.fma that ``declare_intrinsic('llvm.fma', [t])`` builds)."""
    fn = module.declare_intrinsic(name, [fnty.return_type], fnty)
    if str(fn.function_type) != str(fnty):
        raise TypeError(f"{fn.name} already declared as {fn.function_type}, need {fnty}")
    return fn


class _Emitter(TrigMixin, SpecialMixin):
    """Emits straight-line code for one dtype at the position of builder ``self.b``.

    Integers are the same width as the float (i32 for f32, i64 for f64) so that every
    bitcast is lane-for-lane; each method takes and returns ``ir.Value`` of the float type.
    """

    def __init__(self, module: ir.Module, suffix: str):
        self.b: ir.IRBuilder | None = None      # set by the caller before emitting
        self.module = module
        self.k = _C[suffix]
        self.ft = ir.FloatType() if suffix == "f32" else ir.DoubleType()
        self.it = ir.IntType(32 if suffix == "f32" else 64)
        t = self.ft
        self._fma = _intrinsic(module, "llvm.fma", ir.FunctionType(t, [t, t, t]))
        self._fabs = _intrinsic(module, "llvm.fabs", ir.FunctionType(t, [t]))
        self._copysign = _intrinsic(module, "llvm.copysign", ir.FunctionType(t, [t, t]))

    def fma64(self, a, b, c):
        """float64 fma (sin/cos reduce large float32 arguments in float64)."""
        d = ir.DoubleType()
        fn = _intrinsic(self.module, "llvm.fma", ir.FunctionType(d, [d, d, d]))
        return self.b.call(fn, [a, b, c])

    # ---- small helpers -------------------------------------------------------------------
    def c(self, v: float) -> ir.Constant:
        return ir.Constant(self.ft, v)

    def ci(self, v: int) -> ir.Constant:
        return ir.Constant(self.it, v)

    def fma(self, a, b, c):
        return self.b.call(self._fma, [a, b, c])

    def bits(self, x):
        return self.b.bitcast(x, self.it)

    def flt(self, i):
        return self.b.bitcast(i, self.ft)

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    def fcmp(self, op, a, b):
        """Ordered comparison: false when either side is NaN (so NaN keeps the else arm)."""
        return self.b.fcmp_ordered(op, a, b)

    def poly(self, t, coeffs):
        """sum(coeffs[i] * t^i).  Horner up to 8 terms; longer ones use Estrin's scheme
        (pairs c_i + c_{i+1} t, then powers t^2, t^4, ...), which halves the dependency
        chain (f64 exp 12% faster measured) at the same accuracy for these decaying series."""
        if len(coeffs) <= 8:
            acc = self.c(coeffs[-1])
            for cf in reversed(coeffs[:-1]):
                acc = self.fma(acc, t, self.c(cf))
            return acc
        terms, p = [self.c(cf) for cf in coeffs], t
        while len(terms) > 1:
            paired = [self.fma(terms[i + 1], p, terms[i]) for i in range(0, len(terms) - 1, 2)]
            terms = paired + terms[len(terms) - len(terms) % 2:]
            if len(terms) > 1:
                p = self.b.fmul(p, p)
        return terms[0]

    def clamp(self, x, lo, hi):
        """min/max with selects; unlike llvm.minnum/maxnum a NaN input stays NaN."""
        x = self.sel(self.fcmp(">", x, self.c(hi)), self.c(hi), x)
        return self.sel(self.fcmp("<", x, self.c(lo)), self.c(lo), x)

    def pow2(self, ki):
        """2^ki for an integer ki in [1 - BIAS, EMAX] (a normal number), built from bits."""
        k = self.k
        return self.flt(self.b.shl(self.b.add(ki, self.ci(k["BIAS"])), self.ci(k["MANT"])))

    def round_mul(self, x, scale):
        """(kf, ki) with kf = rint(x*scale) as a float and ki the same as an integer.

        Uses the magic constant instead of fptosi: fptosi of NaN is poison, and f64 -> i64
        conversion has no AVX2 instruction.  Needs |x*scale| < 2^(MANT-1).
        """
        magic = self.c(self.k["MAGIC"])
        t = self.fma(x, self.c(scale), magic)
        kf = self.b.fsub(t, magic)
        ki = self.b.sub(self.bits(t), self.bits(magic))
        return kf, ki

    def reduce_ln2(self, x):
        """(r, ki) with x = ki*ln2 + r, |r| <= ln2/2.  The first FMA step is exact."""
        hi, lo = self.k["LN2"]
        kf, ki = self.round_mul(x, self.k["LOG2E"])
        r = self.fma(kf, self.c(-hi), x)
        return self.fma(kf, self.c(-lo), r), ki

    def expm1_tail(self, r):
        """t(r) = expm1(r) - r = r^2 (1/2 + r Q(r)) for |r| <= ln2/2."""
        p = self.fma(r, self.poly(r, self.k["Q"]), self.c(0.5))
        return self.b.fmul(self.b.fmul(r, r), p)

    def int_to_float(self, i):
        """Signed integer (|i| < 2^31) to float; via i32 because AVX2 lacks i64 -> f64."""
        if self.it.width == 64:
            i = self.b.trunc(i, ir.IntType(32))
        return self.b.sitofp(i, self.ft)

    # ---- exp family ----------------------------------------------------------------------
    def exp(self, x):
        b, k = self.b, self.k
        # Invariant after clamping: ki in [-(BIAS+MANT+2), EMAX+2]; each half of ki is a
        # normal exponent, so p * 2^k1 is exact and * 2^k2 rounds once (also when subnormal).
        x = self.clamp(x, k["EXP_LO"], k["EXP_HI"])
        r, ki = self.reduce_ln2(x)
        p = b.fadd(self.c(1.0), b.fadd(r, self.expm1_tail(r)))
        k1 = b.ashr(ki, self.ci(1))
        k2 = b.sub(ki, k1)
        return b.fmul(b.fmul(p, self.pow2(k1)), self.pow2(k2))

    def expm1(self, x, *, clamp=True):
        b, k = self.b, self.k
        xc = self.clamp(x, k["EXPM1_LO"], k["EXP_HI"]) if clamp else x
        r, ki = self.reduce_ln2(xc)
        # ki <= EMAX + 1 after clamping; for ki = EMAX + 1 use 2^EMAX and a final factor 2.
        big = b.icmp_signed(">", ki, self.ci(k["EMAX"]))
        s = self.pow2(self.sel(big, self.ci(k["EMAX"]), ki))
        # y = s*r + (s - 1) + s*t(r), summed so that expm1(r) is never rounded on its own
        # (its rounding error would be scaled by s).  2^k - 1 is exact while k <= MANT+1.
        y = self.fma(s, r, b.fsub(s, self.c(1.0)))
        y = self.fma(s, self.expm1_tail(r), y)
        y = b.fmul(y, self.sel(big, self.c(2.0), self.c(1.0)))
        if not clamp:
            return y
        return self.sel(self.fcmp("==", x, self.c(0.0)), x, y)   # keeps the sign of -0

    def tanh(self, x):
        b, k = self.b, self.k
        a = self.b.call(self._fabs, [x])
        a = self.sel(self.fcmp(">", a, self.c(k["TANH_HI"])), self.c(k["TANH_HI"]), a)
        # |x| >= TANH_SMALL: 1 - 2/(expm1(2a) + 2); the subtraction from 1 hides the
        # rounding errors of the quotient (em/(em+2) would show them at full size).
        em = self.expm1(b.fadd(a, a), clamp=False)        # 2a <= 2*TANH_HI: no overflow
        big = b.fsub(self.c(1.0), b.fdiv(self.c(2.0), b.fadd(em, self.c(2.0))))
        # |x| < TANH_SMALL: odd polynomial a + a z P(z), exact to rounding for tiny a.
        z = b.fmul(a, a)
        small = self.fma(b.fmul(a, z), self.poly(z, k["P"]), a)
        y = self.sel(self.fcmp("<", a, self.c(k["TANH_SMALL"])), small, big)
        return b.call(self._copysign, [y, x])

    # ---- log family ----------------------------------------------------------------------
    def split_exponent(self, xi):
        """For bits xi of a positive normal number: (e as int, m) with x = 2^e m and
        m in [sqrt(1/2), sqrt(2))."""
        b, k = self.b, self.k
        e = b.ashr(b.sub(xi, self.ci(k["SQRT_HALF_BITS"])), self.ci(k["MANT"]))
        m = self.flt(b.sub(xi, b.shl(e, self.ci(k["MANT"]))))
        return e, m

    def log_core(self, e, f):
        """e*ln2 + log(1+f) for |f| <= sqrt(2) - 1; exact to rounding as f -> 0."""
        b, k = self.b, self.k
        hi, lo = k["LN2"]
        s = b.fdiv(f, b.fadd(self.c(2.0), f))
        z = b.fmul(s, s)
        rz = b.fmul(z, self.poly(z, k["T"]))
        hfsq = b.fmul(self.c(0.5), b.fmul(f, f))
        t = self.fma(s, b.fadd(hfsq, rz), b.fmul(e, self.c(lo)))
        return self.fma(e, self.c(hi), b.fadd(f, b.fsub(t, hfsq)))

    def log(self, x):
        b, k = self.b, self.k
        # Subnormal inputs: scale by 2^SUB_SHIFT (exact), subtract SUB_SHIFT from e.
        tiny = self.fcmp("<", x, self.c(k["MIN_NORMAL"]))
        xs = self.sel(tiny, b.fmul(x, self.c(2.0 ** k["SUB_SHIFT"])), x)
        ei, m = self.split_exponent(self.bits(xs))
        e = b.fsub(self.int_to_float(ei), self.sel(tiny, self.c(k["SUB_SHIFT"]), self.c(0.0)))
        y = self.log_core(e, b.fsub(m, self.c(1.0)))
        return self._log_specials(x, y, self.c(0.0))

    def log1p(self, x):
        b, k = self.b, self.k
        one = self.c(1.0)
        u = b.fadd(one, x)
        # TwoSum: err = (1 + x) - u exactly, for any ordering of magnitudes.
        xv = b.fsub(u, one)
        err = b.fadd(b.fsub(one, b.fsub(u, xv)), b.fsub(x, xv))
        # x > -1 implies u >= 2^-(MANT+1), a normal number: no subnormal path is needed.
        ei, m = self.split_exponent(self.bits(u))
        # f = (1+x)/2^e - 1 = (m - 1) + err*2^-e; clamp e so 2^-e stays normal (err*2^-e is
        # then far below half an ulp of f anyway).
        ec = self.sel(b.icmp_signed(">", ei, self.ci(k["EMAX"] - 1)), self.ci(k["EMAX"] - 1), ei)
        f = b.fadd(b.fsub(m, one), b.fmul(err, self.pow2(b.neg(ec))))
        y = self.log_core(self.int_to_float(ei), f)
        y = self.sel(self.fcmp("==", x, self.c(0.0)), x, y)   # keeps the sign of -0
        return self._log_specials(x, y, self.c(-1.0))

    def _log_specials(self, x, y, pole):
        """log(pole) = -inf, log(<pole) = NaN, log(NaN) = NaN, log(+inf) = +inf."""
        inf = self.c(float("inf"))
        y = self.sel(self.fcmp("==", x, inf), inf, y)
        y = self.sel(self.fcmp("==", x, pole), self.c(float("-inf")), y)
        bad = self.b.fcmp_unordered("<", x, pole)              # x < pole or x is NaN
        return self.sel(bad, self.c(float("nan")), y)

    # ---- pow -----------------------------------------------------------------------------
    def rint(self, x):
        """x rounded to an integer (ties to even): |x| + 2^MANT - 2^MANT rounds exactly for
        |x| < 2^MANT; larger floats are integers already (NaN stays NaN)."""
        b, two_mant = self.b, self.c(2.0 ** self.k["MANT"])
        a = b.call(self._fabs, [x])
        r = b.call(self._copysign, [b.fsub(b.fadd(a, two_mant), two_mant), x])
        return self.sel(self.fcmp("<", a, two_mant), r, x)

    def pow(self, a, p):
        """numpy.power(a, p): |a|**p = exp(p log|a|), with the sign of a for odd integer p,
        NaN for finite a < 0 and non-integer p, 1 for p = 0 or a = 1 (NaN included) and for
        |a| = 1 with p = ±inf.  Zeros and infinities follow from log and exp (log 0 = -inf,
        exp(±inf) = inf / 0).  Relative error about |p log|a|| ulp (the rounding of the log
        is scaled by p), at most ~710 ulp where the result is a finite normal number.

        No comparison with an infinity: LLVM's optimizer turns those into llvm.is.fpclass,
        which the ptx target cannot emit.  (a is finite where log|a| < inf is spelled as
        |a| below the largest float.)"""
        b = self.b
        one, zero = self.c(1.0), self.c(0.0)
        aa = b.call(self._fabs, [a])
        la = self.log(aa)
        t = self.sel(self.fcmp("==", la, zero), zero, b.fmul(p, la))   # |a| = 1: 1, p = ±inf too
        mag = self.exp(t)
        is_int = self.fcmp("==", self.rint(p), p)            # ±inf count as even integers
        half = b.fmul(p, self.c(0.5))
        odd = b.and_(is_int, self.fcmp("!=", self.rint(half), half))
        y = self.sel(odd, b.call(self._copysign, [mag, a]), mag)
        big = self.c(float.fromhex("0x1.fffffep+127") if self.it.width == 32
                     else float.fromhex("0x1.fffffffffffffp+1023"))
        neg_finite = b.and_(self.fcmp("<", a, zero), self.fcmp("<=", aa, big))
        bad = b.and_(neg_finite, b.xor(is_int, ir.Constant(ir.IntType(1), 1)))
        y = self.sel(bad, self.c(float("nan")), y)
        trivial = b.or_(self.fcmp("==", p, zero), self.fcmp("==", a, one))
        return self.sel(trivial, one, y)
