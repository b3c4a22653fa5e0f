"""Tensor-core matrix products (``precision="tf32" | "bf16"``, backends/ptx/matmul_mma.py).

* the fragment layouts against the PTX ISA's tables (restated here in the ISA's words) and a
  numpy model of one warp's mma built from them;
* operand rounding (tf32: nearest, ties away; bf16: nearest even) on ties, overflow, inf, NaN;
* the emulated kernels against exact products of integers (any layout mistake shows) and
  against the interpreter with the bound the precision implies, on edge sizes, transposes,
  stacks, ``matmul_sum`` and the batch sizes 0 and 1;
* ``precision`` plumbing: "fp32"/None stay the exact kernel, float64 products are unchanged,
  the llvm and interp backends compute FP32, unknown values are refused;
* an MLP trained a few steps with tf32 follows the FP32 run; ptxas accepts the kernels.
"""
import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import assemble
from adjit.backends.ptx.matmul_mma import a_elem, b_elem, c_elem
from adjit.backends.ptx.sources import ptxas_path
from adjit.ops.contract import matmul_sum
from ptx_helpers import emulated, mlp, mlp_args

U = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}     # unit roundoff of the rounded operands
U32 = 2.0 ** -24
KSTEP = {"tf32": 8, "bf16": 16}
PRECS = ["tf32", "bf16"]


# --- layouts ----------------------------------------------------------------------------------
def _isa_a(prec, lane, i):
    """PTX ISA, "Matrix fragments for mma.m16n8k8" (.tf32) / "mma.m16n8k16" (.bf16), A."""
    g, t = lane >> 2, lane % 4
    if prec == "tf32":   # row: groupID for a0, a2, +8 for a1, a3; col: tig for a0, a1, +4 else
        return (g if i in (0, 2) else g + 8), (t if i in (0, 1) else t + 4)
    row = g if (i < 2 or 4 <= i < 6) else g + 8
    return row, t * 2 + (i & 1) + (8 if i >= 4 else 0)


def _isa_b(prec, lane, i):
    g, t = lane >> 2, lane % 4
    if prec == "tf32":   # row: tig for b0, tig + 4 for b1; col: groupID
        return (t if i == 0 else t + 4), g
    return t * 2 + (i & 1) + (8 if i >= 2 else 0), g


def _isa_c(lane, i):     # row: groupID for c0, c1, +8 for c2, c3; col: tig*2 + (i & 1)
    g, t = lane >> 2, lane % 4
    return (g if i < 2 else g + 8), t * 2 + (i & 1)


@pytest.mark.parametrize("prec", PRECS)
def test_fragment_layouts_are_the_ptx_isa_tables(prec):
    K = KSTEP[prec]
    na, nb = (4, 2) if prec == "tf32" else (8, 4)       # elements per lane
    seen = {"a": set(), "b": set(), "c": set()}
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for i in range(na):
            assert a_elem(prec, g, t, i) == _isa_a(prec, lane, i)
            seen["a"].add(a_elem(prec, g, t, i))
        for i in range(nb):
            assert b_elem(prec, g, t, i) == _isa_b(prec, lane, i)
            seen["b"].add(b_elem(prec, g, t, i))
        for i in range(4):
            assert c_elem(g, t, i) == _isa_c(lane, i)
            seen["c"].add(c_elem(g, t, i))
    # every element of A (16 x K), B (K x 8) and C (16 x 8) is held by exactly one lane
    assert len(seen["a"]) == 32 * na == 16 * K and len(seen["b"]) == 32 * nb == K * 8
    assert len(seen["c"]) == 128


@pytest.mark.parametrize("prec", PRECS)
def test_numpy_model_of_one_warp_mma(prec):
    """Fragments gathered per the tables, the product per lane's C elements: equals A @ B."""
    K, rng = KSTEP[prec], np.random.default_rng(3)
    A, B = rng.standard_normal((16, K)), rng.standard_normal((K, 8))
    na, nb = (4, 2) if prec == "tf32" else (8, 4)
    regs_a = {(ln, i): A[a_elem(prec, ln >> 2, ln & 3, i)] for ln in range(32) for i in range(na)}
    regs_b = {(ln, i): B[b_elem(prec, ln >> 2, ln & 3, i)] for ln in range(32) for i in range(nb)}
    dense_a, dense_b = np.full((16, K), np.nan), np.full((K, 8), np.nan)
    for (ln, i), v in regs_a.items():
        dense_a[a_elem(prec, ln >> 2, ln & 3, i)] = v
    for (ln, i), v in regs_b.items():
        dense_b[b_elem(prec, ln >> 2, ln & 3, i)] = v
    D = np.full((16, 8), np.nan)
    for ln in range(32):
        for i in range(4):
            r, c = c_elem(ln >> 2, ln & 3, i)
            D[r, c] = dense_a[r] @ dense_b[:, c]
    np.testing.assert_allclose(D, A @ B, rtol=1e-12)


