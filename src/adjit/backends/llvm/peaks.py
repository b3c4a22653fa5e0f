"""The machine's limits, measured once per process: ``adjit.machine_peaks()``.

* ``fma_f32`` / ``fma_f64`` (GFLOP/s): a native loop of independent fused multiply-add
  chains on full-width vectors (``describe().lanes(dtype)`` lanes, one accumulator per
  vector register but four, at most 24: enough chains in flight to hide the FMA latency
  on every current core), run on ``describe().cores`` threads at once.  An FMA counts
  two FLOPs.  Without FMA hardware the loop is a multiply and an add (LLVM splits it).
* ``bandwidth`` (GB/s): a native triad ``a[i] = b[i] + s·c[i]`` over float64 arrays
  holding together at least 4× the L3 cache (never below 64 MiB), split over the same
  threads; bytes counted as STREAM does (two reads and one write per element, the
  write-allocate read not counted).

Each number is the best of three runs of about 30 ms each (a calibration run picks the
repetitions); the whole measurement takes well under a second.  The threads are Python
threads calling the compiled function through ctypes, which releases the GIL, so they
run in parallel; adjit's own thread pool is not used.  The result is kept for the life
of the process (not on disk: a number measured on an idle machine would be wrong on a
busy one, and the other way round); ``machine_peaks(refresh=True)`` measures again.
Tests inject their own numbers with :func:`use_peaks`.
"""
from __future__ import annotations

import ctypes
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

TRIAL_SECONDS = 0.03
TRIALS = 3
ROUNDS = 4                  # FMA rounds of every accumulator per loop iteration
MIN_STREAM_BYTES = 64 << 20


@dataclass(frozen=True)
class Peaks:
    """Measured limits of the cores adjit uses (see the module docstring)."""
    cpu: str                # describe().summary(): CPU, ISA, vector width, caches, cores
    cores: int
    fma_f32: float          # GFLOP/s, all ``cores`` together
    fma_f64: float
    bandwidth: float        # GB/s (1e9 bytes per second)
    seconds: float = 0.0    # what measuring took

    def flops(self, dtype: str) -> float:
        """The FMA peak for ``dtype`` in GFLOP/s (float64 for "float64"/"f64"/int64, else
        the float32 one)."""
        return self.fma_f64 if str(dtype) in ("float64", "f64", "int64") else self.fma_f32

    def line(self) -> str:
        """One line for reports."""
        return (f"{self.cpu}: FMA peak {self.fma_f32:.0f} GFLOP/s f32, {self.fma_f64:.0f} "
                f"f64, memory {self.bandwidth:.1f} GB/s ({self.cores} thread"
                f"{'s' * (self.cores != 1)}, measured)")


_cached: Peaks | None = None
_lock = threading.Lock()


def machine_peaks(refresh: bool = False) -> Peaks:
    """The FMA peaks and memory bandwidth of the cores adjit uses, measured on the first
    call of the process (about half a second) and kept (``refresh=True`` measures
    again).  ``cores`` follows ``$ADJIT_NUM_THREADS`` and the process's affinity."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = measure()
        return _cached


@contextmanager
def use_peaks(peaks: Peaks):
    """Within the block, :func:`machine_peaks` answers ``peaks`` (tests, or numbers
    measured elsewhere)."""
    global _cached
    with _lock:
        saved, _cached = _cached, peaks
    try:
        yield peaks
    finally:
        with _lock:
            _cached = saved


def measure(cores: int | None = None) -> Peaks:
    """Measure now, on ``cores`` threads (default ``describe().cores``)."""
    from ..lowering.target.description import describe
    t0 = time.perf_counter()
    d = describe()
    n = cores or d.cores
    f32 = fma_peak("f32", n, d)
    f64 = fma_peak("f64", n, d)
    bw = bandwidth(n, d)
    return Peaks(d.summary(), n, f32, f64, bw, time.perf_counter() - t0)


# -- the FMA loop --------------------------------------------------------------------------
def accumulators(d) -> int:
    """Independent FMA chains: every vector register but four (the two operands, the
    loop counter's spare), between 8 and 24."""
    return max(8, min(24, d.vector_registers - 4))


def fma_ir(lanes: int, dtype: str, acc: int) -> str:
    """``void adjit_fma_peak(i64 iters, <lanes x T>* io)``: io[0] the multiplier, io[1] the
    addend, io[2 + k] accumulator k's start; ``iters`` loop iterations of ROUNDS FMAs per
    accumulator, then the sum of the accumulators stored to io[0]."""
    t = "float" if dtype == "f32" else "double"
    v = f"<{lanes} x {t}>"
    suffix = f"v{lanes}f{32 if dtype == 'f32' else 64}"
    al = 4 if dtype == "f32" else 8
    lines = [f"declare {v} @llvm.fma.{suffix}({v}, {v}, {v})",
             f"define void @adjit_fma_peak(i64 %iters, {v}* %io) {{",
             "entry:",
             f"  %x = load {v}, {v}* %io, align {al}",
             f"  %py = getelementptr {v}, {v}* %io, i64 1",
             f"  %y = load {v}, {v}* %py, align {al}"]
    for k in range(acc):
        lines += [f"  %p{k} = getelementptr {v}, {v}* %io, i64 {k + 2}",
                  f"  %s{k} = load {v}, {v}* %p{k}, align {al}"]
    lines += ["  %any = icmp sgt i64 %iters, 0", "  br i1 %any, label %loop, label %exit",
              "loop:", "  %i = phi i64 [0, %entry], [%inext, %loop]"]
    for k in range(acc):
        lines.append(f"  %a{k}_0 = phi {v} [%s{k}, %entry], [%a{k}_{ROUNDS}, %loop]")
    for r in range(ROUNDS):
        for k in range(acc):
            lines.append(f"  %a{k}_{r + 1} = call {v} @llvm.fma.{suffix}"
                         f"({v} %a{k}_{r}, {v} %x, {v} %y)")
    lines += ["  %inext = add i64 %i, 1", "  %more = icmp slt i64 %inext, %iters",
              "  br i1 %more, label %loop, label %exit", "exit:"]
    for k in range(acc):
        lines.append(f"  %e{k} = phi {v} [%s{k}, %entry], [%a{k}_{ROUNDS}, %loop]")
    last = "%e0"
    for k in range(1, acc):
        lines.append(f"  %t{k} = fadd {v} {last}, %e{k}")
        last = f"%t{k}"
    lines += [f"  store {v} {last}, {v}* %io, align {al}", "  ret void", "}"]
    return "\n".join(lines) + "\n"


_FMA_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)
_TRIAD_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_int64)
_modules: list = []         # the compiled modules stay alive with their functions


