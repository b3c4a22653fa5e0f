"""The native ``tp_call`` of a compiled function's per-instance class
(backends/llvm/fastcall_type.py, fastcall_kwargs.py).

``f(x=...)`` reaches the class's ``tp_call`` with a keyword dict; the native one reads the
dict itself and hands every call it cannot check to the checked Python path with the very
tuple and dict it got.  Checked here: it is installed (and not where it must not be), it
gives the builtin's results and the slow path's errors for hostile entries (in a child
process: a crash fails cases, not the run), it steps aside when ``__call__`` is set or
deleted on the class or a base, ``__class__`` assignment, subclasses, a type that copied
the slot without a context, copies, lifetimes, refcounts when the caller's dict drops its
values mid-call, threads, fork, and the switch ``ADJIT_FASTCALL_TYPE=0``.
"""
from __future__ import annotations

import copy
import ctypes
import gc
import json
import os
import sys
import weakref

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import fastcall, fastcall_type
from adjit.compiled import Compiled

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from calltools import CountingBinder, child_records  # noqa: E402
from test_fastcall import W1_ARGS, as_arrays, assert_identical, has_fastcall, slow, w1  # noqa: E402

_call = ctypes.pythonapi.PyObject_Call
_call.restype, _call.argtypes = ctypes.py_object, [ctypes.py_object] * 3


def c_call(f, args, kwargs):
    """``PyObject_Call(f, args, kwargs)`` as C code calls it: ``kwargs`` passed as it is
    (a dict subclass, non-str keys: what Python syntax would convert or refuse)."""
    return _call(f, args, kwargs)


def tp_call_of(tp) -> int:
    return fastcall_type._word(tp, fastcall_type.layout()[0]).value


def type_call_installed(f) -> bool:
    return tp_call_of(type(f)) == fastcall._wrapper_address("adjit_typecall")


def routed(f, call):
    """(result or error, 'native' / 'fallback')."""
    spy = CountingBinder(f)
    try:
        try:
            out = call()
        except Exception as e:  # noqa: BLE001
            out = (type(e).__name__, str(e))
    finally:
        f._binder = spy.inner
    return out, "fallback" if spy.calls else "native"


needs_layout = pytest.mark.skipif(fastcall_type.layout() is None or
                                  fastcall.fprobe.unavailable() is not None,
                                  reason="no native tp_call to test: the fastcall is off here, "
                                         "or this Python's type layout is not recognised")


@needs_layout
def test_installed_and_native_for_literal_and_unpacked_keywords():
    f = aj.compile(w1())
    assert has_fastcall(f) and type_call_installed(f)
    want = slow(f, **W1_ARGS)
    for call in (lambda: f(**W1_ARGS), lambda: f(x=0.3, t=0.7, w=-0.4, b=0.1),
                 lambda: f(**as_arrays(W1_ARGS)), lambda: f.__call__(**W1_ARGS),
                 lambda: c_call(f, (), dict(W1_ARGS))):
        out, route = routed(f, call)
        assert route == "native"
        assert_identical(out, want)


@needs_layout
def test_array_and_bound_functions_get_it_too():
    x, w = aj.input("x", (None, 3)), aj.param("w", (3,))
    f = aj.compile(aj.sum(aj.tanh(x * w)))
    g = f.bind(w=np.ones(3))
    assert type_call_installed(f) and type_call_installed(g)
    X = np.linspace(-1, 1, 21).reshape(7, 3)
    for _ in range(3):      # the first call of a batch size primes it
        np.testing.assert_array_equal(f(x=X, w=np.ones(3)), slow(f, x=X, w=np.ones(3)))
        np.testing.assert_array_equal(g(x=X), f(x=X, w=np.ones(3)))


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("ADJIT_FASTCALL_TYPE", "0")
    monkeypatch.setattr(fastcall_type, "_probed", [])
    f = aj.compile(w1())
    assert has_fastcall(f)      # the builtin still serves, through slot_tp_call
    assert fastcall_type.layout() is None
    monkeypatch.setenv("ADJIT_FASTCALL_TYPE", "1")
    if fastcall_type.layout() is not None:
        assert not type_call_installed(f)
    out, route = routed(f, lambda: f(**W1_ARGS))
    assert route == "native"
    assert_identical(out, slow(f, **W1_ARGS))


