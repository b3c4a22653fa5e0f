"""The same compiled function called from 8 Python threads at once gives exactly the
results of serial calls (per-thread scratch memory: no lock is taken around the call)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import adjit as aj
from threadtools import run_at_once

BACKENDS = ["interp", "llvm"]
THREADS = 8
CALLS = 25


def mlp():
    x = aj.input("x", (None, 16))
    t = aj.input("t", (None,), "int64")
    W1, b1 = aj.param("W1", (16, 64)), aj.param("b1", (64,))
    W2 = aj.param("W2", (64, 5))
    logits = aj.tanh(x @ W1 + b1) @ W2
    L = aj.cross_entropy(logits, t)
    return [L, *aj.grad(L, [W1, b1, W2]), aj.softmax(logits)]


def workload(seed):
    """Each thread gets its own inputs; batch sizes repeat across threads and vary within
    one, so threads share batch sizes while the per-thread arenas are re-planned."""
    rng = np.random.default_rng(seed)
    params = {"W1": rng.standard_normal((16, 64)) * 0.3, "b1": rng.standard_normal(64),
              "W2": rng.standard_normal((64, 5)) * 0.3}
    calls = []
    for k in range(CALLS):
        batch = (3, 40, 200)[(seed + k) % 3]
        calls.append({**params, "x": rng.standard_normal((batch, 16)),
                      "t": rng.integers(0, 5, batch)})
    return calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_match_serial_calls(backend):
    opts = {"opt_level": 1} if backend == "llvm" else {}
    f = aj.compile(mlp(), backend=backend, **opts)
    jobs = [workload(seed) for seed in range(THREADS)]
    serial = [[f(**a) for a in calls] for calls in jobs]

    got = run_at_once(lambda i: [f(**a) for a in jobs[i]], THREADS, switch_interval=None)
    for i in range(THREADS):
        for k, (a, b) in enumerate(zip(got[i], serial[i])):
            for j, (x, y) in enumerate(zip(a, b)):
                np.testing.assert_array_equal(x, y, err_msg=f"thread {i}, call {k}, output {j}")


def test_threads_compiling_and_calling_at_once():
    """Compiling (LLVM work is serialized inside adjit) while other threads call."""
    x = aj.input("x", (None, 4))
    f = aj.compile(aj.sum(aj.sigmoid(x) * x, axis=1), opt_level=1)
    X = np.linspace(-2, 2, 40).reshape(10, 4)
    want = f(x=X)
    results, errors = [], []

    def caller():
        try:
            for _ in range(200):
                results.append(np.array_equal(f(x=X), want))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def compiler(k):
        try:
            y = aj.input("y", (None, 3))
            g = aj.compile(aj.sum(aj.tanh(y) * (k + 1.0)), opt_level=1, cache=False)
            results.append(np.isclose(g(y=np.ones((2, 3))), 6 * np.tanh(1.0) * (k + 1.0)))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    threads += [threading.Thread(target=compiler, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert len(results) == 4 * 200 + 4 and all(results)
