"""A bound ptx function's state, kept on the device between calls.

``g = f.bind(W=W, b=b, ...)`` on the ptx backend gives the bound arrays device buffers of
their own.  Who holds the current values -- the host arrays or the device buffers -- is
explicit, and a host array is never trusted silently:

* **host** (after ``bind`` and after ``g.state_to_host()``): the host arrays are the state;
  change them freely.  The next call (or ``g.state_to_device()``) uploads every bound array
  and hands the state to the device.
* **device** (after a call or ``g.state_to_device()``): the device buffers are the state.
  Calls upload only the free (batch) inputs, ``updates=`` are written on the device, and
  only the returned outputs come back.  The bound host arrays are made read-only meanwhile:
  writing into one raises numpy's "assignment destination is read-only", and making one
  writeable again by hand makes the next call raise.  The host arrays of updated inputs
  hold the values of the last upload, not the current ones.
* ``g.state_to_host()`` downloads the updated arrays into the very host arrays given to
  ``bind`` (their data pointer at that moment), gives back their writeable flags and
  returns ``{name: array}``; the state is on the host again.

Writes through *another* view of the same memory (an array the bound one is a view of, or
a view made before ``bind``) are not seen while the device holds the state.  When the
bound function is garbage-collected while the device holds the state, the updated arrays
are downloaded into the host arrays first and their flags restored.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from contextlib import contextmanager

from ...binding import check_still_writeable


class Resident:
    """Device buffers of one :class:`~adjit.compiled.Bound`'s arrays, and its states."""

    def __init__(self, fn, bound):
        self.fn = fn
        self.arrays = dict(bound.values)            # the bound host arrays, by name
        # bound names the kernels read or updates write: the ones with device buffers
        self.names = [n for n in fn.buffer_names if n in self.arrays]
        self.updated = sorted({n for n in fn.updates.values() if n in self.arrays})
        self.buffers: dict[str, int] | None = None
        self.states: OrderedDict = OrderedDict()    # batch size -> runtime._State
        self.on_device = False
        self.active = False                         # a call or transfer is in progress
        self.flags: dict[str, bool] = {}            # writeable flags before the device took over
        fin = weakref.finalize(bound, self.release)
        fin.atexit = False                          # (at exit the device may be gone)

    def call(self, values: dict, b: int) -> list:
        fn = self.fn
        with fn._lock, self._only_once():
            dev = self._ready(upload=not self.on_device)
            return fn.run_on(dev, self.states, b, values, self.buffers)

    def to_device(self) -> None:
        """Upload the bound arrays now (the device holds the state afterwards)."""
        with self.fn._lock, self._only_once():
            self._ready(upload=True)

    @contextmanager
    def _only_once(self):
        """Refuse a nested use of this state on the same thread (a call from a signal
        handler or a collector callback while one is inside): the outer call is moving
        the state between host and device, so the inner one has no consistent state."""
        if self.active:
            raise RuntimeError(
                "a device-resident bound function was called again while a call of it was "
                "in progress on this thread (from a signal handler or a garbage-collector "
                "callback); call it after the outer call returns, or compile without "
                "resident=True")
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def _ready(self, upload: bool):
        """The function's device, current; the host arrays checked untouched while the
        device holds the state, then uploaded if ``upload``."""
        dev = self.fn.device
        dev.activate()
        if self.on_device:
            self._check_untouched()
        if upload:
            self._upload(dev)
        return dev

    def to_host(self) -> dict:
        """Download the updated arrays into the host arrays and give them back."""
        with self.fn._lock, self._only_once():
            if self.on_device:
                dev = self.fn.device
                dev.activate()
                self._give_back_flags()
                for name in self.updated:
                    dev.download(self.arrays[name], self.buffers[name])
                dev.synchronize()
        return dict(self.arrays)

    def _upload(self, dev) -> None:
        for name in self.updated:     # state_to_host will write them
            check_still_writeable(name, self.arrays[name])
        if self.buffers is None:
            self.buffers = {}
            for name in self.names:
                self.buffers[name] = dev.alloc(max(self.arrays[name].nbytes, 1))
        self._give_back_flags()      # (to_device while on the device: upload again)
        for name in self.names:
            dev.upload(self.buffers[name], self.arrays[name])
        dev.synchronize()
        for name in self.names:
            arr = self.arrays[name]
            self.flags[name] = bool(arr.flags.writeable)
            arr.flags.writeable = False
        self.on_device = True

    def _give_back_flags(self) -> None:
        for name, flag in self.flags.items():
            if flag:
                self.arrays[name].flags.writeable = True
        self.flags = {}
        self.on_device = False

    def _check_untouched(self) -> None:
        for name in self.names:
            if self.arrays[name].flags.writeable:
                raise ValueError(
                    f"bound input {name!r} was made writeable while the device holds the "
                    "bound state, so a change to it would be lost; call state_to_host() "
                    "before changing the bound arrays (the next call uploads them)")

    def release(self) -> None:
        """The bound function is gone: its state back to the host arrays, buffers freed."""
        fn = self.fn
        with fn._lock:
            try:
                if self.on_device:
                    self.to_host()
            finally:
                self._give_back_flags()
                dev = fn._device
                if dev is not None:
                    for st in self.states.values():
                        st.free()
                    for p in (self.buffers or {}).values():
                        dev.free(p)
                self.states, self.buffers = OrderedDict(), None
