"""A native CPython entry for small all-scalar functions (see :mod:`.fastcall_ir`).

``Compiled`` calls ``NativeFunction.fastcall(fallback)``; :func:`make_fastcall` answers a
builtin function (``METH_FASTCALL | METH_KEYWORDS``) that runs the model's native entry
straight from the interpreter's call, or None.  The builtin handles only calls it can
check completely itself -- every input given by keyword, each an exact ``float`` /
numpy scalar of the input's type or an exact 0-d ndarray of the input's builtin dtype
object, aligned -- and hands every other call, unchanged, to ``fallback`` (the checked
Python path), which converts or raises as usual.  Results are what the slow path
returns: fresh, owning, writeable 0-d arrays, one or a tuple.

Eligible: every argument and output 0-d, no matmul, an arena of at most 4 KiB, no
``updates``, not profiled, DATA_OFFSET in use (the table holds array objects).

One wrapper is compiled per process (its IR names no model and no address; everything
is read from a per-function *context*, a ctypes structure passed as the builtin's
``self``), so a model pays only for its context (~60 us).

Object layouts the wrapper reads (``ob_type``, tuple size/items, ndarray ``nd``,
``descr``, ``flags``, ``data``, the value inside float and numpy scalars, a ctypes
object's buffer pointer) are probed at import on live objects; if any probe is not
unique and consistent, there is no fastcall.  ``PyArray_NewFromDescr`` is taken from
numpy's C-API table and checked by one call through ctypes.  ``ADJIT_FASTCALL=0``
switches the fastcall off.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

import numpy as np

from . import fastcall_ir as fir
from .target import compile_ir

_api = ctypes.pythonapi
_METH_FASTCALL_KEYWORDS = 0x0080 | 0x0002
_ALIGNED, _C, _F, _OWN, _WRITEABLE = 0x100, 0x1, 0x2, 0x4, 0x400
_NEW_FROM_DESCR = 94        # PyArray_NewFromDescr's index in numpy's C-API table
# exact scalar types read in place for an input of this dtype, and their value's probe
_SCALARS = {np.dtype(np.float64): (float, np.float64, "value_float64"),
            np.dtype(np.float32): (np.float32, None, "value_float32")}


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


class _Context(ctypes.Structure):
    """The wrapper's ``self``: words in :data:`fastcall_ir.CTX_FIELDS` order.  Its
    ``__dict__`` keeps alive every object whose address a word holds."""
    _fields_ = [(name, ctypes.c_void_p) for name in fir.CTX_FIELDS]


def _cfunc(name: str) -> int:
    return ctypes.cast(getattr(_api, name), ctypes.c_void_p).value


def _pyapi(name: str, restype, *argtypes):
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
    return (_C * f.c_contiguous | _F * f.f_contiguous | _OWN * f.owndata
            | _ALIGNED * f.aligned | _WRITEABLE * f.writeable)


def _probe_layout() -> dict | None:
    """Field offsets, each the only candidate agreeing with every live probe."""
    from .runtime import DATA_OFFSET
    if DATA_OFFSET is None or DATA_OFFSET + 8 > fir.FAKE_BYTES:
        return None
    objs = [1.5, "x", (1, 2), np.float32(2.5), np.ones(3), [], _Context()]
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
        "data_off": _unique(words, lambda o: all(
            _word(a, o) == a.ctypes.data for a in arrays if a.size)),
        "ctx_off": _unique(words, lambda o: all(
            _word(c, o) == ctypes.addressof(c) for c in (_Context(), _MethodDef()))),
        "value_float64": _unique(words, lambda o: all(
            _word(v, o, ctypes.c_double) == float(v) for v in
            (1.5, -2.25e300, float(np.float64(3.75)), np.float64(0.125), np.float64(-7e-300)))),
        "value_float32": _unique(words, lambda o: all(
            _word(v, o, ctypes.c_float) == float(v) for v in
            (np.float32(2.5), np.float32(-0.375), np.float32(1e30)))),
    }
    if any(v is None for v in lay.values()) or lay["data_off"] != DATA_OFFSET:
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
    name = _pyapi("PyCapsule_GetName", ctypes.c_char_p, ctypes.py_object)(capsule)
    table = _pyapi("PyCapsule_GetPointer", ctypes.c_void_p, ctypes.py_object,
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
    api = {"ndarray": id(np.ndarray), "unicode": id(str), "new_from_descr": new,
           "aligned_flag": _ALIGNED}
    for field, name in (("vectorcall", "PyObject_Vectorcall"),
                        ("unicode_compare", "PyUnicode_Compare"), ("tuple_new", "PyTuple_New"),
                        ("tuple_setitem", "PyTuple_SetItem"), ("incref", "Py_IncRef"),
                        ("decref", "Py_DecRef")):
        try:
            api[field] = _cfunc(name)
        except AttributeError:
            return None
    api.update((k, v) for k, v in lay.items() if k.endswith("_off") and k != "ctx_off")
    return lay, api


_SETUP = _setup()
_wrapper = _wrapper_addr = None
_wrapper_lock = threading.Lock()
_new_cfunction = _pyapi("PyCFunction_NewEx", ctypes.py_object, ctypes.c_void_p,
                        ctypes.py_object, ctypes.c_void_p)


def _wrapper_address() -> int:
    """The compiled ``adjit_fastcall`` (one per process; the disk cache serves later ones)."""
    global _wrapper, _wrapper_addr
    with _wrapper_lock:
        if _wrapper is None:
            ir_text = fir.wrapper_ir(_SETUP[0]["ctx_off"])
            _wrapper = compile_ir(ir_text, opt_level=1, name="adjit_fastcall")
            _wrapper_addr = _wrapper.address(fir.NAME)
        return _wrapper_addr


def eligible(native) -> bool:
    """Whether a NativeFunction can get a native entry (before looking at the caller)."""
    plan = native.plan
    if _SETUP is None or os.environ.get("ADJIT_FASTCALL", "1").strip() == "0":
        return False
    if native._updates or native._counters is not None:
        return False
    if any(n.op == "matmul" for n in plan.steps):
        return False
    if any(n.shape != () for n in list(plan.graph.inputs) + list(plan.graph.outputs)):
        return False
    if plan.n_slots > fir.MAX_SLOTS or len(plan.graph.outputs) > fir.MAX_OUTPUTS:
        return False
    return plan.arena_offsets(0)[1] <= fir.ARENA_BYTES


def make_fastcall(native, fallback):
    """A builtin calling ``native``'s entry for the calls it can check, else ``fallback``
    (a bound ``Compiled.__call__``); None when the function is not eligible."""
    owner = getattr(fallback, "__self__", None)
    binder = getattr(owner, "_binder", None)
    if binder is None or not eligible(native):
        return None
    lay, api = _SETUP
    plan = native.plan
    specs = binder.specs        # (name, shape, dtype, is_float, first batch dim), sorted
    if len(specs) > fir.MAX_INPUTS or any(shape != () for _, shape, *_ in specs):
        return None
    slots = {n.name: plan.storage[n.id].slot for n in plan.inputs}
    if (not slots.keys() <= {s[0] for s in specs}
            or sorted(slots.values()) != list(range(len(plan.inputs)))):
        return None     # every graph input is an argument, in slots 0..P-1
    ctx = _Context()
    keep = ctx.__dict__
    keep["names"] = names = [sys.intern(s[0]) for s in specs]
    dtypes = [np.dtype(s[2]) for s in specs]
    out_dtypes = [np.dtype(o.dtype) for o in plan.graph.outputs]
    keep["dtypes"] = dtypes + out_dtypes
    recs = (ctypes.c_void_p * (fir.REC * len(specs) or 1))()
    for k, (name, dt) in enumerate(zip(names, dtypes)):
        scalar_a, scalar_b, probe = _SCALARS.get(dt, (None, None, None))
        value_off = lay[probe] if probe else 0
        rec = {"name": id(name), "descr": id(dt), "value_off": value_off,
               "scalar_a": scalar_a and id(scalar_a), "scalar_b": scalar_b and id(scalar_b),
               "slot": slots.get(name, -1) & (2 ** 64 - 1)}
        for j, field in enumerate(fir.REC_FIELDS):
            recs[fir.REC * k + j] = rec[field] or None
    descrs = (ctypes.c_void_p * len(out_dtypes))(*map(id, out_dtypes))
    offsets, _ = plan.arena_offsets(0)
    temp_slots = [plan.storage[t.id].slot for t in plan.temps] + [plan.workspace_slot]
    if temp_slots != list(range(plan.n_array_slots, plan.n_slots)):
        return None
    temps = (ctypes.c_int64 * len(temp_slots))(*(offsets + [0]))   # workspace: unused
    keep.update(recs=recs, descrs=descrs, temps=temps, fallback=fallback, jit=native.jit)
    words = dict(api, fallback=id(fallback), entry=native.jit.address("adjit_entry"),
                 n_in=len(specs), n_out=len(out_dtypes), n_plan_in=len(slots),
                 n_temps=len(temp_slots), single=int(bool(owner._single)),
                 inputs=ctypes.addressof(recs), out_descrs=ctypes.addressof(descrs),
                 temp_offsets=ctypes.addressof(temps))
    for field in fir.CTX_FIELDS:
        setattr(ctx, field, words[field] or None)
    method = _MethodDef(b"__call__", _wrapper_address(), _METH_FASTCALL_KEYWORDS,
                        b"Native fast path of this compiled function (see adjit fastcall).")
    keep["method"] = method
    return _new_cfunction(ctypes.addressof(method), ctx, None)
