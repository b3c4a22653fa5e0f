"""The native CPython entry of small all-scalar functions (backends/llvm/fastcall.py).

A function whose arguments and outputs are all 0-d gets a builtin ``__call__`` that runs
the native entry for the calls it can check itself (exact floats, numpy scalars, 0-d
arrays of the input's builtin dtype, aligned) and hands every other call to the checked
Python path.  Checked here: results bit for bit equal to the slow path (and close to the
interpreter), gradients against finite differences, every fallback case giving the slow
path's result or exception (in a child process: a crash fails cases, not the run),
eligibility, threads, refcounts and memory, return types and aliasing.

Run as a script (``python test_fastcall.py cases``) it prints one JSON line per argument
case: the child side of :func:`test_argument_case`.
"""
from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import adjit as aj
from adjit.compiled import Compiled

# tests/ holds calltools; child processes that run or import this file need it too
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from calltools import CountingBinder, child_records  # noqa: E402

LAM = 0.01


# -- models --------------------------------------------------------------------------------
def w1(dtype="float64"):
    """W1: z = w x + b, y = sigmoid(z), loss = 0.5 (y - t)^2 + lam/2 w^2; (loss, dw, db)."""
    x, t = aj.input("x", (), dtype), aj.input("t", (), dtype)
    w, b = aj.param("w", (), dtype), aj.param("b", (), dtype)
    loss = 0.5 * (aj.sigmoid(w * x + b) - t) ** 2 + (LAM / 2) * w ** 2
    return [loss, *aj.grad(loss, [w, b])]


def w1_reference(x, t, w, b):
    y = 1 / (1 + math.exp(-(w * x + b)))
    d = (y - t) * y * (1 - y)
    return 0.5 * (y - t) ** 2 + LAM / 2 * w * w, d * x + LAM * w, d


W1_ARGS = dict(x=0.3, t=0.7, w=-0.4, b=0.1)


def transcendental():
    a, c = aj.input("a", ()), aj.param("c", ())
    L = aj.tanh(a * c) + aj.log(aj.exp(c) + a * a) + aj.sqrt(c * c + 1.0) * aj.sin(a)
    return [L, *aj.grad(L, [a, c])]


def single_output():
    a = aj.input("a", ())
    return aj.softplus(a) * 3.0


def storage_classes():
    """Outputs that are an input, a constant, duplicates, a vector temporary reduced."""
    a, c = aj.input("a", ()), aj.param("c", ())
    v = aj.broadcast_to(a, (16,)) * aj.const(np.linspace(0.0, 1.0, 16))
    s = aj.sum(aj.tanh(v * c))
    return [a, aj.const(2.5), s, s, a * c, aj.max(v)]


def unused_input():
    """``x`` is an argument the optimized graph no longer reads (d(w x)/dw = x)."""
    x, w = aj.input("x", ()), aj.param("w", ())
    return aj.grad(w * x, w)


def mixed_dtypes():
    """A bool mask, an int64 count and a float32 scale next to float64 inputs."""
    m, k = aj.input("m", (), "bool"), aj.input("k", (), "int64")
    s, x = aj.param("s", (), "float32"), aj.input("x", ())
    y = aj.where(m, x * aj.cast(k, "float64"), -x) + aj.cast(s * s, "float64")
    return [y, s * 2.0]


def long_names():
    a, c = aj.input("input_alpha", ()), aj.param("param_gamma", ())
    return [a * c, aj.exp(c)]


MIXED_ARGS = dict(m=np.array(True), k=np.array(3), s=np.float32(1.5), x=0.25)

MODELS = {
    "w1": (w1, W1_ARGS),
    "w1_f32": (lambda: w1("float32"), {k: np.float32(v) for k, v in W1_ARGS.items()}),
    "transcendental": (transcendental, dict(a=0.7, c=-1.3)),
    "single_output": (single_output, dict(a=-2.0)),
    "storage_classes": (storage_classes, dict(a=0.5, c=2.0)),
    "unused_input": (unused_input, dict(x=1.25, w=3.0)),
    "mixed_dtypes": (mixed_dtypes, MIXED_ARGS),
    "long_names": (long_names, dict(input_alpha=1.5, param_gamma=-0.5)),
}


