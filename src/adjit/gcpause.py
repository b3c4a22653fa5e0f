"""Python's cyclic garbage collector paused while adjit builds a graph or compiles one.

A compile allocates hundreds of thousands of small objects (nodes, sympy expressions,
llvmlite IR values) that stay alive until it ends.  The collector, triggered by those
allocations, scans them again and again: on a 5,000-op chain and its gradient it took
half of the compile.  :func:`paused` switches it off for the duration and back on after
the last overlapping compile (any thread) has ended, only if it was on to begin with; the
objects a compile leaves for it are collected at its next run as usual.
"""
from __future__ import annotations

import functools
import gc
import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused():
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def pausing(fn):
    """``fn`` run with the collector paused (a decorator)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with paused():
            return fn(*args, **kwargs)
    return run


def _after_fork_in_child() -> None:
    global _lock, _depth
    _lock = threading.Lock()
    if _depth and _was_enabled:
        gc.enable()
    _depth = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
