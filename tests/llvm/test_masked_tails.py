"""Masked loop tails (lowering.target.set_masked_tails): a model's vectorized loops end in
one masked vector iteration.  Every length around the vector widths, both dtypes, maps,
broadcasts and reductions, with NaN/inf/-0 inputs, against the interpreter; the option
is in the cache key, restored for every compile, and the GEMM library is built without."""

import ctypes

import numpy as np
import pytest

import adjit as aj
from adjit.backends import llvm as llvm_backend
from adjit.backends.lowering import target

LOOP = """
define void @addone(float* noalias %a, float* noalias %b, i64 %n) {
entry:
  br label %h
h:
  %i = phi i64 [0, %entry], [%j, %body]
  %c = icmp slt i64 %i, %n
  br i1 %c, label %body, label %done
body:
  %pa = getelementptr float, float* %b, i64 %i
  %v = load float, float* %pa
  %w = fadd float %v, 1.0
  %pb = getelementptr float, float* %a, i64 %i
  store float %w, float* %pb
  %j = add i64 %i, 1
  br label %h
done:
  ret void
}
"""

MASKING = ("avx512f", "avx2")     # CPUs with masked vector loads and stores


def _host_masks() -> bool:
    feats = target.host_info()["features"]
    return any(f"+{f}" in feats.split(",") for f in MASKING)


def _run(jm, n):
    b = np.arange(n, dtype=np.float32) - 3.5
    a = np.full(n + 1, -7.0, dtype=np.float32)     # one guard element past the end
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
        jm.address("addone"))
    fn(a.ctypes.data, b.ctypes.data, n)
    return a, b


@pytest.mark.parametrize("masked", [False, True])
def test_loop_every_length(masked):
    jm = target.compile_ir(LOOP, opt_level=1, cache=False, masked_tails=masked)
    for n in list(range(0, 70)) + [127, 128, 129, 1000, 1023]:
        a, b = _run(jm, n)
        np.testing.assert_array_equal(a[:n], b + 1.0)
        assert a[n] == -7.0, f"n={n}: wrote past the end"


def test_masked_ir_and_switch_restored():
    plain = target.compile_ir(LOOP, opt_level=1, cache=False, masked_tails=False)
    masked = target.compile_ir(LOOP, opt_level=1, cache=False, masked_tails=True)
    again = target.compile_ir(LOOP, opt_level=1, cache=False, masked_tails=False)
    assert "llvm.masked" not in plain.llvm_ir_optimized
    assert again.llvm_ir_optimized == plain.llvm_ir_optimized   # the option is set back
    if _host_masks():
        assert "llvm.masked" in masked.llvm_ir_optimized
        assert "vec.epilog" not in masked.llvm_ir_optimized


def test_cache_key_covers_masked_tails(tmp_path, monkeypatch):
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(tmp_path))
    a = target.compile_ir(LOOP, opt_level=1, cache=True, masked_tails=False)
    b = target.compile_ir(LOOP, opt_level=1, cache=True, masked_tails=True)
    assert a.key != b.key
    c = target.compile_ir(LOOP, opt_level=1, cache=True, masked_tails=True)
    assert c.cache_info.startswith("hit") and c.key == b.key
    assert c.llvm_ir_optimized == b.llvm_ir_optimized


def test_gemm_library_without_masked_tails(monkeypatch):
    """The library is compiled with the option off whatever compiled before it."""
    from adjit.backends.llvm import fncache
    seen = []
    real = fncache.compile_ir

    def spy(*args, **kw):
        seen.append(kw.get("masked_tails", False))
        return real(*args, **kw)
    monkeypatch.setattr(fncache, "compile_ir", spy)
    fncache.compile_once("adjit_test_masked_tails_lib", lambda: LOOP, 1, cache=False)
    assert seen == [False]


SIZES = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 65]
SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e-30, 88.0, -104.0])


def _inputs(b, n, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, n)).astype(dtype)
    y = rng.standard_normal((b, n)).astype(dtype)
    flat = x.reshape(-1)
    flat[: min(flat.size, SPECIAL.size)] = SPECIAL[: flat.size]
    return x, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", SIZES)
def test_models_every_tail(dtype, n):
    """Maps (exp, tanh, where), a row broadcast, row and column reductions and a
    gradient, at lengths around every vector width, batch 0, 1 and odd."""
    x = aj.input("x", (None, n), dtype)
    y = aj.input("y", (None, n), dtype)
    w = aj.param("w", (n,), dtype)
    h = aj.tanh(x * w + y) + aj.exp(aj.minimum(x, 3.0)) * y
    outs = [h, aj.sum(h, axis=1), aj.sum(h * h, axis=0), aj.max(x, axis=1)]
    loss = aj.sum(aj.tanh(y * w) * y)
    outs += [aj.grad(loss, [w])[0]]
    f = aj.compile(outs, cache=False)
    ref = aj.compile(outs, backend="interp")
    tol = 1e-5 if dtype == "float32" else 1e-12
    for b in (0, 1, 3, 37):
        xv, yv = _inputs(b, n, dtype, seed=b * 100 + n)
        wv = np.linspace(-1.5, 1.5, n).astype(dtype)
        got, want = f(x=xv, y=yv, w=wv), ref(x=xv, y=yv, w=wv)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol, equal_nan=True)


def test_backend_switch_is_in_the_function_cache_key():
    x = aj.input("x", (None, 5))
    traced = aj.ir.Graph([aj.exp(x)], "traced")
    on = llvm_backend._key(traced, cache=True)
    old = llvm_backend.MASKED_TAILS
    try:
        llvm_backend.MASKED_TAILS = not old
        off = llvm_backend._key(traced, cache=True)
    finally:
        llvm_backend.MASKED_TAILS = old
    assert on is not None and on != off
