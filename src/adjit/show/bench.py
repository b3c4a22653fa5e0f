"""``adjit bench``: compiled (llvm) against interpreted calls on a model file's example.

Peers: a model file may define ``peers = {name: factory}``; ``factory(values)`` returns
a zero-argument callable computing the same loss and gradients with another library,
and raises ImportError when that library is not installed (the peer is then skipped
and the table says so).  adjit cannot write a peer for an arbitrary model itself.

Timing: each implementation is called twice to warm up, then in ``ROUNDS`` rounds of
``k`` calls, ``k`` chosen so all rounds take about ``seconds``; the table gives the
median and the minimum per call over the rounds.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

ROUNDS = 5


@dataclass
class Timing:
    name: str
    median: float = float("nan")      # seconds per call
    best: float = float("nan")
    note: str = ""


@dataclass
class BenchResult:
    title: str
    timings: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def table(self) -> str:
        base = next((t.median for t in self.timings if t.name == "adjit interp"), float("nan"))
        out = [self.title,
               f"  {'implementation':<18} {'median':>10} {'min':>10} {'vs interp':>10}"]
        for t in self.timings:
            if t.note and np.isnan(t.median):
                out.append(f"  {t.name:<18} {t.note}")
                continue
            ratio = base / t.median if t.median > 0 else float("nan")
            out.append(f"  {t.name:<18} {_time(t.median):>10} {_time(t.best):>10} "
                       f"{ratio:>9.1f}×" + (f"  {t.note}" if t.note else ""))
        return "\n".join(out + [f"  {n}" for n in self.notes])

    def plot(self, path: str) -> None:
        """A bar chart of the median per call (needs matplotlib)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        done = [t for t in self.timings if not np.isnan(t.median)]
        fig, ax = plt.subplots(figsize=(6, 0.6 * len(done) + 1.2))
        ax.barh([t.name for t in done], [t.median * 1e6 for t in done], color="#4f8a4b")
        ax.set_xscale("log")
        ax.set_xlabel("median time per call (µs, log scale)")
        ax.set_title(self.title, fontsize=9)
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _time(s: float) -> str:
    if np.isnan(s):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _progress(total: int, enabled: bool):
    """A tqdm bar when tqdm is installed, else plain lines (None when disabled)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _Lines(total)
    return tqdm(total=total, desc="timing", unit="round", leave=False)


class _Lines:
    def __init__(self, total: int):
        self.total, self.done = total, 0

    def set_description(self, text: str):
        print(f"timing {text} ...", flush=True)

    def update(self, n: int = 1):
        self.done += n

    def close(self):
        print(f"timing done ({self.done}/{self.total} rounds)", flush=True)


def _rel_diff(a, b) -> float:
    """max |a − b| relative to the largest |b| (elementwise ratios blow up near zeros)."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    scale = float(np.max(np.abs(b), initial=0.0)) or 1.0
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def measure(fn, seconds: float, bar=None, label: str = "") -> Timing:
    fn()                                           # warm-up (first calls may set up caches)
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)    # the estimate that sizes the rounds
    k = max(1, int(seconds / ROUNDS / once))
    per_call = []
    if bar is not None:
        bar.set_description(label)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        per_call.append((time.perf_counter() - t0) / k)
        if bar is not None:
            bar.update(1)
    return Timing(label, statistics.median(per_call), min(per_call))


def bench(model, seconds: float = 1.0, peers: bool = True, progress: bool = True) -> BenchResult:
    """Time ``model`` (a :class:`~adjit.show.modelfile.Model` with ``example``) compiled
    with llvm and interpreted, and its peers where installed."""
    from ..compiled import compile as aj_compile
    values = model.example
    t0 = time.perf_counter()
    native = aj_compile(model.outputs, backend="llvm")
    t_native = time.perf_counter() - t0
    interp = aj_compile(model.outputs, backend="interp")
    result = BenchResult(f"adjit bench: {model.title} ({len(model.outputs)} outputs), "
                         f"{ROUNDS} rounds")
    runs = [("adjit llvm", lambda: native(**values)), ("adjit interp", lambda: interp(**values))]
    reference = interp(**values)
    reference = reference if isinstance(reference, tuple) else (reference,)
    got = native(**values)
    got = got if isinstance(got, tuple) else (got,)
    diff = max(_rel_diff(a, b) for a, b in zip(got, reference))
    result.notes.append(f"compile (llvm): {t_native:.2f} s, cache {native.cache_info}")
    result.notes.append(f"agreement: llvm vs interp, max |difference| / max |value| = "
                        f"{diff:.2g}")
    skipped = []
    for name, factory in (model.peers.items() if peers else ()):
        try:
            step = factory(values)
        except ImportError as e:
            skipped.append(Timing(f"{name} (peer)", note=f"not installed ({e.name or e})"))
            continue
        first = step()
        first = first[0] if isinstance(first, (list, tuple)) else first
        result.notes.append(f"agreement: {name} loss vs adjit {_rel_diff(first, reference[0]):.2g}")
        runs.append((f"{name} (peer)", step))
    bar = _progress(ROUNDS * len(runs), progress)
    try:
        result.timings = [measure(fn, seconds, bar, name) for name, fn in runs] + skipped
    finally:
        if bar is not None:
            bar.close()
    return result
