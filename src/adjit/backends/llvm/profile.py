"""Per-step timing inside the native entry: ``aj.compile(..., profile=True)``.

Each step's kernel call is bracketed by ``clock_gettime(CLOCK_MONOTONIC)``; the elapsed
nanoseconds and the call count are added (atomically, so threads may share a function)
to an exported array ``adjit_profile`` of ``2 * n_steps + 2`` int64; its last two hold the
sum of the batch sizes of the calls and their number.  The clock costs ~20-40 ns per read,
which matters only for the smallest kernels.  :func:`profile_table` turns the counters into
rows, the slowest first, each with its roofline (:mod:`.roofline`: FLOPs, bytes, the bound
at the measured peaks of :mod:`.peaks`); :func:`format_profile` prints them under the
machine's line.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager

from llvmlite import ir

from ...ir import label
from ..lowering.irkit import c32, c64, declare

I32, I64 = ir.IntType(32), ir.IntType(64)
SYMBOL = "adjit_profile"
CLOCK_MONOTONIC = 1
TIMESPEC = ir.LiteralStructType([I64, I64])


class StepTimer:
    """The step brackets of one function: the entry (which defines ``adjit_profile``), or
    a part of it given the counters' address as ``counters`` (an ``i64*`` argument)."""

    def __init__(self, module: ir.Module, n_steps: int, counters: ir.Value | None = None):
        self.n_steps = n_steps
        self.base_ptr = counters
        if counters is None:
            ty = ir.ArrayType(I64, _length(n_steps))
            self.counters = ir.GlobalVariable(module, ty, SYMBOL)
            self.counters.initializer = ir.Constant(ty, None)
        self.clock = declare(module, "clock_gettime",
                             ir.FunctionType(I32, [I32, TIMESPEC.as_pointer()]))

    def _now(self, b, ts):
        b.call(self.clock, [c32(CLOCK_MONOTONIC), ts])
        sec = b.load(b.gep(ts, [c32(0), c32(0)]))
        nsec = b.load(b.gep(ts, [c32(0), c32(1)]))
        return b.add(b.mul(sec, c64(1_000_000_000)), nsec)

    def entry(self, b: ir.IRBuilder, batch: ir.Value) -> None:
        """Count one call of the entry and its batch size."""
        for slot, v in ((2 * self.n_steps, batch), (2 * self.n_steps + 1, c64(1))):
            b.atomic_rmw("add", self._counter(b, slot), v, "monotonic")

    def base(self, b: ir.IRBuilder) -> ir.Value:
        """The counters' address as an ``i64*`` (for the entry's parts)."""
        return b.gep(self.counters, [c32(0), c32(0)])

    def _counter(self, b: ir.IRBuilder, slot: int) -> ir.Value:
        if self.base_ptr is not None:
            return b.gep(self.base_ptr, [c32(slot)])
        return b.gep(self.counters, [c32(0), c32(slot)])

    @contextmanager
    def step(self, b: ir.IRBuilder, k: int):
        ts = b.alloca(TIMESPEC)
        t0 = self._now(b, ts)
        yield
        dt = b.sub(self._now(b, ts), t0)
        for slot, v in ((2 * k, dt), (2 * k + 1, c64(1))):
            b.atomic_rmw("add", self._counter(b, slot), v, "monotonic")


def _length(n_steps: int) -> int:
    return 2 * n_steps + 2


def counters(jit, n_steps: int):
    """The live counter array of a compiled function (ctypes view)."""
    return (ctypes.c_int64 * _length(n_steps)).from_address(jit.address(SYMBOL))


def mean_batch(steps, raw) -> float:
    """The mean batch size of the calls counted in ``raw`` (0 before any call)."""
    n = len(steps)
    return raw[2 * n] / raw[2 * n + 1] if len(raw) > 2 * n + 1 and raw[2 * n + 1] else 0.0


def profile_table(steps, raw, peaks=None) -> list[dict]:
    """One row per step: index, op, the node's label, shape, calls, total and mean µs, and
    its roofline at the mean batch size of the calls (``flops``, ``bytes``, ``bound_us``,
    ``limit``, ``x_bound``, ``batch``; see :mod:`.roofline`) for ``peaks`` (default
    :func:`.peaks.machine_peaks`, measured on first use)."""
    rows = []
    total = sum(raw[2 * k] for k in range(len(steps))) or 1
    for k, node in enumerate(steps):
        ns, calls = raw[2 * k], raw[2 * k + 1]
        what = node.op
        if node.op == "fused":
            what = f"fused[{node.attr('members')}]"
        rows.append({"step": k, "op": what, "node": label(node), "shape": node.shape,
                     "dtype": node.dtype, "calls": calls, "total_us": ns / 1e3,
                     "mean_us": ns / 1e3 / calls if calls else 0.0, "share": ns / total})
    from .peaks import machine_peaks
    from .roofline import add_roofline
    batch = mean_batch(steps, raw)
    add_roofline(rows, steps, peaks or machine_peaks(), round(batch))
    for r in rows:
        r["batch"] = batch
    rows.sort(key=lambda r: -r["total_us"])
    return rows


def format_profile(rows: list[dict], top: int | None = None, peaks=None) -> str:
    """The rows as a table, the slowest first, under the machine's line (``peaks``:
    default :func:`.peaks.machine_peaks`); rows without a roofline: the plain table."""
    if rows and "bound_us" in rows[0]:
        from .peaks import machine_peaks
        from .roofline import format_roofline
        return format_roofline(rows, peaks or machine_peaks(), rows[0]["batch"], top)
    lines = [f"{'step':>4} {'share':>6} {'mean µs':>9} {'calls':>7}  {'op':<12} {'shape':<16} node"]
    for r in rows[:top]:
        shape = "(" + ", ".join("B" if d is None else str(d) for d in r["shape"]) + ")"
        lines.append(f"{r['step']:>4} {r['share']:>6.1%} {r['mean_us']:>9.2f} {r['calls']:>7}  "
                     f"{r['op']:<12} {shape:<16} {r['node'][:60]}")
    return "\n".join(lines)
