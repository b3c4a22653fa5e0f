"""Inline small products (backends/llvm/smallmm.py) against the interpreter."""
import itertools

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm.smallmm import is_small

SHAPES = [(None, 32, 32), (None, 7, 5), (3, None, 4), (5, 6, None), (4, 4, 4), (None, 1, 3)]


@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("ta,tb", list(itertools.product([0, 1], [0, 1])))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_small_products_match_the_interpreter(M, K, N, ta, tb, dtype):
    assert is_small(M, N, K)
    rng = np.random.default_rng(0)
    sa, sb = ((K, M) if ta else (M, K)), ((N, K) if tb else (K, N))
    A, B = aj.input("A", sa, dtype=dtype), aj.input("B", sb, dtype=dtype)
    y = (A.T if ta else A) @ (B.T if tb else B)      # transposes read in place (views)
    f = aj.compile(y, opt_level=1, cache=False)
    ref = aj.compile(y, backend="interp")
    for batch in (0, 1, 9, 33):
        An = rng.normal(size=[batch if d is None else d for d in sa]).astype(dtype)
        Bn = rng.normal(size=[batch if d is None else d for d in sb]).astype(dtype)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(f(A=An, B=Bn), ref(A=An, B=Bn), rtol=tol, atol=tol)


def test_large_products_still_use_the_gemm():
    assert not is_small(None, 128, 64)        # 64 x 128 weights: the packed GEMM
    assert not is_small(64, 64, 64)
    assert not is_small(None, None, 8)        # two batch dims: no static bound
    x = aj.input("x", (None, 64))
    W = aj.param("W", (64, 128))
    f = aj.compile(x @ W, opt_level=1)
    assert "adjit_gemm_f64" in f.llvm_ir
    g = aj.compile(x @ aj.param("V", (64, 8)), opt_level=1)
    assert "adjit_gemm_f64" not in g.llvm_ir
