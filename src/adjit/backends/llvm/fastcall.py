"""A native CPython entry for compiled functions (see :mod:`.fastcall_ir`).

``Compiled`` and ``Bound`` call ``NativeFunction.fastcall(...)``; :func:`make_fastcall`
answers a builtin function (``METH_FASTCALL | METH_KEYWORDS``) that runs the model's
native entry straight from the interpreter's call, or None.  The builtin handles only calls it can
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

Common: not profiled, DATA_OFFSET in use (the table holds array objects, and the entry
reads each one's current data pointer).  An input that ``updates=`` writes must also be
WRITEABLE (no scalar), and its array object fills the slot of its in-place output too.
A label input (an integer input that ``one_hot`` reads, see
:func:`adjit.binding.label_limits`) must hold class indices only: the wrapper checks
the values, and any other call goes to the Python path, which raises.  For a ``Bound``
the free arguments are the keywords; its bound arrays are *fixed* inputs
(:func:`_fixed_inputs`) that the wrapper checks like the keyword ones every call (their
owner may have resized them, or changed their shape, dtype or flags) and writes into
their slots and the slots of the outputs updating them in place.  One wrapper is
compiled per process (its IR names no model and no address; everything is read from a per-function
*context*, a ctypes structure passed as the builtin's ``self``), so a model pays only
for its context.

``f(...)`` itself does not call the builtin: ``compiled._install_native`` makes it the
``__call__`` of a per-instance class, and :func:`install_type_call` also gives that class
a native ``tp_call`` (``adjit_typecall``, :mod:`.fastcall_type`, :mod:`.fastcall_kwargs`)
reading the keyword dict CPython built, so a call skips the ``__call__`` lookup and the
unpacking of the dict into kwnames (W1: 0.28 -> 0.24 us; ``ADJIT_FASTCALL_TYPE=0``
switches this step off, the builtin then serves through ``slot_tp_call``).

Object layouts and C-API entries come from :mod:`.fastcall_probe` (no fastcall on an
untested Python/numpy pair, a free-threaded build, or when a probe fails: see
:func:`.fastcall_probe.unavailable`).  ``ADJIT_FASTCALL=0`` switches the fastcall off,
``ADJIT_FASTCALL=force`` tries it on untested versions, ``ADJIT_FASTCALL_ARRAYS=0`` only
the primed route, ``ADJIT_FASTCALL_TYPE=0`` only the native ``tp_call``.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from . import fastcall_ir as fir
from . import fastcall_kwargs as fk
from . import fastcall_type as ftype
from .fastcall_probe import (ALIGNED, C_CONTIGUOUS, METH_FASTCALL_KEYWORDS, SCALARS, WRITEABLE,
                             Context, MethodDef, pyapi)
from . import fastcall_probe as fprobe
from ..lowering.plan import GEMM_OPS
from .fncache import compile_once
from ..lowering.target.forksafe import Lock

_wrapper = _wrapper_addr = None
_wrapper_lock = Lock()     # fresh in a forked child
_new_cfunction = pyapi("PyCFunction_NewEx", ctypes.py_object, ctypes.c_void_p,
                        ctypes.py_object, ctypes.c_void_p)


def _wrapper_address(name: str = fir.NAME) -> int | None:
    """The compiled ``adjit_fastcall`` (or ``adjit_dictcall``, ``adjit_typecall``: None
    when the type layout was not recognised); one module per process; the disk cache
    serves later ones by a label naming what the IR depends on beyond adjit's source,
    without building the IR again: ~15 ms of a process's first compile)."""
    global _wrapper, _wrapper_addr
    with _wrapper_lock:
        if _wrapper is None:
            lay = fprobe.setup()[0]
            ctx_off = lay["ctx_off"]
            tlay = ftype.layout()
            type_layout = None if tlay is None else (lay["type_off"], tlay[1])
            label = f"adjit_fastcall ctx_off={ctx_off} type={type_layout} python={sys.version}"
            jit = compile_once(label, lambda: fir.wrapper_ir(ctx_off, type_layout), 1)
            addrs = {n: jit.address(n) for n in (fir.NAME, fir.DICT_NAME)}
            if type_layout is not None:
                addrs[fk.TYPE_NAME] = jit.address(fk.TYPE_NAME)
                slow = (ctypes.c_void_p * 2).from_address(jit.address(fk.SLOW))
                slow[0], slow[1] = id(ftype.slow_call), fprobe._cfunc("PyObject_Vectorcall")
            _wrapper, _wrapper_addr = jit, addrs
        return _wrapper_addr.get(name)


def install_type_call(tp: type, builtin) -> bool:
    """Give ``tp`` (a per-instance class whose ``__call__`` is ``builtin``, made by
    :func:`make_fastcall`) the native ``tp_call`` of :mod:`.fastcall_type`: calls then
    skip the ``__call__`` lookup and the unpacking of the keyword dict."""
    if not isinstance(getattr(builtin, "__self__", None), Context):
        return False
    if ftype.layout() is None:
        return False
    addr = _wrapper_address(fk.TYPE_NAME)
    return addr is not None and ftype.install(tp, builtin, addr)


def _mode(native) -> str | None:
    """``"stack"`` (all 0-d, small: arena on the stack, GIL held), ``"primed"`` (arrays:
    a primed state per batch size, GIL released), or None (no fastcall)."""
    return mode_and_reason(native)[0]


