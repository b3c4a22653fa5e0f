"""Op tests generated from ``adjit.ops.REGISTRY``.

Every registered op must appear in one of the tables below: elementwise ops in
ELEMENTWISE (front-end call, independent numpy reference, operand kinds), every other op
in STRUCTURAL (the tests that cover it).  A newly registered op without an entry fails
``test_every_registered_op_has_tests`` and its generated cases.
"""
from __future__ import annotations

import operator
import zlib

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adjit as aj
from adjit.ops import REGISTRY
from gradtools import RTOL, check_model, rel_err, run


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # a different formula from adjit's 1/(1+e^-x)


def _mp(fn, x):
    """An mpmath function elementwise (a reference independent of numpy and math)."""
    return np.vectorize(lambda v: float(fn(v)), otypes=[np.float64])(x)


# name: (front-end call, numpy reference, operand kinds: f = float, b = bool)
ELEMENTWISE = {
    "neg": (operator.neg, np.negative, "f"),
    "exp": (aj.exp, np.exp, "f"),
    "log": (aj.log, np.log, "f"),
    "sin": (aj.sin, np.sin, "f"),
    "cos": (aj.cos, np.cos, "f"),
    "tanh": (aj.tanh, np.tanh, "f"),
    "sigmoid": (aj.sigmoid, _sigmoid, "f"),
    "relu": (aj.relu, lambda x: np.where(np.isnan(x), x, np.where(x > 0, x, 0.0)), "f"),
    "softplus": (aj.softplus, lambda x: np.logaddexp(0.0, x), "f"),
    "sqrt": (aj.sqrt, np.sqrt, "f"),
    "abs": (aj.abs, np.abs, "f"),
    "sign": (aj.sign, np.sign, "f"),
    "add": (operator.add, np.add, "ff"),
    "sub": (operator.sub, np.subtract, "ff"),
    "mul": (operator.mul, np.multiply, "ff"),
    "div": (operator.truediv, np.divide, "ff"),
    "pow": (operator.pow, np.power, "ff"),
    "maximum": (aj.maximum, np.maximum, "ff"),
    "minimum": (aj.minimum, np.minimum, "ff"),
    "greater": (operator.gt, np.greater, "ff"),
    "greater_equal": (operator.ge, np.greater_equal, "ff"),
    "less": (operator.lt, np.less, "ff"),
    "less_equal": (operator.le, np.less_equal, "ff"),
    "equal": (operator.eq, np.equal, "ff"),
    "not_equal": (operator.ne, np.not_equal, "ff"),
    "where": (aj.where, np.where, "bff"),
    # --- more elementwise ops (tests/test_ops.py entries of the elementwise work) ---
    "tan": (aj.tan, np.tan, "f"),
    "log1p": (aj.log1p, np.log1p, "f"),
    "expm1": (aj.expm1, np.expm1, "f"),
    "erf": (aj.erf, lambda x: _mp(mpmath.erf, x), "f"),
    "log2": (aj.log2, lambda x: np.log(x) / np.log(2.0), "f"),
    "exp2": (aj.exp2, lambda x: np.power(2.0, x), "f"),
    "square": (aj.square, lambda x: x * x, "f"),
    "reciprocal": (aj.reciprocal, lambda x: 1.0 / x, "f"),
    "silu": (aj.silu, lambda x: x * _sigmoid(x), "f"),
    "gelu": (aj.gelu, lambda x: 0.5 * x * (1.0 + _mp(mpmath.erf, x / np.sqrt(2.0))), "f"),
    "gelu_tanh": (lambda x: aj.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3))),
                  "f"),
    "leaky_relu": (aj.leaky_relu, lambda x, s: np.where(x > 0, x, s * x), "ff"),
    "elu": (aj.elu, lambda x, a: np.where(x > 0, x, a * np.expm1(x)), "ff"),
    "clip": (aj.clip, np.clip, "fff"),
    "floor": (aj.floor, np.floor, "f"),
    "ceil": (aj.ceil, np.ceil, "f"),
    "round": (aj.round, np.round, "f"),
    "logical_and": (operator.and_, np.logical_and, "bb"),
    "logical_or": (operator.or_, np.logical_or, "bb"),
    "logical_xor": (operator.xor, np.logical_xor, "bb"),
    "logical_not": (operator.invert, np.logical_not, "b"),
}

