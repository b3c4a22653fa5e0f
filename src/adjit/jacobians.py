"""Jacobians and Hessians as nodes of the same graph: ``aj.jacobian`` and ``aj.hessian``.

The Jacobian is built from the two products adjit already has, one per basis vector:

* **reverse** mode: one VJP (:func:`adjit.grad`) per output element, seeded with that
  element (a basis cotangent); the rows are stacked.  Cheap when the output is small.
* **forward** mode: one JVP (:func:`adjit.jvp`) per input element, with a one-hot constant
  tangent; the columns are stacked.  Cheap when the input is small.

``mode="auto"`` takes reverse when ``y`` has fewer elements (per example) than ``x``, else
forward.  The products are built one per basis vector (a Python loop: :func:`adjit.grad`
takes no cotangent with an extra axis of seeds), then reverse mode moves the stack of its
``m`` rows back through the computation they share (elementwise ops, products ``a @ C``
with one ``C``: :func:`_stacked`), down to the seeds -- so the backward pass runs once, on
the ``m`` stacked seeds, as ``vmap(jacrev)`` does.  W11 (10 outputs of 784 → 128 → 10,
batch 64): 82 nodes and one (640, 128) @ (128, 784) product; the plain loop of 10 passes
was 159 nodes, 0.62 ms; forward mode (784 JVPs) 7,849 nodes, 34 s to compile, 158 ms a
call.  Forward mode's columns are stacked as they are (no such rewrite yet).

**Batch axis.**  When ``x`` and ``y`` both have the batch dimension first (``(B, ...)``),
the result is the Jacobian of each example's output with respect to its *own* input,
shape ``(B, *y.shape[1:], *x.shape[1:])`` -- what ``torch.func.vmap(torch.func.jacrev(f))``
and ``jax.vmap(jax.jacrev(f))`` return.  It assumes the examples are independent (example
b's output reads only example b's input).  A value between ``x`` and ``y`` without the
batch axis first (a mean over the batch, as batch norm in training mode computes it) is
detected and refused; mixing that keeps the batch axis in place (``x[::-1]`` on the batch
axis, a gather along it) is not, and then the result is the sum of the Jacobian's blocks
over the other examples.  Otherwise the result is the full Jacobian,
``y.shape + x.shape``; with a batched ``y`` and an unbatched ``x`` (a parameter) only
forward mode applies, with a batched ``x`` and an unbatched ``y`` only reverse.
"""
from __future__ import annotations

import numpy as np

from . import frontend as F
from .autodiff import grad, model_inputs, record_model_inputs
from .forward import jvp
from .ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, ancestors, label, shape_str
from .ops.registry import get_op
from .ops.shaping import expand_dims, stack

MODES = ("auto", "reverse", "forward")


def _size(shape) -> int:
    return int(np.prod([d for d in shape if d is not None], dtype=np.int64))


def _check_independent(y: Node, x: Node) -> None:
    """Refuse a per-example Jacobian when a value on a path from ``x`` to ``y`` has lost the
    batch axis (examples pooled: a batch mean, a product over the batch axis, ...)."""
    depends = {x.id}
    for n in ancestors([y]):
        if n.id == x.id or not any(i.id in depends for i in n.inputs):
            continue
        depends.add(n.id)
        if not n.shape or n.shape[0] is not None or None in n.shape[1:]:
            raise ShapeError(
                f"jacobian: {label(y)} {shape_str(y.shape)} mixes the examples of "
                f"{label(x)} {shape_str(x.shape)}: {label(n)} ({n.op}, "
                f"{shape_str(n.shape)}) depends on {label(x)} but does not keep the batch "
                "axis first (a mean over the batch, as batch norm in training mode "
                "computes it?); the per-example Jacobian needs independent examples -- "
                "declare x without the batch axis to get the full Jacobian")


