"""NVPTX code generation for :mod:`adjit.backends.ptx` (part of the target package, the
only place in adjit that touches ``llvmlite.binding``).

LLVM's NVPTX backend exits the whole process (no exception) when asked to lower a call it has
no instruction or libcall for (llvm.exp, llvm.log, f64 exp2/tanh, ...).  emit_ptx therefore
hands the declared functions to the caller's ``check`` before optimization and again after it
(the optimizer may introduce intrinsics), and only then runs codegen.
"""
from __future__ import annotations

import llvmlite.binding as llvm

from . import _ensure_init, _lock

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
