"""The 128 x 128 double-buffered tensor-core kernel (backends/ptx/matmul_mma_big.py) and the
choice between it and the 64 x 64 one (matmul_mma.choose).

The emulation tests force the big kernel (``choose`` patched) onto small products, cheap to
emulate: M, N in {1, 7, 127, 128, 129, 255}, K below one K-tile, across several and not a
multiple of 4 (scalar loads) or one (16-byte vector loads), every transpose form, stacks with
broadcast operands, matmul_sum, batch 0 and 1, K split 1, 2 and 5 ways (more splits than
K-tiles included), NaN and ±inf, and a mutation check that reading or writing the wrong
shared stage gives wrong products.
"""

import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import assemble
from adjit.backends.ptx import matmul_mma as mma
from adjit.backends.ptx import matmul_mma_big as big
from adjit.backends.ptx.sources import ptxas_path, registers, spills
from adjit.ops.contract import matmul_sum
from ptx_helpers import emulated, mlp, mlp_args
from test_ptx_mma import U, U32, bound

PRECS = ["tf32", "bf16"]


@pytest.fixture
def force(monkeypatch):
    """force(kind, S): every tensor-core product runs that kernel, K split S ways; returns
    the setting, whose "S" may be changed between calls (S is chosen per call)."""
    setting = {}

    def set_(kind, S=1):
        setting.update(kind=kind, S=S)
        monkeypatch.setattr(mma, "choose", lambda *a, **k: (setting["kind"], setting["S"]))
        return setting
    return set_


# --- layout claims ------------------------------------------------------------------------
@pytest.mark.parametrize("prec", PRECS)
def test_64_bit_fragment_loads_fetch_the_isa_registers(prec):
    assert big.fragment_pairs_ok(prec)
    # and a wrong pairing is noticed
    saved = big.A_LOADS
    try:
        big.A_LOADS = ((0, (0, 1)), (8, (2, 3)))
        assert not big.fragment_pairs_ok(prec)
    finally:
        big.A_LOADS = saved


