"""The 128 x 128 double-buffered matmul kernel (backends/ptx/matmul_big.py), split-K, and the
choice between it and the 64 x 64 kernel (matmul.choose).

The emulation tests force the kernel (``choose`` patched) so small products, cheap to emulate,
run the big kernel at every edge: M, N in {1, 7, tile - 1, tile, tile + 1, odd primes}, K
around BK = 8 and not a multiple of the vector width (scalar loads) or one (vector loads),
K = 0, every transpose combination, stacks with broadcast operands, matmul_sum, float32 and
float64, batch 0 and 1, and K split 1, 2 and 5 ways (more splits than K-tiles included)."""

import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import matmul as mm
from adjit.backends.ptx.sources import ptxas_path
from adjit.ops.contract import matmul_sum
from ptx_helpers import compare, emulated


def _products(dtype, M, K, N):
    """op(A) @ op(B) in the four transpose forms (views of stored transposes)."""
    a = aj.input("a", (M, K), dtype)
    at = aj.input("at", (K, M), dtype)
    w = aj.param("w", (K, N), dtype)
    wt = aj.param("wt", (N, K), dtype)
    return [a @ w, aj.transpose(at) @ w, a @ aj.transpose(wt),
            aj.transpose(at) @ aj.transpose(wt)]


def _args(dtype, M, K, N, seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    return dict(a=r(M, K), at=r(K, M), w=r(K, N), wt=r(N, K))


SIZES = [(1, 1, 1), (129, 9, 127), (128, 8, 128), (7, 17, 131), (131, 16, 1), (13, 4, 130),
         (127, 13, 129), (3, 33, 5)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("S", [1, 2, 5])
def test_big_kernel_every_edge(force, dtype, S):
    force("big", S)
    for M, K, N in SIZES:
        outs = _products(dtype, M, K, N)
        f = emulated(outs)
        assert "128x128" in f.launch_plan
        compare(f, outs, _args(dtype, M, K, N, seed=M + K + N), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("S", [1, 3])
def test_big_kernel_stacks_batches_and_gradients(force, dtype, S):
    """Batch-sized M and K (B = 0, 1, 130), a broadcast weight over a stack, a stack of pairs
    with odd strides (misaligned matrices: scalar loads), matmul_sum and gradients."""
    force("big", S)
    x = aj.input("x", (None, 20), dtype)
    s = aj.input("s", (None, 3, 5, 12), dtype)
    w = aj.param("w", (20, 129), dtype)
    v = aj.param("v", (12, 7), dtype)
    u = aj.param("u", (3, 7, 9), dtype)
    h = aj.tanh(x @ w)
    sv = s @ v                                     # (B, 3, 5, 7), v broadcast
    loss = aj.sum(h * h) + aj.sum(aj.tanh(sv) @ u)  # u broadcast over B, stacked over 3
    outs = [h, sv, aj.transpose(x) @ x, matmul_sum(aj.swapaxes(s, -1, -2), s),
            matmul_sum(s, aj.swapaxes(s, -1, -2)), loss] + aj.grad(loss, [x, s, w, v, u])
    f = emulated(outs)
    rng = np.random.default_rng(5)
    for batch in (0, 1, 130):
        args = dict(x=rng.standard_normal((batch, 20)).astype(dtype),
                    s=rng.standard_normal((batch, 3, 5, 12)).astype(dtype),
                    w=(rng.standard_normal((20, 129)) / 4).astype(dtype),
                    v=rng.standard_normal((12, 7)).astype(dtype),
                    u=rng.standard_normal((3, 7, 9)).astype(dtype))
        compare(f, outs, args, dtype)


def test_k_zero_gives_zeros(force):
    force("big", 2)
    a, w = aj.input("a", (None, 5), "float32"), aj.input("w", (None, 6), "float32")
    out = aj.transpose(a) @ w                      # K = B = 0
    got = emulated(out)(a=np.zeros((0, 5), "float32"), w=np.zeros((0, 6), "float32"))
    assert got.shape == (5, 6) and not got.any()


def test_the_choice_is_made_per_call(monkeypatch):
    """Sizes depending on the batch: both kernels are built and each call picks one."""
    monkeypatch.setattr(mm, "choose", lambda M, N, K, mats, summed, dtype="float32":
                        ("big", 1 + M % 3) if M % 2 else ("tile64", 1))
    x = aj.input("x", (None, 40), "float32")
    w = aj.param("w", (40, 33), "float32")
    outs = [x @ w, aj.transpose(x) @ x]
    f = emulated(outs)
    assert "128x128" in f.launch_plan and "split K" in f.launch_plan
    rng = np.random.default_rng(1)
    for batch in (2, 3, 5, 4, 7):
        compare(f, outs, dict(x=rng.standard_normal((batch, 40)).astype("float32"),
                              w=rng.standard_normal((40, 33)).astype("float32")), "float32")


def test_float64_builds_only_the_64_kernel():
    x = aj.input("x", (None, 40), "float64")
    f = emulated(x @ aj.param("w", (40, 33), "float64"))
    assert "128x128" not in f.launch_plan and "k0_matmul" in f.launch_plan


def test_choose():
    c = mm.choose
    assert c(4096, 4096, 4096, 1, False) == ("big", 1)           # 1024 tiles
    assert c(64, 784, 128, 1, False) == ("tile64", 1)            # W2: launch-bound
    kind, S = c(256, 1024, 1024, 1, False)                        # W4: 16 tiles, split K
    assert kind == "big" and S == 4
    kind, S = c(4096, 10, 4096, 1, False)                         # the last layer
    assert kind == "big" and 1 < S <= mm.MAX_SPLITS
    assert c(4096, 4096, 4096, 1, False, "float64") == ("tile64", 1)
    assert c(0, 4096, 4096, 1, False) == ("tile64", 1)
    assert c(1024, 2048, 64, 8, True) == ("big", 1)             # summed: one output matrix
    # splits never make a split shallower than MIN_SPLIT_K
    for M, N, K in [(128, 128, 100000), (300, 200, 5000), (128, 4096, 700)]:
        kind, S = c(M, N, K, 1, False)
        assert kind == "big" and (S == 1 or K // S >= mm.MIN_SPLIT_K)


def test_static_shapes_build_only_the_chosen_kernel():
    x = aj.input("x", (4096, 4096), "float32")
    w = aj.param("w", (4096, 4096), "float32")
    v = aj.param("v", (4096, 10), "float32")
    f = aj.compile([x @ w, x @ v, x[:64, :128] @ w[:128, :64]], backend="ptx")
    plan = f.launch_plan
    kernels = [line.split()[0] for line in plan.splitlines()]
    assert "k0_matmul_big" in kernels and "k0_matmul" not in kernels
    assert "split K" in plan and "sum of the K splits" in plan   # x @ v: 32 tiles
    assert sum(k.endswith("_matmul") for k in kernels) == 1       # the 64 x 128 x 64 product


@pytest.mark.skipif(ptxas_path() is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_ptxas_accepts_the_big_kernel_without_spills(arch):
    """float32 at the default opt level: every transpose form, a stack, matmul_sum, split-K
    (sizes depending on the batch, so every kernel is built)."""
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import registers, spills
    x = aj.input("x", (None, 512), "float32")
    s = aj.input("s", (None, 4, 256), "float32")
    w = aj.param("w", (512, 512), "float32")
    outs = [x @ w, aj.transpose(x) @ x, x @ aj.transpose(w), aj.transpose(w) @ aj.transpose(x),
            matmul_sum(aj.swapaxes(s, -1, -2), s), s @ aj.transpose(s[0])]
    f = aj.compile(outs, backend="ptx")
    report = assemble(f.ptx_for(arch), arch)
    used, spilled = registers(report), spills(report)
    big = [k for k in used if k.endswith("_big")]
    assert len(big) == len(outs)
    for k in big:
        assert used[k] <= 255 and spilled[k] == 0, (k, used[k], spilled[k])
