"""Arrays changed after ``f.bind`` (issue 13, item 12).

A bound function keeps the caller's arrays and passes them to every call without copying.
The caller may still change them: new values are fine (that is how a parameter changes),
but ``resize(..., refcheck=False)``, assigning ``shape``, ``dtype`` or ``strides`` and
clearing ``writeable`` change what native code relies on.  These used to be trusted
forever: a shrunk array was read and written at its old size (heap corruption, abort), a
new shape or dtype was read as the old one, and ``updates=`` wrote into a read-only array.
Now every call re-checks each bound array -- on the native route and the Python path, on
every backend -- and raises naming the input; a legal change (a new data pointer after a
resize back to the bound shape) is accepted and read at its new address.

The mutations that crashed run in a child process first (:func:`test_mutations_that_
crashed_raise_in_a_child`), so a regression fails one test instead of the test run.
"""
from __future__ import annotations

import json
import os
import types
import warnings

import numpy as np
import pytest

import adjit as aj
from adjit.compiled import Bound
from calltools import CountingBinder

from isolation import run_child, describe_exit, records

N = 24
# the children import the adjit this test runs (PYTHONPATH may be relative to elsewhere)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(aj.__file__)))


def has_fastcall(f) -> bool:
    return isinstance(type(f).__dict__.get("__call__"), types.BuiltinFunctionType)


def step(backend="llvm", updates=True):
    """A least-squares step ``W -= 0.01 * dL/dW`` (or the loss alone), x batched."""
    x, W = aj.input("x", (None, N)), aj.param("W", (N, N))
    loss = aj.sum((x @ W) ** 2)
    opts = {"emulate": True, "opt_level": 0} if backend == "ptx" else {}
    upd = {W: W - 0.01 * aj.grad(loss, [W])[0]} if updates else None
    return aj.compile(loss, backend=backend, updates=upd, **opts)


def fresh_w():
    return np.linspace(-1, 1, N * N).reshape(N, N) / N


X = np.linspace(0, 1, 3 * N).reshape(3, N)
# "call": the function as users call it -- on llvm the native route (``bound`` checks it
# has one); "python": the checked Python path of Bound, explicitly
PATHS = {"call": lambda g, **kw: g(**kw), "python": lambda g, **kw: Bound.__call__(g, **kw)}
BACKENDS = ["llvm", "interp", "ptx"]


def bound(backend, updates=True):
    f = step(backend, updates)
    W0 = fresh_w()
    g = f.bind(W=W0)
    if backend == "llvm":
        assert has_fastcall(g)
    g(x=X)              # primes the batch size (llvm); W0 updated once
    return f, g, W0


