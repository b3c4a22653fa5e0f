"""Composite functions: plain compositions of primitives, so they need no derivative rules.

Stable forms by construction: logsumexp shifts by the (gradient-stopped) max, so
log_softmax and cross-entropy stay finite and exact for logits of ±1000.
"""
from __future__ import annotations

from .. import frontend as F
from ..ir import INT_DTYPES, DTypeError, Node, ShapeError, label, shape_str


def logsumexp(x, axis=-1, keepdims: bool = False) -> Node:
    """log(sum(exp(x), axis)), computed as m + log(sum(exp(x - m))) with m the max.

    -inf entries (masked) add nothing while the row holds a finite entry; a row of -inf
    gives -inf and a row holding +inf gives +inf (as numpy, scipy and PyTorch).  So an
    infinite max shifts by 0 (-inf - -inf would be NaN).
    """
    x = F._lift(x)
    top = F.max(x, axis=axis, keepdims=True)
    m = F.stop_gradient(F.where(F.abs(top) < float("inf"), top, 0.0))
    out = F.log(F.sum(F.exp(x - m), axis=axis, keepdims=True)) + m
    axes = F._axes(x, axis)
    return out if keepdims else F.reshape(out, tuple(d for i, d in enumerate(x.shape)
                                                      if i not in axes))


def log_softmax(x, axis=-1) -> Node:
    """(x - m) - log(sum(exp(x - m))): log-probabilities, finite for any finite logits.

    Subtracting the max m before anything else keeps results exact to rounding for huge
    logits (x - logsumexp(x) would add m and take it away again, losing an ulp of m).
    A -inf logit gets -inf (probability 0) while its row holds a finite logit; a row of
    -inf, or one holding +inf, gives NaN (as PyTorch).
    """
    x = F._lift(x)
    shifted = x - F.stop_gradient(F.max(x, axis=axis, keepdims=True))
    return shifted - F.log(F.sum(F.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis=-1) -> Node:
    """exp(log_softmax(x)): probabilities along ``axis``."""
    return F.exp(log_softmax(x, axis=axis))


def mse(y, t) -> Node:
    """Mean squared error over all elements (PyTorch's default reduction)."""
    d = y - t
    return F.mean(d * d)


def cross_entropy(logits: Node, labels: Node) -> Node:
    """Mean softmax cross-entropy over the batch, from logits.

    ``labels`` are one-hot (or probability) rows shaped like ``logits``, or integer
    class indices with one dimension fewer.  A class whose label is 0 adds exactly 0
    (0 · log 0 is 0), so masked logits (-inf) in other classes give the finite loss and a
    zero gradient for them, as in PyTorch; a -inf target logit gives +inf, and a row of
    -inf logits NaN.
    """
    logits = F._lift(logits)
    labels = F._lift(labels)
    if labels.dtype in INT_DTYPES:
        if labels.shape != logits.shape[:-1]:
            raise ShapeError(f"cross_entropy: integer labels {label(labels)} "
                             f"{shape_str(labels.shape)} must have the logits' shape without "
                             f"the class axis, {shape_str(logits.shape[:-1])}")
        # the target's log-probability, picked (not multiplied: 0 · -inf is NaN)
        hot = F.cast(F.one_hot(labels, logits.shape[-1], logits.dtype), "bool")
        picked = F.safe_where(hot, log_softmax(logits, axis=-1), 0.0)   # (see below)
        return F.mean(-F.sum(picked, axis=-1))
    if labels.shape != logits.shape:
        raise ShapeError(f"cross_entropy: one-hot labels {label(labels)} {shape_str(labels.shape)} "
                         f"and logits {label(logits)} {shape_str(logits.shape)} differ")
    if labels.dtype == "bool":
        raise DTypeError(f"cross_entropy: labels {label(labels)} must be float or integer")
    # a zero label's term is labels * ls with ls's -inf (a masked logit) read as 0: its value
    # is 0 (0 · log 0 = 0, not 0 · -inf = NaN) and its derivative in the label is ls, as
    # the maths gives (a constant 0 there would drop d/dlabel at label 0)
    ls = log_softmax(logits, axis=-1)
    zero = F.equal(labels, 0.0)
    terms = labels * F.safe_where(zero, F.safe_where(F.equal(ls, float("-inf")), 0.0, ls), ls)
    per_example = -F.sum(terms, axis=-1)
    return F.mean(per_example)
