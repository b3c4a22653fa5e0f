"""``run.py --threads N``: the same N threads for adjit and for every peer.

Imported by run.py before numpy, torch or jax (no heavy imports here), because the
thread counts of OpenBLAS/MKL/OpenMP and of XLA are read from the environment when those
libraries load:

* adjit: ``ADJIT_NUM_THREADS=N`` (its worker pool and ``describe().cores``);
* numpy (OpenBLAS, MKL, BLIS, Accelerate), numexpr: ``*_NUM_THREADS=N``;
* torch: ``torch.set_num_threads(N)`` once imported (run.py), interop threads 1;
* JAX/XLA: its CPU thread pool is sized from the CPUs the process may run on, so the
  pinning below is what limits it; for N = 1 also ``--xla_cpu_multi_thread_eigen=false``
  (Eigen's own pool off);
* the process: pinned to the first N of its allowed CPUs (``os.sched_setaffinity``)
  when N is at most that many, so no library finds more cores than N, and N threads do
  not drift over more cores than N.  With N above the allowed CPUs nothing is pinned
  (the libraries run N threads on fewer cores: oversubscribed, as the report says).
"""
from __future__ import annotations

import os

BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "ADJIT_NUM_THREADS")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def thread_env(n: int, environ=None) -> dict:
    """The environment variables to set for ``n`` threads (``environ``: the current
    environment, default ``os.environ``; an XLA_FLAGS there is kept and extended)."""
    if n < 1:
        raise ValueError(f"--threads must be at least 1, got {n}")
    environ = os.environ if environ is None else environ
    env = {k: str(n) for k in BLAS_VARS}
    xla = environ.get("XLA_FLAGS", "")
    if n == 1 and "multi_thread_eigen" not in xla:
        xla = (xla + " " + XLA_ONE_THREAD).strip()
    env["XLA_FLAGS"] = xla
    return env


def allowed_cpus() -> int:
    """The CPUs this process may run on (the default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpus_for(n: int, allowed) -> set | None:
    """The CPUs to pin ``n`` threads to: the first ``n`` of ``allowed`` (sorted), or None
    when ``n`` exceeds them (no pinning)."""
    allowed = sorted(allowed)
    return set(allowed[:n]) if n <= len(allowed) else None


def apply(n: int) -> tuple[dict, str]:
    """Set the environment and pin the process for ``n`` threads; returns the variables
    set and one line saying where the threads run."""
    env = thread_env(n)
    os.environ.update(env)
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return env, f"{n} threads (this OS cannot pin a process to CPUs)"
    cpus = cpus_for(n, allowed)
    if cpus is None:
        return env, (f"{n} threads on the {len(allowed)} allowed CPUs (oversubscribed, "
                     "not pinned)")
    os.sched_setaffinity(0, cpus)
    return env, f"{n} threads, process pinned to CPUs {sorted(cpus)} of {len(allowed)} allowed"
