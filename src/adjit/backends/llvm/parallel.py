"""Both cores for big elementwise steps: the outer loop cut into chunks for the pool.

A map kernel is emitted as a *part* ``void part(T* out, T* in..., i64 batch, i64 lo,
i64 hi)`` computing rows ``lo..hi`` of its outermost (merged) loop.  :func:`emit_step`
wraps it in the step kernel ``void step(T* out, T* in..., i64 batch)``: below the work
threshold it calls the part once over all rows; above it, the rows are cut into CHUNKS
pieces taken from a shared counter by the caller and the pool's worker (see
:mod:`.pool`; a job the worker has not taken is withdrawn, so a busy machine costs at
most one chunk's wait).  Work is estimated at run time as elements x per-element cost
(1 + 4 per transcendental function), so small batches never pay for a hand-over.
"""
from __future__ import annotations

from llvmlite import ir

from . import pool
from .irkit import c32, c64, imin
from .loops import size_value
from .plan import Size

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
CHUNKS = 8
THRESHOLD = 1 << 17      # element-cost units, ~100 us of memory-bound elementwise work


def emit_step(module: ir.Module, b: ir.IRBuilder, step: ir.Function, part: ir.Function,
              outer: Size, elems: Size, cost: int) -> None:
    """Fill ``step``'s body (``b`` at its entry): call ``part`` over all rows, or split."""
    # one copy of the loop nest: the part is called, never inlined (twice) into the step
    part.attributes.add("noinline")
    ptrs, batch = list(step.args[:-1]), step.args[-1]
    rows = size_value(b, outer, batch)
    if not pool.available():
        b.call(part, ptrs + [batch, c64(0), rows])
        b.ret_void()
        return
    work = b.mul(size_value(b, elems, batch), c64(cost))
    small = b.or_(b.icmp_signed("<", work, c64(THRESHOLD)), b.icmp_signed("<", rows, c64(2)))
    with b.if_then(small):
        b.call(part, ptrs + [batch, c64(0), rows])
        b.ret_void()
    job_t = ir.LiteralStructType([I8P] * len(ptrs) + [I64] * 4)   # batch, rows, chunk, next
    runner = _emit_runner(module, part, job_t, len(ptrs))
    job = b.alloca(job_t, name="job")
    chunk = b.sdiv(b.add(rows, c64(CHUNKS - 1)), c64(CHUNKS))
    fields = [b.bitcast(p, I8P) for p in ptrs] + [batch, rows, chunk, c64(0)]
    for i, v in enumerate(fields):
        b.store(v, b.gep(job, [c32(0), c32(i)]))
    pool.ensure_pool()
    offload, wait = pool.declare_pool(module)
    job8 = b.bitcast(job, I8P)
    started = b.call(offload, [runner, job8])
    b.call(runner, [job8])
    with b.if_then(started):
        b.call(wait, [])
    b.ret_void()


def _emit_runner(module, part, job_t, n_ptrs) -> ir.Function:
    """``void run(i8* job)``: take chunks of rows until none are left."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P]), name=f"{part.name}.run")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    job = b.bitcast(fn.args[0], job_t.as_pointer())
    field = lambda i: b.gep(job, [c32(0), c32(i)])   # noqa: E731
    ptrs = [b.bitcast(b.load(field(i)), a.type) for i, a in enumerate(part.args[:n_ptrs])]
    batch, rows, chunk = (b.load(field(n_ptrs + i)) for i in range(3))
    head, body, done = (fn.append_basic_block(n) for n in ("take", "run", "done"))
    b.branch(head)
    b.position_at_end(head)
    lo = b.mul(b.atomic_rmw("add", field(n_ptrs + 3), c64(1), "monotonic"), chunk)
    b.cbranch(b.icmp_signed("<", lo, rows), body, done)
    b.position_at_end(body)
    b.call(part, ptrs + [batch, lo, imin(b, b.add(lo, chunk), rows)])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn
