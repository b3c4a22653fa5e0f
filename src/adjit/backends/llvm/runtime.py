"""The Python side of a native function: pointer table, arena, outputs, the call.

Per thread and batch size, a state holds the pointer table (``void*[n_slots]``) and the
arena of temporaries (offsets planned by :meth:`Plan.arena_offsets`); the GEMM workspace
is one per thread, shared by all its states.  Concurrent calls from several threads never
share scratch memory.

A state is *busy* from the moment a call takes it until its native call has returned.
Python code can run in that window on the same thread -- a signal handler (between two
bytecodes), a finalizer or ``gc.callbacks`` run by a collection -- and may call the same
function again: that nested call finds the state busy and takes a spare state (one kept per
thread and batch size, or a fresh one when that is busy too), so it never rewrites the
table the outer call has filled.  The arena and the GEMM workspace hold nothing between
native calls, and a thread runs one native call at a time, so only the table needs it.
Outputs are fresh numpy arrays every call: results never alias the arena, the
inputs, or earlier results.  ctypes releases the GIL during the native call.
"""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from .gemm import MAX_WORKSPACE_BYTES, gemm_workspace_elems  # noqa: F401 (tests)
from ...binding import require_memory
from ..lowering.plan import ALIGN, GEMM_OPS, Plan, numel
from ..protocol import Runner
from .profile import counters, format_profile, profile_table

_ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
MAX_STATES = 8   # scratch states kept per thread (one per batch size, least recent dropped)


def address(arr: np.ndarray) -> int:
    """The data address of a C-contiguous array (cheap path for writable arrays)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(arr))
    except (TypeError, ValueError, BufferError):   # read-only or empty
        return arr.ctypes.data


def _find_data_offset() -> int | None:
    """Byte offset of the data pointer inside a numpy array object, if we can be sure.

    numpy's ``PyArrayObject`` starts with the object header and then ``char *data``.
    The offset is probed on live arrays (dtypes, shapes, views) and used only when every
    probe agrees; otherwise the table gets plain data addresses, looked up per call.
    """
    probes = [np.empty(3), np.zeros((2, 5), np.float32)[1], np.asarray(0.5),
              np.arange(7, dtype=np.int64)[2:], np.empty(0)]
    for off in (16, 24, 32):
        if off + 8 > np.ndarray.__basicsize__:     # never read past the array struct
            break
        if all(ctypes.c_void_p.from_address(id(a) + off).value == a.ctypes.data for a in probes
               if a.size):
            return off
    return None


DATA_OFFSET = None if os.environ.get("ADJIT_ARRAY_OBJECTS") == "0" else _find_data_offset()
_PTR = id if DATA_OFFSET is not None else address   # what a table slot holds for an array


def aligned_empty(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    return raw[skip:skip + nbytes]


# serves both dtypes and every target CPU's GEMM library in the process (gemm.py)
_GEMM_WORKSPACE_BYTES = MAX_WORKSPACE_BYTES
_thread_scratch = threading.local()


def _thread_workspace() -> np.ndarray:
    """This thread's GEMM workspace, shared by every function's states on the thread (a
    thread runs one native call at a time, and the workspace holds nothing between
    calls): 4.5 MB per thread instead of per function and batch size."""
    ws = getattr(_thread_scratch, "workspace", None)
    if ws is None:
        ws = _thread_scratch.workspace = aligned_empty(_GEMM_WORKSPACE_BYTES)
    return ws


class _State:
    """Scratch memory and pointer table for one (thread, batch size)."""

    def __init__(self, plan: Plan, batch: int, updates: dict[int, str],
                 own_workspace: bool = False):
        self.batch = batch
        self.bound = None   # the Bound whose arrays the table holds
        self.busy = False   # a call on this thread is between taking it and its return
        offsets, size = plan.arena_offsets(batch)
        # a clear MemoryError (batch size, bytes) before allocating, never an OOM kill
        out_bytes = sum(numel(o.shape).eval(batch) * np.dtype(o.dtype).itemsize
                        for o in plan.graph.outputs)
        require_memory(size + out_bytes, batch, "a call (temporaries and outputs)")
        self.arena = aligned_empty(max(size, ALIGN))
        needs_gemm = plan.calls_gemm()   # 4.5 MB, only if used
        self.workspace = (aligned_empty(ALIGN) if not needs_gemm else
                          aligned_empty(_GEMM_WORKSPACE_BYTES) if own_workspace else
                          _thread_workspace())
        self.table = (ctypes.c_void_p * plan.n_slots)()
        base = self.arena.ctypes.data
        for temp, off in zip(plan.temps, offsets):
            self.table[plan.storage[temp.id].slot] = base + off
        self.table[plan.workspace_slot] = self.workspace.ctypes.data
        self.table_address = ctypes.addressof(self.table)
        # output shapes and dtypes for this batch size, computed once
        self.outputs = [(o.type.concrete(batch), np.dtype(o.dtype), slot)
                        for k, (o, slot) in enumerate(zip(plan.graph.outputs, plan.output_slots))
                        if k not in updates]
        # outputs written straight into an input's buffer (``updates=``), after every step
        self.in_place = [(plan.output_slots[k], name) for k, name in updates.items()]


def dedicated_state(plan: Plan, batch: int) -> _State:
    """A state of its own (no ``updates``, its own GEMM workspace: any thread may take
    it) for one batch size: the scratch memory of the native fast path (see
    :mod:`.fastcall`), kept by its owner, used under its lock."""
    return _State(plan, batch, {}, own_workspace=True)


def _fresh_outputs(st: _State) -> list[np.ndarray]:
    """New output arrays for one call, their slots set in the state's table."""
    outs = []
    table = st.table
    for shape, dtype, slot in st.outputs:
        arr = np.empty(shape, dtype=dtype)
        table[slot] = _PTR(arr)
        outs.append(arr)
    return outs


