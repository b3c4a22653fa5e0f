"""Results do not depend on the thread count: a model whose steps take every threaded
path (a GEMM split over threads, a stack of products, a weight gradient in blocks, a
convolution's per-image columns, split reductions and elementwise steps) gives the same
bits on the calling thread alone and with 1, 2 and 7 workers beside it (2, 3 and 8
threads -- more than this machine may have cores) and matches the interpreter;
ADJIT_NUM_THREADS is honoured by a fresh process."""
import os
import subprocess
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import gemm, parallel, pool
from adjit.backends.lowering.target.description import choose_threads

pytestmark = pytest.mark.skipif(not pool.available(), reason="no futex/pthread in this libc")


def model():
    x = aj.input("x", (None, 3, 20, 20))
    W = aj.param("W", (16, 3, 3, 3))
    V = aj.param("V", (16 * 18 * 18, 96))
    S = aj.input("S", (None, 40, 50))
    T = aj.param("T", (50, 60))
    h = aj.relu(aj.conv2d(x, W))                               # per-image columns
    z = aj.tanh(aj.reshape(h, (None, 16 * 18 * 18)) @ V)         # a GEMM worth splitting
    stack = aj.sum(aj.exp(S @ T * 0.01))                       # a stack of products
    big = aj.sum(aj.sin(h) * aj.cos(h), axis=(2, 3))           # reductions over rows
    loss = aj.sum(z * z) + stack + aj.sum(big)
    wrt = [W, V, S, T]   # S an input: its gradient too
    return [loss, z, big] + list(aj.grad(loss, wrt))


def inputs(B=48):
    rng = np.random.default_rng(7)
    return dict(x=rng.normal(size=(B, 3, 20, 20)), W=rng.normal(size=(16, 3, 3, 3)) * 0.3,
                V=rng.normal(size=(16 * 18 * 18, 96)) * 0.01, S=rng.normal(size=(B, 40, 50)),
                T=rng.normal(size=(50, 60)))


def test_the_model_takes_the_threaded_paths():
    B = 48
    assert B * 16 * 18 * 18 * 96 >= gemm.THREAD_MNK["f64"]
    assert B * 16 * 18 * 18 * 5 >= parallel.THRESHOLD


@pytest.fixture
def restore_threads():
    before = pool.get_num_threads()
    yield
    pool.set_num_threads(before)
    choose_threads(None)


def test_same_bits_with_0_1_2_and_7_workers(restore_threads):
    ref = aj.compile(model(), backend="interp")(**inputs())
    got = {}
    for n in (1, 2, 3, 8):
        aj.set_num_threads(n)
        assert aj.get_num_threads() == n
        f = aj.compile(model(), opt_level=1, cache=False)   # compiled for n threads
        got[n] = f(**inputs())
        for _ in range(3):                                   # and called again
            again = f(**inputs())
            for a, b in zip(got[n], again):
                np.testing.assert_array_equal(a, b)
    for n in (2, 3, 8):
        for a, b in zip(got[1], got[n]):
            np.testing.assert_array_equal(a, b)
    for a, r in zip(got[1], ref):
        np.testing.assert_allclose(a, r, rtol=1e-9, atol=1e-9)


def test_a_function_compiled_for_8_threads_runs_on_1_and_back(restore_threads):
    aj.set_num_threads(8)
    f = aj.compile(model(), opt_level=1, cache=False)
    want = f(**inputs(5))
    for n in (1, 2, 8, 3):
        aj.set_num_threads(n)
        for a, b in zip(want, f(**inputs(5))):
            np.testing.assert_array_equal(a, b)


CHILD = """
import adjit as aj, numpy as np
from adjit.backends.lowering.target.description import describe
print(aj.get_num_threads(), describe().cores)
"""


@pytest.mark.parametrize("n", ["1", "2", "8"])
def test_env_sets_the_count_in_a_fresh_process(n):
    env = dict(os.environ, ADJIT_NUM_THREADS=n)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [n, n]


def test_a_bad_env_count_is_a_clear_error():
    env = dict(os.environ, ADJIT_NUM_THREADS="lots")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "ADJIT_NUM_THREADS must be a positive integer" in out.stderr


def test_coexists_with_numpy_and_torch_thread_pools(restore_threads):
    """adjit's workers and numpy's (OpenBLAS) and torch's own pools in one process, used
    at the same time from different Python threads: every result stays right."""
    import threading
    aj.set_num_threads(3)
    f = aj.compile(model(), opt_level=1, cache=False)
    want = f(**inputs())
    rng = np.random.default_rng(3)
    A, Bm = rng.normal(size=(300, 300)), rng.normal(size=(300, 300))
    C = A @ Bm
    errors = []

    def blas():
        for _ in range(30):
            if not np.allclose(A @ Bm, C):
                errors.append("numpy")
        try:
            import torch
        except ImportError:
            return
        ta, tb = torch.from_numpy(A), torch.from_numpy(Bm)
        for _ in range(30):
            if not np.allclose((ta @ tb).numpy(), C):
                errors.append("torch")

    others = [threading.Thread(target=blas) for _ in range(2)]
    for t in others:
        t.start()
    for _ in range(10):
        for a, b in zip(want, f(**inputs())):
            np.testing.assert_array_equal(a, b)
    for t in others:
        t.join()
    assert not errors
