"""fork() while another thread compiles: the child compiles, binds and calls.

A lock held by the compiling thread at the moment of the fork used to stay held forever
in the child (that thread does not exist there), so the child hung in its first
``compile`` or ``bind``.  Each scenario runs in a child process with a timeout, and each
forked grandchild must finish within its own deadline, so a deadlock fails the test
instead of hanging the suite.
"""
from __future__ import annotations


import pytest

from isolation import describe_exit, records, run_child

FORKER = r"""
import json, os, random, signal, sys, threading, time, traceback
import numpy as np
import adjit as aj

n_forks, deadline_s = int(sys.argv[1]), float(sys.argv[2])
stop = threading.Event()
compiled = [0]

def compile_forever():
    k = 0
    while not stop.is_set():
        x = aj.input("x", (None, 3))
        W = aj.param("W", (3, 3))
        L = aj.sum(aj.tanh(x @ W) * float(k % 5 + 1))
        aj.compile([L, aj.grad(L, W)], opt_level=1)(x=np.ones((2, 3)), W=np.eye(3))
        k += 1
        compiled[0] = k

def in_child():
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 3))
    L = aj.sum(aj.tanh(x @ W) * 3.0 - 1.0)
    f = aj.compile([L, aj.grad(L, W)], opt_level=1)
    X = np.arange(6.0).reshape(2, 3) / 10
    g = f.bind(W=np.eye(3))
    val, grad = g(x=X)
    assert np.isclose(val, 3 * np.tanh(X).sum() - 6.0), val
    assert np.allclose(grad, X.T @ (3 * (1 - np.tanh(X) ** 2))), grad

worker = threading.Thread(target=compile_forever, daemon=True)
worker.start()
while compiled[0] < 1:
    time.sleep(0.01)
random.seed(0)
outcomes = []
for i in range(n_forks):
    time.sleep(random.uniform(0.0, 0.15))     # somewhere inside the next compile
    pid = os.fork()
    if pid == 0:
        try:
            in_child()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    end = time.monotonic() + deadline_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            outcomes.append(os.waitstatus_to_exitcode(status))
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            outcomes.append("hung")
            break
        time.sleep(0.02)
stop.set()
worker.join(60)
print(json.dumps({"outcomes": outcomes, "parent_compiles": compiled[0]}), flush=True)
"""


@pytest.mark.parametrize("cache", ["0", "1"])
def test_fork_while_another_thread_compiles(tmp_path, cache):
    """cache=0: every compile is cold (the thread is inside LLVM most of the time);
    cache=1: compiles load object code from the disk cache (bind, symbols, engines)."""
    proc = run_child(["-c", FORKER, "6", "90"], timeout=900,
                     env={"ADJIT_CACHE": cache, "ADJIT_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 0, describe_exit(proc)
    (rec,) = records(proc)
    assert rec["outcomes"] == [0] * 6, (rec, proc.stderr[-3000:])
    assert rec["parent_compiles"] > 1      # the parent kept compiling after the forks
