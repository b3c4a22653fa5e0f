"""A pool of N worker threads for native kernels; its native code is :mod:`.pool_ir`.

Starting a pthread per call costs 25-90 us, which kept products below ~500 us of work on
one core.  Instead worker threads are started on first use (as many as the caller's
thread-count allows, :func:`set_num_threads`) and then wait for jobs: each spins for a
short while after a job (so back-to-back kernels hand work over in about a microsecond)
and then sleeps on a futex.  Functions exported to the generated kernels::

    i1   adjit_pool_offload(void (*job)(i8* arg, i64 slot, i8* work), i8* arg, i64 most)
    void adjit_pool_wait()          ; after a 1: close the job, wait for workers inside it
    i64  adjit_pool_threads()       ; participants a job may have now (caller included)

A posted job is joined by every idle worker whose slot (1, 2, ...) is below ``most`` (the
participants the kernel has scratch for) and below the thread count; each calls
``job(arg, slot, work)`` with its own 64-byte aligned GEMM workspace.  The caller is slot
0 and runs its part with its own workspace.  Jobs are written as "take chunks from a
shared counter until none are left" (:func:`take_each`), which the caller runs too, so
a worker that joins late, is descheduled, or never starts costs at most the chunk it
holds.  ``offload`` returns 0 (the caller runs the job alone) when the pool is busy with
another caller's job (several Python threads calling at once), when the thread count is
1, or when no worker could be started.

The thread count is ``ADJIT_NUM_THREADS``, else the CPUs the process may use (affinity
mask, cgroup quota: :func:`..lowering.target.description.available_cores`), read when the
pool is built; :func:`set_num_threads` changes it at run time.  Worker ``s`` is pinned to
the ``s``-th allowed CPU other than the builder's (Linux otherwise often put a new thread
on the caller's CPU, so the parts ran one after the other); workers beyond the allowed
CPUs, and all of them with ``ADJIT_POOL_PIN=0``, are left to the scheduler.  A forked
child resets the pool, so it starts its own workers instead of waiting on ones that do
not exist there.  The pool is compiled once per process (:func:`ensure_pool`) into its
own module that is never freed -- the workers keep running its code -- and kernel
modules only declare its functions (bound by name at JIT time, like the GEMM library).
"""
from __future__ import annotations

import ctypes
import os
import platform

import llvmlite.ir as ir

from . import pool_ir
from .pool_ir import JOB_FN, OFFLOAD, PIN_TO, SET_THREADS, SIGNATURES, THREADS, WAIT
from ..lowering.irkit import c64, declare
from ..lowering.target.forksafe import Lock

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
JOB = JOB_FN.as_pointer()
PIN = os.environ.get("ADJIT_POOL_PIN", "1") != "0"
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
X86 = platform.machine() == "x86_64"


def have_libc(*names) -> bool:
    """True if the running process exports all these C symbols (MCJIT aborts otherwise)."""
    try:
        proc = ctypes.CDLL(None)
    except OSError:
        return False
    return all(hasattr(proc, n) for n in names)


def available() -> bool:
    return (SYS_FUTEX is not None
            and have_libc("pthread_create", "pthread_detach", "syscall", "sched_yield",
                          "posix_memalign")
            and _atfork() is not None)


def _atfork() -> str | None:
    """glibc exports ``__register_atfork`` (``pthread_atfork`` is a static wrapper of it)."""
    for name in ("pthread_atfork", "__register_atfork"):
        if have_libc(name):
            return name
    return None


_lock = Lock()     # fresh in a forked child (with the native pool reset, see pool_ir)
_pool = None
_calls: dict = {}


def workspace_bytes() -> int:
    """Bytes of each worker's GEMM workspace (the same as a caller's, runtime.py): the
    bound that holds for every target CPU's GEMM (gemm.MAX_WORKSPACE_BYTES)."""
    from .gemm import MAX_WORKSPACE_BYTES
    return MAX_WORKSPACE_BYTES


def ensure_pool():
    """Compile the pool once per process (or load it from the disk cache), bind its
    symbols, set the thread count and the workers' CPUs."""
    global _pool
    from .fncache import compile_once
    from ..lowering.target import add_symbol
    from ..lowering.target.description import num_threads
    with _lock:
        if _pool is None:
            size, atfork = workspace_bytes(), _atfork()

            def make_ir() -> str:
                module = ir.Module(name="adjit_pool")
                pool_ir.emit_pool(module, workspace_bytes=size, sys_futex=SYS_FUTEX,
                                  atfork=atfork, x86=X86, limit=1)
                return str(module)
            jit = compile_once(f"adjit_pool3_ws{size}_{atfork}", make_ir, opt_level=2)
            for name in SIGNATURES:
                add_symbol(name, jit.address(name))
            for name, (res, args) in {THREADS: (ctypes.c_int64, []),
                                      SET_THREADS: (None, [ctypes.c_int32]),
                                      PIN_TO: (None, [ctypes.c_int32, ctypes.c_int32])}.items():
                _calls[name] = ctypes.CFUNCTYPE(res, *args)(jit.address(name))
            for slot, cpu in enumerate(worker_cpus(), start=1):
                _calls[PIN_TO](slot, cpu)
            _calls[SET_THREADS](num_threads() if available() else 1)
            _pool = jit     # kept for the life of the process: the workers run this code
    return _pool


