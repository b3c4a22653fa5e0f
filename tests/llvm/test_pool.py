"""The persistent worker thread behind two-thread kernels (backends/llvm/pool.py)."""
import ctypes
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from adjit.backends.llvm import pool

pytestmark = pytest.mark.skipif(not pool.available(), reason="no futex/pthread in this libc")

JOB = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@pytest.fixture(scope="module")
def api():
    jit = pool.ensure_pool()
    offload = ctypes.CFUNCTYPE(ctypes.c_bool, JOB, ctypes.c_void_p)(jit.address(pool.OFFLOAD))
    wait = ctypes.CFUNCTYPE(None)(jit.address(pool.WAIT))
    return offload, wait


def test_worker_runs_the_job_on_another_thread(api):
    offload, wait = api
    seen = []
    job = JOB(lambda arg: seen.append((threading.get_native_id(), arg)))
    if len(os.sched_getaffinity(0)) < 2:
        assert not offload(job, 7)     # one CPU: nothing is handed over
        return
    for k in range(50):                # sleeping and spinning hand-overs alike
        assert offload(job, k + 1)
        deadline = time.monotonic() + 10
        while len(seen) <= k and time.monotonic() < deadline:
            time.sleep(1e-4)           # give the worker time to take it (else wait withdraws it)
        wait()
    assert [a for _, a in seen] == list(range(1, 51))
    assert {t for t, _ in seen} != {threading.get_native_id()}


def test_a_job_not_yet_taken_is_withdrawn(api):
    offload, wait = api
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU allowed: the pool never starts a worker")
    seen = []
    job = JOB(lambda arg: seen.append(arg))
    runs = 0
    for k in range(200):               # withdrawn or run, never run after wait returns
        assert offload(job, k + 1)
        wait()
        runs = len(seen)
        time.sleep(0)
        assert len(seen) == runs
    assert set(seen) <= set(range(1, 201))


def test_busy_worker_refuses_a_second_caller(api):
    offload, wait = api
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU allowed: the pool never starts a worker")
    release, taken = threading.Event(), threading.Event()
    job = JOB(lambda arg: (taken.set(), release.wait(10)))
    assert offload(job, None)
    assert taken.wait(10)              # the worker holds the job
    other = JOB(lambda arg: None)
    assert not offload(other, None)    # the caller then runs its half itself
    release.set()
    wait()
    assert offload(other, None)
    wait()


GEMM_IN_FORK = """
import os, numpy as np, adjit as aj
x = aj.input("x", (None, 96)); W = aj.param("W", (96, 160))
f = aj.compile(x @ W, opt_level=1, cache=False)   # 64x96x160 products use both threads
X, W0 = np.random.default_rng(0).normal(size=(64, 96)), np.ones((96, 160))
assert np.allclose(f(x=X, W=W0), X @ W0)
pid = os.fork()
if pid == 0:
    ok = np.allclose(f(x=X, W=W0), X @ W0)   # the child must not wait for the parent's worker
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_forked_child_starts_its_own_worker():
    out = subprocess.run([sys.executable, "-c", GEMM_IN_FORK], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_threaded_products_from_many_python_threads():
    import adjit as aj
    from adjit.backends.llvm import gemm
    x = aj.input("x", (None, 128))
    W = aj.param("W", (128, 160))
    f = aj.compile(x @ W, opt_level=1)
    assert 64 * 160 * 128 >= gemm.THREAD_MNK["f64"]     # the two-thread (shared A) path
    rng = np.random.default_rng(1)
    Xs = [rng.normal(size=(64, 128)) for _ in range(8)]
    W0 = rng.normal(size=(128, 160))
    results = [None] * 8

    def work(k):
        for _ in range(20):
            results[k] = f(x=Xs[k], W=W0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for X, r in zip(Xs, results):
        np.testing.assert_allclose(r, X @ W0, rtol=1e-12)


@pytest.mark.parametrize("shape", [(4001, 97), (3, 60000), (2, 3, 40000), (250000,)])
def test_big_elementwise_steps_split_over_both_cores(shape):
    """Above parallel.THRESHOLD a map kernel's rows are shared with the worker."""
    import adjit as aj
    from adjit.backends.llvm import parallel
    assert np.prod(shape) * 5 >= parallel.THRESHOLD
    x = aj.input("x", (None,) + shape[1:])
    b = aj.param("b", shape[1:])
    y = aj.tanh(x * 2.0 + b) * aj.exp(-x)          # one fused region, broadcast b
    f = aj.compile([y, aj.grad(aj.sum(y), b)], opt_level=1)
    ref = aj.compile([y, aj.grad(aj.sum(y), b)], backend="interp")
    rng = np.random.default_rng(2)
    X, B = rng.normal(size=shape), rng.normal(size=shape[1:])
    for got, want in zip(f(x=X, b=B), ref(x=X, b=B)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
