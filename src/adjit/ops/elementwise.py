"""Elementwise ops: one declaration each.

Each line gives the op's sympy scalar form, its derivative written with front-end ops
(in terms of the forward output ``y`` where that is cheaper: sigmoid' = y(1-y),
tanh' = 1-y², exp' = y), and a test domain.  The numpy reference is derived from the
sympy form with ``sympy.lambdify``; the LLVM lowering prints the same form.

Operands of an elementwise op always have equal shapes and dtypes: the front end
inserts explicit ``broadcast`` and ``cast`` nodes first, so these rules stay scalar
algebra and only ``broadcast``'s VJP sums back.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p
from sympy.logic.boolalg import Boolean
from sympy.printing.numpy import NumPyPrinter

from ..ir import DTypeError, FLOAT_DTYPES, ShapeError, TensorType, label, shape_str
from .realfn import (divide, ieee_eq, ieee_ge, ieee_gt, ieee_le, ieee_lt, ieee_ne, power,
                     real_log, real_sign, real_sqrt)
from .registry import Op, get_op, register
from .tangents import from_vjp_rules, where_jvp

# Symbols of elementwise scalar forms are real: it lets sympy drop Abs/conjugates.
SYMBOLS = sp.symbols("a b c", real=True)


def _same_shapes(name: str, inputs) -> tuple:
    shape = inputs[0].shape
    for other in inputs[1:]:
        if other.shape != shape:
            raise ShapeError(f"{name}({', '.join(label(i) for i in inputs)}): shapes "
                             f"{' and '.join(shape_str(i.shape) for i in inputs)} differ "
                             "(the front end broadcasts before making elementwise nodes)")
    return shape


def _float_rule(name: str):
    def infer(inputs, attrs):
        shape = _same_shapes(name, inputs)
        dtypes = {i.dtype for i in inputs}
        if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
            raise DTypeError(f"{name}({', '.join(label(i) for i in inputs)}): needs one float dtype, "
                             f"got {', '.join(i.dtype for i in inputs)}")
        return TensorType(shape, inputs[0].dtype)
    return infer


def _compare_rule(name: str):
    def infer(inputs, attrs):
        shape = _same_shapes(name, inputs)
        if inputs[0].dtype != inputs[1].dtype:
            raise DTypeError(f"{name}({label(inputs[0])}, {label(inputs[1])}): dtypes "
                             f"{inputs[0].dtype} and {inputs[1].dtype} differ")
        return TensorType(shape, "bool")
    return infer


def _where_rule(inputs, attrs):
    cond, a, b = inputs
    shape = _same_shapes("where", inputs)
    if cond.dtype != "bool":
        raise DTypeError(f"where({label(cond)}, ...): the condition must be bool, got {cond.dtype}")
    if a.dtype != b.dtype or a.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"where: branches {label(a)} and {label(b)} need one float dtype, "
                         f"got {a.dtype} and {b.dtype}")
    return TensorType(shape, a.dtype)


# numpy's functions by name, for the code lambdify prints.  (``modules="numpy"`` runs
# ``from numpy import *``, which imports numpy's lazy subpackages -- f2py, random, fft,
# polynomial, ma, ... -- and cost the first compile of every process about 0.1 s.)
_NUMPY_NAMES = {k: v for k, v in vars(np).items() if not k.startswith("_")}


def numpy_lambdify(syms, expr, printer=NumPyPrinter):
    """``sympy.lambdify(syms, expr, modules="numpy")`` without importing all of numpy;
    ``printer``: a NumPyPrinter class (made with lambdify's settings)."""
    settings = {"fully_qualified_modules": False, "inline": True,
                "allow_unknown_functions": True}
    return sp.lambdify(syms, expr, modules=[_NUMPY_NAMES], printer=printer(settings))


@lru_cache(maxsize=None)
def numpy_kernel(name: str):
    """The numpy function of an elementwise op, derived from its sympy form."""
    op = get_op(name)
    syms = SYMBOLS[: op.arity]
    return numpy_lambdify(syms, op.scalar(*syms))


def _numpy_eval(args, node, env):
    with np.errstate(all="ignore"):  # IEEE semantics: overflow gives inf, 0/0 gives nan
        out = np.asarray(numpy_kernel(node.op)(*args), dtype=node.dtype)
    return out if out.shape == np.shape(args[0]) else np.broadcast_to(out, np.shape(args[0])).copy()


def is_boolean(v) -> bool:
    """Whether a scalar form's operand is a sympy boolean (a relational, logic, true/false).

    A bare symbol is not one (sympy's ``Symbol`` subclasses ``Boolean``, but our symbols
    stand for numbers: a bool leaf of a fused region enters as ``Ne(x_k, 0)``).
    """
    return isinstance(v, Boolean) and not isinstance(v, sp.Symbol)


def as_condition(c):
    """A sympy boolean from a condition operand: booleans stay, a number ``c`` is ``c != 0``
    (numpy's truth of a number: NaN is true).

    (A bare symbol as a Piecewise condition is unsafe: nested in a relational, sympy folds
    it to an ``ITE`` and reads the symbol's truth set as all reals, dropping the else branch.)
    """
    return c if is_boolean(c) else ieee_ne(c, 0)


def _compare_form(relation, on_bools):
    """The scalar form of a comparison: ``relation`` (an IEEE comparison of :mod:`.realfn`)
    over numbers, ``on_bools`` over booleans (False < True, as numpy orders bools; sympy
    cannot order booleans)."""
    def form(a, b):
        if is_boolean(a) or is_boolean(b):
            return on_bools(as_condition(a), as_condition(b))
        return relation(a, b)
    return form


def _declare(name, scalar, grads, arity, infer, domain, kinks=None, differentiable=True,
             **fields):
    """Register an elementwise op.  ``fields``: the record's other fields (``public``,
    ``display``, ``latex``, ``cost``, ``zero_preserving``, ``linear``, ...)."""
    # A rule of None is a zero derivative.  Non-differentiable ops (sign, comparisons) are
    # piecewise constant: their derivative is zero wherever it exists, so grad passes zero
    # through them rather than raising (abs' = sign, so grad-of-grad of abs needs this).
    def vjp(node, g, needs):
        y = node
        return [rule(*node.inputs, y, g) if need and rule is not None else None
                for rule, need in zip(grads, needs)]
    # The JVP is derived from the same rules (see tangents.from_vjp_rules) unless given.
    fields.setdefault("jvp", from_vjp_rules(grads) if differentiable else None)
    register(Op(name=name, infer=infer, numpy=_numpy_eval, vjp=vjp,
                scalar=scalar, elementwise=True, arity=arity, domain=domain,
                differentiable=differentiable, extra={"kinks": kinks}, **fields))


def unary(name, scalar, grad, domain=(-2.0, 2.0), kinks=None, **fields):
    """An elementwise op of one float operand; ``aj.<name>`` is made from it unless
    ``public`` says otherwise (None: the front end writes its own function)."""
    fields.setdefault("public", name)
    _declare(name, scalar, (grad,), 1, _float_rule(name), domain, kinks, **fields)


def binary(name, scalar, grad_a, grad_b, domain=(-2.0, 2.0), kinks=None, **fields):
    fields.setdefault("public", name)
    _declare(name, scalar, (grad_a, grad_b), 2, _float_rule(name), domain, kinks, **fields)


def compare(name, scalar, display, commutative=False):
    _declare(name, scalar, (None, None), 2, _compare_rule(name), (-2.0, 2.0),
             differentiable=False, display=display, commutative=commutative)


def _F():
    from .. import frontend
    return frontend


T = 5   # cost of a transcendental function per element (see Op.cost)

# --- unary ------------------------------------------------------------------------------
# name        sympy scalar form                     VJP: (x, y = forward output, g = cotangent)
unary("neg", lambda x: -x, lambda x, y, g: -g, public=None, zero_preserving=True, linear=True)
unary("exp", sp.exp, lambda x, y, g: g * y, cost=T, latex=r"\exp")
unary("log", real_log, lambda x, y, g: g / x, domain=(0.2, 3.0), public=None, cost=T,
      display="ln", latex=r"\ln")
unary("sin", sp.sin, lambda x, y, g: g * _F().cos(x), cost=T, latex=r"\sin")
unary("cos", sp.cos, lambda x, y, g: -(g * _F().sin(x)), cost=T, latex=r"\cos")
unary("tanh", sp.tanh, lambda x, y, g: g * (1 - y * y), cost=T, latex=r"\tanh")
unary("sigmoid", lambda x: 1 / (1 + sp.exp(-x)), lambda x, y, g: g * (y * (1 - y)), cost=T,
      display="σ", latex=r"\sigma")
# relu's mask reads its output (y > 0 exactly when x > 0, NaN included), which the next
# layer keeps anyway: x then has one user and fuses into relu instead of being stored.
unary("relu", lambda x: sp.Max(x, 0), lambda x, y, g: _F().safe_where(y > 0, g, 0.0),
      kinks=lambda x: x)
# softplus(x) = max(x, 0) + log1p(exp(-|x|)) never overflows; its derivative is sigmoid(x).
unary("softplus", lambda x: sp.Max(x, 0) + log1p(sp.exp(-sp.Abs(x))),
      lambda x, y, g: g * _F().sigmoid(x), domain=(-4.0, 4.0), cost=T)
unary("sqrt", real_sqrt, lambda x, y, g: g * 0.5 / y, domain=(0.2, 3.0), cost=T)
unary("abs", sp.Abs, lambda x, y, g: g * _F().sign(x), kinks=lambda x: x, public=None)
_declare("sign", real_sign, (None,), 1, _float_rule("sign"), (-2.0, 2.0), differentiable=False,
         public="sign", display="sgn")

# --- binary -----------------------------------------------------------------------------
def splat(node):
    """The one value (a numpy scalar) that every element of a constant (possibly
    broadcast) holds, else None; NaN counts as one value."""
    while node.op == "broadcast":
        node = node.inputs[0]
    if node.op != "const":
        return None
    arr = node.attr("value").array
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return None
    first = arr.reshape(-1)[0]
    if np.all(arr == first) or (arr.dtype.kind == "f" and np.all(np.isnan(arr))):
        return first
    return None


def literal(node) -> float | None:
    """The value of a numeric constant (possibly broadcast) whose elements are all equal."""
    v = splat(node)
    return None if v is None or v.dtype.kind == "b" else float(v)


def _pow_grad_base(a, b, g):
    """d(a**b)/da = b a**(b-1), and exactly 0 where b = 0 (a**0 = 1 for every a, 0 and NaN
    included).  A literal b gives a literal b - 1 (so the printer sees an integer exponent:
    exact for negative a).  A runtime b reads a**(b-1) at a = 1 only where b = 0 and a is 0
    or NaN (there 0 · a**-1 would be NaN, also in second order); elsewhere a itself, so the
    cross derivative d/db (b a**(b-1)) = a**(b-1) (1 + b log a), 1/a at b = 0, survives."""
    p = literal(b)
    if p is not None:
        if p == 0:
            return None
        return g if p == 1 else g * b * a ** (p - 1.0)
    F = _F()
    safe = F.where(F.equal(b, 0.0), F.where(F.greater(F.abs(a), 0.0), a, 1.0), a)
    return g * b * safe ** (b - 1.0)


def _pow_grad_exponent(a, y, g):
    """d(a**b)/db = a**b log|a|, and 0 at a = 0 (0**b is constant in b on each side of 0),
    as JAX.  For a negative base the derivative is the one of |a|**b with the sign (-1)**b
    held: finite where a**b is defined (an integer b), NaN with a**b itself elsewhere.  So
    an exponent that is constant (a zero cotangent) contributes an exact 0."""
    F = _F()
    zero = F.equal(a, 0.0)
    return g * F.where(zero, 0.0, y * F.log(F.abs(F.where(zero, 1.0, a))))


binary("add", lambda a, b: a + b, lambda a, b, y, g: g, lambda a, b, y, g: g, public=None,
       zero_preserving=True, linear=True, commutative=True)
binary("sub", lambda a, b: a - b, lambda a, b, y, g: g, lambda a, b, y, g: -g, public=None,
       zero_preserving=True, linear=True)
binary("mul", lambda a, b: a * b, lambda a, b, y, g: g * b, lambda a, b, y, g: g * a,
       public=None, linear=True, commutative=True)
binary("div", divide, lambda a, b, y, g: g / b, lambda a, b, y, g: -(g * y / b),
       domain=(0.3, 2.0), public=None)
binary("pow", power, lambda a, b, y, g: _pow_grad_base(a, b, g),
       lambda a, b, y, g: _pow_grad_exponent(a, y, g), domain=(0.3, 2.0), public="power",
       cost=T)
# Ties send the whole cotangent to the first operand (as numpy/JAX subgradients do).
# (their selections are safe_where: not double-where branches, see docs/api.md)
binary("maximum", sp.Max, lambda a, b, y, g: _F().safe_where(a >= b, g, 0.0),
       lambda a, b, y, g: _F().safe_where(a >= b, 0.0, g), kinks=lambda a, b: a - b,
       display="max")
binary("minimum", sp.Min, lambda a, b, y, g: _F().safe_where(a <= b, g, 0.0),
       lambda a, b, y, g: _F().safe_where(a <= b, 0.0, g), kinks=lambda a, b: a - b,
       display="min")

# --- comparisons (bool results, no derivative) ------------------------------------------------
# Over numbers, IEEE comparisons sympy never folds by reflexivity or assumptions nor negates
# (realfn: x != x is true for NaN, x <= x false, abs(x) < oo false for NaN and inf).
# On booleans, ITE(q, False, p) is p and not q: spelled with ITE so no comparison is negated.
compare("greater", _compare_form(ieee_gt, lambda p, q: sp.ITE(q, sp.false, p)), ">")
compare("greater_equal", _compare_form(ieee_ge, lambda p, q: sp.ITE(q, p, sp.true)), "≥")
compare("less", _compare_form(ieee_lt, lambda p, q: sp.ITE(p, sp.false, q)), "<")
compare("less_equal", _compare_form(ieee_le, lambda p, q: sp.ITE(p, q, sp.true)), "≤")
compare("equal", _compare_form(ieee_eq, sp.Equivalent), "=", commutative=True)
# p != q on booleans is "not q if p else q", spelled with ITE (no negated comparison)
compare("not_equal", _compare_form(ieee_ne, lambda p, q: sp.ITE(p, sp.ITE(q, sp.false, p), q)),
        "≠", commutative=True)

# --- selection --------------------------------------------------------------------------
_declare("where", lambda c, a, b: sp.Piecewise((a, as_condition(c)), (b, True)),
         (None, lambda c, a, b, y, g: _F().where(c, g, 0.0),
          lambda c, a, b, y, g: _F().where(c, 0.0, g)),
         3, _where_rule, (-2.0, 2.0), jvp=where_jvp)
