"""The native thread pool, emitted as LLVM IR (the Python side and the protocol: :mod:`.pool`).

Globals (all internal to the pool's module):

* ``open`` (i64): the generation of the job workers may join, 0 when none.
* ``seq`` (i32): bumped for every job posted; the futex word sleeping workers wait on.
* ``active`` (i32): workers inside the current job.  ``sleeping`` (i32): workers asleep.
* ``busy`` (i32): one job at a time; a second caller gets 0 from offload and runs alone.
* ``job``, ``arg``, ``jmax`` (participants this job may have), ``gen`` (last generation).
* ``limit`` (i32): participants a job may have, caller included (set_threads);
  ``started`` (i32): workers running; ``starting`` (i32): a caller is starting workers.
* per worker slot ``s`` (1..MAX_WORKERS): its workspace and the CPU to pin it to (-1: none).

Joining (worker ``s``): read ``open`` = g; if g is new to it and ``s < jmax``: ``active++``,
re-read ``open``; only if still g run ``job(arg, s, workspace_s)``; ``active--``.  Closing
(caller's wait): ``open = 0``, then wait for ``active == 0``.  Both sides use seq_cst, so
either the worker's re-read sees 0 (it never runs) or the caller sees its ``active`` (and
waits for it): a job is never run after wait returns, nor run twice by one worker.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ..lowering.irkit import c32, c64, declare, function

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
JOB_FN = ir.FunctionType(ir.VoidType(), [I8P, I64, I8P])     # job(arg, slot, workspace)
JOB = JOB_FN.as_pointer()
MAX_WORKERS = 255
SPIN = 20000             # worker: pause iterations before sleeping (~50-100 us)
YIELD_AFTER = 4000       # caller: pause iterations before yielding its CPU (~10-20 us)
FUTEX_WAIT, FUTEX_WAKE = 0 | 128, 1 | 128     # the _PRIVATE variants
INT_MAX = 2 ** 31 - 1

OFFLOAD, WAIT, THREADS, SET_THREADS, PIN_TO = (
    "adjit_pool_offload", "adjit_pool_wait", "adjit_pool_threads", "adjit_pool_set_threads",
    "adjit_pool_pin")
SIGNATURES = {OFFLOAD: ir.FunctionType(I1, [JOB, I8P, I64]),
              WAIT: ir.FunctionType(ir.VoidType(), []),
              THREADS: ir.FunctionType(I64, []),
              SET_THREADS: ir.FunctionType(ir.VoidType(), [I32]),
              PIN_TO: ir.FunctionType(ir.VoidType(), [I32, I32])}


def _global(module, name, ty, init=0):
    g = ir.GlobalVariable(module, ty, name)
    g.linkage, g.initializer, g.align = "internal", ir.Constant(ty, init), 64
    return g


def relax(module: ir.Module, b: ir.IRBuilder, x86: bool) -> None:
    """One ``pause`` in a spin loop (x86; elsewhere nothing)."""
    if x86:
        b.call(declare(module, "llvm.x86.sse2.pause", ir.FunctionType(ir.VoidType(), [])), [])


def pause(module: ir.Module, b: ir.IRBuilder, spins: ir.Value, x86: bool) -> None:
    """In a wait loop, at its ``spins``-th turn: a ``pause``, or after YIELD_AFTER turns
    a ``sched_yield`` (the thread waited for may need this CPU).  Leaves ``b`` in a
    block of its own (take ``b.block`` for a phi after it)."""
    with b.if_else(b.icmp_signed("<", spins, c64(YIELD_AFTER))) as (short, long_):
        with short:
            relax(module, b, x86)
        with long_:
            b.call(declare(module, "sched_yield", ir.FunctionType(I32, [])), [])


def emit_pool(module: ir.Module, *, workspace_bytes: int, sys_futex: int, atfork: str,
              x86: bool, limit: int) -> None:
    """Define the exported pool functions (:data:`SIGNATURES`) in ``module``."""
    fns = {n: declare(module, n, t) for n, t in SIGNATURES.items()}
    for f in fns.values():
        f.linkage = ""
        f.attributes.add("nounwind")
    g = {n: _global(module, f"pool.{n}", I32)
         for n in ("seq", "active", "sleeping", "busy", "started", "starting")}
    g["limit"] = _global(module, "pool.limit", I32, limit)
    g["open"], g["gen"], g["jmax"] = (_global(module, f"pool.{n}", I64)
                                      for n in ("open", "gen", "jmax"))
    g_job, g_arg = _global(module, "pool.job", JOB, None), _global(module, "pool.arg", I8P, None)
    ws = _global(module, "pool.ws", ir.ArrayType(I8P, MAX_WORKERS + 1), None)
    pins = _global(module, "pool.pins", ir.ArrayType(I32, MAX_WORKERS + 1), [-1] * (MAX_WORKERS + 1))
    slots = _global(module, "pool.slots", ir.ArrayType(I64, MAX_WORKERS + 1),
                    list(range(MAX_WORKERS + 1)))
    syscall = declare(module, "syscall", ir.FunctionType(I64, [I64], var_arg=True))

    def futex(b, op, val):
        b.call(syscall, [c64(sys_futex), g["seq"], c64(op), val, ir.Constant(I8P, None)])

    # -- a worker: its slot's number is behind its argument --------------------------------
    worker, b = function(module, "pool.worker", I8P, [I8P], ["slotp"])
    slot = b.load(b.bitcast(worker.args[0], I64.as_pointer()))
    work = b.load(b.gep(ws, [c32(0), slot]))
    entry = b.block
    head, check, take, join, run, idle, more, sleep = (worker.append_basic_block(n) for n in (
        "head", "check", "take", "join", "run", "idle", "more", "sleep"))
    b.branch(head)
    b.position_at_end(head)
    spins, last = b.phi(I64, "spins"), b.phi(I64, "last")
    spins.add_incoming(c64(0), entry)
    last.add_incoming(c64(0), entry)
    b.branch(check)
    b.position_at_end(check)
    gnow = b.load_atomic(g["open"], "acquire", 8)
    new = b.and_(b.icmp_unsigned("!=", gnow, c64(0)), b.icmp_unsigned("!=", gnow, last))
    b.cbranch(new, take, idle)
    b.position_at_end(take)                     # a new job: join it if the slot may
    may = b.icmp_signed("<", slot, b.load_atomic(g["jmax"], "acquire", 8))
    b.cbranch(may, join, head)
    spins.add_incoming(c64(0), take)
    last.add_incoming(gnow, take)
    b.position_at_end(join)
    b.atomic_rmw("add", g["active"], c32(1), "seq_cst")
    leave = worker.append_basic_block("leave")
    still = b.icmp_unsigned("==", b.load_atomic(g["open"], "seq_cst", 8), gnow)
    b.cbranch(still, run, leave)                # closed meanwhile: leave without running
    b.position_at_end(run)
    b.call(b.load(g_job), [b.load(g_arg), slot, work])
    b.branch(leave)
    b.position_at_end(leave)
    b.atomic_rmw("sub", g["active"], c32(1), "release")
    spins.add_incoming(c64(0), leave)
    last.add_incoming(gnow, leave)
    b.branch(head)
    b.position_at_end(idle)
    b.cbranch(b.icmp_signed("<", spins, c64(SPIN)), more, sleep)
    b.position_at_end(more)
    relax(module, b, x86)
    spins.add_incoming(b.add(spins, c64(1)), more)
    last.add_incoming(last, more)
    b.branch(head)
    b.position_at_end(sleep)
    seq = b.load_atomic(g["seq"], "seq_cst", 4)
    b.atomic_rmw("add", g["sleeping"], c32(1), "seq_cst")
    g2 = b.load_atomic(g["open"], "seq_cst", 8)
    quiet = b.or_(b.icmp_unsigned("==", g2, c64(0)), b.icmp_unsigned("==", g2, last))
    with b.if_then(quiet):
        futex(b, FUTEX_WAIT, b.zext(seq, I64))
    b.atomic_rmw("sub", g["sleeping"], c32(1), "seq_cst")
    spins.add_incoming(c64(0), b.block)
    last.add_incoming(last, b.block)
    b.branch(head)

    # -- fork: the child has no workers ------------------------------------------------------
    reset, b = function(module, "pool.atfork_child", ir.VoidType(), [], [])
    for name in ("seq", "active", "sleeping", "busy", "started", "starting"):
        b.store(c32(0), g[name])
    b.store(c64(0), g["open"])
    b.ret_void()
    _emit_start(module, g, ws, pins, slots, worker, reset, workspace_bytes, atfork)

    # -- threads / set_threads / pin ------------------------------------------------------------
    b = ir.IRBuilder(fns[THREADS].append_basic_block("entry"))
    b.ret(b.sext(b.load_atomic(g["limit"], "monotonic", 4), I64))
    b = ir.IRBuilder(fns[SET_THREADS].append_basic_block("entry"))
    n = fns[SET_THREADS].args[0]
    n = b.select(b.icmp_signed("<", n, c32(1)), c32(1), n)
    n = b.select(b.icmp_signed(">", n, c32(MAX_WORKERS + 1)), c32(MAX_WORKERS + 1), n)
    b.store_atomic(n, g["limit"], "release", 4)
    b.ret_void()
    b = ir.IRBuilder(fns[PIN_TO].append_basic_block("entry"))
    s, cpu = fns[PIN_TO].args
    with b.if_then(b.icmp_unsigned("<=", s, c32(MAX_WORKERS))):
        b.store(cpu, b.gep(pins, [c32(0), s]))
    b.ret_void()

    # -- offload ------------------------------------------------------------------------------
    fn = fns[OFFLOAD]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    job, arg, want = fn.args
    no = lambda: b.ret(ir.Constant(I1, 0))  # noqa: E731
    lim = b.sext(b.load_atomic(g["limit"], "acquire", 4), I64)
    parts = b.select(b.icmp_signed("<", want, lim), want, lim)
    with b.if_then(b.icmp_signed("<", parts, c64(2))):
        no()
    need = b.trunc(b.sub(lim, c64(1)), I32)      # workers the limit asks for
    with b.if_then(b.icmp_signed("<", b.load_atomic(g["started"], "acquire", 4), need)):
        won = b.extract_value(b.cmpxchg(g["starting"], c32(0), c32(1), "acq_rel", "monotonic"), 1)
        with b.if_then(won):
            b.call(module.globals["pool.start"], [need])
            b.store_atomic(c32(0), g["starting"], "release", 4)
    have = b.sext(b.load_atomic(g["started"], "acquire", 4), I64)
    with b.if_then(b.icmp_signed("<", have, c64(1))):
        no()
    got = b.extract_value(b.cmpxchg(g["busy"], c32(0), c32(1), "acquire", "monotonic"), 1)
    with b.if_then(b.not_(got)):
        no()
    b.store(job, g_job)
    b.store(arg, g_arg)
    b.store_atomic(parts, g["jmax"], "release", 8)
    gen = b.add(b.load(g["gen"]), c64(1))
    b.store(gen, g["gen"])
    b.store_atomic(gen, g["open"], "seq_cst", 8)
    b.atomic_rmw("add", g["seq"], c32(1), "seq_cst")
    with b.if_then(b.icmp_unsigned("!=", b.load_atomic(g["sleeping"], "seq_cst", 4), c32(0))):
        futex(b, FUTEX_WAKE, c64(INT_MAX))
    b.ret(ir.Constant(I1, 1))

    # -- wait: close the job, then wait for the workers inside it -------------------------
    fn = fns[WAIT]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.store_atomic(c64(0), g["open"], "seq_cst", 8)
    entry = b.block
    check, spin, out = (fn.append_basic_block(n) for n in ("check", "spin", "out"))
    b.branch(check)
    b.position_at_end(check)
    k = b.phi(I64, "k")
    k.add_incoming(c64(0), entry)
    done = b.icmp_unsigned("==", b.load_atomic(g["active"], "acquire", 4), c32(0))
    b.cbranch(done, out, spin)
    b.position_at_end(spin)
    # a worker holds a chunk; if that takes long it may have been preempted: give up this
    # CPU now and then, so it can run here if its own CPU is taken
    pause(module, b, k, x86)
    k.add_incoming(b.add(k, c64(1)), b.block)
    b.branch(check)
    b.position_at_end(out)
    b.store_atomic(c32(0), g["busy"], "release", 4)
    b.ret_void()


def _emit_start(module, g, ws, pins, slots, worker, reset, workspace_bytes, atfork):
    """``void pool.start(i32 need)``: start workers started+1..need (each with its workspace,
    pinned to its CPU when one is set); register the fork handler with the first."""
    fty = ir.FunctionType
    fn, b = function(module, "pool.start", ir.VoidType(), [I32], ["need"])
    fn.linkage = "internal"
    need = fn.args[0]
    attr = b.bitcast(b.alloca(ir.ArrayType(I64, 8), name="attr"), I8P)   # pthread_attr_t
    cpus = b.alloca(ir.ArrayType(I64, 16), name="cpus")                  # cpu_set_t
    tid, mem = b.alloca(I64, name="tid"), b.alloca(I8P, name="mem")
    first = b.load(g["started"])
    memalign = declare(module, "posix_memalign", fty(I32, [I8P.as_pointer(), I64, I64]))
    create = declare(module, "pthread_create", fty(I32, [I64.as_pointer(), I8P, worker.type, I8P]))
    setaff = declare(module, "pthread_attr_setaffinity_np", fty(I32, [I8P, I64, I8P]))
    init = declare(module, "pthread_attr_init", fty(I32, [I8P]))
    destroy = declare(module, "pthread_attr_destroy", fty(I32, [I8P]))
    detach = declare(module, "pthread_detach", fty(I32, [I64]))
    head, body, done = (fn.append_basic_block(n) for n in ("head", "body", "done"))
    entry = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I32, "i")
    i.add_incoming(first, entry)
    b.cbranch(b.icmp_signed("<", i, need), body, done)
    b.position_at_end(body)
    s = b.add(i, c32(1))                                    # the new worker's slot
    wsp = b.gep(ws, [c32(0), s])
    with b.if_then(b.icmp_unsigned("==", b.load(wsp), ir.Constant(I8P, None))):
        rc = b.call(memalign, [mem, c64(64), c64(workspace_bytes)])
        with b.if_then(b.icmp_signed("==", rc, c32(0))):
            b.store(b.load(mem), wsp)
    ok = b.icmp_unsigned("!=", b.load(wsp), ir.Constant(I8P, None))
    b.call(init, [attr])
    cpu = b.load(b.gep(pins, [c32(0), s]))
    with b.if_then(b.and_(b.icmp_signed(">=", cpu, c32(0)), b.icmp_signed("<", cpu, c32(1024)))):
        for w in range(16):
            b.store(c64(0), b.gep(cpus, [c32(0), c32(w)]))
        word = b.gep(cpus, [c32(0), b.lshr(cpu, c32(6))])
        b.store(b.shl(c64(1), b.zext(b.and_(cpu, c32(63)), I64)), word)
        b.call(setaff, [attr, c64(128), b.bitcast(cpus, I8P)])
    made = b.alloca(I1, name="made")
    b.store(ir.Constant(I1, 0), made)
    with b.if_then(ok):
        arg = b.bitcast(b.gep(slots, [c32(0), s]), I8P)
        b.store(b.icmp_signed("==", b.call(create, [tid, attr, worker, arg]), c32(0)), made)
    b.call(destroy, [attr])
    stop = b.not_(b.load(made))
    with b.if_then(b.load(made)):
        b.call(detach, [b.load(tid)])
        b.store_atomic(s, g["started"], "release", 4)
        with b.if_then(b.icmp_signed("==", s, c32(1))):
            hook = ir.PointerType(fty(ir.VoidType(), []))
            null = ir.Constant(hook, None)
            if atfork == "pthread_atfork":
                b.call(declare(module, atfork, fty(I32, [hook, hook, hook])), [null, null, reset])
            else:   # __register_atfork(prepare, parent, child, dso_handle)
                b.call(declare(module, atfork, fty(I32, [hook, hook, hook, I8P])),
                       [null, null, reset, ir.Constant(I8P, None)])
    i.add_incoming(s, b.block)
    b.cbranch(stop, done, head)
    b.position_at_end(done)
    b.ret_void()
