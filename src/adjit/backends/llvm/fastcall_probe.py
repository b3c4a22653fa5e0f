"""What the native CPython entry (:mod:`.fastcall`) needs to know about this process.

The entry rests on layouts outside any stable ABI (CPython object headers, numpy's array
struct and the slot numbers of its private ``_ARRAY_API`` table, ctypes objects) and on the
GIL.  So it installs only where all of this holds (:func:`unavailable` says why not):

* ``ADJIT_FASTCALL`` is not ``0``;
* CPython with a GIL (not a free-threaded ``Py_GIL_DISABLED`` build, where the entry's
  lock protocol and the object header are different; ``force`` does not override this);
* a tested (Python minor, numpy major.minor) pair, :data:`TESTED`; ``ADJIT_FASTCALL=force``
  tries an untested pair (the probes below still decide);
* numpy's C-API table reports an ABI version whose slot numbers are known (the check every
  extension's ``import_array()`` makes, through slot 0);
* every probe below agrees.

Object layouts the wrapper reads (``ob_type``, tuple size/items, ndarray ``nd``,
``dimensions``, ``descr``, ``flags``, the value inside float and numpy scalars, a ctypes
object's buffer pointer; ``data`` is runtime.py's DATA_OFFSET) are probed on live objects,
once, when the first function asks (:func:`setup`); a probe reads a candidate offset only
inside the object (:func:`extent`), and if any probe is not unique and consistent there is
no fastcall.  ``PyArray_NewFromDescr`` is taken from numpy's C-API table and checked by
calls through ctypes.  The C-API functions the wrapper calls are looked up by name.
"""
from __future__ import annotations

import ctypes
import os
import sys
import sysconfig

import numpy as np

from . import fastcall_ir as fir

_api = ctypes.pythonapi
METH_FASTCALL_KEYWORDS = 0x0080 | 0x0002
ALIGNED, C_CONTIGUOUS, _F, _OWN, WRITEABLE = 0x100, 0x1, 0x2, 0x4, 0x400
_NEW_FROM_DESCR = 94        # PyArray_NewFromDescr's index in numpy's C-API table
# numpy C ABI versions (PyArray_GetNDArrayCVersion, slot 0) whose table has that slot
_KNOWN_ABI = {0x01000009, 0x02000000}
# (Python minor, numpy major.minor) pairs the native entry was tested with: the fastcall
# test files (tests/llvm/test_fastcall*.py) pass on each.  Add a pair only after they do
# (run them with ADJIT_FASTCALL=force).
TESTED = frozenset({((3, 11), (1, 26)), ((3, 11), (2, 0)), ((3, 11), (2, 3)),
                    ((3, 11), (2, 4))})
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


def extent(obj) -> int:
    """Bytes of ``obj``'s own struct at ``id(obj)`` that may be read: the smaller of its
    type's size (``tp_basicsize`` plus ``tp_itemsize`` per item) and ``__sizeof__`` (a
    compact str is smaller than its type's basicsize; an array's ``__sizeof__`` counts its
    data, a numpy scalar's its value twice)."""
    tp = type(obj)
    items = 0
    if tp.__itemsize__:
        try:
            items = len(obj)
        except TypeError:
            pass
    return min(tp.__basicsize__ + tp.__itemsize__ * items, obj.__sizeof__())


def _word(obj, off: int, ctype=ctypes.c_void_p):
    """The ``ctype`` at byte ``off`` of ``obj``, or None when that is not inside it."""
    if off < 0 or off + ctypes.sizeof(ctype) > extent(obj):
        return None
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
    if not all(_word(a, off) and _word(a, off + 8) is not None
               and _word(a, off + 8) == _word(a, off) + 8 * a.ndim for a in arrays):
        return False
    return all(tuple((ctypes.c_int64 * (2 * a.ndim)).from_address(_word(a, off)))
               == a.shape + a.strides for a in arrays)


def _probe_layout() -> dict | str:
    """Field offsets, each the only candidate agreeing with every live probe (or what
    failed)."""
    from .runtime import DATA_OFFSET
    if DATA_OFFSET is None or DATA_OFFSET + 8 > fir.FAKE_BYTES:
        return "numpy's array data offset was not recognised (runtime.DATA_OFFSET)"
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
    failed = [k for k, v in lay.items() if v is None]
    if failed:
        return "no unique offset for " + ", ".join(failed)
    if _word(np.float64(6.5), lay["value_float64"], ctypes.c_double) != 6.5:
        return "no unique offset for value_float64"
    return lay


