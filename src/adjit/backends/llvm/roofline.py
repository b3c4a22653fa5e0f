"""The roofline of a profiled function: each step's FLOPs and bytes beside its time.

For step ``s`` at batch size ``B`` (the mean batch size of the profiled calls):

* ``flops`` -- floating-point operations, counted from the op (a fused multiply-add is
  two): matmul ``2·M·N·K`` per matrix (``matmul_sum``: times its summed batch);
  ``conv``/``conv_weight`` ``2·out·(terms per output)``; elementwise ops and fused regions
  the operations of their scalar expression per output element (:func:`expr_flops`: +, ×,
  a comparison or select 1, a division 1, an integer power its multiplications, any other
  function -- exp, log, tanh, sqrt, ... -- 5, the ``Op.cost`` of a transcendental);
  reductions one per element read; pools one per window tap; ``fold`` one add per column
  element, ``scatter_add`` one per value added; moves, gathers, casts and random bits 0.
  An operand the step computes as it reads it (an elementwise node inlined into a
  reduction, an ``unfold`` or a product computed inside the product or fold reading it)
  adds its own FLOPs.
* ``bytes`` -- the compulsory traffic: every distinct array the step reads (inputs,
  parameters, constants, other steps' results; through views, and through the operands
  it computes inside) once, plus its result written once.  Caches can do no better;
  a step that re-reads an operand from memory does worse.
* ``bound_us = max(flops / peak, bytes / bandwidth)`` with the measured FMA peak of the
  step's dtype and the measured bandwidth (:mod:`.peaks`, all the cores adjit uses);
  ``limit`` is "compute" or "memory", whichever term is larger; ``x_bound`` is the mean
  time per call divided by the bound: 1 at the limit, 10 means ten times slower than
  the machine allows (a small step is far from its bound by the call overhead alone).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp

from ...ops.registry import get_op

FUNCTION_FLOPS = 5          # a transcendental function (Op.cost of exp, tanh, ...)
_SELECTS = (sp.Max, sp.Min)
_ONE_OP = (sp.Abs, sp.sign, sp.floor, sp.ceiling)
REDUCTIONS = ("sum", "prod", "max", "min")
POOLS = ("max_pool", "pool_argmax", "avg_pool")


def expr_flops(expr) -> int:
    """Operations of a scalar sympy expression, each subexpression counted once (the
    lowering computes a repeated one once): see the module docstring."""
    seen, total = set(), 0
    for e in sp.preorder_traversal(expr):
        if e.is_Atom or e in seen:
            continue
        seen.add(e)
        total += _node_ops(e)
    return total


def _node_ops(e) -> int:
    if isinstance(e, (sp.Add, sp.Mul)):
        return len(e.args) - 1
    if isinstance(e, sp.Pow):
        n = e.exp
        if n.is_Integer:
            k = abs(int(n))
            return max(k - 1, 0) + (1 if int(n) < 0 else 0) if k <= 16 else FUNCTION_FLOPS
        return FUNCTION_FLOPS               # sqrt, a real power: a function call
    if isinstance(e, _SELECTS):
        return len(e.args) - 1
    if isinstance(e, sp.Piecewise):
        return len(e.args) - 1              # one select per extra branch
    if isinstance(e, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction)):
        return 1
    if isinstance(e, _ONE_OP):
        return 1
    if isinstance(e, sp.Function):
        return FUNCTION_FLOPS
    return 0


@lru_cache(maxsize=None)
def _elementwise_flops(name: str) -> int:
    from ...ops.elementwise import SYMBOLS
    op = get_op(name)
    return expr_flops(op.scalar(*SYMBOLS[: op.arity]))


def numel(node, batch: int) -> int:
    return math.prod(batch if d is None else int(d) for d in node.shape)


def nbytes(node, batch: int) -> int:
    if node.op == "batch_size":
        return 0
    return numel(node, batch) * np.dtype(node.dtype).itemsize


def node_flops(node, batch: int) -> int:
    """FLOPs of computing ``node`` alone (its operands given), at batch size ``batch``."""
    out, ins = numel(node, batch), node.inputs
    if node.op == "fused":
        return out * expr_flops(node.attr("expr"))
    op = get_op(node.op)
    if getattr(op, "elementwise", False) and op.scalar is not None:
        return out * _elementwise_flops(node.op)
    if node.op == "matmul":
        return 2 * out * _dim(ins[0].shape[-1], batch)
    if node.op == "matmul_sum":
        return 2 * out * numel(ins[0], batch) // max(1, _dim(ins[0].shape[-2], batch))
    if node.op == "conv":            # W: (C_out, C/groups, *K)
        return 2 * out * (numel(ins[1], batch) // max(1, _dim(ins[1].shape[0], batch)))
    if node.op == "conv_weight":     # g: (N, C_out, *O)
        return 2 * out * (numel(ins[1], batch) // max(1, _dim(ins[1].shape[1], batch)))
    if node.op in REDUCTIONS:
        return numel(ins[0], batch)
    if node.op in POOLS:
        return out * math.prod(node.attr("kernel"))
    if node.op == "avg_pool_grad":
        return numel(ins[0], batch) * math.prod(node.attr("kernel"))
    if node.op in ("fold", "scatter_add"):
        return numel(ins[0], batch)
    return 0


def _dim(d, batch: int) -> int:
    return batch if d is None else int(d)


def step_cost(node, step_ids: set, batch: int) -> tuple[int, int]:
    """``(flops, bytes)`` of the kernel computing step ``node`` at batch size ``batch``;
    ``step_ids``: the ids of every step of the plan (their results are in memory)."""
    reads: dict[int, int] = {}
    flops = node_flops(node, batch)
    for operand in node.inputs:
        flops += _read(operand, step_ids, batch, reads)
    return flops, sum(reads.values()) + nbytes(node, batch)


def _read(n, step_ids: set, batch: int, reads: dict) -> int:
    """Record the memory ``n`` is read from in ``reads`` (id -> bytes); return the FLOPs
    of computing it inside the reading step (0 for a value in memory)."""
    op = get_op(n.op)
    if n.id in step_ids or op.leaf:
        reads[n.id] = nbytes(n, batch)
        return 0
    if op.view or n.op == "transpose":        # a view, or a transpose the GEMM reads
        return _read(n.inputs[0], step_ids, batch, reads)
    # computed inside the step reading it: an inlined elementwise node, a window
    return node_flops(n, batch) + sum(_read(i, step_ids, batch, reads) for i in n.inputs)


def add_roofline(rows: list[dict], steps, peaks, batch: int) -> list[dict]:
    """Add ``flops``, ``bytes``, ``bound_us``, ``limit`` and ``x_bound`` to profile rows
    (one per step, ``row["step"]`` its index in ``steps``) for ``peaks``
    (:class:`~.peaks.Peaks`) at batch size ``batch``."""
    ids = {n.id for n in steps}
    for r in rows:
        node = steps[r["step"]]
        flops, moved = step_cost(node, ids, batch)
        t_flops = flops / (peaks.flops(node.dtype) * 1e9) * 1e6 if flops else 0.0
        t_bytes = moved / (peaks.bandwidth * 1e9) * 1e6
        bound = max(t_flops, t_bytes)
        r.update(flops=flops, bytes=moved, bound_us=bound,
                 limit="compute" if t_flops > t_bytes else "memory",
                 x_bound=r["mean_us"] / bound if bound > 0 and r["calls"] else float("nan"))
    return rows


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f}{unit}"
    return f"{v:.0f}"


def format_roofline(rows: list[dict], peaks, batch: float, top: int | None = None) -> str:
    """The profile table with the roofline columns, the machine line at its head."""
    head = [f"machine: {peaks.line()}",
            f"batch: {batch:g} (mean of the profiled calls); bound = max(FLOPs / peak, "
            "bytes / bandwidth); x bound = mean time / bound",
            f"{'step':>4} {'share':>6} {'mean µs':>9} {'bound µs':>9} {'x bound':>8} "
            f"{'limit':<7} {'FLOPs':>7} {'bytes':>7} {'calls':>6}  {'op':<12} {'shape':<14} node"]
    for r in rows[:top]:
        shape = "(" + ", ".join("B" if d is None else str(d) for d in r["shape"]) + ")"
        xb = f"{r['x_bound']:.1f}" if r["x_bound"] == r["x_bound"] else "-"
        head.append(f"{r['step']:>4} {r['share']:>6.1%} {r['mean_us']:>9.2f} "
                    f"{r['bound_us']:>9.2f} {xb:>8} {r['limit']:<7} {_si(r['flops']):>7} "
                    f"{_si(r['bytes']):>7} {r['calls']:>6}  {r['op'][:12]:<12} "
                    f"{shape[:14]:<14} {r['node'][:48]}")
    if top is not None and len(rows) > top:
        head.append(f"... {len(rows) - top} more step{'s' * (len(rows) - top != 1)} "
                    "(profile(top=None) lists all)")
    return "\n".join(head)
