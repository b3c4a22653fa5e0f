"""Random numbers in the graph (aj.random, aj.dropout, nn.Dropout, the Trainer's keys).

The oracle is numpy's own Philox bit generator (``np.random.Philox``), itself checked here
against the Random123 known-answer vectors and a vectorized Philox4x64-10 written in this
file: adjit's stream for key ``[k0, k1]`` and stream ``s`` is
``np.random.Philox(key=[k0 | k1 << 32, 0], counter=[0, s, 0, 0]).random_raw(n)``.
The llvm backend and the ptx grid emulation must give the interpreter's bits exactly.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import adjit as aj
from adjit import nn, optim, train
from gradtools import check_model, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ptx"))
from ptx_helpers import emulated  # noqa: E402

KEYS = [(0, 0), (1, 2), (2 ** 32 - 1, 2 ** 32 - 1), (12345, 0), (0, 987654321)]


# --- an independent Philox4x64-10 (Random123's algorithm), vectorized over counters --------
_M = (np.uint64(0xD2E7470EE14C6C93), np.uint64(0xCA5A826395121157))
_W = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBB67AE8584CAA73B))
_LO, _S = np.uint64(0xFFFFFFFF), np.uint64(32)


def _mulhilo(a, b):
    al, ah, bl, bh = a & _LO, a >> _S, b & _LO, b >> _S
    ll, lh, hl = al * bl, al * bh, ah * bl
    mid = (ll >> _S) + (lh & _LO) + (hl & _LO)
    return ah * bh + (lh >> _S) + (hl >> _S) + (mid >> _S), a * b


def philox4x64_10(ctr, key):
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in ctr)
    k0, k1 = (np.uint64(k) for k in key)
    with np.errstate(over="ignore"):
        for r in range(10):
            if r:
                k0, k1 = k0 + _W[0], k1 + _W[1]
            hi0, lo0 = _mulhilo(_M[0], c0)
            hi1, lo1 = _mulhilo(_M[1], c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3], axis=-1)


def numpy_words(key, n, stream=0):
    """adjit's documented mapping onto numpy's bit generator."""
    k0, k1 = (int(v) for v in key)
    gen = np.random.Philox(key=np.array([k0 | k1 << 32, 0], np.uint64),
                           counter=np.array([0, stream, 0, 0], np.uint64))
    return gen.random_raw(n) if n else np.zeros(0, np.uint64)


def expected(key, shape, dtype, stream=0):
    n = int(np.prod(shape, dtype=np.int64))
    w = numpy_words(key, n, stream)
    if dtype == "uint32":
        out = (w >> np.uint64(32)).astype(np.uint32)
    elif dtype == "float64":
        out = (w >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    else:
        out = (w >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return out.reshape(shape)


def test_numpy_philox_is_random123s_philox4x64_10():
    # Random123's known-answer vectors (kat_vectors: philox4x64 10 rounds)
    kat = [((0, 0, 0, 0), (0, 0),
            (0x16554d9eca36314c, 0xdb20fe9d672d0fdc, 0xd7e772cee186176b, 0x7e68b68aec7ba23b)),
           ((2 ** 64 - 1,) * 4, (2 ** 64 - 1,) * 2,
            (0x87b092c3013fe90b, 0x438c3c67be8d0224, 0x9cc7d7c69cd777b6, 0xa09caebf594f0ba0)),
           ((0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0, 0x082efa98ec4e6c89),
            (0x452821e638d01377, 0xbe5466cf34e90c6c),
            (0xa528f45403e61d95, 0x38c72dbd566e9788, 0xa5a1610e72fd18b5, 0x57bd43b5e52b7fe6))]
    for ctr, key, want in kat:
        assert tuple(int(v) for v in philox4x64_10(ctr, key)) == want
    # numpy increments the counter before each block: word i is lane i % 4 of block i//4 + 1
    for key in KEYS:
        for stream in (0, 1, 2 ** 32 + 5):
            k = key[0] | key[1] << 32
            j = np.arange(1, 5, dtype=np.uint64)
            z = np.zeros(4, np.uint64)
            mine = philox4x64_10((j, z + np.uint64(stream), z, z), (k, 0)).reshape(-1)
            np.testing.assert_array_equal(mine[:15], numpy_words(key, 15, stream))


# --- the interpreter is numpy's stream ---------------------------------------------------------
SHAPES = [((), None), ((1,), None), ((7,), None), ((3, 5), None), ((None, 3), 0),
          ((None, 3), 1), ((None, 3), 5), ((2, None, 3), 4), ((None,), 9)]


def _with_batch(outs, shape, batch):
    """Outputs plus the input that binds the batch size (when the shape needs one)."""
    if None in shape:
        b = aj.input("b", (None,))
        return outs, {"b": np.zeros(batch)}, b
    return outs, {}, None


@pytest.mark.parametrize("dtype", ["uint32", "float32", "float64"])
@pytest.mark.parametrize("shape, batch", SHAPES)
def test_bits_are_numpys_philox_stream(shape, batch, dtype):
    key = aj.random.key_input()
    out = aj.random.bits(key, shape) if dtype == "uint32" else aj.random.uniform(key, shape, dtype)
    outs, extra, b = _with_batch([out], shape, batch)
    if b is not None:
        outs = outs + [b]
    f = aj.compile(outs, backend="interp")
    concrete = tuple(batch if d is None else d for d in shape)
    for k in KEYS:
        got = f(key=np.array(k, np.uint32), **extra)[0]
        assert got.dtype == np.dtype(dtype) and got.shape == concrete
        np.testing.assert_array_equal(got, expected(k, concrete, dtype))


def test_uniform_values_are_exact_grids():
    key = aj.random.key_input()
    u64, u32 = aj.random.uniform(key, (5000,)), aj.random.uniform(key, (5000,), "float32")
    a, b = run([u64, u32], key=np.array([3, 4], np.uint32))
    assert (0 <= a).all() and (a < 1).all() and (0 <= b).all() and (b < 1).all()
    np.testing.assert_array_equal(a * 2.0 ** 53, np.floor(a * 2.0 ** 53))
    np.testing.assert_array_equal(b.astype(np.float64) * 2.0 ** 24,
                                  np.floor(b.astype(np.float64) * 2.0 ** 24))
    # float32 takes the top 24 bits of the same word: it is float64's value rounded down
    np.testing.assert_array_equal(b, np.floor(a * 2.0 ** 24) / 2.0 ** 24)


# --- llvm and ptx give the interpreter's bits exactly -----------------------------------------
def _every_draw(dtype):
    key = aj.random.key_input()
    b = aj.input("b", (None, 3), dtype)
    k1, k2 = aj.random.split(key)
    outs = [aj.random.uniform(key, (None, 3), dtype) + b, aj.random.uniform(key, (37,), dtype),
            aj.random.bits(key, (2, None, 5)), aj.random.uniform(k2, (None, 3), dtype),
            aj.random.bernoulli(k1, 0.25, (None, 7)), k1, aj.random.fold_in(key, 7),
            aj.dropout(b, 0.5, key), aj.random.bits(key, (None, 1), stream=2 ** 40 + 3)]
    # arithmetic on the draws: a few ulp (FMA contraction, mathfn against numpy's libm)
    close = [aj.random.normal(key, (None, 6), dtype),
             aj.random.uniform(k2, (None, 3), dtype, -2.0, 3.0)]
    return outs, close


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["llvm", "ptx"])
def test_backends_give_the_interpreters_bits(backend, dtype):
    exact, close = _every_draw(dtype)
    outs = exact + close
    want_f = aj.compile(outs, backend="interp")
    got_f = emulated(outs) if backend == "ptx" else aj.compile(outs, backend="llvm")
    rng = np.random.default_rng(0)
    for batch in (0, 1, 5):
        for k in KEYS[:3]:
            args = {"key": np.array(k, np.uint32), "b": rng.standard_normal((batch, 3)).astype(dtype)}
            want, got = want_f(**args), got_f(**args)
            for w, g in zip(want, got):
                assert g.dtype == w.dtype and g.shape == w.shape
            for w, g in zip(want[:len(exact)], got[:len(exact)]):
                np.testing.assert_array_equal(g, w)
            for w, g in zip(want[len(exact):], got[len(exact):]):
                np.testing.assert_allclose(g, w, rtol=4 * np.finfo(dtype).eps,
                                           atol=4 * np.finfo(dtype).eps)


def test_llvm_large_draw_is_exact():
    # many blocks, the parallel path of the llvm backend (threads split the steps)
    key = aj.random.key_input()
    x = aj.input("x", (None, 1000))
    outs = [aj.random.uniform(key, (None, 1000)) + x, aj.random.bits(key, (None, 1000))]
    args = {"key": np.array([9, 9], np.uint32), "x": np.zeros((300, 1000))}
    for w, g in zip(run(outs, **args), aj.compile(outs, backend="llvm")(**args)):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(run(outs, **args)[1], expected((9, 9), (300, 1000), "uint32"))


def test_ptxas_accepts_the_philox_kernels():
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import ptxas_path, registers
    exact, close = _every_draw("float32")
    f = aj.compile(exact + close, backend="ptx")
    assert "mul.hi.u64" in f.ptx          # the 128-bit product is NVPTX's mul.hi
    if ptxas_path() is None:
        pytest.skip("ptxas (CUDA toolkit) is not on the PATH")
    for arch in ("sm_80", "sm_90"):
        used = registers(assemble(f.ptx_for(arch), arch))
        assert set(used) == {L.kernel for L in f.launches}


# --- distributions (a fixed key: deterministic) -----------------------------------------------
N = 200_000


def _draws(dtype="float64"):
    key = aj.random.key_input()
    k1, k2 = aj.random.split(key)
    outs = [aj.random.uniform(key, (N,), dtype), aj.random.normal(key, (N,), dtype),
            aj.cast(aj.random.bernoulli(k1, 0.3, (N,)), dtype),
            aj.random.uniform(k1, (N,), dtype), aj.random.uniform(k2, (N,), dtype),
            aj.random.normal(k2, (N,), dtype)]
    return run(outs, key=np.array([2024, 7], np.uint32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_moments_within_four_standard_errors(dtype):
    u, z, bern, u1, u2, z2 = (a.astype(np.float64) for a in _draws(dtype))
    se = lambda sd: 4 * sd / np.sqrt(N)
    assert abs(u.mean() - 0.5) < se(np.sqrt(1 / 12))
    assert abs(u.var() - 1 / 12) < se(np.sqrt(1 / 180))           # var of (u - 1/2)^2
    assert abs(z.mean()) < se(1.0) and abs(z2.mean()) < se(1.0)
    assert abs(z.var() - 1.0) < se(np.sqrt(2.0))
    assert abs(np.mean(z ** 4) - 3.0) < se(np.sqrt(96.0))        # kurtosis of a normal
    assert abs(np.mean(np.abs(z) > 1.959964) - 0.05) < se(np.sqrt(0.05 * 0.95))
    assert abs(bern.mean() - 0.3) < se(np.sqrt(0.21))
    # split keys and the parent draw independent numbers
    for a, b in ((u, u1), (u, u2), (u1, u2), (z, z2)):
        assert abs(np.corrcoef(a, b)[0, 1]) < se(1.0)
    assert np.isfinite(z).all() and np.abs(z).max() < (8.6 if dtype == "float64" else 5.8)


def test_normal_is_box_muller_of_two_streams():
    key = aj.random.key_input()
    z = run(aj.random.normal(key, (4, 5)), key=np.array([5, 6], np.uint32))
    u1, u2 = expected((5, 6), (4, 5), "float64", 0), expected((5, 6), (4, 5), "float64", 1)
    np.testing.assert_allclose(z, np.sqrt(-2 * np.log(1 - u1)) * np.cos(2 * np.pi * u2),
                               rtol=1e-15, atol=1e-15)


def test_bernoulli_edges_and_node_p():
    key = aj.random.key_input()
    p = aj.input("p", (None, 4))
    outs = [aj.random.bernoulli(key, 0.0, (50,)), aj.random.bernoulli(key, 1.0, (50,)),
            aj.random.bernoulli(key, p), aj.random.bernoulli(key)]
    assert outs[2].shape == (None, 4) and outs[2].dtype == "bool" and outs[3].shape == ()
    P = np.array([[0.0, 1.0, 0.5, 0.2]] * 3)
    a, b, c, d = run(outs, key=np.array([1, 1], np.uint32), p=P)
    assert not a.any() and b.all()
    np.testing.assert_array_equal(c, expected((1, 1), (3, 4), "float64") < P)
    assert d == (expected((1, 1), (), "float64") < 0.5)


def test_split_and_fold_in():
    key = aj.random.key_input()
    keys = aj.random.split(key, 3)
    assert len(keys) == 3 and all(k.shape == (2,) and k.dtype == "uint32" for k in keys)
    k0 = (17, 4)
    vals = run(list(keys) + [aj.random.fold_in(key, 0), aj.random.fold_in(key, 1)],
               key=np.array(k0, np.uint32))
    for j in range(3):
        np.testing.assert_array_equal(vals[j], expected(k0, (2,), "uint32", 2 ** 32 + j))
    np.testing.assert_array_equal(vals[3], expected(k0, (2,), "uint32", 2 ** 33))
    assert len({tuple(v) for v in vals} | {k0}) == 6
    # a split key drives draws like any key (its draws are the stream of its value)
    u = run(aj.random.uniform(keys[1], (6,)), key=np.array(k0, np.uint32))
    np.testing.assert_array_equal(u, expected(tuple(vals[1]), (6,), "float64"))
    k1, k2 = aj.random.split(keys[0])   # split again: nodes all the way down
    assert k1.shape == (2,)


def test_uniform_bounds_and_keys_as_constants():
    key = aj.const(np.array([2 ** 31 + 5, 2 ** 32 - 2], np.uint32))   # above int32's range
    lo = aj.input("lo", ())
    outs = [aj.random.uniform(key, (9,), minval=-3.0, maxval=-1.0),
            aj.random.uniform(key, (9,), minval=lo, maxval=lo + 2.0)]
    u = expected((2 ** 31 + 5, 2 ** 32 - 2), (9,), "float64")
    for backend in ("interp", "llvm"):
        a, b = aj.compile(outs, backend=backend)(lo=1.5)
        np.testing.assert_allclose(a, -3.0 + 2.0 * u, rtol=1e-15)
        np.testing.assert_allclose(b, 1.5 + 2.0 * u, rtol=1e-15)
    a, b = emulated(outs)(lo=1.5)
    np.testing.assert_allclose(a, -3.0 + 2.0 * u, rtol=1e-15)


# --- dropout -------------------------------------------------------------------------------------
def _mask(key, shape, rate, dtype="float64"):
    return expected(key, shape, dtype) >= rate


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_values_and_gradient(rate):
    key = (11, 3)
    X = np.random.default_rng(1).standard_normal((6, 4))
    X[0, 0], X[1, 1] = 0.0, -0.0

    def ref(x, key):
        m = _mask(tuple(key), x.shape, rate)
        return np.where(m, x * (1.0 / (1.0 - rate)), 0.0)
    got, grads = check_model(lambda x, key: aj.dropout(x, rate, key), ref,
                             {"x": X, "key": np.array(key, np.uint32)},
                             {"x": (None, 4), "key": (2,)}, dtypes={"key": "uint32"}, wrt=["x"])
    kept = _mask(key, X.shape, rate)
    assert 0 < kept.sum() < kept.size
    # the gradient is the same mask times the cotangent, scaled
    u = np.random.default_rng(0).standard_normal(X.shape)
    np.testing.assert_allclose(grads["x"], np.where(kept, u / (1.0 - rate), 0.0), rtol=1e-15)


def test_dropout_edges():
    key = aj.random.key_input()
    x = aj.input("x", (None, 3))
    assert aj.dropout(x, 0, key) is x and aj.dropout(x, 0.0, key) is x
    y = aj.dropout(x, 1.0, key)
    X = np.array([[np.inf, -np.inf, np.nan], [1.0, 0.0, -2.0]])
    gx = aj.grad(aj.sum(y), x)
    for backend in ("interp", "llvm"):
        out, g = aj.compile([y, gx], backend=backend)(x=X, key=np.array([1, 2], np.uint32))
        np.testing.assert_array_equal(out, np.zeros_like(X))
        np.testing.assert_array_equal(g, np.zeros_like(X))
    # kept values are exactly x / (1 - rate); the fraction kept is about 1 - rate
    z = aj.dropout(x, 0.25, key)
    Z = run(z, x=np.ones((1000, 3)), key=np.array([4, 4], np.uint32))
    assert set(np.unique(Z)) <= {0.0, 1.0 / 0.75}
    assert abs((Z > 0).mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 3000)


@pytest.mark.parametrize("backend", ["llvm", "ptx"])
def test_dropout_gradient_on_the_backends(backend):
    key = aj.random.key_input()
    x = aj.input("x", (None, 5), "float32")
    w = aj.param("w", (5,), "float32")
    loss = aj.sum(aj.tanh(aj.dropout(x * w, 0.4, key)))
    outs = [loss] + aj.grad(loss, [x, w])
    args = {"x": np.random.default_rng(2).standard_normal((7, 5)).astype("float32"),
            "w": np.linspace(-1, 1, 5).astype("float32"), "key": np.array([8, 1], np.uint32)}
    want = aj.compile(outs, backend="interp")(**args)
    got = (emulated(outs) if backend == "ptx" else aj.compile(outs, backend="llvm"))(**args)
    for w_, g in zip(want, got):
        np.testing.assert_allclose(g, w_, rtol=1e-5, atol=1e-6)


def test_nn_dropout_layer():
    key = aj.random.key_input()
    x = aj.input("x", (None, 8))
    d1, d2 = nn.Dropout(0.5), nn.Dropout(0.5, name="second")
    assert d1.key is key and d2.key is key and d1.params == [] and d1.init() == {}
    outs = [d1(x), d2(x), d1(x, train=False), d1(x * 1.0), nn.Dropout(0.5)(x)]
    a, b, c, d, e = run(outs, x=np.ones((4, 8)), key=np.array([1, 2], np.uint32))
    assert not np.array_equal(a, b)            # named layers draw different masks
    assert not np.array_equal(a, d)            # so do different places in the model
    np.testing.assert_array_equal(a, e)        # built again: the same mask
    np.testing.assert_array_equal(c, np.ones((4, 8)))
    assert nn.Dropout(0.0)(x) is x
    own = nn.Dropout(0.2, key=aj.input("k2", (2,), "uint32"))
    assert own.key.name == "k2"
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.5)


# --- errors ----------------------------------------------------------------------------------------
def test_errors_name_the_key():
    fkey = aj.input("fkey", (2,))
    with pytest.raises(aj.DTypeError, match="fkey.*uint32"):
        aj.random.uniform(fkey, (3,))
    long_key = aj.input("long_key", (3,), "uint32")
    with pytest.raises(aj.ShapeError, match="long_key.*\\(2,\\)"):
        aj.random.normal(long_key, (3,))
    key = aj.random.key_input()
    with pytest.raises(aj.DTypeError, match="float32 or float64"):
        aj.random.uniform(key, (3,), "int32")
    with pytest.raises(ValueError, match="bad dimension"):
        aj.random.uniform(key, (3, -1))
    with pytest.raises(ValueError, match="num"):
        aj.random.split(key, 0)
    with pytest.raises(ValueError, match="data"):
        aj.random.fold_in(key, -1)
    x = aj.input("x", (3,))
    for rate in (-0.1, 1.5, float("nan"), x):
        with pytest.raises(ValueError, match="rate"):
            aj.dropout(x, rate, key)
    with pytest.raises(aj.DTypeError, match="uint32"):
        aj.cast(x, "uint32")
    with pytest.raises(aj.DTypeError):
        aj.dropout(aj.input("lab", (3,), "int32"), 0.5, key)


def test_binding_a_key_checks_it():
    key = aj.random.key_input()
    f = aj.compile(aj.random.uniform(key, (2,)), backend="interp")
    with pytest.raises(aj.ShapeError, match="'key'"):
        f(key=np.array([1, 2, 3], np.uint32))
    with pytest.raises(aj.DTypeError, match="'key'"):
        f(key=np.array([1.0, 2.0]))
    with pytest.raises(aj.DTypeError, match="'key'"):
        f(key=np.array([-1, 2]))
    with pytest.raises(aj.DTypeError, match="'key'"):
        f(key=np.array([2 ** 32, 2]))
    # any integers that fit, as a list or an int64 array, are a key
    np.testing.assert_array_equal(f(key=[1, 2]), f(key=np.array([1, 2], np.int64)))


def test_no_gradient_reaches_the_key():
    key = aj.random.key_input()
    x = aj.input("x", (4,))
    loss = aj.sum(aj.random.uniform(key, (4,)) * x)
    (gx,) = aj.grad(loss, [x])
    k = np.array([3, 1], np.uint32)
    np.testing.assert_array_equal(run(gx, key=k, x=np.zeros(4)), expected((3, 1), (4,), "float64"))


# --- the Trainer feeds a fresh key each step ------------------------------------------------------
def _dropout_model(seed=0):
    x, t = aj.input("x", (None, 3)), aj.input("t", (None, 1))
    mlp = nn.MLP([3, 8, 1], activation="tanh", prefix="r")
    h = nn.Dropout(0.3)(mlp.layers[0](x))
    loss = aj.mse(mlp.layers[1](h), t)
    return loss, mlp


def test_trainer_advances_the_key():
    loss, mlp = _dropout_model()
    tr = train.Trainer(loss, mlp.init(seed=0), optim.SGD(mlp.params, lr=1e-3),
                       backend="interp", key_seed=5)
    assert tr.key_names == ["key"] and "key" not in tr.data_names
    X = np.random.default_rng(0).standard_normal((16, 3))
    T = X[:, :1]
    # the loss of step n (at the parameters before it) is that of the key of step n
    f = aj.compile([loss], backend="interp")
    losses = []
    for n in range(1, 4):
        params = {k: v.copy() for k, v in tr.params.items()}
        losses.append(tr.step(x=X, t=T))
        want = f(x=X, t=T, key=tr.keys(n)["key"], **params)[0]
        assert losses[-1] == pytest.approx(float(want), rel=1e-12)
    assert tr.steps == 3 and len(set(losses)) == 3
    expect_keys = np.random.SeedSequence([5, 0, 2]).generate_state(2, np.uint32)
    np.testing.assert_array_equal(tr.keys(2)["key"], expect_keys)
    # a key passed by the caller is used as given
    k = np.array([1, 1], np.uint32)
    params = {k_: v.copy() for k_, v in tr.params.items()}
    assert tr.step(x=X, t=T, key=k) == pytest.approx(float(f(x=X, t=T, key=k, **params)[0]))
    # evaluation uses the fixed key of step 0
    ev = tr.evaluate({"x": X, "t": T})["loss"]
    assert ev == pytest.approx(float(f(x=X, t=T, key=tr.keys(0)["key"], **tr.params)[0]))


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_trainer_fit_is_reproducible_from_its_key_seed(backend):
    data = {"x": np.random.default_rng(1).standard_normal((64, 3))}
    data["t"] = np.sin(data["x"][:, :1])
    runs = []
    for key_seed in (0, 0, 1):
        loss, mlp = _dropout_model()
        tr = train.Trainer(loss, mlp.init(seed=0), optim.Adam(mlp.params, lr=0.02),
                           backend=backend, key_seed=key_seed)
        h = tr.fit(data, epochs=3, batch_size=16, progress=False)
        assert tr.steps == 12 and np.isfinite(h.loss).all()
        runs.append(tr.params["Wr1"].copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
