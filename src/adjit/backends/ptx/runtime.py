"""The Python side of a ptx function: device buffers, the launch sequence, numpy in and out.

Buffers are planned like the CPU arena: per batch size, every temporary gets an offset in one
device allocation (:meth:`Plan.arena_offsets`, lifetime-based reuse), inputs and outputs get a
device buffer each, and split reductions share one scratch buffer.  A call uploads the inputs,
runs the launches in order (each one decides from the batch size whether it runs and on how
many blocks), and downloads fresh output arrays.  Calls are serialized by a lock; the buffers
of the four most recent batch sizes are kept.

A call may re-enter on the thread that holds the lock (a signal handler, a finalizer or
``gc.callbacks`` calling the same function while a call runs Python code): the lock is
re-entrant, a state is *busy* while a call uses it, and a nested call that finds its batch
size's state busy runs on temporary buffers it frees afterwards.  A busy state is never
evicted (it is freed when its call ends).
"""
from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np

from ..lowering.plan import Plan, numel
from ..protocol import Runner
from ..lowering.target.forksafe import Lock
from .lower import ITEMSIZE, Launch

KEEP_STATES = 4


class _State:
    """Device buffers for one batch size."""

    def __init__(self, plan: Plan, launches: list[Launch], dev, batch: int):
        self.dev, self.owned = dev, []
        self.busy = False       # a call is between taking it and its last download
        self.evicted = False    # dropped from the cache while busy: freed when released
        self.ptrs = [0] * plan.n_slots
        offsets, size = plan.arena_offsets(batch)
        arena = self._alloc(size)
        for temp, off in zip(plan.temps, offsets):
            self.ptrs[plan.storage[temp.id].slot] = arena + off
        for n in plan.inputs:
            self.ptrs[plan.storage[n.id].slot] = self._alloc(_nbytes(n, batch))
        self.outputs = []
        for o, slot in zip(plan.graph.outputs, plan.output_slots):
            self.ptrs[slot] = self._alloc(_nbytes(o, batch))
            self.outputs.append((o.type.concrete(batch), o.dtype, slot))
        work = max((L.work_bytes(batch) for L in launches
                    if L.work_bytes is not None and L.when(batch)), default=0)
        self.ptrs[plan.workspace_slot] = self._alloc(work)

    def _alloc(self, nbytes: int) -> int:
        p = self.dev.alloc(max(nbytes, 1))
        self.owned.append(p)
        return p

    def free(self) -> None:
        for p in self.owned:
            self.dev.free(p)
        self.owned = []


def _nbytes(node, batch: int) -> int:
    return numel(node.shape).eval(batch) * ITEMSIZE[node.dtype]


