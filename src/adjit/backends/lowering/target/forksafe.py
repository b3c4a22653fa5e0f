"""Locks that survive ``fork()``.

A lock held by another thread when the process forks stays held forever in the child
(that thread does not exist there), so the child deadlocks on its first compile, bind or
call that takes it.  adjit's locks are therefore :class:`Lock` objects: after a fork the
child gives every one of them a fresh inner lock (``os.register_at_fork``).  What a lock
guarded is built on first use and published only once complete (the GEMM library, the
thread pool, the fast-call wrapper), so a child that forked during a build in another
thread finds nothing published and builds it again.

LLVM work needs more: a compile in another thread at the moment of the fork leaves LLVM's
own state (and llvmlite's process-wide lock) half-way through an operation in the child.
:func:`quiesce` therefore holds the target lock (which every LLVM operation of adjit runs
under) and llvmlite's lock across the fork itself: ``fork()`` waits for an in-flight
compile to finish, so no thread is inside LLVM when the child is made.
"""
from __future__ import annotations

import os
import threading
import weakref

_all: "weakref.WeakSet[Lock]" = weakref.WeakSet()


class Lock:
    """A ``threading.Lock`` (``reentrant=True``: ``RLock``) that a forked child gets
    fresh.  Use as a context manager or with ``acquire``/``release``."""

    __slots__ = ("_inner", "_make", "__weakref__")

    def __init__(self, reentrant: bool = False):
        self._make = threading.RLock if reentrant else threading.Lock
        self._inner = self._make()
        _all.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._inner.acquire(blocking, timeout)

    def release(self) -> None:
        self._inner.release()

    def __enter__(self):
        return self._inner.__enter__()

    def __exit__(self, *exc):
        return self._inner.__exit__(*exc)

    def _reset(self) -> None:
        self._inner = self._make()


def _llvmlite_lock():
    """llvmlite's process-wide RLock (every locked ``ffi.lib`` call takes it), or None."""
    try:
        from llvmlite.binding import ffi
        return ffi.lib._lock._lock
    except (ImportError, AttributeError):
        return None


_quiet: list = []       # the locks quiesce() holds across one fork


def quiesce(*locks) -> None:
    """Hold ``locks`` (then llvmlite's lock) across every fork, in this order."""
    held = []

    def before():
        for lk in (*locks, _llvmlite_lock()):
            if lk is not None:
                lk.acquire()
                held.append(lk)

    def after_in_parent():
        while held:
            held.pop().release()

    def after_in_child():
        # the forking thread holds them; in the child it is the only thread
        after_in_parent()
        for lk in list(_all):
            if lk not in locks:
                lk._reset()

    os.register_at_fork(before=before, after_in_parent=after_in_parent,
                        after_in_child=after_in_child)
