"""The IR of the native CPython entry of :mod:`.fastcall` (one function for every model).

``PyObject *adjit_fastcall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
PyObject *kwnames)`` is a ``METH_FASTCALL | METH_KEYWORDS`` C function.  ``self`` is a
ctypes structure whose buffer (at byte :data:`CTX_OFFSET` of the object, probed at
import) is the *context*: the model's entry, its inputs, outputs and temporaries, the
C-API functions it calls and the object-layout offsets probed at import.  Nothing
model-specific and no process address is in the IR, so one compiled wrapper (and one
disk-cache entry) serves every eligible model.

What it does, in order (every "no" hands the call, unchanged, to the fallback):

1. no positional arguments, as many keywords as inputs;
2. one fresh 0-d output array per output (``PyArray_NewFromDescr``; allocation may run
   Python code through the GC, so this happens *before* any input is looked at);
3. temporaries: table slots pointing into a 64-byte aligned stack arena;
4. every keyword: its input by pointer compare of the name, else by value (exact ``str``
   only, ``PyUnicode_Compare``); no input twice; the value an exact ndarray with nd 0,
   the input's builtin dtype object and ALIGNED set (its slot: the array object, as the
   entry expects with DATA_OFFSET), or an exact scalar type accepted for the input (its
   slot: a stack "fake array" whose data field points at the scalar's value);
5. the entry on the table (batch 0); results: the single array, or a new tuple.

Between step 4 and the entry no Python code can run, so no checked value can change.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
VOID = ir.VoidType()
NAME = "adjit_fastcall"

# limits (stack memory per call: about 8 KiB)
MAX_SLOTS, MAX_INPUTS, MAX_OUTPUTS, ARENA_BYTES, FAKE_BYTES = 256, 64, 64, 4096, 32

# context words (all 8 bytes); the ctypes structure in fastcall.py follows this order
CTX_FIELDS = ("fallback", "entry", "n_in", "n_out", "n_plan_in", "n_temps", "single",
              "inputs", "out_descrs", "temp_offsets", "ndarray", "unicode", "vectorcall",
              "unicode_compare", "tuple_new", "tuple_setitem", "incref", "decref",
              "new_from_descr", "type_off", "tuple_size_off", "tuple_items_off", "nd_off",
              "descr_off", "flags_off", "data_off", "aligned_flag")
F = {name: k for k, name in enumerate(CTX_FIELDS)}
# per input: name, dtype object, two accepted scalar types (or NULL), value offset, slot
REC_FIELDS = ("name", "descr", "scalar_a", "scalar_b", "value_off", "slot")
REC = len(REC_FIELDS)

T_VECTORCALL = ir.FunctionType(I8P, [I8P, I8PP, I64, I8P])
T_COMPARE = ir.FunctionType(I32, [I8P, I8P])
T_TUPLE_NEW = ir.FunctionType(I8P, [I64])
T_TUPLE_SET = ir.FunctionType(I32, [I8P, I64, I8P])
T_REF = ir.FunctionType(VOID, [I8P])
T_NEW_FROM_DESCR = ir.FunctionType(I8P, [I8P, I8P, I32, I64.as_pointer(), I64.as_pointer(),
                                         I8P, I32, I8P])
T_ENTRY = ir.FunctionType(VOID, [I8PP, I64])


def c64(v):
    return ir.Constant(I64, v)


class _Emitter:
    def __init__(self, fn: ir.Function, ctx_offset: int):
        self.fn = fn
        self.allocas = ir.IRBuilder(fn.append_basic_block("entry"))   # allocas only
        self.start = fn.append_basic_block("start")
        self.b = b = ir.IRBuilder(self.start)
        self.self_, self.args, self.nargs, self.kwnames = fn.args
        self.ctx = b.load(b.bitcast(b.gep(self.self_, [c64(ctx_offset)]), I8PP.as_pointer()),
                          name="ctx")

    # -- reading memory (addresses always by GEP) ----------------------------------------
    def word(self, base, k):
        return self.b.gep(base, [k if isinstance(k, ir.Value) else c64(k)])

    def ptr(self, field):
        return self.b.load(self.word(self.ctx, F[field]), name=field)

    def int(self, field):
        return self.b.load(self.b.bitcast(self.word(self.ctx, F[field]), I64.as_pointer()),
                           name=field)

    def fnptr(self, field, ty):
        return self.b.bitcast(self.ptr(field), ty.as_pointer())

    def at(self, obj, off, ty):
        """``*(ty*)((char*)obj + off)``."""
        return self.b.load(self.b.bitcast(self.b.gep(obj, [off]), ty.as_pointer()))

    def alloca(self, ty, n=None, align=None, name=""):
        """A static alloca in the entry block (stack memory of this call)."""
        a = self.allocas.alloca(ty, size=None if n is None else c64(n), name=name)
        if align is not None:
            a.align = align
        return a

    def finish(self):
        self.allocas.branch(self.start)

    @contextmanager
    def each(self, n, name):
        """``for (i = 0; i < n; i++)``: yields (i, next block); the body may branch away."""
        b = self.b
        var = self.alloca(I64, name=name + ".var")
        b.store(c64(0), var)
        head, body, nxt, done = (self.fn.append_basic_block(f"{name}.{s}")
                                 for s in ("head", "body", "next", "done"))
        b.branch(head)
        b.position_at_end(head)
        i = b.load(var, name=name)
        b.cbranch(b.icmp_signed("<", i, n), body, done)
        b.position_at_end(body)
        yield i, nxt
        if not b.block.is_terminated:
            b.branch(nxt)
        b.position_at_end(nxt)
        b.store(b.add(i, c64(1)), var)
        b.branch(head)
        b.position_at_end(done)


def wrapper_ir(ctx_offset: int) -> str:
    """IR text of ``adjit_fastcall``; ``ctx_offset``: byte offset of a ctypes object's
    buffer pointer (the same in every process of one Python build)."""
    module = ir.Module(name="adjit_fastcall")
    module.triple = ""
    fn = ir.Function(module, ir.FunctionType(I8P, [I8P, I8PP, I64, I8P]), name=NAME)
    for a, n in zip(fn.args, ("self", "args", "nargs", "kwnames")):
        a.name = n
    release = _release_fn(module)
    e = _Emitter(fn, ctx_offset)
    b = e.b
    outs = e.alloca(I8P, MAX_OUTPUTS, name="outs")
    table = e.alloca(I8P, MAX_SLOTS, 16, "table")
    arena = e.alloca(I8, ARENA_BYTES, 64, "arena")
    fake = e.alloca(I8, MAX_INPUTS * FAKE_BYTES, 16, "fake")
    seen = e.alloca(I64, name="seen")
    n_in, n_out = e.int("n_in"), e.int("n_out")
    decref = e.fnptr("decref", T_REF)
    blk = {n: fn.append_basic_block(n) for n in ("kw_some", "count", "alloc", "fallback", "oom",
                                                 "bad", "run", "tuple", "tuple_ok")}

    # 1. no positional arguments, one keyword per input
    has_kw = b.icmp_unsigned("!=", e.kwnames, ir.Constant(I8P, None))
    start = b.block
    b.cbranch(has_kw, blk["kw_some"], blk["count"])
    b.position_at_end(blk["kw_some"])
    nkw_some = e.at(e.kwnames, e.int("tuple_size_off"), I64)
    b.branch(blk["count"])
    b.position_at_end(blk["count"])
    nkw = b.phi(I64, "nkw")
    nkw.add_incoming(c64(0), start)
    nkw.add_incoming(nkw_some, blk["kw_some"])
    ok = b.and_(b.icmp_signed("==", e.nargs, c64(0)), b.icmp_signed("==", nkw, n_in))
    b.cbranch(ok, blk["alloc"], blk["fallback"])

    # 2. fresh 0-d outputs
    b.position_at_end(blk["alloc"])
    n_plan_in = e.int("n_plan_in")
    new = e.fnptr("new_from_descr", T_NEW_FROM_DESCR)
    descrs, ndarray = b.bitcast(e.ptr("out_descrs"), I8PP), e.ptr("ndarray")
    incref = e.fnptr("incref", T_REF)
    null = ir.Constant(I8P, None)
    with e.each(n_out, "o") as (o, nxt):
        descr = b.load(e.word(descrs, o))
        b.call(incref, [descr])                     # PyArray_NewFromDescr steals it
        arr = b.call(new, [ndarray, descr, ir.Constant(I32, 0), ir.Constant(I64.as_pointer(), None),
                           ir.Constant(I64.as_pointer(), None), null, ir.Constant(I32, 0), null])
        b.store(arr, e.word(outs, o))
        b.store(arr, e.word(table, b.add(n_plan_in, o)))
        b.cbranch(b.icmp_unsigned("==", arr, null), blk["oom"], nxt)
    oom_count = o

    # 3. temporaries in the stack arena
    offsets = b.bitcast(e.ptr("temp_offsets"), I64.as_pointer())
    first_temp = b.add(n_plan_in, n_out)
    with e.each(e.int("n_temps"), "k") as (k, nxt):
        b.store(b.gep(arena, [b.load(e.word(offsets, k))]), e.word(table, b.add(first_temp, k)))

    # 4. keywords -> inputs
    b.store(c64(0), seen)
    items = b.bitcast(b.gep(e.kwnames, [e.int("tuple_items_off")]), I8PP)
    recs = b.bitcast(e.ptr("inputs"), I8PP)
    type_off = e.int("type_off")
    unicode, compare = e.ptr("unicode"), e.fnptr("unicode_compare", T_COMPARE)
    nd_off, descr_off, flags_off = e.int("nd_off"), e.int("descr_off"), e.int("flags_off")
    data_off, aligned = e.int("data_off"), e.int("aligned_flag")
    with e.each(nkw, "j") as (j, next_kw):
        key, obj = b.load(e.word(items, j)), b.load(e.word(e.args, j))
        found = fn.append_basic_block("found")
        by_value = fn.append_basic_block("by_value")
        which = e.alloca(I64, name="which")
        with e.each(n_in, "i") as (i, nxt):          # the name object itself (interned)
            b.store(i, which)
            name = b.load(e.word(recs, b.mul(i, c64(REC))))
            b.cbranch(b.icmp_unsigned("==", name, key), found, nxt)
        b.branch(by_value)
        b.position_at_end(by_value)
        exact_str = b.icmp_unsigned("==", e.at(key, type_off, I8P), unicode)
        compare_blk = fn.append_basic_block("compare")
        b.cbranch(exact_str, compare_blk, blk["bad"])
        b.position_at_end(compare_blk)
        with e.each(n_in, "i2") as (i, nxt):
            b.store(i, which)
            name = b.load(e.word(recs, b.mul(i, c64(REC))))
            same = b.icmp_signed("==", b.call(compare, [name, key]), ir.Constant(I32, 0))
            b.cbranch(same, found, nxt)
        b.branch(blk["bad"])

        b.position_at_end(found)
        i = b.load(which)
        bit = b.shl(c64(1), i)
        before = b.load(seen)
        b.store(b.or_(before, bit), seen)
        fresh = b.icmp_unsigned("==", b.and_(before, bit), c64(0))
        rec = b.gep(recs, [b.mul(i, c64(REC))])
        field = lambda name: e.word(rec, REC_FIELDS.index(name))   # noqa: E731
        tp = e.at(obj, type_off, I8P)
        is_array, array_ok, scalar = (fn.append_basic_block(n) for n in
                                      ("is_array", "array_ok", "scalar"))
        is_scalar, store = (fn.append_basic_block(n) for n in ("is_scalar", "store"))
        check_type = fn.append_basic_block("check_type")
        b.cbranch(fresh, check_type, blk["bad"])
        b.position_at_end(check_type)
        b.cbranch(b.icmp_unsigned("==", tp, ndarray), is_array, scalar)

        b.position_at_end(is_array)     # exact ndarray: nd 0, the builtin dtype, aligned
        ok = b.and_(b.icmp_signed("==", e.at(obj, nd_off, I32), ir.Constant(I32, 0)),
                    b.icmp_unsigned("==", e.at(obj, descr_off, I8P), b.load(field("descr"))))
        flags = b.zext(e.at(obj, flags_off, I32), I64)
        ok = b.and_(ok, b.icmp_unsigned("!=", b.and_(flags, aligned), c64(0)))
        b.cbranch(ok, array_ok, blk["bad"])
        b.position_at_end(array_ok)
        b.branch(store)

        b.position_at_end(scalar)       # an exact scalar type accepted for this input
        ok = b.or_(b.icmp_unsigned("==", tp, b.load(field("scalar_a"))),
                   b.icmp_unsigned("==", tp, b.load(field("scalar_b"))))
        b.cbranch(ok, is_scalar, blk["bad"])          # (an unused type word is NULL)
        b.position_at_end(is_scalar)
        fake_obj = b.gep(fake, [b.mul(i, c64(FAKE_BYTES))])
        value_off = b.load(b.bitcast(field("value_off"), I64.as_pointer()))
        b.store(b.gep(obj, [value_off]), b.bitcast(b.gep(fake_obj, [data_off]), I8PP))
        b.branch(store)

        b.position_at_end(store)
        val = b.phi(I8P, "slot_value")
        val.add_incoming(obj, array_ok)
        val.add_incoming(fake_obj, is_scalar)
        slot = b.load(b.bitcast(field("slot"), I64.as_pointer()))
        has_slot, write = b.icmp_signed(">=", slot, c64(0)), fn.append_basic_block("write")
        b.cbranch(has_slot, write, next_kw)
        b.position_at_end(write)
        b.store(val, e.word(table, slot))
    b.branch(blk["run"])

    # 5. run, return the array or a tuple
    b.position_at_end(blk["run"])
    b.call(e.fnptr("entry", T_ENTRY), [table, c64(0)])
    single = b.icmp_signed("!=", e.int("single"), c64(0))
    one = fn.append_basic_block("one")
    b.cbranch(single, one, blk["tuple"])
    b.position_at_end(one)
    b.ret(b.load(outs))
    b.position_at_end(blk["tuple"])
    tup = b.call(e.fnptr("tuple_new", T_TUPLE_NEW), [n_out])
    tuple_fail = fn.append_basic_block("tuple_fail")
    b.cbranch(b.icmp_unsigned("==", tup, null), tuple_fail, blk["tuple_ok"])
    b.position_at_end(tuple_fail)
    b.call(release, [outs, n_out, decref])
    b.ret(null)
    b.position_at_end(blk["tuple_ok"])
    setitem = e.fnptr("tuple_setitem", T_TUPLE_SET)
    with e.each(n_out, "t") as (t, nxt):
        b.call(setitem, [tup, t, b.load(e.word(outs, t))])   # steals the reference
    b.ret(tup)

    b.position_at_end(blk["oom"])       # outputs 0..o-1 were made; the error is set
    b.call(release, [outs, oom_count, decref])
    b.ret(null)
    b.position_at_end(blk["bad"])
    b.call(release, [outs, n_out, decref])
    b.branch(blk["fallback"])
    b.position_at_end(blk["fallback"])
    res = b.call(e.fnptr("vectorcall", T_VECTORCALL),
                 [e.ptr("fallback"), e.args, e.nargs, e.kwnames])
    b.ret(res)
    e.finish()
    return str(module)


def _release_fn(module: ir.Module) -> ir.Function:
    """``void release(PyObject **objs, i64 n, decref)``: drop the outputs made so far."""
    fn = ir.Function(module, ir.FunctionType(VOID, [I8PP, I64, T_REF.as_pointer()]),
                     name="adjit_fastcall_release")
    fn.linkage = "internal"
    objs, n, decref = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    head, body, done = (fn.append_basic_block(s) for s in ("head", "body", "done"))
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, "i")
    i.add_incoming(c64(0), start)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    b.call(decref, [b.load(b.gep(objs, [i]))])
    i.add_incoming(b.add(i, c64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fn
