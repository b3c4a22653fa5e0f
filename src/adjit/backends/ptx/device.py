"""Where ptx kernels run: a CUDA GPU through the driver API, behind a small device interface.

A device offers ``alloc(nbytes) -> address``, ``free``, ``upload(address, array)``,
``download(array, address)``, ``launch(kernel, grid, block, pointers, ints)`` and
``synchronize()``; :mod:`.runtime` drives any device through these, so the CPU grid emulation
(:mod:`.emulator`) and the GPU run the same launch sequence.

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
    """GPU 0 of this machine (its primary context); :meth:`load` loads the kernels."""

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

    def upload(self, ptr: int, arr: np.ndarray) -> None:
        if arr.nbytes:
            self._check(self.cu.cuMemcpyHtoD(ptr, arr.ctypes.data, arr.nbytes), "cuMemcpyHtoD")

    def download(self, arr: np.ndarray, ptr: int) -> None:
        if arr.nbytes:
            self._check(self.cu.cuMemcpyDtoH(arr.ctypes.data, ptr, arr.nbytes), "cuMemcpyDtoH")

    def launch(self, kernel: str, grid: int, block: int, pointers, ints) -> None:
        values = [ctypes.c_uint64(p) for p in pointers] + [ctypes.c_int64(i) for i in ints]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        self._check(self.cu.cuLaunchKernel(self.functions[kernel], grid, 1, 1, block, 1, 1, 0, 0,
                                           ctypes.addressof(params), 0), f"launch of {kernel}")

    def synchronize(self) -> None:
        self._check(self.cu.cuCtxSynchronize(), "cuCtxSynchronize")

    def __repr__(self):
        return f"<CudaDevice {self.name} {self.arch}>"
