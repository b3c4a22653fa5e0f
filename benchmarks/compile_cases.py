"""The cases of ``compile_bench.py``: big constants, long elementwise chains, W1-W6.

Every function returns seconds (wall).  Chains mix unary, binary and constant operands::

    y = sin(y) * 0.5 + y;  y = tanh(y) - 0.25 * y;  y = 0.01 * y * y + y;  ...

(three elementwise ops per step on average; ``n`` counts steps, one op each counted as
written: ``sin(y) * 0.5 + y`` is three ops), with ``grad``: ``sum(y*y)`` and its gradient,
which doubles the graph and keeps every forward value alive (fusion cannot merge across
them).
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import numpy as np
import sympy

HERE = os.path.dirname(os.path.abspath(__file__))


def fresh() -> None:
    """Forget what an earlier compile left in process-wide caches (sympy's)."""
    sympy.core.cache.clear_cache()
    gc.collect()


def const_compile(n: int, dtype: str = "float32") -> float:
    """``x * c + 1`` with an ``n``-element constant ``c``: aj.const + aj.compile."""
    import adjit as aj
    c = np.random.default_rng(n).standard_normal(n).astype(dtype)
    fresh()
    t0 = time.perf_counter()
    x = aj.input("x", (n,), dtype)
    f = aj.compile(x * aj.const(c) + 1.0, cache=False)
    dt = time.perf_counter() - t0
    xv = np.ones(n, dtype)
    assert np.array_equal(f(x=xv), xv * c + np.asarray(1.0, dtype))
    return dt


def chain(n_ops: int, x):
    """The elementwise chain of ``n_ops`` ops on ``x`` (see the module doc)."""
    import adjit as aj
    y, ops, i = x, 0, 0
    while ops < n_ops:
        k = i % 3
        if k == 0:
            y = aj.sin(y) * 0.5 + y
        elif k == 1:
            y = aj.tanh(y) - y * 0.25
        else:
            y = y * y * 0.01 + y
        ops += 3
        i += 1
    return y


def chain_outputs(n_ops: int, grad: bool, size: int = 64):
    import adjit as aj
    x = aj.input("x", (size,), "float64")
    y = chain(n_ops, x)
    if not grad:
        return [y]
    loss = aj.sum(y * y)
    return [loss, aj.grad(loss, [x])[0]]


def chain_compile(n_ops: int, grad: bool) -> tuple[float, float]:
    """(seconds to build the graph, incl. aj.grad; seconds of aj.compile)."""
    import adjit as aj
    fresh()
    t0 = time.perf_counter()
    outs = chain_outputs(n_ops, grad)
    t1 = time.perf_counter()
    aj.compile(outs, cache=False)
    return t1 - t0, time.perf_counter() - t1


# --- W1-W6 ------------------------------------------------------------------------------------
def adjit_compile(wl, cache: bool, cpu: bool = False):
    """Graph construction + aj.grad + aj.compile of a workload (as run.py's cold column):
    seconds, or (seconds, CPU seconds of the process: every thread) with ``cpu``."""
    import adjit as aj
    from models import build
    from workloads import make_data
    lam = make_data(wl)["consts"].get("lam")
    fresh()
    t0, c0 = time.perf_counter(), time.process_time()
    aj.compile(build(wl, lam), cache=cache)
    wall, work = time.perf_counter() - t0, time.process_time() - c0
    return (wall, work) if cpu else wall


def jax_first_call(wl) -> float | None:
    """JAX's first call of jit(value_and_grad) (trace + compile + run), or None."""
    try:
        import peers_jax
        from workloads import make_data
        if peers_jax.available():
            return None
        return peers_jax.make_jit(wl, make_data(wl)).compile_s
    except Exception:  # noqa: BLE001 - a peer that cannot run is left out
        return None


def warm_jax() -> None:
    """JAX's runtime started (one tiny jitted call), as adjit's is by :func:`warm_adjit`."""
    try:
        import jax
        import jax.numpy as jnp
        jax.block_until_ready(jax.jit(lambda a: a * 2)(jnp.ones(2)))
    except Exception:  # noqa: BLE001
        pass


def warm_adjit(dtypes=("float32", "float64")) -> None:
    """A first compile per dtype: the llvm backend imported, the GEMM library and the
    fast-call wrapper loaded (from the disk cache, or built once for it)."""
    import adjit as aj
    for dt in dtypes:
        x = aj.input("x", (None, 2), dtype=dt)
        aj.compile(aj.sum(x @ aj.param("W", (2, 2), dtype=dt)))


def in_fresh_process(key: str, what: str) -> float | None:
    """Seconds of ``what`` ("cold", "cached" or "jax") for workload ``key`` as the first
    compile of a new Python process (imports done before the clock starts)."""
    cmd = [sys.executable, os.path.join(HERE, "compile_bench.py"), "--child", key, what]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def child(key: str, what: str) -> None:
    """The child of :func:`in_fresh_process`: prints the seconds."""
    from workloads import select
    wl = select([key])[0]
    if what == "jax":
        import peers_jax  # noqa: F401 - imported before the clock, as adjit is
        dt = jax_first_call(wl)
        print("nan" if dt is None else dt)
        return
    import adjit  # noqa: F401
    import models  # noqa: F401
    print(adjit_compile(wl, cache=(what == "cached")))
