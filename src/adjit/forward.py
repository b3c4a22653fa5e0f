"""Forward mode: tangents (Jacobian-vector products) as new nodes of the same IR.

Walks the nodes between the variables and the outputs in topological order and asks each
op's ``jvp`` rule (``Op.jvp``, see :mod:`adjit.ops.tangents`) for the node's tangent from
its inputs' tangents.  The rules are written with front-end ops, so tangents are ordinary
nodes: ``aj.grad`` of a JVP and ``aj.jvp`` of a gradient both work, and
:func:`hvp` is ``jvp(grad(L, wrt), wrt, v)`` (forward-over-reverse).

A missing tangent is a zero that is never built: a node whose inputs carry none gets none,
and the product rule leaves out the terms of operands without one.  ``where`` selects its
branches' tangents (``where(c, ȧ, ḃ)``), so the branch not taken contributes nothing,
even where its tangent is NaN or inf: forward mode needs no double-where guard (the guards
reverse mode adds are ``where`` nodes too, so forward-over-reverse keeps them).

Every node made here carries ``meta['role'] == 'tangent'``; the tangent of a primal node
``v`` lists ``v`` in ``meta['dots']`` so a printer can call it v̇.
"""
from __future__ import annotations

from typing import Sequence

from . import frontend as F
from .autodiff import grad, model_inputs, record_model_inputs
from .ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, ancestors, building, label, shape_str
from .ops.registry import get_op


def as_nodes(x, who: str, what: str) -> tuple[list[Node], bool]:
    """``(nodes, single)``: ``x`` a node or a sequence of nodes (a TypeError naming ``who``'s
    ``what`` otherwise), and whether it was one node (the caller returns one result)."""
    single = isinstance(x, Node)
    items = [x] if single else list(x)
    for n in items:
        if not isinstance(n, Node):
            raise TypeError(f"{who}: {what} must be nodes, got {type(n).__name__}")
    return items, single


def jvp(y: Node | Sequence[Node], wrt: Node | Sequence[Node],
        tangents) -> Node | list[Node]:
    """The tangent of ``y`` (a node or a list, any shapes) when the variables ``wrt`` move
    along ``tangents``: ``Σ_k ∂y/∂wrt_k · tangents_k`` (forward mode, a JVP).

    ``wrt`` is a node or a list of nodes (inputs, parameters or intermediate values, all
    float); ``tangents`` one node (or number/array) per variable, shaped like it.  Returns
    nodes shaped like the outputs (a node when ``y`` is one); outputs that do not depend on
    ``wrt`` get zeros.  Like :func:`adjit.grad`, the result is ordinary nodes.

    >>> import adjit as aj
    >>> x = aj.input("x", ())
    >>> t = aj.jvp(x * x * x, x, 1.0)
    >>> float(aj.compile(t, backend="interp")(x=2.0))
    12.0
    """
    outputs, single_y = as_nodes(y, "jvp", "outputs")
    variables, single = as_nodes(wrt, "jvp", "variables")
    tans = [tangents] if single else list(tangents)
    if len(tans) != len(variables):
        raise TypeError(f"jvp: {len(variables)} variable(s) but {len(tans)} tangent(s)")
    for out in outputs:
        if out.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"jvp: the output {label(out)} must be float, got {out.dtype}")
    seeds: dict[int, Node] = {}
    for v, t in zip(variables, tans):
        if v.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"jvp: variable {label(v)} must be float, got {v.dtype}")
        t = F.const(t, v.dtype) if not isinstance(t, Node) else t
        if t.shape == () and v.shape != ():
            t = F.broadcast_to(t, v.shape)
        if t.shape != v.shape:
            raise ShapeError(f"jvp: the tangent {label(t)} {shape_str(t.shape)} of variable "
                             f"{label(v)} must have its shape {shape_str(v.shape)}")
        if t.dtype != v.dtype:
            raise DTypeError(f"jvp: the tangent {label(t)} ({t.dtype}) of variable "
                             f"{label(v)} must have its dtype {v.dtype}")
        seeds[v.id] = t

    order = ancestors(outputs)
    dots: dict[int, Node] = {}
    with building("tangent"):
        for n in order:
            if n.id in seeds:
                dots[n.id] = seeds[n.id]
                continue
            ins = [dots.get(i.id) for i in n.inputs]
            if all(t is None for t in ins) or n.dtype not in FLOAT_DTYPES:
                continue
            spec = get_op(n.op)
            if not spec.differentiable:
                continue
            if spec.jvp is None:
                raise TypeError(f"jvp: op {n.op} ({label(n)}) has no forward-mode rule")
            t = spec.jvp(n, ins)
            if t is None:
                continue
            if t.shape != n.shape or t.dtype != n.dtype:
                raise ShapeError(f"jvp: the tangent of {label(n)} has type {t.type}, "
                                 f"expected {n.type} (rule of {n.op})")
            if t.meta.get("role") == "tangent":
                t.meta.setdefault("dots", []).append(n)
            dots[n.id] = t
        results = [dots[o.id] if o.id in dots else
                   F.broadcast_to(F.const(0.0, o.dtype), o.shape) for o in outputs]
    # as grad does: the tangent is a function of the whole model and of the tangents, so a
    # compiled JVP takes their inputs even where it reads none of them (jvp(x @ W, x, v) =
    # v @ W takes x; a zero tangent takes v)
    model = model_inputs(outputs + variables + list(seeds.values()))
    given = tuple((v, seeds[v.id]) for v in variables)
    tangents = [r for r in results if r.meta.get("role") == "tangent"]   # (not a seed itself)
    for r in tangents:
        # the tangents the user gave, so the equations call them ẇ (adjit.show.names)
        r.meta["seeds"] = tuple(r.meta.get("seeds", ())) + given
    record_model_inputs(tangents, model)
    return results[0] if single_y else results


def hvp(L: Node, wrt: Node | Sequence[Node], v) -> Node | list[Node]:
    """The Hessian of the scalar ``L`` times ``v``: ``H v = d/dε ∇L(wrt + ε v)``, by
    forward-over-reverse (one forward sweep over the gradient graph, :func:`jvp` of
    :func:`adjit.grad`).  ``wrt`` a node or list, ``v`` shaped like it; returns nodes shaped
    like ``wrt`` (the Hessian is never formed).

    >>> import adjit as aj
    >>> x = aj.input("x", (2,))
    >>> hv = aj.hvp(aj.sum(x * x * x), x, aj.const([1.0, 0.0]))
    >>> aj.compile(hv, backend="interp")(x=[1.0, 2.0]).tolist()
    [6.0, 0.0]
    """
    return jvp(grad(L, wrt), wrt, v)


__all__ = ["jvp", "hvp"]