def _canonical(nodes: list[Node]) -> dict[int, int]:
    """Node id -> the id of the first node computing the same value (same op, attrs and
    canonical inputs: what CSE merges), over the ancestors of ``nodes``."""
    seen: dict[tuple, int] = {}
    canon: dict[int, int] = {}
    for n in ancestors(nodes):
        leaf = n.op in ("input", "param") or (not n.inputs and n.op != "const")
        key = (n.id,) if leaf else (n.op, n.attrs, tuple(canon[i.id] for i in n.inputs))
        canon[n.id] = seen.setdefault(key, n.id)
    return canon


def _stacked(rows: list[Node], axis: int, memo: dict, canon: dict) -> tuple[Node, bool]:
    """``stack(rows, axis)`` with the stack moved towards the leaves where the rows are the
    same computation on different operands: elementwise ops, and products ``a_i @ C`` with
    one ``C`` (so the reverse Jacobian of a network is one product of the stacked seeds'
    cotangents with the first layer's weights, not one per output, and no copy).  Returns
    (node, shared): ``shared`` when every row is the same node (then the node is a row)."""
    key = tuple(canon[r.id] for r in rows)
    if key in memo:
        return memo[key]
    first = rows[0]
    if all(k == key[0] for k in key):
        out = (first, True)
    elif (all(r.op == first.op and r.attrs == first.attrs and len(r.inputs) == len(first.inputs)
              for r in rows) and (get_op(first.op).elementwise and not first.attrs
                                  or first.op == "matmul")):
        parts = [_stacked([r.inputs[k] for r in rows], axis, memo, canon)
                 for k in range(len(first.inputs))]
        if first.op == "matmul":
            (a, a_shared), (c, c_shared) = parts
            if c_shared and not a_shared and c.ndim == 2 and first.inputs[0].ndim == axis + 1:
                out = (F.matmul(a, c), False)
            else:
                out = (stack(rows, axis=axis), False)
        elif all(sh for _, sh in parts):
            out = (stack(rows, axis=axis), False)
        else:
            ops = [expand_dims(n, axis) if sh else n for n, sh in parts]
            out = (F._elementwise(first.op, *ops), False)
    else:
        out = (stack(rows, axis=axis), False)
    memo[key] = out
    return out


def _checked(y, x, fn: str) -> None:
    for what, n in (("output", y), ("variable", x)):
        if not isinstance(n, Node):
            raise TypeError(f"{fn}: the {what} must be a node, got {type(n).__name__}")
        if n.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"{fn}: the {what} {label(n)} must be float, got {n.dtype}")


