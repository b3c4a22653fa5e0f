"""Scalar forms with numpy's real semantics, where sympy's own would go complex.

sympy works in the complex numbers: ``sqrt(-x**2)`` becomes ``I*Abs(x)``, ``sqrt(x)**2``
becomes ``x``, ``exp(log(x))`` becomes ``x``, ``(-8)**(1/3)`` becomes ``2*(-1)**(1/3)``.  Each
is right over the complex numbers and wrong for adjit, whose values are IEEE floats: numpy gives
NaN for the square root or logarithm of a negative number and for a negative base raised to a
non-integer power.  So the ops whose real and complex meanings differ have scalar forms here:

* :class:`real_pow` ``(a, p)`` -- ``numpy.power``: a negative base with an integer-valued
  exponent keeps its sign rule, with a non-integer exponent gives NaN (a finite base);
  ``a**0 = 1`` and ``1**p = 1`` even for NaN.  Used whenever ``p`` is not an integer literal
  and ``a`` is not known to be nonnegative; otherwise sympy's ``Pow`` (exact there, and it
  merges products: ``x**9 * x**8 = x**17``).
* :class:`real_sqrt` -- ``numpy.sqrt`` (NaN below zero, ``sqrt(-0.0) = -0.0``).
* :class:`real_log` -- ``numpy.log`` (NaN below zero); sympy does not cancel it against exp.
* :class:`ieee_zero` ``(x)`` -- ``x - x`` computed in IEEE: 0 for finite ``x``, NaN for ±inf
  and NaN.  sympy cancels like terms (``x - x``, ``0*x``, ``x/x``, ``(a*b + a) - a*b``) as
  real-number algebra would; where that drops an operand of an arithmetic op, fuse
  subtracts ``ieee_zero`` of it, so an inf or NaN there still gives NaN, as numpy.
  A division whose operands would cancel is kept as written, :class:`ieee_div`.
* :class:`real_sign` -- ``numpy.sign`` (sympy's ``sign`` reads ``sign(exp(x))`` as 1, also
  for NaN).
* the comparisons :class:`ieee_eq`, :class:`ieee_ne`, :class:`ieee_lt`, :class:`ieee_le`,
  :class:`ieee_gt`, :class:`ieee_ge` -- ``numpy.equal`` ... ``numpy.greater_equal``: IEEE 754
  comparisons, false whenever an operand is NaN except ``!=``, which is true then.  sympy's
  relationals are reflexive (``Ne(x, x)`` is False, ``x <= x`` True), read its real symbols
  as finite (``Abs(x) < oo`` is True) and negate themselves (``Not(x < y)`` is ``x >= y``,
  also inside ``Piecewise``, ``ITE`` and ``cse``); each is wrong for NaN.  These are opaque
  booleans: sympy evaluates them only over two numbers, and never negates one.

Each stays unevaluated unless its operands are numbers (then it is evaluated with numpy, as the
op would be) or its base is known to be nonnegative (then it is sympy's own function, so
``sqrt(x**2) = Abs(x)`` still simplifies).  :func:`numeric` turns a numpy scalar back into a
sympy number.  Printers: ``_numpycode`` here; the LLVM printer has a rule for each class (the comparisons
lower to ``fcmp oeq, une, olt, ole, ogt, oge``).
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.logic.boolalg import BooleanFunction
from sympy.printing.precedence import PRECEDENCE


def numeric(value) -> sp.Basic:
    """A numpy/Python scalar as a sympy number: a bool as true/false, an integer value below
    2**31 as an Integer (so integer exponents stay exact), inf as oo, NaN as nan."""
    if isinstance(value, (bool, np.bool_)):
        return sp.true if value else sp.false
    v = float(value)
    if np.isnan(v):
        return sp.nan
    if np.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    return sp.Integer(int(v)) if v.is_integer() and abs(v) < 2**31 else sp.Float(v)


def _float(e) -> float | None:
    """The value of a real sympy number (nan, oo included), else None."""
    if e.is_Number or e.is_NumberSymbol:
        return float(e)
    return None


def _over_numbers(fn, *args):
    """numpy's value of ``fn`` over ``args`` (as float64) when every one is a number, as a
    sympy number; else None (the form stays unevaluated)."""
    values = [_float(a) for a in args]
    if any(v is None for v in values):
        return None
    with np.errstate(all="ignore"):
        return numeric(fn(*(np.float64(v) for v in values)))


class _Real(sp.Function):
    """A real-valued function (or NaN): the value of a real operand is real, never complex."""

    def _eval_is_extended_real(self):
        return True

    def _sympystr(self, printer):
        return f"{self._name}({', '.join(printer._print(a) for a in self.args)})"

    def _numpycode(self, printer):
        fn = printer._module_format("numpy." + self._numpy)
        return f"{fn}({', '.join(printer._print(a) for a in self.args)})"


class real_pow(_Real):
    """``numpy.power(a, p)``."""
    nargs, _name, _numpy = 2, "pow", "power"

    @classmethod
    def eval(cls, a, p):
        value = _over_numbers(np.power, a, p)
        if value is not None:
            return value
        fa = _float(a)
        if p.is_zero:
            return sp.Integer(1)
        if p.is_Integer:
            return sp.Pow(a, p)
        if fa is not None:
            # A number base with a runtime exponent: sympy's Pow is numpy's power only for a
            # finite positive base (it writes 0**-p as zoo**p, NaN when printed, where numpy
            # gives 0 for p < 0; and oo, -1, -2 ... need numpy's sign and NaN rules).
            return sp.Pow(a, p) if 0 < fa < np.inf else None
        if a.is_nonnegative:
            return sp.Pow(a, p)
        return None


class real_sqrt(_Real):
    """``numpy.sqrt(x)``."""
    nargs, _name, _numpy = 1, "sqrt", "sqrt"

    @classmethod
    def eval(cls, x):
        value = _over_numbers(np.sqrt, x)
        if value is not None:
            return value
        if x.is_nonnegative:
            return sp.sqrt(x)
        return None


class real_log(_Real):
    """``numpy.log(x)``."""
    nargs, _name, _numpy = 1, "log", "log"

    @classmethod
    def eval(cls, x):
        return _over_numbers(np.log, x)


class _Compare(BooleanFunction):
    """A comparison of two numbers with numpy's (IEEE 754's) semantics: a boolean sympy cannot
    decide unless both operands are numbers (then numpy decides, NaN and infinities included).
    No assumption, reflexivity or negation rule applies to it."""
    nargs = 2
    _numpy: str    # numpy's function
    _infix: str    # the operator, for printing
    _fcmp: tuple   # the LLVM fcmp: (ordered?, operator)

    @classmethod
    def eval(cls, a, b):
        return _over_numbers(getattr(np, cls._numpy), a, b)

    @property
    def lhs(self):
        return self.args[0]

    @property
    def rhs(self):
        return self.args[1]

    # A proposition sympy cannot look into: its operands are numbers, never propositions
    # (logic rewrites must not treat them as such), and the set of reals where it holds
    # misses NaN (``x < 0 or x >= 0`` does not cover NaN, so Piecewise must not collapse).
    @property
    def binary_symbols(self):
        return set()

    def to_nnf(self, simplify=True):
        return self

    def to_anf(self, deep=True):
        return self

    def _eval_simplify(self, **kwargs):
        return self

    def _eval_as_set(self):
        raise NotImplementedError("an IEEE comparison holds on no set of reals (NaN)")

    def _sympystr(self, printer):
        prec = PRECEDENCE["Relational"]
        return f"{printer.parenthesize(self.lhs, prec)} {self._infix} " \
               f"{printer.parenthesize(self.rhs, prec)}"

    def _numpycode(self, printer):
        fn = printer._module_format("numpy." + self._numpy)
        return f"{fn}({printer._print(self.lhs)}, {printer._print(self.rhs)})"


class ieee_eq(_Compare):
    """``numpy.equal``: ordered and equal (false for NaN; ``-0.0 == 0.0``)."""
    _numpy, _infix, _fcmp = "equal", "==", (True, "==")


class ieee_ne(_Compare):
    """``numpy.not_equal``: unordered or unequal (true for NaN: ``x != x`` is ``isnan``)."""
    _numpy, _infix, _fcmp = "not_equal", "!=", (False, "!=")


class ieee_lt(_Compare):
    """``numpy.less``: ordered and less."""
    _numpy, _infix, _fcmp = "less", "<", (True, "<")


class ieee_le(_Compare):
    """``numpy.less_equal``: ordered and less or equal (false for NaN, even ``x <= x``)."""
    _numpy, _infix, _fcmp = "less_equal", "<=", (True, "<=")


class ieee_gt(_Compare):
    """``numpy.greater``: ordered and greater."""
    _numpy, _infix, _fcmp = "greater", ">", (True, ">")


class ieee_ge(_Compare):
    """``numpy.greater_equal``: ordered and greater or equal (false for NaN)."""
    _numpy, _infix, _fcmp = "greater_equal", ">=", (True, ">=")


def power(a, p):
    """The scalar form of ``a ** p`` (numpy's ``power``)."""
    return real_pow(a, p)


def divide(a, b):
    """The scalar form of ``a / b``.  Over a literal zero it is kept as written
    (:class:`ieee_div`: ±inf by the sign of a, NaN for 0 and NaN), where sympy's ``a/0`` is
    the sign-less ``zoo``."""
    a, b = sp.sympify(a), sp.sympify(b)
    if b.is_zero and not a.is_Number:
        return ieee_div(a, b)
    return a / b


class ieee_zero(_Real):
    """``x - x`` in IEEE arithmetic: +0.0 for finite ``x`` (so ``y - ieee_zero(x)`` is ``y``,
    sign of zero included), NaN for ±inf and NaN."""
    nargs, _name = 1, "zero_of"

    @classmethod
    def eval(cls, x):
        return _over_numbers(lambda v: v - v, x)

    def _numpycode(self, printer):
        a = printer._print(self.args[0])
        return f"(({a}) - ({a}))"


class ieee_div(_Real):
    """``a / b`` as written: fuse keeps a division whose operands sympy would cancel
    (``x / x``, ``0 / x``, ``a*b / b``) unevaluated, so a zero, inf or NaN divisor gives
    numpy's value (``0 / 0`` and ``inf / inf`` are NaN, ``0 / inf`` is 0)."""
    nargs, _name = 2, "div"

    @classmethod
    def eval(cls, a, b):
        return _over_numbers(np.divide, a, b)

    def _numpycode(self, printer):
        a, b = (printer._print(x) for x in self.args)
        return f"(({a}) / ({b}))"


class real_sign(_Real):
    """``numpy.sign(x)``: sympy's ``sign`` decides from assumptions (``sign(exp(x))`` is 1
    for a real ``x``), which is wrong for NaN; this one is evaluated over numbers only."""
    nargs, _name, _numpy = 1, "sign", "sign"

    @classmethod
    def eval(cls, x):
        return _over_numbers(np.sign, x)
