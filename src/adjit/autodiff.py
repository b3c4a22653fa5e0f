"""Reverse mode: the adjoint of a scalar, as new nodes of the same IR.

Walks the nodes the output depends on in reverse topological order, asks each op's
VJP for its inputs' contributions (built with front-end ops, so they are ordinary
nodes and can be differentiated again), and adds up fan-out contributions.  Only
nodes on a path from a requested variable to the output are visited.

Every node made here carries ``meta['role'] == 'adjoint'``; the summed cotangent of a
primal node ``v`` lists ``v`` in ``meta['bars']`` so printers can call it v̄.

The "double where" rule is applied automatically.  In ``where(c, f(x), g(x))`` the
cotangent reaching the branch ``f(x)`` is zero where ``c`` is false, but the chain rule
multiplies it by ``f'(x)``, and 0 · inf (``sqrt'(0)``, ``log'(0)``, ``exp'(1000)``, a NaN
in the data) is NaN.  So each cotangent contribution flowing back through a branch carries
a *mask*: where it can be nonzero, as an "or" of "and"s of the conditions of the branches
it came through.  A value used several times sums contributions, so its mask is the "or"
of theirs (one ``log(x)`` in ``where(x > 0, l, 0) + where(x > 0, l*l, 0)``, two condition
nodes: zero where neither holds).  The contributions of every elementwise op under a mask
are wrapped in a tree of ``where(c, ct, 0)`` that is exact (the true value elsewhere is 0)
and finite.

The mask follows a value through elementwise ops and casts as it is, and through the
structural ops that declare a *support* rule (``Op.support``): there it becomes one bool
node and is mapped onto each input exactly -- broadcast back over the reduced axes for sum,
mean and max; "any" over the broadcast axes for broadcast (a sum of 0s and 1s, > 0); the
same reshape or transpose; for matmul, A's cotangent ``G Bᵀ`` is zero on the rows where
``G`` is, and B's, ``Aᵀ G``, on its zero columns.  Contributions that are not linear in
the cotangent's zeros (max divides by the tie count; matmul multiplies by the other
operand) are guarded, and matmul reads each operand as 0 outside its support
(``Op.masked_vjp``), so a NaN in a row of A that no selected element reads never reaches
B's cotangent.  The limit: inside one product row that is selected in part, G's exact zeros
still multiply the other operand (0 · NaN).  The composites (logsumexp, log_softmax,
softmax, cross_entropy) are primitives, so the mask follows them.  A ``where`` made with
``frontend.safe_where`` starts no mask: cross_entropy's selections and those in the
derivatives of relu, maximum and minimum, whose branches stay finite (or, for the last
three, are documented not to be guarded), so a plain classifier's gradient and HVP carry no
guard.  A graph without ``where`` gets no mask and
no extra node; an op with no support rule ends the mask, and a use of the value outside
every branch lifts it (that use's gradient is the true one).  Guards stay exact, so a
Hessian-vector product differentiates through them to the right values.  Each guard node
is tagged ``meta['rewrite'] = 'double_where'``; :func:`recorded_rewrites` counts the tags,
and the traced stage of a compiled function lists the counts in its ``rewrites``.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from . import frontend as F
from .ir import FLOAT_DTYPES, DTypeError, Node, ShapeError, ancestors, building, label, shape_str
from .ops.registry import get_op
from .gcpause import pausing


@pausing    # (the garbage collector: see adjit.gcpause)
def grad(y: Node, wrt: Node | Sequence[Node]) -> Node | list[Node]:
    """The gradient of the scalar ``y`` with respect to ``wrt`` (a node or a list).

    Returns nodes (one per entry of ``wrt``) shaped like their variables.  Variables
    ``y`` does not depend on get zeros.

    >>> import adjit as aj
    >>> x = aj.input("x", ())
    >>> g = aj.grad(x * x, x)
    >>> float(aj.compile(g, backend="interp")(x=3.0))
    6.0
    """
    single = isinstance(wrt, Node)
    variables = [wrt] if single else list(wrt)
    if not isinstance(y, Node) or y.shape != ():
        shape = shape_str(y.shape) if isinstance(y, Node) else type(y).__name__
        raise ShapeError(f"grad: the output must be a scalar node, got {label(y) if isinstance(y, Node) else y} {shape}")
    if y.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"grad: the output {label(y)} must be float, got {y.dtype}")
    for v in variables:
        if not isinstance(v, Node):
            raise TypeError(f"grad: variables must be nodes, got {type(v).__name__}")
        if v.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"grad: variable {label(v)} must be float, got {v.dtype}")

    order = ancestors([y])
    targets = {v.id for v in variables}
    # nodes that depend on a variable (only these need or pass on cotangents)
    active = set()
    for n in order:
        if n.id in targets or any(i.id in active for i in n.inputs):
            active.add(n.id)

    with building("adjoint"):
        # each contribution travels with its mask: the (condition, polarity) pairs of the
        # `where` branches it came through (it is exactly zero where any of them is off)
        contributions: dict[int, list] = {y.id: [(F.const(1.0, y.dtype), _NO_MASK)]}
        conds: dict[int, Node] = {}         # the condition nodes masks name, by id
        made: dict = {}                     # masks already built as one bool node
        totals: dict[int, Node] = {}
        for n in reversed(order):
            parts = contributions.pop(n.id, None)
            if parts is None or n.id not in active:
                continue
            total = _accumulate([ct for ct, _ in parts], n)
            totals[n.id] = total
            needs = [i.id in active for i in n.inputs]
            if not any(needs):
                continue
            spec = get_op(n.op)
            if spec.vjp is None:
                raise TypeError(f"grad: op {n.op} ({label(n)}) has no derivative")
            mask = _union(m for _, m in parts)
            if mask != _NO_MASK and spec.support is not None:
                pairs = _through_structural(n, total, needs, mask, conds, made)
            else:
                pairs = [_masked(n, k, ct, mask, conds) if need and ct is not None else None
                         for k, (ct, need) in enumerate(zip(spec.vjp(n, total, needs), needs))]
            for inp, pair in zip(n.inputs, pairs):
                if pair is not None:
                    contributions.setdefault(inp.id, []).append(pair)
        results = [totals[v.id] if v.id in totals else _zeros_like(v) for v in variables]
    # A gradient is a function of the whole model, even where it reads none of its inputs
    # (d/dx sum(x) over the batch is ones shaped like x): record the model's inputs so a
    # compiled gradient takes the same arguments and can bind the batch size from them.
    # (variables y ignores still get their zeros' batch)
    record_model_inputs(results, model_inputs([y] + variables))
    return results[0] if single else results


def model_inputs(nodes) -> tuple:
    """The inputs and parameters of the model ``nodes`` are functions of: their leaves,
    and the model inputs recorded on them (a derivative of a derivative)."""
    context = ancestors(list(nodes))
    model = {k.id: k for k in context if k.op in ("input", "param")}
    for k in context:
        model.update((i.id, i) for i in k.meta.get("model_inputs", ()))
    return tuple(model[k] for k in sorted(model))


def record_model_inputs(results, inputs: tuple) -> None:
    """Record on each derivative node the model inputs it is a function of (merged with
    what it records already), so a compiled derivative takes the model's arguments."""
    for r in results:
        merged = {i.id: i for i in tuple(r.meta.get("model_inputs", ())) + tuple(inputs)}
        r.meta["model_inputs"] = tuple(merged[k] for k in sorted(merged))


