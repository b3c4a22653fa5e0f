"""Integer labels out of range raise on every call path (issue 13, item 8).

An integer input that ``one_hot`` reads -- ``cross_entropy`` with class indices, or
``one_hot`` itself, directly or through reshape/transpose/broadcast -- must hold class
indices ``0 <= label < n``.  A label of 5 for 3 classes, a negative label or 1-based
labels used to give an all-zero one-hot row and a loss of 0 for that example, silently.
Now every path raises ``aj.DTypeError`` (a ``ValueError``) naming the input: the checked
Python path, the native fast call of llvm (which checks the values itself and hands a
bad call to the Python path), bound functions (labels bound, and changed in place after
bind, or free), the interpreter and the ptx emulation.  Integer inputs that no
``one_hot`` reads keep any value.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

import adjit as aj
from adjit.compiled import Bound, Compiled
from calltools import CountingBinder

BACKENDS = {"llvm": {}, "interp": {}, "ptx": {"emulate": True, "opt_level": 0}}
BAD = {"too big": [0, 5, 1, 2], "equal to n": [0, 1, 3, 2], "negative": [0, -1, 1, 2],
       "1-based": [1, 2, 3, 3], "huge": [0, 2 ** 40, 1, 2], "most negative": [0, 1, 2, -2 ** 31]}


def has_fastcall(f) -> bool:
    return isinstance(type(f).__dict__.get("__call__"), types.BuiltinFunctionType)


def ce_model(dtype="int64", batch=None):
    x = aj.input("x", (batch, 3))
    y = aj.input("y", (batch,), dtype=dtype)
    return aj.cross_entropy(x, y)


def args(labels, dtype="int64", seed=0):
    y = np.asarray(labels, dtype=dtype)
    x = np.random.default_rng(seed).standard_normal((len(y), 3))
    return {"x": x, "y": y}


def reference(x, y):
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def expect_label_error(call, name="y", n=3):
    with pytest.raises(aj.DTypeError, match=rf"input '{name}': labels must be class indices "
                                            rf"0 to {n - 1} \(one_hot with {n} classes\)"):
        call()


# -- the checked Python path and every backend ----------------------------------------------
# (2**40 is no int32: that one is refused as an overflow of the dtype, as before)
CASES = [(dtype, case) for dtype in ("int64", "int32") for case in BAD
         if not (dtype == "int32" and case == "huge")]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype,case", CASES)
def test_out_of_range_labels_raise_on_every_backend(backend, dtype, case):
    f = aj.compile(ce_model(dtype), backend=backend, **BACKENDS[backend])
    kw = args(BAD[case], "int64")      # int64 data: converted on the way in for int32
    if dtype == "int32":
        kw["y"] = kw["y"].astype(np.int32)
    expect_label_error(lambda: Compiled.__call__(f, **kw))
    expect_label_error(lambda: f(**kw))
    good = args([0, 2, 1, 2], dtype)    # the bounds themselves are fine
    np.testing.assert_allclose(f(**good), reference(good["x"], good["y"]), rtol=1e-12)


def test_the_message_names_the_label_and_hints_at_1_based_labels():
    f = aj.compile(ce_model(), backend="interp")
    with pytest.raises(aj.DTypeError) as e:
        f(**args([1, 2, 3, 3]))
    msg = str(e.value)
    assert "got 3 at index (2,)" in msg and "2 of 4 labels out of range" in msg
    assert "values 1 to 3" in msg and "1-based labels? subtract 1" in msg
    with pytest.raises(aj.DTypeError) as e:
        f(**args([0, 1, -4, 9]))
    assert "got -4 at index (2,)" in str(e.value) and "1-based" not in str(e.value)
    assert isinstance(e.value, ValueError)


# -- the native fast call (llvm) -------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int64", "int32"])
@pytest.mark.parametrize("n", [1, 4, 1000])
def test_the_native_call_checks_every_label(dtype, n):
    f = aj.compile(ce_model(dtype))
    assert has_fastcall(f)
    spy = CountingBinder(f)
    rng = np.random.default_rng(n)
    kw = {"x": rng.standard_normal((n, 3)), "y": rng.integers(0, 3, n).astype(dtype)}
    f(**kw)                                     # primes the batch size (Python path)
    want = f(**kw)
    assert spy.calls == 1                       # ... the native route from here on
    np.testing.assert_allclose(want, reference(kw["x"], kw["y"]), rtol=1e-12)
    for pos in sorted({0, n // 2, n - 1}):      # first, middle, last element
        for bad in (3, -1, 2 ** 31 - 1, -2 ** 31):
            y = kw["y"].copy()
            y[pos] = bad
            before = spy.calls
            expect_label_error(lambda: f(x=kw["x"], y=y))
            assert spy.calls == before + 1      # the wrapper saw it and handed it over
    assert f(**kw).tobytes() == want.tobytes()  # still native, still right
    assert spy.calls == 1 + 4 * len({0, n // 2, n - 1})


def test_the_native_stack_route_checks_a_0d_label():
    """All arguments 0-d: the stack route (no priming), the label an exact 0-d array."""
    x, y = aj.input("x", ()), aj.input("y", (), dtype="int64")
    f = aj.compile(aj.sum(aj.one_hot(y, 3) * aj.exp(aj.broadcast_to(x, (3,)))))
    assert has_fastcall(f)
    spy = CountingBinder(f)
    for k in range(3):
        assert f(x=0.0, y=np.array(k)) == 1.0
    assert spy.calls == 0
    for bad in (3, -1, 7):
        expect_label_error(lambda: f(x=0.0, y=np.array(bad)))
    assert spy.calls == 3


def test_a_batch_of_zero_labels_is_fine():
    f = aj.compile([aj.sum(aj.one_hot(aj.input("y", (None,), "int64"), 3))])
    assert f(y=np.zeros(0, np.int64))[0] == 0.0
    assert f(y=np.zeros(0, np.int64))[0] == 0.0


# -- bound functions -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bound_labels_are_checked_at_bind_and_every_call(backend):
    f = aj.compile(ce_model(batch=4), backend=backend, **BACKENDS[backend])
    kw = args([0, 1, 2, 1])
    with pytest.raises(aj.DTypeError, match="input 'y': labels must be"):
        f.bind(y=np.array([0, 1, 3, 1]))
    y = kw["y"].copy()
    g = f.bind(y=y)
    if backend == "llvm":
        assert has_fastcall(g)
    spy = CountingBinder(g, "_free")
    want = reference(kw["x"], y)
    np.testing.assert_allclose(g(x=kw["x"]), want, rtol=1e-12)
    np.testing.assert_allclose(Bound.__call__(g, x=kw["x"]), want, rtol=1e-12)
    for bad in (3, -1, 100):
        y[2] = bad                              # changed in place after bind
        with pytest.raises(aj.DTypeError, match="bound input 'y': labels must be class "
                                                "indices 0 to 2"):
            g(x=kw["x"])
        with pytest.raises(aj.DTypeError, match="bound input 'y'"):
            Bound.__call__(g, x=kw["x"])
    y[2] = 2
    np.testing.assert_allclose(g(x=kw["x"]), reference(kw["x"], y), rtol=1e-12)
    if backend == "llvm":
        # priming, the explicit Python call, then each bad label twice (the native route
        # handing it over, the explicit Python call); the last call was native again
        assert spy.calls == 2 + 3 * 2


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_free_labels_of_a_bound_function(backend):
    x, y, W = aj.input("x", (None, 2)), aj.input("y", (None,), "int64"), aj.param("W", (2, 3))
    f = aj.compile(aj.cross_entropy(x @ W, y), backend=backend, **BACKENDS[backend])
    W0 = np.arange(6.0).reshape(2, 3) / 6
    g = f.bind(W=W0)
    X = np.ones((3, 2))
    g(x=X, y=np.array([0, 1, 2]))
    g(x=X, y=np.array([0, 1, 2]))
    for bad in ([0, 1, 3], [-1, 0, 0]):
        expect_label_error(lambda: g(x=X, y=np.array(bad)))
        expect_label_error(lambda: Bound.__call__(g, x=X, y=np.array(bad)))


# -- which inputs are labels -----------------------------------------------------------------
def test_labels_reach_one_hot_through_moves_and_take_the_smallest_class_count():
    y = aj.input("y", (2, 3), "int64")
    moved = aj.transpose(aj.reshape(y, (3, 2)))             # (2, 3), the values moved
    out = [aj.sum(aj.one_hot(moved, 5)), aj.sum(aj.one_hot(y, 4))]
    for backend, opts in BACKENDS.items():
        f = aj.compile(out, backend=backend, **opts)
        ok = np.array([[0, 1, 2], [3, 3, 0]])
        assert [float(v) for v in f(y=ok)] == [6.0, 6.0]
        expect_label_error(lambda: f(y=ok + 1), n=4)        # 4 fits one_hot(., 5), not (., 4)


def test_labels_reach_one_hot_through_an_integer_cast():
    """(The interpreter only: llvm and ptx lower no integer cast.)"""
    y = aj.input("y", (None,), "int32")
    f = aj.compile(aj.sum(aj.one_hot(aj.cast(y, "int64"), 3)), backend="interp")
    assert f._binder.limits == {"y": (0, 3, "one_hot with 3 classes")}
    assert f(y=np.array([0, 2], np.int32)) == 2.0
    expect_label_error(lambda: f(y=np.array([0, 3], np.int32)))


def test_an_integer_input_no_one_hot_reads_takes_any_value():
    x, k = aj.input("x", (None,)), aj.input("k", (None,), "int64")
    f = aj.compile(aj.sum(x * aj.cast(k, "float64")))
    assert f._binder.limits == {}
    for _ in range(2):
        assert f(x=np.ones(3), k=np.array([-7, 5, 2 ** 40])) == -7 + 5 + 2 ** 40


def test_constant_labels_out_of_range_are_refused_at_compile():
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(aj.DTypeError, match="constant labels of one_hot: labels must be"):
            aj.compile(aj.sum(aj.one_hot(aj.const(np.array(bad)), 3)), backend="interp")
    f = aj.compile(aj.sum(aj.one_hot(aj.const(np.array([0, 2])), 3)), backend="interp")
    assert f() == 2.0


def test_computed_labels_are_not_checked():
    """Labels computed in the graph (a float cast to int; the interpreter only) cannot be
    checked before the call: out of range, they give all-zero one-hot rows."""
    x = aj.input("x", (None,))
    f = aj.compile(aj.sum(aj.one_hot(aj.cast(x, "int64"), 3), axis=0), backend="interp")
    assert f._binder.limits == {}
    got = f(x=np.array([0.0, 2.0, 3.0, -1.0, 1.0]))
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0])
