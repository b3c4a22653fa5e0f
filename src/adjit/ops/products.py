"""Products: ``matmul`` with numpy's N-D semantics and ``einsum``, both compositions of
the batched ``matmul`` op (ops/structural.py) with reshapes, transposes, sums and
broadcast multiplies, so they need no derivative rules of their own.

``matmul(a, b)`` follows ``np.matmul``: a 1-D ``a`` is a row (its axis is removed from
the result), a 1-D ``b`` a column; operands of rank >= 2 are stacks of matrices whose
leading (batch) axes broadcast, the lower rank padded with leading 1s.  ``None`` (the
batch size) matches ``None`` or 1.

``einsum(spec, *operands)`` supports every spec whose index letters each appear at most
once per operand (transposes, sums over axes, outer, batched and contracted products of
any number of operands, evaluated left to right); a letter repeated within one operand
(a diagonal or trace: ``"ii->"``, ``"ii->i"``) and ``...`` are refused with a ShapeError.
"""
from __future__ import annotations

from .. import frontend as F
from ..ir import DTypeError, FLOAT_DTYPES, Node, ShapeError, label, shape_str
from .registry import make
from .structural import batch_broadcast


# --- matmul ------------------------------------------------------------------------------
def matmul(a, b) -> Node:
    """Matrix product with numpy's rules (``np.matmul``, the ``@`` operator).

    1-D operands are promoted to a row (``a``) or column (``b``) and that axis removed from
    the result; leading batch axes broadcast.  Each stack of products runs as one batched
    GEMM on the native backends.
    """
    a, b = F._lift(a), F._lift(b)
    where = f"{label(a)} @ {label(b)}"
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"{where}: matmul needs operands of rank >= 1, got shapes "
                         f"{shape_str(a.shape)} and {shape_str(b.shape)} (use * for scalars)")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ShapeError(f"{where}: inner sizes {a.shape[-1]} and {inner_b} differ "
                         f"(shapes {shape_str(a.shape)} and {shape_str(b.shape)})")
    if a.dtype not in FLOAT_DTYPES or b.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: needs float operands, got {a.dtype} and {b.dtype}")
    a, b = F._promote([a, b], where)
    if a.ndim == 1 and b.ndim == 1:
        return F.sum(a * b)
    drop = []                                   # result axes numpy removes (1-D operands)
    if a.ndim == 1:
        a = F.reshape(a, (1,) + a.shape)
        drop.append(-2)
    if b.ndim == 1:
        b = F.reshape(b, b.shape + (1,))
        drop.append(-1)
    rank = max(a.ndim, b.ndim)
    a = F.reshape(a, (1,) * (rank - a.ndim) + a.shape)
    b = F.reshape(b, (1,) * (rank - b.ndim) + b.shape)
    if batch_broadcast(a.shape[:-2], b.shape[:-2], where) is None:
        raise ShapeError(f"{where}: batch dimensions {shape_str(a.shape[:-2])} and "
                         f"{shape_str(b.shape[:-2])} do not broadcast")
    out = make("matmul", (a, b))
    if drop:
        keep = [d for i, d in enumerate(out.shape) if i - out.ndim not in drop]
        out = F.reshape(out, tuple(keep))
    return out


# --- einsum -------------------------------------------------------------------------------
def _parse(spec: str, operands: list[Node]) -> tuple[list[str], str]:
    if not isinstance(spec, str):
        raise TypeError(f"einsum: the spec must be a string, got {type(spec).__name__}")
    s = spec.replace(" ", "")
    if "." in s:
        raise ShapeError(f"einsum {spec!r}: '...' is not supported; name every axis")
    lhs, arrow, out = s.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(operands):
        raise ShapeError(f"einsum {spec!r}: {len(ins)} operand specs for {len(operands)} "
                         f"operands")
    letters = "".join(ins)
    bad = sorted({c for c in letters + out if not c.isalpha()})
    if bad:
        raise ShapeError(f"einsum {spec!r}: index names must be letters, got {bad}")
    if not arrow:   # numpy's implicit output: the letters seen once, in alphabetical order
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    for term, x in zip(ins, operands):
        if len(term) != x.ndim:
            raise ShapeError(f"einsum {spec!r}: {term!r} names {len(term)} axes but "
                             f"{label(x)} has shape {shape_str(x.shape)}")
        if len(set(term)) != len(term):
            raise ShapeError(f"einsum {spec!r}: {term!r} repeats an index (a diagonal or "
                             f"trace), which adjit's einsum does not support")
    if len(set(out)) != len(out):
        raise ShapeError(f"einsum {spec!r}: the output {out!r} repeats an index")
    missing = sorted(set(out) - set(letters))
    if missing:
        raise ShapeError(f"einsum {spec!r}: output indices {missing} name no operand axis")
    sizes: dict[str, tuple] = {}
    for term, x in zip(ins, operands):
        for c, d in zip(term, x.shape):
            if c in sizes and sizes[c][0] != d:
                other = sizes[c][1]
                raise ShapeError(f"einsum {spec!r}: index {c!r} is {sizes[c][0]} in "
                                 f"{label(other)} {shape_str(other.shape)} but {d} in "
                                 f"{label(x)} {shape_str(x.shape)}")
            sizes.setdefault(c, (d, x))
    return ins, out


