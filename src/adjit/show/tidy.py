"""Display-level algebra: multiply out the numbers of a displayed product.

The derivative rules build exactly what they compute, so a traced error signal reads
``L̄ · 0.5 / B · 2 (y − t)^(2 − 1)``; the lecture writes ``L̄ (y − t) / B``.
:func:`tidy` rewrites the *displayed* :class:`~adjit.show.terms.Term` tree only (what
the graph computes is untouched) with a few bounded rules, in one bottom-up walk:

* numbers are folded: ``2 − 1`` -> ``1``; ``x^1`` -> ``x``; ``x^0`` -> ``1``;
* in a product (scalings, ``∘``, quotients, negations) the numeric factors are multiplied
  into one coefficient, written first (``0.1 L̄_reg``) and left out when it is 1
  (``0.5 · 2`` -> nothing); a minus sign goes in front;
* the divisors of such a product are moved to its end, so ``/ B`` stays a division:
  ``L̄ · 0.5 / B · 2 (y − t)`` -> ``L̄ (y − t) / B``;
* a sum reduction passes its coefficient out (``Σ −v`` -> ``−Σ v``), as sums are linear.

Matrix products are boundaries (their operands are tidied separately), sums of terms
keep one term per contribution (fan-out stays visible), and nothing else is rewritten.
Exact integer ratios stay exact (``x / 3``, not ``0.333 x``).

>>> from adjit.show.names import Name
>>> from adjit.show.render import Printer
>>> from adjit.show.terms import Term, name, num
>>> L, B, y = (name(Name(s)) for s in "LBy")
>>> t = Term("mul", (Term("mul", (Term("div", (Term("mul", (L, num(0.5)), "scale"), B), "/"),
...                               num(2)), "scale"), y), "scale")
>>> Printer()(t), Printer()(tidy(t))
('L · 0.5 / B · 2 y', 'L y / B')
"""
from __future__ import annotations

import math
from fractions import Fraction

from .terms import Term, num

_PRODUCTS = ("scale", "hadamard")


def tidy(t: Term) -> Term:
    """The same value as ``t``, written with its numbers multiplied out (see the module)."""
    args = tuple(tidy(a) for a in t.args)
    t = Term(t.kind, args, t.info) if args != t.args else t
    if t.kind == "add":
        return _add(t)
    if t.kind == "pow":
        return _pow(t)
    if t.kind == "neg" and _number(args[0]) is not None:
        return _constant(-_number(args[0]))
    if (t.kind == "mul" and t.info in _PRODUCTS) or t.kind in ("div", "neg", "sum"):
        coef, rest, dens = _split(t)
        return _build(coef, rest, dens)
    return t


# --- numbers --------------------------------------------------------------------------------
def _number(t: Term):
    """The exact value of a finite number term (int -> Fraction), else None."""
    if t.kind != "num" or isinstance(t.info, bool) or not isinstance(t.info, (int, float)):
        return None
    if isinstance(t.info, int):
        return Fraction(t.info)
    return t.info if math.isfinite(t.info) else None


def _clean(v):
    """A coefficient as it will print: integers as int, floats to 12 significant digits
    (so ``0.1 · 10`` reads 1, not 0.9999999999999999)."""
    if isinstance(v, Fraction):
        return v
    v = float(f"{v:.12g}")
    return Fraction(int(v)) if v.is_integer() else v


def _constant(v) -> Term:
    """A number as a term: ``num(-2)``, ``num(0.5)``; a ratio as ``2 / 3`` or ``−(2 / 3)``."""
    v = _clean(v)
    if not isinstance(v, Fraction):
        return num(v)
    if v.denominator == 1:
        return num(int(v))
    out = Term("div", (num(abs(v.numerator)), num(v.denominator)), "/")
    return Term("neg", (out,)) if v < 0 else out


def _add(t: Term) -> Term:
    a, b = t.args
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return _constant(x + y if t.info == "+" else x - y)
    if y is not None and y < 0:                      # a + −2 reads a − 2
        return Term("add", (a, _constant(-y)), "-" if t.info == "+" else "+")
    return t


def _pow(t: Term) -> Term:
    base, exp = t.args
    e = _number(exp)
    if e == 1:
        return base
    if e == 0:
        return num(1)
    return t


# --- products: coefficient · rest / divisors ------------------------------------------------
def _join(a: Term | None, b: Term | None, kind: str) -> Term | None:
    if a is None or b is None:
        return a if b is None else b
    return Term("mul", (a, b), kind)


def _split(t: Term):
    """``t`` as ``(coef, rest, divisors)`` with ``t = coef · rest / Π divisors``; ``rest``
    keeps the product's shape with its numbers taken out (None when nothing is left)."""
    v = _number(t)
    if v is not None:
        return v, None, []
    if t.kind == "neg":
        c, r, d = _split(t.args[0])
        return -c, r, d
    if t.kind == "mul" and t.info in _PRODUCTS:
        (ca, ra, da), (cb, rb, db) = _split(t.args[0]), _split(t.args[1])
        return ca * cb, _join(ra, rb, t.info), da + db
    if t.kind == "div":
        (ca, ra, da), (cb, rb, db) = _split(t.args[0]), _split(t.args[1])
        if cb == 0:
            return 1, t, []
        rest = ra
        for extra in db:                              # a / (b / c) = a c / b
            rest = _join(rest, extra, "scale")
        return ca / cb, rest, da + ([rb] if rb is not None else [])
    if t.kind == "sum":                               # Σ c x = c Σ x
        c, r, d = _split(t.args[0])
        if c != 1 and r is not None:
            return c, Term("sum", (_build(1, r, d),), t.info), []
    return 1, t, []


def _build(coef, rest: Term | None, dens: list[Term]) -> Term:
    """``coef · rest / Π dens`` as a term: coefficient first, minus sign in front."""
    coef = _clean(coef)
    if rest is None and not dens:
        return _constant(coef)
    negative = coef < 0
    coef = -coef if negative else coef
    if isinstance(coef, Fraction) and coef.denominator != 1:
        dens = [num(coef.denominator)] + dens
        coef = Fraction(coef.numerator)
    if rest is None:
        out = _constant(coef)
    elif coef == 1:
        out = rest
    else:
        out = Term("mul", (_constant(coef), rest), "scale")
    if dens:
        den = dens[0]
        for d in dens[1:]:
            den = Term("mul", (den, d), "scale")
        if len(dens) > 1:        # in the form a second tidy gives it (3 (a a), not (3 a) a)
            den = tidy(den)
        out = Term("div", (out, den), "/")
    return Term("neg", (out,)) if negative else out
