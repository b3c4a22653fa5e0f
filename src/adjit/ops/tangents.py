"""Forward-mode rules (``Op.jvp``) shared by the records.

A rule takes the node and one tangent per input (``None``: a zero tangent) and returns the
node's tangent, built with front-end ops (so it is an ordinary node that differentiates
again), or ``None`` for a zero tangent.  Zero tangents are never materialized where an
operand's tangent is missing: a product rule skips the term, so ``0 · inf`` never appears.

* :func:`through_first` -- linear in operand 0, the other operands (indices) held: the op
  itself applied to the tangent (reshape, sum, slice, take, scatter_add, unfold, ...);
* :func:`jointly` -- linear in all operands together (concatenate): the op over the
  tangents, zeros standing for missing ones;
* :func:`product_rule` -- linear in each operand taken alone (matmul, conv, ...):
  ``Σ_k op(x_1, ..., ẋ_k, ..., x_n)``;
* :func:`from_vjp_rules` -- elementwise ops: the Jacobian is diagonal, so each operand's
  VJP rule with the cotangent replaced by that operand's tangent is its JVP term.
"""
from __future__ import annotations

from .registry import make


def _F():
    from .. import frontend
    return frontend


def zeros_like(node):
    F = _F()
    return F.broadcast_to(F.const(0.0, node.dtype), node.shape)


def remake(node, inputs, **attrs):
    """The same op and attributes (``attrs`` replacing some) over other inputs, with no
    meta of its own (a tangent is not the primal: it takes neither its name nor role)."""
    return make(node.op, tuple(inputs), {**dict(node.attrs), **attrs})


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


def through_first(node, tangents):
    """Linear in operand 0 (the others are indices, held): the op over the tangent."""
    t = tangents[0]
    return None if t is None else remake(node, (t,) + tuple(node.inputs[1:]))


def jointly(node, tangents):
    """Linear in all operands together: the op over the tangents (zeros for missing ones)."""
    if all(t is None for t in tangents):
        return None
    return remake(node, [zeros_like(x) if t is None else t
                         for x, t in zip(node.inputs, tangents)])


def product_rule(node, tangents):
    """Linear in each operand alone: Σ_k op(x_1, ..., ẋ_k, ..., x_n) (ẋ W + x Ẇ)."""
    out = None
    for k, t in enumerate(tangents):
        if t is not None:
            inputs = list(node.inputs)
            inputs[k] = t
            out = _add(out, remake(node, inputs))
    return out


def from_vjp_rules(rules):
    """An elementwise op's JVP from its VJP rules ``rule(*operands, y, g)``: Σ_k rule_k(ẋ_k)."""
    def jvp(node, tangents):
        out = None
        for rule, t in zip(rules, tangents):
            if rule is not None and t is not None:
                out = _add(out, rule(*node.inputs, node, t))
        return out
    return jvp


def where_jvp(node, tangents):
    """``where(c, ȧ, ḃ)``: a select, so the branch not taken contributes nothing, NaN and
    inf included (forward mode needs no double-where guard)."""
    F, (_, ta, tb) = _F(), tangents
    if ta is None and tb is None:
        return None
    pick = F.safe_where if node.meta.get("safe_branches") else F.where
    return pick(node.inputs[0], 0.0 if ta is None else ta, 0.0 if tb is None else tb)


def cast_jvp(node, tangents):
    from ..ir import FLOAT_DTYPES
    t = tangents[0]
    if t is None or node.dtype not in FLOAT_DTYPES:
        return None
    return _F().cast(t, node.dtype)
