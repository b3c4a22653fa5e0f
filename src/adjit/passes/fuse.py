"""Fuse elementwise regions into ``fused`` nodes carrying one sympy expression.

A region is a tree of elementwise nodes of one shape in which every interior node has
exactly one user (so nothing is computed twice).  Its leaves are the values it reads:
a ``broadcast`` leaf is read through numpy broadcasting (the IR's broadcast is numpy's
right-aligned rule), and constants become numbers in the expression: a constant whose
elements are one value (scalar or broadcast, shared by CSE or not), and a region sympy
reduced to a number.  An op over numbers only is evaluated with its numpy reference (so
sympy's exact or complex constants -- E, zoo, I -- are not made).

The region's scalar expression is composed from each op's sympy form, so sympy's
automatic canonicalization cancels and merges terms (x - x -> 0, 2*x*3 -> 6*x).  The
cost is bounded: only composition and canonicalization, never ``sympy.simplify()``.
Backends print the expression (after ``sympy.cse``) as one loop body.

Booleans have one representation in these expressions: a sympy ``Boolean`` (a comparison of
numbers -- realfn's IEEE ``ieee_lt`` etc., which sympy neither folds nor negates --,
``And``/``Or``/``Not``/``ITE``/``Equivalent``, ``true``/``false``).  A bool leaf holds a byte
and enters as ``Ne(x_k, 0)`` over an assumption-free symbol (see :func:`leaf_value`), so
sympy can neither decide it (a ``real=False`` symbol made ``Ne(x_k, 0)`` True) nor read a
bare symbol as a proposition (a bare condition nested in a comparison lost its else branch).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..ir import Graph, Node
from ..ops.elementwise import numpy_lambdify, splat
from ..ops.realfn import ieee_div, ieee_zero, numeric
from ..ops.registry import REGISTRY, Op, make, register
from .rewrite import rewrite

MAX_REGION_OPS = 48   # bound on the size of one sympy job


def leaf_symbol(k: int, dtype: str) -> sp.Symbol:
    """The symbol of leaf k: real for a float leaf, assumption-free for a bool leaf's byte."""
    return sp.Symbol(f"x{k}", real=True) if dtype != "bool" else sp.Symbol(f"x{k}")


def leaf_value(k: int, dtype: str) -> sp.Basic:
    """The value leaf k stands for in an expression: its symbol, or ``Ne(x_k, 0)`` for a bool."""
    sym = leaf_symbol(k, dtype)
    return sp.Ne(sym, 0) if dtype == "bool" else sym


def _number(node: Node, new: Node):
    """A constant operand as a sympy number, else None: a constant (possibly broadcast) whose
    elements all hold one value, or a region that sympy reduced to a number (``new``, the
    operand after this pass: a ``fused`` node without leaves, e.g. ``x - x + 1`` shared by
    two users).  So literals reach the printers as numbers wherever they are used."""
    if new.op == "fused" and not new.inputs:
        return new.attr("expr")
    first = splat(node)
    if first is None or (first.dtype.kind == "f" and first == 0 and np.signbit(first)):
        return None    # -0.0 stays a constant leaf: sympy's zero has no sign (-0.0 ** -1 = -inf)
    return numeric(first.item() if first.dtype.kind == "b" else first)


def _compose(n: Node, args: list):
    """The scalar form of ``n`` over ``args``.  Over numbers only it is evaluated with the op's
    numpy reference in ``n``'s dtypes, as the unfused op would be (sympy would give exact or
    complex values: ``exp(1) = E``, ``log(-2) = log(2) + I*pi``, ``1/0 = zoo``)."""
    spec = REGISTRY[n.op]
    if all(a.is_Number or a.is_NumberSymbol or a in (sp.true, sp.false) for a in args):
        values = [np.asarray(bool(a) if i.dtype == "bool" else float(a), dtype=i.dtype)
                  for a, i in zip(args, n.inputs)]
        with np.errstate(all="ignore"):
            return numeric(np.asarray(spec.numpy(values, n, None), dtype=n.dtype).item())
    out = spec.scalar(*args)
    if n.op in _PROPAGATING and isinstance(out, sp.Expr):
        # like terms cancelled (x - x, 0*x, x/x): an operand's inf or NaN (or a 0 divisor)
        # still gives numpy's NaN
        lost = sorted((s for s in set().union(*(a.free_symbols for a in args)) - out.free_symbols
                       if s.is_real), key=str)
        if lost and n.op == "div":
            return ieee_div(*args)      # kept as written
        for sym in lost:   # y - zero_of(x) is y, -0 included; a lone 0 is +zero_of(x) (0 - 0)
            out = ieee_zero(sym) if out == 0 else out - ieee_zero(sym)
    return out


# arithmetic whose result is NaN when any operand is NaN or the ops meet inf - inf, 0 * inf
_PROPAGATING = frozenset({"add", "sub", "mul", "div"})


# sympy constants that have no real value: what numpy gives where they would appear (and
# integer-valued floats, as 0.5*x*2 = 1.0*x, become integers: x, and exact integer powers)
_NOT_REAL = {sp.zoo: sp.nan, sp.I: sp.nan}


def _fusable(node: Node) -> bool:
    spec = REGISTRY.get(node.op)
    return spec is not None and spec.elementwise


def fuse(graph: Graph) -> Graph:
    """Replace each maximal elementwise region by one ``fused`` node."""
    outputs = {o.id for o in graph.outputs}
    users = {n.id: graph.users(n) for n in graph.order()}

    def absorbed(n: Node) -> bool:
        u = users[n.id]
        return (_fusable(n) and n.id not in outputs and len(u) == 1 and _fusable(u[0])
                and u[0].shape == n.shape)

    def rule(node: Node, inputs: list[Node]):
        if not _fusable(node) or absorbed(node):
            return None
        leaves: list[Node] = []
        count = [0]

        def expr(n: Node, new: Node):
            num = _number(n, new)
            if num is not None:
                return num
            if n is not node and not absorbed(n) or count[0] >= MAX_REGION_OPS:
                leaf = new.inputs[0] if new.op == "broadcast" else new
                for k, known in enumerate(leaves):
                    if known is leaf:
                        return leaf_value(k, leaf.dtype)
                leaves.append(leaf)
                return leaf_value(len(leaves) - 1, leaf.dtype)
            count[0] += 1
            args = [expr(i, mapped[i.id]) for i in n.inputs]
            return _compose(n, args)

        e = expr(node, node)
        e = e.xreplace({**_NOT_REAL, **{f: numeric(f) for f in e.atoms(sp.Float)}})
        # leaves sympy cancelled ((a*b + a) - a*b -> a) are dropped, so they stay dead code
        used = [k for k, leaf in enumerate(leaves) if leaf_symbol(k, leaf.dtype) in e.free_symbols]
        if len(used) < len(leaves):
            e = e.xreplace({leaf_symbol(k, leaves[k].dtype): leaf_symbol(j, leaves[k].dtype)
                            for j, k in enumerate(used)})
            leaves = [leaves[k] for k in used]
        members = count[0]
        fused = make("fused", leaves, {"expr": e, "type": node.type, "members": members})
        return fused, "fuse-elementwise" if members > 1 else "wrap-elementwise"

    # `expr` needs each original input's rewritten counterpart; collect them as we go
    mapped: dict[int, Node] = {}

    def recording_rule(node, inputs):
        for i, new in zip(node.inputs, inputs):
            mapped[i.id] = new
        return rule(node, inputs)

    return rewrite(graph, recording_rule, "fuse")


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
            doc="an elementwise region: attrs['expr'] over leaf symbols x0, x1, ..."))
