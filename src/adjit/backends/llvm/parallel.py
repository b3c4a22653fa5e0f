"""All the cores for big elementwise steps: the outer loop cut into chunks for the pool.

A map kernel is emitted as a *part* ``void part(T* out, T* in..., i64 batch, i64 n)``
computing the first ``n`` rows of its outermost (merged) loop from the pointers it is
given.  :func:`emit_step` wraps it in the step kernel ``void step(T* out, T* in..., i64
batch)``: below the work threshold it calls the part once over all rows; above it, the
rows are cut into pieces taken from a shared counter by the caller and the pool's
workers (see :mod:`.pool`; a job is closed when the caller is done, so a busy machine
costs at most one chunk's wait).  Work is estimated at run time as elements x
per-element cost (1 + 4 per transcendental function), so small batches never pay for a
hand-over; a kernel whose sizes are all static and below the threshold gets no split code.
"""
from __future__ import annotations

from llvmlite import ir

from . import pool
from ..lowering.irkit import c32, c64, imax, imin
from ..lowering.loops import mul, size_value
from ..lowering.plan import Size

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
CHUNKS = 8          # pieces of a split step, at least ...
PER_THREAD = 4      # ... and this many per thread (a late thread costs one piece)
THRESHOLD = 1 << 17      # element-cost units, ~100 us of memory-bound elementwise work


RUNNER, SPLIT = "run_chunks", "run_split"   # shared helpers, one internal copy per module
BODY = ir.FunctionType(ir.VoidType(), [I8P, I64, I64])      # body(job, lo, hi)
# A job: the kernel's body, rows, rows per chunk, next chunk, batch, the kernel's pointers.
JOB = ir.LiteralStructType([BODY.as_pointer(), I64, I64, I64, I64, I8P.as_pointer()])


def emit_step(module: ir.Module, b: ir.IRBuilder, step: ir.Function, part: ir.Function,
              outer: Size, elems: Size, cost: int, strides: list[Size],
              split: bool = True, first: bool = False) -> None:
    """Fill ``step``'s body (``b`` at its entry): call ``part`` over all rows, or split.

    ``part(ptrs..., batch, n)`` computes the first n rows of its outermost loop from the
    pointers it is given; ``strides`` are each pointer's elements per row, so rows lo..hi
    are ``part(ptr + lo * stride..., batch, hi - lo)``.  Every part's loop thus starts at
    0, which LLVM optimizes measurably faster than a loop from lo to hi.

    ``first``: the part takes one more argument, the index of its first row
    (``part(ptrs..., batch, n, lo)``), for a part that computes its operands' offsets from
    the full output index (a gathering map rule: its operands' strides are then 0).

    Compile time: a loop costs LLVM ~5-10 ms to optimize and compile, straight-line code
    far less, so everything but the kernel's own pointers lives in two helpers written
    once per module (:func:`_split`, :func:`_runner`); a kernel adds an array of its
    pointers and a loop-free ``body(job, lo, hi)`` that calls its part.
    """
    # one copy of the loop nest: the part is called, never inlined (twice) into the step
    part.attributes.add("noinline")
    ptrs, batch = list(step.args[:-1]), step.args[-1]
    rows = size_value(b, outer, batch)
    never = not split or outer.power == 0 and (
        outer.static < 2 or elems.power == 0 and elems.static * cost < THRESHOLD)
    start = [c64(0)] if first else []
    if never or not pool.available():     # static sizes below the threshold: no split code
        b.call(part, ptrs + [batch, rows] + start)
        b.ret_void()
        return
    table = b.alloca(ir.ArrayType(I8P, len(ptrs)), name="ptrs")
    work = b.mul(size_value(b, elems, batch), c64(cost))
    small = b.or_(b.icmp_signed("<", work, c64(THRESHOLD)), b.icmp_signed("<", rows, c64(2)))
    with b.if_then(small):
        b.call(part, ptrs + [batch, rows] + start)
        b.ret_void()
    for i, p in enumerate(ptrs):
        b.store(b.bitcast(p, I8P), b.gep(table, [c32(0), c32(i)]))
    b.call(_split(module), [_emit_body(module, part, strides, first), rows, batch,
                            b.gep(table, [c32(0), c32(0)])])
    b.ret_void()


