"""Per-example gradients: the gradient of each example's loss, for the whole batch at once.

``per_example_grad(losses, wrt)`` takes ``losses`` of shape ``(B,)`` (one loss per example,
``B`` the batch axis ``None``) and parameters ``wrt`` (no batch axis) and returns, for each
parameter ``W``, a node of shape ``(B, *W.shape)`` whose row ``b`` is ``∂ losses[b] / ∂W``.
No Python loop over examples and no per-example copy of the forward pass: it is one reverse
sweep of ``sum(losses)`` plus one small product per use of a parameter.

How.  Each parameter reaches the batch through *interface* nodes: the first nodes on its
way to the losses that carry the batch axis (``x @ W``, the bias ``broadcast(b)``, a
convolution ``conv(x, W)``, an embedding ``take(E, ids)``).  Reverse mode gives the
cotangent ``Ḡ`` of each interface node (one :func:`adjit.grad` of ``sum(losses)`` with the
interface nodes as variables); because examples are independent, row ``b`` of ``Ḡ`` is the
derivative of ``losses[b]`` alone.  The ordinary VJP of the interface would sum over the
batch (``Wbar = xᵀ Ḡ``); here the batch is kept: ``x_b ⊗ Ḡ_b`` (the outer product, or
``x_bᵀ Ḡ_b`` with a time axis), ``Ḡ_b`` summed over the broadcast axes for a bias, the
windows of ``x_b`` times ``Ḡ_b`` for a convolution (``unfold`` and a batched product:
PyTorch's per-example ``conv_weight``, groups included), ``one_hot(ids_b)ᵀ Ḡ_b`` for an
embedding.  Between a parameter and its interfaces the parameter may pass through ops
without a batch axis (``cast``, ``reshape``, ``transpose``, ``broadcast``, ``sum``,
elementwise arithmetic): their VJPs are applied with the batch axis kept in front.

The assumption, checked: examples are independent -- every node on a path from a parameter
to the losses keeps the batch on axis 0 and never mixes examples.  A node without the batch
axis that depends on a parameter and on batched data (a mean over the batch, batch norm's
statistics, ``xᵀ x``), an op that reduces, slices, pads, joins or gathers along axis 0, or a
batch axis elsewhere than axis 0, is refused (ShapeError naming the op and the parameter),
as is an interface op without a per-example rule.  Gradients of the results work as for any
node (they are ordinary nodes; ``meta['role'] == 'per_example'``).
"""
from __future__ import annotations

import math
from typing import Sequence

from . import frontend as F
from .autodiff import grad, model_inputs, record_model_inputs
from .forward import as_nodes
from .ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, ancestors, building, label, shape_str
from .ops.registry import get_op, make


def _batched(n: Node) -> bool:
    return None in n.shape


def _refuse(why: str, node: Node, param: Node) -> ShapeError:
    return ShapeError(f"per_example_grad: {why} ({node.op}: {label(node)} "
                      f"{shape_str(node.shape)}), on the way from the parameter {label(param)} "
                      "to the losses; per-example gradients need examples that stay "
                      "independent, with the batch on axis 0")


# --- which ops keep examples apart (batch on axis 0 in, batch on axis 0 out) ------------------
def _axes_ok(n: Node) -> bool:
    axes = n.attr("axes", None)
    if axes is None and n.attr("axis", ()) is not None:
        axes = n.attr("axis", ())
    if axes is None:                               # axis=None: the flattened operand
        return False
    axes = axes if isinstance(axes, tuple) else (axes,)
    rank = n.inputs[0].ndim
    return all(a % rank != 0 for a in axes) if rank else True


def _placed_ok(n: Node) -> bool:                  # slice / pad: axis 0 whole and in place
    return n.attr("start")[0] == 0 and n.attr("step")[0] == 1


def _matmul_ok(n: Node) -> bool:
    a, b = n.inputs
    return n.ndim > 2 or not _batched(b)          # (a 2-D product contracting B mixes)


_BATCH_SAFE = {
    "broadcast": lambda n: True, "reshape": lambda n: True, "cast": lambda n: True,
    "stop_gradient": lambda n: True, "one_hot": lambda n: True,
    "transpose": lambda n: n.attr("perm")[0] == 0,
    "sum": _axes_ok, "max": _axes_ok, "min": _axes_ok, "prod": _axes_ok,
    "argmax": _axes_ok, "argmin": _axes_ok, "concatenate": _axes_ok,
    "take": lambda n: _axes_ok(n) if _batched(n.inputs[0]) else n.attr("axis") == 0,
    "take_along_axis": _axes_ok,
    "slice": _placed_ok, "pad": _placed_ok, "matmul": _matmul_ok,
    "conv": lambda n: True, "unfold": lambda n: True, "max_pool": lambda n: True,
    "avg_pool": lambda n: True, "pool_argmax": lambda n: True,
}


def _check_node(n: Node, param: Node) -> None:
    """A batched node on a path from ``param`` to the losses: batch on axis 0 of it and of
    each batched operand, and an op that treats axis 0 as the batch."""
    if n.shape.count(None) != 1 or n.shape[0] is not None:
        raise _refuse("the batch axis is not axis 0 alone", n, param)
    for i in n.inputs:
        if _batched(i) and (i.shape.count(None) != 1 or i.shape[0] is not None):
            raise _refuse(f"operand {label(i)} {shape_str(i.shape)} has the batch axis "
                          "elsewhere than axis 0", n, param)
    spec = get_op(n.op)
    if spec.scalar is not None:
        return
    ok = _BATCH_SAFE.get(n.op)
    if ok is None:
        raise _refuse(f"op {n.op} is not known to keep examples apart", n, param)
    if not ok(n):
        raise _refuse(f"op {n.op} mixes examples (it works along the batch axis)", n, param)


# --- per-example VJPs of the interface ops: cotangent g (batched), operand k unbatched --------
def _sum_keep(x: Node, shape: tuple) -> Node:
    """``x`` (B, *s) summed over the axes ``shape`` (no batch) broadcast along, as (B, *shape)."""
    lead = x.ndim - 1 - len(shape)
    axes = tuple(range(1, 1 + lead)) + tuple(
        1 + lead + i for i, d in enumerate(shape) if d == 1 and x.shape[1 + lead + i] != 1)
    out = F.sum(x, axis=axes) if axes else x
    return F.reshape(out, (None,) + tuple(shape)) if out.shape != (None,) + tuple(shape) else out


def _swap(x: Node) -> Node:
    n = x.ndim
    return F.transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _broadcast_pe(n: Node, k: int, g: Node) -> Node:
    u = n.inputs[0]
    lead = n.ndim - u.ndim
    if lead == 0:                                  # (1, ...) stretched to (B, ...)
        return F.reshape(_sum_keep(g, u.shape[1:]), (None,) + u.shape)
    return _sum_keep(g, u.shape)


def _matmul_pe(n: Node, k: int, g: Node) -> Node:
    a, b = n.inputs
    u = n.inputs[k]
    if n.ndim == 2:                                # x (B, in) @ W (in, out): outer products
        if k != 1:
            return None
        p = F.reshape(a, (None, a.shape[1], 1)) * F.reshape(g, (None, 1, g.shape[1]))
        return p
    p = F.matmul(_swap(a), g) if k == 1 else F.matmul(g, _swap(b))   # (B, ..., r, c)
    # u is (1, ..., r, c) or broadcast along some middle axes: sum those, keep the batch
    mid = tuple(i for i in range(1, n.ndim - 2) if u.shape[i] == 1 and p.shape[i] != 1)
    if mid:
        p = F.sum(p, axis=mid)
    return F.reshape(p, (None,) + u.shape[1:]) if u.shape[0] == 1 else None