def mode_and_reason(native) -> tuple[str | None, str | None]:
    """(:func:`_mode`, why there is no mode: None when there is one)."""
    plan = native.plan
    why = fprobe.unavailable()
    if why is not None:
        return None, why
    if native._counters is not None:
        return None, "compiled with profile=True"
    if plan.n_slots > fir.MAX_SLOTS or len(plan.graph.outputs) > fir.MAX_OUTPUTS:
        return None, f"more than {fir.MAX_SLOTS} slots or {fir.MAX_OUTPUTS} outputs"
    values = list(plan.graph.inputs) + list(plan.graph.outputs)
    if any(len(n.shape) > fir.MAX_ND for n in values):
        return None, f"an input or output of rank above {fir.MAX_ND}"
    if (all(n.shape == () for n in values) and not any(n.op in GEMM_OPS for n in plan.steps)
            and plan.arena_offsets(0)[1] <= fir.ARENA_BYTES):
        return "stack", None
    if os.environ.get("ADJIT_FASTCALL_ARRAYS", "1").strip() == "0":
        return None, "array functions switched off by ADJIT_FASTCALL_ARRAYS=0"
    return "primed", None


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
        self.lock = Lock()

    def prime(self, batch: int) -> None:
        """A state for ``batch``.  With every slot taken, a state is replaced only after
        EVICT_AFTER calls of unprimed batch sizes: a caller cycling through more sizes
        than N_PRIMED mostly takes the Python path instead of re-priming every call."""
        from .runtime import dedicated_state
        # never wait: the holder may be this very thread (a signal handler or finalizer
        # calling the function while it primes); priming is only an optimization
        if not self.lock.acquire(blocking=False):
            return
        try:
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
        finally:
            self.lock.release()


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


def _fixed_inputs(bound) -> list[tuple] | None:
    """A bound function's bound arrays as ``(name, array, shape, dtype, flags needed, class
    count or None)`` (the rows its :class:`~adjit.binding.Pinned` checks), or None when
    they carry a batch size (the wrapper takes it from the arguments)."""
    if bound is None:
        return []
    if bound.batch is not None:
        return None
    return list(bound.pinned.rows)


def make_fastcall(native, fallback, binder, single: bool, bound=None):
    """A builtin calling ``native``'s entry for the calls it can check, else ``fallback``
    (the checked Python path); None when the function is not eligible.  ``binder``: the
    keyword arguments (its ``specs``); ``single``: one result, not a tuple; ``bound``: a
    :class:`~adjit.compiled.Bound`, whose arrays then fill their slots every call."""
    mode = _mode(native)
    if mode is None:
        return None
    lay, api = fprobe.setup()
    plan = native.plan
    specs = binder.specs        # (name, shape, dtype, is_float, first batch dim), sorted
    if len(specs) > fir.MAX_INPUTS:
        return None
    slots = {n.name: plan.storage[n.id].slot for n in plan.inputs}
    given = {s[0] for s in specs} | (bound.values.keys() if bound is not None else set())
    if not slots.keys() <= given or sorted(slots.values()) != list(range(len(plan.inputs))):
        return None     # every graph input is an argument or bound, in slots 0..P-1
    fixed = _fixed_inputs(bound)
    n_out = len(plan.graph.outputs) - len(native._updates)
    if fixed is None or set(native._updates) != set(range(n_out, len(plan.graph.outputs))):
        return None     # (updates are the last outputs, never returned)
    if len(specs) + len(fixed) > fir.MAX_INPUTS:
        return None
    limits = binder.limits      # index inputs: name -> (lo, hi, what)
    ctx = Context()
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
    # one record per keyword argument, then one per fixed (bound) array
    rows = ([(name, dt, spec[1], name in in_place, limits.get(name), True)
             for name, dt, spec in zip(names, dtypes, specs)]
            + [(name, dt, shape, name in in_place, limit, False)
               for name, _, shape, dt, _, limit in fixed])
    recs = (ctypes.c_void_p * (fir.REC * len(rows) or 1))()
    for k, (name, dt, shape, updated, limit, keyword) in enumerate(rows):
        scalar_a, scalar_b, probe = SCALARS.get(dt, (None, None, None))
        if shape != () or updated or limit is not None or not keyword:
            scalar_a = scalar_b = probe = None
        value_off = lay[probe] if probe else 0
        dims.append(_dims(shape))
        rec = {"name": id(name) if keyword else 0, "descr": id(dt), "value_off": value_off,
               "scalar_a": scalar_a and id(scalar_a), "scalar_b": scalar_b and id(scalar_b),
               "slot": slots.get(name, -1) & (2 ** 64 - 1), "nd": len(shape),
               "dims": ctypes.addressof(dims[-1]),
               "flags": ALIGNED | C_CONTIGUOUS | (WRITEABLE if updated else 0),
               "out_slot": in_place.get(name, -1) & (2 ** 64 - 1),
               # valid: (v - lo) seen unsigned < hi - lo
               "label_low": 0 if limit is None else limit[0] & (2 ** 64 - 1),
               "label_limit": 0 if limit is None else max(limit[1] - limit[0], 0),
               "label_bytes": 0 if limit is None else dt.itemsize}
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
    keep["fixed_dtypes"] = [row[3] for row in fixed]
    pairs = (ctypes.c_void_p * (fir.FIX * len(fixed) or 1))(*[id(row[1]) for row in fixed])
    keep.update(recs=recs, outs=outs, temps=temps, fallback=fallback, jit=native.jit,
                pairs=pairs, fixed=fixed)
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
    method = MethodDef(b"__call__", _wrapper_address(), METH_FASTCALL_KEYWORDS,
                        b"Native fast path of this compiled function (see adjit fastcall).")
    keep["method"] = method
    return _new_cfunction(ctypes.addressof(method), ctx, None)
