"""How many threads adjit's compiled CPU code uses (the llvm backend's pool).

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
