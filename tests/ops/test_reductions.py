"""min, prod, var, std, argmax, argmin (and keepdims on sum/max/mean): numpy references
over every axis form, gradients against finite differences (prod with zeros in the slice),
NaN/inf/ties, llvm and the ptx emulation against the interpreter (batch 0 and 1, serial and
block reductions), ptxas, and the Node methods."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx")]

import adjit as aj  # noqa: E402
from gradtools import check_model, run  # noqa: E402
from ptx_helpers import assert_close, compare, emulated  # noqa: E402

RNG = np.random.default_rng(15)
AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]

NUMPY = {"min": np.min, "prod": np.prod, "sum": np.sum, "max": np.max, "mean": np.mean,
         "var": np.var, "std": np.std}


def _fn(name):
    return getattr(aj, name)


# --- forward against numpy, every axis form, keepdims --------------------------------------
@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_forward_matches_numpy(name, axis, keepdims):
    x = RNG.standard_normal((3, 4, 2))
    got = run(_fn(name)(aj.input("x", (3, 4, 2)), axis=axis, keepdims=keepdims), x=x)
    want = NUMPY[name](x, axis=axis, keepdims=keepdims)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("name", ["var", "std"])
def test_ddof_and_the_batch_axis(name, ddof):
    x = RNG.standard_normal((5, 3))
    node = _fn(name)(aj.input("x", (None, 3)), axis=0, ddof=ddof)
    np.testing.assert_allclose(run(node, x=x), NUMPY[name](x, axis=0, ddof=ddof), rtol=1e-13)


@pytest.mark.parametrize("backend", [dict(backend="interp"), dict(backend="llvm", cache=False),
                                     dict(backend="ptx", emulate=True, cache=False)])
@pytest.mark.parametrize("name", ["var", "std"])
def test_ddof_at_least_the_count_divides_by_zero(name, backend):
    """Found by the fuzzer: numpy divides by max(n - ddof, 0), so ddof >= n gives NaN (a
    zero sum of squares) or inf, never the -0.0 or negative variance of dividing by
    n - ddof < 0: batch 0 with ddof 1, one row with ddof 2, two rows with ddof 3."""
    rng = np.random.default_rng(7)     # (its own: the module's RNG feeds later tests)
    x = aj.input("x", (None, 3))
    for ddof in (1, 2, 3):
        f = aj.compile(_fn(name)(x, axis=0, ddof=ddof), **backend)
        for rows in range(ddof + 1):
            v = rng.standard_normal((rows, 3))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = NUMPY[name](v, axis=0, ddof=ddof)
            np.testing.assert_array_equal(f(x=v), want, err_msg=f"ddof {ddof}, {rows} rows")
    y, v = aj.input("y", (2, 3)), rng.standard_normal((2, 3))    # a static axis
    v[:, 0] = 1.0                                                   # a zero sum of squares
    for ddof in (2, 3):
        f = aj.compile(_fn(name)(y, axis=0, ddof=ddof), **backend)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_array_equal(f(y=v), NUMPY[name](v, axis=0, ddof=ddof))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_arg_matches_numpy(name, axis, keepdims):
    x = RNG.integers(-2, 3, size=(4, 5)).astype("float64")   # many ties
    x[1, 3], x[2, 0], x[2, 4], x[3, 1] = np.nan, np.inf, np.nan, -np.inf
    node = _fn(name)(aj.input("x", (4, 5)), axis=axis, keepdims=keepdims)
    assert node.dtype == "int64"
    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(run(node, x=x), want)


# --- gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["min", "prod", "var", "std"])
@pytest.mark.parametrize("axis", [None, 1, (0, 2)])
def test_gradients(name, axis):
    x = RNG.uniform(0.5, 1.5, size=(3, 4, 2)) * RNG.choice([-1, 1], size=(3, 4, 2))
    check_model(lambda x: _fn(name)(x, axis=axis), lambda x: NUMPY[name](x, axis=axis),
                {"x": x}, {"x": (3, 4, 2)})


@pytest.mark.parametrize("zeros", [1, 2, 3])
def test_prod_gradient_with_zeros_in_the_slice(zeros):
    x = RNG.uniform(0.5, 2.0, size=(3, 5))
    x[0, :zeros] = 0.0                  # row 0 holds `zeros` zeros, row 1 one, row 2 none
    x[1, 2] = 0.0
    check_model(lambda x: aj.prod(x, axis=1), lambda x: np.prod(x, axis=1),
                {"x": x}, {"x": (3, 5)})
    # exactly the product of the others, with no NaN or inf
    x_ = aj.input("x", (3, 5))
    g = run(aj.grad(aj.sum(aj.prod(x_, axis=1)), x_), x=x)
    others = np.array([[np.prod(np.delete(row, j)) for j in range(5)] for row in x])
    np.testing.assert_allclose(g, others, rtol=1e-14)
    assert np.isfinite(g).all()


def test_prod_second_order():
    x = RNG.uniform(0.5, 1.5, size=(2, 4))
    x[0, 1] = 0.0

    def ref(x):
        return np.array([[np.prod(np.delete(r, j)) for j in range(4)] for r in x])

    check_model(lambda x: aj.grad(aj.sum(aj.prod(x, axis=1)), x), ref, {"x": x}, {"x": (2, 4)})


def test_min_ties_share_the_gradient():
    x_ = aj.input("x", (2, 4))
    g = run(aj.grad(aj.sum(aj.min(x_, axis=1)), x_),
            x=np.array([[1.0, -2.0, -2.0, 3.0], [0.0, 0.0, 0.0, 5.0]]))
    np.testing.assert_array_equal(g, [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]])


def test_argmax_has_no_gradient():
    x = aj.input("x", (3,))
    loss = aj.sum(x * aj.cast(aj.argmax(x), "float64"))
    np.testing.assert_array_equal(run(aj.grad(loss, x), x=np.array([1.0, 3.0, 2.0])), [1, 1, 1])


# --- backends: llvm and the ptx emulation against the interpreter ----------------------------
def _model(dtype, r):
    x = aj.input("x", (None, r), dtype)
    xi = aj.input("k", (None, r), "int32")
    outs = [aj.min(x, axis=1), aj.prod(x, axis=1), aj.var(x, axis=1, ddof=1), aj.std(x),
            aj.min(x, axis=0, keepdims=True), aj.prod(x, axis=0), aj.min(x),
            aj.argmax(x, axis=1), aj.argmin(x, axis=0), aj.argmax(x), aj.argmin(xi, axis=1),
            aj.argmax(xi), x.min(axis=1), x.argmax(axis=1)]
    loss = aj.sum(aj.min(x, axis=1)) + aj.sum(aj.prod(x, axis=1)) + aj.std(x)
    return outs + [loss, aj.grad(loss, x)]


def _args(dtype, batch, r):
    x = RNG.choice(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, -0.5], dtype), size=(batch, r))
    if batch > 2:
        x[0, 1], x[1, 0], x[2, :2] = np.nan, np.inf, -np.inf
    return {"x": x, "k": RNG.integers(-3, 3, size=(batch, r)).astype("int32")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("r", [5, 300])          # serial and block reductions on ptx
def test_backends_agree(dtype, r):
    outs = _model(dtype, r)
    f_llvm, f_ptx = aj.compile(outs, backend="llvm"), emulated(outs)
    for batch in (6, 1, 0):
        args = _args(dtype, batch, r)
        with np.errstate(all="ignore"):
            want = compare(f_ptx, outs, args, dtype)
        for k, (g, w) in enumerate(zip(f_llvm(**args), want)):
            if np.asarray(w).dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=1e-5 if dtype == "float32" else 1e-12,
                                           equal_nan=True, err_msg=f"output {k}")
            else:
                assert_close(g, w, dtype, what=f"llvm output {k}, batch {batch}")


def test_ptxas_accepts_the_kernels():
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import ptxas_path
    if ptxas_path() is None:
        pytest.skip("ptxas (CUDA toolkit) is not on the PATH")
    for dtype, r in (("float32", 300), ("float64", 5)):
        f = aj.compile(_model(dtype, r), backend="ptx")
        for arch in ("sm_80", "sm_90"):
            assemble(f.ptx_for(arch), arch)


def test_declaration_errors():
    x = aj.input("x", (3, 0))
    with pytest.raises(aj.ShapeError, match="empty sequence"):
        aj.argmax(x, axis=1)
    with pytest.raises(TypeError, match="axis must be an int"):
        aj.argmax(aj.input("y", (2, 2)), axis=(0, 1))
    with pytest.raises(aj.DTypeError, match="float or integer"):
        aj.argmax(aj.input("b", (2,), "bool"))
    with pytest.raises(aj.ShapeError, match="out of range"):
        aj.min(aj.input("z", (2,)), axis=1)
