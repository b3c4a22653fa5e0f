"""Correctness gate and interleaved, adaptive timing."""

from __future__ import annotations

import gc
import resource
import statistics
import time

import numpy as np


def check(impl, ref: list, rtol: float) -> tuple[bool, str]:
    """Compare one implementation's outputs with the float64 numpy reference.

    Criterion per output array: max |a - ref| <= rtol * max |ref| (a scaled
    max-norm, so tiny gradient entries do not need full relative accuracy in
    float32).  Loss-only implementations are compared on the loss alone.
    """
    try:
        got = impl.to_numpy(impl.fn())
    except Exception as exc:  # noqa: BLE001 - a crashing entry is reported, not timed
        return False, f"call failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    want = ref[:1] if impl.fwd_only else ref
    if len(got) != len(want):
        return False, f"returned {len(got)} outputs, expected {len(want)}"
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, want)):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != r.shape:
            return False, f"output {i}: shape {g.shape}, expected {r.shape}"
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1e-30)
        err = float(np.max(np.abs(g - r))) / scale if r.size else 0.0
        if not np.isfinite(err) or err > rtol:
            return False, f"output {i}: scaled error {err:.3g} > rtol {rtol:g}"
        worst = max(worst, err)
    return True, f"max scaled error {worst:.2g}"


def _warm(fn, min_calls=3, min_s=0.05):
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < min_s:
        fn()
        n += 1
        if n >= 10_000:
            break


def _estimate(fn, min_s=0.02) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s or n >= 100_000:
            return dt / n


def settle_threads(window_s: float = 0.01, max_s: float = 0.3) -> float:
    """Sleep until the process's other threads are idle: two ``window_s`` sleeps of this
    thread in a row during which the process used under 10% of one CPU.  Returns the
    time waited (at most about ``max_s``)."""
    t0 = time.perf_counter()
    quiet = 0
    while quiet < 2:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(window_s)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        busy = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        quiet = quiet + 1 if busy < 0.1 * window_s else 0
        if time.perf_counter() - t0 >= max_s:
            break
    return time.perf_counter() - t0


def measure(impls, budget_s: float, blocks: int = 30,
            settle: bool = True) -> dict[str, list[float]]:
    """Per-call times (seconds) of each implementation, one sample per block.

    Each implementation runs ``blocks`` blocks of ``m`` back-to-back calls,
    ``m`` chosen so a block takes ~budget_s / blocks (at least one call);
    slow entries get fewer blocks (at least 3) so each stays near budget_s.
    Blocks are interleaved round-robin across implementations, so machine
    noise lands on every entry alike and ratios stay meaningful.  Each block
    starts once the previous entry's thread pools have stopped spinning
    (:func:`settle`; OpenBLAS's workers spin ~50-80 ms after numpy's last
    product, longer than a block, and would otherwise take half a core from
    whoever runs next) and with one untimed call that brings this entry's data
    back into cache: steady state, as in a training loop.  ``settle=False``
    measures each entry next to whatever the previous one left running.
    """
    plan = {}
    for impl in impls:
        _warm(impl.fn)
        per = _estimate(impl.fn)
        m = max(1, int(budget_s / blocks / per))
        nb = max(3, min(blocks, int(budget_s / (m * per))))
        plan[impl.name] = (impl.fn, m, nb)
    samples = {name: [] for name in plan}
    rounds = max(nb for _, _, nb in plan.values())
    gc.collect()
    for r in range(rounds):
        for name, (fn, m, nb) in plan.items():
            if r >= nb:
                continue
            if settle:
                settle_threads()
            fn()   # untimed: wake this entry's thread pool, bring its data back into cache
            gc.disable()
            try:
                t0 = time.perf_counter()
                for _ in range(m):
                    fn()
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            samples[name].append(dt / m)
    return samples


def summarize(passes: list[dict[str, list[float]]], adjit_name: str | None) -> dict:
    """Median of per-pass medians, overall min, median of per-pass ratios."""
    out = {}
    for name in passes[0]:
        meds = [statistics.median(p[name]) for p in passes]
        row = {"median_s": statistics.median(meds), "min_s": min(min(p[name]) for p in passes),
               "samples": sum(len(p[name]) for p in passes)}
        if adjit_name and adjit_name in passes[0]:
            ratios = [statistics.median(p[adjit_name]) / statistics.median(p[name]) for p in passes]
            row["ratio"] = statistics.median(ratios)
        out[name] = row
    return out
