"""Fixtures shared by test modules."""
import pytest


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty adjit disk cache for this test (the cache switched on)."""
    d = tmp_path / "adjit-cache"
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(d))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    return d
