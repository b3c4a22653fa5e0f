"""What the native CPython entry (:mod:`.fastcall`) needs to know about this process.

Object layouts the wrapper reads (``ob_type``, tuple size/items, ndarray ``nd``,
``dimensions``, ``descr``, ``flags``, the value inside float and numpy scalars, a ctypes
object's buffer pointer; ``data`` is runtime.py's DATA_OFFSET) are probed at import on
live objects; if any probe is not unique and consistent, :data:`SETUP` is None and there
is no fastcall.  ``PyArray_NewFromDescr`` is taken from numpy's C-API table and checked by
one call through ctypes.  The C-API functions the wrapper calls are looked up by name.
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

from . import fastcall_ir as fir

_api = ctypes.pythonapi
METH_FASTCALL_KEYWORDS = 0x0080 | 0x0002
ALIGNED, C_CONTIGUOUS, _F, _OWN, WRITEABLE = 0x100, 0x1, 0x2, 0x4, 0x400
_NEW_FROM_DESCR = 94        # PyArray_NewFromDescr's index in numpy's C-API table
# exact scalar types read in place for an input of this dtype, and their value's probe
SCALARS = {np.dtype(np.float64): (float, np.float64, "value_float64"),
            np.dtype(np.float32): (np.float32, None, "value_float32")}


class MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


class Context(ctypes.Structure):
    """The wrapper's ``self``: words in :data:`fastcall_ir.CTX_FIELDS` order.  Its
    ``__dict__`` keeps alive every object whose address a word holds."""
    _fields_ = [(name, ctypes.c_void_p) for name in fir.CTX_FIELDS]


def _cfunc(name: str) -> int:
    return ctypes.cast(getattr(_api, name), ctypes.c_void_p).value


def pyapi(name: str, restype, *argtypes):
    """A private prototype of a C-API function (the GIL held; ctypes.pythonapi's shared
    function objects keep whatever argtypes others set)."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, _api))


def _unique(candidates: range, ok) -> int | None:
    hits = [off for off in candidates if ok(off)]
    return hits[0] if len(hits) == 1 else None


def _word(obj, off: int, ctype=ctypes.c_void_p):
    return ctype.from_address(id(obj) + off).value


def _flags_of(a: np.ndarray) -> int:
    f = a.flags
    return (C_CONTIGUOUS * f.c_contiguous | _F * f.f_contiguous | _OWN * f.owndata
            | ALIGNED * f.aligned | WRITEABLE * f.writeable)


def _dims_at(arrays, off: int) -> bool:
    """Whether every array's shape and strides are at the pointer in word ``off`` (numpy
    allocates them as one block: strides follow the dims).  The words are compared as
    numbers first; only a candidate that fits is read through."""
    arrays = [a for a in arrays if a.ndim]
    if not all(_word(a, off) and _word(a, off + 8) == _word(a, off) + 8 * a.ndim
               for a in arrays):
        return False
    return all(tuple((ctypes.c_int64 * (2 * a.ndim)).from_address(_word(a, off)))
               == a.shape + a.strides for a in arrays)


