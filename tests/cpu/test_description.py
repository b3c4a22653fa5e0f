"""The target description: named CPUs are described the same on any host; the host's
description agrees with LLVM's feature string; thread counts follow ADJIT_NUM_THREADS,
the affinity mask and a cgroup quota."""
import os

import pytest

from adjit.backends.lowering.target import description as D
from adjit.backends.lowering.target.machine import host_info


@pytest.mark.parametrize("cpu,isa,width,regs", [
    ("x86-64", "x86-64-sse", 16, 16),
    ("x86-64-v3", "x86-64-avx2", 32, 16),
    ("znver3", "x86-64-avx2", 32, 16),
    ("haswell", "x86-64-avx2", 32, 16),
    ("x86-64-v4", "x86-64-avx512", 64, 32),
    ("skylake-avx512", "x86-64-avx512", 64, 32),
    ("znver4", "x86-64-avx512", 64, 32),
])
def test_named_x86(cpu, isa, width, regs):
    d = D.describe(cpu)
    assert (d.isa, d.vector_bytes, d.vector_registers) == (isa, width, regs)
    assert d.fma == (cpu != "x86-64")
    assert d.lanes("f32") == width // 4 and d.lanes("float64") == width // 8
    assert d.l1d < d.l2 < d.l3
    assert d.name == cpu and not d.is_host


@pytest.mark.parametrize("cpu", ["neoverse-v1", "cortex-a72", "apple-m1"])
def test_named_aarch64(cpu):
    d = D.describe(cpu, D.AARCH64_TRIPLE)
    assert (d.isa, d.vector_bytes, d.vector_registers, d.fma) == ("aarch64-neon", 16, 32, True)
    assert d.triple == D.AARCH64_TRIPLE


def test_unknown_cpu_is_an_error():
    with pytest.raises(ValueError, match="not a CPU LLVM can compile for"):
        D.describe("no-such-cpu-9")
    with pytest.raises(ValueError, match="describes only the host"):
        D.describe("host", D.AARCH64_TRIPLE)


def test_host_agrees_with_llvm_features():
    d, info = D.describe("host"), host_info()
    feats = set(info["features"].split(","))
    assert d.is_host and d.llvm_cpu == info["cpu"]
    if info["triple"].startswith("x86_64"):
        want = 64 if "+avx512f" in feats else 32 if "+avx" in feats else 16
        assert d.vector_bytes == want
    assert d.l1d > 0 and d.l2 >= d.l1d and d.l3 >= d.l2
    assert D.describe() is D.describe("host")        # built once per process


def test_cores_from_env(monkeypatch):
    monkeypatch.setenv("ADJIT_NUM_THREADS", "7")
    assert D.available_cores() == 7 and D.describe("x86-64-v3").cores == 7
    monkeypatch.setenv("ADJIT_NUM_THREADS", "1")
    assert D.available_cores() == 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("ADJIT_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="ADJIT_NUM_THREADS"):
            D.available_cores()


def test_cores_from_affinity_and_quota(monkeypatch, tmp_path):
    monkeypatch.delenv("ADJIT_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(D, "cgroup_quota", lambda: None)
    assert D.available_cores() == 6
    monkeypatch.setattr(D, "cgroup_quota", lambda: 3)
    assert D.available_cores() == 3
    monkeypatch.setattr(D, "cgroup_quota", lambda: 64)
    assert D.available_cores() == 6


@pytest.mark.parametrize("text,want", [("max 100000", None), ("250000 100000", 3),
                                       ("100000 100000", 1), ("5000 100000", 1),
                                       ("garbage", None), ("", None)])
def test_cgroup_quota(tmp_path, text, want):
    p = tmp_path / "cpu.max"
    p.write_text(text)
    assert D.cgroup_quota(str(p)) == want
    assert D.cgroup_quota(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("text,want", [("48K", 48 * 1024), ("1024K", 1 << 20), ("32M", 32 << 20),
                                       ("7", 7), ("junk", 0)])
def test_cache_size_text(text, want):
    assert D._size(text) == want
