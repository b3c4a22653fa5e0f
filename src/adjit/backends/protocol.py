"""What a backend offers, declared (the compiled function reads these; it never probes).

A backend package defines ``BACKEND = Backend(...)``: its ``build(graph, **options)``
returns a :class:`Runner`.  A runner subclass says what it offers by overriding:

* ``__call__(values, batch)`` -- the checked call (always);
* ``call_bound`` -- a call taking the bound arrays of :meth:`adjit.Compiled.bind` as fixed
  (``(values, batch, bound)``), or None: bound calls merge the arrays into ``values``;
* ``fastcall(fallback, binder, single, bound)`` -- a native callable that checks its own
  arguments (None: the checked Python path serves every call), and ``fastcall_reason()``
  saying why it is not installed; ``install_call(tp, native)`` may also make that
  callable the call slot of the per-instance class ``tp`` (skipping CPython's
  ``__call__`` lookup and keyword unpacking);
* ``resident_state`` -- True where a bound function's arrays live on the backend's device
  between calls: then ``state_to_host(bound)`` (download them into the host arrays and
  return ``{name: array}``), ``state_to_device(bound)`` and ``on_device(bound)`` move and
  tell where the state is (the defaults: the host arrays are always the state);
* ``views`` -- names of attributes users read through the compiled function
  (``f.llvm_ir``, ``f.asm``, ``f.ptx``, ``f.profile()``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


class Runner:
    """Base of every backend's runner; the defaults offer the checked call only."""

    views: tuple[str, ...] = ()
    call_bound: Callable | None = None
    resident_state: bool = False

    def state_to_host(self, bound) -> dict:
        return dict(bound.values)

    def state_to_device(self, bound) -> None:
        return None

    def on_device(self, bound) -> bool:
        return False

    def __call__(self, values: dict, batch: int | None) -> list:
        raise NotImplementedError

    def fastcall(self, fallback, binder, single: bool, bound=None):
        """A native callable for the compiled function (or None)."""
        return None

    def install_call(self, tp: type, native) -> bool:
        """Make ``native`` (from :meth:`fastcall`), already the ``__call__`` of the class
        ``tp``, also that class's native call slot where the backend can (True if so)."""
        return False

    def fastcall_reason(self) -> str:
        return "no native entry for this backend"


#: ``aj.compile(..., precision=)``: what float32 matrix products may compute in.  "fp32" (or
#: None, the default) is exact FP32; "tf32"/"bf16" round the operands to 10/7 mantissa bits
#: and accumulate in FP32 (tensor cores).  Like JAX's ``precision=`` and PyTorch's
#: ``allow_tf32`` it is a permission, not a demand: a backend without tensor cores computes
#: in FP32, which is at least as accurate.
PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision) -> str:
    """The precision option normalized ("fp32" for None); ValueError for an unknown one."""
    if precision is None:
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"compile: precision must be one of {', '.join(map(repr, PRECISIONS))}"
                         f" or None, got {precision!r}")
    return precision


@dataclass(frozen=True)
class Backend:
    """A backend as :func:`adjit.compile` sees it."""

    name: str
    build: Callable                              # (graph, **options) -> Runner
    in_place_updates: bool = False               # ``updates=`` written by the code itself
    load_compiled: Callable | None = None        # (traced, **options) -> (graph, Runner) | None
    store_compiled: Callable | None = None       # (traced, graph, runner, **options)
    precisions: tuple[str, ...] = ("fp32",)      # those build(precision=) implements
