"""More elementwise ops: numpy's tan, log1p, expm1, erf, log2, exp2, square, reciprocal,
floor, ceil, round, clip and logical_*, and the activations leaky_relu, elu, gelu and silu
(PyTorch's names and defaults).  One record each (gelu: one per ``approximate`` variant).

Ops with a parameter take it as an operand: ``leaky_relu(x, s)``, ``elu(x, alpha)`` and
``clip(x, lo, hi)`` are records of two or three float operands (a Python number becomes a
constant operand, folded into the fused kernel as a literal), so the parameter may also be
a node and gets its own gradient (PReLU's learned slope).  Their front-end functions are
written here (``public=None`` on the record) and exported from ``adjit``.

The scalar forms of functions whose sympy meaning is not numpy's are opaque here (evaluated
only over numbers, with numpy): sympy reads ``log1p(-2)`` as complex, ``floor(x + 1)`` as
``floor(x) + 1`` (not so in floating point).  The native lowering prints them with mathfn's
functions (tan, erf, log2, exp2, log1p, expm1) and llvm's floor/ceil/roundeven.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from ..ir import DTypeError, TensorType, label
from .elementwise import (T, _F, _NUMPY_NAMES, _declare, _float_rule, _same_shapes,
                          as_condition, binary, unary)
from .realfn import _over_numbers, _Real, divide, ieee_gt
from .registry import get_op

# --- opaque real functions -------------------------------------------------------------------
_erf = np.frompyfunc(math.erf, 1, 1)
# numpy has no erf: the interpreter's reference is math.erf elementwise (correctly rounded
# to within an ulp or so in float64; float32 rounds the float64 value)
_NUMPY_NAMES.setdefault("erf", lambda x: np.asarray(_erf(np.asarray(x, dtype=np.float64)),
                                                     dtype=np.float64))


def _real_fn(name: str, numpy_name: str):
    fn = getattr(np, numpy_name)

    def eval_(cls, x):
        return _over_numbers(fn, x)
    return type(name, (_Real,), {"nargs": 1, "_name": name, "_numpy": numpy_name,
                                 "eval": classmethod(eval_), "__module__": __name__})


real_log1p = _real_fn("log1p", "log1p")
real_expm1 = _real_fn("expm1", "expm1")
real_log2 = _real_fn("log2", "log2")
real_exp2 = _real_fn("exp2", "exp2")
real_floor = _real_fn("floor", "floor")
real_ceil = _real_fn("ceil", "ceil")
real_rint = _real_fn("rint", "rint")        # numpy's round: half to even


class real_clip(_Real):
    """``numpy.clip(x, lo, hi)`` = min(max(x, lo), hi), opaque: sympy's Min(Max(x, 1), -1)
    is -1, also where x is NaN."""
    nargs, _name, _numpy = 3, "clip", "clip"

    @classmethod
    def eval(cls, x, lo, hi):
        return _over_numbers(np.clip, x, lo, hi)

LN2 = math.log(2.0)
INV_SQRT2 = 1.0 / math.sqrt(2.0)
TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_C, GELU_K = math.sqrt(2.0 / math.pi), 0.044715


def _where(c, a, b):
    return _F().safe_where(c, a, b)


# --- unary functions ---------------------------------------------------------------------------
# name        sympy scalar form              VJP: (x, y = forward output, g = cotangent)
unary("tan", sp.tan, lambda x, y, g: g * (1.0 + y * y), domain=(-1.3, 1.3), cost=T,
      latex=r"\tan")
unary("log1p", real_log1p, lambda x, y, g: g / (1.0 + x), domain=(-0.8, 3.0), cost=T,
      latex=r"\operatorname{log1p}")
unary("expm1", real_expm1, lambda x, y, g: g * (y + 1.0), cost=T, latex=r"\operatorname{expm1}")
unary("erf", sp.erf, lambda x, y, g: g * TWO_OVER_SQRTPI * _F().exp(-(x * x)), cost=T,
      latex=r"\operatorname{erf}")
unary("log2", real_log2, lambda x, y, g: g / (x * LN2), domain=(0.2, 3.0), cost=T,
      latex=r"\log_2")
unary("exp2", real_exp2, lambda x, y, g: g * y * LN2, cost=T, display="2^", latex=r"2^{{{0}}}")
unary("square", lambda x: x ** 2, lambda x, y, g: g * 2.0 * x, latex=r"\operatorname{square}")
unary("reciprocal", lambda x: divide(1, x), lambda x, y, g: -(g * y * y), domain=(0.3, 2.0),
      display="1/", latex=r"\operatorname{recip}")
unary("silu", lambda x: x / (1 + sp.exp(-x)),
      lambda x, y, g: g * _silu_grad(x), domain=(-4.0, 4.0), cost=T,
      latex=r"\operatorname{SiLU}")
# gelu: one record per ``approximate`` variant (PyTorch's gelu(x, approximate=...))
unary("gelu", lambda x: x / 2 * (1 + sp.erf(x * INV_SQRT2)),
      lambda x, y, g: g * (0.5 * (1.0 + _F().erf(x * INV_SQRT2))
                           + x * INV_SQRT_2PI * _F().exp(-0.5 * (x * x))),
      domain=(-3.0, 3.0), public=None, cost=T, latex=r"\operatorname{GELU}")
unary("gelu_tanh", lambda x: x / 2 * (1 + sp.tanh(GELU_C * (x + GELU_K * x ** 3))),
      lambda x, y, g: g * _gelu_tanh_grad(x), domain=(-3.0, 3.0), public=None, cost=T,
      display="gelu_tanh", latex=r"\operatorname{GELU}_{\tanh}")


def _silu_grad(x):
    s = _F().sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _gelu_tanh_grad(x):
    t = _F().tanh(GELU_C * (x + GELU_K * (x * x * x)))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * (x * x))


# floor, ceil, round: piecewise constant, a zero gradient (as numpy/JAX users expect)
for _name, _form, _latex in (("floor", real_floor, r"\left\lfloor {0} \right\rfloor"),
                             ("ceil", real_ceil, r"\left\lceil {0} \right\rceil"),
                             ("round", real_rint, r"\operatorname{round}")):
    _declare(_name, _form, (None,), 1, _float_rule(_name), (-2.0, 2.0), differentiable=False,
             public=_name, latex=_latex)

# --- activations with a parameter operand --------------------------------------------------------
# leaky_relu(x, s) = x if x > 0 else s*x; elu(x, a) = x if x > 0 else a*expm1(x) (PyTorch: the
# branch at 0 is the negative one, so the derivative there is s, a).  The negative branch's
# derivatives read min(x, 0): never an overflowed exp in the branch that is not taken.
binary("leaky_relu", lambda x, s: sp.Piecewise((x, ieee_gt(x, 0)), (s * x, True)),
       lambda x, s, y, g: _where(x > 0, g, g * s),
       lambda x, s, y, g: _where(x > 0, 0.0, g * x),
       kinks=lambda x, s: x, public=None, latex=r"\operatorname{LeakyReLU}")
binary("elu", lambda x, a: sp.Piecewise((x, ieee_gt(x, 0)), (a * real_expm1(x), True)),
       lambda x, a, y, g: _where(x > 0, g, g * a * _F().exp(_F().minimum(x, 0.0))),
       lambda x, a, y, g: _where(x > 0, 0.0, g * _F().expm1(_F().minimum(x, 0.0))),
       kinks=lambda x, a: x, public=None, cost=T, latex=r"\operatorname{ELU}")


# clip(x, lo, hi) = minimum(maximum(x, lo), hi), numpy's definition (hi where lo > hi, NaN
# from any NaN operand); its gradient is that composite's with adjit's tie rule (the first
# operand of maximum/minimum takes a tie): x gets it for lo <= x <= hi (bounds inclusive,
# as PyTorch's clamp), lo where x < lo (and lo <= hi), hi where max(x, lo) > hi.
def _clip_inside(x, lo, hi, g):
    return _where(_F().maximum(x, lo) <= hi, g, 0.0)


def _clip_kinks(x, lo, hi):
    return np.minimum(np.minimum(np.abs(x - lo), np.abs(x - hi)), np.abs(lo - hi))


_declare("clip", real_clip,
         (lambda x, lo, hi, y, g: _where(x >= lo, _clip_inside(x, lo, hi, g), 0.0),
          lambda x, lo, hi, y, g: _where(x >= lo, 0.0, _clip_inside(x, lo, hi, g)),
          lambda x, lo, hi, y, g: _where(_F().maximum(x, lo) <= hi, 0.0, g)),
         3, _float_rule("clip"), (-2.0, 2.0), kinks=_clip_kinks, public=None,
         latex=r"\operatorname{clip}")


# --- logical ops on bool operands -----------------------------------------------------------------
def _logical_rule(name: str):
    def infer(inputs, attrs):
        shape = _same_shapes(name, inputs)
        bad = [i for i in inputs if i.dtype != "bool"]
        if bad:
            raise DTypeError(f"{name}({', '.join(label(i) for i in inputs)}): needs bool "
                             f"operands, got {', '.join(f'{i.dtype} ({label(i)})' for i in bad)}"
                             " (compare numbers first, e.g. x > 0)")
        return TensorType(shape, "bool")
    return infer


def _logical(name, arity, form, display, latex, commutative=False):
    _declare(name, lambda *a: form(*map(as_condition, a)), (None,) * arity, arity,
             _logical_rule(name), (-2.0, 2.0), differentiable=False, public=name,
             display=display, latex=latex, commutative=commutative)
    get_op(name).extra["operands"] = "bool" * arity   # the operand kinds tests draw


# (sympy's Xor of IEEE comparisons does not print for numpy; xor is spelled with ITE, as
# not_equal on booleans is)
_logical("logical_and", 2, sp.And, "∧", r"\land", commutative=True)
_logical("logical_or", 2, sp.Or, "∨", r"\lor", commutative=True)
_logical("logical_xor", 2, lambda p, q: sp.ITE(p, sp.ITE(q, sp.false, p), q), "⊕", r"\oplus",
         commutative=True)
_logical("logical_not", 1, sp.Not, "¬", r"\neg")


# --- front-end functions of the records with parameters ---------------------------------------------
def leaky_relu(x, negative_slope=0.01):
    """PyTorch's ``leaky_relu``: ``x`` where ``x > 0``, else ``negative_slope * x``.  The slope
    may be a node (PReLU); the derivative at 0 is the slope's (PyTorch's)."""
    return _F()._elementwise("leaky_relu", x, negative_slope)


def elu(x, alpha=1.0):
    """PyTorch's ``elu``: ``x`` where ``x > 0``, else ``alpha * expm1(x)``; ``alpha`` may be
    a node.  The derivative at 0 is ``alpha`` (PyTorch's)."""
    return _F()._elementwise("elu", x, alpha)


def gelu(x, approximate: str = "none"):
    """PyTorch's ``gelu``: ``x/2 (1 + erf(x/√2))``, or with ``approximate="tanh"``
    ``x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _F()._elementwise("gelu" if approximate == "none" else "gelu_tanh", x)


def clip(x, a_min, a_max):
    """numpy's ``clip``: ``minimum(maximum(x, a_min), a_max)`` (numbers or nodes, broadcast;
    ``a_max`` where ``a_min > a_max``; NaN from any NaN operand).  One bound may be None.
    Gradient: ``x`` gets it where ``a_min <= x <= a_max`` (bounds inclusive, as PyTorch's
    ``clamp``), a bound where it is the result."""
    F = _F()
    if a_min is None and a_max is None:
        raise ValueError("clip: one of a_min and a_max must be given (numpy's rule)")
    if a_min is None:
        return F.minimum(x, a_max)
    if a_max is None:
        return F.maximum(x, a_min)
    return F._elementwise("clip", x, a_min, a_max)


__all__ = ["clip", "elu", "gelu", "leaky_relu"]