def _probe_layout() -> dict | None:
    """Field offsets, each the only candidate agreeing with every live probe."""
    from .runtime import DATA_OFFSET
    if DATA_OFFSET is None or DATA_OFFSET + 8 > fir.FAKE_BYTES:
        return None
    objs = [1.5, "x", (1, 2), np.float32(2.5), np.ones(3), [], Context()]
    raw = bytearray(17)
    arrays = [np.asarray(0.5), np.ones(3, np.float32), np.zeros((2, 3, 4))[1], np.arange(5)[::2],
              np.ndarray((), np.float64, raw, 1), np.zeros((1, 1, 1, 1), np.int8),
              np.frombuffer(bytes(8), np.float64).reshape(())]
    tuples = [(), ("a",), ("a", "b", 3.0), tuple(range(7))]
    words = range(8, 80, 8)
    lay = {
        "type_off": _unique(range(0, 32, 8),
                            lambda o: all(_word(x, o) == id(type(x)) for x in objs + arrays)),
        "tuple_size_off": _unique(words, lambda o: all(
            _word(t, o, ctypes.c_ssize_t) == len(t) for t in tuples)),
        "tuple_items_off": _unique(words, lambda o: all(
            _word(t, o + 8 * k) == id(v) for t in tuples[1:] for k, v in enumerate(t))),
        "nd_off": _unique(range(8, 96, 4), lambda o: all(
            _word(a, o, ctypes.c_int) == a.ndim for a in arrays)),
        "descr_off": _unique(range(8, 96, 8), lambda o: all(
            _word(a, o) == id(a.dtype) for a in arrays)),
        "flags_off": _unique(range(8, 96, 4), lambda o: all(
            _word(a, o, ctypes.c_int) & 0x507 == _flags_of(a) for a in arrays)),
        "data_off": DATA_OFFSET,               # probed once, by runtime.py
        "dims_off": _unique(words, lambda o: _dims_at(arrays, o)),
        "ctx_off": _unique(words, lambda o: all(
            _word(c, o) == ctypes.addressof(c) for c in (Context(), MethodDef()))),
        "value_float64": _unique(words, lambda o: all(
            _word(v, o, ctypes.c_double) == float(v) for v in
            (1.5, -2.25e300, float(np.float64(3.75)), np.float64(0.125), np.float64(-7e-300)))),
        "value_float32": _unique(words, lambda o: all(
            _word(v, o, ctypes.c_float) == float(v) for v in
            (np.float32(2.5), np.float32(-0.375), np.float32(1e30)))),
    }
    if any(v is None for v in lay.values()):
        return None
    if _word(np.float64(6.5), lay["value_float64"], ctypes.c_double) != 6.5:
        return None
    return lay


def _new_from_descr() -> int | None:
    """Address of ``PyArray_NewFromDescr``, after one checked call through ctypes."""
    try:
        from numpy._core import multiarray
    except ImportError:     # numpy 1.x
        from numpy.core import multiarray
    capsule = multiarray._ARRAY_API
    name = pyapi("PyCapsule_GetName", ctypes.c_char_p, ctypes.py_object)(capsule)
    table = pyapi("PyCapsule_GetPointer", ctypes.c_void_p, ctypes.py_object,
                   ctypes.c_char_p)(capsule, name)
    if not table or ctypes.c_void_p.from_address(table + 16).value != id(np.ndarray):
        return None     # entry 2 is &PyArray_Type in every numpy: a sanity check of the table
    addr = ctypes.c_void_p.from_address(table + 8 * _NEW_FROM_DESCR).value
    if not addr:
        return None
    proto = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                             ctypes.c_void_p)
    for dt in (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)):
        refs = sys.getrefcount(dt)
        _api.Py_IncRef(ctypes.py_object(dt))             # the call steals one reference
        a = proto(addr)(id(np.ndarray), id(dt), 0, None, None, None, 0, None)
        good = (type(a) is np.ndarray and a.shape == () and a.dtype is dt and a.base is None
                and _flags_of(a) == _flags_of(np.empty((), dt)))
        del a
        if not good or sys.getrefcount(dt) != refs:
            return None
    return addr


def _setup():
    try:
        lay = _probe_layout()
        new = _new_from_descr() if lay else None
    except Exception:   # noqa: BLE001 - any surprise in a probe means: no fastcall
        return None
    if new is None:
        return None
    api = {"ndarray": id(np.ndarray), "unicode": id(str), "new_from_descr": new}
    for field, name in (("vectorcall", "PyObject_Vectorcall"),
                        ("unicode_compare", "PyUnicode_Compare"), ("tuple_new", "PyTuple_New"),
                        ("tuple_setitem", "PyTuple_SetItem"), ("incref", "Py_IncRef"),
                        ("decref", "Py_DecRef"), ("save_thread", "PyEval_SaveThread"),
                        ("restore_thread", "PyEval_RestoreThread")):
        try:
            api[field] = _cfunc(name)
        except AttributeError:
            return None
    api.update((k, v) for k, v in lay.items() if k.endswith("_off") and k != "ctx_off")
    return lay, api


SETUP = _setup()   # (layout offsets, the wrapper's API words), or None
