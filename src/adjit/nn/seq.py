"""Sequence layers: ``Embedding``, ``RNN`` (Elman) and ``Attention`` (scaled dot-product).

All three are compositions of adjit functions: ``aj.take`` (an embedding's lookup, whose
gradient is a scatter-add of O(batch·dim)), indexing ``x[:, t]``, ``aj.stack``,
``aj.swapaxes``, ``reshape`` and numpy's N-D ``@`` (batched products).  Weights are stored
``(in, out)`` as in :class:`adjit.nn.Dense`.

>>> import adjit as aj
>>> from adjit import nn
>>> emb, attn = nn.Embedding(100, 16), nn.Attention(16, heads=4, causal=True)
>>> ids = aj.input("ids", (None, 10), dtype="int64")
>>> h = attn(emb(ids))
>>> h.shape, [p.name for p in attn.params][:2]
((None, 10, 16), ['attn_Wq', 'attn_bq'])
"""
from __future__ import annotations

import math

import numpy as np

from .. import frontend as F
from ..ir import FLOAT_DTYPES, INT_DTYPES, DTypeError, Node, ShapeError
from .init import get_initializer, rng_from
from .layers import get_activation


def _ops():
    """The adjit package (its structural functions: take, stack, swapaxes), looked up when
    a layer is called, after adjit has finished importing."""
    import adjit
    return adjit


def _positive(layer: str, what: str, n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"{layer}: {what} must be a positive int, got {n!r}")
    return int(n)



def _check_sequence(where: str, x, dim: int) -> None:
    """A layer's input must be a float node (B, T, dim)."""
    if not isinstance(x, Node) or x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{where}: expected float inputs (B, T, {dim}), got {x!r}")
    if x.ndim != 3 or x.shape[2] != dim:
        raise ShapeError(f"{where}: expected inputs (B, T, {dim}), got {x!r}")

class Embedding:
    """``weight[ids]``: rows of a ``(num_embeddings, embedding_dim)`` table, as
    ``torch.nn.Embedding`` (weight named ``f"{name}_weight"``, initialized N(0, 1)).

    ``ids`` is an integer node of any shape; the result has that shape plus
    ``embedding_dim``.  The lookup is ``aj.take(weight, ids, axis=0)`` (out-of-range ids
    behave as ``aj.take`` says).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, name: str = "emb",
                 dtype: str = "float64", init=None):
        where = f"Embedding {name!r}"
        self.num_embeddings = _positive(where, "num_embeddings", num_embeddings)
        self.embedding_dim = _positive(where, "embedding_dim", embedding_dim)
        self.name = name
        self._init = get_initializer(init) if init is not None else None
        self.weight = F.param(f"{name}_weight", (self.num_embeddings, self.embedding_dim),
                              dtype=dtype)

    @property
    def params(self) -> list[Node]:
        return [self.weight]

    def __call__(self, ids: Node) -> Node:
        if not isinstance(ids, Node) or ids.dtype not in INT_DTYPES:
            raise DTypeError(f"Embedding {self.name!r}: ids must be an integer node, got {ids!r}")
        return _ops().take(self.weight, ids, axis=0)

    def init(self, seed=0) -> dict[str, np.ndarray]:
        rng = rng_from(seed)
        shape, dt = self.weight.shape, self.weight.dtype
        values = self._init(rng, shape, dt) if self._init is not None else \
            rng.standard_normal(shape).astype(dt)
        return {self.weight.name: np.ascontiguousarray(values)}


class RNN:
    """Elman RNN, ``h_t = act(x_t Wx + h_{t−1} Wh + b)``, unrolled over the static length T
    of ``x: (B, T, input_size)`` (``torch.nn.RNN(batch_first=True)`` with one bias).

    ``rnn(x, h0=None)`` returns ``(hs, h_T)``: every hidden state ``(B, T, hidden)`` and
    the last ``(B, hidden)``; ``h0`` defaults to zeros.  ``x @ Wx + b`` is one batched
    product over all steps.  ``nonlinearity``: "tanh" or "relu" (or any name of
    ``nn.ACTIVATIONS``).  Parameters ``f"{name}_Wx"`` ``(input, hidden)``,
    ``f"{name}_Wh"`` ``(hidden, hidden)``, ``f"{name}_b"``, initialized
    U(−1/√hidden, 1/√hidden) as PyTorch.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity="tanh", *,
                 bias: bool = True, name: str = "rnn", dtype: str = "float64"):
        where = f"RNN {name!r}"
        self.input_size = _positive(where, "input_size", input_size)
        self.hidden_size = _positive(where, "hidden_size", hidden_size)
        self.act = get_activation(nonlinearity)
        self.name = name
        D, H = self.input_size, self.hidden_size
        self.Wx = F.param(f"{name}_Wx", (D, H), dtype=dtype)
        self.Wh = F.param(f"{name}_Wh", (H, H), dtype=dtype)
        self.b = F.param(f"{name}_b", (H,), dtype=dtype) if bias else None

    @property
    def params(self) -> list[Node]:
        return [self.Wx, self.Wh] + ([] if self.b is None else [self.b])

    def __call__(self, x: Node, h0: Node | None = None) -> tuple[Node, Node]:
        aj = _ops()
        where = f"RNN {self.name!r}"
        _check_sequence(where, x, self.input_size)
        T = x.shape[1]
        if T is None or T == 0:
            raise ShapeError(f"{where}: the time axis of {x!r} must have a static length >= 1")
        if h0 is not None and (h0.ndim != 2 or h0.shape[1] != self.hidden_size):
            raise ShapeError(f"{where}: h0 must be (B, {self.hidden_size}), got {h0!r}")
        dt = x.dtype
        Wx, Wh = F.cast(self.Wx, dt), F.cast(self.Wh, dt)
        xw = x @ Wx                                  # (B, T, H): one product for every step
        if self.b is not None:
            xw = xw + F.cast(self.b, dt)
        h, hs = h0, []
        for t in range(T):
            z = xw[:, t]
            if h is not None:                        # h0 = 0 adds nothing at step 0
                z = z + h @ Wh
            h = z if self.act is None else self.act(z)
            hs.append(h)
        return aj.stack(hs, axis=1), h

    def init(self, seed=0) -> dict[str, np.ndarray]:
        rng = rng_from(seed)
        k = 1.0 / math.sqrt(self.hidden_size)
        return {p.name: rng.uniform(-k, k, size=p.shape).astype(p.dtype) for p in self.params}


