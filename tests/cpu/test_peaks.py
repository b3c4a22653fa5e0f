"""adjit.machine_peaks: the measured FMA peak and memory bandwidth (no timing asserts:
only that the numbers are sane, kept per process, and that the kernels are what they
claim for named CPUs)."""
import math

import pytest

import adjit as aj
from adjit.backends.llvm import peaks as P
from adjit.backends.lowering.target import compile_ir
from adjit.backends.lowering.target.description import describe


@pytest.fixture(scope="module")
def measured():
    return aj.machine_peaks()


def test_peaks_are_positive_finite_and_sane(measured):
    for v in (measured.fma_f32, measured.fma_f64, measured.bandwidth):
        assert math.isfinite(v) and v > 0
    # no core does more than 1e4 GFLOP/s, no memory moves 100 TB/s: anything above is a
    # miscount of the work (a loop LLVM removed), not a fast machine
    assert measured.fma_f32 < 1e4 * measured.cores and measured.fma_f64 < 1e4 * measured.cores
    assert measured.bandwidth < 1e5
    assert measured.cores == describe().cores
    assert measured.cpu == describe().summary()
    assert "GFLOP/s" in measured.line() and "GB/s" in measured.line()
    assert measured.flops("float64") == measured.fma_f64
    assert measured.flops("float32") == measured.fma_f32


def test_measured_once_per_process(measured, monkeypatch):
    calls = []
    monkeypatch.setattr(P, "measure", lambda: calls.append(1) or measured)
    assert aj.machine_peaks() is measured and P.machine_peaks() is measured
    assert calls == []                       # kept: the second call measures nothing
    aj.machine_peaks(refresh=True)
    assert calls == [1]


def test_injected_peaks():
    fake = P.Peaks("test cpu", 3, 10.0, 5.0, 2.0)
    with P.use_peaks(fake):
        assert aj.machine_peaks() is fake
    assert aj.machine_peaks() is not fake


@pytest.mark.parametrize("cpu,lanes,acc,reg", [("x86-64-v3", 8, 12, "ymm"),
                                               ("x86-64-v4", 16, 24, "zmm")])
def test_fma_kernel_for_named_cpus(cpu, lanes, acc, reg):
    """The peak loop uses the CPU's full vectors and one chain per spare register: the
    assembly for an AVX2 and an AVX-512 CPU holds that many distinct FMA destinations."""
    d = describe(cpu)
    assert (d.lanes("f32"), P.accumulators(d)) == (lanes, acc)
    text = P.fma_ir(d.lanes("f32"), "f32", P.accumulators(d))
    asm = compile_ir(text, cpu=cpu, cache=False).asm
    fmas = [ln.split() for ln in asm.splitlines() if "vfmadd" in ln]
    assert len(fmas) >= acc * P.ROUNDS
    assert all(reg in ln[-1] for ln in fmas)
    assert len({ln[-1] for ln in fmas}) >= acc     # independent accumulators


def test_measure_on_one_thread():
    p = P.measure(cores=1)
    assert p.cores == 1 and p.fma_f32 > 0 and p.bandwidth > 0


def test_stream_arrays_exceed_the_last_cache():
    d = describe()
    for cores in (1, 2, 7):
        assert 3 * 8 * P.stream_elements(d, cores) * cores >= 4 * d.l3
