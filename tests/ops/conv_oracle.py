"""Direct convolutions by explicit loops over output positions and kernel taps: the oracle of
tests/ops/test_conv*.py, written from PyTorch's definitions and independent of adjit
(no unfold, no ops/window.py).

* ``conv(x, W, b, stride, padding, dilation, groups)``: ``x (N, C, *S)``,
  ``W (C_out, C/groups, *K)``; ``z[n, o, p] = b[o] + Σ_{c ∈ group(o), k} W[o, c, k] ·
  x[n, c, p·stride - lo + k·dilation]``, taps reading outside ``x`` skipped (zero padding).
* ``conv_transpose(g, W, b, stride, padding, output_padding, groups, dilation)``:
  ``g (N, C_in, *I)``, ``W (C_in, C_out/groups, *K)``; every input element scattered:
  ``z[n, o, i·stride - padding + k·dilation] += g[n, c, i] · W[c, o_local, k]``.
"""
from __future__ import annotations

import itertools

import numpy as np


def _tuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def pads(padding, kernel, stride, dilation):
    """((lo, hi), ...) by PyTorch's rules: an int or tuple on both sides; "valid" none;
    "same" the total d·(k-1) split with the odd element on the high side."""
    nd = len(kernel)
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        assert all(s == 1 for s in stride)
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(kernel, dilation)]
    return [(p, p) for p in _tuple(padding, nd)]


def conv(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    nd = x.ndim - 2
    N, C, S = x.shape[0], x.shape[1], x.shape[2:]
    Co, K = W.shape[0], W.shape[2:]
    st, dil = _tuple(stride, nd), _tuple(dilation, nd)
    pad = pads(padding, K, st, dil)
    out = tuple((n + lo + hi - d * (k - 1) - 1) // s + 1
                for n, (lo, hi), k, s, d in zip(S, pad, K, st, dil))
    Cg, Og = C // groups, Co // groups
    z = np.zeros((N, Co) + out, np.result_type(x, W))
    for p in itertools.product(*map(range, out)):
        for k in itertools.product(*map(range, K)):
            pos = tuple(pi * s - lo + ki * d
                        for pi, ki, s, d, (lo, _) in zip(p, k, st, dil, pad))
            if not all(0 <= q < n for q, n in zip(pos, S)):
                continue                                   # a padding tap: adds nothing
            for g in range(groups):
                o, c = slice(g * Og, (g + 1) * Og), slice(g * Cg, (g + 1) * Cg)
                z[(slice(None), o) + p] += x[(slice(None), c) + pos] @ W[(o, slice(None)) + k].T
    if b is not None:
        z += b.reshape((Co,) + (1,) * nd)
    return z


def conv_transpose(g, W, b=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1):
    nd = g.ndim - 2
    N, Ci, I = g.shape[0], g.shape[1], g.shape[2:]
    Cog, K = W.shape[1], W.shape[2:]
    st, dil = _tuple(stride, nd), _tuple(dilation, nd)
    pad, extra = _tuple(padding, nd), _tuple(output_padding, nd)
    out = tuple((i - 1) * s - 2 * p + d * (k - 1) + e + 1
                for i, s, p, d, k, e in zip(I, st, pad, dil, K, extra))
    Cig = Ci // groups
    z = np.zeros((N, Cog * groups) + out, np.result_type(g, W))
    for i in itertools.product(*map(range, I)):
        for k in itertools.product(*map(range, K)):
            q = tuple(ii * s - p + ki * d for ii, ki, s, p, d in zip(i, k, st, pad, dil))
            if not all(0 <= a < n for a, n in zip(q, out)):
                continue                                   # lands in the cropped border
            for gr in range(groups):
                c, o = slice(gr * Cig, (gr + 1) * Cig), slice(gr * Cog, (gr + 1) * Cog)
                z[(slice(None), o) + q] += g[(slice(None), c) + i] @ W[(c, slice(None)) + k]
    if b is not None:
        z += b.reshape((Cog * groups,) + (1,) * nd)
    return z
