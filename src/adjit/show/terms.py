"""Math terms: a small expression tree that equations, traces and pictures print.

Nodes and fused sympy expressions are both turned into :class:`Term` trees, so one
printer (:mod:`adjit.show.render`) writes them in Unicode or LaTeX.  This module only
*displays* ops; what an op computes stays in the op registry.

Display conventions: ``broadcast``, ``reshape`` and ``cast`` are invisible (they move
or convert the same values); a product with a scalar factor is a scaling, a product of
two tensors of equal shape is the elementwise (Hadamard) product ``∘``, ``matmul``
is juxtaposition (``x W1``) and ``matmul_sum`` a sum of such products (``Σ_batch ȳ xᵀ``);
``batch_size`` is ``B``; ``Σ_batch`` sums over the batch;
other reductions are written the same way (``min_axis1 x``, ``Π_axis1 x``, ``argmax_axis1
x``), a transpose of the last two axes is ``ᵀ`` (``q kᵀ``), and ops with attributes are
written as their record's :class:`~adjit.ops.registry.Shown` says: numpy indexing
(``x[:, 0]``, ``E[ids]``) or a call with the attributes after a semicolon
(``concat(a, b; axis 1)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any, Callable

import numpy as np
import sympy as sp

from ..ir import Node
from ..ops.realfn import (ieee_eq, ieee_ge, ieee_gt, ieee_le, ieee_lt, ieee_ne, ieee_div, ieee_zero,
                          real_log,
                          real_pow, real_sign, real_sqrt)
from ..ops.registry import REGISTRY
from ..ops.window import shown as window_shown
from .names import INVISIBLE, Name

def shown_as(op: str) -> str:
    """The function name an op is written with (its record's ``display``, else its name)."""
    spec = REGISTRY.get(op)
    return spec.shown_as if spec is not None else op


BINARY = {"add": "+", "sub": "-", "div": "/", "pow": "^"}


@dataclass(frozen=True)
class Term:
    """``kind`` is one of: name, num, add, mul, div, pow, neg, call, T, sum, rel; and
    ``reduce`` (info: function, LaTeX head, axes), ``index`` (args: the indexed term then
    index operands; info: parts, text or the position of an operand in args) and ``note``
    (a call with attributes; info: function, note)."""

    kind: str
    args: tuple = ()
    info: Any = None

    def size(self) -> int:
        """Operations in the term (names and numbers count zero)."""
        own = 0 if self.kind in ("name", "num") else 1
        return own + sum(a.size() for a in self.args)


def name(n: Name) -> Term:
    return Term("name", (), n)


def num(v) -> Term:
    return Term("num", (), v)


def scalarish(node: Node) -> bool:
    """True when every element of the node is the same value (a scalar spread out)."""
    while node.op in INVISIBLE:
        node = node.inputs[0]
    if all(d == 1 for d in node.shape):
        return True
    spec = REGISTRY.get(node.op)
    elementwise = node.op == "fused" or (spec is not None and spec.elementwise)
    return elementwise and bool(node.inputs) and all(scalarish(i) for i in node.inputs)


def axes_label(x: Node, axes: tuple) -> str | None:
    """``'batch'``, ``'axis1'``, ``'batch,axis1'``; None when summing all of a static tensor.
    The axes of an image (``(N, C, H, W)`` where the graph slides windows over H, W) are
    ``batch``, ``c`` and ``l`` / ``h,w`` / ``d,h,w``: a conv bias's gradient is
    ``Σ_batch,h,w z̄``."""
    if len(axes) == x.ndim and None not in x.shape:
        return None
    names = _image_axes(x) or ["batch" if d is None else f"axis{a}" for a, d in enumerate(x.shape)]
    return ",".join(names[a] for a in axes)


_SPATIAL = {1: ["l"], 2: ["h", "w"], 3: ["d", "h", "w"]}


def _image_axes(x: Node) -> list | None:
    """The axis names of ``x`` when it is an image: ``(B, C, *spatial)`` (1 to 3 static
    spatial axes) computed from a window op over as many spatial axes (a convolution,
    a pool, an unfold: a record with ``stride`` and ``pad`` attributes)."""
    nd = x.ndim - 2
    if nd not in _SPATIAL or x.shape[0] is not None or None in x.shape[1:]:
        return None
    seen, stack = set(), [x]
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        if window_op(n) and len(n.attr("stride")) == nd:
            return ["batch", "c"] + _SPATIAL[nd]
        stack.extend(n.inputs)
    return None


def _const(node: Node) -> Term:
    arr = node.attr("value").array
    flat = arr.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        v = flat[0].item()
        return num(int(v) if isinstance(v, (bool, int)) or float(v).is_integer() else v)
    return Term("call", (), ("const", tuple(arr.shape)))


def _product(a: Term, b: Term, scale: bool) -> Term:
    return Term("mul", (a, b), "scale" if scale else "hadamard")


def from_node(node: Node, ref: Callable[[Node], Term | None]) -> Term:
    """The term computing ``node``; ``ref(n)`` returns a name for nodes that have a line."""
    r = ref(node)
    if r is not None:
        return r
    op, ins = node.op, node.inputs
    sub = [from_node(i, ref) for i in ins]
    if op == "reshape" and ref(ins[0]) is None:   # x[:, 0]: a slice and a reshape
        dropped = read_dropped(ins[0], node.shape)
        if dropped:
            return shown_term(ins[0], [from_node(i, ref) for i in ins[0].inputs],
                              REGISTRY[ins[0].op].shown(ins[0], dropped))
    if op in INVISIBLE:
        return sub[0]
    if op == "const":
        return _const(node)
    if op == "batch_size":
        return name(Name("B"))
    if op in ("input", "param"):
        return name(Name.parse(node.name))
    if op == "mul":
        return _product(sub[0], sub[1], scalarish(ins[0]) or scalarish(ins[1]))
    if op == "neg":
        return Term("neg", (sub[0],))
    if op in BINARY:
        return Term("add" if op in ("add", "sub") else op, tuple(sub), BINARY[op])
    if op in REGISTRY and REGISTRY[op].relation:
        return Term("rel", tuple(sub), REGISTRY[op].display)
    if op == "matmul":
        return Term("mul", tuple(sub), "matmul")
    if op == "matmul_sum":      # Σ_batch a bᵀ: the products of a stack, summed
        wide = max(ins, key=lambda i: None in i.shape[:-2])
        return Term("sum", (Term("mul", tuple(sub), "matmul"),),
                    axes_label(wide, tuple(range(wide.ndim - 2))))
    if op == "transpose":
        perm = node.attr("perm")
        perm = tuple(int(p) for p in perm)
        last_two = perm[:-2] == tuple(range(len(perm) - 2)) and perm[-2:] == (len(perm) - 1,
                                                                             len(perm) - 2)
        return Term("T", (sub[0],)) if last_two else Term("call", tuple(sub), ("T", perm))
    if op == "sum":
        return Term(op, (sub[0],), axes_label(ins[0], node.attr("axes")))
    spec = REGISTRY.get(op)
    if spec is not None and node.attr("axes") is not None and len(ins) == 1 \
            and not spec.elementwise:
        return Term("reduce", (sub[0],), (spec.shown_as, spec.latex,
                                          axes_label(ins[0], node.attr("axes"))))
    if op == "fused":
        leaves = {f"x{k}": (t, scalarish(i)) for k, (t, i) in enumerate(zip(sub, ins))}
        return from_sympy(node.attr("expr"), leaves)
    shown = record_shown(node, written_dropped(node) if op == "pad" else ())
    if shown is not None:
        return shown_term(node, sub, shown)
    return Term("call", tuple(sub), shown_as(op))


def record_shown(node: Node, dropped: tuple = ()):
    """The record's :class:`~adjit.ops.registry.Shown` for ``node``; a window op (one with
    ``stride`` and ``pad`` attributes: pools, ...) whose record gives none is written as
    the convolutions are, its attributes after the operands (``max_pool(x; kernel 2×2,
    stride 2)``).  None: written ``display(operands)``."""
    spec = REGISTRY.get(node.op)
    if spec is None:
        return None
    if spec.shown is not None:
        return spec.shown(node, dropped)
    return window_shown(node) if window_op(node) else None


def window_op(node: Node) -> bool:
    """A sliding-window op (ops/window.py): its node has ``stride`` and ``pad``."""
    return node.attr("stride") is not None and node.attr("pad") is not None


# --- ops written as their records say (Op.shown) ----------------------------------------------
def shown_term(node: Node, sub: list, shown) -> Term:
    """The term of ``node`` (operand terms ``sub``) from its record's ``Shown``."""
    if shown.index and not shown.into:
        base, extra, parts = sub[0], [], []
        for p in shown.index:
            if isinstance(p, int):
                extra.append(sub[p])
                p = len(extra)
            parts.append(p)
        return Term("index", (base, *extra), tuple(parts))
    fn = shown.name or shown_as(node.op)
    args = tuple(sub[k] for k in (shown.args or range(len(sub))))
    return Term("note", args, (fn, shown.note)) if shown.note else Term("call", args, fn)


def dropped_axes(full: tuple, kept: tuple, prefer=()) -> tuple | None:
    """The size-1 axes of ``full`` whose removal leaves ``kept`` (those in ``prefer``
    first), or None when no such axes exist."""
    ones = [a for a, d in enumerate(full) if d == 1]
    k = len(full) - len(kept)
    if k <= 0 or k > len(ones):
        return None
    best = None
    for axes in combinations(ones, k):
        if tuple(d for a, d in enumerate(full) if a not in axes) == kept:
            score = sum(a in prefer for a in axes)
            if best is None or score > best[0]:
                best = (score, axes)
    return None if best is None else best[1]


def _ranges(node: Node, moved: tuple) -> set:
    """Axes where a slice or pad takes part of the axis (a range, not the whole axis)."""
    full = node.inputs[0].shape if node.op == "slice" else node.shape
    return {a for a, (n, L) in enumerate(zip(full, moved)) if n != L}


def read_dropped(node: Node, shape: tuple) -> tuple:
    """The axes of a slice ``node`` that a reshape to ``shape`` drops (``x[:, 0]``)."""
    if node.op != "slice":
        return ()
    return dropped_axes(node.shape, shape, _ranges(node, node.shape)) or ()


def written_dropped(node: Node) -> tuple:
    """The axes of a pad's operand that a reshape added (``x̄[:, 0] += ȳ``, ȳ of rank 1)."""
    r = node.inputs[0]
    if r.op != "reshape":
        return ()
    return dropped_axes(r.shape, r.inputs[0].shape, _ranges(node, r.shape)) or ()


# --- fused regions: sympy expressions over leaf symbols x0, x1, ... -------------------------------
_U = sp.Wild("u")
_PATTERNS = [(op, REGISTRY[op].scalar(_U)) for op in ("sigmoid", "softplus", "silu", "gelu",
                                                    "gelu_tanh") if op in REGISTRY]
_SYMPY_FUNCS = {sp.exp: "exp", sp.log: "ln", real_log: "ln", real_sqrt: "sqrt", sp.sin: "sin",
                sp.cos: "cos", sp.tanh: "tanh",
                sp.Abs: "abs", sp.sign: "sgn", real_sign: "sgn", sp.Max: "max", sp.Min: "min"}
_SYMPY_RELS = {ieee_gt: ">", ieee_ge: "≥", ieee_lt: "<", ieee_le: "≤", ieee_eq: "=",
               ieee_ne: "≠", sp.Equality: "="}


@lru_cache(maxsize=None)
def record_functions() -> dict:
    """The sympy function of each elementwise record whose scalar form is one function
    application (``floor(x)``, ``clip(x, lo, hi)``), mapped to the name the views write for
    the op, so a fused region names it as the unfused op does."""
    out = dict(_SYMPY_FUNCS)
    syms = sp.symbols("s0:3", real=True)
    for op in REGISTRY.values():
        if not (op.elementwise and op.scalar is not None and op.arity):
            continue
        try:
            e = op.scalar(*syms[:op.arity])
        except Exception:   # noqa: BLE001 - a form that needs other operand kinds
            continue
        if e.args == syms[:op.arity] and not (e.is_Add or e.is_Mul or e.is_Pow):
            out.setdefault(e.func, op.shown_as)
    return out


def from_sympy(e, leaves: dict) -> Term:
    """The term of a fused expression; ``leaves['x0'] = (term, is_scalar)``."""
    return _Sympy(leaves).term(e)


class _Sympy:
    def __init__(self, leaves: dict):
        self.leaves = leaves

    def scalar(self, e) -> bool:
        return all(self.leaves[s.name][1] for s in e.free_symbols if s.name in self.leaves)

    def term(self, e) -> Term:
        if e.is_Symbol:
            return self.leaves[e.name][0] if e.name in self.leaves else name(Name.parse(e.name))
        if isinstance(e, sp.Ne) and e.rhs == 0 and e.lhs.is_Symbol and e.lhs.is_real is None:
            return self.term(e.lhs)   # a bool leaf (ops.fused.leaf_value): shown as the mask itself
        if e.is_Integer:
            return num(int(e))
        if e.is_Rational:
            return Term("div", (num(int(e.p)), num(int(e.q))), "/")
        if e.is_Number:
            v = float(e)
            return num(int(v) if v.is_integer() else v)
        if e in (sp.true, sp.false):
            return num(bool(e))
        for op, pattern in _PATTERNS:
            m = e.match(pattern)
            if m and _U in m and not m[_U].has(sp.Wild):
                return Term("call", (self.term(m[_U]),), shown_as(op))
        if e.is_Add:
            return self.add(e)
        if e.is_Mul or (e.is_Pow and e.exp.is_negative):
            return self.mul(e)
        if isinstance(e, ieee_zero):   # what fuse keeps of a cancelled x: x - x
            t = self.term(e.args[0])
            return Term("add", (t, t), "-")
        if isinstance(e, ieee_div):    # a division fuse kept as written
            return Term("div", (self.term(e.args[0]), self.term(e.args[1])), "/")
        if isinstance(e, real_pow):
            e = sp.Pow(*e.args, evaluate=False)
        if e.is_Pow:
            if e.exp == sp.Rational(1, 2):
                return Term("call", (self.term(e.base),), "sqrt")
            return Term("pow", (self.term(e.base), self.term(e.exp)), "^")
        if isinstance(e, sp.Piecewise) and len(e.args) == 2 and e.args[1].cond == sp.true:
            (a, c), (b, _) = e.args
            return Term("call", (self.term(c), self.term(a), self.term(b)), "where")
        for cls, sym in _SYMPY_RELS.items():
            if isinstance(e, cls):
                return Term("rel", (self.term(e.lhs), self.term(e.rhs)), sym)
        fname = record_functions().get(e.func, str(e.func))
        return Term("call", tuple(self.term(a) for a in e.args), fname)

    def add(self, e) -> Term:
        parts = e.as_ordered_terms()
        out = self.term(parts[0])
        for p in parts[1:]:
            if p.could_extract_minus_sign():
                out = Term("add", (out, self.term(-p)), "-")
            else:
                out = Term("add", (out, self.term(p)), "+")
        return out

    def mul(self, e) -> Term:
        if e.could_extract_minus_sign():
            return Term("neg", (self.term(-e),))
        n, d = sp.fraction(e)
        top = self.product(n)
        return top if d == 1 else Term("div", (top, self.product(d)), "/")

    def product(self, e) -> Term:
        if not e.is_Mul:
            return self.term(e)
        factors = e.as_ordered_factors()
        out, acc = self.term(factors[0]), self.scalar(factors[0])
        for f in factors[1:]:
            fs = self.scalar(f)
            out, acc = _product(out, self.term(f), acc or fs), acc and fs
        return out
