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

JOB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
MANY = pool.pool_ir.MAX_WORKERS + 1


@pytest.fixture(scope="module")
def api():
    jit = pool.ensure_pool()
    offload = ctypes.CFUNCTYPE(ctypes.c_bool, JOB, ctypes.c_void_p, ctypes.c_int64)(
        jit.address(pool.OFFLOAD))
    wait = ctypes.CFUNCTYPE(None)(jit.address(pool.WAIT))
    return offload, wait


@pytest.fixture
def threads():
    """Set the pool's thread count for one test; restored after it."""
    from adjit.backends.lowering.target.description import choose_threads
    before = pool.get_num_threads()
    yield pool.set_num_threads
    pool.set_num_threads(before)
    choose_threads(None)


def _until(cond, seconds=20):
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(1e-4)
    return cond()


@pytest.mark.parametrize("n", [2, 3, 7])
def test_every_worker_joins_with_its_own_slot_and_workspace(api, threads, n):
    """n threads: workers 1..n-1 each run the job once, on their own thread, with a
    distinct 64-byte aligned workspace (more workers than this machine's cores too)."""
    offload, wait = api
    threads(n)
    assert pool.get_num_threads() == n
    for k in range(5):                   # sleeping and spinning hand-overs alike
        seen = []
        job = JOB(lambda arg, slot, work: seen.append((threading.get_native_id(), arg, slot,
                                                       work)))
        assert offload(job, k + 1, MANY)
        assert _until(lambda: len(seen) == n - 1), seen
        wait()
        assert sorted(s for _, _, s, _ in seen) == list(range(1, n))
        assert {a for _, a, _, _ in seen} == {k + 1}
        assert len({t for t, _, _, _ in seen} | {threading.get_native_id()}) == n
        works = [w for _, _, _, w in seen]
        assert len(set(works)) == n - 1 and all(w and w % 64 == 0 for w in works)
        time.sleep(0.01 * (k % 2))


def test_most_limits_the_participants(api, threads):
    offload, wait = api
    threads(7)
    seen = []
    job = JOB(lambda arg, slot, work: seen.append(slot))
    assert offload(job, None, 3)         # the caller and slots 1, 2 only
    assert _until(lambda: len(seen) == 2)
    time.sleep(0.05)                     # give the others every chance to join wrongly
    wait()
    assert sorted(seen) == [1, 2]
    assert not offload(job, None, 1)     # one participant: nothing is handed over


def test_one_thread_hands_nothing_over(api, threads):
    offload, wait = api
    threads(1)
    job = JOB(lambda arg, slot, work: pytest.fail("ran on a worker"))
    assert not offload(job, None, MANY)
    assert pool.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, MANY + 1])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="thread"):
        pool.set_num_threads(bad)


def test_no_job_runs_after_wait_returns(api, threads):
    offload, wait = api
    threads(3)
    seen = []
    job = JOB(lambda arg, slot, work: seen.append(arg))
    for k in range(200):                 # joined or not, never run after wait returns
        assert offload(job, k + 1, MANY)
        wait()
        runs = len(seen)
        time.sleep(0)
        assert len(seen) == runs
    assert set(seen) <= set(range(1, 201))


def test_busy_pool_refuses_a_second_caller(api, threads):
    offload, wait = api
    threads(2)
    release, taken = threading.Event(), threading.Event()
    job = JOB(lambda arg, slot, work: (taken.set(), release.wait(10)))
    assert offload(job, None, MANY)
    assert taken.wait(10)              # the worker holds the job
    other = JOB(lambda arg, slot, work: None)
    assert not offload(other, None, MANY)    # the caller then runs its part itself
    release.set()
    wait()
    assert offload(other, None, MANY)
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