# -- hostile entries, in a child ------------------------------------------------------------
class StrSub(str):
    pass


class DictSub(dict):
    def keys(self):     # never consulted: C callers' dicts are read as dicts
        raise AssertionError


def _cases(f):
    kw = dict(W1_ARGS)
    many = dict(kw, **{f"k{i}": 1.0 for i in range(20000)})
    return {
        "positional": lambda: f(1.0),
        "positional_and_keywords": lambda: f(1.0, **kw),
        "nothing": lambda: f(),
        "missing": lambda: f(x=0.3, t=0.7, w=-0.4),
        "extra": lambda: f(**kw, zz=1.0),
        "huge": lambda: f(**many),
        "wrong_dtype": lambda: f(**dict(kw, x=np.float32(0.3))),
        "int_value": lambda: f(**dict(kw, x=1)),
        "str_value": lambda: f(**dict(kw, x="no")),
        "str_subclass_key": lambda: f(**{StrSub("x"): 0.3, "t": 0.7, "w": -0.4, "b": 0.1}),
        "c_non_str_key": lambda: c_call(f, (), {1: 0.3, "t": 0.7, "w": -0.4, "b": 0.1}),
        "c_non_str_extra": lambda: c_call(f, (), dict(kw, **{}) | {2: 1}),
        "c_dict_subclass": lambda: c_call(f, (), DictSub(kw)),
        "c_args_and_dict": lambda: c_call(f, (0.3,), dict(kw)),
        "c_null_kwargs": lambda: _call_null(f),
        "subclass_array": lambda: f(**dict(kw, x=np.array(0.3).view(np.matrix))),
        "fresh_equal_names": lambda: f(**{k[:1] + k[1:]: v for k, v in kw.items()}),
    }


def _call_null(f):
    fn = ctypes.pythonapi.PyObject_Call
    proto = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object,
                              ctypes.c_void_p)
    return proto(ctypes.cast(fn, ctypes.c_void_p).value)(f, (), None)


def _outcome(call):
    try:
        out = call()
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__, "message": str(e)}
    return {"arrays": [[a.dtype.str, a.tobytes().hex()] for a in
                       (out if isinstance(out, tuple) else (out,))]}


def _child():
    f = aj.compile(w1())
    plain = aj.compile(w1())
    plain.__class__ = Compiled          # the checked Python path for every call
    assert type_call_installed(f), "no native tp_call"
    for name in _cases(f):
        print(json.dumps({"start": name}), flush=True)
        fast = _outcome(_cases(f)[name])
        ref = _outcome(_cases(plain)[name])
        print(json.dumps({"case": name, "fast": fast, "slow": ref}), flush=True)


@pytest.fixture(scope="module")
def hostile():
    return child_records(__file__, "child")


@needs_layout
@pytest.mark.parametrize("case", list(_cases(None)))
def test_hostile_entry_same_as_python_path(hostile, case):
    by_case, crash = hostile
    assert case in by_case, f"no record: the child died ({crash})"
    assert by_case[case]["fast"] == by_case[case]["slow"]


# -- the class changed under it ---------------------------------------------------------------
@needs_layout
def test_reassigned_call_on_the_class_takes_over():
    f = aj.compile(w1())
    tp = type(f)
    tp.__call__ = lambda self, **kw: "mine"
    assert not type_call_installed(f) and f(**W1_ARGS) == "mine"
    del tp.__call__             # Compiled.__call__: the checked Python path
    out, route = routed(f, lambda: f(**W1_ARGS))
    assert route == "fallback"
    assert_identical(out, slow(f, **W1_ARGS))


@needs_layout
def test_call_set_on_a_base_class_is_shadowed_as_before(monkeypatch):
    """The per-instance class's own ``__call__`` still wins (CPython does not touch the slot
    of a subclass defining the name); so does the native tp_call standing for it."""
    f = aj.compile(w1())
    want = slow(f, **W1_ARGS)
    monkeypatch.setattr(Compiled, "__call__", lambda self, **kw: "base")
    out, route = routed(f, lambda: f(**W1_ARGS))
    assert route == "native"
    assert_identical(out, want)
    plain = aj.compile(w1())
    plain.__class__ = Compiled
    assert plain(**W1_ARGS) == "base"