class Attention:
    """Multi-head scaled dot-product self-attention on ``x: (B, T, dim)``, as
    ``torch.nn.MultiheadAttention`` with weights stored (in, out)::

        q, k, v = x Wq + bq, x Wk + bk, x Wv + bv        split into `heads` of dim/heads
        out = softmax(q kᵀ / √(dim/heads) [+ mask]) v     heads joined, then · Wo + bo

    ``causal=True`` masks every key after the query (−inf scores, probability 0).
    Parameters ``f"{name}_Wq"``, ``f"{name}_bq"``, ... ``f"{name}_Wo"``, ``f"{name}_bo"``
    (Glorot-uniform weights, zero biases; ``bias=False``: no biases).  The result has the
    shape of ``x`` (no residual: add it yourself).
    """

    def __init__(self, dim: int, heads: int = 1, causal: bool = False, *, bias: bool = True,
                 name: str = "attn", dtype: str = "float64", init="glorot_uniform"):
        where = f"Attention {name!r}"
        self.dim = _positive(where, "dim", dim)
        self.heads = _positive(where, "heads", heads)
        if self.dim % self.heads:
            raise ValueError(f"{where}: dim {dim} is not a multiple of heads {heads}")
        self.causal, self.name = bool(causal), name
        self._init = get_initializer(init)
        D = self.dim
        self.weights = {k: F.param(f"{name}_W{k}", (D, D), dtype=dtype) for k in "qkvo"}
        self.biases = {k: F.param(f"{name}_b{k}", (D,), dtype=dtype) for k in "qkvo"} \
            if bias else {}

    @property
    def params(self) -> list[Node]:
        """``[Wq, bq, Wk, bk, Wv, bv, Wo, bo]`` (weights only without biases)."""
        out = []
        for k in "qkvo":
            out.append(self.weights[k])
            if k in self.biases:
                out.append(self.biases[k])
        return out

    def _project(self, x: Node, k: str) -> Node:
        z = x @ F.cast(self.weights[k], x.dtype)
        return z + F.cast(self.biases[k], x.dtype) if k in self.biases else z

    def __call__(self, x: Node) -> Node:
        aj = _ops()
        where = f"Attention {self.name!r}"
        _check_sequence(where, x, self.dim)
        B, T, D = x.shape
        if T is None:
            raise ShapeError(f"{where}: the time axis of {x!r} must have a static length")
        H, dh = self.heads, self.dim // self.heads

        def split(z):                                # (B, T, D) -> (B, H, T, dh)
            return aj.swapaxes(F.reshape(z, (B, T, H, dh)), 1, 2)

        q, k, v = (split(self._project(x, c)) for c in "qkv")
        scores = (q @ aj.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(dh))    # (B, H, T, T)
        if self.causal:
            keep = F.const(np.tril(np.ones((T, T), dtype=bool)))
            scores = F.where(keep, scores, float("-inf"))
        p = aj.softmax(scores, axis=-1)
        o = F.reshape(aj.swapaxes(p @ v, 1, 2), (B, T, D))                 # heads joined
        return self._project(o, "o")

    def init(self, seed=0) -> dict[str, np.ndarray]:
        rng = rng_from(seed)
        out = {}
        for k in "qkvo":
            W = self.weights[k]
            out[W.name] = self._init(rng, W.shape, W.dtype)
            if k in self.biases:
                out[self.biases[k].name] = np.zeros(self.dim, self.biases[k].dtype)
        return out