MUTATIONS = {
    "resize smaller": (lambda W: W.resize((1,), refcheck=False), aj.ShapeError,
                       r"bound input 'W' changed shape since bind: bound as \(24, 24\), "
                       r"now \(1,\)"),
    "resize larger": (lambda W: W.resize((N + 1, N), refcheck=False), aj.ShapeError,
                      r"now \(25, 24\)"),
    "shape": (lambda W: setattr(W, "shape", (N // 2, 2 * N)), aj.ShapeError, r"now \(12, 48\)"),
    "rank": (lambda W: setattr(W, "shape", (N * N,)), aj.ShapeError, r"now \(576,\)"),
    "dtype narrower": (lambda W: setattr(W, "dtype", np.float32), aj.DTypeError,
                       "bound input 'W' changed dtype since bind: bound as float64, now float32"),
    "dtype same size": (lambda W: setattr(W, "dtype", np.int64), aj.DTypeError, "now int64"),
    "byte order": (lambda W: setattr(W, "dtype", W.dtype.newbyteorder()), aj.DTypeError,
                   "now >f8"),
    "strides": (lambda W: _set_strides(W, (8, 8 * N)), ValueError,
                "bound input 'W' is no longer an aligned C-contiguous array"),
}


def _set_strides(W, strides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # numpy >= 2.4 deprecates it
        W.strides = strides


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("updates", [True, False], ids=["updates", "no-updates"])
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_changed_bound_array_raises_naming_it(mutation, updates, backend, path):
    change, error, message = MUTATIONS[mutation]
    f, g, W0 = bound(backend, updates)
    call = PATHS[path]
    before = W0.copy()
    change(W0)
    snapshot = W0.copy()
    for _ in range(2):                      # every call, not the first only
        with pytest.raises(error, match=message):
            call(g, x=X)
    np.testing.assert_array_equal(W0, snapshot)     # nothing was written into it
    if mutation.startswith("resize"):
        W0.resize((N, N), refcheck=False)    # back to the bound shape: fine again
        W0[...] = before
        if backend == "llvm" and path == "call":
            spy = CountingBinder(g, "_free")
            want = f(x=X, W=before.copy())
            assert call(g, x=X) == want
            assert spy.calls == 0           # back on the native route
        else:
            assert call(g, x=X) == f(x=X, W=before.copy())


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_updates_refuse_a_bound_array_made_read_only(backend, path):
    f, g, W0 = bound(backend)
    W0.flags.writeable = False
    snapshot = W0.copy()
    for _ in range(2):
        with pytest.raises(ValueError, match="bound input 'W' is updated in place, but it "
                                             "is no longer writeable"):
            PATHS[path](g, x=X)
    np.testing.assert_array_equal(W0, snapshot)
    W0.flags.writeable = True
    PATHS[path](g, x=X)
    assert not np.array_equal(W0, snapshot)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_only_bound_array_nothing_writes_is_fine(backend, path):
    f, g, W0 = bound(backend, updates=False)
    want = PATHS[path](g, x=X)
    W0.flags.writeable = False
    assert PATHS[path](g, x=X) == want


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_data_pointer_at_the_bound_shape_is_read_at_its_new_address(backend, path):
    """``resize`` away and back moves the data: the call reads and updates the new buffer."""
    f, g, W0 = bound(backend)
    old_address = W0.ctypes.data
    for k in range(3):
        W0.resize((4 * N, 4 * N), refcheck=False)   # a larger buffer: a new address
        W0.resize((N, N), refcheck=False)           # back to the bound shape
        W0[...] = fresh_w() * (k + 2)
        want_w, want_loss = W0.copy(), step("interp", updates=False)(x=X, W=W0)
        got = PATHS[path](g, x=X)
        np.testing.assert_allclose(got, want_loss, rtol=1e-12)
        assert not np.array_equal(W0, want_w)       # updated in place, in the new buffer
    assert W0.ctypes.data != old_address or backend != "llvm"


def test_the_native_route_rechecks_without_leaving_it():
    """A call after a legal change stays native; a changed array goes to the Python path."""
    f, g, W0 = bound("llvm", updates=False)
    spy = CountingBinder(g, "_free")
    W0[...] = 2.0                           # new values: the ordinary way to change W
    assert g(x=X) == f(x=X, W=W0)
    assert spy.calls == 0
    W0.shape = (N // 2, 2 * N)
    with pytest.raises(aj.ShapeError):
        g(x=X)
    assert spy.calls == 1
    W0.shape = (N, N)
    g(x=X)
    assert spy.calls == 1


def test_optimizer_state_bound_with_every_parameter_is_checked():
    """A training step binding many arrays (parameters and Adam's state): each one."""
    from adjit import nn, optim
    x, y = aj.input("x", (None, 5)), aj.input("y", (None,), "int64")
    mlp = nn.MLP([5, 6, 3], activation="relu")
    loss = aj.cross_entropy(mlp(x), y)
    opt = optim.Adam(mlp.params, lr=0.01)
    f = aj.compile([loss], updates=opt.updates(loss))
    state = {**mlp.init(seed=0), **opt.state}
    g = f.bind(**state)
    assert has_fastcall(g)
    kw = {"x": np.ones((4, 5)), "y": np.array([0, 1, 2, 0])}
    g(**kw)
    g(**kw)
    assert set(f._update_names) == set(state) - {"adam_lr"}
    for name in f._update_names:
        arr = state[name]
        arr.flags.writeable = False
        for call in PATHS.values():
            with pytest.raises(ValueError, match=f"bound input '{name}' is updated in place"):
                call(g, **kw)
        arr.flags.writeable = True
    state["adam_lr"].flags.writeable = False    # read, never written: fine
    for call in PATHS.values():
        call(g, **kw)


# -- the mutations that crashed, in a child first ----------------------------------------------
CHILD = r"""
import json, sys, numpy as np, adjit as aj
from adjit.compiled import Bound
N = 64
x, W = aj.input("x", (None, N)), aj.param("W", (N, N))
loss = aj.sum(x @ W)
f = aj.compile(loss, updates={W: W - 0.001 * aj.grad(loss, [W])[0]})
X = np.ones((4, N))
for path in ("native", "python"):
    for how in ("resize", "readonly"):
        W0 = np.ones((N, N))
        g = f.bind(W=W0)
        call = g if path == "native" else (lambda **k: Bound.__call__(g, **k))
        call(x=X)
        if how == "resize":
            W0.resize((1,), refcheck=False)
        else:
            W0.flags.writeable = False
        try:
            for _ in range(200):            # the heap is touched between calls
                junk = [np.ones(k) for k in range(1, 100)]
                call(x=X)
            out = "ran"
        except ValueError as e:
            out = type(e).__name__ + ": " + str(e)
        print(json.dumps({"path": path, "how": how, "out": out}), flush=True)
"""


def test_mutations_that_crashed_raise_in_a_child():
    proc = run_child(["-c", CHILD], env={"PYTHONPATH": SRC})
    assert proc.returncode == 0, describe_exit(proc)
    got = {(r["path"], r["how"]): r["out"] for r in records(proc)}
    assert len(got) == 4, proc.stdout
    for path in ("native", "python"):
        assert got[path, "resize"].startswith("ShapeError: bound input 'W' changed shape")
        assert got[path, "readonly"].startswith("ValueError: bound input 'W' is updated in "
                                                "place, but it is no longer writeable")


def test_plain_addresses_follow_a_new_data_pointer():
    """Without array objects in the table (``ADJIT_ARRAY_OBJECTS=0``: data addresses
    instead), a bound array's address is read again every call, never kept."""
    code = r"""
import json, numpy as np, adjit as aj
from adjit.backends.llvm import runtime
assert runtime.DATA_OFFSET is None
N = 32
x, W = aj.input("x", (None, N)), aj.param("W", (N, N))
f = aj.compile(aj.sum(x @ W))
W0 = np.ones((N, N))
g = f.bind(W=W0)
X = np.ones((2, N))
out = [float(g(x=X))]
for k in range(3):
    W0.resize((8 * N, N), refcheck=False)
    W0.resize((N, N), refcheck=False)
    W0[...] = k + 2.0
    junk = [np.full(N * N, -1.0) for _ in range(20)]   # would fill the old buffer
    out.append(float(g(x=X)))
print(json.dumps(out))
"""
    proc = run_child(["-c", code], env={"ADJIT_ARRAY_OBJECTS": "0", "PYTHONPATH": SRC})
    assert proc.returncode == 0, describe_exit(proc)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2.0 * 32 * 32 * k
                                                                for k in (1, 2, 3, 4)]