@needs_layout
def test_class_assignment_and_subclasses():
    f = aj.compile(w1())
    want = slow(f, **W1_ARGS)
    g = aj.compile(w1())
    g.__class__ = type(f)           # as with the builtin: the class's context runs
    assert_identical(g(**W1_ARGS), want)
    g.__class__ = Compiled
    assert_identical(g(**W1_ARGS), want)

    class Sub(type(f)):
        pass
    assert tp_call_of(Sub) != tp_call_of(type(f))   # slot_tp_call: the builtin found
    h = object.__new__(Sub)
    h.__dict__.update(f.__dict__)
    assert_identical(h(**W1_ARGS), want)


@needs_layout
def test_a_type_that_copied_the_slot_without_a_context_takes_the_generic_route():
    """A PyType_FromSpec subclass copies tp_call and has no tp_cache: emulated here."""
    f = aj.compile(w1())
    want = slow(f, **W1_ARGS)

    class Copy(type(f)):
        pass
    call_off = fastcall_type.layout()[0]
    fastcall_type._word(Copy, call_off).value = tp_call_of(type(f))
    h = object.__new__(Copy)
    h.__dict__.update(f.__dict__)
    assert_identical(h(**W1_ARGS), want)
    assert_identical(h(x=0.3, t=0.7, w=-0.4, b=0.1), want)
    with pytest.raises(TypeError):
        h(1.0)


@needs_layout
def test_copies_and_lifetime():
    f = aj.compile(w1())
    want = slow(f, **W1_ARGS)
    assert_identical(copy.copy(f)(**W1_ARGS), want)
    ctx = weakref.ref(type(f).__dict__["__call__"].__self__)
    tp = weakref.ref(type(f))
    del f
    gc.collect()
    assert ctx() is None and tp() is None       # the type's tp_cache released it


@needs_layout
def test_values_the_callers_dict_drops_mid_call_stay_alive():
    """A C caller's dict emptied by a GC callback at any allocation of the call (with a
    threshold of 1; the wrapper's tuple of results is one): no crash, each call answers
    right or, emptied before the wrapper read it, raises as the Python path; every value
    freed, none leaked."""
    f = aj.compile(w1())
    want = slow(f, **W1_ARGS)
    kw, refs, hits = {}, [], []

    def clear(phase, info):
        if phase == "start" and kw:
            kw.clear()
            hits.append(1)
    old = gc.get_threshold()
    gc.callbacks.append(clear)
    try:
        gc.set_threshold(1)
        for _ in range(200):
            kw.update(as_arrays(W1_ARGS))      # arrays only the dict holds
            refs.extend(weakref.ref(v) for v in kw.values())
            try:
                out = c_call(f, (), kw)
            except TypeError as e:      # emptied before the wrapper read it
                assert "missing" in str(e)
            else:
                assert_identical(out, want)
    finally:
        gc.callbacks.remove(clear)
        gc.set_threshold(*old)
    kw.clear()
    gc.collect()
    assert hits and all(r() is None for r in refs)      # freed once, none leaked


@needs_layout
def test_threads_and_fork():
    f = aj.compile(w1())
    rng = np.random.default_rng(5)
    jobs = [[dict(zip("xtwb", rng.standard_normal(4))) for _ in range(500)] for _ in range(4)]
    serial = [[slow(f, **kw) for kw in job] for job in jobs]
    from threadtools import run_at_once
    for got, want in zip(run_at_once(lambda i: [f(**kw) for kw in jobs[i]], 4), serial):
        for a, b in zip(got, want):
            assert_identical(a, b)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child: same answers through the native tp_call
        ok = type_call_installed(f) and all(
            all(np.array_equal(x, y) for x, y in zip(f(**kw), s))
            for kw, s in zip(jobs[0], serial[0]))
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"


if __name__ == "__main__" and sys.argv[1:] == ["child"]:
    _child()
