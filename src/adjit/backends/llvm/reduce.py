"""The llvm kernel of the reductions (sum, max, min, prod: ``lowering/reducers.REDUCERS``).

One nest over the operand, the output accumulated in place; when the last axis is reduced
the kept axes go outermost and output rows are split over the pool's threads (each output
element summed by one thread in the same order: deterministic).  An elementwise operand
the plan made ``inline`` (``lowering/plan.inline_reduced``) is computed per element as it
is read, so it is never stored.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.elements import element_cost
from ..lowering.loops import (add, broadcast_access, c64, contiguous, emit_nest, for_range,
                              merge_dims, mul, reduce_range, size_value)
from ..lowering.plan import ONE, ZERO, inlined_operand, numel
from ..lowering.reducers import REDUCERS
from .codegen import _ElemCtx, _ty
from .parallel import emit_step

I64 = ir.IntType(64)


def lower_reduce(lw, node: Node):
    """A reduction; an elementwise operand the plan made ``inline`` is computed per
    element as it is read (its operands read under broadcasting)."""
    x = node.inputs[0]
    src = inlined_operand(lw.plan, node)
    operands = list(src.inputs) if src is not None else [x]
    axes = node.attr("axes")
    reducer = REDUCERS[node.op]
    T = _ty(node.dtype)
    out_strides = contiguous(node.shape)
    it = iter(out_strides)
    out_acc = [ZERO if k in axes else next(it) for k in range(x.ndim)]
    reads = ([broadcast_access(o.shape, x.shape) for o in operands] if src is not None
             else [contiguous(x.shape)])
    # The last axis reduced: the kept axes go outermost (the innermost loop still reads
    # contiguous elements), so the outer loop runs over output rows, split over threads
    # (each output element summed by one thread in the same order: no races, no change)
    perm = list(range(x.ndim))
    if x.ndim and x.ndim - 1 in axes:
        perm = [k for k in perm if k not in axes] + [k for k in perm if k in axes]
    sizes, (oacc, *xaccs) = merge_dims(tuple(x.shape[k] for k in perm),
                                       [[a[k] for k in perm] for a in [out_acc] + reads])
    split = bool(sizes) and oacc[0] != ZERO
    part, b = lw._new_kernel(node, operands, extra=(I64,), suffix=".part")
    out, ins, batch, rows = part.args[0], part.args[1:-2], part.args[-2], part.args[-1]
    init = ir.Constant(T, reducer.init)
    if src is not None:
        elem, ctx = lw._scalar_fn(src), _ElemCtx(b, batch, operands, ins)
        value = lambda offs: elem(b, [ctx.load(k, o) for k, o in enumerate(offs)],  # noqa
                                  [], ctx)
    else:
        value = lambda offs: b.load(b.gep(ins[0], [offs[0]]))   # noqa: E731
    # an inlined operand is rounded before it is added, as if stored: reorder the sum but do
    # not contract its last product into the add (an FMA would round once less)
    flags = ("reassoc",) if src is not None else True
    # Reduced dims all innermost (merged into the last): each output element is one
    # register reduction, started at ``init``; otherwise the output is set first.
    reduced_inner = bool(sizes) and oacc[-1] == ZERO
    once = reduced_inner and all(a != ZERO for a in oacc[:-1])
    if not once:
        count = (b.mul(rows, size_value(b, oacc[0], batch)) if split
                 else size_value(b, numel(node.shape), batch))
        with for_range(b, count, "init") as i:
            b.store(init, b.gep(out, [i]))

    def combine(b, acc, v):
        return reducer.combine(lw.module, b, acc, v, flags)

    def body(offsets, indices):
        p = b.gep(out, [offsets[0]])
        b.store(combine(b, b.load(p), value(offsets[1:])), p)

    def inner(offsets, n, strides, indices):
        # innermost dim reduced: keep the accumulator in a register (a vectorizable
        # reduction thanks to the reassoc flag)
        p = b.gep(out, [offsets[0]])
        acc = reduce_range(b, n, init if once else b.load(p), lambda i, acc: combine(
            b, acc, value([add(b, o, mul(b, i, s))
                           for o, s in zip(offsets[1:], strides[1:])])))
        b.store(acc, p)

    emit_nest(b, sizes, [oacc] + xaccs, batch, body,
              inner=inner if reduced_inner else None, outer=(c64(0), rows))
    b.ret_void()
    fn, b = lw._new_kernel(node, operands)
    emit_step(lw.module, b, fn, part, sizes[0] if sizes else ONE, numel(x.shape),
              element_cost(src) if src is not None else 1,
              [a[0] for a in [oacc] + xaccs] if sizes else [ZERO] * (1 + len(operands)),
              split=split)
    return fn, operands