# --- rounding ---------------------------------------------------------------------------------
def round_tf32(x):
    """Nearest, ties away from zero, 10 mantissa bits (cvt.rna.tf32.f32); NaN stays NaN."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    r = ((bits.astype(np.uint64) + 0x1000) & 0xFFFFE000).astype(np.uint32)
    out = r.view(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), out)


BF16_MAX = (2 - 2.0 ** -7) * 2.0 ** 127


def round_bf16(x):
    """Nearest, ties to even, 8 significant bits (cvt.rn.bf16.f32), by float64 arithmetic
    (not the kernel's bit operations): the spacing at x is 2^(e-8) for x = m·2^e, m in
    [0.5, 1), and 2^-133 below the normal range; past the largest bf16, ±inf."""
    x = np.asarray(x, np.float32).astype(np.float64)
    _, e = np.frexp(x)
    q = np.ldexp(1.0, np.maximum(e, -125) - 8)
    with np.errstate(invalid="ignore"):
        r = np.round(x / q) * q                       # np.round: half to even
    r = np.where(np.abs(r) > BF16_MAX, np.copysign(np.inf, x), r)
    return np.where(np.isfinite(x), r, x).astype(np.float32)


ROUND = {"tf32": round_tf32, "bf16": round_bf16}
SPECIAL = np.array([1 + 2.0 ** -11, -(1 + 2.0 ** -11), 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8,
                    1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -8), 3.4028235e38, -3.4028235e38, 1e-40,
                    0.0, -0.0, np.inf, -np.inf, np.nan, 0.1, -7.3], np.float32)


def test_rounding_models():
    t = round_tf32(SPECIAL[:3])
    assert t.tolist() == [1 + 2.0 ** -10, -(1 + 2.0 ** -10), 1 + 2.0 ** -9]   # ties away
    assert round_bf16(SPECIAL[3:5]).tolist() == [1.0, 1 + 2.0 ** -6]        # ties to even
    assert np.isinf(round_tf32(SPECIAL[6:8])).all() and np.isinf(round_bf16(SPECIAL[6:8])).all()


@pytest.mark.parametrize("prec", PRECS)
def test_operands_are_rounded_as_the_precision_says(prec):
    """x @ [[1]] is the rounded x exactly (1 is exact; the product is exact in f32)."""
    x = aj.input("x", (None, 1), "float32")
    one = aj.param("one", (1, 1), "float32")
    f = emulated(x @ one, precision=prec)
    got = f(x=SPECIAL[:, None], one=np.ones((1, 1), np.float32))[:, 0]
    want = ROUND[prec](SPECIAL)
    np.testing.assert_array_equal(got, want)
    # both orders: the right operand is rounded too
    g = emulated(one @ aj.transpose(x), precision=prec)
    np.testing.assert_array_equal(g(x=SPECIAL[:, None], one=np.ones((1, 1), np.float32))[0], want)


# --- against exact products and the interpreter -----------------------------------------------
def bound(a, b, prec, K):
    """|computed - interpreter| for float32 a @ b: each operand rounded (relative u), the
    product of two rounded operands exact in f32, K sums in any order in f32 (ours and the
    interpreter's: gamma_K each), all relative to sum |a||b|."""
    u, gk = U[prec], K * U32 / (1 - K * U32)
    return (2 * u + u * u + 2 * gk * (1 + u) ** 2) * (np.abs(a) @ np.abs(b)) * 1.0001 + 1e-30


def _matmul_case(M, K, N, ta, tb, stack=()):
    a = aj.input("a", (None, *stack, K, M) if ta else (None, *stack, M, K), "float32")
    w = aj.param("w", (N, K) if tb else (K, N), "float32")
    lhs = aj.swapaxes(a, -1, -2) if ta else a
    return a, w, lhs @ (aj.transpose(w) if tb else w)


SIZES = [(1, 1, 1), (16, 8, 8), (17, 9, 7), (65, 33, 63), (5, 70, 3), (64, 0, 8)]


@pytest.mark.parametrize("prec", PRECS)
@pytest.mark.parametrize("M,K,N", SIZES)
def test_integer_products_are_exact(prec, M, K, N):
    """Small integers are exact in both precisions and their sums in f32: any fragment,
    layout or edge mistake shows as a wrong entry (transposed operands, batch 2)."""
    rng = np.random.default_rng(M * 131 + K * 7 + N)
    for ta, tb in ((False, False), (True, True)):
        a, w, out = _matmul_case(M, K, N, ta, tb)
        f = emulated(out, precision=prec)
        A = rng.integers(-4, 5, (2, K, M) if ta else (2, M, K)).astype(np.float32)
        W = rng.integers(-4, 5, (N, K) if tb else (K, N)).astype(np.float32)
        want = (np.swapaxes(A, -1, -2) if ta else A) @ (W.T if tb else W)
        np.testing.assert_array_equal(f(a=A, w=W), want)


def _compare(f, outputs, args, prec, pairs):
    """Each output against the interpreter within ``bound`` of its (a, b, K)."""
    want = aj.compile(outputs, backend="interp")(**args)
    got = f(**args)
    worst = 0.0
    for g, w, (x, y) in zip(got, want, pairs):
        tol = bound(x, y, prec, x.shape[-1])
        err = np.abs(g.astype(np.float64) - w)
        assert (err <= tol).all(), (prec, float((err / tol).max()))
        worst = max([worst, *(err / ((np.abs(x) @ np.abs(y)) + 1e-30)).ravel()])
    return worst


@pytest.mark.parametrize("prec", PRECS)
def test_against_the_interpreter_within_the_precision_bound(prec):
    """Random normal operands; every transpose combination, a stack broadcast against a
    shared weight, a matmul_sum, the batch sizes 0, 1 and 3; the error stays below the bound
    and is not FP32-small (the operands really were rounded)."""
    rng = np.random.default_rng(7)
    M, K, N = 19, 41, 23
    worst = 0.0
    for ta in (False, True):
        for tb in (False, True):
            a, w, out = _matmul_case(M, K, N, ta, tb, stack=(2,))
            s = aj.input("s", (None, 3, K), "float32")
            outs = [out, matmul_sum(aj.swapaxes(s, -1, -2), s)]
            f = emulated(outs, precision=prec)
            for batch in (0, 1, 3):
                A = rng.standard_normal((batch, 2, K, M) if ta else (batch, 2, M, K))
                W = rng.standard_normal((N, K) if tb else (K, N))
                S = rng.standard_normal((batch, 3, K))
                args = {"a": A.astype(np.float32), "w": W.astype(np.float32),
                        "s": S.astype(np.float32)}
                lhs = np.swapaxes(args["a"], -1, -2) if ta else args["a"]
                rhs = args["w"].T if tb else args["w"]
                # matmul_sum(sᵀ, s) = [s_0ᵀ s_1ᵀ ...] @ [s_0; s_1; ...], a (K, 3B) @ (3B, K)
                st = np.concatenate(list(np.swapaxes(args["s"], -1, -2)) or [np.zeros((K, 0))], -1)
                sk = np.concatenate(list(args["s"]) or [np.zeros((0, K))], 0)
                pairs = [(lhs.astype(np.float64), rhs.astype(np.float64)),
                         (st.astype(np.float64), sk.astype(np.float64))]
                worst = max(worst, _compare(f, outs, args, prec, pairs))
    assert worst > 4 * U32        # rounded: not the exact FP32 kernel
    assert worst < 3 * U[prec]


# --- plumbing ---------------------------------------------------------------------------------
def test_fp32_is_the_exact_kernel_and_float64_is_untouched():
    a32, w32, out32 = _matmul_case(9, 11, 5, False, False)
    x = aj.input("x", (None, 11), "float64")
    v = aj.param("v", (11, 5), "float64")
    outs = [out32, x @ v]
    plain, default = emulated(outs), aj.compile(outs, backend="ptx")
    assert plain.precision == default.precision == "fp32" and "mma" not in default.ptx
    for p in ("fp32", None):
        f = aj.compile(outs, backend="ptx", precision=p)
        assert f.precision == "fp32" and f.ptx == default.ptx
    tf = aj.compile(outs, backend="ptx", precision="tf32")
    # (LLVM drops the mma of fragments it proves to be outside a 9 x 5 product)
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in tf.ptx
    # (the batch-sized product also builds the 128 x 128 kernel: choose picks one per call)
    plan = tf.launch_plan.splitlines()
    k0 = [ln for ln in plan if ln.startswith("k0_")]
    k1 = [ln for ln in plan if ln.startswith("k1_")]
    assert len(k0) == 4 and k0[0].endswith("(tf32 mma.sync)")   # 64x64; 128x128, split, sum
    assert all("tf32 mma.sync" in ln for ln in k0 if "sum of the K splits" not in ln)
    assert len(k1) == 1 and "mma" not in k1[0]                   # float64: exact
    rng = np.random.default_rng(0)
    args = {"a": rng.standard_normal((3, 9, 11)).astype(np.float32),
            "w": rng.standard_normal((11, 5)).astype(np.float32),
            "x": rng.standard_normal((3, 11)), "v": rng.standard_normal((11, 5))}
    want = aj.compile(outs, backend="interp")(**args)
    got = emulated(outs, precision="bf16")(**args)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)      # float64: exact kernel
    np.testing.assert_allclose(plain(**args)[0], want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_other_backends_compute_fp32(backend):
    """Like JAX's precision= on CPU and PyTorch's allow_tf32: a permission, FP32 honours it."""
    a, w, out = _matmul_case(7, 9, 4, False, False)
    args = {"a": np.random.default_rng(1).standard_normal((2, 7, 9)).astype(np.float32),
            "w": np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32)}
    f = aj.compile(out, backend=backend, precision="tf32")
    assert f.precision == "fp32"
    np.testing.assert_array_equal(f(**args), aj.compile(out, backend=backend)(**args))


@pytest.mark.parametrize("backend", ["llvm", "interp", "ptx"])
def test_unknown_precision_is_refused(backend):
    a, w, out = _matmul_case(2, 2, 2, False, False)
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'tf32', 'bf16'"):
        aj.compile(out, backend=backend, precision="fp16")


def test_mlp_trained_with_tf32_follows_fp32():
    """Five SGD steps of the small MLP: the tf32 parameters stay within a few tf32 ulps
    (relative to the parameters' scale) of the FP32 run."""
    outs = mlp("float32")
    args = mlp_args("float32", 13)
    runs = {}
    for prec in ("fp32", "tf32"):
        f = emulated(outs, precision=prec)
        p = {k: v.copy() for k, v in args.items()}
        losses = []
        for _ in range(5):
            loss, *grads = f(**p)
            losses.append(float(loss))
            for name, g in zip(("W1", "b1", "W2", "b2"), grads):
                p[name] -= 0.5 * g
        runs[prec] = p, losses
    (p32, l32), (ptf, ltf) = runs["fp32"], runs["tf32"]
    assert l32[-1] < l32[0]
    np.testing.assert_allclose(ltf, l32, rtol=20 * U["tf32"])
    for name in ("W1", "b1", "W2", "b2"):
        scale = np.abs(p32[name]).max()
        assert np.abs(ptf[name] - p32[name]).max() <= 20 * U["tf32"] * scale, name


@pytest.mark.skipif(ptxas_path() is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("prec", PRECS)
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_ptxas_accepts_the_tensor_core_kernels(prec, arch):
    a, w, out = _matmul_case(33, 45, 29, True, False, stack=(2,))
    loss = aj.sum(aj.tanh(out))
    s = aj.input("s", (None, 3, 7), "float32")
    f = aj.compile([loss, matmul_sum(aj.swapaxes(s, -1, -2), s)] + aj.grad(loss, [a, w]),
                   backend="ptx", precision=prec, arch=arch)
    shape = "m16n8k8" if prec == "tf32" else "m16n8k16"
    assert f.ptx.count(f"mma.sync.aligned.{shape}.row.col.f32.{prec}.{prec}.f32") >= 4
    assemble(f.ptx, arch)
