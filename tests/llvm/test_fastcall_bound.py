"""The native entry of training steps: ``updates=`` and bound functions (``f.bind(...)``).

A function with ``updates=`` gets a builtin ``__call__`` like any other (see
test_fastcall_arrays.py): an updated input must also be a writeable array (anything else
goes to the Python path, which raises), and its array fills the slot of its in-place
output.  A bound function whose bound arrays carry no batch size gets one too: the free
arguments are checked natively, the bound arrays (and the in-place buffers it binds) fill
their table slots every call.  Checked here: training steps bit for bit equal to the
Python path (losses and the updated parameters and optimizer state, over batch sizes),
which calls took the native route, the cases that keep the Python path, fallbacks with
the Python path's errors, threads, refcounts.
"""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim
from adjit.compiled import Bound, Compiled

from test_fastcall import CountingBinder, has_fastcall


def train_step(dtype="float32"):
    """(compiled step with Adam updates, initial params + optimizer state)."""
    x = aj.input("x", (None, 6), dtype=dtype)
    y = aj.input("y", (None,), dtype="int64")
    mlp = nn.MLP([6, 8, 4], activation="relu", dtype=dtype)
    loss = aj.cross_entropy(mlp(x), y)
    opt = optim.Adam(mlp.params, lr=0.01)
    f = aj.compile([loss], updates=opt.updates(loss))
    return f, {**mlp.init(seed=0), **opt.state}


def batch(n, seed, dtype="float32"):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 6)).astype(dtype), "y": rng.integers(0, 4, n)}