# Every non-elementwise op, with the tests (in this module unless a module is named) that
# check its forward values and gradients.
STRUCTURAL = {
    "input": ["test_leaves"],
    "param": ["test_leaves"],
    "const": ["test_const"],
    "batch_size": ["test_mean"],
    "broadcast": ["test_broadcast_to", "test_elementwise_vjp"],
    "reshape": ["test_reshape"],
    "transpose": ["test_transpose"],
    "sum": ["test_sum"],
    "max": ["test_max", "test_max_ties_share_the_gradient"],
    "cast": ["test_cast"],
    "stop_gradient": ["test_stop_gradient"],
    "one_hot": ["test_one_hot"],
    "fused": ["test_elementwise_forward", "test_passes.py::test_fuse_sigmoid_backward"],
    # --- moves: slices, pads, joins (their tests live in tests/ops/test_moves.py) ---
    "slice": ["ops/test_moves.py::test_getitem_matches_numpy_and_scatters_the_gradient",
              "ops/test_moves.py::test_random_batch_axis_slices_are_exact_or_refused",
              "ops/test_moves.py::test_llvm_matches_the_interpreter",
              "ops/test_moves.py::test_ptx_emulation_matches_the_interpreter"],
    "pad": ["ops/test_moves.py::test_shaping_against_numpy",
            "ops/test_moves.py::test_llvm_matches_the_interpreter",
            "ops/test_moves.py::test_ptx_emulation_matches_the_interpreter"],
    "concatenate": ["ops/test_moves.py::test_shaping_against_numpy",
                    "ops/test_moves.py::test_llvm_matches_the_interpreter",
                    "ops/test_moves.py::test_ptx_emulation_matches_the_interpreter"],
    # --- gathers and reductions (tests/ops/test_gathers.py, tests/ops/test_reductions.py) ---
    "take": ["ops/test_gathers.py::test_take", "ops/test_gathers.py::test_backends_agree"],
    "take_along_axis": ["ops/test_gathers.py::test_take_along_axis",
                        "ops/test_gathers.py::test_backends_agree"],
    "scatter_add": ["ops/test_gathers.py::test_scatter_adds_repeated_indices",
                    "ops/test_gathers.py::test_second_order_through_the_scatter"],
    "min": ["ops/test_reductions.py::test_forward_matches_numpy",
            "ops/test_reductions.py::test_gradients",
            "ops/test_reductions.py::test_min_ties_share_the_gradient"],
    "prod": ["ops/test_reductions.py::test_gradients",
             "ops/test_reductions.py::test_prod_gradient_with_zeros_in_the_slice"],
    "argmax": ["ops/test_reductions.py::test_arg_matches_numpy"],
    "argmin": ["ops/test_reductions.py::test_arg_matches_numpy"],
    # --- products (tests/ops/test_products.py) ---
    "matmul": ["test_matmul", "ops/test_products.py::test_matmul_matches_numpy_with_gradients",
               "ops/test_products.py::test_llvm_matches_the_interpreter",
               "ops/test_products.py::test_ptx_emulation_matches_the_interpreter",
               "ops/test_products.py::test_einsum_matches_numpy_with_gradients"],
    "matmul_sum": ["ops/test_contract.py::test_forward_every_operand_form",
                   "ops/test_contract.py::test_ptx_emulation_every_operand_form",
                   "ops/test_contract.py::test_gradient_against_finite_differences",
                   "ops/test_contract.py::test_second_order_through_the_weight_gradient"],
    # --- pooling (tests/ops/test_pooling.py) ---
    "max_pool": ["ops/test_pooling.py::test_max_pool_forward_and_gradient",
                 "ops/test_pooling.py::test_max_pool_ties_and_special_values",
                 "ops/test_pooling.py::test_second_order_max_pool",
                 "ops/test_pooling_kernels.py::"
                 "test_unpadded_max_pool_kernels_match_the_interpreter",
                 "ops/test_pooling.py::test_llvm_and_ptx_emulation_match_the_interpreter"],
    "pool_argmax": ["ops/test_pooling.py::test_pool_argmax_is_the_first_maximum",
                    "ops/test_pooling.py::test_max_pool_ties_and_special_values",
                    "ops/test_pooling_kernels.py::"
                    "test_unpadded_max_pool_kernels_match_the_interpreter"],
    "avg_pool": ["ops/test_pooling.py::test_avg_pool_forward_and_gradient",
                 "ops/test_pooling.py::test_llvm_and_ptx_emulation_match_the_interpreter"],
    "avg_pool_grad": ["ops/test_pooling.py::test_avg_pool_forward_and_gradient",
                      "ops/test_pooling.py::test_second_order_avg_pool",
                      "ops/test_pooling.py::test_overlapping_windows_accumulate"],
    # --- random numbers (tests/ops/test_random.py) ---
    "philox": ["ops/test_random.py::test_bits_are_numpys_philox_stream",
               "ops/test_random.py::test_backends_give_the_interpreters_bits",
               "ops/test_random.py::test_dropout_values_and_gradient",
               "ops/test_random.py::test_no_gradient_reaches_the_key"],
    # --- convolutions (tests/ops/test_conv.py, tests/ops/test_conv_backends.py) ---
    "conv": ["ops/test_conv.py::test_forward_matches_the_loop_oracle",
             "ops/test_conv.py::test_gradients_against_finite_differences",
             "ops/test_conv.py::test_second_order_against_finite_differences_of_the_gradient",
             "ops/test_conv.py::test_records_are_adjoint", "ops/test_conv_backends.py::test_backends_match_the_interpreter",
             "ops/test_conv_direct.py::test_direct_kernels_match_the_interpreter"],
    "conv_transpose": ["ops/test_conv.py::test_conv_transpose_matches_the_scatter_loop",
                       "ops/test_conv.py::test_records_are_adjoint",
                       "ops/test_conv_backends.py::test_backends_match_the_interpreter"],
    "conv_weight": ["ops/test_conv.py::test_gradients_against_finite_differences",
                    "ops/test_conv.py::test_records_are_adjoint",
                    "ops/test_conv_backends.py::test_records_with_asymmetric_padding_on_the_native_backends",
                    "ops/test_conv_direct.py::test_direct_kernels_match_the_interpreter"],
    "unfold": ["ops/test_conv.py::test_records_are_adjoint",
               "ops/test_conv_backends.py::test_records_with_asymmetric_padding_on_the_native_backends"],
    "fold": ["ops/test_conv.py::test_records_are_adjoint",
             "ops/test_conv_backends.py::test_records_with_asymmetric_padding_on_the_native_backends"],
}

