"""f.profile()'s roofline: exact FLOP and byte counts of known steps, the bound and the
limiter for injected peaks, the printed table (no timing asserts)."""
import math

import numpy as np
import pytest
import sympy as sp

import adjit as aj
from adjit.backends.llvm.peaks import Peaks, use_peaks
from adjit.backends.llvm.roofline import expr_flops

B, K, N = 6, 16, 8
F4 = 4   # bytes of a float32


def model():
    x = aj.input("x", (None, K), dtype="float32")
    W = aj.param("W", (K, N), dtype="float32")
    return x, W, [aj.matmul(x, W), aj.exp(x), aj.sum(x, axis=1)]


def profiled(batches=(B,)):
    x, W, outs = model()
    f = aj.compile(outs, profile=True, cache=False)
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((K, N)).astype(np.float32)
    for b in batches:
        f(x=rng.standard_normal((b, K)).astype(np.float32), W=W0)
    return f


def by_op(rows):
    out = {}
    for r in rows:
        key = "exp" if "exp" in r["op"] or r["op"].startswith("fused") else r["op"]
        out[key] = r
    return out


COMPUTE = Peaks("test cpu", 1, fma_f32=1.0, fma_f64=0.5, bandwidth=1e9)    # bytes free
MEMORY = Peaks("test cpu", 1, fma_f32=1e9, fma_f64=1e9, bandwidth=1.0)     # FLOPs free


def test_flops_and_bytes_by_hand():
    f = profiled()
    with use_peaks(COMPUTE):
        rows = by_op(f.profile(as_rows=True))
    assert set(rows) == {"matmul", "exp", "sum"}, rows.keys()
    mm, ex, sm = rows["matmul"], rows["exp"], rows["sum"]
    assert mm["flops"] == 2 * B * N * K
    assert mm["bytes"] == (B * K + K * N + B * N) * F4
    assert ex["flops"] == 5 * B * K                 # a transcendental counts 5
    assert ex["bytes"] == 2 * B * K * F4
    assert sm["flops"] == B * K                     # one add per element read
    assert sm["bytes"] == (B * K + B) * F4
    assert all(r["batch"] == B for r in rows.values())


@pytest.mark.parametrize("peaks,limit", [(COMPUTE, "compute"), (MEMORY, "memory")])
def test_bound_is_the_larger_term(peaks, limit):
    f = profiled()
    with use_peaks(peaks):
        rows = f.profile(as_rows=True)
    for r in rows:
        t_flops = r["flops"] / (peaks.fma_f32 * 1e9) * 1e6
        t_bytes = r["bytes"] / (peaks.bandwidth * 1e9) * 1e6
        assert r["bound_us"] == pytest.approx(max(t_flops, t_bytes), rel=1e-12)
        assert r["limit"] == limit
        assert r["x_bound"] == pytest.approx(r["mean_us"] / r["bound_us"], rel=1e-12)


def test_mixed_batch_sizes_use_the_mean():
    f = profiled(batches=(4, 8))
    with use_peaks(COMPUTE):
        rows = by_op(f.profile(as_rows=True))
    assert rows["matmul"]["batch"] == 6
    assert rows["matmul"]["flops"] == 2 * 6 * N * K


def test_table_prints_every_step_under_the_machine_line():
    f = profiled()
    with use_peaks(COMPUTE):
        text = f.profile(top=None)
        rows = f.profile(as_rows=True)
    lines = text.splitlines()
    assert lines[0].startswith("machine: test cpu") and "GFLOP/s" in lines[0]
    assert "x bound" in text and "limit" in text
    body = lines[3:]
    assert len(body) == len(rows) == len(f.plan.steps)
    assert [int(ln.split()[0]) for ln in body] == [r["step"] for r in rows]
    times = [r["total_us"] for r in rows]
    assert times == sorted(times, reverse=True)      # slowest first
    with use_peaks(COMPUTE):
        short = f.profile(top=1)
    assert "more step" in short.splitlines()[-1]


def test_inlined_operand_counts_its_work_and_its_reads():
    """sum((x - 1)**2): the elementwise operand is computed inside the reduction (never
    stored), so the step's FLOPs hold it and its bytes are x's, not the square's."""
    x = aj.input("x", (None, K), dtype="float32")
    f = aj.compile(aj.sum((x - 1.0) ** 2, axis=1), profile=True, cache=False)
    f(x=np.ones((B, K), np.float32))
    with use_peaks(COMPUTE):
        rows = f.profile(as_rows=True)
    assert [s.op for s in f.plan.steps] == ["sum"]      # inlined (windows on: default)
    (r,) = rows
    assert r["flops"] == B * K * (2 + 1)                # subtract, square; the add
    assert r["bytes"] == (B * K + B) * F4


def test_expression_counts():
    a, b, c = sp.symbols("a b c", real=True)
    assert expr_flops(a * b + c) == 2
    assert expr_flops(sp.exp(a)) == 5
    assert expr_flops(a ** 2) == 1 and expr_flops(1 / a) == 1 and expr_flops(a ** 3) == 2
    assert expr_flops(sp.Max(a, 0)) == 1
    assert expr_flops(sp.exp(a) * sp.exp(a) + b) == 7       # exp(a) computed once
    assert expr_flops(a) == 0


def test_unprofiled_function_says_so():
    x, W, outs = model()
    f = aj.compile(outs[0], cache=False)
    with pytest.raises(RuntimeError, match="profile=True"):
        f.profile()
