"""Fixtures shared by test modules.

The whole run uses a private adjit disk cache (a temporary directory made when pytest
starts and removed when it ends), so the suite never reads from or writes into the
user's real ``~/.cache/adjit``; child processes started by tests inherit it.
"""
import os
import shutil
import tempfile

import pytest

_SAVED = {}


def pytest_configure(config):
    """Before collection (modules may compile at import): point adjit at a session cache.

    On a Python/numpy pair the native fast-call entry was not tested with, users get the
    checked Python path; the suite instead forces the native entry (its layout probes
    still decide), so its tests show whether the pair can join ``fastcall_probe.TESTED``.
    """
    _SAVED["dir"] = tempfile.mkdtemp(prefix="adjit-test-cache-")
    _SAVED["env"] = os.environ.get("ADJIT_CACHE_DIR")
    os.environ["ADJIT_CACHE_DIR"] = _SAVED["dir"]
    from adjit.backends.llvm import fastcall_probe
    if "ADJIT_FASTCALL" not in os.environ and fastcall_probe.versions() not in fastcall_probe.TESTED:
        os.environ["ADJIT_FASTCALL"] = "force"


def pytest_unconfigure(config):
    if "dir" not in _SAVED:
        return
    if _SAVED["env"] is None:
        os.environ.pop("ADJIT_CACHE_DIR", None)
    else:
        os.environ["ADJIT_CACHE_DIR"] = _SAVED["env"]
    shutil.rmtree(_SAVED.pop("dir"), ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir():
    """The session's adjit cache directory (ADJIT_CACHE_DIR for the whole run)."""
    os.environ["ADJIT_CACHE_DIR"] = _SAVED["dir"]
    return _SAVED["dir"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty adjit disk cache for this test (the cache switched on)."""
    d = tmp_path / "adjit-cache"
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(d))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    return d
