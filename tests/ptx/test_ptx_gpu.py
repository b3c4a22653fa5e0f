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


@pytest.mark.parametrize("prec", ["tf32", "bf16"])
def test_tensor_core_big_kernel_within_the_precision_bound(prec):
    """Sizes choosing the 128 x 128 mma kernel (matmul_mma_big) unsplit and split along K,
    vector (K = 1024) and scalar (K = 1021) loads, every transpose form."""
    rng = np.random.default_rng(9)
    u = _U[prec]
    for M, K, N in ((2048, 1024, 1152), (2048, 1021, 1152), (255, 1024, 383)):
        a, w = aj.input("a", (M, K), "float32"), aj.param("w", (K, N), "float32")
        at, wt = aj.input("at", (K, M), "float32"), aj.param("wt", (N, K), "float32")
        outs = [a @ w, aj.transpose(at) @ w, a @ aj.transpose(wt),
                aj.transpose(at) @ aj.transpose(wt)]
        f = aj.compile(outs, backend="ptx", precision=prec)
        assert f"128x128 {prec} mma.sync" in f.launch_plan
        A, W = rng.standard_normal((M, K)), rng.standard_normal((K, N))
        A, W = A.astype(np.float32), W.astype(np.float32)
        got = f(a=A, w=W, at=np.ascontiguousarray(A.T), wt=np.ascontiguousarray(W.T))
        x, y = A.astype(np.float64), W.astype(np.float64)
        gamma = K * 2.0 ** -24 / (1 - K * 2.0 ** -24)
        tol = (2 * u + u * u + 2 * gamma * (1 + u) ** 2) * (np.abs(x) @ np.abs(y)) * 1.0001
        for g in got:
            assert (np.abs(g - x @ y) <= tol).all(), (prec, M, K, N)


@pytest.mark.parametrize("prec", ["tf32", "bf16"])
@pytest.mark.parametrize("S", [1, 2, 5])
def test_tensor_core_big_kernel_forced_on_small_edges(monkeypatch, prec, S):
    """The 128 x 128 mma kernel forced onto edge sizes, K split S ways: small integers, NaN
    and ±inf are exact in both precisions and in any summation order, so the GPU must
    match numpy exactly (stacks, broadcast weight, matmul_sum, batch 1 and 130)."""
    from adjit.backends.ptx import matmul_mma
    from adjit.ops.contract import matmul_sum
    monkeypatch.setattr(matmul_mma, "choose", lambda *a, **k: ("big", S))
    x = aj.input("x", (None, 36), "float32")
    s = aj.input("s", (None, 3, 5, 17), "float32")
    w, v = aj.param("w", (36, 129), "float32"), aj.param("v", (17, 7), "float32")
    outs = [x @ w, aj.transpose(x) @ x, x @ aj.transpose(w[:, :36]), s @ v,
            matmul_sum(aj.swapaxes(s, -1, -2), s)]
    f = aj.compile(outs, backend="ptx", precision=prec)
    rng = np.random.default_rng(S)
    for batch in (1, 130):
        args = dict(x=rng.integers(-4, 5, (batch, 36)).astype("float32"),
                    s=rng.integers(-4, 5, (batch, 3, 5, 17)).astype("float32"),
                    w=rng.integers(-4, 5, (36, 129)).astype("float32"),
                    v=rng.integers(-4, 5, (17, 7)).astype("float32"))
        args["x"][0, 1], args["w"][2, 3] = np.nan, np.inf
        with np.errstate(invalid="ignore"):
            want = aj.compile(outs, backend="interp")(**args)
        for k, (g, w_) in enumerate(zip(f(**args), want)):
            np.testing.assert_array_equal(g, w_, err_msg=f"output {k}")


# -- device-resident state, pinned staging, CUDA graphs (see test_ptx_resident.py for the
# -- same checks in emulation) --------------------------------------------------------------
def _resident_step(kind, **options):
    from adjit import optim
    dtype, sizes = "float32", (784, 128, 10)
    x, t = aj.input("x", (None, sizes[0]), dtype), aj.input("t", (None, sizes[2]), dtype)
    W1, b1 = aj.param("W1", sizes[:2], dtype), aj.param("b1", sizes[1:2], dtype)
    W2, b2 = aj.param("W2", sizes[1:], dtype), aj.param("b2", sizes[2:], dtype)
    loss = aj.mean(aj.sum((aj.tanh(x @ W1 + b1) @ W2 + b2 - t) ** 2, axis=1))
    params = [W1, b1, W2, b2]
    opt = (optim.SGD(params, lr=0.05, momentum=0.9) if kind == "sgd"
           else optim.Adam(params, lr=0.001))
    f = aj.compile(loss, updates=opt.updates(loss), resident=True, **options)
    rng = np.random.default_rng(0)
    arrays = {p.name: (0.05 * rng.standard_normal(p.shape)).astype(dtype) for p in params}
    arrays.update(opt.state)
    return f, f.bind(**arrays), arrays