def _conv_pe(n: Node, k: int, g: Node) -> Node:
    if k != 1:
        return None
    x, W = n.inputs
    G = n.attr("groups")
    kernel = tuple(W.shape[2:])
    cols = make("unfold", (x,), {"kernel": kernel, "stride": n.attr("stride"),
                                 "dilation": n.attr("dilation"), "pad": n.attr("pad")})
    L = math.prod(cols.shape[2 + len(kernel):])
    cols = F.reshape(cols, (None, G, x.shape[1] // G * math.prod(kernel), L))
    gr = F.reshape(g, (None, G, g.shape[1] // G, L))
    p = F.matmul(gr, _swap(cols))                  # (B, G, O/G, C/G·ΠK)
    return F.reshape(p, (None,) + W.shape)


def _take_pe(n: Node, k: int, g: Node) -> Node:
    E, ids = n.inputs
    if k != 0 or n.attr("axis") != 0 or not _batched(ids):
        return None
    V, rest = E.shape[0], E.shape[1:]
    T, R = math.prod(ids.shape[1:]), math.prod(rest)
    hot = F.one_hot(F.reshape(ids, (None, T)), V, g.dtype)            # (B, T, V)
    p = F.matmul(_swap(hot), F.reshape(g, (None, T, R)))             # (B, V, R)
    return F.reshape(p, (None,) + E.shape)


_INTERFACE = {"broadcast": _broadcast_pe, "matmul": _matmul_pe, "conv": _conv_pe,
              "take": _take_pe}


# --- per-example VJPs of the ops between a parameter and its interfaces (no batch axis) ------
def _lift(x: Node) -> Node:
    """``x`` (no batch) as (B, *x.shape), the same for every example."""
    return F.broadcast_to(F.reshape(x, (1,) + x.shape), (None,) + x.shape)


def _inner_pe(n: Node, k: int, p: Node) -> Node | None:
    """Operand k's per-example cotangent, from ``p`` (B, *n.shape), for n without batch."""
    u = n.inputs[k]
    if n.op == "reshape":
        return F.reshape(p, (None,) + u.shape)
    if n.op == "cast":
        return F.cast(p, u.dtype)
    if n.op == "transpose":
        perm = n.attr("perm")
        inv = [0] * len(perm)
        for i, q in enumerate(perm):
            inv[q] = i
        return F.transpose(p, (0,) + tuple(1 + i for i in inv))
    if n.op == "broadcast":
        return _sum_keep(p, u.shape)
    if n.op in ("slice", "pad"):                  # each other's adjoint, the batch axis kept
        from .ops.moves import embed, slice_
        move = embed if n.op == "slice" else slice_
        return move(p, (0,) + n.attr("start"), (1,) + n.attr("step"), (None,) + u.shape)
    if n.op == "sum":
        axes = n.attr("axes")
        kept = tuple(1 if i in axes else d for i, d in enumerate(u.shape))
        return F.broadcast_to(F.reshape(p, (None,) + kept), (None,) + u.shape)
    if get_op(n.op).scalar is not None:           # elementwise: its VJP on a batched twin
        twin = make(n.op, [_lift(i) for i in n.inputs], dict(n.attrs))
        needs = [j == k for j in range(len(n.inputs))]
        return get_op(n.op).vjp(twin, p, needs)[k]
    return None


def per_example_grad(losses: Node, wrt: Node | Sequence[Node]) -> Node | list[Node]:
    """The gradient of each example's loss: for ``losses`` of shape ``(B,)`` and a parameter
    ``W`` (no batch axis), a node of shape ``(B, *W.shape)`` whose row ``b`` is
    ``∂ losses[b] / ∂W`` (``torch.func.vmap(torch.func.grad(f))``, JAX's ``vmap(grad(f))``).

    ``wrt`` a node or a list (one result each).  Examples must be independent (no batch
    norm, no mean over the batch before ``losses``): a graph that mixes them, or a use of a
    parameter with no per-example rule, is refused with a ShapeError naming the op and the
    parameter.  Per-example losses are *not* divided by B: with ``loss = mean(losses)``,
    ``grad(loss, W) == mean(per_example_grad(losses, W), axis=0)``.

    >>> import adjit as aj
    >>> x, w = aj.input("x", (None, 2)), aj.param("w", (2,))
    >>> g = aj.per_example_grad(aj.sum(x * w, axis=1) ** 2, w)
    >>> aj.compile(g, backend="interp")(x=[[1.0, 0.0], [0.0, 2.0]], w=[3.0, 1.0]).tolist()
    [[6.0, 0.0], [0.0, 8.0]]
    """
    if not isinstance(losses, Node) or losses.shape != (None,):
        got = shape_str(losses.shape) if isinstance(losses, Node) else type(losses).__name__
        raise ShapeError(f"per_example_grad: the losses must be a node of shape (B,) (one "
                         f"loss per example), got {label(losses) if isinstance(losses, Node) else ''} {got}")
    if losses.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"per_example_grad: the losses {label(losses)} must be float, "
                         f"got {losses.dtype}")
    variables, single = as_nodes(wrt, "per_example_grad", "parameters")
    for v in variables:
        if v.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"per_example_grad: parameter {label(v)} must be float, "
                             f"got {v.dtype}")
        if _batched(v):
            raise ShapeError(f"per_example_grad: parameter {label(v)} {shape_str(v.shape)} "
                             "has the batch axis; per-example gradients are taken with "
                             "respect to values shared by every example")

    order = ancestors([losses])
    batch_dep: set[int] = set()                   # nodes that read batched data
    for n in order:
        if _batched(n) or n.op == "batch_size" or any(i.id in batch_dep for i in n.inputs):
            batch_dep.add(n.id)
    owner: dict[int, Node] = {}                   # node id -> a parameter it depends on
    for n in order:
        if any(n is v for v in variables):
            owner[n.id] = n
        else:
            for i in n.inputs:
                if i.id in owner:
                    owner[n.id] = owner[i.id]
                    break
    for n in order:
        if n.id not in owner:
            continue
        if _batched(n):
            _check_node(n, owner[n.id])
        elif n.id in batch_dep:
            raise _refuse("this value has no batch axis but reads batched data (a "
                          "reduction over the batch mixes examples)", n, owner[n.id])

    interfaces = [n for n in order if n.id in owner and _batched(n)
                  and any(i.id in owner and not _batched(i) for i in n.inputs)]
    pe: dict[int, list[Node]] = {}
    with building("per_example"):
        cts = grad(F.sum(losses), interfaces) if interfaces else []
        for n, g in zip(interfaces, cts):
            for k, u in enumerate(n.inputs):
                if u.id not in owner or _batched(u):
                    continue
                rule = _INTERFACE.get(n.op)
                p = rule(n, k, g) if rule is not None else None
                if p is None:
                    raise _refuse(f"op {n.op} has no per-example rule for its operand "
                                  f"{label(u)} {shape_str(u.shape)}", n, owner[u.id])
                pe.setdefault(u.id, []).append(p)
        totals: dict[int, Node] = {}
        for n in reversed(order):
            if n.id not in pe:
                continue
            total = pe.pop(n.id)
            t = total[0]
            for p in total[1:]:
                t = t + p
            totals[n.id] = t
            for k, u in enumerate(n.inputs):
                if u.id not in owner:
                    continue
                p = _inner_pe(n, k, t)
                if p is None:
                    raise _refuse(f"op {n.op} (before the batch axis appears) has no "
                                  f"per-example rule for its operand {label(u)}", n,
                                  owner[u.id])
                pe.setdefault(u.id, []).append(p)
        results = []
        for v in variables:
            r = totals.get(v.id)
            if r is None:
                r = F.broadcast_to(F.const(0.0, v.dtype), (None,) + v.shape)
            elif r.dtype != v.dtype:
                r = F.cast(r, v.dtype)
            results.append(r)
    # as grad does: the result is a function of the whole model (a compiled one takes its
    # inputs, and binds the batch from them, even where it reads none)
    record_model_inputs(results, model_inputs([losses] + variables))
    return results[0] if single else results


__all__ = ["per_example_grad"]
