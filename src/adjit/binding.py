"""Call-time argument checks, shared by every backend.

Nothing reaches a backend (and no pointer reaches native code) before these checks:

* every declared input and parameter is given by name, and no unknown name is
  (``TypeError`` naming them);
* each value converts to the declared dtype under the input policy below, or a
  ``DTypeError`` names the input;
* ranks and static dimensions match, and every batch dimension (``None``) has the same
  size across all inputs, or a ``ShapeError`` names the input, the expected shape (with
  the bound batch size) and the shape given;
* arrays handed on are plain numpy arrays, C-contiguous and aligned (copies are made when
  a caller's array is not); the caller's arrays are only ever read;
* an integer input read as indices (``one_hot``'s labels, as in ``cross_entropy`` with
  integer labels: ``0 <= label < n``; ``take``'s positions: ``-n <= i < n``) holds values
  in the range of every op reading it, or a ``DTypeError`` names the input, the op and the
  first value out of range (:func:`label_limits`, :func:`check_labels`).

The arrays of a bound function (``f.bind``) are checked at bind time and again, cheaply,
at every call (:class:`Pinned`): the caller keeps them and may change them in place.

Input policy: Python numbers, (nested, rectangular) lists and arrays are accepted; an
ndarray subclass is read as a plain array, except a masked array, which is refused
(``TypeError``: its mask would be ignored).  Float inputs take any real number dtype
(ints and bools convert; float64 data for a float32 input is rounded, like numpy's
``astype``).  Integer inputs (labels) take integer arrays only, and refuse values the
declared integer type cannot hold; bool inputs (masks) take bool arrays only.  Complex,
object, string and other dtypes are refused.  NaN and inf are ordinary values: they
propagate by IEEE rules.

:func:`require_memory` is the guard a backend calls before allocating buffers whose size
grows with the batch: a clear ``MemoryError`` instead of an allocation that fails deep
inside numpy or gets the process killed.
"""
from __future__ import annotations

import os

import numpy as np

from .ir import (FLOAT_DTYPES, INT_DTYPES, DTypeError, Graph, Node, ShapeError, label,
                 shape_str)
from .ops.registry import get_op

_ndarray = np.ndarray


class Binder:
    """Validates keyword arguments against a graph's declared inputs."""

    def __init__(self, inputs: list[Node], limits: dict[str, tuple] | None = None):
        by_name: dict[str, Node] = {}
        for n in inputs:
            other = by_name.setdefault(n.name, n)
            if other is not n:
                raise ValueError(f"two different inputs are named {n.name!r}: "
                                 f"{other.type} and {n.type}")
        self.inputs = [by_name[k] for k in sorted(by_name)]
        self.names = frozenset(by_name)
        # (name, declared shape, dtype, is float, position of the first batch dim or -1)
        self.specs = [(n.name, n.shape, np.dtype(n.dtype), n.dtype in FLOAT_DTYPES,
                       n.shape.index(None) if None in n.shape else -1) for n in self.inputs]
        # integer inputs read as indices: name -> (lo, hi, what) (see label_limits)
        self.limits = {k: v for k, v in (limits or {}).items() if k in by_name}
        self._labels = sorted(self.limits.items())

    def bind(self, kwargs: dict) -> tuple[dict[str, np.ndarray], int | None]:
        """``(arrays by name, batch size or None)``; raises on any argument that is off."""
        if kwargs.keys() != self.names:
            self._name_error(kwargs)
        values: dict[str, np.ndarray] = {}
        batch: int | None = None
        batch_from = None
        for name, shape, dtype, is_float, first_batch in self.specs:
            arr = kwargs[name]
            # fast path: a plain, C-contiguous, aligned, writable array of the exact dtype
            if type(arr) is not _ndarray or arr.dtype is not dtype or not arr.flags.carray:
                arr = _convert(name, arr, dtype, is_float)
            got = arr.shape
            if first_batch < 0:
                if got != shape:
                    raise ShapeError(f"input {name!r}: expected shape {shape_str(shape)}, "
                                     f"got {got}")
            else:
                if len(got) != len(shape):
                    raise ShapeError(f"input {name!r}: expected {len(shape)}-D shape "
                                     f"{_bound(shape, batch)}, got {got}")
                if batch is None:
                    batch, batch_from = got[first_batch], name
                for want, size in zip(shape, got):
                    if want is None:
                        if size != batch:
                            raise ShapeError(
                                f"input {name!r}: expected shape {_bound(shape, batch)} "
                                f"(batch size {batch} bound by {batch_from!r}), got {got}")
                    elif want != size:
                        raise ShapeError(f"input {name!r}: expected shape "
                                         f"{_bound(shape, batch)}, got {got}")
            values[name] = arr
        for name, limit in self._labels:
            check_labels(f"input {name!r}", values[name], limit)
        return values, batch

    def _name_error(self, kwargs):
        missing = sorted(self.names - kwargs.keys())
        unknown = sorted(kwargs.keys() - self.names)
        parts = []
        if missing:
            parts.append("missing " + ", ".join(map(repr, missing)))
        if unknown:
            parts.append("unknown " + ", ".join(map(repr, unknown)))
        raise TypeError(f"{'; '.join(parts)} (the function takes {', '.join(sorted(self.names))})")


