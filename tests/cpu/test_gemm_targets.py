"""The GEMM on every ISA path, by naming CPUs (nothing here depends on the host's vectors).

* The tiles and cache blocking derived from each description obey the register rule
  (MR*NV accumulators + NV B vectors + 1 broadcast <= vector registers) and the cache
  budgets, and are the expected shapes.
* The micro-kernel's assembly for each x86 CPU uses its register class (xmm / ymm / zmm)
  with MR*NV accumulators (fmul + fadd, never a libm ``fma`` call, without FMA); for
  neoverse-v1 the cross-compiled aarch64 object and assembly use ``fmla`` on ``v``
  registers (4s / 2d) with MR*NV accumulators.
* Each target's GEMM, compiled for that CPU where the host implements it (x86-64 levels,
  :func:`cpu.runnable`) and otherwise for the host (the IR is portable vector IR: the NEON
  tiles run here that way), matches numpy at sizes around every tile and block edge, both
  transposes, accumulate, f32 and f64.
* Packing with every power-of-two transpose width 2..16.
* A whole model compiled with ``cpu=`` an x86-64 level (its GEMM library compiled for
  that level, with its tiles) matches the interpreter.
"""
import ctypes
import itertools
import re
import subprocess

import llvmlite.ir as ir
import numpy as np
import pytest

from adjit.backends.llvm import gemm
from adjit.backends.llvm.gemm_pack import emit_pack
from adjit.backends.llvm.gemm_shape import gemm_params
from adjit.backends.lowering.target import compile_ir
from adjit.backends.lowering.target import cpu as cpu_mod
from adjit.backends.lowering.target.cross import emit_assembly, emit_object
from adjit.backends.lowering.target.description import AARCH64_TRIPLE, describe
from adjit.backends.lowering.target.machine import host_info
from cpu_helpers import two_layer

# name -> (triple, f32 MR x NR, f64 MR x NR, register class on x86)
TARGETS = {
    "x86-64": (None, (6, 8), (6, 4), "xmm"),
    "x86-64-v3": (None, (6, 16), (6, 8), "ymm"),
    "x86-64-v4": (None, (8, 32), (8, 16), "zmm"),
    "znver3": (None, (6, 16), (6, 8), "ymm"),
    "skylake-avx512": (None, (8, 32), (8, 16), "zmm"),
    "neoverse-v1": (AARCH64_TRIPLE, (8, 12), (8, 6), None),
}
RUN = ["x86-64", "x86-64-v3", "x86-64-v4", "neoverse-v1"]
DTYPES = {"f32": (np.float32, 4, 1e-5), "f64": (np.float64, 8, 1e-12)}
I32, I64, P = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
SIG = ctypes.CFUNCTYPE(None, I32, I32, I64, I64, I64, P, I64, P, I64, P, I64, I32, P)


def target(name):
    return describe(name, TARGETS[name][0])


@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("dt", list(DTYPES))
def test_params_follow_the_description(name, dt):
    d, esz = target(name), DTYPES[dt][1]
    p = gemm_params(dt, d)
    MR, NV, VL, NR, KC, MC, NC = (p[k] for k in "MR NV VL NR KC MC NC".split())
    assert MR * NV + NV + 1 <= d.vector_registers          # the register rule
    assert VL == d.lanes(dt) and NR == NV * VL and p["FMA"] == d.fma
    assert (MR, NR) == TARGETS[name][1 if dt == "f32" else 2]
    assert KC & (KC - 1) == 0 and KC * NR * esz <= 0.75 * d.l1d     # B sliver in L1
    assert MC % MR == 0 and MC * KC * esz <= d.l2 // 2               # A panel in L2
    assert NC % NR == 0 and NC <= 4096 and KC * NC * esz <= d.l3 // 4
    assert 2 <= p["PV"] <= VL
    # one workspace buffer of the f64 size in bytes serves both dtypes
    need = gemm.MAX_THREADS * (MC * KC + KC * NC)
    assert gemm.gemm_workspace_elems(dt, d) >= need
    assert gemm.gemm_workspace_elems("f64", d) * 8 >= gemm.gemm_workspace_elems(dt, d) * esz


