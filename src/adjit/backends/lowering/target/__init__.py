"""The one place in adjit that knows llvmlite.binding: target machine, optimizer, JIT, cache.

Everything else in adjit builds IR text with ``llvmlite.ir`` and hands it to
:func:`compile_ir`; external symbols go through :func:`add_symbol` and
:func:`load_library`.  llvmlite's binding API drifted (0.50 removed ``initialize()`` and
the legacy pass manager), so keeping it behind this module confines future drift to one
file.

Pipeline of :func:`compile_ir`, for each of the module texts it is given (several are
compiled at once on worker threads, each in its own LLVMContext)::

    IR text --parse+verify--> module --new PM (O<n>, loop+SLP vectorize)--> optimized module
            --codegen (target CPU: the host's name and features, or a named CPU)--> object code
    object code of every text --MCJIT add_object_file, linked--> JitModule.address(sym)

Disk cache: that object code (several objects packed into one payload) is stored with the
optimized IR in one file per key.  A later compile of the same IR for the same CPU loads
it into a fresh MCJIT engine - no parsing, no optimization, no codegen.

Target CPU (:mod:`.cpu`): ``compile_ir(..., cpu=)``, else ``$ADJIT_CPU``, else the host.
A named CPU ("znver3", "x86-64-v4") selects LLVM's CPU, features and tuning regardless of
the machine compiling; the key covers the CPU name and feature string.

Invariants:
  * A cache entry is only ever loaded after its length fields and the sha256 of its object
    and IR payloads have been checked; a bad entry is deleted and recompiled, never loaded.
  * Entries are written to a temp file in the cache directory and ``os.replace``-d into
    place, so readers see either no entry or a complete one.
  * The cache directory must be owned by the current user and not group/world writable
    (anyone who can write an object file there could run code in our process); otherwise
    the cache is not used and ``cache_info`` says why.
  * LLVM's global context is not thread-safe: all work on it (engines, symbols, asm) is
    serialized by ``_lock``.  Only a compile's private contexts are used without it.
  * Fork: ``_lock`` and llvmlite's lock are held across ``fork()`` (a fork waits for an
    in-flight compile), and every other adjit lock is fresh in the child
    (:mod:`.forksafe`).

Example::

    >>> from adjit.backends.lowering.target import compile_ir
    >>> import ctypes
    >>> jm = compile_ir("define i64 @add1(i64 %x) {\\n  %y = add i64 %x, 1\\n  ret i64 %y\\n}\\n",
    ...                 cache=False)
    >>> ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("add1"))(41)
    42
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import llvmlite.binding as llvm
from llvmlite.binding import ffi
from llvmlite.binding.module import ModuleRef

from .diskcache import (ENTRY_SUFFIX, cache_dir, cache_switch, enforce_limit, is_entry,
                         pack_objects, read_entry, unpack_objects, usable_cache_dir,
                         write_entry)
from . import cpu as _cpu
from .machine import (_ensure_init, _lock, _target_machine, add_symbol,  # noqa: F401
                      compile_threads, host_info, load_library, set_masked_tails,
                      target_cpu, target_spec, vector_width_bytes)

__all__ = ["JitModule", "compile_ir", "NO_UNROLL", "load_cached", "compile_threads", "add_symbol",
           "load_library", "host_info", "target_cpu", "target_spec", "vector_width_bytes",
           "cache_dir", "NVPTX_TRIPLE", "nvptx_available", "emit_ptx"]

# Bump when the entry layout or anything else that changes generated code (but is not
# part of the key) changes.
_FORMAT_VERSION = 1

_PART_SEP = "\n; ---- adjit: next module ----\n"   # between the texts of a split compile
# A module text starting with this line is optimized without loop unrolling (the marker is
# part of the text, so the cache key covers it)
NO_UNROLL = "; adjit: no loop unrolling\n"


class JitModule:
    """A compiled module kept alive by its MCJIT engine.

    Attributes: ``llvm_ir`` (text given to compile_ir), ``llvm_ir_optimized``,
    ``cache_info`` (one line: "hit <path>" or "miss: <reason>"), ``name``; property ``asm``
    (assembly of the optimized IR, produced on first access).  Addresses returned by
    :meth:`address` stay valid as long as this object is alive.
    """

    def __init__(self, engine, name, llvm_ir, llvm_ir_optimized, opt_level, cache_info,
                 key=None, cpu=_cpu.HOST):
        self._engine = engine          # owns the machine code; must outlive all addresses
        self.name = name
        self.cpu = cpu                 # the CPU name the code was generated for
        self._llvm_ir = llvm_ir        # text, or a function making it (see load_cached)
        self.key = key                 # the disk-cache key (None when the cache was off)
        self.llvm_ir_optimized = llvm_ir_optimized
        self.opt_level = opt_level
        self.cache_info = cache_info
        self.timings: dict = {}        # seconds per stage of a compile (empty for a hit)
        self._asm = None

    @property
    def llvm_ir(self) -> str:
        """The IR text given to compile_ir, its modules joined by a comment line (remade on
        first access for a module loaded by :func:`load_cached` with ``llvm_ir=`` a
        function)."""
        if callable(self._llvm_ir):
            self._llvm_ir = self._llvm_ir()
        if isinstance(self._llvm_ir, (list, tuple)):
            self._llvm_ir = _PART_SEP.join(self._llvm_ir)
        return self._llvm_ir

    def address(self, symbol: str) -> int:
        """Address of a function or global defined in this module (KeyError if absent;
        RuntimeError if the code is for a CPU this host is not known to implement)."""
        if not _cpu.runnable(self.cpu, host_info()):
            raise RuntimeError(
                f"{self.name!r} was compiled for cpu {self.cpu!r}, which this host "
                f"({host_info()['cpu']}) is not known to implement: its code is not run "
                "here (its IR and assembly can be read; compile with cpu='host', the "
                "host's CPU name or an x86-64 level the host has to run it)")
        return self.link_address(symbol)

    def link_address(self, symbol: str) -> int:
        """Address of ``symbol`` for binding it in modules compiled for the same CPU
        (:func:`add_symbol`), whether or not this host runs that CPU's code: never call
        it from Python unless :meth:`address` would give it (KeyError if absent)."""
        with _lock:
            addr = self._engine.get_function_address(symbol)
            if not addr:
                addr = self._engine.get_global_value_address(symbol)
        if not addr:
            raise KeyError(f"symbol {symbol!r} not found in JIT module {self.name!r}")
        return addr

    @property
    def asm(self) -> str:
        """Assembly text for the optimized IR (codegen only, no re-optimization)."""
        if self._asm is None:
            with _lock:
                self._asm = _PART_SEP.join(
                    _target_machine(self.opt_level, self.cpu).emit_assembly(
                        llvm.parse_assembly(part))
                    for part in self.llvm_ir_optimized.split(_PART_SEP))
        return self._asm

    def __repr__(self):
        return f"<JitModule {self.name!r} O{self.opt_level} ({self.cache_info})>"


def _cache_key(ir_text: str, opt_level: int, cpu: str = _cpu.HOST,
               masked_tails: bool = False) -> str:
    info = host_info()
    h = hashlib.sha256()
    for part in (f"adjit-cache-format={_FORMAT_VERSION}", info["llvmlite_version"],
                 info["llvm_version"], info["triple"], *target_spec(cpu),
                 f"O{opt_level}", f"masked_tails={masked_tails}", ir_text):
        h.update(part.encode())
        h.update(b"\0")       # separator: no two different tuples hash the same bytes
    return h.hexdigest()


def _load_objects(objs: list[bytes], cpu: str = _cpu.HOST):
    """A fresh MCJIT engine holding the given object code, linked together (each
    object's undefined symbols resolve to the others', then to the process's)."""
    empty = llvm.parse_assembly("")
    empty.triple = host_info()["triple"]
    engine = llvm.create_mcjit_compiler(empty, _target_machine(0, cpu))
    for obj in objs:
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


def _raw(name: str):
    """llvmlite's C function ``name`` without llvmlite's process-wide lock.

    Used only on a module in a private LLVMContext with its own target machine and pass
    builder (LLVM allows concurrent work on distinct contexts, as in ThinLTO's backend
    threads), so the parts of a split compile parse, optimize and codegen at the same
    time: ctypes releases the GIL during the call.  If llvmlite's internals change, the
    locked function is used: serial, still correct.
    """
    fn = getattr(ffi.lib, name)
    return getattr(fn, "_cfn", fn)


def _compile_part(text: str, opt_level: int, name: str,
                  cpu: str = _cpu.HOST) -> tuple[bytes, str, dict]:
    """Parse, verify, optimize and codegen one module in its own LLVMContext; return
    (object code, optimized IR, seconds per stage).  Raises RuntimeError on invalid IR."""
    t0, cpu0 = time.perf_counter(), time.thread_time()
    ctx = llvm.create_context()
    with ffi.OutputString() as err:
        mod = ModuleRef(_raw("LLVMPY_ParseAssembly")(ctx, ctypes.c_char_p(text.encode()), err),
                        ctx)
        if err:
            mod.close()
            raise RuntimeError(f"LLVM IR parsing error\n{err}")
    mod.name = name
    with ffi.OutputString() as err:
        if _raw("LLVMPY_VerifyModule")(mod, err):
            raise RuntimeError(str(err))
    tm = _target_machine(opt_level, cpu)
    # The optimizer's cost models (vectorizer widths, inlining) need the real triple and
    # data layout; IR from llvmlite.ir usually carries none.
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    t1 = time.perf_counter()
    if opt_level > 0:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = not text.startswith(NO_UNROLL)
        pb = llvm.create_pass_builder(tm, pto)
        _raw("LLVMPY_RunNewModulePassManager")(pb.getModulePassManager(), mod, pb)
    t2 = time.perf_counter()
    with ffi.OutputString() as out:
        _raw("LLVMPY_PrintModuleToString")(mod, out)
        opt_ir = str(out)
    with ffi.OutputString() as err:
        buf = _raw("LLVMPY_TargetMachineEmitToMemory")(tm, mod, 1, err)
        if not buf:
            raise RuntimeError(str(err))
    try:
        obj = ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buf),
                               ffi.lib.LLVMPY_GetBufferSize(buf))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buf)
    return obj, opt_ir, {"parse": t1 - t0, "optimize": t2 - t1,
                         "codegen": time.perf_counter() - t2, "cpu": time.thread_time() - cpu0}


def _compile(texts: list[str], opt_level: int, name: str, cpu: str = _cpu.HOST):
    """Compile every text (the extra ones on worker threads) and link the objects into one
    engine; return (engine, optimized IR, object payload, timings)."""
    t0 = time.perf_counter()
    host_info()                      # initialized before any worker starts
    threads = min(len(texts), compile_threads())
    if threads <= 1:
        results = [_compile_part(t, opt_level, name, cpu) for t in texts]
    else:
        # largest first, each to the next free thread (this one among them)
        order = sorted(range(len(texts)), key=lambda k: -len(texts[k]))
        done: dict = {}
        with ThreadPoolExecutor(threads - 1) as pool:
            lock = threading.Lock()

            def work():
                while True:
                    with lock:
                        if not order:
                            return
                        k = order.pop(0)
                    done[k] = _compile_part(texts[k], opt_level, name, cpu)
            workers = [pool.submit(work) for _ in range(threads - 1)]
            work()
            for w in workers:
                w.result()
        results = [done[k] for k in range(len(texts))]
    objs = [r[0] for r in results]
    engine = _load_objects(objs, cpu)
    timings = {k: sum(r[2][k] for r in results) for k in ("parse", "optimize", "codegen", "cpu")}
    timings.update(modules=len(texts), wall=time.perf_counter() - t0)
    return engine, _PART_SEP.join(r[1] for r in results), pack_objects(objs), timings


def compile_ir(ir_text: str | Sequence[str], *, opt_level: int = 3, cache: bool | None = None,
               name: str = "adjit", cpu: str | None = None,
               masked_tails: bool = False) -> JitModule:
    """Compile LLVM IR text for a CPU and return a :class:`JitModule`.

    ``ir_text`` may be a list of module texts: they are compiled in parallel threads and
    linked into one module (a function may call one defined in another text; names must
    be unique across them).  ``opt_level`` 0..3 selects the new-pass-manager pipeline
    (loop and SLP vectorization on) and the codegen level.  ``cache``: None follows the
    environment (on unless ``ADJIT_CACHE=0``), True/False force it on/off.  ``cpu``:
    None follows ``$ADJIT_CPU`` (default "host"); a name such as "znver3" compiles for
    that CPU (ValueError if LLVM does not know it).  ``masked_tails``: vectorized loops
    run their last partial vector under a mask where the CPU has masked loads and stores
    (AVX-512, AVX2) instead of a vector epilogue and a scalar remainder loop (see
    :func:`.machine.set_masked_tails`).  Raises RuntimeError on invalid IR.
    """
    if not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be 0..3, got {opt_level}")
    texts = [ir_text] if isinstance(ir_text, str) else list(ir_text)
    if not texts:
        raise ValueError("compile_ir: no IR text given")
    joined = _PART_SEP.join(texts)      # what the key covers and llvm_ir shows
    _ensure_init()
    cpu = target_cpu(cpu)
    off = cache_switch(cache)
    use, info = off is None, f"miss: {off or 'no entry'}"
    with _lock:
        path = key = None
        if use:
            d, why = usable_cache_dir()
            if d is None:
                use, info = False, f"miss: {why}"
            else:
                key = _cache_key(joined, opt_level, cpu, masked_tails)
                path = os.path.join(d, key + ENTRY_SUFFIX)
        if use and is_entry(path):
            got = _load_entry(path, key, name, opt_level, joined, cpu)
            if isinstance(got, JitModule):
                return got
            info = f"miss: entry corrupt ({got})"
            try:
                os.unlink(path)
            except OSError:
                pass
        set_masked_tails(masked_tails)     # (LLVM's option is global: under _lock)
        engine, opt_ir, obj, timings = _compile(texts, opt_level, name, cpu)
        if use:
            try:
                write_entry(path, key, obj, opt_ir)
                enforce_limit(os.path.dirname(path), keep=path)
            except OSError as e:
                info += f" (not stored: {e.strerror})"
        jm = JitModule(engine, name, joined, opt_ir, opt_level, info, key if use else None,
                       cpu)
        jm.timings = timings
        return jm