def _bound(shape, batch) -> str:
    if batch is None:
        return shape_str(shape)
    return shape_str(tuple(batch if d is None else d for d in shape))


def _as_array(name: str, value) -> np.ndarray:
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"input {name!r}: masked arrays are not accepted (the mask would be "
                        "ignored); pass value.filled(...) or a plain array")
    try:
        return np.asarray(value)      # plain ndarray (a subclass is viewed as its base)
    except ValueError as e:           # ragged nested lists
        raise ShapeError(f"input {name!r}: cannot make an array of the "
                         f"{type(value).__name__} given ({e})") from None
    except Exception as e:            # an object whose __array__ or __len__ fails
        raise TypeError(f"input {name!r}: cannot make an array of the "
                        f"{type(value).__name__} given ({type(e).__name__}: {e})") from None


def _convert(name: str, value, dtype: np.dtype, is_float: bool) -> np.ndarray:
    if is_float and (type(value) is float or type(value) is int):
        try:
            return np.array(value, dtype)   # a Python number for a float input: 0-d, C, aligned
        except OverflowError:               # an int beyond float64: the checks below name it
            pass
    arr = value if type(value) is _ndarray else _as_array(name, value)
    kind = arr.dtype.kind
    if is_float:
        ok, want = kind in "fiub", "a real number array"
    elif dtype.kind == "b":
        ok, want = kind == "b", "a bool array"
    else:
        ok, want = kind in "iu", "an integer array"
    if not ok:
        raise DTypeError(f"input {name!r}: expected {want} of {dtype.name}, got dtype {arr.dtype}")
    if kind in "iu" and not is_float and arr.size and not np.can_cast(arr.dtype, dtype):
        info = np.iinfo(dtype)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise DTypeError(f"input {name!r}: values from {lo} to {hi} do not fit "
                             f"{dtype.name} (range {info.min} to {info.max})")
    if arr.dtype != dtype or not arr.flags.c_contiguous or not arr.flags.aligned:
        arr = np.array(arr, dtype=dtype, order="C")   # a fresh aligned copy; keeps 0-d 0-d
    return arr


def too_small(batch: int, need: int, node: Node) -> str:
    """The message for a batch size below what ``node`` needs (:attr:`Op.min_batch`)."""
    written = node.meta.get("written") or f"{node.op} of {label(node.inputs[0])}"
    return (f"batch size {batch} is too small: {written} (shape {shape_str(node.shape)} from "
            f"{shape_str(node.inputs[0].shape)}) needs a batch size of at least {need}")


def label_limits(graph: Graph) -> dict[str, tuple[int, int, str]]:
    """``{input name: (lo, hi, what)}`` for each integer input read as indices by an op
    with an :attr:`~adjit.ops.registry.Op.index_range` (one_hot's class indices, take's
    positions), directly or through reshape, transpose, broadcast, stop_gradient or an
    int -> int cast: its values must satisfy ``lo <= v < hi`` (the intersection where
    several ops read it; ``what`` names the one giving the upper end).  Constant indices
    are checked here, once.  Indices computed in the graph (a float cast to int) are not
    checked: ``one_hot`` gives an all-zero row for a value out of range, gathers clamp."""
    limits: dict[str, tuple[int, int, str]] = {}
    for node in graph.order():
        rng = get_op(node.op).index_range
        if rng is None:
            continue
        for k, src in enumerate(node.inputs):
            if src.dtype not in INT_DTYPES or (got := rng(node, k)) is None:
                continue
            # through ops that move integer values without changing them (Op.moves_values;
            # an int -> int cast changes none of the values that pass the check)
            while get_op(src.op).moves_values and src.inputs[0].dtype in INT_DTYPES:
                src = src.inputs[0]
            if src.op in ("input", "param"):
                have = limits.get(src.name, got)
                what = got[2] if got[1] < have[1] else have[2]
                limits[src.name] = (max(got[0], have[0]), min(got[1], have[1]), what)
            elif src.op == "const":
                who = ("constant labels of one_hot" if got[2].startswith("one_hot")
                       else "constant indices")
                check_labels(who, src.attr("value").array, got)
    return limits