def kernel_text(asm, dt):
    """The packed micro-kernel's assembly (from its label to the end of the function)."""
    return asm.split(f"adjit_gemm_{dt}.kern.pp:")[1].split(".Lfunc_end")[0]


@pytest.mark.parametrize("name", [n for n, t in TARGETS.items() if t[3]])
@pytest.mark.parametrize("dt", list(DTYPES))
def test_x86_kernel_uses_the_register_class(name, dt):
    d, (_, _, _, reg) = target(name), TARGETS[name]
    p = gemm_params(dt, d)
    module = ir.Module(name="asm")
    gemm.emit_gemm(module, dt, target=d, threads=1)
    asm = emit_assembly(str(module), name, host_info()["triple"])
    kern = kernel_text(asm, dt)
    sfx = "ps" if dt == "f32" else "pd"
    if d.fma:
        fmas = re.findall(rf"\tvfmadd\d+{sfx}\s+[^\n]*,\s*(%\w+)\n", kern)
        assert fmas and len(fmas) % (p["MR"] * p["NV"]) == 0     # k steps (znver3 unrolls)
        assert {r[1:4] for r in fmas} == {reg}
        assert len(set(fmas)) == p["MR"] * p["NV"]               # distinct accumulators
    else:
        muls = re.findall(rf"\tv?mul{sfx}\s+[^\n]*,\s*(%\w+)\n", kern)
        assert muls and len(muls) % (p["MR"] * p["NV"]) == 0 and {r[1:4] for r in muls} == {reg}
        assert not re.search(r"\bfmaf?\b", asm)                  # no libm call per lane
    wider = {"xmm": r"%[yz]mm", "ymm": r"%zmm", "zmm": None}[reg]
    assert wider is None or not re.search(wider, kern)


@pytest.mark.parametrize("dt, lanes", [("f32", "4s"), ("f64", "2d")])
def test_aarch64_cross_compile(dt, lanes):
    d = target("neoverse-v1")
    p = gemm_params(dt, d)
    module = ir.Module(name="arm")
    gemm.emit_gemm(module, dt, target=d, threads=1)
    obj = emit_object(str(module), "neoverse-v1", AARCH64_TRIPLE)
    assert obj[:4] == b"\x7fELF" and obj[18] == 183             # e_machine = EM_AARCH64
    kern = kernel_text(emit_assembly(str(module), "neoverse-v1", AARCH64_TRIPLE), dt)
    fmla = re.findall(r"\tfmla\s+(v\d+)\.(\w+),", kern)
    assert fmla and len(fmla) % (p["MR"] * p["NV"]) == 0 and {s for _, s in fmla} == {lanes}
    assert len({r for r, _ in fmla}) == p["MR"] * p["NV"]         # distinct accumulators


# --- running the kernels ----------------------------------------------------------------

class Gemm:
    def __init__(self, jm, dt, d):
        self.jm, self.fn = jm, SIG(jm.address(gemm.gemm_symbol(dt)))   # jm kept alive
        self.npdt = DTYPES[dt][0]
        n = gemm.gemm_workspace_elems(dt, d)
        raw = np.empty(n + 64, self.npdt)
        off = (-raw.ctypes.data % 64) // raw.itemsize
        self.work = raw[off:off + n]

    def __call__(self, ta, tb, A, B, C, acc, K):
        ld = lambda x: x.strides[0] // x.itemsize
        M, N = C.shape
        self.fn(ta, tb, M, N, K, A.ctypes.data, ld(A), B.ctypes.data, ld(B),
                C.ctypes.data, ld(C), acc, self.work.ctypes.data)


_built = {}


def built(name):
    """Both dtypes' GEMM for target ``name``: compiled for that CPU when the host runs its
    code, else (named aarch64 or a level the host lacks) for the host."""
    if name not in _built:
        d = target(name)
        runs_here = TARGETS[name][0] is None and cpu_mod.runnable(name, host_info())
        module = ir.Module(name=f"gemm_{name}")
        for dt in DTYPES:
            gemm.emit_gemm(module, dt, target=d)
        jm = compile_ir(str(module), cache=False, name=f"gemm_{name}",
                        cpu=name if runs_here else "host")
        _built[name] = {dt: Gemm(jm, dt, d) for dt in DTYPES}
    return _built[name]