def copies(state):
    return {k: v.copy() for k, v in state.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_match_the_python_path_bit_for_bit(dtype):
    f, state = train_step(dtype)
    fast_state, slow_state = copies(state), copies(state)
    g, h = f.bind(**fast_state), f.bind(**slow_state)
    assert has_fastcall(g)
    counter = CountingBinder(g, "_free")
    sizes = [7, 7, 7, 1, 64, 7, 1000, 7]
    for k, n in enumerate(sizes):
        kw = batch(n, k, dtype)
        got, want = g(**kw), Bound.__call__(h, **kw)
        assert type(got) is tuple and len(got) == 1 and got[0].tobytes() == want[0].tobytes()
        for name in state:      # parameters and Adam's moments and step, updated in place
            assert fast_state[name].tobytes() == slow_state[name].tobytes(), (k, name)
    assert not np.array_equal(fast_state["adam_t"], state["adam_t"])     # they did change
    assert counter.calls == len(set(sizes))     # the first call of each batch size primes


def test_a_single_output_and_no_updates():
    x, W = aj.input("x", (None, 3)), aj.param("W", (3, 2))
    f = aj.compile(aj.sum(x @ W, axis=1))
    Wv = np.arange(6.0).reshape(3, 2)
    g = f.bind(W=Wv)
    assert has_fastcall(g)
    X = np.ones((5, 3))
    for _ in range(3):
        out = g(x=X)
        assert type(out) is np.ndarray and out.tobytes() == f(x=X, W=Wv).tobytes()
    Wv[...] = 1.0           # writing into a bound array is how a caller changes it
    np.testing.assert_array_equal(g(x=X), np.full(5, 6.0))


def test_fallbacks_raise_or_convert_as_the_python_path():
    f, state = train_step()
    g, h = f.bind(**copies(state)), f.bind(**copies(state))
    kw = batch(7, 0)
    for _ in range(2):                  # primed, and both at the same step
        g(**kw), Bound.__call__(h, **kw)
    with pytest.raises(TypeError, match="W1"):
        g(**kw, W1=state["W1"])                   # a bound argument given again
    with pytest.raises(TypeError, match="'y'"):
        g(x=kw["x"])
    with pytest.raises(aj.ShapeError, match="'x'"):
        g(x=kw["x"][:, :5], y=kw["y"])
    as64 = dict(kw, x=kw["x"].astype(np.float64))     # converted by the Python path
    assert g(**as64)[0].tobytes() == Bound.__call__(h, **kw)[0].tobytes()


@pytest.mark.parametrize("bind", ["nothing", "some"])
def test_unbound_updates_match_the_python_path_bit_for_bit(bind):
    """Every updated array passed by the caller (or some bound, W1 passed): updated in
    place natively, as the Python path does."""
    f, state = train_step()
    fast_state, slow_state = copies(state), copies(state)
    if bind == "nothing":
        g, kept = f, {}
        counter = CountingBinder(f)
    else:
        kept = {k: v for k, v in fast_state.items() if k != "W1"}
        g = f.bind(**kept)
        counter = CountingBinder(g, "_free")
    assert has_fastcall(g)
    python_path = 0
    for k, n in enumerate([7, 7, 1, 7, 64, 64]):
        kw = batch(n, k)
        before = counter.calls
        got = g(**kw, **{k2: v for k2, v in fast_state.items() if k2 not in kept})
        python_path += counter.calls - before
        want = Compiled.__call__(f, **kw, **slow_state)
        assert got[0].tobytes() == want[0].tobytes()
        for name in state:
            assert fast_state[name].tobytes() == slow_state[name].tobytes(), (k, name)
    assert python_path == 3            # the first call of each batch size primes


def test_updated_arguments_the_function_cannot_write_raise_as_before():
    f, state = train_step()
    s = copies(state)
    kw = batch(7, 0)
    f(**kw, **s), f(**kw, **s)                  # primed
    frozen = s["W2"].copy()
    frozen.flags.writeable = False
    cases = {"W2": frozen, "b1": s["b1"].astype(np.float64), "adam_t": float(s["adam_t"]),
             "W1": np.asfortranarray(s["W1"])}
    for name, bad in cases.items():
        before = {k: v.copy() for k, v in s.items()}
        with pytest.raises(ValueError, match=f"'{name}' is updated in place"):
            f(**kw, **dict(s, **{name: bad}))
        assert all(np.array_equal(before[k], s[k]) for k in s)     # nothing written


def test_cases_that_keep_the_python_path():
    x, W = aj.input("x", (None, 3)), aj.param("W", (3, 2))
    plain = aj.compile(x @ W)
    assert not has_fastcall(plain.bind(x=np.ones((4, 3))))   # bound arrays with a batch
    checked = aj.compile(x @ W, check_nans=True)
    assert not has_fastcall(checked.bind(W=np.ones((3, 2))))


def test_bound_arrays_stay_alive_and_refcounts_do_not_move():
    f, state = train_step()
    fixed = copies(state)
    g = f.bind(**fixed)
    kw = batch(7, 0)
    g(**kw), g(**kw)
    watched = [*fixed.values(), *kw.values(), np.dtype(np.float32), g]
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(300):
        g(**kw)
        with pytest.raises(TypeError):
            g(x=kw["x"])
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == before
    t = fixed["adam_t"]
    del fixed, watched
    gc.collect()
    g(**kw)                             # the Bound keeps its arrays
    assert t == state["adam_t"] + 303


def test_eight_threads_share_a_bound_inference_function():
    """Bound weights, no updates: concurrent calls (mixed batch sizes, more than the
    primed states) equal the serial Python path."""
    x = aj.input("x", (None, 6))
    mlp = nn.MLP([6, 8, 4], activation="tanh")
    f = aj.compile(aj.softmax(mlp(x), axis=1))
    g = f.bind(**mlp.init(seed=1))
    assert has_fastcall(g)
    sizes = [1, 7, 64, 33, 7, 5]
    jobs = [[batch(sizes[(i + k) % len(sizes)], k, "float64")["x"] for k in range(40)]
            for i in range(8)]
    serial = [[Bound.__call__(g, x=X) for X in job] for job in jobs]
    from threadtools import run_at_once      # (tests/ is on the path under pytest)
    got = run_at_once(lambda i: [g(x=X) for X in jobs[i]], 8, switch_interval=1e-5)
    for gs, ss in zip(got, serial):
        for a, b in zip(gs, ss):
            assert a.tobytes() == b.tobytes()


def test_threads_training_their_own_state_through_one_function():
    """updates= on the native route from 6 threads at once, each passing its own
    parameters and optimizer state: each ends where a serial run of its steps ends."""
    f, state = train_step()
    seeds = range(6)
    batches = {s: [batch(7 + s % 3, 10 * s + k) for k in range(15)] for s in seeds}
    serial = {}
    for s in seeds:
        mine = copies(state)
        for kw in batches[s]:
            Compiled.__call__(f, **kw, **mine)
        serial[s] = mine
    states = {s: copies(state) for s in seeds}
    from threadtools import run_at_once      # (tests/ is on the path under pytest)
    run_at_once(lambda i: [f(**kw, **states[i]) for kw in batches[i]], len(seeds),
                switch_interval=1e-5)
    for s in seeds:
        for name in state:
            assert states[s][name].tobytes() == serial[s][name].tobytes(), (s, name)
