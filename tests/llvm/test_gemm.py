"""adjit_gemm_f32 / adjit_gemm_f64 against numpy, called through ctypes.

Both dtypes are compiled once per module (opt level 3, no disk cache), in the blocking of
this machine (derived from its description: 8 x 32 / 8 x 16 register tiles on AVX-512
hosts, 6 x 16 / 6 x 8 on AVX2) and, for a subset of sizes, in the other x86 one
(tests/cpu/test_gemm_targets.py covers every ISA's tiles by name).  Sizes cover the
empty cases, K == 0, 1, odd sizes around the register tiles, the unpacked
small-product path, the packed path with several K blocks, padded leading dimensions and
products big enough to be split across two threads (split along N and along M).
"""

import ctypes

import llvmlite.ir as ir
import numpy as np
import pytest

from adjit.backends.llvm import gemm, gemm_split
from adjit.backends.lowering.target import compile_ir
from adjit.backends.lowering.target.description import describe

DTYPES = {"f32": (np.float32, 1e-5), "f64": (np.float64, 1e-12)}
I32, I64, P = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
SIG = ctypes.CFUNCTYPE(None, I32, I32, I64, I64, I64, P, I64, P, I64, P, I64, I32, P)


class Gemm:
    """ctypes wrapper owning an aligned workspace."""

    def __init__(self, jm, dtype, target=None):
        self.jm, self.np = jm, DTYPES[dtype][0]
        self.fn = SIG(jm.address(gemm.gemm_symbol(dtype)))
        n = gemm.gemm_workspace_elems(dtype, target)
        raw = np.empty(n + 64, self.np)
        off = (-raw.ctypes.data % 64) // raw.itemsize
        self.work = raw[off:off + n]
        assert self.work.ctypes.data % 64 == 0

    def __call__(self, ta, tb, A, B, C, acc, K):
        """A, B, C are 2-D views whose rows may be padded (ld = row stride)."""
        ld = lambda x: x.strides[0] // x.itemsize
        M, N = C.shape
        self.fn(ta, tb, M, N, K, A.ctypes.data, ld(A), B.ctypes.data, ld(B),
                C.ctypes.data, ld(C), acc, self.work.ctypes.data)


@pytest.fixture(scope="module")
def kernels():
    module = ir.Module(name="gemm_test")
    assert gemm.emit_gemm(module, "f32") is gemm.emit_gemm(module, "f32")   # idempotent
    gemm.emit_gemm(module, "f64")
    jm = compile_ir(str(module), opt_level=3, cache=False, name="gemm_test")
    return {dt: Gemm(jm, dt) for dt in DTYPES}


def padded(rng, rows, cols, dtype, pad):
    """A rows x cols view into a wider array (leading dimension cols + pad)."""
    base = rng.standard_normal((rows, cols + pad)).astype(dtype)
    return base[:, :cols]


def check(kern, dtype, M, N, K, ta, tb, acc, pad=0, seed=0):
    npdt, rtol = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    A = padded(rng, *((K, M) if ta else (M, K)), npdt, pad)
    B = padded(rng, *((N, K) if tb else (K, N)), npdt, pad)
    C = padded(rng, M, N, npdt, pad)
    if not acc:
        C[...] = np.nan                       # must be overwritten, never read
    C0 = C.astype(np.float64)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    ref = opA @ opB + (C0 if acc else 0.0)
    bound = np.abs(opA) @ np.abs(opB) + (np.abs(C0) if acc else 0.0)
    kern(ta, tb, A, B, C, acc, K)
    assert np.all(np.abs(C - ref) <= rtol * bound + 1e-30), (M, N, K, ta, tb, acc)


SIZES = [
    (0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0), (1, 1, 1), (1, 1, 300), (7, 7, 7),
    (13, 13, 13), (6, 16, 8), (12, 32, 5), (7, 100, 13), (100, 7, 13), (1, 257, 13),
    (257, 1, 13), (64, 64, 64), (33, 17, 64), (100, 100, 100), (64, 128, 97),
    (257, 130, 7), (13, 300, 600), (257, 257, 257), (300, 10, 600), (200, 16, 300),
    (50, 70, 40),
]
# (packed products leave M % 6 = 1..5 rows to the edge kernels: 13, 50, 33, 100, 257)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("M, N, K", SIZES)
def test_gemm_matches_numpy(kernels, dtype, M, N, K):
    for ta in (0, 1):
        for tb in (0, 1):
            for acc in (0, 1):
                check(kernels[dtype], dtype, M, N, K, ta, tb, acc)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("M, N, K", [(5, 9, 3), (70, 40, 300), (300, 100, 90)])
def test_padded_leading_dimensions(kernels, dtype, M, N, K):
    for ta in (0, 1):
        for tb in (0, 1):
            check(kernels[dtype], dtype, M, N, K, ta, tb, acc=1, pad=3)
            check(kernels[dtype], dtype, M, N, K, ta, tb, acc=0, pad=5)