def edge_sizes(p):
    return sorted({0, 1, p["MR"] - 1, p["MR"] + 1, p["NR"] - 1, p["NR"] + 1, p["MC"] + 1,
                   p["KC"] + 1})


def check(kern, dt, M, N, K, ta, tb, acc, seed):
    npdt, _, rtol = DTYPES[dt]
    rng = np.random.default_rng(seed)
    pad = seed % 3
    mk = lambda r, c: rng.standard_normal((r, c + pad)).astype(npdt)[:, :c]
    A, B, C = mk(*((K, M) if ta else (M, K))), mk(*((N, K) if tb else (K, N))), mk(M, N)
    if not acc:
        C[...] = np.nan                                    # never read
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    C0 = C.astype(np.float64) if acc else 0.0
    ref, bound = opA @ opB + C0, np.abs(opA) @ np.abs(opB) + np.abs(C0)
    kern(ta, tb, A, B, C, acc, K)
    assert np.all(np.abs(C - ref) <= rtol * bound + 1e-30), (M, N, K, ta, tb, acc)


@pytest.mark.parametrize("name", RUN)
@pytest.mark.parametrize("dt", list(DTYPES))
def test_gemm_matches_numpy_at_every_edge(name, dt):
    """M, N, K each over {0, 1, MR-1, MR+1, NR-1, NR+1, MC+1, KC+1} (every (M, N) pair, K
    rotating), two of the eight (transA, transB, accumulate) layouts per product (all
    eight over the sizes), plus N > NC."""
    kern, p = built(name)[dt], gemm_params(dt, target(name))
    vals = edge_sizes(p)
    layouts = list(itertools.product((0, 1), (0, 1), (0, 1)))
    for n, (i, j) in enumerate(itertools.product(range(len(vals)), repeat=2)):
        M, N, K = vals[i], vals[j], vals[(i + 2 * j) % len(vals)]
        for ta, tb, acc in (layouts[n % 8], layouts[(n + 3) % 8]):
            check(kern, dt, M, N, K, ta, tb, acc, seed=n)
    for ta, tb, acc in layouts:
        check(kern, dt, p["MR"] + 1, p["NC"] + p["NR"] + 1, p["KC"] + 1, ta, tb, acc, seed=7)


