"""The keyword-dict entries of the native CPython entry (see :mod:`.fastcall_ir`).

``f(x=..., W=...)`` on an object whose type has no vectorcall reaches the type's
``tp_call(self, args, kwargs)``: CPython has already packed the keywords into a dict.  A
``METH_FASTCALL`` builtin installed as ``__call__`` costs, on top, the ``__call__`` lookup
of ``slot_tp_call`` and the unpacking of that dict into a fresh kwnames tuple (~90 ns of
a 0.3 us call).  Two functions here take the dict as it is:

* ``adjit_dictcall(ctx_obj, args, kwargs)``: the wrapper of :mod:`.fastcall_ir` reading
  its arguments from the tuple and the dict (``PyDict_Next``); ``ctx_obj`` is the
  function's context object, as for ``adjit_fastcall``;
* ``adjit_typecall(self, args, kwargs)``: the ``tp_call`` of a compiled function's
  per-instance type (:func:`.fastcall_type.install`): the context object is the type's
  ``tp_cache`` (a ``PyTypeObject`` field CPython leaves unused, visited by the type's
  GC traversal and released by its deallocation), then ``adjit_dictcall``.  A type
  whose ``tp_cache`` is NULL (one that copied this ``tp_call`` from its base without
  CPython's slot fix-up, as ``PyType_FromSpec`` types do) gets the generic route:
  :data:`SLOW` holds a Python callable doing what ``slot_tp_call`` does.

The dict's values are borrowed from a dict the caller may still reach; so from the
first step that may run Python code (making the outputs) to the end of the call the
wrapper holds a reference to each (``Py_IncRef`` / ``Py_DecRef``).  A call the wrapper
cannot check goes to ``fallback(*args, **kwargs)`` through ``PyObject_Call`` with the very
tuple and dict it got.
"""
from __future__ import annotations

from llvmlite import ir

from .fastcall_checks import count_keywords
from .fastcall_ir import I8P, I8PP, I32, I64, T_REF, T_VECTORCALL, c64

T_CALL = ir.FunctionType(I8P, [I8P, I8P, I8P])
T_DICT_NEXT = ir.FunctionType(I32, [I8P, I64.as_pointer(), I8PP, I8PP])
T_DICT_SIZE = ir.FunctionType(I64, [I8P])
TYPE_NAME, SLOW = "adjit_typecall", "adjit_typecall_slow"


class DictSource:
    """The arguments of a ``tp_call``-style call: ``(self, args, kwargs)``, ``args`` a
    tuple, ``kwargs`` a dict or NULL."""

    def match(self, e, blk, matched):
        b, fn = e.b, e.fn
        _, args, kwargs = fn.args
        nargs = e.at(args, e.int("tuple_size_off"), I64)
        nkw = count_keywords(e, blk, nargs, kwargs,
                             lambda: b.call(e.fnptr("dict_size", T_DICT_SIZE), [kwargs]))
        pos, key, value = e.alloca(I64, name="pos"), e.alloca(I8P), e.alloca(I8P)
        b.store(c64(0), pos)
        dict_next = e.fnptr("dict_next", T_DICT_NEXT)
        with e.each(nkw, "j") as (j, next_kw):
            more = b.call(dict_next, [kwargs, pos, key, value])
            item = fn.append_basic_block("item")
            b.cbranch(b.icmp_signed("!=", more, ir.Constant(I32, 0)), item, blk["fallback"])
            b.position_at_end(item)
            matched(b.load(key), b.load(value), next_kw)

    def _each_value(self, e, inobj, field, name):
        f = e.fnptr(field, T_REF)
        with e.each(e.int("n_in"), name) as (i, _):
            e.b.call(f, [e.b.load(e.word(inobj, i))])

    def hold(self, e, inobj):
        self._each_value(e, inobj, "incref", "hold")

    def drop(self, e, inobj):
        self._each_value(e, inobj, "decref", "drop")

    def call(self, e, target):
        _, args, kwargs = e.fn.args
        return e.b.call(e.fnptr("call", T_CALL), [target, args, kwargs])


def type_call_fn(module: ir.Module, dict_fn: ir.Function, type_off: int,
                 cache_off: int) -> ir.Function:
    """``adjit_typecall(self, args, kwargs)``: ``adjit_dictcall`` on the context object in
    ``Py_TYPE(self)->tp_cache``, else (NULL) ``SLOW[0](self, args[, kwargs])`` through
    ``SLOW[1]`` (PyObject_Vectorcall); both words are written when the module is loaded."""
    slow = ir.GlobalVariable(module, ir.ArrayType(I8P, 2), SLOW)
    slow.initializer = ir.Constant(ir.ArrayType(I8P, 2), None)
    fn = ir.Function(module, T_CALL, TYPE_NAME)
    self_, args, kwargs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    at = lambda obj, off: b.load(b.bitcast(b.gep(obj, [c64(off)]), I8PP))  # noqa: E731
    ctx_obj = at(at(self_, type_off), cache_off)
    fast, generic = fn.append_basic_block("fast"), fn.append_basic_block("generic")
    b.cbranch(b.icmp_unsigned("!=", ctx_obj, ir.Constant(I8P, None)), fast, generic)
    b.position_at_end(fast)
    got = b.call(dict_fn, [ctx_obj, args, kwargs], tail=True)
    b.ret(got)
    b.position_at_end(generic)
    stack = b.alloca(I8P, size=c64(3))
    for k, v in enumerate((self_, args, kwargs)):
        b.store(v, b.gep(stack, [c64(k)]))
    words = b.bitcast(slow, I8PP)
    call = b.bitcast(b.load(b.gep(words, [c64(1)])), T_VECTORCALL.as_pointer())
    n = b.select(b.icmp_unsigned("==", kwargs, ir.Constant(I8P, None)), c64(2), c64(3))
    b.ret(b.call(call, [b.load(words), stack, n, ir.Constant(I8P, None)]))
    return fn