def load_cached(key: str, name: str = "adjit", opt_level: int = 2,
                llvm_ir=None, cpu: str | None = None) -> JitModule | None:
    """The module stored under ``key`` (a :attr:`JitModule.key`), or None when the cache
    is off, unusable, or has no sound entry for it.  Only the optimized IR is stored:
    ``llvm_ir`` is a function that remakes the input text when someone asks for it.
    ``cpu``: the CPU the entry was compiled for (as for :func:`compile_ir`)."""
    if cache_switch(None) is not None:
        return None
    _ensure_init()
    cpu = target_cpu(cpu)
    d, _ = usable_cache_dir()
    if d is None:
        return None
    with _lock:
        got = _load_entry(os.path.join(d, key + ENTRY_SUFFIX), key, name, opt_level, llvm_ir,
                          cpu)
    return got if isinstance(got, JitModule) else None


def _load_entry(path: str, key: str, name: str, opt_level: int, llvm_ir, cpu: str):
    """The module in the entry at ``path`` (checked against ``key``), or why it is bad."""
    try:
        got = read_entry(path, key)
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if isinstance(got, str):
        return got
    objs = unpack_objects(got[0])
    if objs is None:
        return "bad object pack"
    return JitModule(_load_objects(objs, cpu), name, llvm_ir, got[1], opt_level,
                     f"hit {path}", key, cpu)


# the NVPTX half of this package (imported last: it uses _lock and _ensure_init)
from .nvptx import NVPTX_TRIPLE, emit_ptx, nvptx_available  # noqa: E402
