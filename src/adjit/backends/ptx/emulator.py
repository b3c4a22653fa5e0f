"""The CPU grid emulation: the GPU's kernels, run over their thread grid on the host.

The kernels are the same code as the GPU's (see :mod:`.kernel`), built in the CPU flavour:
each takes the grid size as its first argument, loops over the blocks, and runs every
per-thread region as a loop over the block's threads, so each barrier is the end of a loop.
:class:`EmulatedDevice` offers the device interface of :mod:`.device` over host memory, so
:mod:`.runtime` runs exactly the launch sequence, buffer plan, uploads and downloads it would
run on a GPU.  It is how the kernels are checked against the interpreter where no GPU is.

It also stands in for what a GPU offers beside kernels: page-locked host memory is plain
host memory, and a captured launch sequence (a CUDA graph on the GPU) is the recorded list of
launches, run again by :meth:`EmulatedDevice.launch_graph` -- launches made while capturing
are recorded, not run, as in CUDA stream capture.  It counts what the runtime asks of it
(``uploads``, ``downloads`` and their bytes, ``launches``, ``captures``, ``graph_launches``),
which is how the tests check that a step moves only what it must.
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
        self._recording: list | None = None
        self.reset_counts()

    def reset_counts(self) -> None:
        self.launches = self.uploads = self.downloads = 0
        self.upload_bytes = self.download_bytes = 0
        self.captures = self.graph_launches = 0

    def counts(self) -> dict[str, int]:
        """What was asked of the device since the last :meth:`reset_counts`."""
        return {k: getattr(self, k) for k in ("uploads", "downloads", "upload_bytes",
                                              "download_bytes", "launches", "captures",
                                              "graph_launches")}

    def alloc(self, nbytes: int) -> int:
        raw = np.empty(max(int(nbytes), 1) + ALIGN, dtype=np.uint8)
        skip = (-raw.ctypes.data) % ALIGN
        ptr = raw.ctypes.data + skip
        self._buffers[ptr] = raw          # kept alive until freed
        return ptr

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def host_alloc(self, nbytes: int) -> np.ndarray:
        return np.empty(max(int(nbytes), 1), dtype=np.uint8)

    def host_free(self, arr: np.ndarray) -> None:
        pass

    def upload(self, ptr: int, arr: np.ndarray) -> None:
        self._not_capturing("upload")
        ctypes.memmove(ptr, arr.ctypes.data, arr.nbytes)
        self.uploads += 1
        self.upload_bytes += arr.nbytes

    def download(self, arr: np.ndarray, ptr: int) -> None:
        self._not_capturing("download")
        ctypes.memmove(arr.ctypes.data, ptr, arr.nbytes)
        self.downloads += 1
        self.download_bytes += arr.nbytes

    @property
    def capturing(self) -> bool:
        """Whether a launch sequence is being recorded (between begin and end_capture)."""
        return self._recording is not None

    def _not_capturing(self, what: str) -> None:
        if self._recording is not None:     # the runtime captures launches only
            raise RuntimeError(f"{what} while a launch sequence is being captured")

    def begin_capture(self) -> None:
        self._not_capturing("begin_capture")
        self._recording = []

    def end_capture(self) -> list:
        graph, self._recording = self._recording, None
        if graph is None:
            raise RuntimeError("end_capture without begin_capture")
        self.captures += 1
        return graph

    def launch_graph(self, graph: list) -> None:
        self._not_capturing("launch_graph")
        for call in graph:
            self._run(*call)
        self.graph_launches += 1

    def free_graph(self, graph: list) -> None:
        graph.clear()

    def launch(self, kernel: str, grid: int, block: int, pointers, ints) -> None:
        if block != self.ntid:
            raise ValueError(f"{kernel}: compiled for {self.ntid} threads per block, "
                             f"launched with {block}")
        if self._recording is not None:
            self._recording.append((kernel, grid, block, tuple(pointers), tuple(ints)))
            return
        self._run(kernel, grid, block, pointers, ints)

    def _run(self, kernel: str, grid: int, block: int, pointers, ints) -> None:
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