def _accumulate(parts: list[Node], primal: Node) -> Node:
    """Sum of fan-out contributions, tagged as the cotangent of ``primal``."""
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    if total.shape != primal.shape:  # VJPs return their operand's shape; guard the invariant
        raise ShapeError(f"grad: cotangent of {label(primal)} has shape {shape_str(total.shape)}, "
                         f"expected {shape_str(primal.shape)}")
    total.meta.setdefault("bars", []).append(primal)
    return total


def _zeros_like(v: Node) -> Node:
    return F.broadcast_to(F.const(0.0, v.dtype), v.shape)


# --- the double-where rule -----------------------------------------------------------------
# A mask says where a cotangent contribution may be nonzero: it is a set of *terms*, each a
# set of literals (the id of a bool condition node, and the polarity the branch needs), and
# the contribution is exactly zero wherever no term holds (a term holds where all its
# literals do).  The empty term always holds: a contribution that passed through no branch.
# Contributions from several uses add up, so a value's mask is the union of their terms:
# its cotangent is zero only where every use is off (``where(x > 0, l, 0) +
# where(x > 0, l*l, 0)`` with two condition nodes gives two terms).
Mask = frozenset            # frozenset[frozenset[tuple[int, bool]]]
_NO_MASK: Mask = frozenset({frozenset()})
_MAX_TERMS = 32             # beyond this, terms merge into the literals they share


