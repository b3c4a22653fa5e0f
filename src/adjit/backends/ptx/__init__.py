"""The ptx backend: the same scheduled graph as the CPU backend, lowered to CUDA kernels.

``aj.compile(outputs, backend="ptx")`` plans buffers with the llvm backend's :class:`Plan`,
lowers every step to one kernel (:mod:`.lower`, :mod:`.matmul`, written once against
:mod:`.kernel`), checks the module against what NVPTX can emit (:mod:`.support`) and emits PTX
through :mod:`adjit.backends.lowering.target`.  Compiling and ``f.ptx`` need no GPU.  Calling runs
the launch sequence (:mod:`.runtime`) on the first CUDA GPU through ``cuda-python``
(:mod:`.device`); without one the call raises :class:`NoCudaError`.  With ``emulate=True``
the same kernels, built for the host, run over their thread grid on the CPU
(:mod:`.emulator`) -- how they are tested where no GPU is.

Options: ``arch`` ("sm_80" by default; on a GPU the device's own architecture is used unless
``arch`` is given), ``opt_level`` (0-3), ``emulate``, ``cache`` (the emulation's object
cache, as for the llvm backend), ``precision`` ("fp32", exact, by default; "tf32" or
"bf16": float32 matrix products on tensor cores, :mod:`.matmul_mma`) and ``graphs``
(True, the default: each batch size's launch sequence is captured once and replayed as a
CUDA graph; False: kernel by kernel; see docs/ptx.md "Launch replay") and ``resident`` (True: ``f.bind(...)``
keeps the bound arrays on the device, :mod:`.resident`; default False).

>>> import adjit as aj, numpy as np
>>> x = aj.input("x", (None, 3), "float32")
>>> f = aj.compile(aj.sum(aj.exp(x), axis=1), backend="ptx", emulate=True, opt_level=1)
>>> f(x=np.zeros((2, 3), "float32")).tolist()
[3.0, 3.0]
>>> ".entry k0_fused" in f.ptx
True
"""
from __future__ import annotations

from ...ir import Graph
from ..lowering.plan import Plan
from .kernel import CPU, GPU
from .lower import NTID, Lowering
from .runtime import PtxFunction, split_kernels
from .sources import ARCHES, DEFAULT_ARCH, PtxasError, Sources, assemble, check_arch
from .support import CudaError, NoCudaError, UnsupportedOnTarget, check_declared
from ..protocol import Backend

__all__ = ["build", "PtxFunction", "NoCudaError", "CudaError", "UnsupportedOnTarget",
           "PtxasError", "assemble", "split_kernels", "ARCHES"]


def build(graph: Graph, arch: str | None = None, opt_level: int = 3, emulate: bool = False,
          cache: bool | None = None, precision: str = "fp32",
          updates: dict[int, str] | None = None, graphs: bool = True,
          resident: bool = False) -> PtxFunction:
    """Kernels, launch sequence and PTX for ``graph``; see the module docstring.
    ``precision``: "fp32", or "tf32"/"bf16" for float32 products on tensor cores;
    ``updates`` maps output indices to the input whose device buffer that output
    overwrites (``updates=``); ``graphs=False`` launches kernel by kernel instead of
    replaying a captured graph; ``resident=True``: a bound function keeps its bound arrays on the
    device (:mod:`.resident`)."""
    explicit = arch is not None
    updates = updates or {}
    plan = Plan(graph, in_place=frozenset(updates), epilogues=True)
    launches: list = []

    def lower_gpu() -> str:
        gpu = Lowering(plan, GPU, precision)
        ir_text, gpu_launches = gpu.lower()
        # refuse what NVPTX cannot lower before LLVM parses anything
        check_declared([f.name for f in gpu.module.functions if f.is_declaration],
                       "adjit lowering")
        if launches:   # both flavours come from the same code: same kernels, same order
            assert [L.kernel for L in gpu_launches] == [L.kernel for L in launches]
        else:
            launches.extend(gpu_launches)
        return ir_text

    sources = Sources(lower_gpu, check_arch(arch or DEFAULT_ARCH), opt_level)
    if emulate:   # PTX is made only when asked for (f.ptx): the emulation runs host code
        from ..lowering.target import compile_ir
        from .emulator import EmulatedDevice
        cpu_ir, cpu_launches = Lowering(plan, CPU, precision).lower()
        launches.extend(cpu_launches)
        jit = compile_ir(cpu_ir, opt_level=opt_level, cache=cache, name="adjit_ptx_emulation")
        return PtxFunction(plan, launches, sources, lambda: EmulatedDevice(jit, NTID),
                           updates, graphs, resident)
    sources.ptx(sources.arch)        # emit now: errors surface at compile time
    names = sorted({L.kernel for L in launches})

    def cuda_device():
        from .device import CudaDevice
        dev = CudaDevice()
        use = sources.arch if explicit or dev.arch not in ARCHES else dev.arch
        dev.load(sources.ptx(use), names)
        return dev
    return PtxFunction(plan, launches, sources, cuda_device, updates, graphs, resident)


# ``updates=`` are written on the device, into the input's own buffer
BACKEND = Backend("ptx", build, precisions=("fp32", "tf32", "bf16"), in_place_updates=True)
