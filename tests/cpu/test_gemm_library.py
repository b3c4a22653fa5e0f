"""The GEMM library follows the CPU a function is compiled for (backends/llvm/library.py).

One process compiles the same model for the host, ``x86-64-v3`` (AVX2) and ``x86-64-v4``
(AVX-512): each function's module declares its CPU's GEMM symbol, each library is compiled
for its CPU (ymm / zmm registers), and all of them match the interpreter, forward and
gradients, in f32 and f64, with products large enough to be shared with the pool's
workers -- also when loaded from the disk cache by a fresh process, which must bind each
cached function to its own CPU's library.  Every target's GEMM workspace need is within
the one size every workspace in the process has.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import gemm, library, pool, runtime
from adjit.backends.lowering.target import cpu as cpu_mod, host_info
from adjit.backends.lowering.target.description import AARCH64_TRIPLE, KIB, describe
from cpu_helpers import two_layer

NAMED = [("x86-64", None), ("x86-64-v3", None), ("x86-64-v4", None), ("znver3", None),
         ("skylake-avx512", None), ("neoverse-v1", AARCH64_TRIPLE)]
LEVELS = ["host", "x86-64-v3", "x86-64-v4"]
REGISTER = {64: "zmm", 32: "ymm", 16: "xmm"}
TOL = {"float32": 3e-4, "float64": 1e-10}
B = 96          # rows: every product of the model is above gemm.THREAD_MNK


def _targets():
    out = [pytest.param(lambda: describe("host"), id="host")]
    out += [pytest.param(lambda n=n, t=t: describe(n, t), id=n) for n, t in NAMED]
    tiny = dict(l1d=1 * KIB, l2=1 * KIB, l3=1 * KIB)
    huge = dict(l1d=64 * 1024 * KIB, l2=1024 * 1024 * KIB, l3=64 * 1024 * 1024 * KIB)
    for name, caches in (("tiny-caches", tiny), ("huge-caches", huge)):
        for base in ("x86-64", "x86-64-v4"):
            out.append(pytest.param(lambda b=base, c=caches: dataclasses.replace(
                describe(b), **c), id=f"{base}-{name}"))
    return out


@pytest.mark.parametrize("make", _targets())
def test_every_targets_workspace_fits_the_one_size(make):
    """The need of both dtypes' GEMM on any target <= MAX_WORKSPACE_BYTES, the size of
    the caller's workspace (runtime) and of each pool worker's."""
    d = make()
    for dt, esz in (("f32", 4), ("f64", 8)):
        p = gemm.gemm_params(dt, d)
        assert p["KC"] <= 512 and p["MC"] % p["MR"] == 0 and p["NC"] % p["NR"] == 0
        assert gemm.gemm_workspace_elems(dt, d) * esz <= gemm.MAX_WORKSPACE_BYTES
    assert runtime._GEMM_WORKSPACE_BYTES == pool.workspace_bytes() == gemm.MAX_WORKSPACE_BYTES


def test_emit_gemm_refuses_blocking_beyond_the_workspace():
    import llvmlite.ir as ir
    with pytest.raises(ValueError, match="workspace"):
        gemm.emit_gemm(ir.Module(), "f64", target=describe("x86-64-v4"),
                       params={"KC": 1024, "NC": 4096})


def test_symbols_are_distinct_c_identifiers():
    names = ["host", "x86-64", "x86_64", "x86-64-v3", "x86-64-v4", "znver3", "skylake-avx512",
             "neoverse-v1", "Foo", "a.b", "a-b", "a_b", "a+b", "x86-64-v3x"]
    syms = {n: gemm.gemm_symbol("f32", n) for n in names}
    assert len(set(syms.values())) == len(names)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) for s in syms.values())
    assert syms["host"] == gemm.gemm_symbol("f32") == "adjit_gemm_f32"
    assert syms["x86-64-v3"] == "adjit_gemm_f32__x86_64_v3"
    for n in names:
        assert library.library_for_symbol(gemm.gemm_symbol("f64", n), (n,)) == ("f64", n)
    assert library.library_for_symbol("adjit_gemm_f32__x86_64_v3") is None  # not this CPU


def test_thresholds_per_isa():
    """AVX2 / AVX-512 / NEON keep the measured THREAD_MNK; SSE (no FMA, 4 lanes) a quarter."""
    for dt in ("f32", "f64"):
        assert gemm.thread_mnk(dt) == gemm.THREAD_MNK[dt]
        for n, t in NAMED:
            want = gemm.THREAD_MNK[dt] // (4 if n == "x86-64" else 1)
            assert gemm.thread_mnk(dt, describe(n, t)) == want


def _skip_unless_runnable(cpu):
    if not cpu_mod.runnable(cpu, host_info()):
        pytest.skip(f"this host ({host_info()['cpu']}) does not implement {cpu}: code "
                    "compiled for it cannot run here")


def _model(dt):
    return two_layer(dt, 140)


def _args(dt):
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((B, 300)).astype(dt),
                W1=(rng.standard_normal((300, 130)) / 17).astype(dt),
                W2=(rng.standard_normal((130, 140)) / 11).astype(dt))


def _check(got, want, dt):
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=TOL[dt], atol=TOL[dt] * np.abs(w).max())


def test_products_are_shared_with_the_pool():
    """The model's products (forward and gradients) are all big enough to be split."""
    assert B * 300 * 130 >= gemm.THREAD_MNK["f32"] and B * 130 * 140 >= gemm.THREAD_MNK["f64"]
    assert 300 * 130 * B >= gemm.THREAD_MNK["f32"]      # the weight gradients' K = B


