"""Shared by the tests of the call paths: a spy on the checked Python path, and the records
of a child process (the fastcall tests feed hostile calls to native code there, so a crash
fails a test, not the run)."""
from __future__ import annotations

import json
import subprocess
import sys


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


def child_records(path: str, mode: str) -> tuple[dict, str | None]:
    """``({case: record}, crash)``: ``python path mode``'s ``{"case": ...}`` lines, and
    None or what ended the child early (its exit status, the case it had started, stderr)."""
    proc = subprocess.run([sys.executable, path, mode], capture_output=True, text=True,
                          timeout=300)
    recs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [r["start"] for r in recs if "start" in r]
    crash = None if proc.returncode == 0 else (
        f"exit {proc.returncode} during {started[-1] if started else '?'}: {proc.stderr[-2000:]}")
    return {r["case"]: r for r in recs if "case" in r}, crash
