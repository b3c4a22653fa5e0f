"""The llvm kernel of ``concatenate``: one block copy per operand.

The map rule (:mod:`..lowering.moves`) picks, for every output element, its operand
through a chain of branches: fine for a few operands, but a concatenate of the T steps
of an unrolled loop (the gradient of an RNN's inputs, see :mod:`adjit.passes.pads`) has
dozens.  Here each operand ``x_k`` is copied into its slab instead: viewed as
``[P, n_k·Q]`` rows (``P`` the dims before the axis, ``Q`` the dims after), row ``p``
goes to the output at ``p·N·Q + off_k·Q``, a contiguous inner loop the vectorizer
turns into vector moves.  Single-threaded (it moves memory; the rows are short).
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node
from ..lowering.loops import add, for_range, mul, size_value
from ..lowering.plan import numel


def lower_concatenate(lw, node: Node):
    """``Lowering -> (fn, operands)`` for a concatenate step."""
    axis, ins = node.attr("axis"), list(node.inputs)
    fn, b = lw._new_kernel(node, ins)
    out, ptrs, batch = fn.args[0], fn.args[1:-1], fn.args[-1]
    sv = lambda s: size_value(b, s, batch)      # noqa: E731
    P = sv(numel(node.shape[:axis]))
    row_out = sv(numel(node.shape[axis:]))
    off = 0
    for x, px in zip(ins, ptrs):
        n = x.shape[axis]
        if n:
            width = sv(numel(x.shape[axis:]))
            base = sv(numel((off,) + node.shape[axis + 1:]))
            with for_range(b, P, "p") as p:
                src = mul(b, p, width)
                dst = add(b, mul(b, p, row_out), base)
                with for_range(b, width, "q") as q:
                    v = b.load(b.gep(px, [add(b, src, q)]))
                    if node.dtype == "bool":    # any nonzero byte reads as True (numpy)
                        v = b.zext(b.icmp_unsigned("!=", v, ir.Constant(v.type, 0)), v.type)
                    b.store(v, b.gep(out, [add(b, dst, q)]))
        off += n
    b.ret_void()
    return fn, ins
