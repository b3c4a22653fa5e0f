"""adjit's native support library: the GEMM kernels, compiled once per process, dtype and
target CPU.

Every compiled model calls the GEMM of the CPU it is compiled for: ``adjit_gemm_f32`` /
``adjit_gemm_f64`` for the host, ``adjit_gemm_f32__x86_64_v3`` for ``cpu="x86-64-v3"``
(:func:`.gemm.gemm_symbol`).  Each library is compiled for its CPU (its instructions, its
tiles and blocking from ``describe(cpu)``), so a model compiled for an AVX2 CPU on an
AVX-512 host runs AVX2 code throughout.  Compiling the GEMM into each model's module would
cost most of a second per compile.  Instead each library is built once (or loaded from
the disk cache in milliseconds, without emitting its IR) and bound by name, so a model's
module only declares it.  Every library's workspace need is within
:data:`.gemm.MAX_WORKSPACE_BYTES`, the size of every GEMM workspace in the process.
"""
from __future__ import annotations

from llvmlite import ir

from .gemm import _ENTRY_ARGS, emit_gemm, gemm_symbol
from .fncache import compile_once
from ..lowering.target import add_symbol, target_cpu
from ..lowering.target.forksafe import Lock

__all__ = ["declare_gemm", "ensure_library", "library_for_symbol"]

_lock = Lock()     # fresh in a forked child (a build in another thread is redone)
_libraries: dict = {}
DTYPES = ("f32", "f64")


def ensure_library(dtype: str, cpu: str | None = None, opt_level: int = 3,
                   cache: bool | None = None):
    """Compile (or load from the disk cache) the GEMM for one dtype and CPU (None:
    ``$ADJIT_CPU`` or the host), once per process, and bind its symbol.

    Each (dtype, CPU) is its own module, built on first use: a float32 model never waits
    for the float64 kernels (about 1 s of the 2 s a cold build of both takes).
    """
    from ..lowering.target.description import describe
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'f32' or 'f64', got {dtype!r}")
    cpu = target_cpu(cpu)
    with _lock:
        lib = _libraries.get((dtype, cpu))
        if lib is None:
            name = gemm_symbol(dtype, cpu)

            def make_ir() -> str:
                module = ir.Module(name=f"adjit_library_{dtype}")
                emit_gemm(module, dtype, target=describe(cpu), name=name)
                return str(module)
            label = "adjit_library_" + name[len("adjit_gemm_"):]
            lib = compile_once(label, make_ir, opt_level, cache, cpu=cpu)
            # (a CPU the host may not implement: the symbol is bound so that models
            # compiled for it link; their entries refuse to run, see JitModule.address)
            add_symbol(name, lib.link_address(name))
            _libraries[dtype, cpu] = lib
    return lib


def library_for_symbol(name: str, cpus=()) -> tuple[str, str] | None:
    """(dtype, cpu) of GEMM symbol ``name`` when it is the host's or one of ``cpus``'
    (the CPU a cached module was compiled for), else None."""
    for dt in DTYPES:
        for cpu in ("host", *cpus):
            if gemm_symbol(dt, cpu) == name:
                return dt, cpu
    return None


def declare_gemm(module: ir.Module, dtype: str, cpu: str | None = None) -> ir.Function:
    """Declare the GEMM of ``dtype`` for ``cpu`` (None: ``$ADJIT_CPU`` or the host) in
    ``module``, bound to its library (built now if needed) at JIT time."""
    cpu = target_cpu(cpu)
    ensure_library(dtype, cpu)
    name = gemm_symbol(dtype, cpu)
    if name in module.globals:
        return module.globals[name]
    T = ir.FloatType() if dtype == "f32" else ir.DoubleType()
    return ir.Function(module, ir.FunctionType(ir.VoidType(), _ENTRY_ARGS(T)), name=name)
