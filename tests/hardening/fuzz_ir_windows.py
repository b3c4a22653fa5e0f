"""The fuzzer's IR nodes for the window ops (see fuzz_ir.py): numpy references written here
from padding and strided slices (never adjit's records), the adjit call that builds each
node, and its source text.

Ops (fuzz IR name: adjit spelling), attributes ``nd``, ``kernel``, ``stride``,
``padding`` (as spelled: an int, a tuple or ``"same"``), ``dilation``:

* ``conv``: ``aj.conv1d/conv2d(x, W[, b], stride, padding, dilation, groups)``;
* ``conv_t``: ``aj.conv_transpose2d(x, W[, b], stride, padding, output_padding, groups,
  dilation)``;
* ``maxpool``: ``aj.max_pool1d/2d(x, kernel, stride, padding, dilation)`` (padding is
  -inf; NaN propagates);
* ``avgpool``: ``aj.avg_pool1d/2d(x, kernel, stride, padding, count_include_pad=...)``.
"""
from __future__ import annotations

import itertools

import numpy as np

import adjit as aj

OPS = {"conv", "conv_t", "maxpool", "avgpool"}


def _tup(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def pads(at, kernel):
    """((lo, hi), ...) of the spelled padding."""
    nd = at["nd"]
    dil = _tup(at.get("dilation", 1), nd)
    if at["padding"] == "same":
        tot = [d * (k - 1) for k, d in zip(kernel, dil)]
        return [(t // 2, t - t // 2) for t in tot]
    return [(p, p) for p in _tup(at["padding"], nd)]


def _windows(xp, kernel, stride, dil, out):
    """Per tap (row-major): the padded input's elements that tap reads, (N, C, *out)."""
    for tap in itertools.product(*map(range, kernel)):
        sl = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                   for t, d, s, o in zip(tap, dil, stride, out))
        yield tap, xp[(slice(None), slice(None)) + sl]


def _out(spatial, kernel, stride, dil, pad):
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1
                 for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dil, pad))


def conv_ref(x, W, b, at):
    nd, G = at["nd"], at["groups"]
    kernel = W.shape[2:]
    stride, dil = _tup(at["stride"], nd), _tup(at["dilation"], nd)
    pad = pads(at, kernel)
    xp = np.pad(x, [(0, 0), (0, 0)] + pad)
    out = _out(x.shape[2:], kernel, stride, dil, pad)
    N, C = x.shape[:2]
    Co = W.shape[0]
    cg, og = C // G, Co // G
    z = np.zeros((N, Co) + out, np.result_type(x, W))
    for tap, win in _windows(xp, kernel, stride, dil, out):
        for g in range(G):
            w = W[(slice(g * og, (g + 1) * og), slice(None)) + tap]          # (og, cg)
            z[:, g * og:(g + 1) * og] += np.einsum("oc,nc...->no...", w,
                                                   win[:, g * cg:(g + 1) * cg])
    if b is not None:
        z = z + b.reshape((Co,) + (1,) * nd)
    return z


def conv_t_ref(x, W, b, at):
    """PyTorch's transposed convolution: each input element spreads x·W over the output."""
    nd, G = at["nd"], at["groups"]
    kernel = W.shape[2:]
    stride, dil = _tup(at["stride"], nd), _tup(at["dilation"], nd)
    pad, extra = _tup(at["padding"], nd), _tup(at["output_padding"], nd)
    N, Ci = x.shape[:2]
    cg, og = Ci // G, W.shape[1]
    full = tuple((i - 1) * s + d * (k - 1) + 1 + e
                 for i, s, d, k, e in zip(x.shape[2:], stride, dil, kernel, extra))
    y = np.zeros((N, og * G) + full, np.result_type(x, W))
    for tap in itertools.product(*map(range, kernel)):
        sl = tuple(slice(t * d, t * d + s * (i - 1) + 1, s)
                   for t, d, s, i in zip(tap, dil, stride, x.shape[2:]))
        for g in range(G):
            w = W[(slice(g * cg, (g + 1) * cg), slice(None)) + tap]          # (cg, og)
            y[(slice(None), slice(g * og, (g + 1) * og)) + sl] += np.einsum(
                "co,nc...->no...", w, x[:, g * cg:(g + 1) * cg])
    crop = tuple(slice(p, p + n - 2 * p) for p, n in zip(pad, full))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.reshape((og * G,) + (1,) * nd)
    return y