def _emit_body(module, part, strides, first=False) -> ir.Function:
    """``void body(i8* job, i64 lo, i64 hi)``: the part over rows lo..hi of the job (told
    ``lo`` when ``first``)."""
    fn = ir.Function(module, BODY, name=f"{part.name}.body")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    job = b.bitcast(fn.args[0], JOB.as_pointer())
    table = b.load(b.gep(job, [c32(0), c32(5)]))
    batch = b.load(b.gep(job, [c32(0), c32(4)]))
    lo, hi = fn.args[1], fn.args[2]
    ptrs = []
    for i, (a, stride) in enumerate(zip(part.args, strides)):
        p = b.bitcast(b.load(b.gep(table, [c64(i)])), a.type)
        if stride.static:
            p = b.gep(p, [mul(b, lo, size_value(b, stride, batch))])
        ptrs.append(p)
    b.call(part, ptrs + [batch, b.sub(hi, lo)] + ([lo] if first else []))
    b.ret_void()
    return fn


_SIGNATURES = {SPLIT: [BODY.as_pointer(), I64, I64, I8P.as_pointer()], RUNNER: [I8P, I64, I8P]}


def _split(module) -> ir.Function:
    """The declaration of ``run_split`` in a kernel's module: its definition is made once
    per lowering (:func:`emit_support`) and joined to every module text that calls it."""
    if SPLIT not in module.globals:
        ir.Function(module, ir.FunctionType(ir.VoidType(), _SIGNATURES[SPLIT]), name=SPLIT)
    return module.globals[SPLIT]


def uses_support(module: ir.Module) -> bool:
    """Whether a module calls the helpers :func:`emit_support` defines."""
    return SPLIT in module.globals


def emit_support(module: ir.Module) -> None:
    """Define ``run_split`` and ``run_chunks`` (internal) in ``module``."""
    _define_split(module)


def _helper(module, name):
    """(function, builder at its entry) for a new shared helper, or (function, None)."""
    fn = module.globals.get(name)
    if fn is not None and not fn.is_declaration:
        return fn, None
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _SIGNATURES[name]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")     # else every step gets its own copy
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _define_split(module) -> ir.Function:
    """``void run_split(body, i64 rows, i64 batch, i8** ptrs)``: the rows in pieces (at
    least CHUNKS, PER_THREAD per thread), taken by this thread and the pool's workers."""
    fn, b = _helper(module, SPLIT)
    if b is None:
        return fn
    body, rows, batch, table = fn.args
    job = b.alloca(JOB, name="job")
    threads = b.call(pool.declare_threads(module), [])
    parts = imax(b, c64(CHUNKS), b.mul(threads, c64(PER_THREAD)))
    chunk = b.sdiv(b.add(rows, b.sub(parts, c64(1))), parts)
    for i, v in enumerate([body, rows, chunk, c64(0), batch, table]):
        b.store(v, b.gep(job, [c32(0), c32(i)]))
    runner, job8 = _runner(module), b.bitcast(job, I8P)
    none = ir.Constant(I8P, None)
    pool.share(module, b, runner, job8, lambda: b.call(runner, [job8, c64(0), none]))
    b.ret_void()
    return fn


def _runner(module) -> ir.Function:
    """``void run_chunks(i8* job, i64 slot, i8* work)``: take chunks of rows until none
    are left (a pool job: slot and workspace unused)."""
    fn, b = _helper(module, RUNNER)
    if b is None:
        return fn
    job = b.bitcast(fn.args[0], JOB.as_pointer())
    field = lambda i: b.gep(job, [c32(0), c32(i)])   # noqa: E731
    body, rows, chunk = (b.load(field(i)) for i in range(3))
    n_chunks = b.sdiv(b.add(rows, b.sub(chunk, c64(1))), chunk)
    c, head, done = pool.take_each(b, field(3), n_chunks, "chunk")
    lo = b.mul(c, chunk)
    b.call(body, [fn.args[0], lo, imin(b, b.add(lo, chunk), rows)])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn
