"""The one place in adjit that knows llvmlite.binding: target machine, optimizer, JIT, cache.

Everything else in adjit builds IR text with ``llvmlite.ir`` and hands it to
:func:`compile_ir`; external symbols go through :func:`add_symbol` and
:func:`load_library`.  llvmlite's binding API drifted (0.50 removed ``initialize()`` and
the legacy pass manager), so keeping it behind this module confines future drift to one
file.

Pipeline of :func:`compile_ir`::

    IR text --parse+verify--> module --new PM (O<n>, loop+SLP vectorize)--> optimized module
            --MCJIT (host CPU, host features)--> machine code --> JitModule.address(sym)

Disk cache: the object code MCJIT produced (captured through its object-cache hook, so it is
exactly what runs) is stored with the optimized IR in one file per key.  A later compile of
the same IR on the same host loads the object into a fresh MCJIT engine with
``add_object_file`` - no parsing, no optimization, no codegen.

Invariants:
  * A cache entry is only ever loaded after its length fields and the sha256 of its object
    and IR payloads have been checked; a bad entry is deleted and recompiled, never loaded.
  * Entries are written to a temp file in the cache directory and ``os.replace``-d into
    place, so readers see either no entry or a complete one.
  * The cache directory must be owned by the current user and not group/world writable
    (anyone who can write an object file there could run code in our process); otherwise
    the cache is not used and ``cache_info`` says why.
  * All LLVM work is serialized by one lock: llvmlite's global context is not thread-safe.

Example::

    >>> from adjit.backends.llvm.target import compile_ir
    >>> import ctypes
    >>> jm = compile_ir("define i64 @add1(i64 %x) {\\n  %y = add i64 %x, 1\\n  ret i64 %y\\n}\\n",
    ...                 cache=False)
    >>> ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("add1"))(41)
    42
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading

import llvmlite
import llvmlite.binding as llvm

from .diskcache import ENTRY_SUFFIX, cache_dir, read_entry, usable_cache_dir, write_entry

__all__ = ["JitModule", "compile_ir", "add_symbol", "load_library", "host_info",
           "vector_width_bytes", "cache_dir", "NVPTX_TRIPLE", "nvptx_available", "emit_ptx"]

# Bump when the entry layout or anything else that changes generated code (but is not
# part of the key) changes.
_FORMAT_VERSION = 1

_lock = threading.RLock()        # serializes every call into LLVM
_initialized = False


def _ensure_init() -> None:
    """Initialize the native target and asm printer once (llvm.initialize() raises in 0.50)."""
    global _initialized
    with _lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True


@functools.cache
def host_info() -> dict:
    """Facts about the host that decide the generated code (and so the cache key).

    Returns a dict with keys ``cpu``, ``features`` (LLVM feature string, e.g. "+avx2,..."),
    ``triple``, ``llvm_version`` ("22.1.0") and ``llvmlite_version``.
    """
    _ensure_init()
    return {
        "cpu": llvm.get_host_cpu_name(),
        "features": llvm.get_host_cpu_features().flatten(),
        "triple": llvm.get_process_triple(),
        "llvm_version": ".".join(map(str, llvm.llvm_version_info)),
        "llvmlite_version": llvmlite.__version__,
    }


def vector_width_bytes() -> int:
    """Width of the widest usable SIMD register: 64 (AVX-512F), 32 (AVX/AVX2) or 16."""
    feats = set(host_info()["features"].split(","))
    if "+avx512f" in feats:
        return 64
    if "+avx" in feats:
        return 32
    return 16


def _target_machine(opt_level: int) -> "llvm.TargetMachine":
    """A fresh host target machine (MCJIT takes ownership of the one it is given).

    Host CPU name and features are essential: without them LLVM emits no AVX code.
    reloc='default' + codemodel='jitdefault' (large code model on x86-64) give objects that
    RuntimeDyld can place anywhere, which the object cache relies on.
    """
    info = host_info()
    target = llvm.Target.from_triple(info["triple"])
    return target.create_target_machine(cpu=info["cpu"], features=info["features"],
                                        opt=opt_level, reloc="default",
                                        codemodel="jitdefault", jit=True)


def add_symbol(name: str, address: int) -> None:
    """Make ``name`` resolve to ``address`` in all code JIT-compiled afterwards."""
    _ensure_init()
    with _lock:
        llvm.add_symbol(name, address)


def load_library(path: str) -> None:
    """Load a shared library into the process so JIT code can call its symbols."""
    _ensure_init()
    with _lock:
        llvm.load_library_permanently(path)


class JitModule:
    """A compiled module kept alive by its MCJIT engine.

    Attributes: ``llvm_ir`` (text given to compile_ir), ``llvm_ir_optimized``,
    ``cache_info`` (one line: "hit <path>" or "miss: <reason>"), ``name``; property ``asm``
    (assembly of the optimized IR, produced on first access).  Addresses returned by
    :meth:`address` stay valid as long as this object is alive.
    """

    def __init__(self, engine, name, llvm_ir, llvm_ir_optimized, opt_level, cache_info,
                 key=None):
        self._engine = engine          # owns the machine code; must outlive all addresses
        self.name = name
        self._llvm_ir = llvm_ir        # text, or a function making it (see load_cached)
        self.key = key                 # the disk-cache key (None when the cache was off)
        self.llvm_ir_optimized = llvm_ir_optimized
        self.opt_level = opt_level
        self.cache_info = cache_info
        self._asm = None

    @property
    def llvm_ir(self) -> str:
        """The IR text given to compile_ir (remade on first access for a module loaded by
        :func:`load_cached` with ``llvm_ir=`` a function)."""
        if callable(self._llvm_ir):
            self._llvm_ir = self._llvm_ir()
        return self._llvm_ir

    def address(self, symbol: str) -> int:
        """Address of a function or global defined in this module (KeyError if absent)."""
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
                mod = llvm.parse_assembly(self.llvm_ir_optimized)
                self._asm = _target_machine(self.opt_level).emit_assembly(mod)
        return self._asm

    def __repr__(self):
        return f"<JitModule {self.name!r} O{self.opt_level} ({self.cache_info})>"


def _cache_key(ir_text: str, opt_level: int) -> str:
    info = host_info()
    h = hashlib.sha256()
    for part in (f"adjit-cache-format={_FORMAT_VERSION}", info["llvmlite_version"],
                 info["llvm_version"], info["triple"], info["cpu"], info["features"],
                 f"O{opt_level}", ir_text):
        h.update(part.encode())
        h.update(b"\0")       # separator: no two different tuples hash the same bytes
    return h.hexdigest()


def _empty_module():
    mod = llvm.parse_assembly("")
    mod.triple = host_info()["triple"]
    return mod


def _load_object(obj: bytes):
    """A fresh MCJIT engine holding only the given object code."""
    engine = llvm.create_mcjit_compiler(_empty_module(), _target_machine(0))
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


def _compile(ir_text: str, opt_level: int, name: str):
    """Parse, verify, optimize and JIT; return (engine, optimized IR, object bytes)."""
    mod = llvm.parse_assembly(ir_text)
    mod.name = name
    mod.verify()
    tm_opt = _target_machine(opt_level)
    # The optimizer's cost models (vectorizer widths, inlining) need the real triple and
    # data layout; IR from llvmlite.ir usually carries none.
    mod.triple = tm_opt.triple
    mod.data_layout = str(tm_opt.target_data)
    if opt_level > 0:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = True
        pb = llvm.create_pass_builder(tm_opt, pto)
        pb.getModulePassManager().run(mod, pb)
    opt_ir = str(mod)
    objects = []
    engine = llvm.create_mcjit_compiler(mod, _target_machine(opt_level))
    # MCJIT hands us the object it generated; that exact object is what gets cached.
    engine.set_object_cache(notify_func=lambda _m, buf: objects.append(bytes(buf)))
    engine.finalize_object()
    return engine, opt_ir, (objects[0] if objects else None)


def compile_ir(ir_text: str, *, opt_level: int = 3, cache: bool | None = None,
               name: str = "adjit") -> JitModule:
    """Compile LLVM IR text for the host and return a :class:`JitModule`.

    ``opt_level`` 0..3 selects the new-pass-manager pipeline (loop and SLP vectorization
    on) and the codegen level.  ``cache``: None follows the environment (on unless
    ``ADJIT_CACHE=0``), True/False force it on/off.  Raises RuntimeError on invalid IR.
    """
    if not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be 0..3, got {opt_level}")
    _ensure_init()
    if cache is False:
        use, info = False, "miss: disabled by argument cache=False"
    elif cache is None and os.environ.get("ADJIT_CACHE", "1").strip() == "0":
        use, info = False, "miss: disabled by ADJIT_CACHE=0"
    else:
        use, info = True, "miss: no entry"
    with _lock:
        path = key = None
        if use:
            d, why = usable_cache_dir()
            if d is None:
                use, info = False, f"miss: {why}"
            else:
                key = _cache_key(ir_text, opt_level)
                path = os.path.join(d, key + ENTRY_SUFFIX)
        if use and os.path.exists(path):
            try:
                got = read_entry(path, key)
            except OSError as e:
                got = f"unreadable: {e.strerror}"
            if isinstance(got, tuple):
                engine = _load_object(got[0])
                return JitModule(engine, name, ir_text, got[1], opt_level, f"hit {path}", key)
            info = f"miss: entry corrupt ({got})"
            try:
                os.unlink(path)
            except OSError:
                pass
        engine, opt_ir, obj = _compile(ir_text, opt_level, name)
        if use and obj is not None:
            try:
                write_entry(path, key, obj, opt_ir)
            except OSError as e:
                info += f" (not stored: {e.strerror})"
        return JitModule(engine, name, ir_text, opt_ir, opt_level, info,
                         key if use and obj is not None else None)


def load_cached(key: str, name: str = "adjit", opt_level: int = 2,
                llvm_ir=None) -> JitModule | None:
    """The module stored under ``key`` (a :attr:`JitModule.key`), or None when the cache
    is off, unusable, or has no sound entry for it.  Only the optimized IR is stored:
    ``llvm_ir`` is a function that remakes the input text when someone asks for it."""
    if os.environ.get("ADJIT_CACHE", "1").strip() == "0":
        return None
    _ensure_init()
    d, _ = usable_cache_dir()
    if d is None:
        return None
    path = os.path.join(d, key + ENTRY_SUFFIX)
    with _lock:
        try:
            got = read_entry(path, key)
        except OSError:
            return None
        if not isinstance(got, tuple):
            return None
        return JitModule(_load_object(got[0]), name, llvm_ir, got[1], opt_level,
                         f"hit {path}", key)


# --- NVPTX (used by adjit.backends.ptx) -------------------------------------------------------
# LLVM's NVPTX backend exits the whole process (no exception) when asked to lower a call it has
# no instruction or libcall for (llvm.exp, llvm.log, f64 exp2/tanh, ...).  emit_ptx therefore
# hands the declared functions to the caller's ``check`` before optimization and again after it
# (the optimizer may introduce intrinsics), and only then runs codegen.

NVPTX_TRIPLE = "nvptx64-nvidia-cuda"
_nvptx_initialized = False


def _ensure_nvptx() -> None:
    global _nvptx_initialized
    _ensure_init()
    with _lock:
        if not _nvptx_initialized:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            _nvptx_initialized = True


def nvptx_available() -> bool:
    """Whether this llvmlite's LLVM was built with the NVPTX target."""
    _ensure_nvptx()
    try:
        llvm.Target.from_triple(NVPTX_TRIPLE)
    except RuntimeError:
        return False
    return True


def emit_ptx(ir_text: str, *, arch: str = "sm_80", opt_level: int = 3,
             check=None) -> tuple[str, str]:
    """Optimize LLVM IR for NVPTX and return ``(optimized IR, PTX text)`` for GPU ``arch``.

    ``check(names)`` receives the names of the functions the module declares (not defines),
    before and after optimization; it must raise to refuse the module, since codegen of a
    call the target cannot lower would end the process.  Raises RuntimeError for invalid IR
    or when LLVM has no NVPTX target.
    """
    if not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be 0..3, got {opt_level}")
    if not nvptx_available():
        raise RuntimeError("this llvmlite was built without the NVPTX target")

    def declared(mod):
        return sorted(f.name for f in mod.functions if f.is_declaration)

    with _lock:
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        if check is not None:
            check(declared(mod))
        tm = llvm.Target.from_triple(NVPTX_TRIPLE).create_target_machine(cpu=arch, opt=opt_level)
        mod.triple = NVPTX_TRIPLE
        mod.data_layout = str(tm.target_data)
        if opt_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        if check is not None:
            check(declared(mod))
        return str(mod), tm.emit_assembly(mod)