def shares_a(dtype, M, N, K):
    """Whether a two-thread product packs op(A) once for both threads (gemm_split)."""
    p = gemm.gemm_params(dtype)
    mp = -(-M // p["MR"]) * p["MR"]
    return N >= M and mp * K <= gemm_split.shared_capacity(p, dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("M, N, K, shared", [
    (256, 1024, 128, True), (131, 517, 600, True), (64, 784, 128, True),
    (600, 130, 400, False), (131, 517, 400, True), (1024, 10, 256, False)])
def test_threaded_sizes(kernels, dtype, M, N, K, shared):
    """M*N*K above the thread threshold: split along N (N >= M), op(A) packed once for
    both threads (several K and M blocks: 131 x 600), or along M (M > N; N = 10: A read
    in place)."""
    assert M * N * K >= gemm.THREAD_MNK[dtype] and shares_a(dtype, M, N, K) == shared
    for ta, tb in ((0, 0), (0, 1), (1, 0), (1, 1)):
        check(kernels[dtype], dtype, M, N, K, ta, tb, acc=ta)


@pytest.mark.parametrize("dtype, M, N, K", [("f32", 700, 720, 1500), ("f64", 400, 500, 1300)])
def test_threaded_op_a_too_large_to_share(kernels, dtype, M, N, K):
    """Split along N, but op(A) packed would not fit the shared workspace: each chunk
    packs its own."""
    assert not shares_a(dtype, M, N, K) and N >= M
    for ta, tb in ((0, 0), (1, 1)):
        check(kernels[dtype], dtype, M, N, K, ta, tb, acc=tb)


@pytest.fixture(scope="module")
def forced():
    """f32 kernel that always packs and always splits (odd split points, tiny halves)."""
    module = ir.Module(name="gemm_forced")
    gemm.emit_gemm(module, "f32", threads=2, small_mnk=0, thread_mnk=1)
    return Gemm(compile_ir(str(module), cache=False), "f32")


@pytest.mark.parametrize("M, N, K", [(12, 32, 3), (13, 33, 17), (40, 7, 5), (1, 100, 9),
                                     (100, 1, 9), (7, 300, 260), (300, 31, 1)])
def test_forced_split_small_sizes(forced, M, N, K):
    for ta in (0, 1):
        for tb in (0, 1):
            for acc in (0, 1):
                check(forced, "f32", M, N, K, ta, tb, acc)


@pytest.fixture(scope="module")
def other_blocking():
    """Both dtypes in the x86 blocking this machine does not use (emitted for the named
    target's description, compiled for the host): AVX-512 hosts then test the AVX2 tiles
    too, and others the AVX-512 ones (zmm-sized vectors split by LLVM: slow, but the
    results must hold)."""
    wide = describe().vector_bytes >= 64
    other = describe("x86-64-v3" if wide else "x86-64-v4")
    module = ir.Module(name="gemm_other")
    for dt in DTYPES:
        gemm.emit_gemm(module, dt, target=other)
    jm = compile_ir(str(module), opt_level=3, cache=False, name="gemm_other")
    return {dt: Gemm(jm, dt, other) for dt in DTYPES}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("M, N, K", [(0, 5, 3), (4, 6, 0), (1, 1, 300), (13, 13, 13),
                                     (12, 32, 5), (7, 100, 13), (257, 130, 7),
                                     (13, 300, 600), (300, 10, 600), (50, 70, 40),
                                     (131, 517, 600), (600, 130, 400)])
def test_the_other_blocking_matches_numpy(other_blocking, dtype, M, N, K):
    for ta in (0, 1):
        for tb in (0, 1):
            check(other_blocking[dtype], dtype, M, N, K, ta, tb, acc=(ta + tb) % 2)


def test_k_zero_gives_zeros(kernels):
    for dtype, (npdt, _) in DTYPES.items():
        A, B = np.ones((3, 1), npdt)[:, :0], np.ones((1, 4), npdt)[:0]
        C = np.full((3, 4), np.nan, npdt)
        kernels[dtype](0, 0, A, B, C, 0, 0)
        assert np.all(C == 0)
        C[...] = 2.0
        kernels[dtype](0, 0, A, B, C, 1, 0)
        assert np.all(C == 2.0)


def test_workspace_and_symbols():
    for dt in DTYPES:
        p = gemm.gemm_params(dt)
        per_thread = p["MC"] * p["KC"] + p["KC"] * p["NC"]
        assert gemm.gemm_workspace_elems(dt) >= gemm.MAX_THREADS * per_thread
        # one buffer of the f64 size in bytes serves both dtypes (runtime, pool)
        esz = 4 if dt == "f32" else 8
        assert gemm.gemm_workspace_elems("f64") * 8 >= gemm.gemm_workspace_elems(dt) * esz
        assert gemm.gemm_symbol(dt) == f"adjit_gemm_{dt}"
    with pytest.raises(ValueError):
        gemm.emit_gemm(ir.Module(), "f16")
