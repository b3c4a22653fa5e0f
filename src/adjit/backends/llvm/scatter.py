"""The llvm kernel of ``scatter_add`` (the gradient of take and take_along_axis): zero the
output, then add each element of the values at its wrapped index.  Cost: the output's
size to zero, then O(size of the values) -- an embedding's backward never touches the
rows no id selects beyond zeroing them.  Repeated indices add into the same row in the
order of the values, as numpy's add.at.  With ``along`` (indices shaped like the values:
max pooling's gradient) the rows ``p`` before the axis are independent and split over the
pool's threads (:func:`.parallel.emit_step`); a take's scatter stays on one thread (two
ids may select the same row).
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.gathers import scatter_sizes, wrap_index
from ..lowering.loops import for_range, size_value
from ..lowering.plan import numel
from ..lowering.irkit import c64
from .parallel import emit_step

I64 = ir.IntType(64)


def lower_scatter(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a scatter_add step."""
    g, idx = node.inputs
    along = node.attr("along")
    sizes = scatter_sizes(node)
    fn, b = lw._new_kernel(node, [g, idx], extra=(I64,) if along else (),
                           suffix=".part" if along else "")
    out, gp, ip, batch = fn.args[:4]
    T = out.type.pointee
    P, I, Q, N = (size_value(b, s, batch) for s in sizes)
    if along:
        P = fn.args[4]                  # this part's rows
    with for_range(b, b.mul(P, b.mul(N, Q)) if along
                   else size_value(b, numel(node.shape), batch), "zero") as i:
        b.store(ir.Constant(T, 0.0), b.gep(out, [i]))
    # nothing to add into an empty axis (then the values are empty too, or the axis is
    # the batch axis at batch size 0)
    P = b.select(b.icmp_signed(">", N, c64(0)), P, c64(0))

    def add(j, p, t, q):
        at = b.gep(out, [b.add(b.mul(b.add(b.mul(p, N), j), Q), q)])
        b.store(b.fadd(b.load(at), b.load(b.gep(gp, [t]))), at)

    with for_range(b, P, "p") as p:
        with for_range(b, I, "i") as i:
            row = b.mul(b.add(b.mul(p, I), i), Q)
            if not along:
                j = wrap_index(b, b.load(b.gep(ip, [i])), N)
            with for_range(b, Q, "q") as q:
                t = b.add(row, q)
                add(wrap_index(b, b.load(b.gep(ip, [t])), N) if along else j, p, t, q)
    b.ret_void()
    if not along:
        return fn, [g, idx]
    part = fn
    fn, b = lw._new_kernel(node, [g, idx])
    Ps, Is, Qs, Ns = sizes
    emit_step(lw.module, b, fn, part, Ps, numel(node.shape), 1,
              [Ns * Qs, Is * Qs, Is * Qs])
    return fn, [g, idx]
