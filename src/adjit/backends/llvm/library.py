"""adjit's native support library: the GEMM kernels, compiled once per process and dtype.

Every compiled model calls ``adjit_gemm_f32`` / ``adjit_gemm_f64``; compiling them into
each model's module would cost most of a second per compile.  Instead they are built
once (or loaded from the disk cache in milliseconds, without emitting their IR) and bound by name, so a model's
module only declares them.
"""
from __future__ import annotations

from llvmlite import ir

from .gemm import _ENTRY_ARGS, emit_gemm, gemm_symbol
from .fncache import compile_once
from ..lowering.target import add_symbol
from ..lowering.target.forksafe import Lock

_lock = Lock()     # fresh in a forked child (a build in another thread is redone)
_libraries: dict = {}


def _ensure_library(dtype: str, opt_level: int = 3, cache: bool | None = None):
    """Compile (or load from the disk cache) the GEMM for one dtype, once per process.

    Each dtype is its own module, built on first use: a float32 model never waits for
    the float64 kernels (about 1 s of the 2 s a cold build of both takes).
    """
    with _lock:
        lib = _libraries.get(dtype)
        if lib is None:
            def make_ir() -> str:
                module = ir.Module(name=f"adjit_library_{dtype}")
                emit_gemm(module, dtype)
                return str(module)
            lib = compile_once(f"adjit_library_{dtype}", make_ir, opt_level, cache)
            add_symbol(gemm_symbol(dtype), lib.address(gemm_symbol(dtype)))
            _libraries[dtype] = lib
    return lib


def declare_gemm(module: ir.Module, dtype: str) -> ir.Function:
    """Declare ``adjit_gemm_<dtype>`` in ``module`` (bound to the library at JIT time)."""
    _ensure_library(dtype)
    name = gemm_symbol(dtype)
    if name in module.globals:
        return module.globals[name]
    T = ir.FloatType() if dtype == "f32" else ir.DoubleType()
    return ir.Function(module, ir.FunctionType(ir.VoidType(), _ENTRY_ARGS(T)), name=name)
