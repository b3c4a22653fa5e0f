"""matmul with numpy's N-D semantics and einsum: forward against numpy, gradients against
finite differences, the llvm backend and the ptx grid emulation against the interpreter,
ptxas on the batched kernels, and clear errors for operands that do not fit."""
from __future__ import annotations

import numpy as np
import pytest

import adjit as aj
from adjit.ir import DTypeError, ShapeError
from gradtools import check_model
from ptx_helpers import compare, emulated

BATCH = 3


def _concrete(shape, batch=BATCH):
    return tuple(batch if d is None else d for d in shape)


def _values(shapes, batch=BATCH, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(_concrete(s, batch)).astype(dtype) for k, s in shapes.items()}


# (a, b) shapes: 1-D x 1-D / N-D, N-D x 1-D, equal and broadcast batch axes, the batch
# axis None on either side or both, size-0 and size-1 axes, odd sizes
MATMUL_SHAPES = [
    ((3,), (3,)), ((4,), (4, 5)), ((5, 4), (4,)), ((3,), (2, 3, 4)), ((2, 3, 4), (4,)),
    ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 5)),
    ((None, 5, 4), (4, 6)), ((None, 5, 4), (None, 4, 6)), ((None, 2, 5, 4), (None, 2, 4, 5)),
    ((None, 2, 5, 4), (2, 4, 3)), ((4, 5), (None, 5, 3)), ((None, 1, 3, 4), (1, 2, 4, 3)),
    ((None, 3, 4), (1, 4, 2)), ((None, 4), (4, 2)), ((4,), (None, 4, 2)),
    ((0, 3), (3, 2)), ((2, 0), (0, 3)), ((2, 3, 0), (2, 0, 4)), ((0, 2, 3), (3, 4)),
    ((2, 1, 3), (2, 3, 1)), ((1, 1), (1, 1)), ((7, 1, 5), (5, 9)),
]
IDS = [f"{sa}@{sb}" for sa, sb in MATMUL_SHAPES]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES, ids=IDS)
def test_matmul_matches_numpy_with_gradients(sa, sb):
    check_model(lambda a, b: a @ b, lambda a, b: np.asarray(np.matmul(a, b)),
                _values({"a": sa, "b": sb}), {"a": sa, "b": sb})


def _model(sa, sb, dtype, tag=""):
    """The product, and the gradients of a nonlinear loss of it (the backward products
    read transposes of the last two axes through the GEMM flag)."""
    a, b = aj.input("a" + tag, sa, dtype), aj.input("b" + tag, sb, dtype)
    out = a @ b
    return [out] + aj.grad(aj.sum(aj.tanh(out) * out), [a, b])


NATIVE_SHAPES = [s for s in MATMUL_SHAPES if None in s[0] + s[1]] + [
    ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)),
    ((2, 3, 0), (2, 0, 4)), ((1, 70, 3), (None, 3, 66)), ((None, 33, 17), (None, 17, 65))]


@pytest.mark.parametrize("batch", [0, 1, 4])
@pytest.mark.parametrize("sa, sb", NATIVE_SHAPES, ids=[f"{a}@{b}" for a, b in NATIVE_SHAPES])
def test_llvm_matches_the_interpreter(sa, sb, batch):
    for dtype in ("float64", "float32"):
        outs = _model(sa, sb, dtype)
        args = _values({"a": sa, "b": sb}, batch, seed=batch, dtype=dtype)
        compare(aj.compile(outs, backend="llvm"), outs, args, dtype)


@pytest.mark.parametrize("sa, sb", NATIVE_SHAPES, ids=[f"{a}@{b}" for a, b in NATIVE_SHAPES])
def test_ptx_emulation_matches_the_interpreter(sa, sb):
    for dtype in ("float64", "float32"):
        outs = _model(sa, sb, dtype)
        f = emulated(outs)
        for batch in (0, 1, 4):
            compare(f, outs, _values({"a": sa, "b": sb}, batch, seed=batch, dtype=dtype), dtype)


