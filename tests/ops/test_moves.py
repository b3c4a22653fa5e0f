"""Indexing, joining and shaping (``adjit.ops.moves``, ``indexing``, ``shaping``).

Generated index expressions (random ints, slices with negative steps, None, ...) against
numpy, on every backend; gradients exactly against numpy's scatter of the cotangent (these
ops only move elements) and against finite differences (check_model); the batch axis with
B = 0, 1 and odd sizes; empty results; errors at declaration and at call time.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import assemble
from adjit.backends.ptx.sources import ptxas_path, registers
from adjit.ops.registry import min_batch as _min_batch
from gradtools import check_model, run

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "ptx"))
from ptx_helpers import compare, emulated  # noqa: E402


# --- generated index expressions -------------------------------------------------------------
def _bound(v, rng):
    return None if rng.random() < 0.3 else int(rng.integers(-7, 8))


def _key_part(n, rng, batch_axis):
    """One index for an axis of size n (None: the batch axis)."""
    r = rng.random()
    if batch_axis:
        return [slice(None), slice(None, None, -1), 0, -1, 1, slice(2), slice(-2, None),
                slice(1, 3), slice(-1, -4, -1), slice(None, -3, -1), slice(3, 3)][
            int(rng.integers(11))]
    if r < 0.25:
        return int(rng.integers(-n, n))
    step = None if rng.random() < 0.4 else int(rng.choice([-3, -2, -1, 1, 2, 3]))
    return slice(_bound(n, rng), _bound(n, rng), step)


def random_keys(shape, count, seed):
    rng = np.random.default_rng(seed)
    keys = []
    while len(keys) < count:
        nd = len(shape)
        m = int(rng.integers(0, nd + 1))             # axes indexed explicitly
        if rng.random() < 0.3:                        # some of them after an ellipsis
            tail = int(rng.integers(0, m + 1))
            axes = list(range(m - tail)) + [Ellipsis] + list(range(nd - tail, nd))
        else:
            axes = list(range(m))
        parts = [a if a is Ellipsis else _key_part(shape[a], rng, shape[a] is None)
                 for a in axes]
        for _ in range(int(rng.integers(0, 3))):      # Nones anywhere
            parts.insert(int(rng.integers(0, len(parts) + 1)), None)
        keys.append(tuple(parts) if len(parts) != 1 or rng.random() < 0.5 else parts[0])
    return keys


def min_batch(nodes):
    return _min_batch(aj.Graph(nodes).order())[0]


SHAPES = [(4, 5, 3), (7,), (None, 4, 3), (3, None), (None,)]
BATCHES = [0, 1, 2, 5]


def _cases():
    for k, shape in enumerate(SHAPES):
        yield pytest.param(shape, random_keys(shape, 24, seed=k), id=str(shape))


@pytest.mark.parametrize("shape, keys", list(_cases()))
def test_getitem_matches_numpy_and_scatters_the_gradient(shape, keys):
    """For each batch size, the keys whose result it can hold (the others are refused at
    call time: see test_batch_axis_slices_need_a_large_enough_batch)."""
    rng = np.random.default_rng(1)
    for B in BATCHES if None in shape else [None]:
        x = aj.input("x", shape)
        outs = [x[k] for k in keys]
        fits = [(k, o) for k, o in zip(keys, outs) if B is None or B >= min_batch([o])]
        assert fits or B < 2
        if not fits:
            continue
        keys_b, outs = zip(*fits)
        us = [aj.input(f"u{i}", o.shape) for i, o in enumerate(outs)]
        loss = sum(aj.sum(o * u) for o, u in zip(outs, us))
        f = aj.compile(list(outs) + [aj.grad(loss, x)], backend="interp")
        X = rng.standard_normal(tuple(B if d is None else d for d in shape))
        want = [X[k] for k in keys_b]
        U = [rng.standard_normal(w.shape) for w in want]
        got = f(x=X, **{f"u{i}": u for i, u in enumerate(U)})
        G = np.zeros_like(X)
        for k, u in zip(keys_b, U):
            G[k] += u
        for k, w, gt in zip(keys_b, want, got):
            assert gt.shape == w.shape, (k, gt.shape, w.shape)
            np.testing.assert_array_equal(gt, w, err_msg=str(k))
        np.testing.assert_allclose(got[-1], G, rtol=1e-14, atol=1e-14)


def test_batch_axis_slices_need_a_large_enough_batch():
    x = aj.input("x", (None, 2))
    for key, need in [(0, 1), (3, 4), (-1, 1), (-3, 3), (slice(3), 3), (slice(-2, None), 2),
                      (slice(1, 4), 4), (slice(-1, -4, -1), 3), (slice(None, -3, -1), 2),
                      (slice(4, 1, -1), 5), (slice(3, 3), 0), (slice(None), 0),
                      (slice(None, None, -1), 0)]:
        y = x[key]
        f = aj.compile(y * 2.0, backend="interp")
        for B in range(0, need + 3):
            X = np.arange(2.0 * B).reshape(B, 2)
            if B < need:
                with pytest.raises(aj.ShapeError, match=r"batch size %d is too small.*x\[" % B):
                    f(x=X)
            else:
                np.testing.assert_array_equal(f(x=X), X[key] * 2.0, err_msg=str(key))


def test_random_batch_axis_slices_are_exact_or_refused():
    """Every accepted slice of the batch axis gives numpy's result for each batch size it
    accepts at call time; every refused one has a size that varies with B."""
    rng = np.random.default_rng(7)
    x = aj.input("x", (None,))
    f_cache = {}
    for _ in range(150):
        key = slice(*(None if rng.random() < 0.3 else int(rng.integers(-6, 7)) for _ in "ab"),
                    None if rng.random() < 0.3 else int(rng.choice([-3, -2, -1, 1, 2, 3])))
        sizes = {len(np.arange(B)[key]) for B in range(30)}
        try:
            y = x[key]
        except aj.ShapeError as e:
            assert "depends on the batch size" in str(e)
            assert len(sizes) > 1 or sizes == {0}, key
            continue
        f = f_cache.setdefault(repr(key), aj.compile(y + 0.0, backend="interp"))
        need = min_batch([y])
        for B in range(12):
            X = np.arange(B, dtype=float)
            if B < need:
                with pytest.raises(aj.ShapeError, match="too small"):
                    f(x=X)
            else:
                np.testing.assert_array_equal(f(x=X), X[key], err_msg=f"{key} B={B}")


@pytest.mark.parametrize("key", [slice(1, None), slice(None, None, 2), slice(None, -1),
                                 slice(-3, 5), slice(None, None, -2), slice(-2, None, -1)])
def test_batch_dependent_slices_are_refused(key):
    with pytest.raises(aj.ShapeError, match="depends on the batch size"):
        aj.input("x", (None, 3))[key]


def test_index_errors():
    x = aj.input("x", (3, 4))
    with pytest.raises(aj.ShapeError, match="out of bounds"):
        x[3]
    with pytest.raises(aj.ShapeError, match="out of bounds"):
        x[:, -5]
    with pytest.raises(aj.ShapeError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(aj.ShapeError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(aj.ShapeError, match="step cannot be zero"):
        x[::0]
    for bad in (np.array([0, 1]), [0, 1], aj.input("i", (2,), "int64"), True, 1.5):
        with pytest.raises(TypeError, match="aj.take"):
            x[bad]
    with pytest.raises(TypeError, match="integers or None"):
        x[0.5:]


# --- every backend --------------------------------------------------------------------------
def _moves_model(dtype, tag=""):
    """Outputs of every move (slices on every axis, pads, joins) and their gradients."""
    x = aj.input("x" + tag, (None, 4, 3), dtype)
    w = aj.param("w" + tag, (5, 3), dtype)
    outs = [x[0], x[-1, ::-1], x[:, 1:3], x[::-1, ::-2, None], x[:2, 3:0:-2, -1],
            x[-2:, ..., 1], x[:, :0], w[::-1, 1:], w[4:1:-2], w[1, ::-1], w[::2, None, ...],
            aj.pad(w, ((1, 2), (0, 3)), constant_values=-1.5), aj.pad(x, ((0, 0), (2, 1), (1, 1))),
            aj.concatenate([w, w[:2] * 2.0, w[3:4]]), aj.concatenate([x, x[..., :1]], axis=-1),
            aj.stack([w, -w], axis=1), aj.repeat(w, 2, axis=0), aj.tile(x, (1, 2, 1)),
            aj.swapaxes(x, 0, 2), aj.moveaxis(x, 0, -1)] + aj.split(w, [1, 3], axis=0)
    loss = sum(aj.sum(o * o) * (k + 1.0) for k, o in enumerate(outs))
    return outs + aj.grad(loss, [x, w])


def _moves_args(dtype, B):
    rng = np.random.default_rng(B)
    return {"x": rng.standard_normal((B, 4, 3)).astype(dtype),
            "w": rng.standard_normal((5, 3)).astype(dtype)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_llvm_matches_the_interpreter(dtype):
    outs = _moves_model(dtype)
    f = aj.compile(outs, backend="llvm")
    for B in (2, 3, 7):
        compare(f, outs, _moves_args(dtype, B), dtype)
    with pytest.raises(aj.ShapeError, match="too small"):
        f(**_moves_args(dtype, 1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ptx_emulation_matches_the_interpreter(dtype):
    outs = _moves_model(dtype)
    f = emulated(outs)
    for B in (2, 5):
        compare(f, outs, _moves_args(dtype, B), dtype)


def test_bool_and_int_operands_move_on_every_backend():
    m = aj.input("m", (None, 3), "bool")
    i = aj.input("i", (None, 3), "int64")
    outs = [m[::-1, 1:], aj.pad(m[0], 2, constant_values=True), aj.concatenate([m, m[:, :1]], 1),
            i[1, ::-2], aj.pad(i, ((0, 0), (1, 0)), constant_values=7),
            aj.concatenate([i[:, 2:], i], axis=1)]
    args = {"m": np.random.default_rng(0).random((4, 3)) < 0.5,
            "i": np.arange(12).reshape(4, 3) - 5}
    want = aj.compile(outs, backend="interp")(**args)
    M, I = args["m"], args["i"]
    ref = [M[::-1, 1:], np.pad(M[0], 2, constant_values=True),
           np.concatenate([M, M[:, :1]], 1), I[1, ::-2], np.pad(I, ((0, 0), (1, 0)),
                                                                constant_values=7),
           np.concatenate([I[:, 2:], I], 1)]
    for w, r in zip(want, ref):
        assert w.dtype == r.dtype
        np.testing.assert_array_equal(w, r)
    for f in (aj.compile(outs, backend="llvm"), emulated(outs)):
        for g, w in zip(f(**args), want):
            np.testing.assert_array_equal(g, w)


@pytest.mark.skipif(ptxas_path() is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_ptxas_accepts_the_kernels(arch):
    f = aj.compile(_moves_model("float32", "32") + _moves_model("float64", "64"),
                   backend="ptx")
    used = registers(assemble(f.ptx_for(arch), arch))
    assert set(used) == {L.kernel for L in f.launches}
    assert {"slice", "pad", "concatenate"} <= {L.what.split()[0] for L in f.launches}


# --- joining and shaping against numpy, with gradients (finite differences) -----------------------
def _n(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("build, ref, shapes", [
    (lambda a, b: aj.concatenate([a, b], axis=0), lambda a, b: np.concatenate([a, b], 0),
     {"a": (2, 3), "b": (4, 3)}),
    (lambda a, b: aj.concatenate([a, b, a], axis=-1), lambda a, b: np.concatenate([a, b, a], -1),
     {"a": (None, 2), "b": (None, 3)}),
    (lambda a, b: aj.stack([a, b, a], axis=-1), lambda a, b: np.stack([a, b, a], -1),
     {"a": (None, 3), "b": (None, 3)}),
    (lambda a, b: aj.stack([a, b]), lambda a, b: np.stack([a, b]), {"a": (3,), "b": (3,)}),
    (lambda a: aj.pad(a, 2), lambda a: np.pad(a, 2), {"a": (2, 3)}),
    (lambda a: aj.pad(a, (1, 0), constant_values=3.0), lambda a: np.pad(a, (1, 0),
                                                                       constant_values=3.0),
     {"a": (2, 3)}),
    (lambda a: aj.pad(a, ((0, 0), (0, 2))), lambda a: np.pad(a, ((0, 0), (0, 2))),
     {"a": (None, 3)}),
    (lambda a: aj.pad(a, ((2, 1),)), lambda a: np.pad(a, ((2, 1),)), {"a": (2, 0)}),
    (lambda a: aj.expand_dims(a, (0, -1)), lambda a: np.expand_dims(a, (0, -1)), {"a": (None, 3)}),
    (lambda a: aj.squeeze(a), lambda a: np.squeeze(a), {"a": (1, 3, 1)}),
    (lambda a: aj.squeeze(a, -1) * 1.0, lambda a: np.squeeze(a, -1), {"a": (None, 1)}),
    (lambda a: aj.reshape(a, (None, -1)), lambda a: a.reshape(a.shape[0], -1), {"a": (None, 2, 3)}),
    (lambda a: aj.transpose(a, (-1, 0, 1)), lambda a: np.transpose(a, (-1, 0, 1)),
     {"a": (None, 2, 3)}),
    (lambda a: aj.swapaxes(a, -1, 0), lambda a: np.swapaxes(a, -1, 0), {"a": (2, 3, 4)}),
    (lambda a: aj.moveaxis(a, (0, 1), (-1, 0)), lambda a: np.moveaxis(a, (0, 1), (-1, 0)),
     {"a": (2, 3, 4)}),
    (lambda a: aj.repeat(a, 3, axis=1), lambda a: np.repeat(a, 3, axis=1), {"a": (None, 2)}),
    (lambda a: aj.repeat(a, 2), lambda a: np.repeat(a, 2), {"a": (2, 3)}),
    (lambda a: aj.repeat(a, 0, axis=0), lambda a: np.repeat(a, 0, axis=0), {"a": (2, 3)}),
    (lambda a: aj.tile(a, 2), lambda a: np.tile(a, 2), {"a": (2, 3)}),
    (lambda a: aj.tile(a, (3, 1, 2)), lambda a: np.tile(a, (3, 1, 2)), {"a": (2, 3)}),
    (lambda a: aj.tile(a, (1, 2)), lambda a: np.tile(a, (1, 2)), {"a": (None, 3)}),
    (lambda a: aj.split(a, 3, axis=1)[1], lambda a: np.split(a, 3, axis=1)[1], {"a": (None, 6)}),
    (lambda a: aj.split(a, [2, -1, 9])[1], lambda a: np.split(a, [2, -1, 9])[1], {"a": (5, 2)}),
    (lambda a: a[1:, None, ::-2] + a[:-1, None, ::2], lambda a: a[1:, None, ::-2] +
     a[:-1, None, ::2], {"a": (4, 5)}),
    (lambda a: a.T.sum(0) + abs(a).mean(axis=1) + a.max(1) + a.reshape(3, 2).sum(1),
     lambda a: a.T.sum(0) + abs(a).mean(axis=1) + a.max(1) + a.reshape(3, 2).sum(1),
     {"a": (3, 2)}),
    (lambda a: a.transpose(1, 0, 2).squeeze() + a.transpose((2, 1, 0)).squeeze(1).T,
     lambda a: a.transpose(1, 0, 2).squeeze() + a.transpose((2, 1, 0)).squeeze(1).T,
     {"a": (2, 1, 3)}),
])
def test_shaping_against_numpy(build, ref, shapes):
    values = {k: _n(*(5 if d is None else d for d in s), seed=i)
              for i, (k, s) in enumerate(shapes.items())}
    check_model(build, ref, values, shapes, rtol_forward=1e-7)


def test_iteration_unrolls_a_static_first_axis():
    x = aj.input("x", (3, 2))
    X = _n(3, 2)
    for row, want in zip(run(list(x), x=X), X):
        np.testing.assert_array_equal(row, want)
    for bad in (aj.input("b", (None, 2)), aj.input("s", ())):
        with pytest.raises(TypeError, match="cannot iterate"):
            list(bad)


def test_astype():
    x = aj.input("x", (2,))
    y = x.astype("float32")
    assert y.dtype == "float32" and x.astype("float64") is x
    np.testing.assert_array_equal(run(y, x=np.array([0.1, 2.0])),
                                  np.array([0.1, 2.0]).astype("float32"))


def test_split_pieces():
    x = aj.input("x", (None, 7))
    X = _n(3, 7)
    for arg in (7, [2, 5], [3, 3, 10], [-2]):
        pieces = aj.split(x, arg, axis=1)
        got = run(pieces, x=X)
        for g, w in zip(got, np.split(X, arg, axis=1)):
            np.testing.assert_array_equal(g, w)


def test_shaping_errors():
    x = aj.input("x", (None, 3))
    w = aj.input("w", (2, 3))
    for call, match in [
        (lambda: aj.concatenate([x, x], axis=0), "batch axis"),
        (lambda: aj.concatenate([w, aj.input("v", (2, 4))]), "differ outside axis 0"),
        (lambda: aj.concatenate([w, w], axis=2), "out of range"),
        (lambda: aj.concatenate([]), "at least one"),
        (lambda: aj.stack([w, aj.input("v", (3, 2))]), "one shape"),
        (lambda: aj.pad(x, 1), "batch axis"),
        (lambda: aj.pad(w, -1), "negative"),
        (lambda: aj.pad(w, ((1, 2, 3),)), "pad_width"),
        (lambda: aj.split(w, 4, axis=1), "divide"),
        (lambda: aj.split(x, 2, axis=0), "batch axis"),
        (lambda: aj.squeeze(w, 0), "not 1"),
        (lambda: aj.squeeze(x, 0), "size B"),
        (lambda: aj.expand_dims(w, 3), "out of range"),
        (lambda: aj.repeat(x, 2, axis=0), "2·B"),
        (lambda: aj.tile(x, (2, 1)), "tiled once"),
        (lambda: aj.transpose(w, (0, 2)), "bad axes"),
        (lambda: aj.moveaxis(w, 0, (0, 1)), "same number"),
    ]:
        with pytest.raises(aj.ShapeError, match=match):
            call()
    with pytest.raises(TypeError, match="sequence"):
        aj.concatenate(w)
    with pytest.raises(NotImplementedError, match="constant"):
        aj.pad(w, 1, mode="edge")
    with pytest.raises(aj.DTypeError):
        aj.concatenate([w, aj.input("k", (2, 3), "int64")])


def test_mixed_precision_joins_promote_like_numpy():
    a, b = aj.input("a", (2,), "float32"), aj.input("b", (3,), "float64")
    assert aj.concatenate([a, b]).dtype == "float64"
    assert aj.stack([a, a]).dtype == "float32"


def test_empty_results_and_empty_operands():
    x = aj.input("x", (None, 3))
    outs = [x[:, 3:], x[:0], aj.pad(x[:, :0], ((0, 0), (1, 1)), constant_values=2.0),
            aj.concatenate([x[:, :0], x, x[:, 2:2]], axis=1), x[:, ::-1][:, 1:1]]
    for B in (0, 1, 3):
        X = _n(B, 3)
        want = [X[:, 3:], X[:0], np.pad(X[:, :0], ((0, 0), (1, 1)), constant_values=2.0),
                X, X[:, ::-1][:, 1:1]]
        for backend in ("interp", "llvm"):
            got = aj.compile(outs, backend=backend)(x=X)
            for g, w in zip(got, want):
                assert g.shape == w.shape
                np.testing.assert_array_equal(g, w)
        got = emulated(outs)(x=X)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_bound_functions_check_the_batch_too():
    x = aj.input("x", (None, 2))
    w = aj.param("w", (2,))
    f = aj.compile(x[2] * w, backend="llvm")
    g = f.bind(w=np.ones(2))
    np.testing.assert_array_equal(g(x=np.eye(3, 2)), [0.0, 0.0])
    with pytest.raises(aj.ShapeError, match="batch size 2 is too small: x\\[2\\]"):
        g(x=np.eye(2))
    with pytest.raises(aj.ShapeError, match="at least 3"):
        f(x=np.eye(2), w=np.ones(2))


def test_passes_fold_and_merge_moves():
    c = aj.const(np.arange(12.0).reshape(3, 4))
    x = aj.input("x", (3, 4))
    y = c[::-1, 1:] + aj.pad(c, 1)[1:-1, 2:-1] + x[:, 1:] * 0.0
    z = x[:, 1] + x[:, 1]          # two equal slices become one
    f = aj.compile([y, z], backend="interp")
    counts = f.graph.op_counts()
    assert counts.get("pad", 0) == 0 and counts.get("slice", 0) == 2
    X = _n(3, 4)
    C = np.arange(12.0).reshape(3, 4)
    got = f(x=X)
    np.testing.assert_array_equal(got[0], C[::-1, 1:] + np.pad(C, 1)[1:-1, 2:-1] + 0.0 * X[:, 1:])
    np.testing.assert_array_equal(got[1], 2 * X[:, 1])


def test_second_derivatives_through_moves():
    x = aj.input("x", (4,))
    y = aj.sum(aj.concatenate([x[::-1] ** 3, aj.pad(x[1:], 1)]) ** 2)
    gx = aj.grad(y, x)
    hx = aj.grad(aj.sum(gx * aj.const(np.arange(4.0))), x)
    X = np.array([0.5, -1.0, 2.0, 0.25])

    def g_np(X):
        return 6 * X[::-1][::-1] ** 5 + np.concatenate([[0.0], 2 * X[1:]])
    h = run(hx, x=X)
    eps = 1e-6
    fd = np.array([(np.arange(4.0) @ (g_np(X + eps * e) - g_np(X - eps * e))) / (2 * eps)
                   for e in np.eye(4)])
    np.testing.assert_allclose(run(gx, x=X), g_np(X), rtol=1e-12)
    np.testing.assert_allclose(h, fd, rtol=1e-6)
