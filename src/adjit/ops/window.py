"""Sliding-window geometry shared by convolutions and pooling (PyTorch's argument rules).

A window op slides a kernel of ``kernel`` taps (spaced ``dilation`` apart) over the spatial
axes of an ``(N, C, *spatial)`` operand in steps of ``stride``, the operand padded by
``pad = ((lo, hi), ...)`` per axis.  Along one axis of size ``n`` there are
``(n + lo + hi - dilation·(kernel - 1) - 1) // stride + 1`` positions; output position
``o`` reads input rows ``o·stride - lo + k·dilation`` for ``k < kernel`` (rows outside
``[0, n)`` are padding).

These are plain functions of ints and tuples: the op records (ops/conv.py,
ops/pooling.py) keep the normalised values in their attributes (``kernel``, ``stride``,
``dilation``, ``pad``), and the map rules (backends/lowering/windows.py) read them back.
"""
from __future__ import annotations

import numbers

from ..ir import ShapeError
from .registry import Shown


def is_int(v) -> bool:
    """A Python or numpy int (not a bool): sizes often come from shape arithmetic."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def ints(name: str, value, nd: int, where: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a tuple of ``nd`` ints, each at least ``minimum``, as a tuple."""
    vals = (value,) * nd if is_int(value) else value
    try:
        vals = tuple(vals)
    except TypeError:
        raise ShapeError(f"{where}: {name} must be an int or a tuple of {nd} ints, "
                         f"got {value!r}") from None
    if len(vals) != nd or not all(is_int(v) for v in vals):
        raise ShapeError(f"{where}: {name} must be an int or a tuple of {nd} ints, "
                         f"got {value!r}")
    if any(v < minimum for v in vals):
        raise ShapeError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in vals)


def padding(value, kernel: tuple, stride: tuple, dilation: tuple, where: str
            ) -> tuple[tuple[int, int], ...]:
    """``((lo, hi), ...)`` from PyTorch's ``padding``: an int, a tuple (the same on both
    sides of each axis), ``"valid"`` (none) or ``"same"`` (the output as large as the
    input: stride 1 only, the odd pad on the high side, as PyTorch)."""
    nd = len(kernel)
    if isinstance(value, str):
        if value == "valid":
            return ((0, 0),) * nd
        if value == "same":
            if any(s != 1 for s in stride):
                raise ShapeError(f"{where}: padding='same' needs stride 1 (as in PyTorch), "
                                 f"got stride {stride}")
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ShapeError(f"{where}: padding must be an int, a tuple, 'same' or 'valid', "
                         f"got {value!r}")
    pads = ints("padding", value, nd, where, minimum=0)
    return tuple((p, p) for p in pads)


def out_size(n: int, kernel: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    """Window positions along one axis (may be <= 0: the caller reports it)."""
    return (n + lo + hi - dilation * (kernel - 1) - 1) // stride + 1


def out_shape(spatial: tuple, kernel: tuple, stride: tuple, dilation: tuple, pad: tuple,
              where: str, what: str = "input") -> tuple[int, ...]:
    """The output's spatial shape; a ShapeError naming ``what`` when the (padded) input is
    smaller than one (dilated) kernel."""
    out = tuple(out_size(n, k, s, d, lo, hi)
                for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pad))
    if any(o <= 0 for o in out):
        raise ShapeError(f"{where}: the {what} of spatial size {spatial} padded by "
                         f"{[list(p) for p in pad]} is smaller than the kernel {kernel} "
                         f"(dilation {dilation})")
    return out


def spatial_operand(x, nd: int, where: str, what: str = "x") -> None:
    """``x`` must be ``(N, C, *spatial)`` with ``nd`` static spatial axes (N may be None)."""
    if x.ndim != nd + 2:
        axes = "(N, C, L)" if nd == 1 else "(N, C, H, W)" if nd == 2 else f"(N, C, +{nd} axes)"
        raise ShapeError(f"{where}: {what} must have shape {axes}, got {x.shape}")
    if any(s is None for s in x.shape[1:]):
        raise ShapeError(f"{where}: only axis 0 of {what} may be the batch axis (None), "
                         f"got shape {x.shape}")


def attrs(kernel, stride, dilation, pad) -> dict:
    return {"kernel": tuple(kernel), "stride": tuple(stride), "dilation": tuple(dilation),
            "pad": tuple(tuple(p) for p in pad)}


# --- how the views write a window op (Op.shown) ----------------------------------------------
def _axes(values: tuple) -> str:
    """One value when every axis has it (``2``), else one per axis (``(2, 1)``)."""
    values = tuple(values)
    if len(set(values)) == 1:
        return str(values[0])
    return "(" + ", ".join(str(v) for v in values) + ")"


def _pad(pad: tuple) -> str:
    """``1`` (every side), ``(1, 2)`` (both sides of each axis), ``((0, 1), (0, 1))``."""
    pad = tuple(tuple(p) for p in pad)
    if all(lo == hi for lo, hi in pad):
        return _axes(tuple(lo for lo, _ in pad))
    return "(" + ", ".join(f"({lo}, {hi})" for lo, hi in pad) + ")"


def note(node, hide: tuple = ()) -> str:
    """The attributes of a window op that differ from PyTorch's defaults, in PyTorch's
    argument order: ``kernel 2×2, stride 2, pad 1, dilation 2, groups 4`` (the kernel
    always, where the op has one and does not ``hide`` it: nothing else shows it), and an
    average pool's ``count_include_pad False``."""
    parts = []
    kernel = node.attr("kernel")
    if kernel is not None and "kernel" not in hide:
        parts.append("kernel " + "×".join(str(k) for k in kernel))
    for key, default, text in (("stride", 1, _axes), ("pad", 0, _pad),
                               ("dilation", 1, _axes), ("groups", 1, str)):
        value = node.attr(key)
        if value is None or key in hide:
            continue
        flat = [v for p in value for v in p] if key == "pad" else \
            list(value) if isinstance(value, tuple) else [value]
        if any(v != default for v in flat):
            parts.append(f"{key} {text(value)}")
    if node.attr("include") is False and "include" not in hide:
        parts.append("count_include_pad False")   # avg_pool: divide by the real elements
    return ", ".join(parts)


def shown(node, dropped: tuple = (), hide: tuple = ()):
    """``Op.shown`` of a window op: its name, operands, then :func:`note` after a
    semicolon (``conv(h, W; stride 2, pad 1)``; pictures: ``conv stride 2, pad 1``)."""
    return Shown(note=note(node, hide))
