"""Cross-compiling: LLVM IR to object code or assembly for a CPU that is not the host's
(an aarch64 CPU on an x86-64 host, or any named CPU), with no JIT.

    >>> from adjit.backends.lowering.target.cross import emit_assembly
    >>> from adjit.backends.lowering.target.description import AARCH64_TRIPLE
    >>> ir = "define float @f(float %x) {\\n  %y = fmul float %x, %x\\n  ret float %y\\n}\\n"
    >>> "fmul" in emit_assembly(ir, "neoverse-v1", AARCH64_TRIPLE)
    True

The module is optimized with the same pipeline as a JIT compile (opt level 3, loop and SLP
vectorization), for the named CPU's target machine (its features are LLVM's for the name),
so the assembly is what the CPU would run.  Every LLVM target is initialized on first use,
under the lock on LLVM's global context.
"""
from __future__ import annotations

import llvmlite.binding as llvm

from . import cpu as _cpu
from .machine import _ensure_init, _lock

__all__ = ["emit_object", "emit_assembly", "target_machine"]

_all_initialized = False


def target_machine(cpu: str, triple: str, opt_level: int = 3) -> "llvm.TargetMachine":
    """A target machine for CPU ``cpu`` (checked: ValueError for a name LLVM does not
    know) on ``triple``; position-independent code, the default code model."""
    global _all_initialized
    _ensure_init()
    if cpu == _cpu.HOST:
        raise ValueError("cross-compiling needs a named CPU, not 'host'")
    _cpu.check(cpu, triple)
    with _lock:
        if not _all_initialized:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            _all_initialized = True
        target = llvm.Target.from_triple(triple)
        return target.create_target_machine(cpu=cpu, features="", opt=opt_level,
                                            reloc="pic", codemodel="default")


def _optimized(ir_text: str, tm, opt_level: int):
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    if opt_level > 0:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        pto.loop_vectorization = pto.slp_vectorization = pto.loop_unrolling = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(ir_text: str, cpu: str, triple: str, opt_level: int = 3) -> bytes:
    """Object code (ELF on Linux triples) of ``ir_text`` for ``cpu`` on ``triple``."""
    tm = target_machine(cpu, triple, opt_level)
    with _lock:
        return tm.emit_object(_optimized(ir_text, tm, opt_level))


def emit_assembly(ir_text: str, cpu: str, triple: str, opt_level: int = 3) -> str:
    """Assembly text of ``ir_text`` for ``cpu`` on ``triple``."""
    tm = target_machine(cpu, triple, opt_level)
    with _lock:
        return tm.emit_assembly(_optimized(ir_text, tm, opt_level))