# operand shapes per arity; None is the batch dimension, bound to BATCH at call time
BATCH = 5
SHAPES = {
    1: [((),), ((4,),), ((2, 3),), ((None, 4),)],
    2: [((), ()), ((4,), (4,)), ((2, 3), (2, 3)), ((3,), (2, 3)), ((2, 3), (3,)),
        ((), (2, 3)), ((2, 1), (1, 3)), ((None, 4), (4,)), ((4,), (None, 4)),
        ((None, 4), (None, 1))],
    3: [((), (), ()), ((4,), (4,), (4,)), ((2, 3), (2, 3), (2, 3)), ((3,), (2, 3), ()),
        ((2, 1), (3,), (2, 3)), ((None, 4), (4,), (None, 1))],
}

ELEMENTWISE_OPS = sorted(n for n, op in REGISTRY.items() if op.elementwise)
DIFFERENTIABLE_OPS = [n for n in ELEMENTWISE_OPS if REGISTRY[n].differentiable]
CONSTANT_OPS = [n for n in ELEMENTWISE_OPS if not REGISTRY[n].differentiable]


def _cases(names):
    return [pytest.param(n, shapes, id=f"{n}-{'-'.join(map(str, shapes))}")
            for n in names for shapes in SHAPES[REGISTRY[n].arity]]


def _sample(name, shapes, grid=False):
    """Operand values in the op's domain, away from its kinks (so differences are smooth).

    ``grid=True`` draws from a coarse grid instead, so ties and zeros occur (for ops whose
    interesting cases are exact: comparisons, sign).
    """
    op, (_, _, kinds) = REGISTRY[name], ELEMENTWISE[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}{shapes}".encode()))
    lo, hi = op.domain
    kinks = op.extra.get("kinks")
    for _ in range(1000):
        args = []
        for kind, shape in zip(kinds, shapes):
            concrete = tuple(BATCH if d is None else d for d in shape)
            if kind == "b":
                args.append(rng.random(concrete) < 0.5)
            elif grid:
                args.append(np.round(rng.uniform(lo, hi, concrete) * 2) / 2)
            else:
                args.append(rng.uniform(lo, hi, concrete))
        if grid or kinks is None:
            return args
        if np.all(np.abs(kinks(*np.broadcast_arrays(*args))) >= 0.1):
            return args
    raise AssertionError(f"could not sample {name} away from its kinks")


def _declare(name, shapes):
    kinds = ELEMENTWISE[name][2]
    names = [f"a{k}" for k in range(len(shapes))]
    dtypes = {n: "bool" if kind == "b" else "float64" for n, kind in zip(names, kinds)}
    return names, dict(zip(names, shapes)), dtypes


# --- the registry is covered -------------------------------------------------------------
def test_every_registered_op_has_tests():
    missing = [n for n, op in REGISTRY.items()
               if n not in (ELEMENTWISE if op.elementwise else STRUCTURAL)]
    assert not missing, f"ops without test data: {missing}"
    stale = (set(ELEMENTWISE) | set(STRUCTURAL)) - set(REGISTRY)
    assert not stale, f"test tables name unregistered ops: {stale}"
    for op, tests in STRUCTURAL.items():
        for t in tests:
            if "::" not in t:
                assert callable(globals().get(t)), f"{op}: no test named {t}"
    for n in ELEMENTWISE_OPS:
        op = REGISTRY[n]
        assert op.arity == len(ELEMENTWISE[n][2]) and op.scalar is not None
        assert op.domain[0] < op.domain[1]


# --- elementwise ops, generated --------------------------------------------------------------
@pytest.mark.parametrize("name, shapes", _cases(ELEMENTWISE_OPS))
def test_elementwise_forward(name, shapes):
    call, ref, _ = ELEMENTWISE[name]
    args = _sample(name, shapes, grid=not REGISTRY[name].differentiable)
    names, decl, dtypes = _declare(name, shapes)
    values = dict(zip(names, args))
    nodes = [aj.input(n, decl[n], dtypes[n]) for n in names]
    out = call(*nodes)
    expected = ref(*args)
    assert tuple(BATCH if d is None else d for d in out.shape) == expected.shape
    for passes in ((), None):
        got = run(out, passes, **values)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    fused = aj.compile(out, backend="interp").graph.op_counts()
    assert fused.get("fused") == 1 and name not in fused   # the pipeline wrapped the op


@pytest.mark.parametrize("name, shapes", _cases(DIFFERENTIABLE_OPS))
def test_elementwise_vjp(name, shapes):
    call, ref, kinds = ELEMENTWISE[name]
    args = _sample(name, shapes)
    names, decl, dtypes = _declare(name, shapes)
    values = dict(zip(names, args))
    wrt = [n for n, kind in zip(names, kinds) if kind == "f"]
    check_model(lambda **nodes: call(*(nodes[n] for n in names)),
                lambda **v: ref(*(v[n] for n in names)),
                values, decl, dtypes=dtypes, wrt=wrt, seed=zlib.crc32(name.encode()),
                rtol_forward=1e-13)