def _compile(text: str, symbol: str, ftype):
    from ..lowering.target import compile_ir
    jm = compile_ir(text, opt_level=3, name=symbol)
    _modules.append(jm)
    return ftype(jm.address(symbol))


def _parallel(fn, args_per_thread) -> float:
    """Seconds from the first thread's start to the last one's end, running ``fn(*args)``
    for each entry of ``args_per_thread`` on its own thread at once."""
    n = len(args_per_thread)
    barrier = threading.Barrier(n)
    starts, ends = [0.0] * n, [0.0] * n

    def work(i):
        barrier.wait()
        starts[i] = time.perf_counter()
        fn(*args_per_thread[i])
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(1, n)]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    return max(ends) - min(starts)


def _best_rate(run, work_per_unit: float, cores: int) -> float:
    """Highest ``work / second`` of TRIALS runs of ``run(units)`` sized to TRIAL_SECONDS."""
    units = 1
    while True:                            # calibrate: grow until a run takes >= 2 ms
        dt = run(units)
        if dt >= 0.002 or units >= 1 << 40:
            break
        units *= 8 if dt < 0.0002 else 2
    units = max(1, int(units * TRIAL_SECONDS / max(dt, 1e-9)))
    best = 0.0
    for _ in range(TRIALS):
        dt = run(units)
        best = max(best, units * work_per_unit * cores / max(dt, 1e-12))
    return best


def fma_peak(dtype: str, cores: int, d=None) -> float:
    """GFLOP/s of ``cores`` threads running independent FMA chains of ``dtype``."""
    if d is None:
        from ..lowering.target.description import describe
        d = describe()
    lanes, acc = d.lanes(dtype), accumulators(d)
    fn = _compile(fma_ir(lanes, dtype, acc), "adjit_fma_peak", _FMA_TYPE)
    np_t = np.float32 if dtype == "f32" else np.float64
    bufs = []
    for _ in range(cores):
        io = np.empty((acc + 2, lanes), np_t)
        io[0], io[1] = 0.5, 0.25               # a -> 0.5·a + 0.25 converges to 0.5
        io[2:] = np.arange(acc, dtype=np_t)[:, None] / acc
        bufs.append(io)

    def run(iters):
        return _parallel(fn, [(iters, b.ctypes.data) for b in bufs])
    flops_per_iter = 2.0 * lanes * acc * ROUNDS
    return _best_rate(run, flops_per_iter, cores) / 1e9


# -- the triad ------------------------------------------------------------------------------
_TRIAD_IR = """define void @adjit_triad(double* noalias %a, double* noalias %b,
                                  double* noalias %c, i64 %n, i64 %reps) {
entry:
  %go = icmp sgt i64 %n, 0
  br i1 %go, label %rep, label %exit
rep:
  %r = phi i64 [0, %entry], [%rnext, %repend]
  %rf = sitofp i64 %r to double
  %s = fadd double %rf, 3.0
  br label %loop
loop:
  %i = phi i64 [0, %rep], [%inext, %loop]
  %pb = getelementptr double, double* %b, i64 %i
  %pc = getelementptr double, double* %c, i64 %i
  %pa = getelementptr double, double* %a, i64 %i
  %vb = load double, double* %pb, align 8
  %vc = load double, double* %pc, align 8
  %m = fmul double %s, %vc
  %v = fadd double %vb, %m
  store double %v, double* %pa, align 8
  %inext = add i64 %i, 1
  %more = icmp slt i64 %inext, %n
  br i1 %more, label %loop, label %repend
repend:
  %rnext = add i64 %r, 1
  %again = icmp slt i64 %rnext, %reps
  br i1 %again, label %rep, label %exit
exit:
  ret void
}
"""


def stream_elements(d, cores: int) -> int:
    """float64 elements per array per thread: three arrays of them over all threads hold
    at least 4x the L3 (and MIN_STREAM_BYTES)."""
    total = max(4 * d.l3, MIN_STREAM_BYTES)
    return max(1024, math.ceil(total / (3 * 8 * cores)))


def bandwidth(cores: int, d=None) -> float:
    """GB/s of ``cores`` threads each running the triad over its own arrays."""
    if d is None:
        from ..lowering.target.description import describe
        d = describe()
    fn = _compile(_TRIAD_IR, "adjit_triad", _TRIAD_TYPE)
    n = stream_elements(d, cores)
    arrays = [[np.ones(n) for _ in range(3)] for _ in range(cores)]   # touched: mapped

    def run(reps):
        return _parallel(fn, [(a.ctypes.data, b.ctypes.data, c.ctypes.data, n, reps)
                              for a, b, c in arrays])
    return _best_rate(run, 3.0 * 8 * n, cores) / 1e9
