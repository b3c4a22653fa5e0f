"""Which convolutions are computed directly instead of as unfold + matrix product.

A convolution of ONE input channel (the first layer of a grayscale net: LeNet's 1→6 5×5)
has matrix products with an inner size of only ``ΠK`` (25) while its unfolded windows are
``ΠK`` times the image (5 MB for LeNet's batch of 64): written once and read twice (the
forward product and the weight gradient's), that buffer costs more than the arithmetic.
For such a ``conv`` or ``conv_weight`` node the record's ``expand`` (ops/conv.py) keeps the
node, and the backends compute it from its operands: the llvm backend with vector kernels
over image rows (backends/llvm/convs.py), any backend with the map rules of
backends/lowering/convs.py (the ptx backend; the llvm backend's fallback).

:func:`direct` is the criterion: ``groups=1``, 2-d, stride 1, dilation 1 (any padding), an
output row of at most :data:`MAX_WIDTH` elements (the llvm kernels unroll a row's
vectors), and either one input channel (``conv`` and ``conv_weight``), or, for a forward
``conv`` only, output channels a multiple of :data:`CHANNELS` (at most 64) and at most
:data:`MAX_WEIGHTS` weights (LeNet's second layer, 6→16 5×5: the llvm kernel keeps one
vector of output channels per output position, each weight vector read once per row of
positions, instead of 64 small products of an unfolded image).  A residual stage's 64→64
3×3 layers stay products (their GEMM is efficient).  ``conv_transpose`` is always
expanded.
"""
from __future__ import annotations

import math

from ..ir import FLOAT_DTYPES

MAX_WIDTH = 32
CHANNELS = 16           # output channels per vector group of the channel-vector kernel
MAX_WEIGHTS = 4096      # C_out·C_in·ΠK of a channel-vector convolution (a stack copy)


def kind(node) -> str | None:
    """``"one channel"``, ``"channels"`` (a forward ``conv`` vectorized over its output
    channels) or None (expanded), per the criteria above."""
    if node.op not in ("conv", "conv_weight"):
        return None
    x = node.inputs[0]
    out = node if node.op == "conv" else node.inputs[1]
    if not (len(node.attr("stride")) == 2 and node.attr("groups") == 1
            and all(s == 1 for s in node.attr("stride"))
            and all(d == 1 for d in node.attr("dilation"))
            and out.shape[-1] <= MAX_WIDTH and x.dtype in FLOAT_DTYPES):
        return None
    if x.shape[1] == 1:
        return "one channel"
    if node.op == "conv" and node.shape[1] % CHANNELS == 0 and node.shape[1] <= 64 \
            and math.prod(node.inputs[1].shape) <= MAX_WEIGHTS:
        return "channels"
    return None


def direct(node) -> bool:
    """Whether the ``conv`` / ``conv_weight`` ``node`` is computed directly (see above)."""
    return kind(node) is not None
