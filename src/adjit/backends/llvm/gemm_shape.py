"""The GEMM's register tile and cache blocking, derived from the target description.

:func:`gemm_params` gives, for a dtype and a :class:`~..lowering.target.description.CpuTarget`
(default: the CPU code is generated for, ``cpu=`` / ``$ADJIT_CPU`` / the host), the dict
the kernels are emitted from::

    VL  lanes of one vector (vector_bytes / element size)
    NV  vectors across a tile row; NR = NV * VL columns
    MR  rows of the register tile (MR x NR accumulators in MR * NV vectors)
    KC  K block: a KC x NR packed B sliver stays in L1
    MC  M block (multiple of MR): the MC x KC packed A panel stays in L2
    NC  N block (multiple of NR): the KC x NC packed B panel (bounded) in L3
    PV  lanes of the in-register transposes that pack transposed operands
    FMA whether the CPU fuses multiply-add (else fmul + fadd)

Register tile -- every vector register the k loop keeps live is counted: MR*NV
accumulators + NV vectors of B + 1 broadcast of A <= vector_registers.  Among the tiles
that fit, with 2 <= NV <= max(2, 64 // vector_bytes) (a tile row is at least two vectors
and, past that, at most one 64-byte line) and MR <= 8 (taller tiles measured 3-7 % slower
on AVX-512), the one with the most accumulators wins, ties to the taller tile.  So:

    =================  ==========  ======================  =====================
    ISA (registers)    bytes       f32 MR x NR (VL)        f64 MR x NR (VL)
    =================  ==========  ======================  =====================
    SSE (16)           16          6 x 8   (4)             6 x 4   (2)
    AVX2 (16)          32          6 x 16  (8)             6 x 8   (4)
    AVX-512 (32)       64          8 x 32  (16)            8 x 16  (8)
    NEON (32)          16          8 x 12  (4)             8 x 6   (2)
    =================  ==========  ======================  =====================

Cache blocking (power-of-two KC, sizes from the description's l1d / l2 / l3):

* KC: the power of two nearest (in log scale) to ``l1d / 2 / (NR * size)``, in [64, 512]
  (a B sliver in about half of L1d: 256 on AVX2's 32 KiB and AVX-512's 48 KiB L1d);
* MC: ``min(l2 / 3, 144 KiB) / (KC * size)`` rounded down to a multiple of MR (the A
  panel in a third of L2, at most 144 KiB: the f64 panel tuned on a 512 KiB L2).  Single
  core on Zen 5 (1 MiB L2, AVX-512 tiles, KC 256): f64 MC 72 ran 3-8 % faster than 64,
  128 or 256 (1024³, W4's and W2's products); f32 was flat from MC 120 to 512; KC 192
  instead of 256 cost f64 5-12 %;
* NC: ``min(l3 / 8, 2 MiB) / (KC * size)`` rounded down to a multiple of NR, at most 4096
  (the B panel is per thread: bounded so the workspace stays a few MiB).

These clamps bound every target's panels: KC <= MAX_KC, the A panel MC x KC <=
A_PANEL_BYTES (MC = MR only where a third of L2 holds less, and MAX_MR * MAX_KC * 8 is
below it), the B panel KC x NC <= B_PANEL_BYTES (NC = NR only where the L3 share holds
less, and NR * size <= 128 bytes).  So one workspace size serves the GEMM of every CPU
in a process (``gemm.MAX_WORKSPACE_BYTES``); :func:`derive` checks it.
"""
from __future__ import annotations

import math

__all__ = ["gemm_params", "tile_shape", "KIB", "MAX_KC", "A_PANEL_BYTES", "B_PANEL_BYTES"]

KIB = 1024
MAX_MR = 8
MAX_NC = 4096
MIN_KC, MAX_KC = 64, 512
A_PANEL_BYTES = 144 * KIB       # packed A (MC x KC) at most
B_PANEL_BYTES = 2048 * KIB      # packed B (KC x NC) at most


def _size(dtype: str) -> int:
    if dtype not in ("f32", "f64"):
        raise ValueError(f"dtype must be 'f32' or 'f64', got {dtype!r}")
    return 4 if dtype == "f32" else 8


def tile_shape(vector_registers: int, vector_bytes: int) -> tuple[int, int]:
    """(MR, NV) by the register rule of the module docstring."""
    best = None
    for nv in range(2, max(2, 64 // vector_bytes) + 1):
        mr = min(MAX_MR, (vector_registers - nv - 1) // nv)
        if mr < 1:
            continue
        key = (mr * nv, mr)
        if best is None or key > best[0]:
            best = (key, mr, nv)
    if best is None:
        raise ValueError(f"no GEMM tile fits {vector_registers} vector registers")
    return best[1], best[2]


def _pow2_near(x: float) -> int:
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def derive(target, dtype: str) -> dict:
    """The parameters for ``dtype`` on ``target`` (a CpuTarget)."""
    esz = _size(dtype)
    VL = target.lanes(dtype)
    MR, NV = tile_shape(target.vector_registers, target.vector_bytes)
    NR = NV * VL
    KC = min(MAX_KC, max(MIN_KC, _pow2_near(target.l1d / 2 / (NR * esz))))
    MC = max(MR, min(target.l2 // 3, A_PANEL_BYTES) // (KC * esz) // MR * MR)
    NC = min(MAX_NC // NR * NR,
             max(NR, min(target.l3 // 8, B_PANEL_BYTES) // (KC * esz) // NR * NR))
    PV = min(VL, 32 // esz)     # 8 x 8 (f64: 4 x 4) transposes at most, as measured
    if MC * KC * esz > A_PANEL_BYTES or KC * NC * esz > B_PANEL_BYTES:
        raise ValueError(f"GEMM panels for {target.name!r} ({dtype}: MC {MC}, KC {KC}, "
                         f"NC {NC}) exceed the bound every workspace is sized for")
    return dict(MR=MR, VL=VL, NV=NV, NR=NR, KC=KC, MC=MC, NC=NC, PV=PV, FMA=target.fma)


def gemm_params(dtype: str, target=None) -> dict:
    """Blocking parameters for ``dtype`` ('f32'/'f64') on ``target`` (a CpuTarget; None:
    the description of the CPU code is generated for, see :func:`.target.target_cpu`)."""
    if target is None:
        from ..lowering.target.description import describe
        from ..lowering.target.machine import target_cpu
        target = describe(target_cpu())
    return derive(target, dtype)