# -- helpers --------------------------------------------------------------------------------
def has_fastcall(f) -> bool:
    return isinstance(type(f).__dict__.get("__call__"), types.BuiltinFunctionType)


def slow(f, **kw):
    """The checked Python path, whatever ``f``'s class says."""
    return Compiled.__call__(f, **kw)


def as_arrays(kw):
    return {k: np.array(v, dtype=np.asarray(v).dtype) for k, v in kw.items()}


def seq(r):
    return list(r) if isinstance(r, tuple) else [r]


def assert_identical(got, want):
    """Same type, tuple length, and per array: exact type, dtype, shape, flags, bits."""
    assert type(got) is type(want)
    for g, w in zip(seq(got), seq(want), strict=True):
        assert type(g) is np.ndarray and type(w) is np.ndarray
        assert g.dtype == w.dtype and g.shape == w.shape == ()
        assert g.tobytes() == w.tobytes(), (g, w)
        for flag in ("c_contiguous", "f_contiguous", "owndata", "writeable", "aligned"):
            assert getattr(g.flags, flag) == getattr(w.flags, flag), flag
        assert g.base is None


@pytest.mark.parametrize("name", list(MODELS))
def test_results_equal_slow_path_and_interpreter(name):
    build, args = MODELS[name]
    f = aj.compile(build())
    assert has_fastcall(f)
    spy = CountingBinder(f)
    for kw in (args, as_arrays(args)):
        before = spy.calls
        got = f(**kw)
        assert spy.calls == before, "the call was not handled natively"
        assert_identical(got, slow(f, **kw))
        want = aj.compile(build(), backend="interp")(**kw)
        assert type(got) is type(want)
        for g, w in zip(seq(got), seq(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6 if g.dtype == np.float32 else 1e-13)
            assert g.dtype == w.dtype


def test_w1_matches_numpy_reference_and_finite_differences():
    f = aj.compile(w1())
    rng = np.random.default_rng(0)
    for _ in range(20):
        kw = dict(zip("xtwb", rng.standard_normal(4)))
        loss, dw, db = f(**kw)
        np.testing.assert_allclose([loss, dw, db], w1_reference(**kw), rtol=1e-12, atol=1e-15)
        h = 1e-6
        for name, g in (("w", dw), ("b", db)):
            up, down = dict(kw), dict(kw)
            up[name] += h
            down[name] -= h
            fd = (float(f(**up)[0]) - float(f(**down)[0])) / (2 * h)
            assert abs(fd - g) <= 1e-7 * (abs(fd) + abs(g)) + 1e-10, (name, fd, g)


def test_transcendental_model_passes_check_grads():
    a, c = aj.input("a", ()), aj.param("c", ())
    L = aj.tanh(a * c) + aj.log(aj.exp(c) + a * a) + aj.sqrt(c * c + 1.0) * aj.sin(a)
    aj.check_grads(L, [a, c], {"a": np.array(0.7), "c": np.array(-1.3)})
    f = aj.compile([L, *aj.grad(L, [a, c])])
    assert has_fastcall(f)
    _, ga, gc = f(a=0.7, c=-1.3)
    h = 1e-6
    for g, (up, down) in ((ga, (dict(a=0.7 + h, c=-1.3), dict(a=0.7 - h, c=-1.3))),
                          (gc, (dict(a=0.7, c=-1.3 + h), dict(a=0.7, c=-1.3 - h)))):
        fd = (float(f(**up)[0]) - float(f(**down)[0])) / (2 * h)
        assert abs(fd - g) <= 1e-7 * (abs(fd) + abs(g)), (fd, g)


def test_zero_argument_function():
    f = aj.compile([aj.const(2.0) * 3.0, aj.exp(aj.const(1.0))])
    assert has_fastcall(f)
    assert_identical(f(), slow(f))
    with pytest.raises(TypeError):
        f(x=1.0)


def test_results_never_alias_inputs_each_other_or_earlier_results():
    build, args = MODELS["storage_classes"]
    f = aj.compile(build())
    kw = as_arrays(args)
    first, second = f(**kw), f(**kw)
    for i, r in enumerate(first):
        assert r.flags.owndata and r.flags.writeable
        for v in kw.values():
            assert not np.shares_memory(r, v)
        for j, other in enumerate(first + second):
            if other is not r:
                assert not np.shares_memory(r, other), (i, j)
    keep = [r.copy() for r in first]
    for r in second:
        r[...] = -123.0
    f(a=9.0, c=-1.0)
    for r, k in zip(first, keep):
        assert r.tobytes() == k.tobytes()
    assert kw["a"] == args["a"] and kw["c"] == args["c"]


# -- argument cases (run in a child process) ------------------------------------------------
class SubArray(np.ndarray):
    pass


class SubFloat(float):
    pass


def _unaligned(value, dtype="f8"):
    buf = bytearray(np.dtype(dtype).itemsize + 1)
    a = np.ndarray((), dtype, buf, 1)
    a[...] = value
    assert not a.flags.aligned
    return a


def _read_only(value):
    a = np.array(value)
    a.setflags(write=False)
    return a


def _equal_descr_array(value):
    """A float64 array whose dtype object is equal to, but not, the builtin one."""
    a = np.array(value).view(np.dtype("f8").newbyteorder("="))
    assert a.dtype == np.float64 and a.dtype is not np.dtype(np.float64)
    return a


# (name, model, arguments changed from the model's defaults or "call", route)
# route: "native" (no Python path), "fallback" (the checked path answers), "error" (an
# exception before the checked path's binder is reached)
CASES = [
    ("floats", "w1", {}, "native"),
    ("numpy float64 scalars", "w1", {k: np.float64(v) for k, v in W1_ARGS.items()}, "native"),
    ("0-d arrays", "w1", "arrays", "native"),
    ("read-only 0-d array", "w1", {"x": _read_only(0.3)}, "native"),
    ("0-d array views", "w1", {"x": np.array([0.3, 1.0])[0:1].reshape(())}, "native"),
    ("keywords in another order", "w1", "reordered", "native"),
    ("non-interned keyword names", "long_names", "fresh_names", "native"),
    ("non-interned unknown name", "long_names", "fresh_unknown", "fallback"),
    ("float32 scalars for a float32 model", "w1_f32", {}, "native"),
    ("int for a float input", "w1", {"x": 1}, "fallback"),
    ("bool for a float input", "w1", {"w": True}, "fallback"),
    ("huge int", "w1", {"b": 10 ** 400}, "fallback"),
    ("list", "w1", {"x": [0.3]}, "fallback"),
    ("nested empty list", "w1", {"x": []}, "fallback"),
    ("numpy float32 scalar for float64", "w1", {"x": np.float32(0.3)}, "fallback"),
    ("numpy int64 scalar", "w1", {"t": np.int64(1)}, "fallback"),
    ("numpy longdouble scalar", "w1", {"t": np.longdouble(0.7)}, "fallback"),
    ("0-d float32 array for float64", "w1", {"x": np.array(0.3, np.float32)}, "fallback"),
    ("0-d int array", "w1", {"x": np.array(3)}, "fallback"),
    ("0-d big-endian array", "w1", {"w": np.array(-0.4, ">f8")}, "fallback"),
    ("0-d unaligned array", "w1", {"b": _unaligned(0.1)}, "fallback"),
    ("0-d array with an equal non-builtin dtype", "w1", {"x": _equal_descr_array(0.3)},
     "fallback"),
    ("0-d ndarray subclass", "w1", {"x": np.array(0.3).view(SubArray)}, "fallback"),
    ("0-d masked array", "w1", {"x": np.ma.masked_array(0.3)}, "fallback"),
    ("float subclass", "w1", {"t": SubFloat(0.7)}, "fallback"),
    ("1-element vector", "w1", {"x": np.array([0.3])}, "fallback"),
    ("matrix", "w1", {"x": np.ones((1, 1))}, "fallback"),
    ("complex", "w1", {"x": 0.3 + 1j}, "fallback"),
    ("0-d complex array", "w1", {"x": np.array(0.3 + 0j)}, "fallback"),
    ("0-d object array", "w1", {"x": np.array(0.3, object)}, "fallback"),
    ("string", "w1", {"x": "0.3"}, "fallback"),
    ("None", "w1", {"x": None}, "fallback"),
    ("NaN and inf", "w1", {"x": float("nan"), "w": float("inf")}, "native"),
    ("missing keyword", "w1", "missing", "fallback"),
    ("unknown keyword", "w1", "unknown", "fallback"),
    ("extra keyword", "w1", "extra", "fallback"),
    ("positional argument", "w1", "positional", "error"),
    ("only positional", "w1", "only_positional", "error"),
    ("no arguments", "w1", "none", "fallback"),
    ("python float for a float32 input", "w1_f32", {"x": 0.3}, "fallback"),
    ("numpy float64 for a float32 input", "w1_f32", {"x": np.float64(0.3)}, "fallback"),
    ("0-d float64 array for a float32 input", "w1_f32", {"x": np.array(0.3)}, "fallback"),
    ("bool mask and int count as 0-d arrays", "mixed_dtypes", {}, "native"),
    ("python bool for a bool mask", "mixed_dtypes", {"m": True}, "fallback"),
    ("python int for an int64 input", "mixed_dtypes", {"k": 3}, "fallback"),
    ("int32 0-d array for an int64 input", "mixed_dtypes", {"k": np.array(3, np.int32)},
     "fallback"),
    ("float 0-d array for a bool mask", "mixed_dtypes", {"m": np.array(1.0)}, "fallback"),
    ("unused input given a wrong type", "unused_input", {"x": "a"}, "fallback"),
    ("unused input given a float", "unused_input", {"x": 2.0}, "native"),
]


def _call(f, model, change):
    """Call ``f`` with the case's arguments; (outcome record, route taken)."""
    base = dict(MODELS[model][1])
    args, kw = (), base
    if change == "arrays":
        kw = as_arrays(base)
    elif change == "reordered":
        kw = dict(reversed(list(base.items())))
    elif change in ("fresh_names", "fresh_unknown"):
        kw = {k[:1] + k[1:]: v for k, v in base.items()}     # equal strings, new objects
        assert all(k not in base.keys() or all(k is not b for b in base) for k in kw)
        if change == "fresh_unknown":
            kw = {k[:1] + k[1:] + "x" * (k[0] == "p"): v for k, v in base.items()}
    elif change == "missing":
        kw = dict(list(base.items())[1:])
    elif change == "unknown":
        kw = dict(list(base.items())[1:], zz=1.0)
    elif change == "extra":
        kw = dict(base, zz=1.0)
    elif change == "positional":
        args = (1.0,)
    elif change == "only_positional":
        args, kw = tuple(base.values()), {}
    elif change == "none":
        kw = {}
    else:
        kw = {**base, **change}
    spy = CountingBinder(f)
    try:
        try:
            out = f(*args, **kw)
        except Exception as e:  # noqa: BLE001 - compared with the slow path's
            fast = {"error": type(e).__name__, "message": str(e)}
        else:
            fast = {"type": type(out).__name__, "arrays": [
                [type(a).__name__, a.dtype.str, a.shape, a.tobytes().hex(), a.flags.owndata,
                 a.flags.writeable] for a in seq(out)]}
        route = "fallback" if spy.calls else "native"
    finally:
        f._binder = spy.inner
    try:
        out = Compiled.__call__(f, *args, **kw)
    except Exception as e:  # noqa: BLE001
        slow_rec = {"error": type(e).__name__, "message": str(e)}
    else:
        slow_rec = {"type": type(out).__name__, "arrays": [
            [type(a).__name__, a.dtype.str, a.shape, a.tobytes().hex(), a.flags.owndata,
             a.flags.writeable] for a in seq(out)]}
    return fast, slow_rec, route


def _child_cases():
    fns = {name: aj.compile(build()) for name, (build, _) in MODELS.items()}
    for name, model, change, _ in CASES:
        print(json.dumps({"start": name}), flush=True)
        fast, slow_rec, route = _call(fns[model], model, change)
        print(json.dumps({"case": name, "fast": fast, "slow": slow_rec, "route": route,
                          "fastcall": has_fastcall(fns[model])}, default=str), flush=True)


@pytest.fixture(scope="module")
def case_records():
    return child_records(__file__, "cases")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_argument_case(case_records, case):
    by_case, crash = case_records
    name, _, _, route = case
    assert name in by_case, f"no record: the child died ({crash})"
    rec = by_case[name]
    assert rec["fastcall"]
    assert rec["fast"] == rec["slow"]
    if route == "error":
        assert "error" in rec["fast"]
    else:
        assert rec["route"] == route


# -- eligibility -------------------------------------------------------------------------------
def _batch_model():
    x, w = aj.input("x", (None,)), aj.param("w", ())
    return aj.sum(x * w), dict(x=np.arange(3.0), w=2.0)


def _matmul_model():
    x, w = aj.input("x", ()), aj.param("w", ())
    m = aj.reshape(x, (1, 1)) @ aj.reshape(w, (1, 1))
    return aj.sum(m), dict(x=3.0, w=0.5)


def _vector_param_model():
    x, w = aj.input("x", ()), aj.param("w", (2,))
    return aj.sum(x * w), dict(x=3.0, w=np.array([1.0, 2.0]))


def _vector_output_model():
    x = aj.input("x", ())
    return aj.broadcast_to(x, (3,)) * 2.0, dict(x=3.0)


def _big_arena_model():
    x = aj.input("x", ())
    v = aj.tanh(aj.broadcast_to(x, (1000,)) * aj.const(np.linspace(0, 1, 1000)))
    # v is read twice, so it is stored (a step read by one reduction only is computed
    # inside it and needs no buffer)
    return aj.sum(v * v) + aj.max(v), dict(x=0.5)


@pytest.mark.parametrize("build,options", [
    (lambda: (single_output(), dict(a=1.0)), {"check_nans": True}),
    (lambda: (single_output(), dict(a=1.0)), {"profile": True}),
    (lambda: (single_output(), dict(a=1.0)), {"backend": "interp"}),
], ids=["check_nans", "profile", "interp"])
def test_ineligible_functions_keep_the_python_path(build, options):
    out, kw = build()
    f = aj.compile(out, **options)
    assert not has_fastcall(f)
    want = aj.compile(out, backend="interp")(**kw)
    np.testing.assert_allclose(f(**kw), want, rtol=1e-12)


@pytest.mark.parametrize("build", [_batch_model, _matmul_model, _vector_param_model,
                                   _vector_output_model, _big_arena_model],
                         ids=["batch", "matmul", "vector_param", "vector_output", "big_arena"])
def test_array_functions_take_the_primed_route(build):
    """Not all-scalar (or too big for the stack): the primed-state route
    (test_fastcall_arrays.py), with the same results as the Python path."""
    from adjit.backends.llvm import fastcall
    out, kw = build()
    f = aj.compile(out)
    assert has_fastcall(f) and fastcall._mode(f._impl) == "primed"
    want = aj.compile(out, backend="interp")(**kw)
    for _ in range(3):      # the first call primes the state, the next ones use it
        np.testing.assert_allclose(f(**kw), want, rtol=1e-12)


def test_updates_run_natively_in_place_and_refuse_a_float():
    w, x = aj.param("w", ()), aj.input("x", ())
    L = (w * x - 1.0) ** 2
    f = aj.compile(L, updates={w: w - 0.1 * aj.grad(L, w)})
    assert has_fastcall(f)
    counter = CountingBinder(f)
    W = np.array(2.0)
    assert f(w=W, x=1.0) == 1.0 and counter.calls == 0      # the stack route
    assert W == 2.0 - 0.1 * 2 * (2.0 - 1.0)
    with pytest.raises(ValueError, match="'w' is updated in place"):
        f(w=2.0, x=1.0)         # a float has no buffer to write: the Python path says so
    assert counter.calls == 1


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("ADJIT_FASTCALL", "0")
    f = aj.compile(w1())
    assert not has_fastcall(f)
    assert_identical(f(**W1_ARGS), slow(f, **W1_ARGS))


def test_one_wrapper_serves_every_model():
    from adjit.backends.llvm import fastcall
    a, b = aj.compile(w1()), aj.compile(transcendental())
    assert has_fastcall(a) and has_fastcall(b)
    assert fastcall._wrapper is not None
    ir_text = fastcall._wrapper.llvm_ir
    assert "adjit_entry" not in ir_text and "0x" not in ir_text   # no model, no address


def test_bound_functions_are_unaffected():
    f = aj.compile(w1())
    g = f.bind(w=-0.4, b=0.1)
    assert_identical(g(x=0.3, t=0.7), f(**W1_ARGS))


# -- threads, refcounts, memory -------------------------------------------------------------
def test_eight_threads_match_serial_calls():
    f = aj.compile(w1())
    rng = np.random.default_rng(3)
    jobs = [[dict(zip("xtwb", rng.standard_normal(4))) for _ in range(2000)] for _ in range(8)]
    jobs = [[as_arrays(kw) if k % 2 else kw for k, kw in enumerate(job)] for job in jobs]
    serial = [[slow(f, **kw) for kw in job] for job in jobs]
    from threadtools import run_at_once      # (tests/ is on the path under pytest)
    got = run_at_once(lambda i: [f(**kw) for kw in jobs[i]], 8)
    for g, s in zip(got, serial):
        for a, b in zip(g, s):
            assert_identical(a, b)


def test_refcounts_are_unchanged_by_calls():
    """Inputs, dtype objects, names and the function itself: same counts after 2000 calls
    on each route (native, fallback, fallback that raises)."""
    f = aj.compile(w1())
    kw = as_arrays(W1_ARGS)
    floats = dict(W1_ARGS)
    bad = dict(W1_ARGS, x="nope")
    conv = dict(W1_ARGS, x=1)
    watched = [*kw.values(), *floats.values(), np.dtype(np.float64), f, type(f).__call__,
               *[k for k in kw]]
    f(**kw), f(**floats), f(**conv)
    gc.collect()     # earlier tests' garbage, freed mid-loop, would move the dtype's count
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(2000):
        f(**kw)
        f(**floats)
        f(**conv)
        with pytest.raises(aj.DTypeError):
            f(**bad)
        with pytest.raises(TypeError):
            f(1.0)
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == before


LEAK_CHILD = r"""
import gc, json, os, sys, tracemalloc
import numpy as np
sys.path.insert(0, {here!r})
from test_fastcall import w1, W1_ARGS, as_arrays, has_fastcall
import adjit as aj
f = aj.compile(w1())
assert has_fastcall(f)
kw, conv = as_arrays(W1_ARGS), dict(W1_ARGS, x=1)
def step(i):
    f(**kw); f(**W1_ARGS)
    if i % 10 == 0:
        f(**conv)
        try:
            f(**dict(W1_ARGS, x="bad"))
        except aj.DTypeError:
            pass
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
for i in range(20000):
    step(i)
gc.collect(); r0 = rss()
for i in range(100000):
    step(i)
gc.collect(); r1 = rss()
tracemalloc.start()
for i in range(2000):
    step(i)
gc.collect(); t0 = tracemalloc.get_traced_memory()[0]
for i in range(20000):
    step(i)
gc.collect(); t1 = tracemalloc.get_traced_memory()[0]
print(json.dumps({{"rss_growth": r1 - r0, "traced_growth": t1 - t0}}))
"""


@pytest.mark.slow
def test_memory_stays_flat_over_many_calls():
    code = LEAK_CHILD.format(here=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rec["rss_growth"] < 2 * 2**20, rec       # 2e5+ calls: < 10 bytes per call
    assert rec["traced_growth"] < 64 * 2**10, rec    # not one object per call kept


if __name__ == "__main__" and sys.argv[1:] == ["cases"]:
    _child_cases()
