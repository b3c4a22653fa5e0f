"""nn.Embedding, nn.RNN and nn.Attention against numpy implementations of the same maths
(forward, finite-difference gradients, llvm = interp), and adjit's W7/W8 benchmark models
against the benchmarks' numpy reference.  These layers are built on aj.take, indexing,
aj.stack, aj.swapaxes and N-D matmul."""
import doctest
import os
import sys

import numpy as np
import pytest

import adjit as aj
from adjit import nn
from layertools import assert_backends_agree, check_layer_grads

RNG = np.random.default_rng(1414)


# --- numpy references ------------------------------------------------------------------------
def np_rnn(x, Wx, Wh, b, h0=None, act=np.tanh):
    h, hs = h0, []
    for t in range(x.shape[1]):
        z = x[:, t] @ Wx + b
        if h is not None:
            z = z + h @ Wh
        h = act(z)
        hs.append(h)
    return np.stack(hs, axis=1), h


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_attention(x, P, heads, causal, name="attn"):
    B, T, D = x.shape
    dh = D // heads

    def proj(k, z):
        return z @ P[f"{name}_W{k}"] + P.get(f"{name}_b{k}", 0.0)

    def split(z):
        return z.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
    q, k, v = (split(proj(c, x)) for c in "qkv")
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    o = (np_softmax(s) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    return proj("o", o)


def _nonzero_biases(values, layer):
    for p in layer.params:
        if p.ndim == 1:
            values[p.name] = 0.3 * RNG.standard_normal(p.shape)
    return values


# --- Embedding -------------------------------------------------------------------------------
def test_embedding_rows_and_scatter_add_gradient():
    emb = nn.Embedding(7, 3)
    ids = aj.input("ids", (None, 4), "int64")
    y = emb(ids)
    assert y.shape == (None, 4, 3) and [p.name for p in emb.params] == ["emb_weight"]
    I = np.array([[0, 6, 6, 2], [3, 3, 3, 3], [6, 0, 1, 5]])          # repeated ids
    values = {"ids": I, **emb.init(0)}
    W = values["emb_weight"]
    np.testing.assert_array_equal(aj.compile(y, backend="interp")(**values), W[I])
    grads = check_layer_grads(y, emb.params, values, lambda ids, emb_weight: emb_weight[ids])
    assert not grads["emb_weight"][4].any()                           # row never read
    assert_backends_agree(y, values)
    for batch in (1, 0):
        assert_backends_agree(y, {**values, "ids": I[:batch]})


def test_embedding_init_and_errors():
    emb = nn.Embedding(1000, 8, dtype="float32")
    W = emb.init(5)["emb_weight"]
    assert W.dtype == np.float32 and abs(W.std() - 1.0) < 0.05    # N(0, 1) as PyTorch
    with pytest.raises(aj.DTypeError, match="Embedding 'emb'.*integer"):
        emb(aj.input("f", (None, 2)))
    with pytest.raises(ValueError):
        nn.Embedding(0, 3)


# --- RNN -------------------------------------------------------------------------------------
@pytest.mark.parametrize("T,nonlinearity,with_h0", [(4, "tanh", False), (3, "relu", True),
                                                    (1, "tanh", True)])
def test_rnn_matches_numpy_and_finite_differences(T, nonlinearity, with_h0):
    rnn = nn.RNN(3, 5, nonlinearity)
    x = aj.input("x", (None, T, 3))
    h0 = aj.input("h0", (None, 5)) if with_h0 else None
    hs, last = rnn(x, h0)
    assert hs.shape == (None, T, 5) and last.shape == (None, 5)
    assert [p.name for p in rnn.params] == ["rnn_Wx", "rnn_Wh", "rnn_b"]
    act = np.tanh if nonlinearity == "tanh" else (lambda z: np.maximum(z, 0))
    values = {"x": RNG.standard_normal((3, T, 3)), **rnn.init(2)}
    if with_h0:
        values["h0"] = RNG.standard_normal((3, 5))

    def ref_all(x, rnn_Wx, rnn_Wh, rnn_b, h0=None):
        return np_rnn(x, rnn_Wx, rnn_Wh, rnn_b, h0, act)[0]

    def ref_last(**v):
        return ref_all(**v)[:, -1]
    got_all, got_last = aj.compile([hs, last], backend="interp")(**values)
    np.testing.assert_allclose(got_all, ref_all(**values), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_last, ref_last(**values), rtol=1e-12, atol=1e-14)
    wrt = [x] + ([h0] if with_h0 else []) + rnn.params
    check_layer_grads(hs, wrt, values, ref_all)
    check_layer_grads(last, wrt, values, ref_last, seed=1)
    assert_backends_agree([hs, last], values)
    for batch in (1, 0):
        assert_backends_agree([hs, last], {k: v[:batch] if k in ("x", "h0") else v
                                           for k, v in values.items()})


def test_rnn_float32_init_and_errors():
    rnn = nn.RNN(4, 6, dtype="float32")
    P = rnn.init(0)
    assert all(v.dtype == np.float32 and np.abs(v).max() <= 1 / np.sqrt(6) for v in P.values())
    with pytest.raises(aj.ShapeError, match="RNN 'rnn'.*\\(B, T, 4\\)"):
        rnn(aj.input("x", (None, 3, 5), "float32"))
    with pytest.raises(aj.ShapeError, match="static length"):
        rnn(aj.input("x", (2, None, 4), "float32"))
    with pytest.raises(aj.ShapeError, match="h0"):
        rnn(aj.input("x", (None, 3, 4), "float32"), aj.input("h", (None, 5), "float32"))
    with pytest.raises(aj.DTypeError):
        rnn(aj.input("i", (None, 3, 4), "int64"))


# --- Attention -------------------------------------------------------------------------------
@pytest.mark.parametrize("heads,causal,bias", [(1, False, True), (2, True, True),
                                               (4, False, False), (2, True, False)])
def test_attention_matches_numpy_and_finite_differences(heads, causal, bias):
    attn = nn.Attention(8, heads=heads, causal=causal, bias=bias)
    x = aj.input("x", (None, 5, 8))
    y = attn(x)
    assert y.shape == (None, 5, 8)
    values = _nonzero_biases({"x": RNG.standard_normal((3, 5, 8)), **attn.init(3)}, attn)

    def ref(x, **P):
        return np_attention(x, P, heads, causal)
    np.testing.assert_allclose(aj.compile(y, backend="interp")(**values), ref(**values),
                               rtol=1e-10, atol=1e-12)
    # the key bias shifts every score of a query alike: its gradient is 0 up to rounding,
    # so it is left out of the finite-difference check (covered by the forward above)
    wrt = [x] + [p for p in attn.params if p.name != "attn_bk"]
    check_layer_grads(y, wrt, values, ref)
    assert_backends_agree(y, values)
    for batch in (1, 0):
        assert_backends_agree(y, {**values, "x": values["x"][:batch]})


def test_causal_attention_ignores_later_tokens():
    attn = nn.Attention(4, heads=2, causal=True)
    x = aj.input("x", (None, 6, 4))
    f = aj.compile(attn(x), backend="llvm")
    values = _nonzero_biases({"x": RNG.standard_normal((2, 6, 4)), **attn.init(0)}, attn)
    before = f(**values)
    later = values["x"].copy()
    later[:, 3:] = 1e3 * RNG.standard_normal((2, 3, 4))               # huge later tokens
    after = f(**{**values, "x": later})
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-12)
    assert np.isfinite(after).all()


