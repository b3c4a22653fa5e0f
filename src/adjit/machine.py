"""The machine compiled CPU code runs on: how many threads it uses (the llvm backend's
pool), and the measured peaks a profile compares each step with.

    >>> import adjit as aj
    >>> aj.set_num_threads(1)        # everything on the calling thread
    >>> aj.get_num_threads()
    1

The default is ``$ADJIT_NUM_THREADS`` when set, else the CPUs the process may run on (its
affinity mask, capped by a cgroup CPU quota).  Setting it takes effect on the next call of
any compiled function; results do not depend on it (every split computes each output
element exactly as one thread would).  Sizes fixed at compile time (blocks of a split
weight gradient, a convolution's per-thread scratch) follow the count when the function
is compiled: a function compiled for fewer threads never uses more.
"""
from __future__ import annotations

from .backends.llvm import pool


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (the caller and ``n - 1`` workers) for compiled CPU code."""
    pool.set_num_threads(n)


def get_num_threads() -> int:
    """The threads compiled CPU code uses now (1 where this libc offers no thread pool)."""
    return pool.get_num_threads()


def machine_peaks(refresh: bool = False):
    """The FMA peaks (GFLOP/s, f32 and f64) and memory bandwidth (GB/s) of the cores adjit
    uses, measured by native loops on the first call of the process and kept (``refresh``
    measures again; see :mod:`adjit.backends.llvm.peaks`)."""
    from .backends.llvm.peaks import machine_peaks as measured
    return measured(refresh)
