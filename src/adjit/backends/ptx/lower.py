"""Lower a planned Graph (the llvm backend's :class:`Plan`) to kernels and their launch sequence.

One kernel per scheduled step, written once against :class:`.kernel.Kernel` and built in two
flavours (GPU and CPU grid emulation):

* **map** (every op with a map rule in :mod:`adjit.backends.lowering.elements`, and output
  copies): one thread per element in a grid-stride loop; the element's value comes from the
  same rule the CPU backend uses;
* **reduce** (sum, max, min, prod: :mod:`adjit.backends.lowering.reducers`): a reduction of static length <= ``SERIAL_MAX`` runs one thread per
  output; longer ones run one block per output (each thread a strided partial, then a tree in
  shared memory), and when there are few outputs each reduction is split over several blocks
  whose partials a second kernel reduces (block level, then grid level);
* **matmul**: shared-memory tiles, see :mod:`.matmul`.  A step that is a product's epilogue
  (:mod:`adjit.backends.lowering.epilogue`) is lowered as that product, whose kernel applies
  the step's map to each element before storing it (:class:`.matmul.Product`).

A :class:`Launch` names a kernel, the buffers it gets (``("slot", k)`` of the plan's pointer
table, ``("const", node)``, or ``("work",)``, the scratch for split reductions) and functions
of the batch size giving its grid, extra integer arguments and whether it runs at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from ...ir import Node, shape_str
from ..lowering.epilogue import fused_product
from ..lowering.irkit import c64, loop
from ..lowering.loops import (accumulate, broadcast_access, contiguous, merge_dims,
                              reduce_range, size_value)
from ..lowering.plan import ONE, ZERO, Plan, Size, numel
from ..lowering.elements import element_fn, map_rule
from ..lowering.plan import dim
from ..lowering.rules import RuleTable
from ..lowering.printer import F32, F64
from ..lowering.reducers import REDUCERS
from .kernel import Kernel
from .support import UnsupportedOnTarget

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
ELEM_TYPES = {"float32": F32, "float64": F64, "bool": I8, "int32": I32, "int64": I64,
              "uint32": I32}
ITEMSIZE = {"float32": 4, "float64": 8, "bool": 1, "int32": 4, "int64": 8, "uint32": 4}

NTID = 256          # threads per block of every kernel
MAX_GRID = 4096     # blocks per launch at most (grid-stride loops cover the rest)
SERIAL_MAX = 64     # static reduction lengths up to this: one thread per output
SPLIT_BELOW = 128   # fewer outputs than this: split each reduction over several blocks
PER_THREAD = 8      # elements per thread a split aims for
MAX_SPLITS = 1024


def _always(batch: int) -> bool:
    return True


@dataclass
class Launch:
    kernel: str
    buffers: tuple                      # ("slot", k) | ("const", Node) | ("work",)
    grid: Callable[[int], int]          # blocks, from the batch size
    block: int = NTID
    ints: tuple = ()                    # extra i64 arguments, functions of the batch size
    when: Callable[[int], bool] = _always
    work_bytes: Callable[[int], int] | None = None
    what: str = ""


def blocks(n: int) -> int:
    """Blocks for ``n`` independent work items (at least 1, at most MAX_GRID)."""
    return max(1, min(-(-n // NTID), MAX_GRID))


def splits(m: int, r: int) -> int:
    """How many blocks share each of ``m`` reductions of length ``r``."""
    if m >= SPLIT_BELOW:
        return 1
    want = -(-r // (NTID * PER_THREAD))
    return max(1, min(want, MAX_SPLITS, MAX_GRID // max(m, 1)))


def unravel(b: ir.IRBuilder, i: ir.Value, counts: list[ir.Value]) -> list[ir.Value]:
    """Row-major multi-index of linear index ``i`` over dims of sizes ``counts``."""
    idx: list = [None] * len(counts)
    for k in range(len(counts) - 1, 0, -1):
        q = b.udiv(i, counts[k])
        idx[k] = b.sub(i, b.mul(q, counts[k]))
        i = q
    if counts:
        idx[0] = i
    return idx


def dot(b: ir.IRBuilder, idx: list[ir.Value], strides: list[ir.Value]) -> ir.Value:
    out = c64(0)
    for i, s in zip(idx, strides):
        out = b.add(out, b.mul(i, s))
    return out


class Lowering:
    """Builds every kernel of a plan into one module of the given flavour."""

    def __init__(self, plan: Plan, flavor: str, precision: str = "fp32"):
        self.plan, self.flavor, self.precision = plan, flavor, precision
        self.module = ir.Module(name="adjit_ptx")
        self.launches: list[Launch] = []

    def lower(self) -> tuple[str, list[Launch]]:
        for k, node in enumerate(self.plan.steps):
            prod = fused_product(self.plan, node)      # a map run by its product's kernel
            node = node if prod is None else prod
            name = f"k{k}_{node.op}"
            try:
                rule_for(node.op)(self, name, node)
            except NotImplementedError as e:
                raise UnsupportedOnTarget(f"the ptx backend cannot lower {node!r}: {e}") from None
        for k, (node, slot) in enumerate(self.plan.copies):
            self._map(f"copy{k}", node.dtype, ("slot", slot), [node], [numel(node.shape)],
                      [[ONE], [ONE]], lambda b, vals, idx, ctx: vals[0], numel(node.shape),
                      f"copy to output {shape_str(node.shape)}")
        return str(self.module), self.launches

    # -- operands ---------------------------------------------------------------------------
    def ref(self, node: Node):
        """The buffer holding ``node`` (views followed), or None for the batch size."""
        root = self.plan.root(node)
        st = self.plan.storage[root.id]
        if st.kind == "slot":
            return ("slot", st.slot)
        if st.kind == "const":
            return ("const", root)
        if st.kind == "batch":
            return None
        raise AssertionError(f"{node!r} has no buffer ({st.kind})")

    def load(self, k: Kernel, node: Node, ptr, offset) -> ir.Value:
        """One element of ``node`` (an i1 for bools); the batch size needs no pointer."""
        if ptr is None:
            return k.b.sitofp(k.batch, ELEM_TYPES[node.dtype])
        v = k.b.load(k.b.gep(ptr, [offset]))
        if node.dtype == "bool":     # any nonzero byte is True, as numpy reads it
            return k.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        return v

    def kernel(self, name: str, out_dtype: str, operands: list[Node], n_ints: int = 0,
               ntid: int = NTID):
        """A kernel taking the output pointer, one pointer per operand held in memory, and
        ``n_ints`` integers; returns (kernel, refs, operand pointers (None: batch size))."""
        refs = [self.ref(o) for o in operands]
        types = [ELEM_TYPES[out_dtype]] + [ELEM_TYPES[o.dtype] for o, r in zip(operands, refs)
                                           if r is not None]
        k = Kernel(self.module, name, types, n_ints, ntid, self.flavor)
        it = iter(k.ptrs[1:])
        ptrs = [next(it) if r is not None else None for r in refs]
        return k, [r for r in refs if r is not None], ptrs

    # -- map --------------------------------------------------------------------------------
    def _map_node(self, name: str, node: Node) -> None:
        shape, operands = node.shape, list(node.inputs)
        rule = map_rule(node.op)
        if rule.gathers:   # the rule reads its operands: full output indices, no merging
            sizes, accs = [dim(d) for d in shape], [contiguous(shape)]
        else:
            sizes, accs = merge_dims(shape, [contiguous(shape)] + accesses(node))
        out = ("slot", self.plan.storage[node.id].slot)
        self._map(name, node.dtype, out, operands, sizes, accs, element_fn(node), numel(shape),
                  f"{node.op} {shape_str(shape)}", gathers=rule.gathers)

    def _map(self, name, out_dtype, out_ref, operands, sizes, accs, elem, n: Size, what,
             gathers=False):
        k, refs, ptrs = self.kernel(name, out_dtype, operands)
        b = k.b
        total = size_value(b, n, k.batch)
        counts = [size_value(b, s, k.batch) for s in sizes]
        strides = [[size_value(b, s, k.batch) for s in a] for a in accs]
        step = b.mul(k.nctaid, c64(NTID))
        ctx = ElemCtx(self, k, operands, ptrs)
        with k.threads() as tid:
            with loop(b, b.add(b.mul(k.ctaid, c64(NTID)), tid), total, step, "i") as i:
                idx = unravel(b, i, counts)
                offs = [dot(b, idx, st) for st in strides]
                vals = [] if gathers else [self.load(k, o, p, off) for o, p, off
                                           in zip(operands, ptrs, offs[1:])]
                res = elem(b, vals, idx, ctx)
                if out_dtype == "bool":
                    res = b.zext(res, I8)
                b.store(res, b.gep(k.ptrs[0], [offs[0]]))
        k.finish()
        self.launches.append(Launch(name, (out_ref, *refs), grid=lambda B: blocks(n.eval(B)),
                                    when=lambda B: n.eval(B) > 0, what=what))

    # -- reductions -------------------------------------------------------------------------
    def _reduce(self, name: str, node: Node) -> None:
        x, axes = node.inputs[0], node.attr("axes")
        T = ELEM_TYPES[node.dtype]
        it = iter(contiguous(node.shape))
        out_acc = [ZERO if d in axes else next(it) for d in range(x.ndim)]
        sizes, (oacc, xacc) = merge_dims(x.shape, [out_acc, contiguous(x.shape)])
        kept = [d for d in range(len(sizes)) if oacc[d] != ZERO]
        red = [d for d in range(len(sizes)) if oacc[d] == ZERO]
        m_size, r_size = numel(node.shape), ONE
        for d in red:
            r_size = r_size * sizes[d]
        reducer = REDUCERS[node.op]
        init = ir.Constant(T, reducer.init)

        def combine(b, acc, v):
            return reducer.combine(self.module, b, acc, v, False)

        def x_offset(k, o, r):
            b = k.b
            cnt = lambda ds: [size_value(b, sizes[d], k.batch) for d in ds]
            st = lambda ds: [size_value(b, xacc[d], k.batch) for d in ds]
            return b.add(dot(b, unravel(b, o, cnt(kept)), st(kept)),
                         dot(b, unravel(b, r, cnt(red)), st(red)))

        out = ("slot", self.plan.storage[node.id].slot)
        what = f"{node.op} {shape_str(x.shape)} -> {shape_str(node.shape)}"
        if r_size.power == 0 and r_size.static <= SERIAL_MAX:
            self._serial_reduce(name, node, x, out, m_size, r_size, init, combine, x_offset, what)
            return
        k, refs, (xp,) = self.kernel(name, node.dtype, [x], n_ints=1)
        self._block_reduce(k, xp, x, m_size, lambda k: size_value(k.b, r_size, k.batch),
                           k.ints[0], init, combine, x_offset)
        work = ("work",)
        # second level: the partials, [M, S] row-major, reduced along S into the output
        final, _, (wp,) = self.kernel(f"{name}_final", node.dtype, [node], n_ints=1)
        self._block_reduce(final, wp, node, m_size, lambda k: k.ints[0], c64(1), init,
                           combine, lambda k, o, r: k.b.add(k.b.mul(o, k.ints[0]), r))
        M = m_size.eval
        S = lambda B: splits(M(B), r_size.eval(B))
        one = lambda B: 1
        self.launches += [
            Launch(name, (out, *refs), grid=lambda B: max(1, min(M(B), MAX_GRID)), ints=(one,),
                   when=lambda B: M(B) > 0 and S(B) == 1, what=what),
            Launch(name, (work, *refs), grid=lambda B: max(1, min(M(B) * S(B), MAX_GRID)),
                   ints=(S,), when=lambda B: M(B) > 0 and S(B) > 1,
                   work_bytes=lambda B: M(B) * S(B) * ITEMSIZE[node.dtype],
                   what=what + " (partials)"),
            Launch(f"{name}_final", (out, work), grid=lambda B: max(1, min(M(B), MAX_GRID)),
                   ints=(S,), when=lambda B: M(B) > 0 and S(B) > 1, what=what + " (final)"),
        ]

    def _serial_reduce(self, name, node, x, out, m_size, r_size, init, combine, x_offset, what):
        k, refs, (xp,) = self.kernel(name, node.dtype, [x])
        b = k.b
        M, R = size_value(b, m_size, k.batch), c64(r_size.static)
        with k.threads() as tid:
            with loop(b, b.add(b.mul(k.ctaid, c64(NTID)), tid), M, b.mul(k.nctaid, c64(NTID)),
                      "o") as o:
                acc = reduce_range(b, R, init, lambda r, acc: combine(
                    b, acc, self.load(k, x, xp, x_offset(k, o, r))))
                b.store(acc, b.gep(k.ptrs[0], [o]))
        k.finish()
        self.launches.append(Launch(name, (out, *refs), grid=lambda B: blocks(m_size.eval(B)),
                                    when=lambda B: m_size.eval(B) > 0, what=what))

    def _block_reduce(self, k: Kernel, xp, x: Node, m_size: Size, r_of, s, init, combine,
                      x_offset) -> None:
        """Task t = (output o, split s) of M*S: its block reduces x[o, s-th chunk of R] into
        dst[t] (dst = ptrs[0]): strided per-thread partials, then a tree in shared memory."""
        b = k.b
        M, R = size_value(b, m_size, k.batch), r_of(k)
        chunk = b.udiv(b.add(R, b.sub(s, c64(1))), s)
        sh = k.shared(init.type, k.ntid)
        with k.uniform_loop(k.ctaid, b.mul(M, s), k.nctaid, "task") as t:
            o = b.udiv(t, s)
            lo = b.mul(b.sub(t, b.mul(o, s)), chunk)
            end = b.add(lo, chunk)
            hi = b.select(b.icmp_unsigned("<", end, R), end, R)
            with k.threads() as tid:
                (acc,) = accumulate(b, b.add(lo, tid), hi, c64(k.ntid), [init], lambda r, a: [
                    combine(b, a[0], self.load(k, x, xp, x_offset(k, o, r)))])
                b.store(acc, b.gep(sh, [tid]))
            k.barrier()
            w = k.ntid // 2
            while w >= 1:
                with k.threads() as tid:
                    with b.if_then(b.icmp_unsigned("<", tid, c64(w))):
                        p = b.gep(sh, [tid])
                        b.store(combine(b, b.load(p), b.load(b.gep(sh, [b.add(tid, c64(w))]))), p)
                k.barrier()
                w //= 2
            with k.threads() as tid:
                with b.if_then(b.icmp_unsigned("==", tid, c64(0))):
                    b.store(b.load(sh), b.gep(k.ptrs[0], [t]))
            k.barrier()
        k.finish()


def accesses(node: Node) -> list[list[Size]]:
    """How a (non-gathering) map node reads each operand: strides per output dim."""
    rule = map_rule(node.op)
    return (rule.access(node) if rule.access is not None
            else [broadcast_access(o.shape, node.shape) for o in node.inputs])


class ElemCtx:
    """What a map rule may use inside a kernel (see :mod:`..lowering.elements`)."""

    def __init__(self, lowering, k, operands, ptrs):
        self._lw, self._k, self._operands, self._ptrs = lowering, k, operands, ptrs
        self.b, self.batch = k.b, k.batch

    def size(self, s) -> ir.Value:
        return size_value(self.b, s, self.batch)

    def load(self, j: int, offset) -> ir.Value:
        return self._lw.load(self._k, self._operands[j], self._ptrs[j], offset)


# --- the rule table: every registered op has a kernel, needs none, or is refused -----------
def _matmul(lw: Lowering, name: str, node: Node, summed: bool = False) -> None:
    if lw.precision != "fp32" and node.dtype == "float32":   # tensor cores, on request
        from .matmul_mma import lower_matmul_mma
        return lower_matmul_mma(lw, name, node, lw.precision, summed)
    from .matmul import lower_matmul
    lower_matmul(lw, name, node, summed=summed)


def _scatter(lw: Lowering, name: str, node: Node) -> None:
    from .scatter import lower_scatter
    lower_scatter(lw, name, node)


def _matmul_sum(lw: Lowering, name: str, node: Node) -> None:
    _matmul(lw, name, node, summed=True)


KERNELS = {"matmul": _matmul, "matmul_sum": _matmul_sum, **{op: Lowering._reduce for op in REDUCERS},
           "scatter_add": _scatter}
RULES = RuleTable("ptx", KERNELS, Lowering._map_node)
rule_for, coverage = RULES.rule_for, RULES.coverage
