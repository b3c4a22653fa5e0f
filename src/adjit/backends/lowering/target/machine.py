"""The machine adjit compiles for: LLVM's one-time initialization, the lock on its global
context, host facts, the target CPU (:mod:`.cpu`) and the target machine built for it;
process-wide symbols.  The rest of :mod:`adjit.backends.lowering.target` builds on these.
"""
from __future__ import annotations

import functools
import os

import llvmlite
import llvmlite.binding as llvm

from . import cpu as _cpu
from .forksafe import Lock, quiesce

_lock = Lock(reentrant=True)     # serializes every use of LLVM's global context
quiesce(_lock)                   # ... and is held across fork() (see forksafe)
_initialized = False
_masked_tails: bool | None = None      # LLVM's loop-tail option as last set (under _lock)


def compile_threads() -> int:
    """How many modules to compile at once: the CPUs this process may run on
    ($ADJIT_COMPILE_THREADS overrides it; 1 compiles everything on the calling thread)."""
    env = os.environ.get("ADJIT_COMPILE_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _ensure_init() -> None:
    """Initialize the native target and asm printer once (llvm.initialize() raises in 0.50)."""
    global _initialized
    with _lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True
            set_masked_tails(False)


def set_masked_tails(on: bool) -> None:
    """Whether LLVM's loop vectorizer folds a loop's tail into its vector loop under a
    mask (``-prefer-predicate-over-epilogue=predicate-else-scalar-epilogue``: one vector
    loop with masked loads and stores where the CPU has them, else as off) or vectorizes
    it with a vector epilogue and a scalar remainder (off).  On W3/W4/W6 masked tails cut
    LLVM's time by about a third (a vectorized loop compiles as one copy of its body, not
    three) at the same call times.  The option is process-wide: set only under ``_lock``
    (``compile_ir`` sets it for each compile); set explicitly from the first compile on,
    so code never depends on which compile ran first."""
    global _masked_tails
    on = bool(on)
    with _lock:
        if on != _masked_tails:
            llvm.set_option("adjit", "-prefer-predicate-over-epilogue="
                            + ("predicate-else-scalar-epilogue" if on else "scalar-epilogue"))
            _masked_tails = on


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


def target_cpu(cpu: str | None = None) -> str:
    """The CPU a compile targets: ``cpu``, else ``$ADJIT_CPU``, else ``"host"`` (checked:
    ValueError for a name LLVM cannot compile for)."""
    name = _cpu.selected(cpu)
    target_spec(name)
    return name


def target_spec(cpu: str | None = None) -> tuple[str, str]:
    """(LLVM CPU name, feature string) that code for ``cpu`` is generated with (the
    host's detected ones for "host"; a named CPU's own, from LLVM, with features "")."""
    return _cpu.spec(_cpu.selected(cpu), host_info())


def vector_width_bytes() -> int:
    """Width of the widest usable SIMD register: 64 (AVX-512F), 32 (AVX/AVX2) or 16."""
    feats = set(host_info()["features"].split(","))
    if "+avx512f" in feats:
        return 64
    if "+avx" in feats:
        return 32
    return 16


def _target_machine(opt_level: int, cpu: str = _cpu.HOST) -> "llvm.TargetMachine":
    """A fresh target machine for CPU name ``cpu`` (MCJIT takes ownership of the one it
    is given).

    For the host, its CPU name and features are essential: without them LLVM emits no
    AVX code.  A named CPU is given with no features (LLVM takes the CPU's own).
    reloc='default' + codemodel='jitdefault' (large code model on x86-64) give objects that
    RuntimeDyld can place anywhere, which the object cache relies on.
    """
    name, features = target_spec(cpu)
    target = llvm.Target.from_triple(host_info()["triple"])
    return target.create_target_machine(cpu=name, features=features,
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