def worker_cpus() -> list[int]:
    """The CPU each worker slot (1, 2, ...) is pinned to: the allowed CPUs other than the
    calling thread's, in order (empty with ADJIT_POOL_PIN=0 or no affinity API)."""
    if not PIN or not have_libc("sched_getcpu", "pthread_attr_setaffinity_np"):
        return []
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []
    here = ctypes.CDLL(None).sched_getcpu()
    return [c for c in allowed if c != here][:pool_ir.MAX_WORKERS]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (the caller and n-1 workers) for native kernels from now on
    (1: everything on the calling thread).  Workers are started on the next job that
    wants them; lowering the count leaves the extra workers asleep."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the thread count must be a positive integer, got {n!r}")
    if n > pool_ir.MAX_WORKERS + 1:
        raise ValueError(f"at most {pool_ir.MAX_WORKERS + 1} threads, got {n}")
    from ..lowering.target.description import choose_threads
    choose_threads(n)
    if available():
        ensure_pool()
        _calls[SET_THREADS](n)


def get_num_threads() -> int:
    """The threads native kernels use now (1 where the pool is unavailable)."""
    if not available():
        return 1
    ensure_pool()
    return int(_calls[THREADS]())


def declare_pool(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    """Declarations of offload/wait, bound to the process-wide pool at JIT time."""
    return declare(module, OFFLOAD, SIGNATURES[OFFLOAD]), declare(module, WAIT, SIGNATURES[WAIT])


def declare_threads(module: ir.Module) -> ir.Function:
    """``i64 adjit_pool_threads()``: the participants a job may have now."""
    return declare(module, THREADS, SIGNATURES[THREADS])


def share(module: ir.Module, b: ir.IRBuilder, job: ir.Function, arg: ir.Value,
          run_here, most: int | ir.Value = pool_ir.MAX_WORKERS + 1) -> None:
    """At ``b``: post ``job(arg, slot, work)`` to the workers (at most ``most``
    participants, the caller included), run this thread's part (``run_here()`` emits it),
    then close the job and wait for the workers inside it.  Jobs are written as
    :func:`take_each` loops, which the caller runs too, so workers that never start cost
    nothing."""
    ensure_pool()
    offload, wait = declare_pool(module)
    most = c64(most) if isinstance(most, int) else most
    started = b.call(offload, [job, b.bitcast(arg, I8P), most])
    run_here()
    with b.if_then(started):
        b.call(wait, [])


def job_function(module: ir.Module, name: str) -> tuple[ir.Function, ir.IRBuilder]:
    """An internal ``void name(i8* arg, i64 slot, i8* work)`` (a worker's part of a job)
    and a builder at its entry."""
    fn = ir.Function(module, JOB_FN, name=name)
    fn.linkage = "internal"
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def take_each(b: ir.IRBuilder, counter: ir.Value, n: ir.Value, name: str):
    """``while ((c = (*counter)++) < n) { ... }`` with an atomic counter shared by the
    participants: emits the loop head and returns ``(c, head, done)``; the caller emits the
    body at ``b``, branches back to ``head`` and continues at ``done``."""
    fn = b.function
    head, body, done = (fn.append_basic_block(f"{name}.{s}") for s in ("take", "run", "done"))
    b.branch(head)
    b.position_at_end(head)
    c = b.atomic_rmw("add", counter, c64(1), "monotonic")
    b.cbranch(b.icmp_signed("<", c, n), body, done)
    b.position_at_end(body)
    return c, head, done


def items_function(module: ir.Module, step: ir.Function):
    """``void <step>.items(T* out, T* a, T* b, T* work, i64 batch, i64* counter)``: the
    internal function every participant runs to take work items of a product step (``T`` the
    step's element pointer type); returns ``(fn, args, builder at its entry)``."""
    T = step.args[0].type
    fty = ir.FunctionType(ir.VoidType(), [T, T, T, T, ir.IntType(64),
                                          ir.IntType(64).as_pointer()])
    fn = ir.Function(module, fty, name=f"{step.name}.items")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn, fn.args, ir.IRBuilder(fn.append_basic_block("entry"))


def relax(module: ir.Module, b: ir.IRBuilder) -> None:
    """One ``pause`` in a spin loop (x86; elsewhere nothing)."""
    pool_ir.relax(module, b, X86)



def pause(module: ir.Module, b: ir.IRBuilder, spins: ir.Value) -> None:
    """A turn of a wait loop (:func:`.pool_ir.pause`): pause, or yield after a while."""
    pool_ir.pause(module, b, spins, X86)
