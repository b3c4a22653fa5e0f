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
vectors), and either one input channel, or output channels a multiple of
:data:`CHANNELS` (at most 64), at most :data:`MAX_WEIGHTS` weights and, for
``conv_weight``, at most :data:`MAX_TILE` cotangent elements per image (LeNet's second
layer, 6→16 5×5: the llvm kernels keep a vector of output channels per output position
or weight tap, instead of 64 small products of an unfolded image and a product summed
over the batch).  A residual stage's 64→64
3×3 layers stay products (their GEMM is efficient).  ``conv_transpose`` is always
expanded.
"""
from __future__ import annotations

import math

from ..ir import FLOAT_DTYPES

MAX_WIDTH = 32
CHANNELS = 16           # output channels per vector group of the channel-vector kernel
MAX_WEIGHTS = 4096      # C_out·C_in·ΠK of a channel-vector convolution (a stack copy)
MAX_TILE = 8192         # C_out·ΠO of a channel-vector weight gradient (one image's ḡ,
                        # transposed on the stack)


def kind(node) -> str | None:
    """``"one channel"``, ``"channels"`` (vectorized over the output channels) or None
    (expanded), per the criteria above."""
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
    w = node.inputs[1].shape if node.op == "conv" else node.shape
    co = w[0]
    if co % CHANNELS or co > 64 or math.prod(w) > MAX_WEIGHTS:
        return None
    if node.op == "conv" or co * math.prod(out.shape[2:]) <= MAX_TILE:
        return "channels"
    return None


def direct(node) -> bool:
    """Whether the ``conv`` / ``conv_weight`` ``node`` is computed directly (see above)."""
    return kind(node) is not None
