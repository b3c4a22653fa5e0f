"""Child side of test_reentrancy.py: a compiled function called again, on the same thread,
while a call of it is in progress.  ``python reentry_child.py SCENARIO BACKEND`` prints one
JSON record per outer call (and a summary line); a crash or hang fails the parent's test,
not the test run.

Scenarios (each nested call is made by a real trigger, at a point the outer call reaches):

Outer calls: the checked Python path (float32 data into a float64 model), the same through
a Bound, and the first call of a new Bound (on llvm its native route takes the Python path
once and primes a state).  Nested calls: the Python path, the native route (float64 data),
another Bound, and the Bound of the outer call with another batch size.

* ``trace``: a tracer counts the line events of every frame inside adjit during one outer
  call and, on the k-th (k = 0, 1, ... every line the call runs), sends SIGUSR1 to this
  process; the Python signal handler calls the function.
* ``gc``: ``gc.callbacks`` with a collection at every allocation (threshold 1): every
  collection inside the outer call calls the function (the hook a finalizer also has).
* ``timer``: SIGALRM every 50 us from ``setitimer`` while calls run in a loop.

Every result, outer and nested, is compared bit for bit with the same call made alone.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time

import numpy as np

import adjit as aj

ADJIT_DIR = os.path.dirname(os.path.abspath(aj.__file__))


def model():
    x, w = aj.input("x", (None, 4)), aj.param("w", (4,))
    y = aj.tanh(x * w)
    L = aj.sum(aj.sum(y * y, axis=1) + aj.mean(x @ aj.reshape(w, (4, 1))))
    return [aj.sum(y, axis=1), L, *aj.grad(L, [w])]


def compile_model(backend):
    opts = {"llvm": {"opt_level": 1}, "ptx": {"emulate": True, "opt_level": 0}}.get(backend, {})
    return aj.compile(model(), backend=backend, **opts)


class Calls:
    """The calls made: outer (Python path) and nested (three kinds), each with its alone result."""

    def __init__(self, f):
        rng = np.random.default_rng(7)
        self.f = f
        self.W = np.array([0.5, -1.25, 2.0, 0.375])
        self.X32 = rng.standard_normal((5, 4)).astype(np.float32)
        self.g1 = f.bind(w=self.W)
        self.g2 = f.bind(w=-2.0 * self.W)
        self.X64 = rng.standard_normal((6, 4))
        self.cur = f.bind(w=self.W)
        self.kinds = {
            "outer": lambda: self.f(x=self.X32, w=self.W),
            "outer_bound": lambda: self.g1(x=self.X32),
            "nested_python": lambda: self.f(x=np.full((5, 4), 0.75, np.float32), w=self.W * 3),
            "nested_native": lambda: self.f(x=np.linspace(-2, 2, 12).reshape(3, 4), w=self.W),
            "nested_bound": lambda: self.g2(x=np.linspace(1, -1, 20, dtype=np.float32)
                                            .reshape(5, 4)),
            # a new Bound's first call of a batch size: the native route primes a state
            "outer_prime": self.outer_prime,
            "nested_prime": lambda: self.cur(x=self.X64[:2]),
        }
        self.alone = {k: call() for k, call in self.kinds.items()}
        self.mismatch = []

    def outer_prime(self):
        self.cur = self.f.bind(w=self.W)
        return self.cur(x=self.X64)

    def check(self, kind, got, where):
        want = self.alone[kind]
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, want)):
            self.mismatch.append({"kind": kind, "where": where,
                                  "got": [np.asarray(a).tolist() for a in got][:2],
                                  "want": [np.asarray(b).tolist() for b in want][:2]})


def scenario_trace(calls):
    state = {"k": -1, "fire": None, "in_outer": False, "inside": 0, "n": 0, "fired": set()}
    nested_kinds = os.environ.get("KINDS", "nested_python,nested_native,nested_bound,nested_prime").split(",")

    def handler(signum, frame):
        kind = nested_kinds[state["n"] % len(nested_kinds)]
        state["n"] += 1
        state["inside"] += state["in_outer"]
        state["fired"].add(state["fire"])
        calls.check(kind, calls.kinds[kind](), state["fire"])

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(ADJIT_DIR):
            return None

        def local(fr, ev, a):
            if ev == "line" and state["fire"] is not None:
                state["k"] += 1
                if state["k"] == state["fire"]:
                    os.kill(os.getpid(), signal.SIGUSR1)
            return local
        return local

    signal.signal(signal.SIGUSR1, handler)
    for outer in ("outer", "outer_bound", "outer_prime"):
        state["fire"], state["k"] = -1, -1          # count the line events of one call
        sys.settrace(tracer)
        calls.kinds[outer]()
        sys.settrace(None)
        lines = state["k"] + 1
        for k in range(lines):
            state["fire"], state["k"], state["in_outer"] = k, -1, True
            sys.settrace(tracer)
            got = calls.kinds[outer]()
            sys.settrace(None)
            state["in_outer"] = False
            calls.check(outer, got, k)
        print(json.dumps({"outer": outer, "lines": lines,
                          "missed": sorted(set(range(lines)) - state["fired"])}), flush=True)
        state["fired"] = set()
    return {"nested": state["n"], "inside": state["inside"]}


def scenario_gc(calls):
    state = {"depth": 0, "n": 0, "in_outer": False}
    nested_kinds = os.environ.get("KINDS", "nested_python,nested_native,nested_bound,nested_prime").split(",")

    def callback(phase, info):
        if phase != "start" or not state["in_outer"] or state["depth"]:
            return
        state["depth"] += 1
        try:
            kind = nested_kinds[state["n"] % len(nested_kinds)]
            state["n"] += 1
            calls.check(kind, calls.kinds[kind](), "gc")
        finally:
            state["depth"] -= 1

    gc.callbacks.append(callback)
    old = gc.get_threshold()
    for outer in ("outer", "outer_bound", "outer_prime") * 5:
        gc.set_threshold(1)
        state["in_outer"] = True
        got = calls.kinds[outer]()
        state["in_outer"] = False
        gc.set_threshold(*old)
        calls.check(outer, got, "gc")
    gc.callbacks.remove(callback)
    return {"nested": state["n"], "inside": state["n"]}


def scenario_timer(calls):
    state = {"n": 0, "inside": 0, "in_outer": False, "depth": 0}
    nested_kinds = os.environ.get("KINDS", "nested_python,nested_native,nested_bound,nested_prime").split(",")

    def handler(signum, frame):     # nested calls two deep at most (a handler's call too)
        if state["depth"] >= 2:
            return
        state["depth"] += 1
        try:
            kind = nested_kinds[state["n"] % len(nested_kinds)]
            state["n"] += 1
            state["inside"] += state["in_outer"]
            calls.check(kind, calls.kinds[kind](), "timer")
        finally:
            state["depth"] -= 1

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 5e-5, 5e-5)
    end = time.monotonic() + 1.5
    try:
        while time.monotonic() < end and len(calls.mismatch) < 5:
            for outer in ("outer", "outer_bound", "outer_prime"):
                state["in_outer"] = True
                got = calls.kinds[outer]()
                state["in_outer"] = False
                calls.check(outer, got, "timer")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"nested": state["n"], "inside": state["inside"]}


def main(scenario, backend):
    calls = Calls(compile_model(backend))
    summary = globals()["scenario_" + scenario](calls)
    summary["mismatch"] = calls.mismatch[:5]
    summary["n_mismatch"] = len(calls.mismatch)
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