@pytest.mark.parametrize("name, shapes", _cases(CONSTANT_OPS))
def test_nondifferentiable_elementwise_has_zero_gradient(name, shapes):
    call, _, kinds = ELEMENTWISE[name]
    args = _sample(name, shapes, grid=True)
    names, decl, dtypes = _declare(name, shapes)
    nodes = [aj.input(n, decl[n], dtypes[n]) for n in names]
    out = call(*nodes)
    u = aj.input("u", out.shape)
    loss = aj.sum(aj.cast(out, "float64") * u)
    floats = [nd for nd, kind in zip(nodes, kinds) if kind == "f"]
    values = dict(zip(names, args))
    u_val = np.random.default_rng(1).standard_normal(np.shape(run(out, None, **values)))
    if floats:                # (logical ops have bool operands only)
        grads = run(aj.grad(loss, floats), None, u=u_val, **values)
        for g, a in zip(grads, args):
            assert g.shape == a.shape and not np.any(g)
    if out.dtype == "bool":   # a bool result cannot be differentiated at all
        with pytest.raises(aj.DTypeError):
            aj.grad(aj.sum(out), floats or nodes)


def test_sign_is_zero_at_zero_and_grad_of_abs_is_sign():
    x = aj.input("x", (5,))
    xs = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(run(aj.sign(x), x=xs), [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(run(aj.grad(aj.sum(aj.abs(x)), x), x=xs), [-1, -1, 0, 1, 1])


def test_maximum_minimum_ties_send_the_gradient_to_the_first_operand():
    a, b = aj.input("a", (2,)), aj.input("b", (2,))
    va, vb = np.array([1.0, 3.0]), np.array([1.0, 2.0])
    ga, gb = run(aj.grad(aj.sum(aj.maximum(a, b)), [a, b]), a=va, b=vb)
    np.testing.assert_array_equal(ga, [1.0, 1.0])
    np.testing.assert_array_equal(gb, [0.0, 0.0])
    ga, gb = run(aj.grad(aj.sum(aj.minimum(a, b)), [a, b]), a=va, b=vb)
    np.testing.assert_array_equal(ga, [1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.0, 1.0])


def test_relu_gradient_by_hand():
    x = aj.input("x", (4,))
    g = run(aj.grad(aj.sum(aj.relu(x) * 3.0), x), x=np.array([-1.0, -0.1, 0.2, 5.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 3.0, 3.0])


# --- structural ops --------------------------------------------------------------------------
def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_leaves():
    x = aj.input("x", (None, 3), dtype="float32")
    W = aj.param("W", (3, 2))
    assert (x.shape, x.dtype, W.shape, W.dtype) == ((None, 3), "float32", (3, 2), "float64")
    assert aj.input("s", ()).shape == ()
    with pytest.raises(aj.ShapeError, match="W2"):
        aj.param("W2", (None, 3))
    with pytest.raises(ValueError):
        aj.input("not a name", (3,))
    X = _normal(4, 3).astype("float32")
    np.testing.assert_array_equal(run(x, x=X), X)
    check_model(lambda x, W: x @ W, lambda x, W: x @ W,
                {"x": _normal(4, 3), "W": _normal(3, 2, seed=1)}, {"x": (None, 3), "W": (3, 2)})


def test_const():
    c = np.array([[1.0, -2.0, 3.0]])
    check_model(lambda x: x * aj.const(c) + aj.const(2.5), lambda x: x * c + 2.5,
                {"x": _normal(2, 3)}, {"x": (2, 3)})
    k = aj.const(np.arange(3), dtype="float64")
    assert k.dtype == "float64" and k.shape == (3,)
    np.testing.assert_array_equal(run(k), [0.0, 1.0, 2.0])


@pytest.mark.parametrize("shape, axis, keepdims", [
    ((2, 3, 4), None, False), ((2, 3, 4), None, True), ((2, 3, 4), 0, False),
    ((2, 3, 4), -1, True), ((2, 3, 4), (0, 2), False), ((2, 3, 4), (2, 0), True),
    ((2, 3, 4), (1,), False), ((5,), 0, False), ((), None, False), ((None, 3), 0, False),
    ((None, 3), 1, True), ((None, 3), None, False),
])
@pytest.mark.parametrize("reduce", ["sum", "max", "mean"])
def test_reductions(reduce, shape, axis, keepdims):
    fn, ref = {"sum": (aj.sum, np.sum), "max": (aj.max, np.max), "mean": (aj.mean, np.mean)}[reduce]
    concrete = tuple(BATCH if d is None else d for d in shape)
    np_axis = axis if axis is None or isinstance(axis, int) else tuple(axis)
    check_model(lambda x: fn(x, axis=axis, keepdims=keepdims),
                lambda x: np.asarray(ref(x, axis=np_axis, keepdims=keepdims)),
                {"x": _normal(*concrete, seed=len(shape))}, {"x": shape}, rtol_forward=1e-13)


def test_sum():
    x = aj.input("x", (2, 3))
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(run(aj.sum(x, axis=0), x=X), [5.0, 7.0, 9.0])
    np.testing.assert_array_equal(run(aj.sum(x, axis=1, keepdims=True), x=X), [[6.0], [15.0]])
    assert float(run(aj.sum(x), x=X)) == 21.0
    np.testing.assert_array_equal(run(aj.grad(aj.sum(x, axis=(0, 1)), x), x=X), np.ones((2, 3)))
    with pytest.raises(aj.ShapeError, match="axis 2"):
        aj.sum(x, axis=2)


def test_max():
    x = aj.input("x", (2, 3))
    X = np.array([[1.0, 7.0, 3.0], [4.0, -5.0, 6.0]])
    np.testing.assert_array_equal(run(aj.max(x, axis=1), x=X), [7.0, 6.0])
    np.testing.assert_array_equal(run(aj.grad(aj.sum(aj.max(x, axis=0)), x), x=X),
                                  [[0, 1, 0], [1, 0, 1]])


def test_max_ties_share_the_gradient():
    x = aj.input("x", (4,))
    g = run(aj.grad(aj.max(x), x), x=np.array([1.0, 3.0, 3.0, 3.0]))
    np.testing.assert_allclose(g, [0.0, 1 / 3, 1 / 3, 1 / 3], rtol=1e-15)


def test_mean():
    x = aj.input("x", (None, 2))
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    np.testing.assert_allclose(run(aj.mean(x, axis=0), x=X), [3.0, 5.0], rtol=1e-15)
    assert float(run(aj.mean(x), x=X)) == pytest.approx(4.0, rel=1e-15)
    # the gradient of a mean over the batch divides by the batch size bound at call time
    np.testing.assert_allclose(run(aj.grad(aj.mean(x), x), x=X), np.full((3, 2), 1 / 6))
    np.testing.assert_allclose(run(aj.grad(aj.mean(x), x), x=X[:1]), np.full((1, 2), 1 / 2))


@pytest.mark.parametrize("sa, sb", [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
                                    ((3,), (3,)), ((None, 3), (3, 4)), ((4, None), (None, 2)),
                                    ((1, 1), (1, 5))])
def test_matmul(sa, sb):
    ca, cb = (tuple(BATCH if d is None else d for d in s) for s in (sa, sb))
    check_model(lambda a, b: a @ b, lambda a, b: np.asarray(np.matmul(a, b)),
                {"a": _normal(*ca), "b": _normal(*cb, seed=1)}, {"a": sa, "b": sb})
    check_model(lambda a, b: aj.matmul(a, b), lambda a, b: np.asarray(np.matmul(a, b)),
                {"a": _normal(*ca), "b": _normal(*cb, seed=1)}, {"a": sa, "b": sb})


@pytest.mark.parametrize("shape, axes", [((2, 3), None), ((2, 3, 4), (1, 2, 0)),
                                         ((2, 3, 4), (0, 2, 1)), ((None, 3), None),
                                         ((4,), None)])
def test_transpose(shape, axes):
    concrete = tuple(BATCH if d is None else d for d in shape)
    check_model(lambda x: aj.transpose(x, axes), lambda x: np.transpose(x, axes),
                {"x": _normal(*concrete)}, {"x": shape})
    if axes is None:
        check_model(lambda x: x.T * 2.0, lambda x: x.T * 2.0, {"x": _normal(*concrete)},
                    {"x": shape})


@pytest.mark.parametrize("shape, new, expected", [
    ((2, 3, 4), (6, 4), (6, 4)), ((2, 3, 4), (-1,), (24,)), ((6,), (2, 3), (2, 3)),
    ((2, 3), (3, -1), (3, 2)), ((None, 6), (None, 2, 3), (BATCH, 2, 3)), ((), (1, 1), (1, 1)),
])
def test_reshape(shape, new, expected):
    concrete = tuple(BATCH if d is None else d for d in shape)
    check_model(lambda x: aj.reshape(x, new), lambda x: x.reshape(expected),
                {"x": _normal(*concrete)}, {"x": shape})


def test_reshape_refuses_a_size_change():
    with pytest.raises(aj.ShapeError, match=r"x.*\(2, 3\).*\(4,\)"):
        aj.reshape(aj.input("x", (2, 3)), (4,))


@pytest.mark.parametrize("shape, to", [((3,), (2, 3)), ((2, 1), (2, 4)), ((), (3,)),
                                       ((1, 3), (2, 2, 3)), ((4,), (None, 4))])
def test_broadcast_to(shape, to):
    concrete = tuple(BATCH if d is None else d for d in to)
    x = _normal(*shape) if shape else np.array(0.7)
    if None in to:   # the batch size comes from another input
        check_model(lambda x, z: aj.broadcast_to(x, to) + z,
                    lambda x, z: np.broadcast_to(x, concrete) + z,
                    {"x": x, "z": _normal(*concrete, seed=2)}, {"x": shape, "z": to})
    else:
        check_model(lambda x: aj.broadcast_to(x, to), lambda x: np.broadcast_to(x, concrete).copy(),
                    {"x": x}, {"x": shape})
    with pytest.raises(aj.ShapeError):
        aj.broadcast_to(aj.input("y", (3,)), (2, 4))


def test_cast():
    x = aj.input("x", (2, 3))
    X = _normal(2, 3)
    y32 = aj.cast(x, "float32")
    assert y32.dtype == "float32"
    got = run(y32, x=X)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, X.astype(np.float32))
    # cast is the identity map: its derivative is 1 (rounded to float32 on the way back)
    u = aj.input("u", (2, 3), dtype="float32")
    loss = aj.sum(y32 * u)
    U = _normal(2, 3, seed=3).astype("float32")
    g = run(aj.grad(loss, x), x=X, u=U)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, U.astype(np.float64))
    assert aj.check_grads(aj.sum(aj.cast(x, "float32") ** 2), x, {"x": X}).ok
    labels = aj.input("labels", (3,), dtype="int64")
    np.testing.assert_array_equal(run(aj.cast(labels, "float64") * 0.5, labels=[1, 2, 3]),
                                  [0.5, 1.0, 1.5])


def test_where_with_numbers_and_comparisons():
    x = aj.input("x", (4,))
    X = np.array([-1.5, -0.5, 0.5, 1.5])
    check_model(lambda x: aj.where(x > 0, x * x, -x), lambda x: np.where(x > 0, x * x, -x),
                {"x": X}, {"x": (4,)})
    np.testing.assert_array_equal(run(aj.where(x <= 0.5, 1.0, 0.0), x=X), [1, 1, 1, 0])
    with pytest.raises(aj.DTypeError, match="bool"):
        aj.where(x, x, x)


def test_one_hot():
    labels = aj.input("labels", (None,), dtype="int64")
    L = np.array([2, 0, 1, 2])
    oh = aj.one_hot(labels, 3)
    assert oh.shape == (None, 3) and oh.dtype == "float64"
    np.testing.assert_array_equal(run(oh, labels=L), np.eye(3)[L])
    W = aj.input("W", (None, 3))
    Wv = _normal(4, 3)
    # d/dW sum(onehot * W) = onehot; nothing flows into the integer labels
    np.testing.assert_array_equal(run(aj.grad(aj.sum(oh * W), W), labels=L, W=Wv), np.eye(3)[L])
    with pytest.raises(aj.DTypeError):
        aj.grad(aj.sum(oh * W), labels)
    with pytest.raises(aj.DTypeError, match="integers"):
        aj.one_hot(W, 3)
    assert aj.one_hot(labels, 3, dtype="float32").dtype == "float32"


def test_stop_gradient():
    x = aj.input("x", (3,))
    X = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(run(aj.stop_gradient(x) * 2.0, x=X), 2 * X)
    # only the un-stopped factor is differentiated: d/dx sum(sg(x) * x) = x
    np.testing.assert_array_equal(run(aj.grad(aj.sum(aj.stop_gradient(x) * x), x), x=X), X)
    np.testing.assert_array_equal(run(aj.grad(aj.sum(aj.stop_gradient(x)), x), x=X), 0 * X)


def test_nondifferentiable_flags():
    # the registry marks exactly the ops whose derivative is zero wherever it exists
    flagged = sorted(n for n, op in REGISTRY.items() if not op.differentiable)
    assert flagged == sorted(["sign", "greater", "greater_equal", "less", "less_equal",
                              "equal", "not_equal", "stop_gradient", "one_hot"]
                             + ["argmax", "argmin"]
                             + ["philox"]   # random numbers: no gradient to the key
                             + ["floor", "ceil", "round", "logical_and", "logical_or",
                                "logical_xor", "logical_not"]    # more elementwise ops
                             + ["pool_argmax"])   # the index a max pool selects


# --- composites -------------------------------------------------------------------------------
def _lse(z, axis, keepdims=False):
    return np.log(np.sum(np.exp(z), axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax(axis):
    Z = _normal(4, 3)
    sm = lambda z: np.exp(z) / np.sum(np.exp(z), axis=axis, keepdims=True)
    check_model(lambda z: aj.softmax(z, axis=axis), sm, {"z": Z}, {"z": (4, 3)},
                rtol_forward=1e-14)
    check_model(lambda z: aj.log_softmax(z, axis=axis), lambda z: np.log(sm(z)), {"z": Z},
                {"z": (4, 3)}, rtol_forward=1e-13)
    np.testing.assert_allclose(run(aj.sum(aj.softmax(aj.input("z", (4, 3)), axis=axis),
                                          axis=axis), z=Z), np.ones(4 if axis == -1 else 3))


@pytest.mark.parametrize("axis, keepdims", [(-1, False), (0, True), (None, False),
                                            ((0, 1), True), (1, True)])
def test_logsumexp(axis, keepdims):
    check_model(lambda z: aj.logsumexp(z, axis=axis, keepdims=keepdims),
                lambda z: np.asarray(_lse(z, axis, keepdims)),
                {"z": _normal(4, 3)}, {"z": (4, 3)}, rtol_forward=1e-14)


def test_mse():
    Y, T = _normal(5, 2), _normal(5, 2, seed=1)
    check_model(lambda y, t: aj.mse(y, t), lambda y, t: np.asarray(np.mean((y - t) ** 2)),
                {"y": Y, "t": T}, {"y": (None, 2), "t": (None, 2)})
    y, t = aj.input("y", (None, 2)), aj.input("t", (None, 2))
    gy = run(aj.grad(aj.mse(y, t), y), y=Y, t=T)
    np.testing.assert_allclose(gy, 2 * (Y - T) / Y.size, rtol=1e-14)


def test_cross_entropy_one_hot_labels():
    Z = _normal(5, 4)
    T = np.eye(4)[[0, 3, 1, 1, 2]]
    ref = lambda z, t: np.asarray(-np.mean(np.sum(t * (z - _lse(z, -1, True)), axis=-1)))
    check_model(lambda z, t: aj.cross_entropy(z, t), ref, {"z": Z, "t": T},
                {"z": (None, 4), "t": (None, 4)}, wrt=["z"], rtol_forward=1e-14)
    z, t = aj.input("z", (None, 4)), aj.input("t", (None, 4))
    gz = run(aj.grad(aj.cross_entropy(z, t), z), z=Z, t=T)
    softmax = np.exp(Z) / np.sum(np.exp(Z), axis=1, keepdims=True)
    np.testing.assert_allclose(gz, (softmax - T) / 5, rtol=1e-12, atol=1e-15)


def test_cross_entropy_integer_labels():
    Z = _normal(5, 4)
    labels = np.array([0, 3, 1, 1, 2])
    ref = lambda z, t: np.asarray(-np.mean((z - _lse(z, -1, True))[np.arange(5), t]))
    check_model(lambda z, t: aj.cross_entropy(z, t), ref, {"z": Z, "t": labels}, {"z": (None, 4), "t": (None,)},
                dtypes={"t": "int64"}, wrt=["z"], rtol_forward=1e-14)
    z = aj.input("z", (None, 4))
    with pytest.raises(aj.ShapeError, match="labels"):
        aj.cross_entropy(z, aj.input("bad", (None, 3), dtype="int64"))
    with pytest.raises(aj.ShapeError, match="differ"):
        aj.cross_entropy(z, aj.input("bad2", (None, 3)))


def test_direction_check_can_fail():
    """The helper's gradient check rejects a wrong reference (guards against vacuous tests)."""
    with pytest.raises(AssertionError):
        check_model(aj.sin, lambda x: np.sin(x) + 1e-3 * x ** 2, {"x": np.array([0.3, 1.1])},
                    {"x": (2,)}, rtol_forward=1e-2)
    assert rel_err(1.0, 1.0 + 3e-6) > RTOL


@st.composite
def _broadcast_pair(draw):
    """Two shapes that broadcast together (numpy's rule), up to rank 3."""
    out = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    def operand():
        rank = draw(st.integers(0, len(out)))
        tail = out[len(out) - rank:]
        return tuple(d if draw(st.booleans()) else 1 for d in tail)
    return operand(), operand()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(_broadcast_pair(), st.sampled_from(["add", "sub", "mul", "maximum"]))
def test_broadcasting_vjp_property(shapes, name):
    call, ref, _ = ELEMENTWISE[name]
    args = _sample(name, shapes)
    check_model(lambda a0, a1: call(a0, a1), lambda a0, a1: np.asarray(ref(a0, a1)),
                {"a0": args[0], "a1": args[1]}, {"a0": shapes[0], "a1": shapes[1]},
                rtol_forward=1e-15)


# --- the whole domain: negative values, zero, ties, kinks, large magnitudes, ±inf, NaN ---------
# Every elementwise op runs on every backend over these values (binary ops: every pair, so
# ties a == b and zeros occur), against numpy's forward value with NaN and inf in the same
# places, and its gradient against finite differences of numpy wherever the op is smooth.
EDGE = np.array([-np.inf, -1e30, -700.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 700.0,
                 1e30, np.inf, np.nan])
EDGE_BACKENDS = {"interp": {}, "llvm": {"opt_level": 1, "cache": False},
                 "ptx": {"emulate": True, "opt_level": 0, "cache": False}}
def _clip_subgradient(x, lo, hi):
    """clip's derivatives where x, lo, hi tie: those of minimum(maximum(x, lo), hi) with
    the first operand of maximum/minimum taking a tie (x gets it for lo <= x <= hi)."""
    inside = max(x, lo) <= hi
    return (float(inside and x >= lo), float(inside and x < lo), float(not inside))


# The derivative adjit takes at each op's kinks and ties (where finite differences measure
# none), by op: (mask of the points, the partial derivatives there).  Ops not listed are
# smooth wherever they are finite, or (sqrt at 0, log at 0, div by 0, pow at base 0 with
# a fractional exponent) have no finite derivative, which is not checked here.
SUBGRADIENT = {
    "relu": (lambda x: x == 0, lambda x: (0.0,)),               # relu'(0) = 0
    "abs": (lambda x: x == 0, lambda x: (0.0,)),                # abs'(0) = sign(0) = 0
    "sign": (lambda x: np.isfinite(x), lambda x: (0.0,)),       # piecewise constant: 0
    "maximum": (lambda a, b: a == b, lambda a, b: (1.0, 0.0)),  # ties: all to the first
    "minimum": (lambda a, b: a == b, lambda a, b: (1.0, 0.0)),
    "pow": (lambda a, b: (a == 0) & (b == 0), lambda a, b: (0.0, None)),   # d/da a**0 = 0
    **{c: (lambda a, b: np.isfinite(a) & np.isfinite(b), lambda a, b: (0.0, 0.0))
       for c in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")},
    # --- more elementwise ops ---
    "leaky_relu": (lambda x, s: x == 0, lambda x, s: (s, 0.0)),    # PyTorch: the slope at 0
    "elu": (lambda x, a: x == 0, lambda x, a: (a, 0.0)),           # alpha at 0 (PyTorch)
    "clip": (lambda x, lo, hi: (x == lo) | (x == hi) | (lo == hi), _clip_subgradient),
    **{c: (lambda x: np.isfinite(x), lambda x: (0.0,)) for c in ("floor", "ceil", "round")},
    **{c: (lambda *a: True, lambda *a: ()) for c in ("logical_and", "logical_or",
                                                     "logical_xor", "logical_not")},
}


def _edge_operands(kinds):
    if set(kinds) == {"b"}:                # logical ops: every combination of truth values
        return [g.ravel() for g in np.meshgrid(*[[False, True]] * len(kinds), indexing="ij")]
    if kinds == "fff":                     # clip: every triple
        return [g.ravel() for g in np.meshgrid(EDGE, EDGE, EDGE, indexing="ij")]
    if len(kinds) == 1:
        return [EDGE]
    a, b = np.meshgrid(EDGE, EDGE, indexing="ij")
    return [a.ravel(), b.ravel()] if len(kinds) == 2 else [a.ravel() > 0, a.ravel(), b.ravel()]



def test_every_elementwise_op_declares_its_kinks():
    """An op with a kink, tie or step (registry ``kinks``, or non-differentiable) has
    its subgradient documented in SUBGRADIENT."""
    for n in ELEMENTWISE_OPS:
        op = REGISTRY[n]
        if op.extra.get("kinks") is not None or (not op.differentiable and n != "where"):
            assert n in SUBGRADIENT, f"{n}: document the derivative taken at its kinks"


def _edge_cases():
    return [pytest.param(n, b) for n in ELEMENTWISE_OPS for b in EDGE_BACKENDS]


@pytest.mark.parametrize("name, backend", _edge_cases())
def test_elementwise_over_the_whole_domain(name, backend):
    call, ref, kinds = ELEMENTWISE[name]
    args = _edge_operands(kinds)
    names = [f"a{k}" for k in range(len(args))]
    nodes = [aj.input(n, (len(args[0]),), "bool" if kind == "b" else "float64")
             for n, kind in zip(names, kinds)]
    out = call(*nodes)
    floats = [nd for nd, kind in zip(nodes, kinds) if kind == "f"]
    outs = [out]
    if out.dtype != "bool":
        outs += aj.grad(aj.sum(out), floats)
    f = aj.compile(outs, backend=backend, **EDGE_BACKENDS[backend])
    got = f(**dict(zip(names, args)))
    with np.errstate(all="ignore"):
        want = np.asarray(ref(*args))
    y = np.asarray(got[0])
    where = [f"{name}({', '.join(repr(a[i]) for a in args)})" for i in range(len(want))]
    for i in range(len(want)):           # NaN and inf where numpy has them, values close
        w, g = want[i], y[i]
        if want.dtype == bool:
            assert g == w, f"{where[i]}: got {g}, numpy {w}"
        elif np.isnan(w) or np.isinf(w) or np.isnan(g) or np.isinf(g):
            assert (np.isnan(w) and np.isnan(g)) or w == g, f"{where[i]}: got {g}, numpy {w}"
        else:
            assert abs(g - w) <= 1e-13 * abs(w) + 1e-300, f"{where[i]}: got {g!r}, numpy {w!r}"
    if out.dtype == "bool":
        return
    fl = [k for k, kind in enumerate(kinds) if kind == "f"]
    kink = SUBGRADIENT.get(name)
    for i in range(len(want)):
        point = [a[i] for a in args]
        if not np.isfinite(want[i]) or not all(np.isfinite(point[k]) for k in fl):
            continue
        for slot, k in enumerate(fl):
            g = float(np.asarray(got[1 + slot])[i])
            if kink is not None and kink[0](*point):
                expected = kink[1](*point)[slot]
                if expected is not None:
                    assert g == expected, f"d/da{k} {where[i]} at a kink: got {g}, documented {expected}"
                continue
            d = _smooth_derivative(ref, point, k)
            if d is not None:
                assert abs(g - d) <= 1e-6 * max(abs(g), abs(d)) + 1e-9, \
                    f"d/da{k} {where[i]}: got {g!r}, finite difference {d!r}"


def _smooth_derivative(ref, point, k):
    """The central difference of numpy's ``ref`` along operand k, or None where the
    function is not smooth at the point (one-sided differences disagree) or not finite."""
    x = point[k]
    h = 1e-6 * max(1.0, abs(x))

    def at(t):
        p = list(point)
        p[k] = x + t
        with np.errstate(all="ignore"):
            return float(np.asarray(ref(*[np.asarray(v) for v in p])))
    f0, fp, fm = at(0.0), at(h), at(-h)
    if not all(np.isfinite([f0, fp, fm])) or max(abs(v) for v in point) > 1e6:
        return None
    right, left, central = (fp - f0) / h, (f0 - fm) / h, (fp - fm) / (2 * h)
    if abs(right - left) > 1e-3 * max(abs(right), abs(left), 1.0):
        return None
    return central
