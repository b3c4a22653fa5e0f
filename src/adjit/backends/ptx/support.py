"""What the ptx target can emit, and the errors it raises.

LLVM's NVPTX backend has no instruction and no libcall for ``llvm.exp``, ``llvm.log``,
``llvm.log2``, f64 ``llvm.exp2``, f64 ``llvm.tanh``, ``llvm.pow``, ``llvm.sin`` (without
fast-math) and friends; asked to lower one, it prints "no libcall available" and *exits the
process*.  So every module is checked against a whitelist of the functions it may declare,
before LLVM sees it and again after LLVM's optimizer (which may add intrinsics of its own), and
anything else is refused with :class:`UnsupportedOnTarget`.  The math itself comes from
:mod:`adjit.backends.lowering.mathfn`, written with fma/fabs/copysign and integer operations only.
"""
from __future__ import annotations

from ...ir import AdjitError


class UnsupportedOnTarget(AdjitError, NotImplementedError):
    """The graph needs something the ptx target cannot emit; the message names it."""


class NoCudaError(AdjitError, RuntimeError):
    """No CUDA driver, GPU or ``cuda-python`` here: the ptx function cannot run."""


def _per_float(*names: str) -> set[str]:
    return {f"llvm.{n}.{t}" for n in names for t in ("f32", "f64")}


#: Exactly what adjit's own ptx lowering may declare.
EMITTED = frozenset({
    *(f"llvm.nvvm.read.ptx.sreg.{r}.x" for r in ("tid", "ctaid", "ntid", "nctaid")),
    "llvm.nvvm.barrier0",
    "llvm.nvvm.mma.m16n8k8.row.col.tf32", "llvm.nvvm.mma.m16n8k16.row.col.bf16",   # mma.sync
    *_per_float("fma", "fabs", "copysign", "sqrt", "maximum", "minimum"),
    *_per_float("floor", "ceil", "roundeven"),      # cvt.rmi / cvt.rpi / cvt.rni
})

#: Families LLVM itself introduces (auto-upgrade of barrier0, the optimizer's integer min/max,
#: lifetime markers, memset/memcpy of loops, fmuladd from contraction); all lower natively.
_LLVM_FAMILIES = ("llvm.nvvm.barrier.cta.sync", "llvm.nvvm.read.ptx.sreg.",
                  "llvm.smin.", "llvm.smax.", "llvm.umin.", "llvm.umax.", "llvm.abs.",
                  "llvm.lifetime.", "llvm.assume", "llvm.experimental.noalias.scope.decl",
                  "llvm.memset.", "llvm.memcpy.", "llvm.memmove.", "llvm.fmuladd.")


def allowed(name: str) -> bool:
    """Whether a module may declare function ``name`` and still be handed to NVPTX codegen."""
    return name in EMITTED or name.startswith(_LLVM_FAMILIES)


def check_declared(names, stage: str = "") -> None:
    """Raise :class:`UnsupportedOnTarget` naming every declared function not allowed."""
    bad = sorted(n for n in names if not allowed(n))
    if bad:
        where = f" ({stage})" if stage else ""
        raise UnsupportedOnTarget(
            f"the ptx target cannot emit {', '.join(bad)}{where}; LLVM's NVPTX backend has no "
            "lowering for it (it would end the process), so adjit refuses the module")


class CudaError(AdjitError, RuntimeError):
    """A CUDA driver call failed on a machine that has a GPU; the message names the call."""
