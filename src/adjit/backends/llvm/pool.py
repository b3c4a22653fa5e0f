"""A persistent second thread for native kernels, emitted as LLVM IR.

Starting a pthread per call costs 25-90 us on the 2-vCPU VM (more when the machine is
busy), which kept products below ~500 us of work on one core.  Instead one worker thread
is started on first use and then waits for jobs: it spins for a short while after each
job (so back-to-back kernels hand work over in about a microsecond) and then sleeps on a
futex.  Two functions are exported to the generated kernels::

    i1   adjit_pool_offload(void (*job)(i8*), i8* arg)   ; 1: posted to the worker
    void adjit_pool_wait()                                 ; after a 1: withdraw or join

The pool is compiled once per process into its own module (:func:`ensure_pool`) that is
never freed -- the worker keeps running its code -- and kernel modules only declare the
two functions (bound by name at JIT time, like the GEMM library).

``offload`` returns 0 (the caller then runs the job itself) when the worker is busy with
another caller's job (several Python threads calling at once), when no second CPU is
allowed, or when the thread could not be started.  ``wait`` withdraws the job if the
worker has not taken it yet -- so a worker descheduled by a busy machine never makes the
caller wait; jobs should therefore be written as "take chunks from a shared counter
until none are left", which the caller runs too -- and otherwise waits for it to finish.
The worker is pinned to a CPU other than the caller's (``ADJIT_POOL_PIN=0`` leaves its
placement to the kernel).  A forked child resets the pool, so it starts its own worker instead of waiting on one
that does not exist there.

Ordering: a job moves IDLE -> POSTED (caller) -> TAKEN (worker, compare-and-swap) ->
FINISHED (worker, release) -> IDLE (caller), or POSTED -> IDLE when the caller withdraws
it first.  Before sleeping on the ``seq`` futex the worker publishes ``sleeping`` and
re-reads the job state; the caller posts, bumps ``seq`` and then reads ``sleeping`` (all
seq_cst), so a posted job is never left unseen, and FUTEX_WAIT's own compare of ``seq``
closes the remaining gap.
"""
from __future__ import annotations

import ctypes
import os
import platform

import llvmlite.ir as ir

from ..lowering.irkit import c32, c64, declare, function
from ..lowering.target.forksafe import Lock

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
JOB = ir.FunctionType(ir.VoidType(), [I8P]).as_pointer()
OFFLOAD, WAIT = "adjit_pool_offload", "adjit_pool_wait"
WORKSPACE = "adjit_pool_workspace"   # i8* (): the worker's own GEMM workspace
SPIN = 20000             # worker: pause iterations before sleeping (~50-100 us)
YIELD_AFTER = 4000       # caller: pause iterations before yielding its CPU (~10-20 us)
PIN = os.environ.get("ADJIT_POOL_PIN", "1") != "0"
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
FUTEX_WAIT, FUTEX_WAKE = 0 | 128, 1 | 128     # the _PRIVATE variants
NOT_STARTED, RUNNING, STARTING, UNAVAILABLE = 0, 1, 2, 3     # the thread
IDLE, POSTED, TAKEN, FINISHED = 0, 1, 2, 3                   # the job


def have_libc(*names) -> bool:
    """True if the running process exports all these C symbols (MCJIT aborts otherwise)."""
    try:
        proc = ctypes.CDLL(None)
    except OSError:
        return False
    return all(hasattr(proc, n) for n in names)


def available() -> bool:
    return (SYS_FUTEX is not None and have_libc("pthread_create", "pthread_detach", "syscall",
                                                "sched_yield")
            and _atfork() is not None)


def _atfork() -> str | None:
    """glibc exports ``__register_atfork`` (``pthread_atfork`` is a static wrapper of it)."""
    for name in ("pthread_atfork", "__register_atfork"):
        if have_libc(name):
            return name
    return None


_lock = Lock()     # fresh in a forked child (with the native pool reset, see atfork_child)
_pool = None


