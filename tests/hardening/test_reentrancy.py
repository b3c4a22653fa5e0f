"""A compiled function called again on the same thread while a call of it is in progress
(a signal handler, a collection's callbacks, an input's ``__array__``) gives both calls the
results they give alone, on every backend, and never corrupts memory or deadlocks.

The scenarios run in a child process (reentry_child.py): before the fix the llvm Python
path returned the nested call's values (or garbage) and then aborted with heap corruption,
the ptx runtime and the native route's priming deadlocked on their own lock.
"""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from isolation import describe_exit, records, run_child

BACKENDS = ["llvm", "ptx", "interp"]


def _run(scenario: str, backend: str) -> dict:
    proc = run_child(["reentry_child.py", scenario, backend], timeout=240)
    if proc.returncode != 0:
        pytest.fail(describe_exit(proc), pytrace=False)
    return [r for r in records(proc) if "summary" in r][0]["summary"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_signal_handler_at_every_line_of_a_call(backend):
    """SIGUSR1 sent at each line the outer call runs inside adjit, one outer call per line;
    the handler calls the function (Python path, native route, another Bound, the outer's
    Bound with another batch size)."""
    s = _run("trace", backend)
    assert s["n_mismatch"] == 0, s["mismatch"]
    assert s["nested"] > 100 and s["inside"] == s["nested"]


# (not interp: CPython 3.11's context-variable HAMT crashes when a collection's callback
# sets a context variable, which numpy's errstate in the interpreter does)
@pytest.mark.parametrize("backend", ["llvm", "ptx"])
def test_collection_callbacks_calling_the_function(backend):
    s = _run("gc", backend)
    assert s["n_mismatch"] == 0, s["mismatch"]
    assert s["nested"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_timer_signal_calling_the_function(backend):
    """SIGALRM every 50 us for 1.5 s of calls; handlers nest two deep."""
    s = _run("timer", backend)
    assert s["n_mismatch"] == 0, s["mismatch"]
    assert s["inside"] > 0


class CallsOnConversion:
    """An input object whose conversion to an array calls the compiled function."""

    def __init__(self, data, call):
        self.data, self.call, self.results = data, call, []

    def __array__(self, dtype=None, copy=None):
        self.results.append(self.call())
        return self.data if dtype is None else self.data.astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_call_from_an_inputs_array_method(backend):
    x, w = aj.input("x", (None, 3)), aj.param("w", (3,))
    L = aj.sum(aj.exp(x * w))
    outs = [L, *aj.grad(L, [w, x])]
    opts = {"ptx": {"emulate": True, "opt_level": 0}}.get(backend, {})
    f = aj.compile(outs, backend=backend, **opts)
    ref = aj.compile(outs, backend="interp")
    X, W = np.linspace(-1, 1, 6).reshape(2, 3), np.array([0.5, -2.0, 1.0])
    X2 = np.linspace(2, 0, 12).reshape(4, 3)
    g = f.bind(w=W)
    obj = CallsOnConversion(X, lambda: (f(x=X2, w=-W), g(x=X2.astype(np.float32))))
    got = f(x=obj, w=W)
    obj2 = CallsOnConversion(X.astype(np.float32), lambda: g(x=X2))
    got_bound = g(x=obj2)
    X2_32 = X2.astype(np.float32).astype(np.float64)
    want, want2, want3 = ref(x=X, w=W), ref(x=X2, w=-W), ref(x=X2_32, w=W)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for a, b in zip(got_bound, ref(x=X.astype(np.float32).astype(float), w=W)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    (inner, inner_bound), = obj.results
    for a, b in zip(inner, want2):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for a, b in zip(inner_bound, want3):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for a, b in zip(obj2.results[0], ref(x=X2, w=W)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
