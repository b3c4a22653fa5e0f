"""The ``fused`` op: an elementwise region (made by the fuse pass) as one sympy expression.

``attrs['expr']`` is written over leaf symbols ``x0, x1, ...``, one per operand: a real
symbol for a float operand; for a bool operand, ``Ne(x_k, 0)`` over an assumption-free
symbol (its byte), see :func:`leaf_value`.  The numpy reference prints the expression with
:class:`_FusedNumPyPrinter`; the native backends print the same expression.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .elementwise import numpy_lambdify
from .registry import Op, register


def leaf_symbol(k: int, dtype: str) -> sp.Symbol:
    """The symbol of leaf k: real for a float leaf, assumption-free for a bool leaf's byte."""
    return sp.Symbol(f"x{k}", real=True) if dtype != "bool" else sp.Symbol(f"x{k}")


def leaf_value(k: int, dtype: str) -> sp.Basic:
    """The value leaf k stands for in an expression: its symbol, or ``Ne(x_k, 0)`` for a bool."""
    sym = leaf_symbol(k, dtype)
    return sp.Ne(sym, 0) if dtype == "bool" else sym


# --- the fused op ---------------------------------------------------------------------------
class _FusedNumPyPrinter(NumPyPrinter):
    """numpy code for fused expressions: conditionals as ``numpy.where``, logic as binary ufuncs.

    sympy's own printer runs ``simplify_logic`` on a condition holding an ``ITE`` (negating
    relationals: ``not (x > y)`` becomes ``x <= y``, wrong for NaN) and prints ``And``/``Or`` as
    ``reduce`` over a tuple (which needs equal shapes; broadcast leaves have fewer dims).  The
    forms below are the ones the LLVM printer emits: a select per branch, one op per pair.
    """

    def _print_Float(self, e):   # every bit of the double (sympy prints 15 digits)
        return repr(float(e))

    def _print_ComplexInfinity(self, e):   # never made by fuse (see _NOT_REAL)
        return self._print(sp.nan)

    _print_ImaginaryUnit = _print_ComplexInfinity

    def _np(self, fn: str, *args: str) -> str:
        return f"{self._module_format('numpy.' + fn)}({', '.join(args)})"

    def _print_ITE(self, e):
        return self._np("where", *map(self._print, e.args))

    def _print_Piecewise(self, e):
        out = self._print(sp.nan)   # no branch taken (fuse always ends with a True one)
        for value, cond in reversed(e.args):
            out = self._print(value) if cond == sp.true else \
                self._np("where", self._print(cond), self._print(value), out)
        return out

    def _chain(self, fn: str, parts: list[str]) -> str:
        out = parts[0]
        for part in parts[1:]:
            out = self._np(fn, out, part)
        return out

    def _print_And(self, e):
        return self._chain("logical_and", [self._print(a) for a in e.args])

    def _print_Or(self, e):
        return self._chain("logical_or", [self._print(a) for a in e.args])

    def _print_Equivalent(self, e):
        first, *rest = [self._print(a) for a in e.args]
        return self._chain("logical_and", [self._np("equal", first, r) for r in rest])


@lru_cache(maxsize=4096)
def fused_numpy(e: sp.Expr, arity: int, dtypes: tuple):
    """The numpy function of a fused expression, over its leaves' symbols."""
    syms = [leaf_symbol(k, d) for k, d in enumerate(dtypes)]
    return numpy_lambdify(syms, e, _FusedNumPyPrinter)


def _fused_eval(args, node, env):
    fn = fused_numpy(node.attr("expr"), len(args), tuple(i.dtype for i in node.inputs))
    shape = node.type.concrete(env.batch)
    with np.errstate(all="ignore"):
        out = np.asarray(fn(*args), dtype=node.dtype)
    return out if out.shape == shape else np.broadcast_to(out, shape).copy()


register(Op("fused", lambda inputs, attrs: attrs["type"], _fused_eval, vjp=None,
            doc="an elementwise region: attrs['expr'] over leaf symbols x0, x1, ...",
            cost=0))   # cost: counted from the expression (see Op.cost, lowering.elements)
