"""The Python side of native calls: array objects in the pointer table, the fallback path."""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from adjit.backends.llvm import runtime

SCRIPT = """
import numpy as np, adjit as aj
x = aj.input("x", (None, 3)); W = aj.param("W", (3, 2), dtype="float32")
f = aj.compile([aj.sum(aj.tanh(x @ W)), x @ W], opt_level=1, cache=False)
from adjit.backends.llvm.runtime import DATA_OFFSET
X = np.arange(15.0).reshape(5, 3)[::-1] / 10; W0 = np.ones((3, 2), np.float32)
L, Y = f(x=X, W=W0)
print(DATA_OFFSET, repr(float(L)), repr(Y.tolist()))
"""


@pytest.mark.skipif(runtime.DATA_OFFSET is None, reason="numpy's array layout was not recognised")
@pytest.mark.parametrize("arr", [np.empty(5), np.zeros((4, 6), np.float32)[2:, 1:],
                                 np.asarray(3.0), np.ones(3, np.int32)[::2]])
def test_probed_offset_reads_the_data_pointer(arr):
    got = ctypes.c_void_p.from_address(id(arr) + runtime.DATA_OFFSET).value
    assert got == arr.ctypes.data


def test_array_objects_and_plain_addresses_agree():
    def run(flag):
        env = dict(os.environ, ADJIT_ARRAY_OBJECTS=flag)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.split(" ", 1)
    (off_on, res_on), (off_off, res_off) = run("1"), run("0")
    assert off_off == "None" and off_on == str(runtime.DATA_OFFSET)
    assert res_on == res_off


def test_profile_counts_every_step_of_every_call():
    import adjit as aj
    x = aj.input("x", (None, 8))
    W = aj.param("W", (8, 4))
    loss = aj.sum(aj.tanh(x @ W))
    f = aj.compile([loss, aj.grad(loss, W)], opt_level=1, profile=True)
    X, W0 = np.ones((5, 8)), np.full((8, 4), 0.1)
    for _ in range(7):
        f(x=X, W=W0)
    rows = f.profile(as_rows=True)
    assert len(rows) == len(f._impl.plan.steps) > 2
    assert all(r["calls"] == 7 and r["total_us"] >= 0 for r in rows)
    assert {r["op"] for r in rows} >= {"matmul"}
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-9
    assert "matmul" in f.profile()
    f.reset_profile()
    assert all(r["calls"] == 0 for r in f.profile(as_rows=True))
    np.testing.assert_allclose(f(x=X, W=W0)[0], np.sum(np.tanh(X @ W0)), rtol=1e-12)


def test_profile_needs_the_option():
    import adjit as aj
    x = aj.input("x", (3,))
    f = aj.compile(aj.sum(x), opt_level=1)
    with pytest.raises(RuntimeError, match="profile=True"):
        f.profile()


def test_scratch_states_per_thread_are_bounded():
    import adjit as aj
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 2))
    f = aj.compile(aj.sum(x @ W), opt_level=1)
    W0 = np.ones((3, 2))
    for b in range(1, 3 * runtime.MAX_STATES):
        np.testing.assert_allclose(f(x=np.ones((b, 3)), W=W0), 6.0 * b)
    states = f._impl._local.states
    assert len(states) == runtime.MAX_STATES
    assert list(states)[-1] == 3 * runtime.MAX_STATES - 1     # most recent kept
    np.testing.assert_allclose(f(x=np.ones((1, 3)), W=W0), 6.0)   # an evicted size comes back


def test_one_gemm_workspace_per_thread_for_every_function():
    """The Python path's states (every function, every batch size) on one thread share
    one GEMM workspace; another thread gets its own, and a fast-call state owns one."""
    import threading

    import adjit as aj
    x = aj.input("x", (None, 40))
    W = aj.param("W", (40, 30))
    f = aj.compile(x @ W, opt_level=1)
    g = aj.compile(aj.tanh(x @ W), opt_level=1)
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((40, 30))
    def python_path(fn, X):
        return runtime.NativeFunction.__call__(fn._impl, {"x": X, "W": W0}, len(X))[0]
    for b in (5, 64, 5, 300, 64):       # interleaved: each call leaves junk in the workspace
        X = rng.standard_normal((b, 40))
        np.testing.assert_allclose(python_path(f, X), X @ W0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(python_path(g, X), np.tanh(X @ W0), rtol=1e-12, atol=1e-12)
    mine = [st.workspace for fn in (f, g) for st in fn._impl._local.states.values()]
    assert len(mine) == 6 and all(ws is mine[0] for ws in mine)
    assert mine[0].nbytes >= 8 * runtime.gemm_workspace_elems("f64")
    other = []
    t = threading.Thread(target=lambda: (python_path(f, np.ones((5, 40))),
                                         other.append(runtime._thread_workspace())))
    t.start()
    t.join()
    assert other[0] is not mine[0]
    assert runtime.dedicated_state(f._impl.plan, 5).workspace is not mine[0]
