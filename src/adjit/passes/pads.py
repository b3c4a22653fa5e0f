"""Sums of zero pads that tile one axis become one concatenate.

The gradient of ``x[:, t]`` for every step t of an unrolled loop (an RNN reading its
inputs one step at a time) is a sum of T zero pads, each placing one step's gradient in
its own slab of the time axis.  Computed as written, every output element adds T pads
(O(T²) work, and each pad a select over a load); the same values are one concatenate of
the slabs (each element written once).  Rule: ``pad(a) + pad(b)`` where both pads fill
with 0, step 1, agree on every axis but one, and place their operands side by side on
that (static) axis -> ``pad(concatenate([a, b]))`` (or the concatenate alone when it
fills the output); nested concatenates along that axis are flattened.  Exact: the sum
adds only zeros to each element (up to the sign of a zero: -0 + 0 is +0).
"""
from __future__ import annotations

from ..ir import Node
from ..ops.registry import make


def _parts(x: Node, axis: int) -> list[Node]:
    if x.op == "concatenate" and x.attr("axis") == axis:
        return list(x.inputs)
    return [x]


def join_pads(node: Node, ins: list[Node]):
    """The rule (see the module docstring); None when it does not apply."""
    if node.op != "add" or len(ins) != 2:
        return None
    a, b = ins
    if not (a.op == b.op == "pad") or a.type != node.type or b.type != node.type:
        return None
    if any(p.attr("value") != 0 or any(s != 1 for s in p.attr("step")) for p in (a, b)):
        return None
    xa, xb = a.inputs[0], b.inputs[0]
    sa, sb = a.attr("start"), b.attr("start")
    diff = [k for k in range(node.ndim) if sa[k] != sb[k] or xa.shape[k] != xb.shape[k]]
    if len(diff) != 1:
        return None
    ax = diff[0]
    if node.shape[ax] is None or xa.shape[ax] is None or sa[ax] < 0 or sb[ax] < 0:
        return None
    if sb[ax] < sa[ax]:
        a, b, xa, xb, sa, sb = b, a, xb, xa, sb, sa
    if sa[ax] + xa.shape[ax] != sb[ax]:      # not side by side
        return None
    cat = make("concatenate", _parts(xa, ax) + _parts(xb, ax), {"axis": ax})
    if cat.shape == node.shape and all(s == 0 for s in sa):
        return cat, "pad+pad=concatenate"
    attrs = dict(a.attrs)
    return make("pad", (cat,), attrs), "pad+pad=pad(concatenate)"
