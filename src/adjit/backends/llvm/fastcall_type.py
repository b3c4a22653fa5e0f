"""A native ``tp_call`` for a compiled function's per-instance type (see
:mod:`.fastcall_kwargs`).

``compiled._install_native`` makes a subclass per compiled function, whose ``__call__``
is the native builtin of :mod:`.fastcall`.  CPython calls such an object through
``slot_tp_call``: it looks ``__call__`` up, then unpacks the keyword dict it was given
into a new kwnames tuple for the builtin.  :func:`install` writes, into that one type,

* ``tp_cache`` (a ``PyTypeObject`` field CPython does not use: "no longer used" in 3.12's
  and 3.13's headers, never written in 3.11; the type's GC traversal visits it and its
  deallocation releases it): a new reference to the builtin's context object;
* ``tp_call``: ``adjit_typecall``, which reads the dict itself (``adjit_dictcall``).

Why this is safe:

* CPython recomputes ``tp_call`` from the MRO whenever ``__call__`` is set or deleted on
  the type or on any base (``update_slot``, also run for every subclass), so after any such
  change the type goes back to ``slot_tp_call`` and the ``__call__`` then found; the
  native ``tp_call`` never outlives the builtin it stands for.  A Python subclass of the
  type gets ``slot_tp_call`` too (its slots are fixed up from the MRO when it is made).
* The context object is owned by the type (``tp_cache``) as the builtin owns it
  (``m_self``): it lives exactly as long as the type can be called through.
* ``__class__`` assignment to or from the type behaves as before: ``tp_call`` is read
  from the object's type at each call, and the context is the type's, as with the
  builtin, whose ``self`` is its context and not the instance.
* An unknown layout (a probe that is not unique, a ``tp_call`` or ``tp_cache`` that is
  not what a fresh class has) installs nothing: the builtin serves as before.
  ``ADJIT_FASTCALL_TYPE=0`` (or ``ADJIT_FASTCALL=0``) switches this step off.
"""
from __future__ import annotations

import ctypes
import os
import types

_api = ctypes.pythonapi
_probed: list = []


def _word(tp: type, off: int) -> ctypes.c_void_p:
    return ctypes.c_void_p.from_address(id(tp) + off)


def _unique(hits: list[int]) -> int | None:
    return hits[0] if len(hits) == 1 else None


def _probe() -> tuple[int, int] | str:
    """(``tp_call`` offset, ``tp_cache`` offset) in a type object, or why not."""
    class A:
        def __call__(self):
            return 0

    class B:
        def __call__(self):
            return 1

    class C:
        pass

    # every offset read lies inside PyTypeObject (more than 400 bytes on 3.11-3.13)
    words = range(16, 400, 8)
    vectorcall_call = ctypes.cast(_api.PyVectorcall_Call, ctypes.c_void_p).value
    call_off = _unique([o for o in words if _word(A, o).value
                        and _word(A, o).value == _word(B, o).value
                        and not _word(C, o).value and not _word(object, o).value
                        and _word(types.FunctionType, o).value == vectorcall_call])
    probes = (A, B, C, type("D", (A, C), {}), int, object)
    bases = _unique([o for o in words if all(_word(t, o).value == id(t.__bases__)
                                             for t in probes)])
    mro = _unique([o for o in words if all(_word(t, o).value == id(t.__mro__) for t in probes)])
    if call_off is None or bases is None or mro != bases + 8:
        return "the type object layout (tp_call, tp_bases, tp_mro) was not recognised"
    cache_off = mro + 8         # PyTypeObject: tp_bases, tp_mro, tp_cache
    if any(_word(t, cache_off).value for t in probes + (type, str, float)):
        return "tp_cache is used in this Python"
    return call_off, cache_off


def layout() -> tuple[int, int] | None:
    """(``tp_call`` offset, ``tp_cache`` offset), or None: no native ``tp_call`` here."""
    if os.environ.get("ADJIT_FASTCALL_TYPE", "1").strip() == "0":
        return None
    if not _probed:
        try:
            _probed.append(_probe())
        except Exception as e:   # noqa: BLE001 - any surprise: the builtin alone
            _probed.append(f"the type probe raised {type(e).__name__}: {e}")
    got = _probed[0]
    return None if isinstance(got, str) else got


def slow_call(self, args, kwargs=None):
    """What ``slot_tp_call`` does: ``adjit_typecall`` on a type that copied it but has no
    context (NULL ``tp_cache``): the ``__call__`` found on the type's MRO, bound as a
    descriptor, called with the arguments."""
    tp = type(self)
    for klass in tp.__mro__:
        if "__call__" in vars(klass):
            meth = vars(klass)["__call__"]
            break
    else:
        raise TypeError(f"'{tp.__name__}' object is not callable")
    get = getattr(type(meth), "__get__", None)
    if get is not None:
        meth = get(meth, self, tp)
    return meth(*args, **(kwargs or {}))


def install(tp: type, builtin, type_call: int) -> bool:
    """Make ``type_call`` (the address of ``adjit_typecall``) the ``tp_call`` of ``tp``, a
    class just made with ``builtin`` (a fastcall builtin) as its ``__call__``; False when
    ``tp`` is not as expected (nothing is changed then)."""
    lay = layout()
    if lay is None:
        return False
    call_off, cache_off = lay
    class Ref:
        def __call__(self):
            return None
    ctx = builtin.__self__
    if (vars(tp).get("__call__") is not builtin or _word(tp, cache_off).value
            or _word(tp, call_off).value != _word(Ref, call_off).value):
        return False
    _api.Py_IncRef(ctypes.py_object(ctx))
    _word(tp, cache_off).value = id(ctx)
    _word(tp, call_off).value = type_call
    return True
