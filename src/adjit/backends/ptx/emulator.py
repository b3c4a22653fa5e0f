"""The CPU grid emulation: the GPU's kernels, run over their thread grid on the host.

The kernels are the same code as the GPU's (see :mod:`.kernel`), built in the CPU flavour:
each takes the grid size as its first argument, loops over the blocks, and runs every
per-thread region as a loop over the block's threads, so each barrier is the end of a loop.
:class:`EmulatedDevice` offers the device interface of :mod:`.device` over host memory, so
:mod:`.runtime` runs exactly the launch sequence, buffer plan, uploads and downloads it would
run on a GPU.  It is how the kernels are checked against the interpreter where no GPU is.
"""
from __future__ import annotations

import ctypes

import numpy as np

ALIGN = 64


class EmulatedDevice:
    """Host memory and the CPU-flavour kernels of ``jit`` (a JitModule), ``ntid`` threads each."""

    name = "CPU grid emulation"
    arch = "emulated"

    def __init__(self, jit, ntid: int):
        self.jit, self.ntid = jit, ntid
        self._buffers: dict[int, np.ndarray] = {}
        self._functions: dict[str, object] = {}
        self.launches = 0

    def alloc(self, nbytes: int) -> int:
        raw = np.empty(max(int(nbytes), 1) + ALIGN, dtype=np.uint8)
        skip = (-raw.ctypes.data) % ALIGN
        ptr = raw.ctypes.data + skip
        self._buffers[ptr] = raw          # kept alive until freed
        return ptr

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def upload(self, ptr: int, arr: np.ndarray) -> None:
        ctypes.memmove(ptr, arr.ctypes.data, arr.nbytes)

    def download(self, arr: np.ndarray, ptr: int) -> None:
        ctypes.memmove(arr.ctypes.data, ptr, arr.nbytes)

    def launch(self, kernel: str, grid: int, block: int, pointers, ints) -> None:
        if block != self.ntid:
            raise ValueError(f"{kernel}: compiled for {self.ntid} threads per block, "
                             f"launched with {block}")
        fn = self._functions.get(kernel)
        if fn is None:
            proto = ctypes.CFUNCTYPE(None, ctypes.c_int64, *([ctypes.c_void_p] * len(pointers)),
                                     *([ctypes.c_int64] * len(ints)))
            fn = self._functions[kernel] = proto(self.jit.address(kernel))
        fn(grid, *pointers, *ints)
        self.launches += 1

    def synchronize(self) -> None:
        pass

    def activate(self) -> None:
        pass

    def __repr__(self):
        return f"<EmulatedDevice {len(self._buffers)} buffers>"
