"""The ptx backend on a real GPU against the interpreter.  Skipped where there is no CUDA GPU
(the same kernels are checked by the CPU grid emulation and ptxas everywhere else)."""
import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import NoCudaError
from ptx_helpers import (elementwise_args, every_elementwise_op, mlp, mlp_args, softmax_args,
                         softmax_regression)


def _gpu_problem() -> str:
    try:
        from adjit.backends.ptx.device import CudaDevice
        CudaDevice()
    except NoCudaError as e:
        return str(e)
    return ""


_WHY = _gpu_problem()
pytestmark = pytest.mark.skipif(bool(_WHY), reason=f"no CUDA GPU: {_WHY}")

# float32 on the GPU: FMA contraction and the order of long sums differ from numpy's
RTOL = {"float64": 1e-10, "float32": 1e-4}


def compare(outputs, args, dtype, **options):
    f = aj.compile(outputs, backend="ptx", **options)
    want = aj.compile(outputs, backend="interp")(**args)
    got = f(**args)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, k
        if w.dtype == bool:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
            continue
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                                   err_msg=f"output {k}")
    return f


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_w2_sized_mlp(dtype):
    sizes = (784, 128, 10)
    f = compare(mlp(dtype, sizes), mlp_args(dtype, 64, sizes), dtype)
    assert f.arch.startswith("sm_") and f.device.arch.startswith("sm_")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_elementwise_op(dtype):
    compare(every_elementwise_op(dtype), elementwise_args(dtype, 1000), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_regression_and_split_reductions(dtype):
    for batch in (1, 5000):
        compare(softmax_regression(dtype), softmax_args(dtype, batch), dtype)


def test_w4_sized_matmuls_and_batch_sizes():
    sizes = (1024, 1024, 10)
    outs = mlp("float32", sizes, act=aj.relu)
    f = aj.compile(outs, backend="ptx")
    ref = aj.compile(outs, backend="interp")
    for batch in (256, 3, 256):
        args = mlp_args("float32", batch, sizes)
        for g, w in zip(f(**args), ref(**args)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(w))))


# --- the 128 x 128 GEMM kernel (backends/ptx/matmul_big.py) and split-K on the GPU ---------
# (the emulation cannot see races between threads; these run the kernel's barriers for real)
GEMM_RTOL = 1e-4


def _gemm_compare(outs, args):
    f = aj.compile(outs, backend="ptx")
    want = aj.compile(outs, backend="interp")(**args)
    got = f(**args)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for k, (g, w) in enumerate(zip(got, want)):
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
        np.testing.assert_allclose(g, w, rtol=GEMM_RTOL, atol=GEMM_RTOL * scale,
                                   err_msg=f"output {k}")
    return f


@pytest.mark.parametrize("K", [1024, 1021])          # vector loads; scalar loads (odd K)
def test_gemm_big_and_split_on_the_gpu(K):
    """Every transpose form at sizes choosing the 128 x 128 kernel unsplit (2048 x 1152) and
    split along K (256 x 384), with edge tiles (odd M and N)."""
    rng = np.random.default_rng(K)
    for M, N in ((2048, 1152), (255, 383)):
        a, w = aj.input("a", (M, K), "float32"), aj.param("w", (K, N), "float32")
        at, wt = aj.input("at", (K, M), "float32"), aj.param("wt", (N, K), "float32")
        outs = [a @ w, aj.transpose(at) @ w, a @ aj.transpose(wt),
                aj.transpose(at) @ aj.transpose(wt)]
        r = lambda *s: rng.standard_normal(s).astype("float32")
        f = _gemm_compare(outs, dict(a=r(M, K), at=r(K, M), w=r(K, N), wt=r(N, K)))
        assert "128x128" in f.launch_plan


@pytest.mark.parametrize("S", [1, 3])
def test_gemm_forced_big_kernel_small_edges_on_the_gpu(monkeypatch, S):
    """The big kernel forced onto the emulation tests' edge sizes (stacks, broadcast operands,
    matmul_sum, gradients, batch 1 and 130)."""
    from adjit.backends.ptx import matmul as mm
    from adjit.ops.contract import matmul_sum
    monkeypatch.setattr(mm, "choose", lambda *a, **k: ("big", S))
    monkeypatch.setattr(mm, "BIG_DTYPES", ("float32", "float64"))
    x = aj.input("x", (None, 20), "float32")
    s = aj.input("s", (None, 3, 5, 12), "float32")
    w, v = aj.param("w", (20, 129), "float32"), aj.param("v", (12, 7), "float32")
    h = aj.tanh(x @ w)
    loss = aj.sum(h * h) + aj.sum(aj.tanh(s @ v))
    outs = [h, aj.transpose(x) @ x, matmul_sum(aj.swapaxes(s, -1, -2), s),
            loss] + aj.grad(loss, [x, s, w, v])
    rng = np.random.default_rng(3)
    for batch in (1, 130):
        _gemm_compare(outs, dict(x=rng.standard_normal((batch, 20)).astype("float32"),
                                 s=rng.standard_normal((batch, 3, 5, 12)).astype("float32"),
                                 w=rng.standard_normal((20, 129)).astype("float32"),
                                 v=rng.standard_normal((12, 7)).astype("float32")))


def test_gemm_4096_mlp_step_on_the_gpu():
    """The issue's 4096-4096-4096-10 MLP step at batch 1024 (the bench runs B = 4096)."""
    sizes = (4096, 4096, 10)
    _gemm_compare(mlp("float32", sizes, act=aj.relu), mlp_args("float32", 1024, sizes))
