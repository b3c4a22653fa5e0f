"""take, take_along_axis and their gradient scatter_add: numpy references, gradients
against finite differences, llvm and the ptx emulation against the interpreter, ptxas,
repeated and negative indices, index checks at call time, clamping of computed indices,
batch sizes 0 and 1, and the cost of an embedding's backward."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx")]

import adjit as aj  # noqa: E402
from gradtools import check_model  # noqa: E402
from ptx_helpers import assert_close, compare, emulated  # noqa: E402

RNG = np.random.default_rng(14)


# --- forward values and gradients (interp, against numpy and finite differences) ----------
TAKE_CASES = [  # a shape, index values, axis
    ((7, 3), [[0, 1, 1, -1], [6, 2, 2, -7]], 0),         # an embedding: repeats, negatives
    ((2, 5, 3), [4, -5, 0, 4], 1),
    ((2, 3, 4), [[3], [-1]], 2),
    ((4,), 2, 0),                                          # a scalar index
    ((3, 4), [5, 0, -12, 11, 11], None),                   # flattened
    ((5, 2), np.zeros((0,), "int64"), 0),                  # no indices
]


@pytest.mark.parametrize("shape, ids, axis", TAKE_CASES)
@pytest.mark.parametrize("idtype", ["int32", "int64"])
def test_take(shape, ids, axis, idtype):
    ids = np.asarray(ids, dtype=idtype)
    a = RNG.standard_normal(shape)
    check_model(lambda a, i: aj.take(a, i, axis=axis),
                lambda a, i: np.take(a, i, axis=axis),
                {"a": a, "i": ids}, {"a": shape, "i": ids.shape}, dtypes={"i": idtype})


ALONG_CASES = [  # a shape, index shape, axis (values drawn in [-n, n))
    ((3, 5), (3, 4), 1),
    ((3, 5), (6, 5), 0),
    ((2, 3, 4), (2, 3, 1), 2),
    ((2, 3, 4), (1, 7, 4), 1),                             # indices broadcast
    ((3, 4), (5,), None),
]


@pytest.mark.parametrize("shape, ishape, axis", ALONG_CASES)
def test_take_along_axis(shape, ishape, axis):
    n = int(np.prod(shape)) if axis is None else shape[axis]
    ids = RNG.integers(-n, n, size=ishape)
    a = RNG.standard_normal(shape)
    check_model(lambda a, i: aj.take_along_axis(a, i, axis),
                lambda a, i: np.take_along_axis(a, i, axis=axis),
                {"a": a, "i": ids}, {"a": shape, "i": ishape}, dtypes={"i": "int64"})


def test_scatter_adds_repeated_indices():
    E = aj.param("E", (6, 2))
    ids = aj.input("ids", (None, 3), "int64")
    u = aj.input("u", (None, 3, 2))
    g = aj.grad(aj.sum(aj.take(E, ids, axis=0) * u), E)
    iv = np.array([[1, 1, 1], [-5, 3, 1]])
    uv = RNG.standard_normal((2, 3, 2))
    want = np.zeros((6, 2))
    np.add.at(want, iv, uv)
    for backend in ("interp", "llvm"):
        got = aj.compile(g, backend=backend)(E=np.zeros((6, 2)), ids=iv, u=uv)
        np.testing.assert_allclose(got, want, rtol=1e-14)
    assert_close(emulated(g)(E=np.zeros((6, 2)), ids=iv, u=uv), want, "float64")


def test_second_order_through_the_scatter():
    # d/dE of sum(grad(sum(take(E)^3))^2): the scatter's own VJP is the gather again
    ids = np.array([[0, 2, 2], [-1, 0, 3]])

    def ref(E, i):
        g = np.zeros_like(E)
        np.add.at(g, i, 3 * E[i] ** 2)
        return g

    check_model(lambda E, i: aj.grad(aj.sum(aj.take(E, i, axis=0) ** 3), E), ref,
                {"E": RNG.standard_normal((4, 3)), "i": ids}, {"E": (4, 3), "i": ids.shape},
                dtypes={"i": "int64"})


def test_along_gradient_is_a_scatter_along_the_axis():
    x = RNG.standard_normal((3, 5))
    check_model(lambda x: aj.take_along_axis(x, aj.argmax(x, axis=1, keepdims=True), 1) * 2.0,
                lambda x: 2.0 * np.take_along_axis(x, np.argmax(x, 1)[:, None], 1),
                {"x": x}, {"x": (3, 5)})


# --- backends: llvm and the ptx emulation against the interpreter ------------------------
def _model(dtype):
    E = aj.param("E", (9, 4), dtype)
    ids = aj.input("ids", (None, 3), "int32")
    x = aj.input("x", (None, 6), dtype)
    emb = aj.take(E, ids, axis=0)                                   # (B, 3, 4)
    cols = aj.take(x, ids, axis=1)                                  # (B, B, 3)
    best = aj.take_along_axis(x, aj.argmax(x, axis=1, keepdims=True), 1)
    rows = aj.take(x, aj.const(np.array([0, -1, 0], "int64")), axis=0)  # along the batch axis
    loss = (aj.sum(aj.tanh(emb)) + aj.sum(cols * cols) + aj.sum(best ** 3)
            + aj.sum(aj.sin(rows)))
    return [emb, cols, best, rows, loss] + aj.grad(loss, [E, x])


def _args(dtype, batch):
    return {"E": RNG.standard_normal((9, 4)).astype(dtype),
            "ids": RNG.integers(-6, 6, size=(batch, 3)).astype("int32"),
            "x": RNG.standard_normal((batch, 6)).astype(dtype)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_agree(dtype):
    outs = _model(dtype)
    f_llvm, f_ptx = aj.compile(outs, backend="llvm"), emulated(outs)
    for batch in (5, 1, 0):
        args = _args(dtype, batch)
        want = compare(f_ptx, outs, args, dtype)
        got = f_llvm(**args)
        for k, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, dtype, what=f"llvm output {k}, batch {batch}")


def test_ptxas_accepts_the_kernels():
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import ptxas_path
    if ptxas_path() is None:
        pytest.skip("ptxas (CUDA toolkit) is not on the PATH")
    for dtype in ("float32", "float64"):
        f = aj.compile(_model(dtype), backend="ptx")
        assert any("scatter" in L.what for L in f.launches)
        assert f".add.f{dtype[-2:]}" in f.ptx_for("sm_80")      # the atomic add
        for arch in ("sm_80", "sm_90"):
            assemble(f.ptx_for(arch), arch)


# --- indices out of range -----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["interp", "llvm"])
@pytest.mark.parametrize("bad", [7, -8, 100])
def test_input_indices_out_of_range_raise_naming_the_input(backend, bad):
    E = aj.param("E", (7, 2))
    ids = aj.input("ids", (None,), "int64")
    f = aj.compile(aj.take(E, ids, axis=0), backend=backend)
    E_ = np.ones((7, 2))
    f(E=E_, ids=np.array([-7, 6, 0]))           # the whole valid range
    with pytest.raises(aj.DTypeError, match=r"input 'ids': indices must lie in -7 to 6 "
                                            r"\(take along axis 0 of size 7\), got "
                                            + str(bad)):
        f(E=E_, ids=np.array([0, bad, 1]))
    if backend == "llvm":
        bound = f.bind(E=E_)
        ids_ = np.array([1, 2])
        bound(ids=ids_)
        with pytest.raises(aj.DTypeError, match="input 'ids'"):
            bound(ids=np.array([bad]))
        b2 = f.bind(E=E_, ids=ids_)
        ids_[0] = bad
        with pytest.raises(aj.DTypeError, match="bound input 'ids'"):
            b2()


def test_indices_read_by_one_hot_and_take_must_suit_both():
    E = aj.param("E", (10, 2))
    y = aj.input("y", (None,), "int32")
    out = aj.sum(aj.take(E, y, axis=0)) + aj.sum(aj.one_hot(y, 4))
    f = aj.compile(out, backend="llvm")
    f(E=np.ones((10, 2)), y=np.array([0, 3], "int32"))
    with pytest.raises(aj.DTypeError, match="one_hot with 4 classes"):
        f(E=np.ones((10, 2)), y=np.array([5], "int32"))
    with pytest.raises(aj.DTypeError, match="one_hot"):
        f(E=np.ones((10, 2)), y=np.array([-1], "int32"))


def test_constant_indices_are_checked_at_compile():
    E = aj.param("E", (3,))
    with pytest.raises(aj.DTypeError, match="constant indices: indices must lie in -3 to 2"):
        aj.compile(aj.take(E, [0, 3]), backend="interp")


@pytest.mark.parametrize("backend", ["interp", "llvm", "ptx"])
def test_computed_indices_are_clamped(backend):
    # indices read from a table (a gather of ints) are computed: wrapped, then clamped
    table = aj.const(np.array([0, 9, -1, -12, 2], "int64"))
    pick = aj.input("pick", (None,), "int64")
    E = aj.param("E", (4,))
    out = aj.take(E, aj.take(table, pick), axis=0)
    f = emulated(out) if backend == "ptx" else aj.compile(out, backend=backend)
    got = f(E=np.array([10.0, 11.0, 12.0, 13.0]), pick=np.arange(5))
    np.testing.assert_array_equal(got, [10.0, 13.0, 13.0, 10.0, 12.0])


def test_declaration_errors():
    a = aj.input("a", (None, 3))
    with pytest.raises(aj.DTypeError, match="int32 or int64"):
        aj.take(a, aj.input("f", (2,)), axis=1)
    with pytest.raises(aj.DTypeError, match="integers"):
        aj.take(a, [0.5], axis=1)
    with pytest.raises(aj.ShapeError, match="axis 2 out of range"):
        aj.take(a, [0], axis=2)
    with pytest.raises(aj.ShapeError, match="batch axis"):
        aj.take(a, [0])
    with pytest.raises(aj.ShapeError, match="same rank"):
        aj.take_along_axis(a, aj.input("i", (3,), "int64"), 1)
    with pytest.raises(aj.ShapeError, match="do not broadcast"):
        aj.take_along_axis(aj.input("b", (2, 3)), aj.input("j", (4, 1), "int64"), 1)
    with pytest.raises(aj.ShapeError, match="empty axis"):
        aj.take(aj.input("e", (0, 2)), [0], axis=0)


# --- an embedding's backward costs O(B·T·dim) -------------------------------------------------
def test_embedding_backward_is_proportional_to_the_ids():
    V, D, B, T = 50_000, 64, 8, 32
    E = aj.param("E", (V, D), "float32")
    ids = aj.input("ids", (None, T), "int64")
    u = aj.input("u", (None, T, D), "float32")
    g = aj.grad(aj.sum(aj.take(E, ids, axis=0) * u), E)
    f = aj.compile(g, backend="llvm")
    args = {"E": np.zeros((V, D), "float32"), "ids": RNG.integers(0, V, size=(B, T)),
            "u": RNG.standard_normal((B, T, D)).astype("float32")}
    got = f(**args)
    # the gradient is one scatter-add of the B·T rows (no one-hot, no product with the
    # vocabulary): its time is measured in benchmarks/embedding_bench.py
    steps = f.graph.op_counts()
    assert steps.get("scatter_add") == 1 and "one_hot" not in steps and "matmul" not in steps
    want = np.zeros((V, D), "float32")
    np.add.at(want, args["ids"], args["u"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