def jacobian(y: Node, x: Node, mode: str = "auto") -> Node:
    """The Jacobian ``∂y/∂x`` as a node of shape ``y.shape + x.shape``: element ``[i, j]``
    (multi-indices) is ``∂y[i]/∂x[j]``.

    ``mode``: ``"reverse"`` (one VJP per element of ``y``), ``"forward"`` (one JVP per
    element of ``x``) or ``"auto"`` (reverse when ``y`` has fewer elements than ``x``).
    With the batch dimension first in both ``x`` and ``y``, the result is the Jacobian of
    each example's output with respect to its own input, ``(B, *y.shape[1:],
    *x.shape[1:])`` (as ``vmap(jacrev(f))``), assuming independent examples (see the
    module's docstring).

    >>> import adjit as aj
    >>> x = aj.input("x", (2,))
    >>> J = aj.jacobian(aj.stack([x[0] * x[1], aj.sin(x[0])]), x)
    >>> aj.compile(J, backend="interp")(x=[2.0, 3.0]).round(3).tolist()
    [[3.0, 2.0], [-0.416, 0.0]]
    """
    _checked(y, x, "jacobian")
    if mode not in MODES:
        raise ValueError(f"jacobian: mode must be one of {', '.join(MODES)}, got {mode!r}")
    xb, yb = None in x.shape, None in y.shape
    per_example = bool(x.shape) and bool(y.shape) and x.shape[0] is None and y.shape[0] is None
    if per_example:
        _check_independent(y, x)
        xs, ys = x.shape[1:], y.shape[1:]
        if None in xs or None in ys:
            raise ShapeError(f"jacobian: the batch dimension of {label(x)} "
                             f"{shape_str(x.shape)} and {label(y)} {shape_str(y.shape)} "
                             "must be their first axis only")
        out_shape = (None,) + ys + xs
    else:
        xs, ys = x.shape, y.shape
        out_shape = ys + xs
    m, n = _size(ys), _size(xs)
    if mode == "auto":
        mode = "reverse" if m < n else "forward"
        if not per_example and yb:
            mode = "forward"
        elif not per_example and xb:
            mode = "reverse"
    if mode == "reverse" and yb and not per_example:
        raise ShapeError(f"jacobian: reverse mode needs one VJP per element of {label(y)} "
                         f"{shape_str(y.shape)}, whose batch size is not known when the "
                         f"graph is built; use mode='forward' (x = {label(x)} "
                         f"{shape_str(x.shape)} has no batch axis)")
    if mode == "forward" and xb and not per_example:
        raise ShapeError(f"jacobian: forward mode needs one JVP per element of {label(x)} "
                         f"{shape_str(x.shape)}, whose batch size is not known when the "
                         "graph is built; use mode='reverse'")
    if m == 0 or n == 0:                # no product to build: zeros, a function of the model
        J = F.broadcast_to(F.const(0.0, y.dtype), out_shape)
        record_model_inputs([J], model_inputs([y, x]))
        return J
    lead = (None,) if per_example else ()
    if mode == "reverse":
        flat = F.reshape(y, lead + (m,))
        rows = []
        for i in range(m):
            seed = F.sum(flat[:, i]) if per_example else flat[i]
            g = grad(seed, x)
            rows.append(F.reshape(g, lead + (n,)) if (per_example or not xb) else g)
        if per_example or not xb:
            J, _ = _stacked(rows, len(lead), {}, _canonical(rows))            # (B?, m, n)
        else:                                            # x batched, y not: (m, *x.shape)
            J = stack(rows, axis=0)
        J = F.reshape(J, out_shape)
        record_model_inputs([J], model_inputs(rows + [y, x]))
        return J
    cols = []
    for j in range(n):
        basis = np.zeros(n)
        basis[j] = 1.0
        t = F.const(basis.reshape(xs), x.dtype)
        if per_example:
            t = F.broadcast_to(t, x.shape)
        cols.append(F.reshape(jvp(y, x, t), lead + (m,) if (per_example or not yb) else
                              y.shape))
    if per_example or not yb:
        J = stack(cols, axis=len(lead) + 1)                  # (B?, m, n)
    else:                                                # y batched, x not: (*y.shape, n)
        J = stack(cols, axis=y.ndim)
    return F.reshape(J, out_shape)


def hessian(L: Node, x: Node) -> Node:
    """The Hessian of the scalar ``L`` with respect to ``x``, shape ``x.shape + x.shape``:
    the forward-mode Jacobian of :func:`adjit.grad` (forward-over-reverse, one JVP of the
    gradient graph per element of ``x``).  With the batch dimension first in ``x``, the
    per-example Hessians ``(B, *x.shape[1:], *x.shape[1:])``: the diagonal blocks, the
    whole Hessian when ``L`` is a sum (or mean) of independent per-example terms.

    Forming it costs ``x.size`` Hessian-vector products: for a large model use
    :func:`adjit.hvp` instead, which never forms it.

    >>> import adjit as aj
    >>> x = aj.input("x", (2,))
    >>> H = aj.hessian(x[0] ** 2 * x[1], x)
    >>> aj.compile(H, backend="interp")(x=[1.0, 3.0]).tolist()
    [[6.0, 2.0], [2.0, 0.0]]
    """
    _checked(L, x, "hessian")
    if L.shape != ():
        raise ShapeError(f"hessian: the output must be a scalar node, got {label(L)} "
                         f"{shape_str(L.shape)} (for a vector output, aj.jacobian of each "
                         "gradient, or aj.hvp)")
    return jacobian(grad(L, x), x, mode="forward")


__all__ = ["jacobian", "hessian"]