def _union(masks) -> Mask:
    """The mask of a sum of contributions: zero only where each of them is zero."""
    terms = set().union(*masks)
    changed = True
    while changed:          # t ∪ {c} or t ∪ {¬c} is t; a term that holds a smaller one goes
        changed = False
        for t in list(terms):
            for lit in t:
                rest = t - {lit}
                if rest | {(lit[0], not lit[1])} in terms:
                    terms -= {t, rest | {(lit[0], not lit[1])}}
                    terms.add(rest)
                    changed = True
                    break
            if changed:
                break
    terms = {t for t in terms if not any(o < t for o in terms)}
    while len(terms) > _MAX_TERMS:
        # a coarser mask is still exact (it only guards less): two terms become the
        # literals they share, the pair sharing most first
        a, b = max(((a, b) for a in terms for b in terms if a != b),
                   key=lambda p: (len(p[0] & p[1]), sorted(p[0]), sorted(p[1])))
        terms = (terms - {a, b}) | {a & b}
    if frozenset() in terms:
        return _NO_MASK
    return frozenset(terms)


def _guard(ct: Node, mask: Mask, conds: dict[int, Node]) -> Node:
    """``ct`` where some term of ``mask`` holds, else an exact 0 (a tree of ``where``s)."""
    out = 0.0
    for term in sorted(mask, key=sorted, reverse=True):
        taken = ct
        for cid, polarity in sorted(term, reverse=True):
            c = conds[cid]
            taken = F.where(c, taken, out) if polarity else F.where(c, out, taken)
            taken.meta["rewrite"] = "double_where"
        out = taken
    return out


def _masked(node: Node, k: int, ct: Node, mask: Mask,
            conds: dict[int, Node]) -> tuple[Node, Mask]:
    """The contribution ``ct`` of ``node`` to its input ``k``, guarded, with its mask."""
    if node.op == "where" and node.meta.get("safe_branches"):
        return ct, mask         # a composite's where whose branches need no guard (F.safe_where)
    if node.op == "where":      # entering a branch: add its condition (k = 1: true branch)
        cond = node.inputs[0]
        conds[cond.id] = cond
        return ct, frozenset(t | {(cond.id, k == 1)} for t in mask)
    if mask == _NO_MASK or node.inputs[k].shape != node.shape or not (
            node.op == "cast" or get_op(node.op).elementwise):
        return ct, _NO_MASK     # an op with no support rule ends the mask
    if not get_op(node.op).zero_preserving:
        ct = _guard(ct, mask, conds)
    return ct, mask


def _through_structural(node: Node, total: Node, needs: list, mask: Mask,
                        conds: dict[int, Node], made: dict) -> list:
    """The (contribution, mask) of each input of a structural op whose cotangent ``total``
    has the mask ``mask``: the mask becomes one bool node shaped like ``node``, the op's
    support rule maps it onto each input, and a contribution that is not zero-preserving
    (max, matmul) is guarded by it."""
    spec = get_op(node.op)
    m = _as_bool(mask, node.shape, total.dtype, conds, made)
    if spec.masked_vjp is not None:      # (each product reads the other operand's support)
        supports = [spec.support(node, k, m) for k in range(len(needs))]
        cts = spec.masked_vjp(node, total, needs, supports)
    else:
        supports = [spec.support(node, k, m) if need else None for k, need in enumerate(needs)]
        cts = spec.vjp(node, total, needs)
    pairs = []
    for k, (ct, need, s) in enumerate(zip(cts, needs, supports)):
        if not need or ct is None:
            pairs.append(None)
        elif s is None:
            pairs.append((ct, _NO_MASK))
        else:
            conds[s.id] = s
            sub = frozenset({frozenset({(s.id, True)})})
            pairs.append((ct if get_op(node.op).zero_preserving else _guard(ct, sub, conds),
                          sub))
    return pairs


def _as_bool(mask: Mask, shape: tuple, dtype: str, conds: dict[int, Node], made: dict) -> Node:
    """The mask as one bool node (a condition itself when it is a single one)."""
    if mask not in made:
        if len(mask) == 1 and len(next(iter(mask))) == 1 and next(iter(next(iter(mask))))[1]:
            made[mask] = conds[next(iter(next(iter(mask))))[0]]
        else:
            ones = F.broadcast_to(F.const(1.0, dtype), shape)
            made[mask] = _guard(ones, mask, conds) > 0.0
    return made[mask]


def recorded_rewrites(nodes: Iterable[Node]) -> dict[str, int]:
    """Counts of the rules applied while nodes were built (``meta['rewrite']`` tags)."""
    counts = Counter(n.meta["rewrite"] for n in nodes if "rewrite" in n.meta)
    return dict(sorted(counts.items()))
