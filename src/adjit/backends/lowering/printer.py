"""Print a fused region's sympy expression as LLVM IR (one scalar evaluation).

The expression is first split by ``sympy.cse`` so shared subterms are computed once.
Transcendental functions call the branch-free inline functions of :mod:`.mathfn`, so
the loop around this body vectorizes.  NaN propagates as in numpy: max/min use the
NaN-propagating ``llvm.maximum``/``llvm.minimum``, comparisons are ordered (false on
NaN, like numpy's) and ``!=`` unordered (true on NaN): see :class:`adjit.ops.realfn.ieee_eq`.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp
from llvmlite import ir
from sympy.codegen.cfunctions import log1p

from ...ops.elementwise import is_boolean
from ...ops.elementwise_more import (real_ceil, real_clip, real_exp2, real_expm1, real_floor, real_log1p,
                                     real_log2, real_rint)
from ...ops.realfn import _Compare, ieee_div, ieee_zero, real_log, real_pow, real_sign, real_sqrt
from .mathfn import get_math_fn

F32, F64, I1, I8 = ir.FloatType(), ir.DoubleType(), ir.IntType(1), ir.IntType(8)
LLVM_TYPES = {"float32": F32, "float64": F64, "bool": I8}
# elementwise arithmetic may contract a*b+c into one FMA; nothing else is relaxed
FLAGS = ("contract",)


def intrinsic(module: ir.Module, name: str, T: ir.Type, nargs: int) -> ir.Function:
    """Declare ``llvm.<name>.<f32|f64>`` with ``nargs`` operands of type ``T``.

    (``Module.declare_intrinsic`` builds one-operand signatures for two-operand
    intrinsics such as llvm.maximum.)
    """
    full = f"llvm.{name}.{'f32' if T == F32 else 'f64'}"
    fn = module.globals.get(full)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(T, [T] * nargs), name=full)
    return fn


# sympy's own relationals appear only over the byte of a bool leaf (``Ne(x_k, 0)``, negated by
# sympy's logic to ``Eq(x_k, 0)``): never NaN, so ordered or not is the same.  Comparisons of
# numbers are realfn's IEEE ones (``_Compare``).
_BYTE_CMP = {sp.Equality: "==", sp.Unequality: "!="}


class ScalarPrinter:
    """Emits the IR of sympy expressions at the builder's insertion point.

    ``leaf(k)`` returns the IR value of leaf symbol ``x{k}`` (a float, or an i1 for a bool
    leaf), loaded by the caller's loop.  Booleans are sympy booleans (relationals, And, Or,
    Not, ITE, Equivalent) printed as i1; a bool leaf enters as ``Ne(x_k, 0)``.

    A region may hold two float dtypes: the operands of a comparison need not have the dtype
    of the value around it (``where(x32 > 0, 1.0, 2.0)`` is float64).  ``leaf_dtypes[k]`` is
    the dtype of leaf k; each numeric subexpression is computed in the dtype of its float
    leaves (the front end casts explicitly, so an arithmetic term has one), a term of
    constants only in the dtype around it: ``dtype`` at the root (the region's result), the
    operands' at a comparison.
    """

    def __init__(self, builder: ir.IRBuilder, dtype: str, leaf: Callable[[int], ir.Value],
                 leaf_dtypes: tuple = ()):
        self.b, self.T = builder, LLVM_TYPES[dtype]
        self.module = builder.module
        self.leaf = leaf
        self.leaf_types = {f"x{k}": LLVM_TYPES[d] for k, d in enumerate(leaf_dtypes)
                           if d in ("float32", "float64")}
        self.defs: dict = {}    # cse's symbols -> their subexpressions (emitted when used)
        self.types: dict = {}
        self.memo: dict = {}

    @property
    def dtype(self) -> str:
        return "float32" if self.T == F32 else "float64"

    def emit(self, expr: sp.Basic) -> ir.Value:
        """The value of ``expr`` (an i1 for a relational/boolean expression)."""
        subs, (reduced,) = sp.cse([expr], symbols=sp.numbered_symbols("_t"), order="none")
        self.defs.update(subs)
        return self._value(reduced)

    # -- dispatch -------------------------------------------------------------------------
    def _float_type(self, e):
        """The float type ``e`` computes in: its float leaves' (conditions and comparisons
        excluded), or None for a boolean and a term of constants only."""
        if e in self.types:
            return self.types[e]
        if isinstance(e, sp.Symbol):
            t = self._float_type(self.defs[e]) if e in self.defs else self.leaf_types.get(e.name)
        elif is_boolean(e):
            t = None
        else:
            args = [v for v, _ in e.args] if isinstance(e, sp.Piecewise) else e.args
            t = next((t for t in map(self._float_type, args) if t is not None), None)
        self.types[e] = t
        return t

    def _value(self, e, context=None):
        """The IR value of ``e``; ``context``: the float type of a constant-only term."""
        outer = self.T
        self.T = self._float_type(e) or context or outer
        try:
            key = (e, self.T)
            if key not in self.memo:
                self.memo[key] = self._emit(e)
            return self.memo[key]
        finally:
            self.T = outer

    def _emit(self, e):
        b, T = self.b, self.T
        if isinstance(e, sp.Symbol):
            return self._value(self.defs[e]) if e in self.defs else self.leaf(int(e.name[1:]))
        if e is sp.true or e is sp.false:
            return ir.Constant(I1, int(bool(e)))
        if e.is_Number or e.is_NumberSymbol:   # Integer, Rational, Float, oo, nan, E, pi
            return ir.Constant(T, float(e))
        if e in _NOT_REAL:   # a sign-less infinity or a complex unit has no real value
            return ir.Constant(T, float("nan"))
        if isinstance(e, sp.Add):
            return self._fold(b.fadd, e.args)
        if isinstance(e, sp.Mul):
            return self._mul(e)
        if isinstance(e, sp.Pow):
            return self._pow(e.base, e.exp)
        if isinstance(e, real_pow):
            return self._pow(*e.args)
        if isinstance(e, real_sqrt):
            return self._sqrt(self._value(e.args[0]))
        if isinstance(e, ieee_zero):   # x - x: LLVM keeps it (no fast-math flags here)
            x = self._value(e.args[0])
            return b.fsub(x, x)
        if isinstance(e, ieee_div):    # a division kept as written
            return b.fdiv(self._value(e.args[0]), self._value(e.args[1]))
        if isinstance(e, _Compare):
            return self._compare(e)
        if type(e) in _BYTE_CMP:   # over a bool leaf's byte (``Ne(x_k, 0)``, or its negation)
            return self.b.fcmp_ordered(_BYTE_CMP[type(e)], *self._operands(e))
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e.args)
        if isinstance(e, (sp.And, sp.Or)):
            op = b.and_ if isinstance(e, sp.And) else b.or_
            vals = [self._bool(a) for a in e.args]
            out = vals[0]
            for v in vals[1:]:
                out = op(out, v)
            return out
        if isinstance(e, sp.Not):
            return b.xor(self._bool(e.args[0]), ir.Constant(I1, 1))
        if isinstance(e, sp.ITE):
            c, p, q = (self._bool(a) for a in e.args)
            return b.select(c, p, q)
        if isinstance(e, sp.Equivalent):
            first, *rest = [self._bool(a) for a in e.args]
            out = ir.Constant(I1, 1)
            for v in rest:
                out = b.and_(out, b.icmp_unsigned("==", first, v))
            return out
        if isinstance(e, (sp.Max, sp.Min)):
            fn = intrinsic(self.module, "maximum" if isinstance(e, sp.Max) else "minimum", T, 2)
            vals = [self._value(a) for a in e.args]
            out = vals[0]
            for v in vals[1:]:
                out = b.call(fn, [out, v])
            return out
        if isinstance(e, real_clip):   # numpy's clip: min(max(x, lo), hi), NaN propagating
            x, lo, hi = (self._value(a) for a in e.args)
            m = b.call(intrinsic(self.module, "maximum", T, 2), [x, lo])
            return b.call(intrinsic(self.module, "minimum", T, 2), [m, hi])
        if isinstance(e, sp.Abs):
            return b.call(self.module.declare_intrinsic("llvm.fabs", [T]), [self._value(e.args[0])])
        if isinstance(e, (sp.sign, real_sign)):
            x = self._value(e.args[0])
            zero, one = ir.Constant(T, 0.0), ir.Constant(T, 1.0)
            pos = b.select(b.fcmp_ordered(">", x, zero), one, zero)
            neg = b.select(b.fcmp_ordered("<", x, zero), one, zero)
            # sign(nan) = nan, as numpy: x - x is nan only for nan (and inf - inf)
            s = b.fsub(pos, neg)
            isnan = b.fcmp_unordered("uno", x, x)
            return b.select(isnan, x, s)
        if type(e) in _ROUNDING:      # llvm.floor / ceil / roundeven: one instruction anywhere
            return b.call(intrinsic(self.module, _ROUNDING[type(e)], T, 1), [self._value(e.args[0])])
        fn_name = _FUNCTIONS.get(type(e))
        if fn_name is not None:
            fn = get_math_fn(self.module, fn_name, self.dtype)
            return b.call(fn, [self._value(e.args[0])])
        raise NotImplementedError(f"the llvm backend cannot print {type(e).__name__}: {e}")

    # -- pieces -----------------------------------------------------------------------------
    def _fold(self, op, args):
        vals = [self._value(a) for a in args]
        out = vals[0]
        for v in vals[1:]:
            out = op(out, v, flags=FLAGS)
        return out

    def _mul(self, e: sp.Mul):
        num, den = [], []
        for f in e.args:
            if isinstance(f, sp.Pow) and f.exp.is_Number and f.exp.is_negative:
                den.append(sp.Pow(f.base, -f.exp) if f.exp != -1 else f.base)
            else:
                num.append(f)
        top = self._fold(self.b.fmul, num) if num else ir.Constant(self.T, 1.0)
        if den:
            return self.b.fdiv(top, self._fold(self.b.fmul, den), flags=FLAGS)
        return top

    def _sqrt(self, x):
        return self.b.call(self.module.declare_intrinsic("llvm.sqrt", [self.T]), [x])

    def _pow(self, base, exp):
        """``base ** exp`` as ``numpy.power``.  Integer literals up to MAX_MULTIPLY square and
        multiply (exact for negative bases; 1/x**n for negative n); a literal 1/2 is ``sqrt``
        (numpy's ``power`` with a scalar 0.5 is ``sqrt``: NaN at -inf, -0 at -0), -1/2 is
        ``1/sqrt`` with power's values at -0 (inf) and -inf (0); every other exponent calls
        :meth:`mathfn pow <adjit.backends.lowering.mathfn._Emitter.pow>`."""
        b, T = self.b, self.T
        if exp.is_Integer and abs(int(exp)) <= MAX_MULTIPLY:
            n = abs(int(exp))
            x = self._value(base)
            out, sq = None, x
            while n:  # square-and-multiply
                if n & 1:
                    out = sq if out is None else b.fmul(out, sq, flags=FLAGS)
                n >>= 1
                if n:
                    sq = b.fmul(sq, sq, flags=FLAGS)
            out = out if out is not None else ir.Constant(T, 1.0)
            return b.fdiv(ir.Constant(T, 1.0), out) if exp < 0 else out
        if exp.is_Number and float(exp) == 0.5:    # numpy's power(x, 0.5) is sqrt(x)
            return self._sqrt(self._value(base))
        if exp.is_Number and float(exp) == -0.5:   # 1/sqrt with power's -0 and -inf
            x = b.fadd(self._value(base), ir.Constant(T, 0.0))      # -0 + 0 = +0
            r = b.fdiv(ir.Constant(T, 1.0), self._sqrt(x))
            return b.select(b.fcmp_ordered("==", x, ir.Constant(T, float("-inf"))),
                            ir.Constant(T, 0.0), r)
        fn = get_math_fn(self.module, "pow", self.dtype)
        return b.call(fn, [self._value(base), self._value(exp)])

    def _number(self, e, T):
        """A numeric operand of type ``T``: a bool leaf (an i1, as in ``Ne(x_k, 0)``) counts
        as 0 or 1."""
        v = self._value(e, T)
        return self.b.uitofp(v, T) if v.type == I1 else v

    def _operands(self, e):
        """The operands of a comparison, in their own float type (the dtype around the
        comparison where both are constants)."""
        T = self._float_type(e.lhs) or self._float_type(e.rhs) or self.T
        return self._number(e.lhs, T), self._number(e.rhs, T)

    def _compare(self, e):
        """numpy's comparison: ordered (false on NaN), ``!=`` unordered (une: true on NaN)."""
        ordered, op = e._fcmp
        fcmp = self.b.fcmp_ordered if ordered else self.b.fcmp_unordered
        return fcmp(op, *self._operands(e))

    def _bool(self, e):
        v = self._value(e)
        return v if v.type == I1 else self.b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))

    def _piecewise(self, pieces):
        value, cond = pieces[-1]
        out = self._value(value)
        for value, cond in reversed(pieces[:-1]):
            out = self.b.select(self._bool(cond), self._value(value), out)
        return out


_FUNCTIONS = {sp.exp: "exp", sp.log: "log", real_log: "log", sp.sin: "sin", sp.cos: "cos",
              sp.tanh: "tanh", log1p: "log1p", real_log1p: "log1p", real_expm1: "expm1",
              sp.tan: "tan", sp.erf: "erf", real_log2: "log2", real_exp2: "exp2"}
_ROUNDING = {real_floor: "floor", real_ceil: "ceil", real_rint: "roundeven"}
_NOT_REAL = (sp.zoo, sp.I)
MAX_MULTIPLY = 64   # integer exponents up to this square and multiply; beyond, mathfn's pow
