"""GFLOP/s of adjit's generated GEMM against numpy (OpenBLAS) on the same layouts.

    python benchmarks/gemm_bench.py                 # 1 and 2 threads, f32 and f64
    python benchmarks/gemm_bench.py --threads 1     # one setting only
    python benchmarks/gemm_bench.py --crossover     # where the fast path / 2 threads pay off
    python benchmarks/gemm_bench.py --compile       # compile and cache-load times
    ADJIT_CPU=x86-64-v3 python benchmarks/gemm_bench.py --threads 1   # a named CPU's tiles

Threads: numpy's OpenBLAS reads OPENBLAS_NUM_THREADS at import, so each thread count runs
in its own subprocess with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set to it; adjit's
kernel is emitted with ``threads=1`` or ``threads=2`` to match.

Columns: ``adjit`` = one ctypes call per product (includes ~1-2 us of ctypes argument
conversion for 13 arguments); ``adjit-jit`` = the same kernel called in a loop from
JIT-compiled code, which is how compiled models call it; ``numpy`` = np.matmul with out=
on views of the same arrays.  Each number is the median of --repeats timings, each
timing a loop long enough (>= ~2 ms) to swamp timer resolution.  The machine is shared
and noisy: compare columns within one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# Products: (label, M, N, K, transA, transB).  W2 = batch-64 MLP 784 -> 128 (forward,
# dX = dY W^T, dW = X^T dY); W4 = batch-256 1024 -> 1024 layer and its two backward products.
SIZES = [
    ("32^3", 32, 32, 32, 0, 0),
    ("W2 fwd 64x784.784x128", 64, 128, 784, 0, 0),
    ("W2 dX 64x128.(784x128)^T", 64, 784, 128, 0, 1),
    ("W2 dW (64x784)^T.64x128", 784, 128, 64, 1, 0),
    ("W4 fwd 256x1024.1024^2", 256, 1024, 1024, 0, 0),
    ("W4 dX 256x1024.(1024^2)^T", 256, 1024, 1024, 0, 1),
    ("W4 dW (256x1024)^T.256x1024", 1024, 1024, 256, 1, 0),
    ("1024^3", 1024, 1024, 1024, 0, 0),
]


def _build(dtype, **kw):
    """Compile adjit_gemm_<dtype> plus a JIT loop driver; return (ctypes fn, loop fn, ws)."""
    import ctypes

    import llvmlite.ir as ir
    import numpy as np

    from adjit.backends.llvm import gemm
    from adjit.backends.lowering.target import compile_ir

    module = ir.Module(name="gemm_bench")
    fn = gemm.emit_gemm(module, dtype, **kw)
    # loop(reps, args...) calls the kernel reps times: the cost seen from generated code.
    i64 = ir.IntType(64)
    loop = ir.Function(module, ir.FunctionType(ir.VoidType(), [i64] + list(fn.ftype.args)),
                       name="bench_loop")
    b = ir.IRBuilder(loop.append_basic_block("entry"))
    head, body, done = (loop.append_basic_block(n) for n in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), loop.blocks[0])
    b.cbranch(b.icmp_signed("<", i, loop.args[0]), body, done)
    b.position_at_end(body)
    b.call(fn, loop.args[1:])
    i.add_incoming(b.add(i, ir.Constant(i64, 1)), body)
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    jm = compile_ir(str(module), cache=False)
    I32, I64, P = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    args = [I32, I32, I64, I64, I64, P, I64, P, I64, P, I64, I32, P]
    call = ctypes.CFUNCTYPE(None, *args)(jm.address(gemm.gemm_symbol(dtype)))
    run = ctypes.CFUNCTYPE(None, I64, *args)(jm.address("bench_loop"))
    n = gemm.gemm_workspace_elems(dtype)
    npdt = np.float32 if dtype == "f32" else np.float64
    raw = np.empty(n + 64, npdt)
    off = (-raw.ctypes.data % 64) // raw.itemsize
    return jm, call, run, raw[off:off + n]


def _time(f, flops, repeats):
    """Median seconds per call of f() over `repeats` timed loops."""
    inner = max(1, int(2e7 / max(flops, 1)))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        ts.append((time.perf_counter() - t) / inner)
    ts.sort()
    return ts[len(ts) // 2], inner


def _operands(dtype, M, N, K, ta, tb):
    import numpy as np
    npdt = np.float32 if dtype == "f32" else np.float64
    rng = np.random.default_rng(0)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(npdt)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(npdt)
    return A, B, np.zeros((M, N), npdt)


def bench(threads, dtypes, repeats):
    import numpy as np
    print(f"## threads={threads} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})"
          f"  GFLOP/s, median of {repeats}")
    print(f"{'dtype':5} {'product':30} {'M':>5} {'N':>5} {'K':>5} {'adjit':>7} {'adjit-jit':>9}"
          f" {'numpy':>7}  {'adjit us':>9} {'numpy us':>9}")
    for dtype in dtypes:
        jm, call, run, work = _build(dtype, threads=threads)
        rows = []
        for label, M, N, K, ta, tb in SIZES:     # all adjit timings first: OpenBLAS's idle
            A, B, C = _operands(dtype, M, N, K, ta, tb)    # threads spin for a while after
            args = (ta, tb, M, N, K, A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1],
                    C.ctypes.data, N, 0, work.ctypes.data)     # each numpy call and would
            fl = 2 * M * N * K                                 # steal the second core
            t_c, _ = _time(lambda: call(*args), fl, repeats)
            reps = max(1, int(2e7 / fl))
            t_j, _ = _time(lambda: run(reps, *args), fl * reps, repeats)
            rows.append((label, M, N, K, ta, tb, A, B, C, fl, t_c, t_j / reps))
        for label, M, N, K, ta, tb, A, B, C, fl, t_c, t_j in rows:
            opA, opB = (A.T if ta else A), (B.T if tb else B)
            ref = opA.astype(np.float64) @ opB.astype(np.float64)
            err = np.abs(C - ref).max() / max(1.0, np.abs(ref).max())
            assert err < (1e-4 if dtype == "f32" else 1e-10), (label, err)
            t_np, _ = _time(lambda: np.matmul(opA, opB, out=C), fl, repeats)
            g = lambda t: fl / t / 1e9
            print(f"{dtype:5} {label:30} {M:5} {N:5} {K:5} {g(t_c):7.1f} {g(t_j):9.1f}"
                  f" {g(t_np):7.1f}  {t_c * 1e6:9.1f} {t_np * 1e6:9.1f}", flush=True)
        time.sleep(0.2)


def crossover(dtypes, repeats):
    """Time forced variants: unpacked vs packed, and 1 vs 2 threads, over growing sizes."""
    print("## crossover: us per product (median), in-JIT loop")
    for dtype in dtypes:
        variants = {"direct": dict(threads=1, small_mnk=1 << 62),
                    "packed": dict(threads=1, small_mnk=0),
                    "2thr": dict(threads=2, small_mnk=0, thread_mnk=1)}
        built = {k: _build(dtype, **kw) for k, kw in variants.items()}
        print(f"{dtype:5} {'M':>5} {'N':>5} {'K':>5} {'MNK':>10} " +
              " ".join(f"{k:>9}" for k in variants))
        shapes = [(16, 16, 16), (32, 32, 32), (32, 64, 64), (64, 64, 64), (64, 128, 64),
                  (64, 128, 128), (128, 128, 128), (64, 128, 784), (64, 784, 128),
                  (128, 256, 256), (192, 256, 256), (256, 256, 256), (256, 512, 256),
                  (512, 512, 512)]
        for M, N, K in shapes:
            row = []
            for k, (jm, call, run, work) in built.items():
                A, B, C = _operands(dtype, M, N, K, 0, 0)
                args = (0, 0, M, N, K, A.ctypes.data, K, B.ctypes.data, N, C.ctypes.data, N, 0,
                        work.ctypes.data)
                reps = max(1, int(2e7 / (2 * M * N * K)))
                t, _ = _time(lambda: run(reps, *args), 2 * M * N * K * reps, repeats)
                row.append(t / reps * 1e6)
            print(f"{dtype:5} {M:5} {N:5} {K:5} {M * N * K:10} " +
                  " ".join(f"{t:9.2f}" for t in row), flush=True)


def compile_times():
    import tempfile

    import llvmlite.ir as ir

    from adjit.backends.llvm import gemm
    from adjit.backends.lowering.target import compile_ir
    module = ir.Module(name="adjit_library")
    for dt in ("f32", "f64"):
        gemm.emit_gemm(module, dt)
    text = str(module)
    print(f"## compile: gemm module (f32 + f64), {len(text.splitlines())} lines of IR")
    for level in (0, 1, 2, 3):
        t = time.perf_counter()
        compile_ir(text, opt_level=level, cache=False)
        print(f"O{level} compile: {(time.perf_counter() - t) * 1e3:8.1f} ms")
    with tempfile.TemporaryDirectory() as d:
        os.environ["ADJIT_CACHE_DIR"] = d
        compile_ir(text)
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            jm = compile_ir(text)
            ts.append(time.perf_counter() - t)
        assert jm.cache_info.startswith("hit")
        print(f"cache hit (load object, 5 runs): min {min(ts) * 1e3:.2f} ms, "
              f"median {sorted(ts)[2] * 1e3:.2f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, choices=(1, 2))
    ap.add_argument("--dtype", choices=("f32", "f64"))
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--crossover", action="store_true")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    dtypes = [a.dtype] if a.dtype else ["f32", "f64"]
    if a.compile:
        return compile_times()
    if a.threads is None and not a.crossover:
        for t in (1, 2):            # fresh process per setting: OpenBLAS reads env at import
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
            cmd = [sys.executable, __file__, "--threads", str(t), "--repeats", str(a.repeats)]
            subprocess.run(cmd + (["--dtype", a.dtype] if a.dtype else []), env=env, check=True)
        return
    if a.threads is not None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    if a.crossover:
        return crossover(dtypes, a.repeats)
    bench(a.threads, dtypes, a.repeats)


if __name__ == "__main__":
    main()
