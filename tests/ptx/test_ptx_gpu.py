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


# --- tensor cores on request (precision="tf32" | "bf16", backends/ptx/matmul_mma.py) ---------
# The bound of tests/ptx/test_ptx_mma.py: operands rounded (unit roundoff u), products exact in
# f32, K-term sums in f32 in any order (the GPU's and numpy's), relative to sum |a||b|.
_U = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}


@pytest.mark.parametrize("prec", ["tf32", "bf16"])
def test_tensor_core_matmuls_within_the_precision_bound(prec):
    rng = np.random.default_rng(5)
    for M, K, N, ta, tb in ((17, 9, 7, False, False), (1024, 1024, 1024, False, True),
                            (256, 1000, 130, True, False)):
        a = aj.input("a", (None, K, M) if ta else (None, M, K), "float32")
        w = aj.param("w", (N, K) if tb else (K, N), "float32")
        lhs = aj.swapaxes(a, -1, -2) if ta else a
        out = lhs @ (aj.transpose(w) if tb else w)
        f = aj.compile(out, backend="ptx", precision=prec)
        assert "mma.sync" in f.ptx
        A = rng.standard_normal((2, K, M) if ta else (2, M, K)).astype(np.float32)
        W = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        x = (np.swapaxes(A, -1, -2) if ta else A).astype(np.float64)
        y = (W.T if tb else W).astype(np.float64)
        got = f(a=A, w=W)
        gamma = K * 2.0 ** -24 / (1 - K * 2.0 ** -24)
        u = _U[prec]
        tol = (2 * u + u * u + 2 * gamma * (1 + u) ** 2) * (np.abs(x) @ np.abs(y)) * 1.0001
        assert (np.abs(got - x @ y) <= tol).all(), (prec, M, K, N)


def test_tensor_core_mlp_step_follows_fp32():
    outs = mlp("float32", sizes=(784, 128, 10))
    args = mlp_args("float32", 64, sizes=(784, 128, 10))
    exact = aj.compile(outs, backend="ptx")(**args)
    # (the emulation measures at most 0.91 u relative to the largest entry)
    for prec, rel in (("tf32", 8 * 2.0 ** -11), ("bf16", 8 * 2.0 ** -8)):
        got = aj.compile(outs, backend="ptx", precision=prec)(**args)
        for g, w in zip(got, exact):
            assert np.abs(g - w).max() <= rel * max(np.abs(w).max(), 1e-30), prec
