"""Fuse elementwise regions into ``fused`` nodes carrying one sympy expression.

A region is a tree of elementwise nodes of one shape in which every interior node has
exactly one user (so nothing is computed twice).  Its leaves are the values it reads:
a ``broadcast`` leaf is read through numpy broadcasting (the IR's broadcast is numpy's
right-aligned rule), and scalar constants become numbers in the expression.

The region's scalar expression is composed from each op's sympy form, so sympy's
automatic canonicalization cancels and merges terms (x - x -> 0, 2*x*3 -> 6*x).  The
cost is bounded: only composition and canonicalization, never ``sympy.simplify()``.
Backends print the expression (after ``sympy.cse``) as one loop body.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from ..ir import Graph, Node
from ..ops.registry import REGISTRY, Op, make, register
from .rewrite import rewrite

MAX_REGION_OPS = 48   # bound on the size of one sympy job


def leaf_symbol(k: int, dtype: str) -> sp.Symbol:
    """The symbol of leaf k (bool leaves are plain symbols; `where` wraps them)."""
    return sp.Symbol(f"x{k}", real=dtype != "bool")


def _number(node: Node):
    """A scalar constant (possibly broadcast) as a sympy number, else None."""
    while node.op == "broadcast" and node.inputs[0].ndim == 0:
        node = node.inputs[0]
    if node.op != "const" or node.ndim != 0:
        return None
    v = node.attr("value").array.item()
    if isinstance(v, bool):
        return sp.true if v else sp.false
    return sp.Integer(int(v)) if float(v).is_integer() and abs(v) < 2**31 else sp.Float(v)


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
            num = _number(n)
            if num is not None:
                return num
            if n is not node and not absorbed(n) or count[0] >= MAX_REGION_OPS:
                leaf = new.inputs[0] if new.op == "broadcast" else new
                for k, known in enumerate(leaves):
                    if known is leaf:
                        return leaf_symbol(k, leaf.dtype)
                leaves.append(leaf)
                return leaf_symbol(len(leaves) - 1, leaf.dtype)
            count[0] += 1
            args = [expr(i, mapped[i.id]) for i in n.inputs]
            return REGISTRY[n.op].scalar(*args)

        e = expr(node, node)
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
@lru_cache(maxsize=4096)
def fused_numpy(e: sp.Expr, arity: int, dtypes: tuple):
    syms = [leaf_symbol(k, d) for k, d in enumerate(dtypes)]
    return sp.lambdify(syms, e, modules="numpy")


def _fused_eval(args, node, env):
    fn = fused_numpy(node.attr("expr"), len(args), tuple(i.dtype for i in node.inputs))
    shape = node.type.concrete(env.batch)
    with np.errstate(all="ignore"):
        out = np.asarray(fn(*args), dtype=node.dtype)
    return out if out.shape == shape else np.broadcast_to(out, shape).copy()


register(Op("fused", lambda inputs, attrs: attrs["type"], _fused_eval, vjp=None,
            doc="an elementwise region: attrs['expr'] over leaf symbols x0, x1, ..."))