def pool_ref(x, at):
    nd = at["nd"]
    kernel = _tup(at["kernel"], nd)
    stride = _tup(at["stride"] if at["stride"] is not None else at["kernel"], nd)
    dil = _tup(at.get("dilation", 1), nd)
    pad = pads(at, kernel)
    out = _out(x.shape[2:], kernel, stride, dil, pad)
    if at["op"] == "maxpool":
        xp = np.pad(x, [(0, 0), (0, 0)] + pad, constant_values=-np.inf)
        best = None
        for _, win in _windows(xp, kernel, stride, dil, out):
            best = win.copy() if best is None else np.where(
                (win > best) | (np.isnan(win) & ~np.isnan(best)), win, best)
        return best
    xp = np.pad(x, [(0, 0), (0, 0)] + pad)
    ones = np.pad(np.ones(x.shape[2:]), pad)
    total = sum(win for _, win in _windows(xp, kernel, stride, dil, out))
    if at["include"]:
        return total / np.prod(kernel)
    count = sum(win for _, win in _windows(ones[None, None], kernel, stride, dil, out))
    return total / count


def pool_gap(x, at):
    """The smallest gap between the two largest elements of a max window (inf if none)."""
    x = np.asarray(x, float)
    if not x.size:
        return np.inf
    nd = at["nd"]
    kernel = _tup(at["kernel"], nd)
    stride = _tup(at["stride"] if at["stride"] is not None else at["kernel"], nd)
    dil = _tup(at.get("dilation", 1), nd)
    pad = pads(at, kernel)
    out = _out(x.shape[2:], kernel, stride, dil, pad)
    xp = np.pad(x, [(0, 0), (0, 0)] + pad, constant_values=np.nan)    # padding: not a value
    wins = np.stack([w for _, w in _windows(xp, kernel, stride, dil, out)])
    if wins.shape[0] < 2:
        return np.inf
    s = np.sort(np.where(np.isnan(wins), -np.inf, wins), axis=0)
    with np.errstate(invalid="ignore"):
        gap = s[-1] - s[-2]
    gap = gap[~np.isnan(gap)]
    return float(np.min(gap)) if gap.size else 0.0


def reference(n, a, batch, ft, fl):
    op, at = n.op, n.attrs
    if op == "conv":
        return fl(conv_ref(a[0], a[1], a[2] if len(a) > 2 else None, at), ft)
    if op == "conv_t":
        return fl(conv_t_ref(a[0], a[1], a[2] if len(a) > 2 else None, at), ft)
    return fl(pool_ref(a[0], dict(at, op=op)), ft)


def build(n, a):
    op, at = n.op, n.attrs
    nd = at["nd"]
    if op == "conv":
        fn = aj.conv1d if nd == 1 else aj.conv2d
        return fn(a[0], a[1], a[2] if len(a) > 2 else None, at["stride"], at["padding"],
                  at["dilation"], at["groups"])
    if op == "conv_t":
        return aj.conv_transpose2d(a[0], a[1], a[2] if len(a) > 2 else None, at["stride"],
                                   at["padding"], at["output_padding"], at["groups"],
                                   at["dilation"])
    if op == "maxpool":
        fn = aj.max_pool1d if nd == 1 else aj.max_pool2d
        return fn(a[0], at["kernel"], at["stride"], at["padding"], at["dilation"])
    fn = aj.avg_pool1d if nd == 1 else aj.avg_pool2d
    return fn(a[0], at["kernel"], at["stride"], at["padding"], count_include_pad=at["include"])


def source(n, a):
    op, at = n.op, n.attrs
    nd = at["nd"]
    b = a[2] if len(a) > 2 else None
    if op == "conv":
        return (f"aj.conv{nd}d({a[0]}, {a[1]}, {b}, {at['stride']!r}, {at['padding']!r}, "
                f"{at['dilation']!r}, {at['groups']})")
    if op == "conv_t":
        return (f"aj.conv_transpose2d({a[0]}, {a[1]}, {b}, {at['stride']!r}, "
                f"{at['padding']!r}, {at['output_padding']!r}, {at['groups']}, "
                f"{at['dilation']!r})")
    if op == "maxpool":
        return (f"aj.max_pool{nd}d({a[0]}, {at['kernel']!r}, {at['stride']!r}, "
                f"{at['padding']!r}, {at['dilation']!r})")
    return (f"aj.avg_pool{nd}d({a[0]}, {at['kernel']!r}, {at['stride']!r}, {at['padding']!r}, "
            f"count_include_pad={at['include']})")
