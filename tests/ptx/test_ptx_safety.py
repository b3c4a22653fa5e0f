"""Nothing can take the Python process down: what NVPTX cannot lower is refused with a Python
exception before LLVM sees it, and a missing GPU is an exception at call time, not at compile.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp

import adjit as aj
from adjit.backends.ptx import NoCudaError, UnsupportedOnTarget
from adjit.backends.ptx.emulator import EmulatedDevice
from adjit.backends.ptx.support import EMITTED, allowed, check_declared
from adjit.ops.registry import make
from adjit.ops.fused import leaf_symbol


@pytest.mark.parametrize("name", ["llvm.exp.f32", "llvm.log.f64", "llvm.log2.f32",
                                  "llvm.exp2.f64", "llvm.tanh.f64", "llvm.pow.f32",
                                  "llvm.sin.f64", "expf", "__nv_expf"])
def test_whitelist_refuses(name):
    assert not allowed(name)
    with pytest.raises(UnsupportedOnTarget, match=name.replace(".", r"\.")):
        check_declared(["llvm.fma.f32", name], "test")


def test_whitelist_allows_what_the_lowering_emits():
    check_declared(sorted(EMITTED) + ["llvm.umin.i64", "llvm.nvvm.barrier.cta.sync.aligned.all"])
    assert isinstance(UnsupportedOnTarget("x"), aj.AdjitError)


def test_unsupported_function_is_refused_at_compile_time():
    """A fused expression holding a function the printer cannot lower (gamma) raises a Python
    exception naming it; nothing reaches LLVM."""
    x = aj.input("x", (None, 3), "float32")
    node = make("fused", [x], {"expr": sp.gamma(leaf_symbol(0, "float32")), "type": x.type,
                               "members": 1})
    with pytest.raises(UnsupportedOnTarget, match="gamma"):
        aj.compile(node, backend="ptx", passes=())


_CHILD = textwrap.dedent("""
    import sys
    from adjit.backends.lowering.target import emit_ptx
    from adjit.backends.ptx.support import UnsupportedOnTarget, check_declared
    ir = '''
    declare float @llvm.exp.f32(float)
    define ptx_kernel void @k(ptr addrspace(1) %p) {
      %x = load float, ptr addrspace(1) %p
      %y = call float @llvm.exp.f32(float %x)
      store float %y, ptr addrspace(1) %p
      ret void
    }
    '''
    try:
        emit_ptx(ir, arch="sm_80", opt_level=2, check=check_declared)
    except UnsupportedOnTarget as e:
        print("refused:", e)
        sys.exit(0)
    sys.exit(5)
""")


def test_llvm_exp_in_a_module_is_refused_not_fatal():
    """emit_ptx with the whitelist check raises for llvm.exp (LLVM would exit the process);
    run in a child process so that a regression cannot take the test run down."""
    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "refused:" in res.stdout and "llvm.exp.f32" in res.stdout


def _has_gpu() -> bool:
    try:
        from adjit.backends.ptx.device import CudaDevice
        CudaDevice()
    except NoCudaError:
        return False
    return True


@pytest.mark.skipif(_has_gpu(), reason="a CUDA GPU is present (this checks the no-GPU error)")
def test_no_gpu_is_an_error_at_call_time_not_at_compile_time():
    x = aj.input("x", (None, 3), "float32")
    f = aj.compile(aj.sum(aj.exp(x), axis=1), backend="ptx", opt_level=1)
    assert ".entry k0_fused" in f.ptx                  # compiling and inspecting work
    with pytest.raises(NoCudaError, match="no CUDA driver/GPU found"):
        f(x=np.zeros((2, 3), "float32"))
    with pytest.raises(NoCudaError):                   # and again: still an exception
        f(x=np.zeros((2, 3), "float32"))


def test_missing_cuda_python_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    from adjit.backends.ptx.device import CudaDevice
    with pytest.raises(NoCudaError, match="cuda-python"):
        CudaDevice()


def test_emulated_device_checks_the_block_size():
    dev = EmulatedDevice(jit=None, ntid=256)
    with pytest.raises(ValueError, match="256 threads"):
        dev.launch("k0", 1, 128, [], [0])


def test_cuda_launch_packs_one_pointer_per_parameter():
    """cuLaunchKernel gets the address of a void*[n] whose entries point at the 64-bit
    argument values (device pointers, then the batch size and extra integers)."""
    import ctypes
    from types import SimpleNamespace
    from adjit.backends.ptx.device import CudaDevice
    seen = {}

    def launch(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra):
        table = (ctypes.c_void_p * 4).from_address(params)
        seen.update(f=f, grid=(gx, gy, gz), block=(bx, by, bz),
                    values=[ctypes.c_uint64.from_address(table[i]).value for i in range(3)]
                    + [ctypes.c_int64.from_address(table[3]).value])
        return (0,)
    dev = CudaDevice.__new__(CudaDevice)
    dev.cu = SimpleNamespace(cuLaunchKernel=launch, CUresult=SimpleNamespace(CUDA_SUCCESS=0))
    dev.functions = {"k1_sum": "F"}
    dev.launch("k1_sum", 7, 256, [2 ** 40 + 8, 4096], [5, -1])
    assert seen == dict(f="F", grid=(7, 1, 1), block=(256, 1, 1),
                        values=[2 ** 40 + 8, 4096, 5, -1])
