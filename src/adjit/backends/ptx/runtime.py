"""The Python side of a ptx function: device buffers, the launch sequence, numpy in and out.

Buffers are planned like the CPU arena: per batch size, every temporary gets an offset in one
device allocation (:meth:`Plan.arena_offsets`, lifetime-based reuse), inputs and outputs get a
device buffer each, and split reductions share one scratch buffer.  An output that
``updates=`` writes is copied, after every other kernel, straight into its input's device
buffer.  A call stages its inputs in page-locked host buffers and queues their uploads on
the device's stream, runs the launch sequence, queues the downloads and synchronizes once.

The launch sequence of a batch size is resolved once (each launch decides from the batch
size whether it runs, on how many blocks, on which buffers) and then replayed without
Python per kernel: captured into a CUDA graph on the first call and launched by one driver
call afterwards (the emulation records the list and replays it the same way).  Calls are
serialized by a lock; the buffers of the four most recent batch sizes are kept.

A bound function (``f.bind``) keeps its bound arrays on the device (:mod:`.resident`): the
call uploads only the free inputs and downloads only the returned outputs.

A call may re-enter on the thread that holds the lock (a signal handler, a finalizer or
``gc.callbacks`` calling the same function while a call runs Python code): the lock is
re-entrant, a state is *busy* while a call uses it, and a nested call that finds its batch
size's state busy runs on temporary buffers it frees afterwards.  A busy state is never
evicted (it is freed when its call ends).
"""
from __future__ import annotations

import re
import weakref
from collections import OrderedDict

import numpy as np

from ..lowering.plan import Plan, numel
from ..protocol import Runner
from ..lowering.target.forksafe import Lock
from .lower import ITEMSIZE, Launch
from .support import CudaError

KEEP_STATES = 4


class _State:
    """Device buffers (and the resolved launch list, its graph, host staging) for one batch
    size.  ``fixed`` maps input names to device buffers owned elsewhere (a bound function's
    resident arrays); every other input, output and temporary is allocated here."""

    def __init__(self, fn: "PtxFunction", dev, batch: int, fixed: dict | None = None):
        plan = fn.plan
        self.dev, self.owned, self.hosts = dev, [], {}
        self.busy = False       # a call is between taking it and its last download
        self.evicted = False    # dropped from the cache while busy: freed when released
        self.calls = None       # the launch list for this batch size, resolved on first use
        self.graph = None       # its captured graph
        self.ptrs = [0] * plan.n_slots
        offsets, size = plan.arena_offsets(batch)
        arena = self._alloc(size)
        for temp, off in zip(plan.temps, offsets):
            self.ptrs[plan.storage[temp.id].slot] = arena + off
        fixed = fixed or {}
        self.buffers = {name: fixed[name] if name in fixed else self._alloc(fn.nbytes(name, batch))
                        for name in fn.buffer_names}
        for name, slot in fn._inputs:
            self.ptrs[slot] = self.buffers[name]
        self.outputs = []       # the returned outputs: (shape, dtype, slot)
        for k, (o, slot) in enumerate(zip(plan.graph.outputs, plan.output_slots)):
            name = fn.updates.get(k)
            if name is not None:                     # written into the input's own buffer
                self.ptrs[slot] = self.buffers[name]
            else:
                self.ptrs[slot] = self._alloc(_nbytes(o, batch))
                self.outputs.append((o.type.concrete(batch), np.dtype(o.dtype), slot))
        work = max((L.work_bytes(batch) for L in fn.launches
                    if L.work_bytes is not None and L.when(batch)), default=0)
        self.ptrs[plan.workspace_slot] = self._alloc(work)

    def _alloc(self, nbytes: int) -> int:
        p = self.dev.alloc(max(nbytes, 1))
        self.owned.append(p)
        return p

    def host(self, key, shape, dtype) -> np.ndarray:
        """A page-locked host array of ``shape`` and ``dtype`` kept for ``key``."""
        got = self.hosts.get(key)
        if got is None or got[1].shape != tuple(shape) or got[1].dtype != dtype:
            if got is not None:
                self.dev.host_free(got[0])
            dtype = np.dtype(dtype)
            n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            raw = self.dev.host_alloc(n)
            got = self.hosts[key] = (raw, raw[:n].view(dtype).reshape(shape))
        return got[1]

    def free(self) -> None:
        if self.graph is not None:
            self.dev.free_graph(self.graph)
            self.graph = None
        for p in self.owned:
            self.dev.free(p)
        for raw, _ in self.hosts.values():
            self.dev.host_free(raw)
        self.owned, self.hosts = [], {}


