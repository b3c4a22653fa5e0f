"""Constant folding and algebraic identities (x·1 = x, x + 0 = x, --x = x, ...).

Only identities that hold in IEEE arithmetic for every x are applied: ``x * 0`` is not
folded (it is NaN for infinite x).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops.elementwise import literal, splat
from ..ops.registry import Env, get_op, make
from .pads import join_pads
from .products import join_products, spread_products
from .rewrite import rewrite

FOLD_MAX_ELEMENTS = 4096   # larger constant results stay as ops (keeps graphs and code small)

def _foldable(op: str) -> bool:
    # leaves are values already; a broadcast of a constant stays one (a splat the
    # printers read as a number, never an array written out)
    return not (get_op(op).leaf or op == "broadcast")


def _identity(node: Node, ins: list[Node]):
    op = node.op
    v = [literal(i) for i in ins]
    if op == "add":
        if v[1] == 0:
            return ins[0], "x+0=x"
        if v[0] == 0:
            return ins[1], "0+x=x"
    elif op == "sub":
        if v[1] == 0:
            return ins[0], "x-0=x"
        if v[0] == 0:
            return make("neg", (ins[1],)), "0-x=-x"
    elif op == "mul":
        if v[1] == 1:
            return ins[0], "x*1=x"
        if v[0] == 1:
            return ins[1], "1*x=x"
        if v[1] == -1:
            return make("neg", (ins[0],)), "x*-1=-x"
        if v[0] == -1:
            return make("neg", (ins[1],)), "-1*x=-x"
    elif op in ("div", "pow") and v[1] == 1:
        return ins[0], f"x{'/' if op == 'div' else '**'}1=x"
    elif op == "neg" and ins[0].op == "neg":
        return ins[0].inputs[0], "--x=x"
    elif op in ("reshape", "broadcast") and ins[0].op == op:
        inner = ins[0].inputs[0]
        if inner.shape == node.shape:
            return inner, f"{op}∘{op}=id"
        return make(op, (inner,), dict(node.attrs)), f"{op}∘{op}={op}"
    elif op == "transpose" and ins[0].op == "transpose":
        inner, p1, p2 = ins[0].inputs[0], ins[0].attr("perm"), node.attr("perm")
        perm = tuple(p1[p] for p in p2)
        if perm == tuple(range(len(perm))):
            return inner, "transpose∘transpose=id"
        return make("transpose", (inner,), {"perm": perm}), "transpose∘transpose"
    return None


def _fold_uniform(node: Node, ins: list[Node]):
    """An elementwise op over constants that are each one repeated value is one value too:
    a broadcast scalar constant, whatever the shape (also with a batch dim, which the
    array fold cannot hold), so the fuse pass inlines it as a number."""
    spec = get_op(node.op)
    if not spec.elementwise or not ins:
        return None
    firsts = [splat(i) for i in ins]
    if any(v is None for v in firsts):
        return None
    values = [np.asarray(v) for v in firsts]     # 0-d arrays of their dtypes
    with np.errstate(all="ignore"):
        value = np.asarray(spec.numpy(values, node, Env({}, None)), dtype=node.dtype)
    from ..frontend import broadcast_to, const
    out = const(value.reshape(()), node.dtype)
    return (broadcast_to(out, node.shape) if node.ndim else out), "fold-constants"


def _fold_constant(node: Node, ins: list[Node]):
    if not _foldable(node.op) or not ins:
        return None
    uniform = _fold_uniform(node, ins)
    if uniform is not None or any(i.op != "const" for i in ins):
        return uniform
    if node.type.has_batch or int(np.prod(node.shape, dtype=np.int64)) > FOLD_MAX_ELEMENTS:
        return None
    arrays = [i.attr("value").array for i in ins]
    with np.errstate(all="ignore"):
        value = np.asarray(get_op(node.op).numpy(arrays, node, Env({}, None)), dtype=node.dtype)
    from ..frontend import const
    return const(value, node.dtype), "fold-constants"


def fold(graph: Graph) -> Graph:
    """Fold constant subexpressions and apply algebraic identities."""
    return rewrite(graph, lambda n, ins: (_fold_constant(n, ins) or _identity(n, ins)
                                              or join_pads(n, ins) or join_products(n, ins)
                                              or spread_products(n, ins)),
                   "fold")
