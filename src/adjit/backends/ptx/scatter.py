"""The ptx kernels of ``scatter_add``: a map kernel zeroes the output, then one thread per
element of the values adds it at its wrapped index with ``atomicrmw fadd`` (NVPTX sm_60+
for float64; the CPU grid emulation runs it as an atomic add too).  Repeated indices add
up in any order (float sums may differ from the interpreter's by rounding)."""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node, shape_str
from ..lowering.gathers import scatter_sizes, wrap_index
from ..lowering.irkit import c64, loop
from ..lowering.loops import size_value
from ..lowering.plan import ONE, numel


def lower_scatter(lw, name: str, node: Node) -> None:
    from .lower import NTID, Launch, blocks
    g, idx = node.inputs
    along = node.attr("along")
    out = ("slot", lw.plan.storage[node.id].slot)
    n_out = numel(node.shape)
    what = f"scatter_add {shape_str(g.shape)} -> {shape_str(node.shape)}"
    zero = lambda b, vals, i, ctx: ir.Constant(
        ir.FloatType() if node.dtype == "float32" else ir.DoubleType(), 0.0)
    lw._map(f"{name}_zero", node.dtype, out, [], [n_out], [[ONE]], zero, n_out,
            what + " (zero)")
    k, refs, (gp, ip) = lw.kernel(name, node.dtype, [g, idx])
    b = k.b
    sizes = scatter_sizes(node)
    P, I, Q, N = (size_value(b, s, k.batch) for s in sizes)
    total = size_value(b, numel(g.shape), k.batch)
    with k.threads() as tid:
        with loop(b, b.add(b.mul(k.ctaid, c64(NTID)), tid), total, b.mul(k.nctaid, c64(NTID)),
                  "t") as t:
            r = b.udiv(t, Q)
            q = b.sub(t, b.mul(r, Q))
            p = b.udiv(r, I)
            i = b.sub(r, b.mul(p, I))
            j = wrap_index(b, b.load(b.gep(ip, [t if along else i])), N)
            at = b.gep(k.ptrs[0], [b.add(b.mul(b.add(b.mul(p, N), j), Q), q)])
            b.atomic_rmw("fadd", at, b.load(b.gep(gp, [t])), "monotonic")
    k.finish()
    nvals, axis = numel(g.shape), sizes[3]
    lw.launches.append(Launch(name, (out, *refs), grid=lambda B: blocks(nvals.eval(B)),
                              when=lambda B: nvals.eval(B) > 0 and axis.eval(B) > 0,
                              what=what))