def _new_from_descr() -> int | str:
    """Address of ``PyArray_NewFromDescr``, after checked calls through ctypes (or what
    failed)."""
    try:
        from numpy._core import multiarray
    except ImportError:     # numpy 1.x
        from numpy.core import multiarray
    capsule = multiarray._ARRAY_API
    name = pyapi("PyCapsule_GetName", ctypes.c_char_p, ctypes.py_object)(capsule)
    table = pyapi("PyCapsule_GetPointer", ctypes.c_void_p, ctypes.py_object,
                   ctypes.c_char_p)(capsule, name)
    if not table:
        return "numpy's _ARRAY_API capsule holds no table"
    # slot 0 is PyArray_GetNDArrayCVersion in every numpy (import_array() calls it)
    abi = ctypes.CFUNCTYPE(ctypes.c_uint)(ctypes.c_void_p.from_address(table).value)()
    if abi not in _KNOWN_ABI:
        return f"numpy's C ABI version {abi:#x} is not one whose API slots are known"
    if ctypes.c_void_p.from_address(table + 16).value != id(np.ndarray):
        return "numpy's _ARRAY_API slot 2 is not PyArray_Type"   # a sanity check
    addr = ctypes.c_void_p.from_address(table + 8 * _NEW_FROM_DESCR).value
    if not addr:
        return "numpy's _ARRAY_API has no PyArray_NewFromDescr"
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
            return "PyArray_NewFromDescr did not answer as expected"
    return addr


def free_threaded() -> bool:
    """A free-threaded CPython build (``Py_GIL_DISABLED``), or the GIL switched off."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return True
    gil = getattr(sys, "_is_gil_enabled", None)
    return gil is not None and not gil()


def versions() -> tuple[tuple[int, int], tuple[int, int]]:
    """(Python major, minor), (numpy major, minor) of this process."""
    major, minor = np.__version__.split(".")[:2]
    return tuple(sys.version_info[:2]), (int(major), int(minor))


def _tested_text() -> str:
    return ", ".join(f"Python {p[0]}.{p[1]} with numpy {n[0]}.{n[1]}" for p, n in sorted(TESTED))


def _setting() -> str:
    return os.environ.get("ADJIT_FASTCALL", "1").strip().lower()


def refusal() -> str | None:
    """Why this process may not install the native entry before any probe runs: the
    setting, a free-threaded build, an untested version pair (None: it may)."""
    setting = _setting()
    if setting == "0":
        return "switched off by ADJIT_FASTCALL=0"
    if free_threaded():
        return ("a free-threaded Python build: the native entry relies on the GIL and on "
                "the object layout of a build with one")
    if sys.implementation.name != "cpython":
        return f"not CPython ({sys.implementation.name})"
    if setting != "force" and versions() not in TESTED:
        (pa, pb), (na, nb) = versions()
        return (f"untested versions: Python {pa}.{pb} with numpy {na}.{nb} (tested: "
                f"{_tested_text()}); ADJIT_FASTCALL=force tries the native entry anyway")
    return None


_probed: list = []     # once probed: [(layout, API words) or the reason it failed]


def _setup():
    try:
        lay = _probe_layout()
        new = _new_from_descr() if isinstance(lay, dict) else lay
    except Exception as e:   # noqa: BLE001 - any surprise in a probe means: no fastcall
        return f"a probe raised {type(e).__name__}: {e}"
    if isinstance(new, str):
        return new
    api = {"ndarray": id(np.ndarray), "unicode": id(str), "new_from_descr": new}
    for field, name in (("vectorcall", "PyObject_Vectorcall"),
                        ("unicode_compare", "PyUnicode_Compare"), ("tuple_new", "PyTuple_New"),
                        ("tuple_setitem", "PyTuple_SetItem"), ("incref", "Py_IncRef"),
                        ("decref", "Py_DecRef"), ("save_thread", "PyEval_SaveThread"),
                        ("restore_thread", "PyEval_RestoreThread"), ("call", "PyObject_Call"),
                        ("dict_next", "PyDict_Next"), ("dict_size", "PyDict_Size")):
        try:
            api[field] = _cfunc(name)
        except AttributeError:
            return f"the C-API function {name} was not found"
    api.update((k, v) for k, v in lay.items() if k.endswith("_off") and k != "ctx_off")
    return lay, api


def unavailable() -> str | None:
    """Why the native entry does not install in this process (None: it does).  The probes
    run on the first call that gets past :func:`refusal`, and their answer is kept."""
    why = refusal()
    if why is not None:
        return why
    if not _probed:
        _probed.append(_setup())
    got = _probed[0]
    return ("the object layout probes failed: " + got) if isinstance(got, str) else None


def setup():
    """(layout offsets, the wrapper's API words), or None (see :func:`unavailable`)."""
    return None if unavailable() is not None else _probed[0]