def check_labels(who: str, arr: np.ndarray, limit: tuple[int, int, str]) -> None:
    """Raise ``DTypeError`` (naming ``who``, e.g. ``"input 'y'"``) unless every value of
    the integer array ``arr`` lies in ``lo <= v < hi`` for ``limit = (lo, hi, what)`` (one
    reduction: ``v - lo`` seen unsigned is huge for a value below ``lo``)."""
    lo, hi, what = limit
    if not arr.size:
        return
    unsigned = np.uint64 if arr.dtype.itemsize == 8 else np.uint32
    with np.errstate(over="ignore"):
        shifted = arr.view(unsigned) - unsigned(lo % (1 << (8 * arr.dtype.itemsize)))
    if hi > lo and shifted.max() < hi - lo:       # (a view of the same item size)
        return
    flat = arr.reshape(-1)
    bad = np.flatnonzero((flat < lo) | (flat >= hi))
    first = np.unravel_index(bad[0], arr.shape) if arr.ndim else ()
    vmin, vmax = flat.min(), flat.max()
    if what.startswith("one_hot"):
        hint = " (1-based labels? subtract 1)" if vmin >= 1 and vmax == hi else ""
        need, noun = f"labels must be class indices 0 to {hi - 1}", "labels"
    else:
        hint, noun = "", "indices"
        need = (f"indices must lie in {lo} to {hi - 1}" if hi > lo
                else "indices cannot select from an empty axis")
    raise DTypeError(f"{who}: {need} ({what}), got {flat[bad[0]]} at index "
                     f"{tuple(int(i) for i in first)} ({bad.size} of {flat.size} {noun} out "
                     f"of range, values {vmin} to {vmax}){hint}")


class Pinned:
    """The arrays of a bound function, re-checked every call.

    The caller keeps a bound array and may change it between calls: new values are how it
    changes a parameter, but it can also change what the array *is* (``resize``, assigning
    ``shape``, ``dtype`` or ``strides``, clearing ``writeable``).  Each call checks what
    native code relies on -- dtype, shape, C-contiguous and aligned, writeable when
    ``updates=`` writes it, labels in range -- and raises naming the input.  The data
    pointer itself is not fixed: a legal change that keeps all of these (a ``resize`` and
    back) is accepted, and every backend reads the array's current data pointer.
    """

    def __init__(self, values: dict[str, np.ndarray], limits: dict[str, tuple],
                 updated: list[str]):
        # (name, array, shape, dtype, the flags it needs, index range or None)
        self.rows = [(name, arr, arr.shape, arr.dtype,
                      _C_CONTIGUOUS | _ALIGNED | (_WRITEABLE if name in updated else 0),
                      limits.get(name)) for name, arr in sorted(values.items())]

    def check(self) -> None:
        for row in self.rows:       # (about 0.3 us an array)
            name, arr, shape, dtype, need, n = row
            if arr.dtype is not dtype or arr.shape != shape or arr.flags.num & need != need:
                _changed(*row)
            if n is not None:
                check_labels(f"bound input {name!r}", arr, n)


_C_CONTIGUOUS, _ALIGNED, _WRITEABLE = 0x1, 0x100, 0x400     # numpy's flag bits


def _changed(name, arr, shape, dtype, need, n) -> None:
    """Raise for a bound array that changed where it matters (an equal dtype that is not
    the same object passes)."""
    if arr.dtype != dtype:
        raise DTypeError(f"bound input {name!r} changed dtype since bind: bound as "
                         f"{dtype}, now {arr.dtype}")
    if arr.shape != shape:
        raise ShapeError(f"bound input {name!r} changed shape since bind: bound as "
                         f"{shape}, now {arr.shape}")
    flags = arr.flags
    if not (flags.c_contiguous and flags.aligned):
        raise ValueError(f"bound input {name!r} is no longer an aligned C-contiguous "
                         "array (its strides changed since bind)")
    if need & _WRITEABLE:
        check_still_writeable(name, arr)


def check_still_writeable(name: str, arr) -> None:
    """Raise unless bound array ``arr``, which ``updates=`` writes, is still writeable."""
    if not arr.flags.writeable:
        raise ValueError(f"bound input {name!r} is updated in place, but it is no "
                         "longer writeable (its writeable flag was cleared since bind)")


def require_memory(nbytes: int, batch: int | None, what: str) -> None:
    """Raise ``MemoryError`` if ``nbytes`` (needed for batch size ``batch``) cannot fit.

    The limit is the memory the system reports available (``MemAvailable`` plus free
    swap on Linux); where that is unknown, only sizes no address space can hold are
    refused.  Allocating past it would not fail cleanly: the pages are promised, then
    the process is killed when they are touched.
    """
    limit = _available_memory()
    if nbytes > limit:
        raise MemoryError(f"{what} needs {nbytes:,} bytes ({nbytes / 2**30:.3g} GiB) for "
                          f"batch size {batch}, more than the {limit:,} bytes available; "
                          "use a smaller batch")


def _available_memory() -> int:
    """Bytes the process can still fill: the system's MemAvailable plus free swap, capped
    by a cgroup v2 memory limit where one is set; the physical memory otherwise."""
    limit = None
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        kib = int(info["MemAvailable"].split()[0]) + int(info.get("SwapFree", "0 kB").split()[0])
        limit = kib * 1024
    except (OSError, KeyError, ValueError):
        try:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            limit = 2 ** 62
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            cap = f.read().strip()
        if cap != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                limit = min(limit, int(cap) - int(f.read()))
    except (OSError, ValueError):
        pass
    return max(limit, 0)