@pytest.mark.parametrize("name", RUN)
@pytest.mark.parametrize("dt", list(DTYPES))
def test_special_values_on_every_target(name, dt):
    """NaN, ±inf, zeros, huge and tiny (subnormal products) in A and B, on every target's
    tiles (full tiles, edge tiles, the unpacked small path): each element of C is what
    the float64 sum gives -- NaN where a NaN or inf·0 or inf−inf enters, the same inf
    otherwise, finite values to the dtype's rounding."""
    npdt, _, rtol = DTYPES[dt]
    kern, p = built(name)[dt], gemm_params(dt, target(name))
    big, tiny = (1e30, 1e-30) if dt == "f32" else (1e200, 1e-200)
    rng = np.random.default_rng(3)
    for M, N, K in ((p["MR"] + 1, p["NR"] + 3, 7), (3, 5, 4), (2 * p["MR"], 2 * p["NR"], 65)):
        A = rng.standard_normal((M, K))
        B = rng.standard_normal((K, N))
        A[0, 0], A[1 % M, 1 % K], B[2 % K, 0] = np.nan, np.inf, -np.inf
        A[M - 1, :] = 0.0                                   # 0 · inf = NaN in row M-1
        A[:, K - 1] *= big
        B[K - 1, :] *= tiny                                 # huge · tiny: finite
        B[0, N - 1] = tiny * tiny                           # underflows in f32
        A, B = A.astype(npdt), B.astype(npdt)
        C = np.full((M, N), 5.0, npdt)
        with np.errstate(invalid="ignore", over="ignore"):
            ref = A.astype(np.float64) @ B.astype(np.float64)
            bound = np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64))
            kern(0, 0, A, B, C, 0, K)
        assert np.array_equal(np.isnan(C), np.isnan(ref)), (M, N, K)
        fin = np.isfinite(ref)
        assert np.array_equal(C[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
        assert np.all(np.abs(C[fin] - ref[fin]) <= rtol * bound[fin] + 1e-300), (M, N, K)


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("pv", [2, 4, 8, 16])
def test_packing_with_every_transpose_width(dt, pv):
    """The packing routine alone with PV-lane transposes, for sliver widths below, at and
    above PV (not multiples of it too), both operand layouts, ragged n and kc."""
    npdt, esz, _ = DTYPES[dt]
    T = ir.FloatType() if dt == "f32" else ir.DoubleType()
    widths = sorted({max(1, pv // 2), pv, pv + 2, 2 * pv, 6, 12})
    module = ir.Module(name="pack")
    for W in widths:
        emit_pack(module, dt, {"VL": pv, "PV": pv}, T, W).linkage = ""     # exported
    jm = compile_ir(str(module), cache=False, name="pack")
    sig = ctypes.CFUNCTYPE(None, I32, I64, I64, P, I64, P)
    rng = np.random.default_rng(pv)
    for W in widths:
        fn = sig(jm.address(f"adjit_gemm_{dt}.pack{W}"))
        for n, kc, contig in itertools.product((1, W - 1, W, 2 * W + 1), (1, pv - 1, 2 * pv + 3, 37),
                                               (0, 1)):
            if n < 1 or kc < 1:
                continue
            src = rng.standard_normal((kc, n + 3) if contig else (n, kc + 3)).astype(npdt)
            ld = src.shape[1]
            full = src[:, :n].T if contig else src[:, :kc]       # full[w, k] = src(w, k)
            slivers = -(-n // W)
            dst = np.full(slivers * kc * W, np.nan, npdt)
            fn(contig, n, kc, src.ctypes.data, ld, dst.ctypes.data)
            padded = np.zeros((slivers * W, kc), npdt)
            padded[:n] = full
            want = padded.reshape(slivers, W, kc).transpose(0, 2, 1).ravel()
            np.testing.assert_array_equal(dst, want, err_msg=f"W={W} n={n} kc={kc} {contig}")


def _model(dt):
    return two_layer(dt, 33)


@pytest.mark.parametrize("level", ["x86-64-v3", "x86-64-v4"])
def test_compiled_model_for_a_level(level, tmp_path, monkeypatch):
    """A model compiled with cpu=<level> calls the GEMM library compiled for that level,
    with its tiles (tests/cpu/test_gemm_library.py: in one process with the host's), and
    matches the interpreter."""
    import adjit as aj
    from adjit.backends.llvm import library
    if not cpu_mod.runnable(level, host_info()):
        pytest.skip(f"this host does not implement {level}: its code cannot run here "
                    "(the tiles are checked above, compiled for the host)")
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(tmp_path))
    for dt, tol in (("float32", 2e-4), ("float64", 1e-10)):
        short = "f32" if dt == "float32" else "f64"
        f = aj.compile(_model(dt), backend="llvm", cpu=level)
        assert f'@"{gemm.gemm_symbol(short, level)}"' in f.llvm_ir
        lib = library.ensure_library(short, level)
        assert re.search(rf"\b{TARGETS[level][3]}\d+", lib.asm)
        rng = np.random.default_rng(0)
        args = dict(x=rng.standard_normal((37, 300)).astype(dt),
                    W1=(rng.standard_normal((300, 130)) / 17).astype(dt),
                    W2=(rng.standard_normal((130, 33)) / 11).astype(dt))
        want = aj.compile(_model(dt), backend="interp")(**args)
        for g, w in zip(f(**args), want):
            g, w = np.asarray(g), np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.abs(w).max())


HARNESS = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#define DEF(T, S)                                                                        \
void adjit_gemm_##S(int32_t, int32_t, int64_t, int64_t, int64_t, T *, int64_t, T *,     \
                    int64_t, T *, int64_t, int32_t, T *);                               \
static int check_##S(long M, long N, long K, int ta, int tb, int acc, T *w, double tol) { \
  long lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;                      \
  long ar = ta ? K : M, br = tb ? N : K;                                                 \
  T *A = malloc(sizeof(T) * (ar * lda + 1)), *B = malloc(sizeof(T) * (br * ldb + 1));    \
  T *C = malloc(sizeof(T) * (M * ldc + 1));                                              \
  double *R = malloc(sizeof(double) * (M * N + 1)), err = 0;                            \
  for (long i = 0; i < ar * lda; i++) A[i] = (T)(rand() % 2001 - 1000) / 1000;           \
  for (long i = 0; i < br * ldb; i++) B[i] = (T)(rand() % 2001 - 1000) / 1000;           \
  for (long i = 0; i < M * ldc; i++) C[i] = acc ? (T)(rand() % 2001 - 1000) / 1000 : NAN; \
  for (long i = 0; i < M; i++)                                                           \
    for (long j = 0; j < N; j++) {                                                       \
      double s = acc ? C[i * ldc + j] : 0;                                               \
      for (long k = 0; k < K; k++)                                                       \
        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *                            \
             (tb ? B[j * ldb + k] : B[k * ldb + j]);                                     \
      R[i * N + j] = s;                                                                  \
    }                                                                                    \
  adjit_gemm_##S(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, w);                       \
  for (long i = 0; i < M; i++)                                                           \
    for (long j = 0; j < N; j++) {                                                       \
      double e = fabs(C[i * ldc + j] - R[i * N + j]);                                    \
      if (!(e <= err)) err = e;                                                          \
    }                                                                                    \
  free(A); free(B); free(C); free(R);                                                    \
  if (!(err <= tol * (K + 1))) {                                                         \
    printf("FAIL %s %ld %ld %ld %d %d %d %g\n", #S, M, N, K, ta, tb, acc, err);         \
    return 1;                                                                            \
  }                                                                                      \
  return 0;                                                                              \
}
DEF(float, f32)
DEF(double, f64)
int main(int argc, char **argv) {
  long n32 = atol(argv[1]), n64 = atol(argv[2]), nv = argc - 3, runs = 0, fails = 0;
  float *w32 = aligned_alloc(64, (n32 * 4 + 63) / 64 * 64);
  double *w64 = aligned_alloc(64, (n64 * 8 + 63) / 64 * 64);
  for (long i = 0; i < nv; i++)
    for (long j = 0; j < nv; j++) {
      long M = atol(argv[3 + i]), N = atol(argv[3 + j]), K = atol(argv[3 + (i + 2 * j) % nv]);
      for (int t = (i + j) % 8, u = 0; u < 2; u++, t = (t + 3) % 8) {
        fails += check_f32(M, N, K, t & 1, t >> 1 & 1, t >> 2, w32, 1e-6);
        fails += check_f64(M, N, K, t & 1, t >> 1 & 1, t >> 2, w64, 1e-14);
        runs += 2;
      }
    }
  printf("%ld products, %ld failures\n", runs, fails);
  return fails != 0;
}
"""


def test_aarch64_gemm_runs_under_emulation(tmp_path):
    """The cross-compiled neoverse-v1 GEMM (both dtypes, one thread), linked with a C
    harness by the aarch64 cross compiler and run under qemu-user, against a float64
    reference loop: every (M, N) pair of edge sizes, K rotating, two layouts each."""
    import shutil
    gcc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if not (gcc and qemu):
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt: gcc-aarch64-linux-gnu "
                    "qemu-user); the object and its assembly are checked above")
    d = target("neoverse-v1")
    module = ir.Module(name="arm")
    for dt in DTYPES:
        gemm.emit_gemm(module, dt, target=d, threads=1)
    (tmp_path / "gemm.o").write_bytes(emit_object(str(module), "neoverse-v1", AARCH64_TRIPLE))
    (tmp_path / "h.c").write_text(HARNESS)
    subprocess.run([gcc, "-O2", str(tmp_path / "h.c"), str(tmp_path / "gemm.o"), "-lm", "-o",
                    str(tmp_path / "h")], check=True, capture_output=True)
    p = gemm_params("f32", d)
    sizes = [0, 1, p["MR"] - 1, p["MR"] + 1, p["NR"] + 1, p["MC"] + 1, p["KC"] + 1]
    proc = subprocess.run([qemu, "-L", "/usr/aarch64-linux-gnu", str(tmp_path / "h"),
                           str(gemm.gemm_workspace_elems("f32", d)),
                           str(gemm.gemm_workspace_elems("f64", d))] + [str(s) for s in sizes],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and " 0 failures" in proc.stdout, proc.stdout[-2000:]