def ensure_pool():
    """Compile the pool once per process (or load it from the disk cache) and bind it."""
    global _pool
    from .fncache import compile_once
    from ..lowering.target import add_symbol

    def make_ir() -> str:
        module = ir.Module(name="adjit_pool")
        emit_pool(module)
        return str(module)
    with _lock:
        if _pool is None:
            jit = compile_once(f"adjit_pool2_pin{int(PIN)}", make_ir, opt_level=2)
            for name in (OFFLOAD, WAIT, WORKSPACE):
                add_symbol(name, jit.address(name))
            _pool = jit     # kept for the life of the process: the worker runs this code
    return _pool


def declare_pool(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    """Declarations of offload/wait, bound to the process-wide pool at JIT time."""
    return (declare(module, OFFLOAD, ir.FunctionType(I1, [JOB, I8P])),
            declare(module, WAIT, ir.FunctionType(ir.VoidType(), [])))


def share(module: ir.Module, b: ir.IRBuilder, job: ir.Function, arg: ir.Value,
          run_here) -> None:
    """At ``b``: post ``job(arg)`` to the worker, run this thread's part (``run_here()``
    emits it), then withdraw the job or wait for the worker's part.  Jobs are written as
    :func:`take_each` loops, which the caller runs too, so a worker that never starts
    costs nothing."""
    ensure_pool()
    offload, wait = declare_pool(module)
    started = b.call(offload, [job, b.bitcast(arg, I8P)])
    run_here()
    with b.if_then(started):
        b.call(wait, [])


def take_each(b: ir.IRBuilder, counter: ir.Value, n: ir.Value, name: str):
    """``while ((c = (*counter)++) < n) { ... }`` with an atomic counter shared by both
    threads: emits the loop head and returns ``(c, head, done)``; the caller emits the
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
    internal function both threads run to take work items of a product step (``T`` the
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
    if platform.machine() == "x86_64":
        b.call(declare(module, "llvm.x86.sse2.pause", ir.FunctionType(ir.VoidType(), [])), [])


def _global(module, name, ty, init=0):
    g = ir.GlobalVariable(module, ty, name)
    g.linkage, g.initializer, g.align = "internal", ir.Constant(ty, init), 64
    return g


def declare_workspace(module: ir.Module) -> ir.Function:
    """``i8* adjit_pool_workspace()``: the worker thread's GEMM workspace (64-byte aligned,
    :func:`.gemm.gemm_workspace_elems` float64 elements; only a job running on the worker
    may use it)."""
    return declare(module, WORKSPACE, ir.FunctionType(I8P, []))


def emit_pool(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    """Define ``adjit_pool_offload`` / ``adjit_pool_wait`` / ``adjit_pool_workspace`` in
    ``module`` (once per module)."""
    from .gemm import gemm_workspace_elems
    ws_fn = declare_workspace(module)
    ws_fn.linkage = ""
    ws_ty = ir.ArrayType(I8, gemm_workspace_elems("f64") * 8)
    ws = _global(module, "pool.workspace", ws_ty, None)
    b = ir.IRBuilder(ws_fn.append_basic_block("entry"))
    b.ret(b.bitcast(ws, I8P))
    offload, wait = declare_pool(module)
    offload.linkage = wait.linkage = ""     # exported
    g = {n: _global(module, f"pool.{n}", I32)
         for n in ("thread", "busy", "job_state", "seq", "sleeping")}
    g_job = _global(module, "pool.job", JOB, None)
    g_arg = _global(module, "pool.arg", I8P, None)
    syscall = declare(module, "syscall", ir.FunctionType(I64, [I64], var_arg=True))

    def futex(b, op, val):
        b.call(syscall, [c64(SYS_FUTEX), g["seq"], c64(op), val, ir.Constant(I8P, None)])

    def posted(b, order="acquire"):
        return b.icmp_unsigned("==", b.load_atomic(g["job_state"], order, 4), c32(POSTED))

    # -- the worker thread -------------------------------------------------------------------
    worker, b = function(module, "pool.worker", I8P, [I8P], ["unused"])
    spin_head = b.append_basic_block("spin")
    take, idle, more, sleep = (b.append_basic_block(n) for n in ("take", "idle", "more", "sleep"))
    b.branch(spin_head)
    b.position_at_end(spin_head)
    spins = b.phi(I64, "spins")
    spins.add_incoming(c64(0), worker.entry_basic_block)
    b.cbranch(posted(b), take, idle)
    b.position_at_end(idle)
    b.cbranch(b.icmp_signed("<", spins, c64(SPIN)), more, sleep)
    b.position_at_end(more)
    relax(module, b)
    spins.add_incoming(b.add(spins, c64(1)), more)
    b.branch(spin_head)
    b.position_at_end(sleep)
    seq = b.load_atomic(g["seq"], "seq_cst", 4)
    b.store_atomic(c32(1), g["sleeping"], "seq_cst", 4)
    with b.if_then(b.not_(posted(b, "seq_cst"))):
        futex(b, FUTEX_WAIT, b.zext(seq, I64))
    b.store_atomic(c32(0), g["sleeping"], "seq_cst", 4)
    spins.add_incoming(c64(0), b.block)
    b.branch(spin_head)
    b.position_at_end(take)
    won = b.extract_value(b.cmpxchg(g["job_state"], c32(POSTED), c32(TAKEN),
                                    "acq_rel", "monotonic"), 1)
    with b.if_then(won):
        b.call(b.load(g_job), [b.load(g_arg)])
        b.store_atomic(c32(FINISHED), g["job_state"], "release", 4)
    spins.add_incoming(c64(0), b.block)
    b.branch(spin_head)

    # -- fork: the child has no worker -------------------------------------------------------
    reset, b = function(module, "pool.atfork_child", ir.VoidType(), [], [])
    for name in g:
        b.store(c32(0), g[name])
    b.ret_void()

    # -- offload: post a job if the worker exists and is free ------------------------------
    b = ir.IRBuilder(offload.append_basic_block("entry"))
    offload.attributes.add("nounwind")
    job, arg = offload.args
    no = lambda: b.ret(ir.Constant(I1, 0))  # noqa: E731
    state = b.load_atomic(g["thread"], "acquire", 4)
    with b.if_then(b.icmp_unsigned("==", state, c32(NOT_STARTED))):
        won = b.extract_value(b.cmpxchg(g["thread"], c32(NOT_STARTED), c32(STARTING),
                                        "acq_rel", "acquire"), 1)
        with b.if_then(won):
            ok = _start(module, b, worker, reset)
            b.store_atomic(b.select(ok, c32(RUNNING), c32(UNAVAILABLE)), g["thread"], "release", 4)
    with b.if_then(b.icmp_unsigned("!=", b.load_atomic(g["thread"], "acquire", 4), c32(RUNNING))):
        no()
    got = b.extract_value(b.cmpxchg(g["busy"], c32(0), c32(1), "acquire", "monotonic"), 1)
    with b.if_then(b.not_(got)):
        no()
    b.store(job, g_job)
    b.store(arg, g_arg)
    b.store_atomic(c32(POSTED), g["job_state"], "seq_cst", 4)
    b.atomic_rmw("add", g["seq"], c32(1), "seq_cst")
    with b.if_then(b.icmp_unsigned("!=", b.load_atomic(g["sleeping"], "seq_cst", 4), c32(0))):
        futex(b, FUTEX_WAKE, c64(1))
    b.ret(ir.Constant(I1, 1))

    # -- wait: withdraw a job the worker has not taken, else wait for it to finish -------------
    b = ir.IRBuilder(wait.append_basic_block("entry"))
    wait.attributes.add("nounwind")
    withdrawn = b.extract_value(b.cmpxchg(g["job_state"], c32(POSTED), c32(IDLE),
                                          "acq_rel", "acquire"), 1)
    check, spin, out = (wait.append_basic_block(n) for n in ("check", "spin", "out"))
    b.cbranch(withdrawn, out, check)
    entry = b.block
    b.position_at_end(check)
    n = b.phi(I64, "n")
    n.add_incoming(c64(0), entry)
    finished = b.icmp_unsigned("==", b.load_atomic(g["job_state"], "acquire", 4), c32(FINISHED))
    b.cbranch(finished, out, spin)
    b.position_at_end(spin)
    # the worker holds a chunk; if that takes long it may have been preempted: give up
    # this CPU now and then, so it can run here if its own CPU is taken
    with b.if_else(b.icmp_signed("<", n, c64(YIELD_AFTER))) as (short, long_):
        with short:
            relax(module, b)
        with long_:
            b.call(declare(module, "sched_yield", ir.FunctionType(I32, [])), [])
    n.add_incoming(b.add(n, c64(1)), b.block)
    b.branch(check)
    b.position_at_end(out)
    b.store_atomic(c32(IDLE), g["job_state"], "monotonic", 4)
    b.store_atomic(c32(0), g["busy"], "release", 4)
    b.ret_void()
    return offload, wait


def _start(module, b, worker, reset) -> ir.Value:
    """Start the worker, pinned to an allowed CPU other than the caller's; -> i1 started.

    Left to itself Linux often put a new thread on the caller's CPU, so the two halves
    ran one after the other.  If the caller may run on one CPU only, no thread is made.
    """
    fty = ir.FunctionType
    attr = b.bitcast(b.alloca(ir.ArrayType(I64, 8), name="attr"), I8P)   # pthread_attr_t
    cpus = b.alloca(ir.ArrayType(I64, 16), name="cpus")                  # cpu_set_t
    tid, rc = b.alloca(I64, name="tid"), b.alloca(I32, name="rc")
    b.store(c32(-1), rc)                     # -1: create, -2: no other CPU, else create's rc
    b.call(declare(module, "pthread_attr_init", fty(I32, [I8P])), [attr])
    if PIN and have_libc("sched_getcpu", "sched_getaffinity", "pthread_attr_setaffinity_np"):
        cpus8 = b.bitcast(cpus, I8P)
        got = b.call(declare(module, "sched_getaffinity", fty(I32, [I32, I64, I8P])),
                     [c32(0), c64(128), cpus8])
        cpu = b.sext(b.call(declare(module, "sched_getcpu", fty(I32, [])), []), I64)
        with b.if_then(b.and_(b.icmp_signed("==", got, c32(0)),
                              b.icmp_unsigned("<", cpu, c64(1024)))):
            w = b.gep(cpus, [c32(0), b.trunc(b.lshr(cpu, c64(6)), I32)])   # clear our bit
            b.store(b.and_(b.load(w), b.xor(b.shl(c64(1), b.and_(cpu, c64(63))), c64(-1))), w)
            others = c64(0)
            for i in range(16):
                others = b.or_(others, b.load(b.gep(cpus, [c32(0), c32(i)])))
            with b.if_else(b.icmp_signed("!=", others, c64(0))) as (some, none):
                with some:
                    b.call(declare(module, "pthread_attr_setaffinity_np",
                                   fty(I32, [I8P, I64, I8P])), [attr, c64(128), cpus8])
                with none:
                    b.store(c32(-2), rc)
    with b.if_then(b.icmp_signed("==", b.load(rc), c32(-1))):
        create = fty(I32, [I64.as_pointer(), I8P, worker.type, I8P])
        b.store(b.call(declare(module, "pthread_create", create),
                       [tid, attr, worker, ir.Constant(I8P, None)]), rc)
    b.call(declare(module, "pthread_attr_destroy", fty(I32, [I8P])), [attr])
    started = b.icmp_signed("==", b.load(rc), c32(0))
    with b.if_then(started):
        hook = ir.PointerType(fty(ir.VoidType(), []))
        b.call(declare(module, "pthread_detach", fty(I32, [I64])), [b.load(tid)])
        name, null = _atfork(), ir.Constant(hook, None)
        if name == "pthread_atfork":
            b.call(declare(module, name, fty(I32, [hook, hook, hook])), [null, null, reset])
        else:   # __register_atfork(prepare, parent, child, dso_handle)
            b.call(declare(module, name, fty(I32, [hook, hook, hook, I8P])),
                   [null, null, reset, ir.Constant(I8P, None)])
    return started