def test_large_stacks_match_numpy():
    """Products big enough for the packed, threaded GEMM paths, one GEMM per matrix and
    one GEMM for the whole stack ((None, T, D) @ (D, E))."""
    q, k = aj.input("q", (None, 2, 96, 80)), aj.input("k", (None, 2, 80, 130))
    x, w = aj.input("x", (None, 150, 96)), aj.param("w", (96, 200))
    f = aj.compile([q @ k, x @ w], backend="llvm")
    v = _values({"q": (None, 2, 96, 80), "k": (None, 2, 80, 130), "x": (None, 150, 96),
                 "w": (96, 200)}, batch=3, seed=5)
    got = f(**v)
    np.testing.assert_allclose(got[0], v["q"] @ v["k"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], v["x"] @ v["w"], rtol=1e-12, atol=1e-12)


def test_backward_transposes_are_gemm_views():
    """The VJP's transposes of the last two axes cost no copy on the native backends."""
    from adjit.backends.lowering.plan import Plan
    from adjit.compiled import compile as _compile  # noqa: F401 (the default pipeline)
    q, k = aj.input("q", (None, 4, 8, 6)), aj.input("k", (None, 4, 6, 8))
    loss = aj.sum(aj.tanh(q @ k))
    f = aj.compile(aj.grad(loss, [q, k]), backend="llvm")
    plan = Plan(f.graph)
    transposes = [n for n in f.graph.order() if n.op == "transpose"]
    assert transposes and all(plan.storage[n.id].kind == "view" for n in transposes)


def test_masked_cotangent_keeps_infinities_out():
    """A column of the product that a where discards everywhere (in every batch element)
    makes the matching column of b irrelevant: its inf gives no NaN in a's gradient."""
    a, b = aj.input("a", (None, 3, 4)), aj.input("b", (4, 5))
    keep = aj.input("keep", (5,), "bool")
    loss = aj.sum(aj.where(keep, a @ b, 0.0))
    ga = aj.grad(loss, a)
    A = _values({"a": (None, 3, 4)})["a"]
    B = _values({"b": (4, 5)}, seed=1)["b"]
    B[:, 2] = np.inf
    K = np.array([True, True, False, True, True])
    want = np.broadcast_to((K * 1.0) @ np.where(K, B, 0.0).T, A.shape)
    for backend in ("interp", "llvm"):
        got = aj.compile(ga, backend=backend)(a=A, b=B, keep=K)
        np.testing.assert_allclose(got, want, rtol=1e-12)


# --- einsum -----------------------------------------------------------------------------------
EINSUM = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhtd,bhsd->bhts", [(None, 2, 3, 4), (None, 2, 5, 4)]),
    ("bhts,bhsd->bhtd", [(None, 2, 3, 5), (None, 2, 5, 4)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]), ("ij->j", [(None, 4)]), ("ijk->kij", [(2, 3, 4)]),
    ("i,j->ij", [(3,), (4,)]), ("i,i->", [(5,)] * 2), ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,ij->i", [(None, 4), (None, 4)]), ("bi,bj->ij", [(None, 4), (None, 5)]),
    ("bti,btj->ij", [(None, 3, 4), (None, 3, 5)]), ("btd,de->bte", [(None, 3, 4), (4, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]), ("ijk,jl->ilk", [(2, 3, 4), (3, 5)]),
    ("abc,cd,db->a", [(2, 3, 4), (4, 5), (5, 3)]), ("i,i", [(4,)] * 2), ("ji", [(3, 4)]),
    ("ij,kl->ikjl", [(2, 3), (4, 1)]), ("bij,bjk->", [(0, 3, 4), (0, 4, 2)]),
]


