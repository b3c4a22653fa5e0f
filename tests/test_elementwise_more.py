"""The front-end functions of the new elementwise ops beyond the generated tables: the logical
operators and their errors, parameters given as numbers or nodes, clip's optional bounds,
gelu's variants, round's ties, and the native backends on the special values."""
import numpy as np
import pytest

import adjit as aj
from gradtools import check_model, run


def test_logical_functions_and_operators():
    p, q = aj.input("p", (4,), "bool"), aj.input("q", (4,), "bool")
    P, Q = np.array([True, True, False, False]), np.array([True, False, True, False])
    for fn, op, ref in ((aj.logical_and, lambda a, b: a & b, np.logical_and),
                        (aj.logical_or, lambda a, b: a | b, np.logical_or),
                        (aj.logical_xor, lambda a, b: a ^ b, np.logical_xor)):
        for out in (fn(p, q), op(p, q), op(p, True), op(True, q)):
            assert out.dtype == "bool"
        for backend in ("interp", "llvm"):
            got = aj.compile([fn(p, q), op(p, q), op(p, True)], backend=backend)(p=P, q=Q)
            for g, w in zip(got, (ref(P, Q), ref(P, Q), ref(P, True))):
                np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(run(~p, p=P), ~P)
    np.testing.assert_array_equal(run(aj.logical_not(p), p=P), ~P)
    np.testing.assert_array_equal(run((p & q) | ~(p ^ q), p=P, q=Q), (P & Q) | ~(P ^ Q))


def test_logical_ops_refuse_numbers():
    x, p = aj.input("x", (3,)), aj.input("p", (3,), "bool")
    for bad in (lambda: ~x, lambda: x & p, lambda: p | 1.0, lambda: p ^ x,
                lambda: aj.logical_and(x, x), lambda: aj.logical_not(x)):
        with pytest.raises(aj.DTypeError, match="x|1.0"):
            bad()
    with pytest.raises(aj.DTypeError, match="cannot mix bool"):
        aj.logical_or(x > 0, aj.input("y", (3,)) + 0.0)


def test_parameters_as_numbers_and_nodes():
    X = np.array([-3.0, -0.5, 0.25, 2.0])

    def torch_leaky(x, s):
        return np.where(x > 0, x, s * x)
    check_model(lambda x: aj.leaky_relu(x), lambda x: torch_leaky(x, 0.01), {"x": X}, {"x": (4,)})
    check_model(lambda x, s: aj.leaky_relu(x, s), torch_leaky,
                {"x": X, "s": np.array(0.2)}, {"x": (4,), "s": ()})          # PReLU
    check_model(lambda x: aj.elu(x, 0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)),
                {"x": X}, {"x": (4,)})
    check_model(lambda x, lo, hi: aj.clip(x, lo, hi), lambda x, lo, hi: np.clip(x, lo, hi),
                {"x": X, "lo": np.array([-1.0]), "hi": np.array(1.5)},
                {"x": (4,), "lo": (1,), "hi": ()})


def test_clip_bounds():
    x = aj.input("x", (5,))
    X = np.array([-2.0, -1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(run(aj.clip(x, None, 0.5), x=X), np.clip(X, None, 0.5))
    np.testing.assert_array_equal(run(aj.clip(x, -0.5, None), x=X), np.clip(X, -0.5, None))
    np.testing.assert_array_equal(run(aj.clip(x, 1.0, -1.0), x=X), np.clip(X, 1.0, -1.0))
    with pytest.raises(ValueError):
        aj.clip(x, None, None)
    # the gradient at the bounds goes to x (bounds inclusive, PyTorch's clamp)
    g = run(aj.grad(aj.sum(aj.clip(x, -1.0, 1.0)), x), x=np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_gelu_variants():
    x = aj.input("x", (3,))
    assert aj.gelu(x).op == "gelu" and aj.gelu(x, approximate="tanh").op == "gelu_tanh"
    with pytest.raises(ValueError, match="approximate"):
        aj.gelu(x, approximate="sigmoid")


@pytest.mark.parametrize("backend", ["interp", "llvm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rounding_ties_and_specials(backend, dtype):
    x = aj.input("x", (None,), dtype)
    X = np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 3.5, 0.49999997, -np.inf, np.inf,
                  np.nan, 1e30, 4503599627370497.0], dtype=dtype)
    f = aj.compile([aj.round(x), aj.floor(x), aj.ceil(x)], backend=backend)
    for got, ref in zip(f(x=X), (np.round, np.floor, np.ceil)):
        want = ref(X)
        np.testing.assert_array_equal(got, want)
        assert (np.signbit(got) == np.signbit(want)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_special_values(dtype):
    """llvm and the ptx emulation give numpy's values at ±inf, NaN, ±0, huge and tiny."""
    x = aj.input("x", (None,), dtype)
    with np.errstate(over="ignore"):
        X = np.array([-np.inf, np.inf, np.nan, -0.0, 0.0, 1e-300, 1e30, -1e30, 5e-324, 7.5,
                      -40.0], dtype=dtype)
    fns = [aj.tan, aj.erf, aj.log2, aj.exp2, aj.log1p, aj.expm1, aj.square, aj.reciprocal,
           aj.silu, aj.gelu, lambda v: aj.gelu(v, approximate="tanh"), aj.elu, aj.leaky_relu]
    outs = [fn(x) for fn in fns]
    want = aj.compile(outs, backend="interp")(x=X)
    for backend, opts in (("llvm", {}), ("ptx", {"emulate": True, "opt_level": 0})):
        got = aj.compile(outs, backend=backend, **opts)(x=X)
        for k, (g, w) in enumerate(zip(got, want)):
            with np.errstate(invalid="ignore"):
                same = (g == w) | (np.isnan(g) & np.isnan(w)) | \
                    (np.abs(g - w) <= 4 * np.spacing(np.abs(w).astype(dtype)))
            assert same.all(), (backend, k, list(zip(X[~same], g[~same], w[~same])))


@pytest.mark.parametrize("backend", [dict(backend="interp"), dict(backend="llvm", cache=False),
                                     dict(backend="ptx", emulate=True, cache=False)])
def test_activation_of_a_where_over_a_logical_condition_compiles(backend):
    """Found by the fuzzer: elu/leaky_relu (a Piecewise whose condition holds x) of a where
    whose condition is logical_xor, or a comparison of bools, with a comparison of numbers
    inside crashed the fuse pass (sympy's piecewise_fold rewrites the nested condition to
    negation normal form, which it cannot do for IEEE comparisons)."""
    t = aj.input("t", (None,))
    m = aj.input("m", (None,), "bool")
    v = np.array([0.0, 1.0, -1.0, np.nan, 2.0, 1.5, -4.0, np.inf])
    mv = np.array([True, False, True, False, True, True, False, False])
    for cond in (aj.logical_xor(t > 1.0, t > 0.0), aj.logical_xor(m, t > 0.0),
                 aj.greater(m, t > 0.0), aj.not_equal(m, t > 1.0),
                 aj.logical_xor(aj.equal(t, t), t > 0.0)):
        for out in (aj.elu(aj.where(cond, t, 2 * t), 0.5),
                    aj.leaky_relu(aj.where(cond, t, 2 * t), 0.1),
                    aj.where(aj.where(cond, t, 2 * t) > 0.5, 1.0, -1.0)):
            f = aj.compile(out, **backend)
            args = {k: {"t": v, "m": mv}[k] for k in f.input_names}
            want = aj.compile(out, backend="interp", passes=[])(**args)
            np.testing.assert_allclose(f(**args), want, rtol=1e-12, equal_nan=True)