def _arrange(x: Node, term: str, order: str) -> Node:
    """``x`` (axes named by ``term``) with its axes in ``order``; letters of ``order`` not
    in ``term`` become size-1 axes."""
    have = [c for c in order if c in term]
    x = F.transpose(x, tuple(term.index(c) for c in have))
    shape = tuple(x.shape[have.index(c)] if c in term else 1 for c in order)
    return F.reshape(x, shape)


def _sum_out(x: Node, term: str, keep: set) -> tuple[Node, str]:
    axes = tuple(i for i, c in enumerate(term) if c not in keep)
    if not axes:
        return x, term
    return F.sum(x, axis=axes), "".join(c for c in term if c in keep)


def _merge(x: Node, groups: list[str], term: str) -> Node:
    """Reshape ``x`` (axes ``term``, already in the order of the concatenated groups) so that
    each group is one axis (its static sizes multiplied)."""
    size = dict(zip(term, x.shape))
    shape = []
    for g in groups:
        if len(g) == 1:
            shape.append(size[g])      # may be None: a lone axis keeps its size
            continue
        n = 1
        for c in g:
            n *= size[c]
        shape.append(n)
    return F.reshape(x, tuple(shape))


def _pair(x: Node, tx: str, y: Node, ty: str, keep: set) -> tuple[Node, str]:
    """The product of two operands summed over their shared letters not in ``keep``."""
    size = {**dict(zip(tx, x.shape)), **dict(zip(ty, y.shape))}
    shared = [c for c in tx if c in ty]
    contracted = [c for c in shared if c not in keep]
    if not contracted:     # no sum: a broadcast multiply, axes shared + x's own + y's own
        order = "".join(shared + [c for c in tx if c not in ty] + [c for c in ty if c not in tx])
        return _arrange(x, tx, order) * _arrange(y, ty, order), order
    # batched product: batch axes (B) broadcast, M = x's own, K = contracted, N = y's own.
    # A group is merged into one axis only when its sizes are static (None, the batch
    # size, cannot be merged with others): a None of x's or y's own letters becomes a batch
    # axis (size 1 on the other side); a None contracted letter beside static ones is a
    # batch axis summed after the product.
    batch = [c for c in shared if c in keep]
    xm = [c for c in tx if c not in ty]
    yn = [c for c in ty if c not in tx]
    dyn = lambda cs: [c for c in cs if size[c] is None]
    stat = lambda cs: [c for c in cs if size[c] is not None]
    k_axis = stat(contracted) or dyn(contracted)[:1]
    k_dyn = [c for c in contracted if c not in k_axis]
    batch_all = batch + dyn(xm) + dyn(yn) + k_dyn
    m, n = stat(xm), stat(yn)
    xs = _arrange(x, tx, "".join(batch_all + m + k_axis))
    ys = _arrange(y, ty, "".join(batch_all + k_axis + n))
    groups_x = list(batch_all) + ["".join(m), "".join(k_axis)]
    groups_y = list(batch_all) + ["".join(k_axis), "".join(n)]
    xs = _merge(xs, groups_x, "".join(batch_all + m + k_axis))
    ys = _merge(ys, groups_y, "".join(batch_all + k_axis + n))
    prod = make("matmul", (xs, ys))
    nb = len(batch_all)
    shape = tuple(prod.shape[:nb]) + tuple(size[c] for c in m + n)
    prod = F.reshape(prod, shape)
    term = "".join(batch_all + m + n)
    if k_dyn:
        prod, term = _sum_out(prod, term, set(term) - set(k_dyn))
    return prod, term


def einsum(spec: str, *operands) -> Node:
    """Einstein summation (``np.einsum``) for specs without repeated indices in an operand.

    ``"bij,bjk->bik"`` (batched product), ``"bhtd,bhsd->bhts"`` (attention scores),
    ``"ij,jk"`` (implicit output, alphabetical), ``"ij->ji"``, ``"ij->"``, ``"i,j->ij"``
    (outer), three or more operands (contracted left to right).  Contractions run as
    batched matmuls; ``...`` and repeated indices (diagonals, traces) raise ShapeError.
    """
    nodes = [F._lift(x) for x in operands]
    if not nodes:
        raise ShapeError(f"einsum {spec!r}: needs at least one operand")
    ins, out = _parse(spec, nodes)
    where = f"einsum {spec!r}"
    bad = [n for n in nodes if n.dtype not in FLOAT_DTYPES]
    if bad:
        raise DTypeError(f"{where}: needs float operands, got "
                         + ", ".join(f"{n.dtype} ({label(n)})" for n in bad))
    nodes = F._promote(nodes, where)
    x, tx = nodes[0], ins[0]
    for k in range(1, len(nodes)):
        later = set(out).union(*ins[k + 1:])
        y, ty = nodes[k], ins[k]
        x, tx = _sum_out(x, tx, later | set(ty))
        y, ty = _sum_out(y, ty, later | set(tx))
        x, tx = _pair(x, tx, y, ty, later)
    x, tx = _sum_out(x, tx, set(out))
    return F.transpose(x, tuple(tx.index(c) for c in out)) if x.ndim > 1 else x
