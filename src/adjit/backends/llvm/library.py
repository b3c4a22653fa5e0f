"""adjit's native support library: the GEMM kernels, compiled once per process.

Every compiled model calls ``adjit_gemm_f32`` / ``adjit_gemm_f64``; compiling them into
each model's module would cost most of a second per compile.  Instead they are built
once (or loaded from the disk cache in milliseconds) and bound by name, so a model's
module only declares them.
"""
from __future__ import annotations

import threading

from llvmlite import ir

from .gemm import _ENTRY_ARGS, emit_gemm, gemm_symbol
from .target import add_symbol, compile_ir

_lock = threading.Lock()
_library = None


def _ensure_library(opt_level: int = 3, cache: bool | None = None):
    global _library
    with _lock:
        if _library is None:
            module = ir.Module(name="adjit_library")
            for dt in ("f32", "f64"):
                emit_gemm(module, dt)
            lib = compile_ir(str(module), opt_level=opt_level, cache=cache, name="adjit_library")
            for dt in ("f32", "f64"):
                add_symbol(gemm_symbol(dt), lib.address(gemm_symbol(dt)))
            _library = lib
    return _library


def declare_gemm(module: ir.Module, dtype: str) -> ir.Function:
    """Declare ``adjit_gemm_<dtype>`` in ``module`` (bound to the library at JIT time)."""
    _ensure_library()
    name = gemm_symbol(dtype)
    if name in module.globals:
        return module.globals[name]
    T = ir.FloatType() if dtype == "f32" else ir.DoubleType()
    return ir.Function(module, ir.FunctionType(ir.VoidType(), _ENTRY_ARGS(T)), name=name)
