"""Fixtures shared by the ptx tests."""
import pytest


@pytest.fixture
def force(monkeypatch):
    """force(kind, S): every FP32/FP64 product runs that kernel of ptx/matmul.py ("tile64"
    or "big", K split S ways), at compile time and per call.  (test_ptx_mma_big.py has its
    own ``force`` for the tensor-core kernels.)"""
    from adjit.backends.ptx import matmul as mm

    def set_(kind, S=1):
        monkeypatch.setattr(mm, "choose", lambda *a, **k: (kind, S))
        monkeypatch.setattr(mm, "BIG_DTYPES", ("float32", "float64"))
    return set_
