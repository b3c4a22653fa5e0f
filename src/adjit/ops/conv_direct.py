"""Which convolutions are computed directly instead of as unfold + matrix product.

A convolution of ONE input channel (the first layer of a grayscale net: LeNet's 1→6 5×5)
has matrix products with an inner size of only ``ΠK`` (25) while its unfolded windows are
``ΠK`` times the image (5 MB for LeNet's batch of 64): written once and read twice (the
forward product and the weight gradient's), that buffer costs more than the arithmetic.
For such a ``conv`` or ``conv_weight`` node the record's ``expand`` (ops/conv.py) keeps the
node, and the backends compute it from its operands: the llvm backend with vector kernels
over image rows (backends/llvm/convs.py), any backend with the map rules of
backends/lowering/convs.py (the ptx backend; the llvm backend's fallback).

:func:`direct` is the criterion: one input channel, ``groups=1``, 2-d, stride 1, dilation
1 (any padding), an output row of at most :data:`MAX_WIDTH` elements (the llvm kernels
unroll a row's vectors).  ``conv_transpose`` is always expanded.
"""
from __future__ import annotations

from ..ir import FLOAT_DTYPES

MAX_WIDTH = 32


def direct(node) -> bool:
    """Whether the ``conv`` / ``conv_weight`` ``node`` is computed directly (see above)."""
    if node.op not in ("conv", "conv_weight"):
        return False
    x = node.inputs[0]
    out = node if node.op == "conv" else node.inputs[1]
    return (len(node.attr("stride")) == 2 and x.shape[1] == 1 and node.attr("groups") == 1
            and all(s == 1 for s in node.attr("stride"))
            and all(d == 1 for d in node.attr("dilation"))
            and out.shape[-1] <= MAX_WIDTH and x.dtype in FLOAT_DTYPES)