def test_word_permutation_and_padding_are_conflict_free():
    for s in range(big.BKW // big.SLICE):
        assert sorted(big.perm(w) for w in range(8 * s, 8 * s + 8)) == list(range(8 * s, 8 * s + 8))
    for half in range(2):          # a 64-bit load is served per half-warp: 32 distinct banks
        banks = {(g * big.LDS + 2 * t + c) % 32 for g in range(4 * half, 4 * half + 4)
                 for t in range(4) for c in range(2)}
        assert len(banks) == 32
    assert 2 * big.STAGE * 4 <= 48 * 1024          # the static shared-memory limit


# --- exact products -----------------------------------------------------------------------
# (M, K, N, transpose forms): scalar loads (K = 17), vector loads (K = 36, M = 128), K-tiles
# of 16 (tf32) / 32 (bf16): under one, several, 7 / 4 (split 5 ways: an empty split)
SIZES = [(1, 1, 1, 1), (129, 17, 127, 4), (128, 36, 132, 4), (7, 100, 9, 2)]


def _all_forms(sizes):
    """Every transpose form of op(A) @ op(B) at each size, stored transposes read as views."""
    outs, names = [], []
    for i, (M, K, N, forms) in enumerate(sizes):
        a, at = aj.input(f"a{i}", (M, K), "float32"), aj.input(f"at{i}", (K, M), "float32")
        w, wt = aj.param(f"w{i}", (K, N), "float32"), aj.param(f"wt{i}", (N, K), "float32")
        outs += [a @ w, aj.transpose(at) @ aj.transpose(wt), aj.transpose(at) @ w,
                 a @ aj.transpose(wt)][:forms]
        names.append((f"a{i}", f"at{i}", f"w{i}", f"wt{i}"))
    return outs, names


def _int_args(sizes, names, rng, special=False):
    args = {}
    for (M, K, N, forms), (a, at, w, wt) in zip(sizes, names):
        A = rng.integers(-4, 5, (M, K)).astype(np.float32)
        W = rng.integers(-4, 5, (K, N)).astype(np.float32)
        if special and M > 2 and K > 2:
            A[1, 0], A[2, 1], W[K - 1, N - 1] = np.nan, np.inf, -np.inf
        args.update({a: A, w: W})
        if forms > 1:
            args.update({at: np.ascontiguousarray(A.T), wt: np.ascontiguousarray(W.T)})
    return args


@pytest.mark.parametrize("prec", PRECS)
def test_integer_products_are_exact_at_every_edge(force, prec):
    """Small integers (and NaN, ±inf) are exact in both precisions and their f32 sums in any
    order: any fragment, permutation, staging or split mistake shows as a wrong entry.  K
    split 1, 2 and 5 ways (one compiled function: S is chosen per call)."""
    setting = force("big", 2)
    outs, names = _all_forms(SIZES)
    f = emulated(outs, precision=prec)
    assert f"128x128 {prec} mma.sync" in f.launch_plan and "split K" in f.launch_plan
    rng = np.random.default_rng(0)
    for S in (1, 2, 5):
        setting["S"] = S
        for special in (False, True):
            args = _int_args(SIZES, names, rng, special)
            got, o = f(**args), 0
            for (_, _, _, forms), (a, _, w, _) in zip(SIZES, names):
                with np.errstate(invalid="ignore"):
                    want = args[a].astype(np.float64) @ args[w].astype(np.float64)
                for form in range(forms):
                    np.testing.assert_array_equal(got[o], want, err_msg=f"S={S} {a} {form}")
                    o += 1


def test_reading_or_writing_the_wrong_stage_is_wrong(force, monkeypatch):
    """Mutations of the double buffer: compute from the stage being written, or write the
    stage being read (single buffering); the emulation stores before it reads, so both
    give wrong products (the correct order gives exact ones: the test above)."""
    force("big", 1)
    sizes = [(33, 70, 20, 1)]                    # 5 K-tiles of 16
    outs, names = _all_forms(sizes)
    args = _int_args(sizes, names, np.random.default_rng(0))
    want = args["a0"].astype(np.float64) @ args["w0"]
    good = big.stages
    for mutant in (lambda *a: good(*a)[::-1], lambda *a: (good(*a)[0],) * 2):
        monkeypatch.setattr(big, "stages", mutant)
        got = emulated(outs, precision="tf32")(**args)
        assert not np.array_equal(got, want)


# --- against the interpreter within the precision's bound ---------------------------------
@pytest.mark.parametrize("prec", PRECS)
def test_against_the_interpreter_within_the_precision_bound(force, prec):
    """Random normal operands: a stack broadcast against a shared transposed weight, the
    transposed (backward) product, a matmul_sum; batch 0, 1 and 3; K split 1 and 2 ways."""
    setting = force("big", 2)
    M, K, N = 19, 41, 130
    a = aj.input("a", (None, 2, K, M), "float32")
    w = aj.param("w", (N, K), "float32")
    s = aj.input("s", (None, 3, K), "float32")
    outs = [aj.swapaxes(a, -1, -2) @ aj.transpose(w), matmul_sum(aj.swapaxes(s, -1, -2), s)]
    f = emulated(outs, precision=prec)
    rng = np.random.default_rng(11)
    worst = 0.0
    for batch, S in ((0, 1), (1, 2), (3, 1), (3, 2)):
        setting["S"] = S
        args = {"a": rng.standard_normal((batch, 2, K, M)).astype(np.float32),
                "w": rng.standard_normal((N, K)).astype(np.float32),
                "s": rng.standard_normal((batch, 3, K)).astype(np.float32)}
        want = aj.compile(outs, backend="interp")(**args)
        got = f(**args)
        lhs = np.swapaxes(args["a"], -1, -2).astype(np.float64)
        st = np.concatenate(list(np.swapaxes(args["s"], -1, -2)) or [np.zeros((K, 0))], -1)
        sk = np.concatenate(list(args["s"]) or [np.zeros((0, K))], 0)
        for g, w_, (x, y) in zip(got, want, [(lhs, args["w"].T.astype(np.float64)),
                                             (st.astype(np.float64), sk.astype(np.float64))]):
            assert g.shape == w_.shape
            tol = bound(x, y, prec, x.shape[-1])
            err = np.abs(g.astype(np.float64) - w_)
            assert (err <= tol).all(), (prec, float((err / tol).max()))
            worst = max([worst, *(err / (np.abs(x) @ np.abs(y) + 1e-30)).ravel()])
    assert 4 * U32 < worst < 3 * U[prec]           # rounded, and within the bound


@pytest.mark.parametrize("prec", PRECS)
def test_mlp_step_follows_fp32(force, prec):
    """A loss and its gradients (forward and backward products, all on the big kernel):
    within 8 unit roundoffs of FP32, relative to each output's largest entry (the GPU
    test's tolerance)."""
    force("big", 2)
    sizes = (40, 24, 10)
    outs = mlp("float32", sizes)
    args = mlp_args("float32", 33, sizes)
    exact = aj.compile(outs, backend="interp")(**args)
    f = emulated(outs, precision=prec)
    assert "128x128" in f.launch_plan          # (the 64 x 64 kernel is built, never chosen)
    for g, w in zip(f(**args), exact):
        assert np.abs(g - w).max() <= 8 * U[prec] * max(np.abs(w).max(), 1e-30)


# --- the choice ---------------------------------------------------------------------------
def test_choose_and_what_is_built():
    c = mma.choose
    assert c(4096, 4096, 4096, 1, False) == ("big", 1)
    assert c(64, 784, 128, 1, False) == ("tile64", 1)         # W2: < 2^24 multiply-adds
    assert c(4096, 10, 4096, 1, False)[0] == "big" and c(4096, 10, 4096, 1, False)[1] > 1
    x = aj.input("x", (4096, 4096), "float32")
    w = aj.param("w", (4096, 4096), "float32")
    f = aj.compile([x @ w, x[:64, :128] @ w[:128, :64]], backend="ptx", precision="tf32")
    kernels = [ln.split()[0] for ln in f.launch_plan.splitlines()]
    assert kernels.count("k0_matmul_big") == 1 and "k0_matmul" not in kernels
    assert sum(k.endswith("_matmul") for k in kernels) == 1   # the small one: 64 x 64


def test_the_choice_is_made_per_call(monkeypatch):
    """Sizes depending on the batch: both kernels are built and each call picks one."""
    monkeypatch.setattr(mma, "choose", lambda M, N, K, mats, summed:
                        ("big", 1 + M % 3) if M % 2 else ("tile64", 1))
    x = aj.input("x", (None, 24), "float32")
    w = aj.param("w", (24, 33), "float32")
    outs = [x @ w, aj.transpose(x) @ x]
    f = emulated(outs, precision="tf32")
    assert "128x128 tf32" in f.launch_plan and "split K" in f.launch_plan
    rng = np.random.default_rng(1)
    for batch in (2, 3, 5, 4):
        args = {"x": rng.integers(-3, 4, (batch, 24)).astype(np.float32),
                "w": rng.integers(-3, 4, (24, 33)).astype(np.float32)}
        got = f(**args)
        np.testing.assert_array_equal(got[0], args["x"] @ args["w"])
        np.testing.assert_array_equal(got[1], args["x"].T @ args["x"])


# --- ptxas --------------------------------------------------------------------------------
@pytest.mark.skipif(ptxas_path() is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("prec", PRECS)
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_ptxas_accepts_the_big_kernel_without_spills(prec, arch):
    """Every transpose form, a stack, matmul_sum (batch-sized: every kernel built)."""
    x = aj.input("x", (None, 512), "float32")
    s = aj.input("s", (None, 4, 256), "float32")
    w = aj.param("w", (512, 512), "float32")
    outs = [x @ w, aj.transpose(x) @ x, x @ aj.transpose(w), aj.transpose(w) @ aj.transpose(x),
            matmul_sum(aj.swapaxes(s, -1, -2), s)]
    f = aj.compile(outs, backend="ptx", precision=prec)
    ptx = f.ptx_for(arch)
    shape = "m16n8k8" if prec == "tf32" else "m16n8k16"
    assert ptx.count(f"mma.sync.aligned.{shape}.row.col.f32.{prec}.{prec}.f32") >= 32 * len(outs)
    assert "ld.shared.v2" in ptx and "st.shared.v4" in ptx and "ld.global.v4" in ptx
    report = assemble(ptx, arch)
    used, spilled = registers(report), spills(report)
    kernels = [k for k in used if k.endswith("_big")]
    assert len(kernels) == len(outs)
    for k in kernels:
        assert used[k] <= 255 and spilled[k] == 0, (k, used[k], spilled[k])