class NativeFunction(Runner):
    views = ("llvm_ir", "llvm_ir_optimized", "asm", "cache_info", "profile", "reset_profile",
             "jit", "plan")
    def __init__(self, plan: Plan, jit, updates: dict[int, str] | None = None,
                 profile: bool = False):
        self.plan, self.jit = plan, jit
        self._counters = counters(jit, len(plan.steps)) if profile else None
        self._updates = updates or {}
        self._entry = _ENTRY_TYPE(jit.address("adjit_entry"))
        self._local = threading.local()
        self._inputs = [(n.name, plan.storage[n.id].slot) for n in plan.inputs]

    def _state(self, batch: int) -> _State:
        local = self._local
        last = getattr(local, "last", None)
        if last is not None and last.batch == batch:   # the common case: same batch size
            return last
        states = getattr(local, "states", None)
        if states is None:
            states = local.states = {}
        st = states.pop(batch, None)
        if st is None:
            st = _State(self.plan, batch, self._updates)
            if len(states) >= MAX_STATES:      # a server seeing many batch sizes stays bounded
                del states[next(iter(states))]
        states[batch] = st                     # most recently used last
        local.last = st
        return st

    def _spare(self, batch: int) -> _State:
        """A state for a call made while this thread's state of ``batch`` is busy (a
        re-entrant call: a signal handler, a finalizer): this thread's spare for the batch
        size if it is free, else a new one (kept as the spare)."""
        local = self._local
        spares = getattr(local, "spares", None)
        if spares is None:
            spares = local.spares = {}
        st = spares.get(batch)
        if st is None or st.busy:
            st = _State(self.plan, batch, self._updates)
            if batch not in spares and len(spares) >= MAX_STATES:
                del spares[next(iter(spares))]
            spares[batch] = st
        return st

    def __call__(self, values: dict, batch: int | None, bound=None) -> list[np.ndarray]:
        """Run the native entry on ``values`` (every input, or the free ones of ``bound``).

        With a :class:`~adjit.compiled.Bound`, the bound arrays' slots are written once per
        thread and batch size (the state keeps the Bound, and with it the arrays, alive);
        afterwards only the free inputs' slots change.  With DATA_OFFSET the slots hold the
        array objects and the entry reads their data pointers; ``values`` and the outputs
        keep those arrays alive until the call returns.
        """
        b = 0 if batch is None else batch
        st = self._state(b)
        if st.busy:                  # a call re-entered on this thread (see module doc)
            st = self._spare(b)
        st.busy = True               # (every slot is written after this, never before)
        try:
            table = st.table
            # (the caller may pass inputs the lowered graph no longer reads: no slot)
            if st.bound is not bound or _PTR is not id:   # plain addresses: re-read every call
                if bound is not None:
                    for name, slot in self._inputs:
                        if name in bound.values:
                            table[slot] = _PTR(bound.values[name])
                    for slot, name in st.in_place:
                        if name in bound.values:
                            table[slot] = _PTR(bound.values[name])
                st.bound = bound
            for name, slot in self._inputs:
                arr = values.get(name)
                if arr is not None:
                    table[slot] = _PTR(arr)
            outs = _fresh_outputs(st)
            for slot, name in st.in_place:
                if name in values:
                    table[slot] = _PTR(values[name])
            self._entry(st.table_address, b)
        finally:
            st.busy = False
        return outs

    call_bound = __call__     # what Compiled.bind looks for

    def fastcall(self, fallback, binder, single: bool, bound=None):
        """A builtin that runs the entry straight from CPython's call for the calls it
        can check itself (see :mod:`.fastcall`), handing every other call to
        ``fallback``; None when this function is not eligible."""
        from .fastcall import make_fastcall
        return make_fastcall(self, fallback, binder, single, bound)

    def install_call(self, tp: type, native) -> bool:
        """Make ``native`` (from :meth:`fastcall`), the ``__call__`` of ``tp``, also its
        native ``tp_call`` (see :mod:`.fastcall_type`)."""
        from .fastcall import install_type_call
        return install_type_call(tp, native)

    def fastcall_reason(self) -> str:
        """Why :meth:`fastcall` answered None for a caller of this function."""
        from .fastcall import mode_and_reason
        return mode_and_reason(self)[1] or ("its arguments, outputs or bound arrays do not "
                                            "fit the native entry")

    # -- inspection --------------------------------------------------------------------------
    def profile(self, top: int | None = 15, as_rows: bool = False):
        """Time per step since compile (or :meth:`reset_profile`), slowest first.

        Needs ``aj.compile(..., profile=True)``.  Returns a table as text, or the rows.
        """
        if self._counters is None:
            raise RuntimeError("this function was compiled without profile=True")
        rows = profile_table(self.plan.steps, list(self._counters))
        return rows if as_rows else format_profile(rows, top)

    def reset_profile(self) -> None:
        if self._counters is not None:
            ctypes.memset(self._counters, 0, ctypes.sizeof(self._counters))

    @property
    def llvm_ir(self) -> str:
        return self.jit.llvm_ir

    @property
    def llvm_ir_optimized(self) -> str:
        return self.jit.llvm_ir_optimized

    @property
    def asm(self) -> str:
        return self.jit.asm

    @property
    def cache_info(self) -> str:
        return self.jit.cache_info