def _batch(step, n=64):
    rng = np.random.default_rng(10 + step)
    return {"x": rng.standard_normal((n, 784)).astype("float32"),
            "t": rng.standard_normal((n, 10)).astype("float32")}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("graphs", [True, False])
def test_resident_training_matches_llvm(kind, graphs):
    f, g, arrays = _resident_step(kind, backend="ptx", graphs=graphs)
    _, ref, ref_arrays = _resident_step(kind, backend="llvm")
    for s, n in enumerate([64, 64, 7, 64, 1, 64]):
        got, want = g(**_batch(s, n)), ref(**_batch(s, n))
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f"step {s}")
        assert g.on_device
    g.state_to_host()
    for k in arrays:
        scale = float(np.max(np.abs(ref_arrays[k]))) or 1.0
        np.testing.assert_allclose(arrays[k], ref_arrays[k], rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=k)
    assert f.graphs is graphs, f.graph_reason


def test_resident_host_change_after_state_to_host_is_used():
    f, g, arrays = _resident_step("sgd", backend="ptx")
    _, ref, ref_arrays = _resident_step("sgd", backend="llvm")
    g(**_batch(0)), ref(**_batch(0))
    with pytest.raises(ValueError, match="read-only"):
        arrays["W1"][...] = 0
    g.state_to_host()
    arrays["W1"][...] = 0.01
    ref_arrays["W1"][...] = 0.01
    np.testing.assert_allclose(g(**_batch(1)), ref(**_batch(1)), rtol=1e-4)


def test_pinned_host_buffers_and_async_copies_on_the_driver():
    """The device's own primitives: page-locked staging and async copies on its stream
    (graph capture is covered by test_resident_training_matches_llvm: ``f.graphs`` stays
    True only when capturing succeeded)."""
    from adjit.backends.ptx.device import CudaDevice
    dev = CudaDevice()
    host = dev.host_alloc(4096)
    assert host.nbytes == 4096
    src = host[:4096].view(np.float32)
    src[:] = np.arange(1024, dtype=np.float32)
    ptr = dev.alloc(4096)
    dev.upload(ptr, src)
    back = np.zeros(1024, np.float32)
    dev.download(back, ptr)
    dev.synchronize()
    np.testing.assert_array_equal(back, np.arange(1024, dtype=np.float32))
    dev.free(ptr)
    dev.host_free(host)


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


def test_a_call_made_during_a_graph_capture_runs_aside_on_the_gpu():
    """The same function called between two captured launches (as a signal handler would):
    the nested call runs on a second stream and the captured graph stays whole."""
    x, W = aj.input("x", (None, 64), "float32"), aj.param("W", (64, 32), "float32")
    y = aj.sum(aj.tanh(x @ W), axis=1)
    rng = np.random.default_rng(3)
    args = [{"x": rng.standard_normal((n, 64)).astype("float32"),
             "W": rng.standard_normal((64, 32)).astype("float32")} for n in (5, 9)]
    want = [aj.compile(y, backend="interp")(**a) for a in args]
    f = aj.compile(y, backend="ptx")
    dev = f.device
    launch, nested = dev.launch, []

    def launch_and_reenter(*call):
        launch(*call)
        if dev.capturing and not nested:
            nested.append(f(**args[1]))
    dev.launch = launch_and_reenter
    got = f(**args[0])
    assert nested and f.graphs, f.graph_reason
    for g_, w in ((got, want[0]), (nested[0], want[1]), (f(**args[0]), want[0])):
        np.testing.assert_allclose(g_, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind,S", [("tile64", 1), ("big", 1), ("big", 3), ("mma", 1)])
def test_fused_epilogue_mlp_step_on_the_gpu(monkeypatch, kind, S):
    """A relu MLP step whose dense layers (forward and the backward's masked product) run
    their bias/activation in the product's epilogue, on each kernel, against the interpreter
    (tf32 with a sigmoid, whose derivative does not jump, within 8 tf32 ulps of the largest
    entry, as test_tensor_core_mlp_step_follows_fp32)."""
    from adjit.backends.ptx import matmul as mm
    if kind != "mma":
        monkeypatch.setattr(mm, "choose", lambda *a, **k: (kind, S))
    sizes = (784, 128, 10)
    prec = "tf32" if kind == "mma" else "fp32"
    outs = mlp("float32", sizes, act=aj.sigmoid if prec == "tf32" else aj.relu)
    f = aj.compile(outs, backend="ptx", precision=prec)
    assert sum(" + fused" in ln for ln in f.launch_plan.splitlines()) >= 3
    for batch in (1, 64, 257):
        args = mlp_args("float32", batch, sizes)
        want = aj.compile(outs, backend="interp")(**args)
        got = f(**args)
        rtol = 8 * 2.0 ** -11 if prec == "tf32" else GEMM_RTOL
        for k, (g, w) in enumerate(zip(got, want)):
            scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale,
                                       err_msg=f"output {k} batch {batch}")