def _nbytes(node, batch: int) -> int:
    return numel(node.shape).eval(batch) * ITEMSIZE[node.dtype]


class PtxFunction(Runner):
    views = ("arch", "ptx", "ptx_for", "ptx_kernels", "llvm_ir", "llvm_ir_optimized",
             "launch_plan", "launches", "device", "replay", "plan", "graphs", "graph_reason")
    """A compiled graph's kernels and launch sequence, run on a device made on first call.

    Inspection: ``ptx`` (the module's PTX), ``ptx_kernels`` (PTX of each kernel by name),
    ``ptx_for(arch)``, ``llvm_ir`` / ``llvm_ir_optimized`` (the GPU module), ``launch_plan``
    (one line per launch), ``arch``, ``graphs`` (whether launch sequences are replayed as
    captured graphs) and ``graph_reason`` (why not, when capturing failed).
    """

    def __init__(self, plan: Plan, launches: list[Launch], sources, make_device,
                 updates: dict[int, str] | None = None, graphs: bool = True,
                 resident: bool = False):
        self.plan, self.launches = plan, launches
        self.resident_state = bool(resident)   # f.bind keeps the bound arrays on the device
        self.updates = dict(updates or {})          # output index -> input it overwrites
        self.graphs, self.graph_reason = bool(graphs), None if graphs else "graphs=False"
        self._sources = sources                     # a .Sources (IR, PTX per arch)
        self._make_device = make_device
        self._device = None
        self._aside = None      # (device, states) for calls made while capturing, see _call_aside
        self._lock = Lock(reentrant=True)   # re-entrant (see the module doc); fresh in a forked child
        self._states: OrderedDict[int, _State] = OrderedDict()
        self._consts: dict[int, int] = {}
        self._inputs = [(n.name, plan.storage[n.id].slot) for n in plan.inputs]
        # every name with a device buffer: the inputs the kernels read, and update targets
        self._types = {n.name: n for n in plan.inputs}
        for k, name in self.updates.items():
            self._types.setdefault(name, plan.graph.outputs[k])
        self.buffer_names = sorted(self._types)
        self._residents = weakref.WeakKeyDictionary()   # Bound -> .resident.Resident

    def nbytes(self, name: str, batch: int) -> int:
        return _nbytes(self._types[name], batch)

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
        """Every input uploaded from ``values``; ``updates=`` targets downloaded into the
        caller's arrays in ``values`` (in place); the returned outputs as fresh arrays."""
        b = 0 if batch is None else batch
        with self._lock:
            dev = self.device
            if dev.capturing:           # a call made while this thread captures a graph
                return self._call_aside(values, b)
            dev.activate()
            return self.run_on(dev, self._states, b, values, None)

    def _call_aside(self, values: dict, b: int) -> list[np.ndarray]:
        """A nested call (signal handler, gc callback) made while an outer call on this
        thread captures its launch list from the device's stream: anything queued there
        would join the graph instead of running, so the nested call runs on a second
        device (its own stream, same GPU context) with buffers of its own."""
        if self._aside is None:
            self._aside = (self._make_device(), OrderedDict())
        dev, states = self._aside
        dev.activate()
        return self.run_on(dev, states, b, values, None)

    def run_on(self, dev, states: OrderedDict, b: int, values: dict, fixed: dict | None):
        """One call on the state of batch size ``b`` in ``states`` (made with ``fixed``
        buffers): upload the inputs found in ``values``, run, download the returned
        outputs and the update targets found in ``values``.  (Under the lock.)"""
        st = self._state(dev, states, b, fixed)
        if st.busy:                     # a nested call on this thread: own buffers
            st = _State(self, dev, b, fixed)
            st.evicted = True
        st.busy = True
        try:
            for name, slot in self._inputs:
                arr = values.get(name)
                if arr is not None:
                    self.put(dev, st, name, st.ptrs[slot], arr)
            self._launch(dev, st, b)
            outs = []
            for shape, dtype, slot in st.outputs:
                host = st.host(slot, shape, dtype)
                dev.download(host, st.ptrs[slot])
                outs.append(host)
            back = []
            for name in self.updates.values():
                arr = values.get(name)
                if arr is not None:
                    host = st.host(name, arr.shape, arr.dtype)
                    dev.download(host, st.buffers[name])
                    back.append((arr, host))
            dev.synchronize()
            for arr, host in back:
                np.copyto(arr, host)
            return [h.copy() for h in outs]
        finally:
            st.busy = False
            if st.evicted:
                st.free()

    def put(self, dev, st: _State, key, ptr: int, arr: np.ndarray) -> None:
        """Queue the upload of ``arr`` through ``st``'s page-locked buffer for ``key``."""
        if arr.nbytes:
            host = st.host(key, arr.shape, arr.dtype)
            np.copyto(host, arr)
            dev.upload(ptr, host)

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

    def _launch(self, dev, st: _State, b: int) -> None:
        if st.calls is None:            # resolved once: constants uploaded before any capture
            st.calls = [(L.kernel, L.grid(b), L.block,
                         tuple(self._pointer(dev, st, ref) for ref in L.buffers),
                         (b,) + tuple(f(b) for f in L.ints))
                        for L in self.launches if L.when(b)]
        if self.graphs and st.calls and not st.evicted:
            if st.graph is None:
                st.graph = self._capture(dev, st.calls)
            if st.graph is not None:
                dev.launch_graph(st.graph)
                return
        for call in st.calls:
            dev.launch(*call)

    def _capture(self, dev, calls):
        """The launch list as a graph, or None (and graphs off, with the reason) where the
        driver refuses to capture it.  (Python runs between the launches: a nested call of
        this function meanwhile goes to :meth:`_call_aside`; one of another function uses
        that function's own device and stream.)"""
        try:
            dev.begin_capture()
            try:
                for call in calls:
                    dev.launch(*call)
            finally:
                graph = dev.end_capture()
        except (CudaError, TypeError, AttributeError) as e:   # (the latter two: an
            # older cuda-python without the graph calls in this form)
            self.graphs, self.graph_reason = False, f"capturing a CUDA graph failed: {e}"
            return None
        return graph

    def _state(self, dev, states: OrderedDict, batch: int, fixed: dict | None) -> _State:
        st = states.get(batch)
        if st is None:
            st = states[batch] = _State(self, dev, batch, fixed)
            while len(states) > KEEP_STATES:
                old = states.popitem(last=False)[1]
                if old.busy:                # an outer call on this thread still uses it
                    old.evicted = True
                else:
                    old.free()
        states.move_to_end(batch)
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

    # -- bound functions: state kept on the device (see .resident) ---------------------------
    def call_bound(self, values: dict, batch: int | None, bound) -> list[np.ndarray]:
        if not self.resident_state:     # the bound arrays uploaded (and updated) every call
            return self({**bound.values, **values}, batch)
        return self._resident(bound).call(values, 0 if batch is None else batch)

    def state_to_host(self, bound) -> dict:
        res = self._residents.get(bound)
        return res.to_host() if res is not None else dict(bound.values)

    def state_to_device(self, bound) -> None:
        if self.resident_state:
            self._resident(bound).to_device()

    def on_device(self, bound) -> bool:
        res = self._residents.get(bound)
        return res is not None and res.on_device

    def _resident(self, bound):
        res = self._residents.get(bound)
        if res is None:
            from .resident import Resident
            with self._lock:
                res = self._residents.get(bound)
                if res is None:
                    res = self._residents[bound] = Resident(self, bound)
        return res

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