@pytest.mark.parametrize("spec, shapes", EINSUM, ids=[s for s, _ in EINSUM])
def test_einsum_matches_numpy_with_gradients(spec, shapes):
    names = {f"x{k}": s for k, s in enumerate(shapes)}
    check_model(lambda **xs: aj.einsum(spec, *xs.values()),
                lambda **xs: np.asarray(np.einsum(spec, *xs.values())),
                _values(names), names)


@pytest.mark.parametrize("spec, shapes", [EINSUM[1], EINSUM[13], EINSUM[16], EINSUM[17]],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_einsum_native_backends(spec, shapes):
    xs = [aj.input(f"x{k}", s) for k, s in enumerate(shapes)]
    out = aj.einsum(spec, *xs)
    outs = [out] + aj.grad(aj.sum(out * out), xs)
    for batch in (1, 3):
        args = _values({f"x{k}": s for k, s in enumerate(shapes)}, batch)
        compare(aj.compile(outs, backend="llvm"), outs, args, "float64")
        compare(emulated(outs), outs, args, "float64")


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sa, sb, match", [
    ((3,), (4,), "inner sizes 3 and 4"), ((2, 3), (4, 5), "inner sizes 3 and 4"),
    ((2, 3, 4), (5,), "inner sizes 4 and 5"), ((2, 3, 4), (3, 4, 2), "batch dimensions"),
    ((None, 3, 4), (2, 4, 5), "batch dimensions"), ((), (3,), "rank >= 1")])
def test_matmul_errors_name_the_operands(sa, sb, match):
    a, b = aj.input("lhs", sa), aj.input("rhs", sb)
    with pytest.raises(ShapeError, match=match) as err:
        a @ b
    assert "lhs" in str(err.value) and "rhs" in str(err.value)


def test_matmul_dtypes():
    with pytest.raises(DTypeError, match="float"):
        aj.input("i", (2, 3), "int32") @ aj.input("w", (3, 2))
    out = aj.input("a", (2, 3), "float32") @ aj.input("b", (None, 3, 2))
    assert out.dtype == "float64" and out.shape == (None, 2, 2)


@pytest.mark.parametrize("spec, shapes, match", [
    ("ii->", [(3, 3)], "repeats an index"), ("ii->i", [(3, 3)], "repeats an index"),
    ("...ij->ij", [(2, 3)], r"'\.\.\.'"), ("ij,jk->ik", [(2, 3), (4, 5)], "index 'j'"),
    ("ijk->", [(2, 3)], "names 3 axes"), ("ij->k", [(2, 3)], "name no operand axis"),
    ("ij->ii", [(2, 3)], "repeats"), ("ij,jk", [(2, 3)], "2 operand specs"),
    ("i1->", [(2, 3)], "letters")])
def test_einsum_errors(spec, shapes, match):
    xs = [aj.input(f"x{k}", s) for k, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match=match):
        aj.einsum(spec, *xs)


# --- ptxas ------------------------------------------------------------------------------------
def test_ptxas_accepts_batched_products():
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import ptxas_path
    if ptxas_path() is None:
        pytest.skip("ptxas (CUDA toolkit) is not on the PATH")
    outs = _model((None, 2, 5, 4), (2, 4, 3), "float32") + _model((None, 5, 4), (4, 6), "float64", "2")
    f = aj.compile(outs, backend="ptx")
    for arch in ("sm_80", "sm_90"):
        assemble(f.ptx_for(arch), arch)


def test_second_order_through_batched_products():
    """The VJP is made of products, sums and transposes: it differentiates again."""
    a, b = aj.input("a", (None, 3, 4)), aj.input("b", (4, 2))
    g = aj.grad(aj.sum(aj.tanh(a @ b)), [a, b])
    loss = aj.sum(g[0] * g[0]) + aj.sum(g[1] * g[1])
    report = aj.check_grads(loss, [a, b], _values({"a": (None, 3, 4), "b": (4, 2)}), rtol=1e-6)
    assert report.ok and report.checked > 0
