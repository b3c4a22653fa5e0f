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

import numpy as np
import sympy as sp

from ..ir import Graph, Node
from ..ops.elementwise import splat
from ..ops.realfn import ieee_div, ieee_zero, numeric
from ..ops.fused import leaf_symbol, leaf_value
from ..ops.registry import REGISTRY, make
from .rewrite import rewrite

MAX_REGION_OPS = 48   # bound on the size of one sympy job


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


# what sympy raises where its logic rewrites meet a proposition they cannot look into
_SYMPY_REFUSALS = (ValueError, TypeError, NotImplementedError)


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
        count, alone = [0], [False]

        def expr(n: Node, new: Node):
            num = _number(n, new)
            if num is not None:
                return num
            if n is not node and (alone[0] or not absorbed(n)) or count[0] >= MAX_REGION_OPS:
                leaf = new.inputs[0] if new.op == "broadcast" else new
                for k, known in enumerate(leaves):
                    if known is leaf:
                        return leaf_value(k, leaf.dtype)
                leaves.append(leaf)
                return leaf_value(len(leaves) - 1, leaf.dtype)
            count[0] += 1
            args = [expr(i, mapped[i.id]) for i in n.inputs]
            return _compose(n, args)

        try:
            e = expr(node, node)
        except _SYMPY_REFUSALS:
            # sympy could not compose the region: a Piecewise nested in a condition (elu(x) of
            # x = where(c, ...)) is folded by sympy, which rewrites an ITE condition (logical
            # xor, comparisons of bools) in negation normal form and refuses the IEEE
            # comparisons inside.  The node is fused alone; its operands stay unfused nodes
            # (they were absorbed, so the rewrite left them as they are).
            leaves.clear()
            count[0], alone[0] = 0, True
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