def test_attention_float32_and_errors():
    attn = nn.Attention(16, heads=4, dtype="float32")
    x = aj.input("x", (None, 10, 16), "float32")
    values = {"x": RNG.standard_normal((2, 10, 16)).astype("float32"), **attn.init(1)}
    got = aj.compile(attn(x), backend="llvm")(**values)
    want = np_attention(values["x"].astype("float64"),
                        {k: v.astype("float64") for k, v in values.items()}, 4, False)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of heads"):
        nn.Attention(10, heads=3)
    with pytest.raises(aj.ShapeError, match="Attention 'attn'.*\\(B, T, 16\\)"):
        attn(aj.input("y", (None, 10, 8), "float32"))


def test_sequence_layers_in_a_sequential_model():
    model = nn.Sequential(nn.Embedding(11, 8), nn.Attention(8, heads=2), nn.LayerNorm(8))
    ids = aj.input("ids", (None, 5), "int64")
    y = model(ids)
    P = model.init(0)
    I = RNG.integers(0, 11, size=(3, 5))
    E = P["emb_weight"][I]
    h = np_attention(E, P, 2, False)
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    want = (h - mu) / np.sqrt(var + 1e-5) * P["ln_weight"] + P["ln_bias"]
    np.testing.assert_allclose(aj.compile(y, backend="llvm")(ids=I, **P), want, rtol=1e-9,
                               atol=1e-12)


def test_docstring_examples():
    import adjit.nn.seq as mod
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


# --- the W7/W8 benchmark models --------------------------------------------------------------
@pytest.mark.parametrize("key", ["W7", "W8"])
@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_benchmark_models_match_the_numpy_reference(key, backend):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import models
    import peers
    import timing
    from workloads import as_float64, make_data, select
    wl = select([key])[0]
    data = make_data(wl)
    ref = peers.reference(wl, as_float64(data))
    for fwd_only in (False, True):
        impl = models.make_adjit(wl, data, backend, fwd_only=fwd_only)
        ok, why = timing.check(impl, ref, wl.rtol)
        assert ok, why
