"""Shared by the tests of the call paths: a spy on the checked Python path."""
from __future__ import annotations


class CountingBinder:
    """Wraps ``f._binder`` (or a Bound's ``_free``: ``attr``): counts the calls that reached
    the checked Python path."""

    def __init__(self, f, attr="_binder"):
        self.inner, self.calls = getattr(f, attr), 0
        setattr(f, attr, self)

    def bind(self, kwargs):
        self.calls += 1
        return self.inner.bind(kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)