class PtxFunction(Runner):
    views = ("arch", "ptx", "ptx_for", "ptx_kernels", "llvm_ir", "llvm_ir_optimized",
             "launch_plan", "launches", "device", "replay", "plan")
    """A compiled graph's kernels and launch sequence, run on a device made on first call.

    Inspection: ``ptx`` (the module's PTX), ``ptx_kernels`` (PTX of each kernel by name),
    ``ptx_for(arch)``, ``llvm_ir`` / ``llvm_ir_optimized`` (the GPU module), ``launch_plan``
    (one line per launch) and ``arch``.
    """

    def __init__(self, plan: Plan, launches: list[Launch], sources, make_device):
        self.plan, self.launches = plan, launches
        self._sources = sources                     # a .Sources (IR, PTX per arch)
        self._make_device = make_device
        self._device = None
        self._lock = Lock(reentrant=True)   # re-entrant (see the module doc); fresh in a forked child
        self._states: OrderedDict[int, _State] = OrderedDict()
        self._consts: dict[int, int] = {}
        self._inputs = [(n.name, plan.storage[n.id].slot) for n in plan.inputs]

    # -- running ------------------------------------------------------------------------------
    @property
    def device(self):
        """The device the kernels run on (made on first use; raises NoCudaError without one)."""
        if self._device is None:
            dev = self._make_device()
            if self._device is None:        # (a nested call may have made one meanwhile)
                self._device = dev
        return self._device

    def __call__(self, values: dict, batch: int | None) -> list[np.ndarray]:
        b = 0 if batch is None else batch
        with self._lock:
            dev = self.device
            dev.activate()
            st = self._state(dev, b)
            if st.busy:                     # a nested call on this thread: own buffers
                st = _State(self.plan, self.launches, dev, b)
                st.evicted = True
            st.busy = True
            try:
                for name, slot in self._inputs:
                    dev.upload(st.ptrs[slot], values[name])
                self._launch(dev, st, b)
                outs = []
                for shape, dtype, slot in st.outputs:
                    arr = np.empty(shape, dtype=dtype)
                    dev.download(arr, st.ptrs[slot])
                    outs.append(arr)
                dev.synchronize()
            finally:
                st.busy = False
                if st.evicted:
                    st.free()
            return outs

    def replay(self, batch: int | None) -> None:
        """Run the launch sequence again on the device buffers of an earlier call with this
        batch size (no uploads, no downloads), then synchronize: the device time of a step."""
        b = 0 if batch is None else batch
        with self._lock:
            st, dev = self._states[b], self.device
            if st.busy:
                raise RuntimeError("replay: a call of this batch size is in progress")
            dev.activate()
            self._launch(dev, st, b)
            dev.synchronize()

    def _launch(self, dev, st: "_State", b: int) -> None:
        for L in self.launches:
            if L.when(b):
                ptrs = [self._pointer(dev, st, ref) for ref in L.buffers]
                dev.launch(L.kernel, L.grid(b), L.block, ptrs, [b] + [f(b) for f in L.ints])

    def _state(self, dev, batch: int) -> _State:
        st = self._states.get(batch)
        if st is None:
            st = self._states[batch] = _State(self.plan, self.launches, dev, batch)
            while len(self._states) > KEEP_STATES:
                old = self._states.popitem(last=False)[1]
                if old.busy:                # an outer call on this thread still uses it
                    old.evicted = True
                else:
                    old.free()
        self._states.move_to_end(batch)
        return st

    def _pointer(self, dev, st: _State, ref) -> int:
        kind = ref[0]
        if kind == "slot":
            return st.ptrs[ref[1]]
        if kind == "work":
            return st.ptrs[self.plan.workspace_slot]
        node = ref[1]                               # ("const", node): uploaded once
        p = self._consts.get(node.id)
        if p is None:
            arr = np.ascontiguousarray(node.attr("value").array)
            p = dev.alloc(max(arr.nbytes, 1))
            dev.upload(p, arr)
            shared = self._consts.setdefault(node.id, p)  # (a nested call may have won)
            if shared != p:
                dev.free(p)
            p = shared
        return p

    # -- inspection ---------------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self._sources.arch

    @property
    def ptx(self) -> str:
        return self._sources.ptx(self._sources.arch)

    def ptx_for(self, arch: str, opt_level: int | None = None) -> str:
        """The module's PTX for another GPU architecture (e.g. "sm_90") or opt level."""
        return self._sources.ptx(arch, opt_level)

    @property
    def ptx_kernels(self) -> dict[str, str]:
        return split_kernels(self.ptx)

    @property
    def llvm_ir(self) -> str:
        return self._sources.llvm_ir

    @property
    def llvm_ir_optimized(self) -> str:
        return self._sources.optimized(self._sources.arch)

    @property
    def launch_plan(self) -> str:
        return "\n".join(f"{L.kernel:<16} {L.what}" for L in self.launches)


_ENTRY = re.compile(r"^\.visible \.entry (\w+)\(", re.M)


def split_kernels(ptx: str) -> dict[str, str]:
    """``{kernel name: its .entry text}`` from a PTX module."""
    found = list(_ENTRY.finditer(ptx))
    out = {}
    for k, m in enumerate(found):
        body = ptx[m.start():found[k + 1].start() if k + 1 < len(found) else len(ptx)]
        cut = body.rfind("// .globl")               # the next kernel's marker
        out[m.group(1)] = (body[:cut] if cut > 0 else body).rstrip() + "\n"
    return out
