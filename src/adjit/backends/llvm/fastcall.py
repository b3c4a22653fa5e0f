"""A native CPython entry for compiled functions (see :mod:`.fastcall_ir`).

``Compiled`` calls ``NativeFunction.fastcall(fallback)``; :func:`make_fastcall` answers a
builtin function (``METH_FASTCALL | METH_KEYWORDS``) that runs the model's native entry
straight from the interpreter's call, or None.  The builtin handles only calls it can
check completely itself -- every input given by keyword, each an exact ndarray of the
input's builtin dtype object, aligned and C-contiguous, of the declared rank and static
dims, every batch dim one shared size (or, for a 0-d input, an exact ``float`` / numpy
scalar of the input's type) -- and hands every other call, unchanged, to ``fallback``
(the checked Python path), which converts or raises as usual.  Results are what the
slow path returns: fresh, owning, writeable C-contiguous arrays, one or a tuple.

Two routes (:func:`_mode`):

* ``stack``: every argument and output 0-d, no matmul, an arena of at most 4 KiB: the
  arena on the wrapper's stack, the GIL held (about 0.5 us a call);
* ``primed``: everything else.  The scratch memory of a call (arena, GEMM workspace) is
  a *primed state* per batch size (:class:`_Primer`, at most ``N_PRIMED``), taken with
  a try-lock; the GIL is released around the entry, as ctypes does.  A call whose batch
  size has no state takes the Python path once and primes one (``_reprimer``); a call
  finding its state locked by another thread takes the Python path.

Common: not profiled, DATA_OFFSET in use (the table holds array objects).  An input
that ``updates=`` writes must also be WRITEABLE (no scalar), and its array object fills
the slot of its in-place output too.  For a ``Bound`` the free arguments are the
keywords; its bound arrays and the in-place buffers it binds are *fixed* slots
(:func:`_fixed_slots`) the wrapper writes every call.  One
wrapper is compiled per process (its IR names no model and no address; everything is
read from a per-function *context*, a ctypes structure passed as the builtin's
``self``), so a model pays only for its context.

Object layouts the wrapper reads (``ob_type``, tuple size/items, ndarray ``nd``,
``dimensions``, ``descr``, ``flags``, the value inside float and numpy scalars, a ctypes
object's buffer pointer; ``data`` is runtime.py's DATA_OFFSET) are probed at import on
live objects; if any
probe is not unique and consistent, there is no fastcall.  ``PyArray_NewFromDescr`` is
taken from numpy's C-API table and checked by one call through ctypes.
``ADJIT_FASTCALL=0`` switches the fastcall off, ``ADJIT_FASTCALL_ARRAYS=0`` only the
primed route.
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
        "data_off": DATA_OFFSET,               # probed once, by runtime.py
        "dims_off": _unique(words, lambda o: _dims_at(arrays, o)),
        "ctx_off": _unique(words, lambda o: all(
            _word(c, o) == ctypes.addressof(c) for c in (_Context(), _MethodDef()))),
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


def _mode(native) -> str | None:
    """``"stack"`` (all 0-d, small: arena on the stack, GIL held), ``"primed"`` (arrays:
    a primed state per batch size, GIL released), or None (no fastcall)."""
    plan = native.plan
    if _SETUP is None or os.environ.get("ADJIT_FASTCALL", "1").strip() == "0":
        return None
    if native._counters is not None:
        return None
    if plan.n_slots > fir.MAX_SLOTS or len(plan.graph.outputs) > fir.MAX_OUTPUTS:
        return None
    values = list(plan.graph.inputs) + list(plan.graph.outputs)
    if any(len(n.shape) > fir.MAX_ND for n in values):
        return None
    if (all(n.shape == () for n in values) and not any(n.op == "matmul" for n in plan.steps)
            and plan.arena_offsets(0)[1] <= fir.ARENA_BYTES):
        return "stack"
    return None if os.environ.get("ADJIT_FASTCALL_ARRAYS", "1").strip() == "0" else "primed"


def eligible(native) -> bool:
    """Whether a NativeFunction can get a native entry (before looking at the caller)."""
    return _mode(native) is not None


class _Primer:
    """The primed states of an array function: up to N_PRIMED batch sizes, each a word
    block (lock, batch, one table word per temporary slot) over a dedicated runtime state
    (arena, GEMM workspace).  The wrapper takes a block with an atomic 0 -> 1 on its lock
    (the GIL held), and reads ``slots`` only with the GIL held; so once a block is out of
    ``slots``, a zero lock means no call uses it or ever will, and it can go."""

    EVICT_AFTER = 64

    def __init__(self, plan, temp_slots: list[int]):
        self.plan, self.temp_slots = plan, temp_slots
        self.slots = (ctypes.c_void_p * fir.N_PRIMED)()
        self.blocks: dict[int, tuple] = {}       # batch -> (slot index, words, state)
        self.retired: list[tuple] = []
        self.next = self.misses = 0
        self.lock = threading.Lock()

    def prime(self, batch: int) -> None:
        """A state for ``batch``.  With every slot taken, a state is replaced only after
        EVICT_AFTER calls of unprimed batch sizes: a caller cycling through more sizes
        than N_PRIMED mostly takes the Python path instead of re-priming every call."""
        from .runtime import dedicated_state
        with self.lock:
            if batch in self.blocks:
                return
            k = next((i for i in range(fir.N_PRIMED) if not self.slots[i]), None)
            self.misses += 1
            if k is None and self.misses < self.EVICT_AFTER:
                return
            st = dedicated_state(self.plan, batch)
            self.misses = 0
            words = (ctypes.c_int64 * (fir.P_TEMPS + len(self.temp_slots)))()
            words[fir.P_BATCH] = batch
            for j, slot in enumerate(self.temp_slots):
                words[fir.P_TEMPS + j] = st.table[slot] or 0
            if k is None:
                k, self.next = self.next, (self.next + 1) % fir.N_PRIMED
                old = next(b for b, v in self.blocks.items() if v[0] == k)
                self.retired.append(self.blocks.pop(old))
            self.slots[k] = ctypes.addressof(words)
            self.blocks[batch] = (k, words, st)
            self.retired = [r for r in self.retired if r[1][fir.P_LOCK] != 0]


def _reprimer(fallback, primer: _Primer, specs):
    """The wrapper's route for a checked call of a batch size with no primed state: the
    checked Python path, then a state primed for that batch size."""
    source = next(((name, pos) for name, _, _, _, pos in specs if pos >= 0), None)

    def reprime(*args, **kwargs):
        out = fallback(*args, **kwargs)
        try:
            primer.prime(np.shape(kwargs[source[0]])[source[1]] if source else 0)
        except (MemoryError, KeyError, IndexError, TypeError, ValueError):
            pass            # this batch size stays on the checked Python path
        return out
    return reprime


def _dims(shape):
    return (ctypes.c_int64 * (len(shape) or 1))(*[-1 if d is None else int(d) for d in shape])


def _fixed_slots(native, slots: dict, bound) -> list[tuple[int, np.ndarray]] | None:
    """(slot, array) of a bound function's bound inputs and in-place outputs, or None
    when the bound arrays carry a batch size (the wrapper takes it from the arguments)."""
    if bound is None:
        return []
    if bound.batch is not None:
        return None
    plan = native.plan
    return ([(slot, bound.values[name]) for name, slot in slots.items() if name in bound.values]
            + [(plan.output_slots[k], bound.values[name]) for k, name in native._updates.items()
               if name in bound.values])


def make_fastcall(native, fallback):
    """A builtin calling ``native``'s entry for the calls it can check, else ``fallback``
    (a bound ``Compiled.__call__``, or ``Bound.__call__``: then the bound arrays fill
    their slots every call); None when the function is not eligible."""
    owner = getattr(fallback, "__self__", None)
    bound = owner if hasattr(owner, "_free") else None
    binder = getattr(owner, "_free" if bound is not None else "_binder", None)
    mode = _mode(native) if binder is not None else None
    if mode is None:
        return None
    lay, api = _SETUP
    plan = native.plan
    specs = binder.specs        # (name, shape, dtype, is_float, first batch dim), sorted
    if len(specs) > fir.MAX_INPUTS:
        return None
    slots = {n.name: plan.storage[n.id].slot for n in plan.inputs}
    given = {s[0] for s in specs} | (bound.values.keys() if bound is not None else set())
    if not slots.keys() <= given or sorted(slots.values()) != list(range(len(plan.inputs))):
        return None     # every graph input is an argument or bound, in slots 0..P-1
    fixed = _fixed_slots(native, slots, bound)
    n_out = len(plan.graph.outputs) - len(native._updates)
    if fixed is None or set(native._updates) != set(range(n_out, len(plan.graph.outputs))):
        return None     # (updates are the last outputs, never returned)
    ctx = _Context()
    keep = ctx.__dict__
    keep["names"] = names = [sys.intern(s[0]) for s in specs]
    dtypes = [np.dtype(s[2]) for s in specs]
    out_dtypes = [np.dtype(o.dtype) for o in plan.graph.outputs[:n_out]]
    keep["dtypes"] = dtypes + out_dtypes
    keep["dims"] = dims = []
    # a free input that ``updates=`` writes: the caller's own writeable array, also the
    # slot of its in-place output (a float or a converted copy goes to the Python path,
    # which raises as it should)
    in_place = {name: plan.output_slots[k] for k, name in native._updates.items()}
    recs = (ctypes.c_void_p * (fir.REC * len(specs) or 1))()
    for k, (name, dt, spec) in enumerate(zip(names, dtypes, specs)):
        scalar_a, scalar_b, probe = _SCALARS.get(dt, (None, None, None))
        if spec[1] != () or name in in_place:
            scalar_a = scalar_b = probe = None
        value_off = lay[probe] if probe else 0
        dims.append(_dims(spec[1]))
        rec = {"name": id(name), "descr": id(dt), "value_off": value_off,
               "scalar_a": scalar_a and id(scalar_a), "scalar_b": scalar_b and id(scalar_b),
               "slot": slots.get(name, -1) & (2 ** 64 - 1), "nd": len(spec[1]),
               "dims": ctypes.addressof(dims[-1]),
               "flags": _ALIGNED | _C | (_WRITEABLE if name in in_place else 0),
               "out_slot": in_place.get(name, -1) & (2 ** 64 - 1)}
        for j, field in enumerate(fir.REC_FIELDS):
            recs[fir.REC * k + j] = rec[field] or None
    outs = (ctypes.c_void_p * (fir.OUT * len(out_dtypes) or 1))()
    for k, (o, dt) in enumerate(zip(plan.graph.outputs[:n_out], out_dtypes)):
        dims.append(_dims(o.shape))
        rec = {"descr": id(dt), "nd": len(o.shape), "dims": ctypes.addressof(dims[-1])}
        for j, field in enumerate(fir.OUT_FIELDS):
            outs[fir.OUT * k + j] = rec[field] or None
    temp_slots = [plan.storage[t.id].slot for t in plan.temps] + [plan.workspace_slot]
    if temp_slots != list(range(plan.n_array_slots, plan.n_slots)):
        return None
    offsets = plan.arena_offsets(0)[0] if mode == "stack" else [0] * len(plan.temps)
    temps = (ctypes.c_int64 * len(temp_slots))(*(offsets + [0]))   # workspace: unused
    pairs = (ctypes.c_void_p * (fir.FIX * len(fixed) or 1))(
        *[w for slot, arr in fixed for w in (slot, id(arr))])
    keep.update(recs=recs, outs=outs, temps=temps, fallback=fallback, jit=native.jit,
                pairs=pairs, fixed=fixed)
    single = (bound.fn if bound is not None else owner)._single
    words = dict(api, fallback=id(fallback), entry=native.jit.address("adjit_entry"),
                 n_in=len(specs), n_out=len(out_dtypes), n_plan_in=len(slots),
                 n_temps=len(temp_slots), single=int(bool(single)),
                 inputs=ctypes.addressof(recs), outputs=ctypes.addressof(outs),
                 temp_offsets=ctypes.addressof(temps), primed=None, reprime=None,
                 fixed=ctypes.addressof(pairs), n_fixed=len(fixed),
                 first_temp=plan.n_array_slots)
    if mode == "primed":
        keep["primer"] = primer = _Primer(plan, temp_slots)
        keep["reprime"] = reprime = _reprimer(fallback, primer, specs)
        words.update(primed=ctypes.addressof(primer.slots), reprime=id(reprime))
    for field in fir.CTX_FIELDS:
        setattr(ctx, field, words[field] or None)
    method = _MethodDef(b"__call__", _wrapper_address(), _METH_FASTCALL_KEYWORDS,
                        b"Native fast path of this compiled function (see adjit fastcall).")
    keep["method"] = method
    return _new_cfunction(ctypes.addressof(method), ctx, None)
