"""``a ** p`` follows numpy's ``power``, constants reach the printers as numbers, and real ops
stay real -- on the interpreter, the LLVM backend and the ptx grid emulation.

Values are compared with numpy (NaN where numpy gives NaN, the sign of zeros and infinities
too); gradients with two-sided finite differences of a numpy reference in float64, and with
the analytic derivative where the difference quotient cannot reach (poles, NaN).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp

import adjit as aj
from adjit.ops.registry import make
from adjit.ops.fused import leaf_symbol

BACKENDS = ("interp", "llvm", "ptx")


def compile_on(backend, outputs, **options):
    if backend == "ptx":   # the ptx kernels run over their thread grid on the CPU
        return aj.compile(outputs, backend="ptx", emulate=True, opt_level=0, **options)
    return aj.compile(outputs, backend=backend, **options)


def run(backend, outputs, **args):
    """Every output as an array; numpy warnings (a complex cast, say) are errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compile_on(backend, outputs)(**args)
    return [np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else [out])]


def assert_numpy(got, want, rtol=1e-13, what=""):
    """Equal to numpy's result: NaN where it is NaN, infinities and zeros with its sign,
    finite values to ``rtol``."""
    got, want = np.asarray(got, dtype="float64"), np.asarray(want, dtype="float64")
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern {what}")
    exact = np.isinf(want) | (want == 0)
    np.testing.assert_array_equal(got[exact], want[exact], err_msg=f"inf/zero {what}")
    np.testing.assert_array_equal(np.signbit(got[exact]), np.signbit(want[exact]),
                                  err_msg=f"sign of inf/zero {what}")
    fin = np.isfinite(want) & (want != 0)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=0, err_msg=what)


def fd_grad(f, x, h=1e-6):
    """Two-sided finite differences of the numpy scalar function ``f`` at ``x`` (float64),
    each element stepped by ``h`` relative to its size."""
    x = np.asarray(x, dtype="float64")
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        step = h * max(abs(x[i]), 1e-3)
        up[i] += step
        dn[i] -= step
        g[i] = (f(up) - f(dn)) / (up[i] - dn[i])
    return g


def assert_fd(got, f, x, rtol=1e-6):
    want = fd_grad(f, x)
    scale = np.maximum(np.abs(want), 1.0)
    assert np.all(np.abs(got - want) <= rtol * scale * 10), (got, want)


# --- numpy's power table ------------------------------------------------------------------
A_SPECIAL = [-np.inf, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.inf, np.nan]
P_SPECIAL = [-np.inf, -17.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0,
             17.0, 18.0, 65.0, np.inf, np.nan]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_power_table_runtime_exponent(backend, dtype):
    """x ** p with p an input: every pairing of signed zeros, infinities, NaN, negative bases
    with integer and non-integer exponents gives numpy's answer."""
    a, p = (np.array(v, dtype=dtype).ravel() for v in np.meshgrid(A_SPECIAL, P_SPECIAL))
    x, e = aj.input("x", a.shape, dtype), aj.input("p", p.shape, dtype)
    (got,) = run(backend, x ** e, x=a, p=p)
    with np.errstate(all="ignore"):
        want = np.power(a, p)
    assert_numpy(got, want, rtol=1e-13 if dtype == "float64" else 2e-6,
                 what=f"{list(zip(a, p))}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_power_table_literal_exponent(backend):
    """x ** p with p a Python number: integer literals (also beyond 16, and 0 with x NaN),
    fractions, ±inf and NaN, against numpy for every special base."""
    a = np.array(A_SPECIAL)
    x = aj.input("x", a.shape)
    outs = [x ** float(p) for p in P_SPECIAL]
    got = run(backend, outs, x=a)
    with np.errstate(all="ignore"):
        for p, g in zip(P_SPECIAL, got):
            assert_numpy(g, np.power(a, p), what=f"x ** {p}")


@pytest.mark.parametrize("backend", ["llvm", "ptx"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_runtime_power_accuracy(backend, dtype):
    """The runtime path (exp(p log|a|) with the sign fixed) over a wide grid: within
    ~|p log|a|| ulp of numpy."""
    rng = np.random.default_rng(0)
    n = 4000
    a = (rng.choice([-1, 1], n) * np.exp(rng.uniform(-6, 6, n))).astype(dtype)
    p = np.where(rng.random(n) < 0.5, rng.integers(-30, 30, n),
                 rng.uniform(-30, 30, n)).astype(dtype)
    x, e = aj.input("x", (n,), dtype), aj.input("p", (n,), dtype)
    (got,) = run(backend, x ** e, x=a, p=p)
    with np.errstate(all="ignore"):
        want = np.power(a.astype("float64"), p.astype("float64"))
        y = np.abs(p.astype("float64") * np.log(np.abs(a.astype("float64"))))
    eps = np.finfo(dtype).eps
    ok = np.isfinite(want) & (np.abs(want) > np.finfo(dtype).tiny) & (np.abs(want) < np.finfo(dtype).max)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    err = np.abs(got[ok] - want[ok]) / np.abs(want[ok])
    assert np.all(err <= (4 + 2 * y[ok]) * eps), float(np.max(err / ((4 + 2 * y[ok]) * eps)))


# --- the cases ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_products_squared(backend):
    """L = sum((X w)**2 w) + mean(X**2) with X w < 0 in places: finite gradients, equal to the
    analytic ones and to finite differences.  The batch dim kept the exponent 1 of 2 a**1 a
    runtime tensor before."""
    rng = np.random.default_rng(1)
    Xv, wv = rng.standard_normal((5, 3)), np.array([-1.5, 0.7, -0.2])
    X, w = aj.input("X", (None, 3)), aj.param("w", (3,))
    L = aj.sum((X * w) ** 2 * w) + aj.mean(X ** 2)
    outs = [L] + aj.grad(L, [X, w])
    got = run(backend, outs, X=Xv, w=wv)
    ref = lambda X, w: np.sum((X * w) ** 2 * w) + np.mean(X ** 2)
    a = Xv * wv
    assert (a < 0).any()
    np.testing.assert_allclose(got[0], ref(Xv, wv), rtol=1e-13)
    np.testing.assert_allclose(got[1], 2 * a * wv * wv + 2 * Xv / Xv.size, rtol=1e-13)
    np.testing.assert_allclose(got[2], np.sum(3 * a * a, axis=0) / 1.0, rtol=1e-13)
    assert_fd(got[1], lambda X: ref(X, wv), Xv)
    assert_fd(got[2], lambda w: ref(Xv, w), wv)
    # the exponents reach the printer as numbers: no pow has a runtime exponent here
    fused = [n for n in compile_on("interp", outs).stages[-1].order() if n.op == "fused"]
    for n in fused:
        for p in n.attr("expr").atoms(sp.Pow):
            assert p.exp.is_Number, n.attr("expr")
        assert all(i.op != "fused" or i.inputs for i in n.inputs), "a constant region as a leaf"


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_powers_of_negative_numbers(backend):
    """(x**2)**2, HVP of sum(x**3), sum(x**18), x**-16, x**9 * x**8 and 17 factors of x:
    values like numpy, gradients like finite differences, at negative x."""
    xv = np.array([-1.7, -1.1, -0.4, 0.3, 0.9, 1.3])
    x, v = aj.input("x", (6,)), aj.input("v", (6,))
    sq2 = aj.sum((x ** 2) ** 2)
    cube = aj.sum(x ** 3)
    (gc,) = aj.grad(cube, [x])
    s18 = aj.sum(x ** 18)
    m16 = aj.sum(x ** -16)
    prod = x
    for _ in range(16):
        prod = prod * x
    outs = [aj.grad(sq2, [x])[0], aj.grad(aj.sum(gc * v), [x])[0], s18, aj.grad(s18, [x])[0],
            aj.grad(m16, [x])[0], x ** 9 * x ** 8, prod, x ** 65, x ** -65]
    vv = np.array([0.5, -1.0, 2.0, 1.0, -0.3, 0.7])
    got = run(backend, outs, x=xv, v=vv)
    assert_numpy(got[0], 4 * xv ** 3, rtol=1e-13)
    assert_numpy(got[1], 6 * xv * vv, rtol=1e-13)
    assert_numpy(got[2], np.sum(np.power(xv, 18)), rtol=1e-13)
    assert_numpy(got[3], 18 * np.power(xv, 17), rtol=1e-13)
    assert_numpy(got[4], -16 * np.power(xv, -17), rtol=1e-13)
    assert_numpy(got[5], np.power(xv, 17), rtol=1e-13)
    assert_numpy(got[6], np.power(xv, 17), rtol=1e-13)
    assert_numpy(got[7], np.power(xv, 65), rtol=1e-12)
    assert_numpy(got[8], np.power(xv, -65), rtol=1e-12)
    assert_fd(got[0], lambda x: np.sum((x ** 2) ** 2), xv)
    assert_fd(got[3], lambda x: np.sum(x ** 18), xv)
    for i in range(6):   # one element at a time: the sum's rounding would hide small terms
        assert_fd(got[4][i:i + 1], lambda x: np.sum(x ** -16.0), xv[i:i + 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_exponent_const_array(backend):
    """x ** aj.const([2, 3, 0, -1, 5, -2]): numpy's power at negative x and at 0, gradient
    p x**(p-1) (0 where p = 0, also at x = 0)."""
    pv = np.array([2.0, 3.0, 0.0, -1.0, 5.0, -2.0])
    x = aj.input("x", (6,))
    y = x ** aj.const(pv)
    outs = [y, aj.grad(aj.sum(y), [x])[0]]
    for xv in (np.array([-1.5, -0.5, -2.0, -3.0, -1.2, -0.7]),
               np.array([0.0, -0.0, 0.0, 0.0, -0.0, 0.0])):
        got = run(backend, outs, x=xv)
        with np.errstate(all="ignore"):
            assert_numpy(got[0], np.power(xv, pv))
            # + 0.0: the zero gradient at p = 0 is 0 * a**-1, -0.0 for a negative base
            assert_numpy(got[1] + 0.0, np.where(pv == 0, 0.0, pv * np.power(xv, pv - 1)))
    xv = np.array([-1.5, -0.5, -2.0, -3.0, -1.2, -0.7])
    assert_fd(run(backend, outs, x=xv)[1], lambda x: np.sum(np.power(x, pv)), xv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exponent_input(backend):
    """x ** p with p an input: integer-valued p at negative x (finite, numpy's signs),
    fractional p (NaN at negative x); d/dx is 0 where p = 0 (x = 0 included), d/dp is 0 at
    x = 0 and y log|x| elsewhere."""
    x, p = aj.input("x", (6,)), aj.input("p", (6,))
    y = x ** p
    outs = [y] + aj.grad(aj.sum(y), [x, p])
    xv = np.array([-1.5, -2.0, 0.0, 0.0, 2.5, -0.5])
    for pv in (np.array([2.0, 3.0, 0.0, 2.0, -1.0, -3.0]),
               np.array([0.5, 1.5, 0.0, 0.5, -1.5, 2.5])):
        got = run(backend, outs, x=xv, p=pv)
        with np.errstate(all="ignore"):
            want = np.power(xv, pv)
            assert_numpy(got[0], want)
            # + 0.0: the zero gradient at p = 0 is 0 * a**-1, -0.0 for a negative base
            assert_numpy(got[1] + 0.0, np.where(pv == 0, 0.0, pv * np.power(xv, pv - 1)))
            # log|x|: finite at a negative base with an integer p, NaN with x**p otherwise
            assert_numpy(got[2], np.where(xv == 0, 0.0, want * np.log(np.abs(xv))))
    pv = np.array([2.0, 3.0, 1.0, -2.0, -1.0, -3.0])
    xv = np.array([-1.5, -2.0, -0.3, 0.8, 2.5, -0.5])
    assert_fd(run(backend, outs, x=xv, p=pv)[1], lambda x: np.sum(np.power(x, pv)), xv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constants_sympy_makes(backend):
    """exp(x - x + 1), exp(x**0), sigmoid(x - x - 1), (x + 1)/3, x/(x - x), (x - x)/(x - x),
    log(x - x): sympy turns these into E, Rational, oo, nan, zoo; every backend gives
    numpy's value of the unsimplified expression."""
    xv = np.array([-2.0, -0.0, 0.0, 1.5])
    x = aj.input("x", (4,))
    outs = [aj.exp(x - x + 1.0), aj.exp(x ** 0), aj.sigmoid(x - x - 1.0), (x + 1.0) / 3.0,
            x / (x - x), (x - x) / (x - x), aj.log(x - x), aj.sin(x - x + 3.0) * x]
    got = run(backend, outs, x=xv)
    with np.errstate(all="ignore"):
        want = [np.exp(xv - xv + 1.0), np.exp(xv ** 0), 1 / (1 + np.exp(-(xv - xv - 1.0))),
                (xv + 1.0) / 3.0, xv / (xv - xv), (xv - xv) / (xv - xv), np.log(xv - xv),
                np.sin(xv - xv + 3.0) * xv]
    for k, (g, w) in enumerate(zip(got, want)):
        assert_numpy(g, w, what=f"output {k}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_printer_lowers_every_sympy_constant(backend):
    """A fused expression holding E, pi, Rational, oo, nan, zoo or I lowers to floats (zoo
    and I, which have no real value, to NaN)."""
    x = aj.input("x", (4,))
    x0 = leaf_symbol(0, "float64")
    exprs = [sp.E * x0, sp.pi + x0, sp.Rational(1, 3) * x0, sp.oo * x0, sp.nan + x0,
             sp.zoo * x0, sp.I * x0, sp.EulerGamma * x0]
    outs = [make("fused", [x], {"expr": e, "type": x.type, "members": 1}) for e in exprs]
    xv = np.array([-1.5, 0.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compile_on(backend, outs, passes=())(x=xv)
    with np.errstate(all="ignore"):
        want = [np.e * xv, np.pi + xv, xv / 3, np.inf * xv, np.nan + xv, np.nan * xv,
                np.nan * xv, float(sp.EulerGamma) * xv]
    for k, (g, w) in enumerate(zip(got, want)):
        assert_numpy(g, w, rtol=1e-15, what=str(exprs[k]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_ops_stay_real(backend):
    """sqrt(-(x*x)) is NaN (numpy's sqrt(-0.0) = -0.0 at 0), with NaN gradients, and no complex
    warning; sqrt(x)**2 and exp(log(x)) are NaN for x < 0 (sympy would cancel them)."""
    xv = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    x = aj.input("x", (5,))
    y = aj.sqrt(-(x * x))
    outs = [y, aj.grad(aj.sum(y), [x])[0], aj.sqrt(x) ** 2, aj.exp(aj.log(x)),
            aj.sqrt(x * x), (x ** 3) ** (1.0 / 3.0)]
    got = run(backend, outs, x=xv)
    with np.errstate(all="ignore"):
        want = [np.sqrt(-(xv * xv)), 0.5 / np.sqrt(-(xv * xv)) * (-2 * xv), np.sqrt(xv) ** 2,
                np.exp(np.log(xv)), np.sqrt(xv * xv), np.power(xv ** 3, 1 / 3)]
    for k, (g, w) in enumerate(zip(got, want)):
        assert_numpy(g, w, rtol=1e-15, what=f"output {k}")


def _x_pow_0(batched):
    shape = (None, 3) if batched else (3,)
    x, v = aj.input("x", shape), aj.input("v", shape)
    L = aj.sum(x ** 0 * 2.0) + aj.sum(x ** 3)
    (g,) = aj.grad(L, [x])
    (h,) = aj.grad(aj.sum(g * v), [x])
    return L, g, h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batched", [False, True])
def test_grad_of_x_pow_0_in_an_hvp_graph(backend, batched):
    """d/dx x**0 = 0 everywhere (x = 0 too) and in second order, and each output has the
    same value compiled alone or beside the others."""
    xv = np.array([[0.0, -1.0, 2.0]]) if batched else np.array([0.0, -1.0, 2.0])
    args = dict(x=xv, v=np.ones_like(xv))
    L, g, h = _x_pow_0(batched)
    both = run(backend, [L, g, h], **args)
    assert_numpy(both[1], 3 * xv ** 2)
    assert_numpy(both[2], 6 * xv)
    L, g, h = _x_pow_0(batched)
    np.testing.assert_array_equal(run(backend, g, x=xv)[0], both[1])
    L, g, h = _x_pow_0(batched)
    np.testing.assert_array_equal(run(backend, h, **args)[0], both[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_zero_exponent_hvp(backend):
    """x ** p with p an input holding 0 at x = 0: gradient and HVP finite (0 there)."""
    x, p, v = aj.input("x", (4,)), aj.input("p", (4,)), aj.input("v", (4,))
    (g,) = aj.grad(aj.sum(x ** p), [x])
    (h,) = aj.grad(aj.sum(g * v), [x])
    xv, pv = np.array([0.0, -1.5, 2.0, 0.0]), np.array([0.0, 3.0, 2.0, 0.0])
    got = run(backend, [g, h], x=xv, p=pv, v=np.ones(4))
    assert_numpy(got[0], np.array([0.0, 3 * 1.5 ** 2, 4.0, 0.0]))
    assert_numpy(got[1], np.array([0.0, -6 * 1.5, 2.0, 0.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_independent_of_what_is_compiled_beside(backend):
    """A shared constant (the exponent b - 1 of both pows' gradients, the region x - x + 2
    used twice) gives the same bits whether its users are compiled alone or together."""
    def build():
        X = aj.input("X", (None, 3))
        c = X - X + 2.0
        a = aj.sum(X ** 3 * c)
        b = aj.sum((X * 0.5) ** 3)
        return [aj.grad(a, [X])[0], aj.grad(b, [X])[0], X ** c]
    Xv = np.array([[-1.5, 0.0, 2.0], [-0.3, 1.0, -4.0]])
    together = run(backend, build(), X=Xv)
    for k in range(3):
        alone = run(backend, build()[k], X=Xv)[0]
        np.testing.assert_array_equal(alone, together[k])
    assert_numpy(together[0], 6 * Xv ** 2)
    assert_numpy(together[2], Xv ** 2)


# --- runtime exponents at 0, negative bases, number bases (fuzz reproducers) -----------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_exponent_cross_derivatives(backend):
    """The mixed second derivative d/dp d/dx x**p = x**(p-1) (1 + p log|x|) -- 1/x at p = 0,
    where the base gradient itself is exactly 0 -- from either order, against finite
    differences (float64) for positive x and the formula for negative x with integer p;
    finite at x = 0 for p >= 0."""
    xv = np.array([1.5, 0.5, 3.0, -2.0, -1.5, 2.0, 0.0, 0.0, 0.0])
    pv = np.array([0.0, 0.0, 0.0, 0.0, 2.0, 1.5, 0.0, 2.0, -1.0])
    x, p = aj.input("x", xv.shape), aj.input("p", pv.shape)
    gx, gp = aj.grad(aj.sum(x ** p), [x, p])
    (dp_dx,) = aj.grad(aj.sum(gx), [p])
    (dx_dp,) = aj.grad(aj.sum(gp), [x])
    got = run(backend, [gx, dp_dx, dx_dp], x=xv, p=pv)
    with np.errstate(all="ignore"):
        want = np.power(xv, pv - 1) * (1 + pv * np.log(np.abs(xv)))
    pos = xv > 0
    for i in np.flatnonzero(pos):    # d/dp of p x**(p-1), by differences in p
        f = lambda q, i=i: q[0] * xv[i] ** (q[0] - 1)    # noqa: E731
        assert_fd(got[1][i:i + 1], f, pv[i:i + 1])
    neg = xv < 0
    for g in got[1:]:
        assert_numpy(g[pos | neg], want[pos | neg], rtol=1e-12)
        assert np.all(np.isfinite(g[6:8])), g    # x = 0 with p = 0, 2
    np.testing.assert_array_equal(got[0][:4], 0.0)    # b = 0: exactly 0
    assert_numpy(got[0][6:], np.array([0.0, 0.0, -np.inf]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_exponent_gradient_of_a_negative_base(backend):
    """d/dp a**p = a**p log|a|: finite for a negative base with an integer p, NaN with a**p
    for a non-integer p, 0 at a = 0 (also p < 0, where a**p = inf); so an exponent that is
    constant in an input (x**0, s*0, log_softmax over one element, 0 @ x) passes it an
    exact 0, not 0 * NaN."""
    av = np.array([-2.0, -2.0, -0.5, -3.0, 0.0, 0.0, -0.0, 2.0, np.inf])
    pv = np.array([0.0, 3.0, -2.0, 0.5, 2.0, -1.0, -3.0, 1.5, -1.0])
    a, p = aj.input("a", av.shape), aj.input("p", pv.shape)
    (gp,) = aj.grad(aj.sum(a ** p), [p])
    (got,) = run(backend, gp, a=av, p=pv)
    with np.errstate(all="ignore"):
        want = np.where(av == 0, 0.0, np.power(av, pv) * np.log(np.abs(av)))
    assert np.isnan(want[3]) and np.isfinite(want[:3]).all()
    assert_numpy(got, want, rtol=1e-13)

    x0, k1 = aj.input("x0", (3,)), aj.input("k1", (3,))
    s6, x2 = aj.input("s6", (3,)), aj.input("x2", (3,))
    m, z = aj.input("m", (3, 1)), aj.input("z", (1, 1))
    outs = aj.grad(aj.sum(x2 ** (x0 ** k1)) + aj.sum(x2 ** (s6 * 0.0))
                   + aj.sum((-1.0) ** (m @ z))
                   + aj.sum(x2 ** aj.log_softmax(aj.reshape(x0, (1, 3)), axis=0)),
                   [x0, s6, m])
    vals = dict(x0=np.array([1.5, -2.0, 0.0]), k1=np.zeros(3), s6=np.array([-1.3, 0.0, 2.0]),
                x2=np.array([-1.1378, -0.5, 0.0243]), m=np.array([[0.0], [-2.0], [1.0]]), z=np.zeros((1, 1)))
    for g in run(backend, outs, **vals):
        np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exponent_constant_hvp(backend):
    """x1 ** (s6 * 0): gradient and HVP w.r.t. s6 are 0 for a negative x1 (they were NaN)."""
    x1, s6, v = aj.input("x1", (2,)), aj.input("s6", (2,)), aj.input("v", (2,))
    gx, gs = aj.grad(aj.sum(x1 ** (s6 * 0.0)), [x1, s6])
    (h,) = aj.grad(aj.sum(gs * v) + aj.sum(gx * v), [s6])
    got = run(backend, [gs, h], x1=np.array([0.024, -1.138]), s6=np.array([-1.3, -0.95]),
              v=np.ones(2))
    for g in got:
        np.testing.assert_array_equal(g, 0.0)


NUMBER_BASES = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, np.inf, -np.inf, np.nan]
P_RUNTIME = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5,
                      3.0, -3.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_number_base_runtime_exponent(backend):
    """c ** p and c ** (-p) for a number c (signed zeros, ±1, ±2, ±inf, NaN) and p an input:
    numpy's power, e.g. 0.0 ** -(-1) = 0 (sympy wrote 0**-p as zoo**p, NaN) and
    (-0.0) ** -1 = -inf (the sign of a -0.0 constant)."""
    p = aj.param("p", P_RUNTIME.shape)
    got = run(backend, [c ** p for c in NUMBER_BASES] + [c ** (-p) for c in NUMBER_BASES],
              p=P_RUNTIME)
    with np.errstate(all="ignore"):
        for k, c in enumerate(NUMBER_BASES):
            assert_numpy(got[k], np.power(c, P_RUNTIME), what=f"{c} ** p")
            assert_numpy(got[len(NUMBER_BASES) + k], np.power(c, -P_RUNTIME),
                         what=f"{c} ** -p")
    x0 = aj.param("x0", (1, 1))    # the fuzz reproducer, alone
    (y,) = run(backend, 0.0 ** (-x0), x0=np.array([[-1.0]]))
    assert_numpy(y, np.array([[0.0]]))