@pytest.fixture(scope="module")
def two_threads():
    before = pool.num_threads() if hasattr(pool, "num_threads") else None
    aj.set_num_threads(2)
    yield
    if before is not None:
        aj.set_num_threads(before)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("cpu", LEVELS)
def test_each_function_calls_its_cpus_library(cpu, dt, two_threads, tmp_path, monkeypatch):
    """In this one process: the module declares its CPU's GEMM, that library's assembly
    uses the CPU's vector registers, and the results match the interpreter."""
    _skip_unless_runnable(cpu)
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(tmp_path))
    d, short = describe(cpu), "f32" if dt == "float32" else "f64"
    f = aj.compile(_model(dt), backend="llvm", cpu=cpu)
    sym = gemm.gemm_symbol(short, cpu)
    declared = set(re.findall(r"^declare [^@]*@\"?(adjit_gemm_\w+)", f.llvm_ir, re.M))
    assert declared == {sym}
    asm = library.ensure_library(short, cpu).asm
    wide = REGISTER[d.vector_bytes]
    assert re.search(rf"\b{wide}\d+", asm)
    for reg, size in REGISTER.items():
        if reg > d.vector_bytes:
            assert not re.search(rf"\b{size}\d+", asm), f"{size} in {cpu}'s library"
    _check(f(**_args(dt)), aj.compile(_model(dt), backend="interp")(**_args(dt)), dt)


ROUND_TRIP = textwrap.dedent("""
    import json, re, sys
    import numpy as np, adjit as aj
    sys.path[:0] = [{tests!r}, {tests!r} + "/cpu"]
    from cpu.test_gemm_library import _model, _args, _check
    from adjit.backends.llvm import gemm, library
    aj.set_num_threads(2)
    out = []
    for cpu in {cpus!r}:
        for dt in ("float32", "float64"):
            f = aj.compile(_model(dt), backend="llvm", cpu=cpu)
            short = "f32" if dt == "float32" else "f64"
            # the libraries bound so far: this function's only, if it came from the cache
            out.append(dict(cpu=cpu, dt=dt, info=f.cache_info,
                            libs=sorted(map(list, library._libraries))))
            _check(f(**_args(dt)), aj.compile(_model(dt), backend="interp")(**_args(dt)), dt)
    print("RESULT", json.dumps(out))
""")


def test_disk_cache_round_trip_binds_each_functions_library(tmp_path):
    """Two fresh processes on one cache directory: the second loads every function from
    the cache and binds, for each, the library of the CPU it was compiled for (checked
    by the libraries the process has loaded when that function is ready)."""
    cpus = [c for c in reversed(LEVELS) if cpu_mod.runnable(c, host_info())]
    if cpus == ["host"]:
        pytest.skip("this host implements neither x86-64-v3 nor x86-64-v4")
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ROUND_TRIP.format(tests=tests, cpus=cpus)
    env = dict(os.environ, ADJIT_CACHE_DIR=str(tmp_path))
    env.pop("ADJIT_CPU", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.split("RESULT", 1)[1]))
    seen = []
    for rec in runs[1]:
        assert rec["info"].startswith("hit"), rec
        seen.append([{"float32": "f32", "float64": "f64"}[rec["dt"]], rec["cpu"]])
        assert rec["libs"] == sorted(seen), rec     # its own library, no other
