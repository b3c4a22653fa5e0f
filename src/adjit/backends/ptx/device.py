"""Where ptx kernels run: a CUDA GPU through the driver API, behind a small device interface.

A device offers ``alloc(nbytes) -> address``, ``free``, ``upload(address, array)``,
``download(array, address)``, ``launch(kernel, grid, block, pointers, ints)`` and
``synchronize()``; :mod:`.runtime` drives any device through these, so the CPU grid emulation
(:mod:`.emulator`) and the GPU run the same launch sequence.  Copies and launches are queued
on the device's one stream in order: an upload may return before it is done (its source
must stay unchanged until ``synchronize``), a download is complete after ``synchronize``.
Beside these: ``host_alloc(nbytes)`` / ``host_free(array)`` (page-locked host memory the
runtime stages uploads and downloads in), and a captured launch list replayed in one call
(``begin_capture()``, the launches, ``end_capture() -> graph``, ``launch_graph(graph)``,
``free_graph(graph)``): a CUDA graph on the GPU, a recorded list in the emulation.

:class:`CudaDevice` uses ``cuda-python`` (the ``adjit[cuda]`` extra), imported only when a
compiled function is first called.  Without the package, a driver or a GPU it raises
:class:`~.support.NoCudaError` (an :class:`adjit.AdjitError`) saying which is missing.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .support import CudaError, NoCudaError


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver          # cuda-python 12.x layout
        except ImportError:
            raise NoCudaError("no CUDA driver/GPU found: the cuda-python package is not "
                              "installed (pip install 'adjit[cuda]')") from None
    return driver


class CudaDevice:
    """GPU 0 of this machine (its primary context); :meth:`load` loads the kernels.

    Every copy and launch goes to one non-blocking stream of its own (``self.stream``), which
    a CUDA graph is captured from; ``synchronize`` waits for that stream.
    """

    stream = 0                  # (until __init__ creates the stream: the legacy stream)

    def __init__(self):
        cu = self.cu = _driver()
        try:
            self._check(cu.cuInit(0), "cuInit")
        except NoCudaError:
            raise
        except Exception as e:                      # the driver library itself is missing
            raise NoCudaError(f"no CUDA driver/GPU found: {type(e).__name__}: {e}") from None
        if self._check(cu.cuDeviceGetCount(), "cuDeviceGetCount") < 1:
            raise NoCudaError("no CUDA driver/GPU found: the CUDA driver sees no device")
        self.device = self._check(cu.cuDeviceGet(0), "cuDeviceGet")
        raw = self._check(cu.cuDeviceGetName(128, self.device), "cuDeviceGetName")
        self.name = bytes(raw).split(b"\0", 1)[0].decode(errors="replace")
        attr = cu.CUdevice_attribute
        major = self._check(cu.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device), "cuDeviceGetAttribute")
        minor = self._check(cu.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device), "cuDeviceGetAttribute")
        self.arch = f"sm_{major}{minor}"
        self.context = self._check(cu.cuDevicePrimaryCtxRetain(self.device),
                                   "cuDevicePrimaryCtxRetain")
        self.activate()
        self.functions: dict = {}
        flags = int(getattr(getattr(cu, "CUstream_flags", None), "CU_STREAM_NON_BLOCKING", 1))
        self.stream = self._check(cu.cuStreamCreate(flags), "cuStreamCreate")
        self._pinned: dict[int, int] = {}     # id(host array) -> its page-locked address

    def load(self, ptx: str, kernels: list[str]) -> None:
        """Load a PTX module (the driver compiles it for this GPU) and find ``kernels``."""
        cu = self.cu
        self.activate()
        image = np.frombuffer(ptx.encode() + b"\0", dtype=np.uint8)   # NUL-terminated PTX
        self.module = self._check(cu.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData")
        self.functions = {k: self._check(cu.cuModuleGetFunction(self.module, k.encode()),
                                         f"cuModuleGetFunction({k})") for k in kernels}

    def _check(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.cu.CUresult.CUDA_SUCCESS:
            _, msg = self.cu.cuGetErrorString(err)
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            if what in ("cuInit", "cuDeviceGetCount"):
                raise NoCudaError(f"no CUDA driver/GPU found: {what} failed: {text}")
            raise CudaError(f"{what} failed: {err!r}: {text}")
        return values[0] if len(values) == 1 else tuple(values)

    def activate(self) -> None:
        """Make this device's context current in the calling thread."""
        self._check(self.cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.cu.cuMemAlloc(max(int(nbytes), 1)), "cuMemAlloc"))

    def free(self, ptr: int) -> None:
        self._check(self.cu.cuMemFree(ptr), "cuMemFree")

    def host_alloc(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of page-locked host memory (uint8), so copies from and to it are DMA
        transfers that overlap the host; give it back with :meth:`host_free`."""
        n = max(int(nbytes), 1)
        addr = int(self._check(self.cu.cuMemHostAlloc(n, 0), "cuMemHostAlloc"))
        arr = np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr))
        self._pinned[id(arr)] = addr
        return arr

    def host_free(self, arr: np.ndarray) -> None:
        addr = self._pinned.pop(id(arr), None)
        if addr is not None:
            self._check(self.cu.cuMemFreeHost(addr), "cuMemFreeHost")

    def upload(self, ptr: int, arr: np.ndarray) -> None:
        """Queue a host -> device copy (from pageable memory the driver stages the data
        before returning; from page-locked memory it must stay unchanged until
        :meth:`synchronize`)."""
        if arr.nbytes:
            self._check(self.cu.cuMemcpyHtoDAsync(ptr, arr.ctypes.data, arr.nbytes, self.stream),
                        "cuMemcpyHtoDAsync")

    def download(self, arr: np.ndarray, ptr: int) -> None:
        """Queue a device -> host copy: ``arr`` holds the data after :meth:`synchronize`."""
        if arr.nbytes:
            self._check(self.cu.cuMemcpyDtoHAsync(arr.ctypes.data, ptr, arr.nbytes, self.stream),
                        "cuMemcpyDtoHAsync")

    def launch(self, kernel: str, grid: int, block: int, pointers, ints) -> None:
        values = [ctypes.c_uint64(p) for p in pointers] + [ctypes.c_int64(i) for i in ints]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        # (the driver copies the argument values when the launch is queued or captured)
        self._check(self.cu.cuLaunchKernel(self.functions[kernel], grid, 1, 1, block, 1, 1, 0,
                                           self.stream, ctypes.addressof(params), 0),
                    f"launch of {kernel}")

    # -- CUDA graphs: the launch sequence captured once, replayed by one call -------------
    capturing = False           # between begin_capture and end_capture

    def begin_capture(self) -> None:
        """Start capturing this device's stream.  Relaxed mode: the capturing thread may
        still allocate and copy on *other* streams (a call of another function, or a
        nested call run aside, made while Python runs between the captured launches)."""
        mode = self.cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
        self._check(self.cu.cuStreamBeginCapture(self.stream, mode), "cuStreamBeginCapture")
        self.capturing = True

    def end_capture(self):
        """End the capture; the instantiated graph ``(graph, executable)``."""
        self.capturing = False
        graph = self._check(self.cu.cuStreamEndCapture(self.stream), "cuStreamEndCapture")
        try:
            inst = getattr(self.cu, "cuGraphInstantiateWithFlags", None)
            if inst is None:                         # (cuda-python 12+: flags form)
                inst = self.cu.cuGraphInstantiate
            exe = self._check(inst(graph, 0), "cuGraphInstantiate")
        except Exception:
            self.cu.cuGraphDestroy(graph)
            raise
        return graph, exe

    def launch_graph(self, graph) -> None:
        self._check(self.cu.cuGraphLaunch(graph[1], self.stream), "cuGraphLaunch")

    def free_graph(self, graph) -> None:
        self._check(self.cu.cuGraphExecDestroy(graph[1]), "cuGraphExecDestroy")
        self._check(self.cu.cuGraphDestroy(graph[0]), "cuGraphDestroy")

    def synchronize(self) -> None:
        self._check(self.cu.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    def __repr__(self):
        return f"<CudaDevice {self.name} {self.arch}>"
