"""The IR of the native CPython entry of :mod:`.fastcall` (one function for every model).

``PyObject *adjit_fastcall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
PyObject *kwnames)`` is a ``METH_FASTCALL | METH_KEYWORDS`` C function.  ``self`` is a
ctypes structure whose buffer (at byte :data:`CTX_OFFSET` of the object, probed at
import) is the *context*: the model's entry, its inputs, outputs and temporaries, the
C-API functions it calls and the object-layout offsets probed at import.  Nothing
model-specific and no process address is in the IR, so one compiled wrapper (and one
disk-cache entry) serves every eligible model.

``adjit_dictcall(self, args, kwargs)`` is the same wrapper reading a ``tp_call``'s
argument tuple and keyword dict (:mod:`.fastcall_kwargs`); ``adjit_typecall`` finds its
context through the instance's type.

What it does, in order (every "no" hands the call, unchanged, to the fallback):

1. no positional arguments, as many keywords as inputs;
2. every keyword to its input by pointer compare of the name, else by value (exact
   ``str`` only, ``PyUnicode_Compare``); no input twice;
3. every input checked (:func:`_check_inputs`): an exact ndarray of the declared rank,
   the input's builtin dtype object, ALIGNED and C_CONTIGUOUS, every static dim equal
   and every batch dim one size (its slot: the array object, as the entry expects with
   DATA_OFFSET), or for a 0-d input an exact scalar type accepted for it (its slot: a
   stack "fake array" whose data field points at the scalar's value); a bound
   function's *fixed* arrays (its bound arrays) are checked the same way, every call,
   since their owner may have changed them (resize, shape, dtype, flags); a primed
   function with no state for this batch size goes to the *reprime* callable instead;
4. one fresh output per output, of its shape for this batch (``PyArray_NewFromDescr``);
5. the inputs (fixed arrays included) checked again (step 4 may run Python code through
   the GC); then the values of every label array (an integer input that ``one_hot``
   reads): each a class index ``0 <= v < n``, else the fallback, which raises;
6. stack route: temporaries in a 64-byte aligned stack arena, the entry, GIL held;
   primed route: the state of this batch size, taken by an atomic 0 -> 1 of its lock
   word (else: the fallback), its temporaries, the entry with the GIL released, lock 0;
7. results: the single array, or a new tuple.

Between step 5 and the entry no Python code runs, so no checked value can change
(except by another thread while the GIL is released, as on the ctypes path).
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
VOID = ir.VoidType()
NAME, DICT_NAME = "adjit_fastcall", "adjit_dictcall"

# limits (stack memory per call: about 16 KiB)
MAX_SLOTS, MAX_INPUTS, MAX_OUTPUTS, ARENA_BYTES, FAKE_BYTES = 1024, 64, 64, 4096, 32
MAX_ND, N_PRIMED = 32, 4

# context words (all 8 bytes); the ctypes structure in fastcall.py follows this order
CTX_FIELDS = ("fallback", "entry", "n_in", "n_out", "n_plan_in", "n_temps", "single",
              "inputs", "outputs", "temp_offsets", "ndarray", "unicode", "vectorcall",
              "unicode_compare", "tuple_new", "tuple_setitem", "incref", "decref",
              "new_from_descr", "type_off", "tuple_size_off", "tuple_items_off", "nd_off",
              "descr_off", "flags_off", "data_off", "dims_off", "primed",
              "reprime", "save_thread", "restore_thread", "fixed", "n_fixed", "first_temp",
              "call", "dict_next", "dict_size")
F = {name: k for k, name in enumerate(CTX_FIELDS)}
# per input: name, dtype object, two accepted scalar types (or NULL), value offset, slot,
# declared rank and its dims (int64[nd], -1 for the batch dim), the array flags it needs
# (ALIGNED | C_CONTIGUOUS, and WRITEABLE for an input ``updates=`` writes), the slot
# of the output written into it in place (-1: none), and for labels (integer inputs that
# an op reads as indices) the range: valid values v have (v - label_low) < label_limit
# unsigned; and the element size (label_bytes 0: not a label).
# ``n_in`` records for the keyword arguments, then ``n_fixed`` for the fixed arrays.
REC_FIELDS = ("name", "descr", "scalar_a", "scalar_b", "value_off", "slot", "nd", "dims",
              "flags", "out_slot", "label_limit", "label_bytes", "label_low")
REC = len(REC_FIELDS)
# per output: dtype object, rank, dims (int64[nd], -1 for the batch dim)
OUT_FIELDS = ("descr", "nd", "dims")
OUT = len(OUT_FIELDS)
# ``fixed``: n_fixed array objects -- a bound function's bound arrays, each checked every
# call against its record (after the keyword ones) and written to its slots
FIX = 1
# a primed state (``primed`` is NULL for stack-arena functions, else N_PRIMED pointers to
# these, each NULL or: lock word, batch size, then one table word per temporary slot)
P_LOCK, P_BATCH, P_TEMPS = 0, 1, 2

T_VECTORCALL = ir.FunctionType(I8P, [I8P, I8PP, I64, I8P])
T_COMPARE = ir.FunctionType(I32, [I8P, I8P])
T_TUPLE_NEW = ir.FunctionType(I8P, [I64])
T_TUPLE_SET = ir.FunctionType(I32, [I8P, I64, I8P])
T_REF = ir.FunctionType(VOID, [I8P])
T_NEW_FROM_DESCR = ir.FunctionType(I8P, [I8P, I8P, I32, I64.as_pointer(), I64.as_pointer(),
                                         I8P, I32, I8P])
T_ENTRY = ir.FunctionType(VOID, [I8PP, I64])
T_SAVE = ir.FunctionType(I8P, [])
T_RESTORE = ir.FunctionType(VOID, [I8P])


def c64(v):
    return ir.Constant(I64, v)


class _Emitter:
    def __init__(self, fn: ir.Function, ctx_offset: int):
        self.fn = fn
        self.allocas = ir.IRBuilder(fn.append_basic_block("entry"))   # allocas only
        self.start = fn.append_basic_block("start")
        self.b = b = ir.IRBuilder(self.start)
        self.self_ = fn.args[0]
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


def wrapper_ir(ctx_offset: int, type_layout: tuple[int, int] | None = None) -> str:
    """IR text of ``adjit_fastcall`` and ``adjit_dictcall`` (and, given ``type_layout``,
    ``adjit_typecall``: see :mod:`.fastcall_kwargs`); ``ctx_offset``: byte offset of a
    ctypes object's buffer pointer (the same in every process of one Python build)."""
    from .fastcall_checks import release_fn
    from .fastcall_kwargs import DictSource, type_call_fn
    module = ir.Module(name="adjit_fastcall")
    module.triple = ""
    release = release_fn(module)
    fn = ir.Function(module, ir.FunctionType(I8P, [I8P, I8PP, I64, I8P]), name=NAME)
    for a, n in zip(fn.args, ("self", "args", "nargs", "kwnames")):
        a.name = n
    _emit(fn, ctx_offset, _VectorSource(), release)
    dict_fn = ir.Function(module, ir.FunctionType(I8P, [I8P, I8P, I8P]), name=DICT_NAME)
    for a, n in zip(dict_fn.args, ("self", "args", "kwargs")):
        a.name = n
    _emit(dict_fn, ctx_offset, DictSource(), release)
    if type_layout is not None:
        type_call_fn(module, dict_fn, *type_layout)
    return str(module)


class _VectorSource:
    """The arguments of a ``METH_FASTCALL | METH_KEYWORDS`` call: ``(self, args, nargs,
    kwnames)``; the values are the caller's (alive for the whole call)."""

    def match(self, e, blk, matched):
        """Steps 1 and 2: ``matched(key, obj, next_kw)`` for each keyword, or the
        fallback."""
        b = e.b
        _, args, nargs, kwnames = e.fn.args
        from .fastcall_checks import count_keywords
        nkw = count_keywords(e, blk, nargs, kwnames,
                             lambda: e.at(kwnames, e.int("tuple_size_off"), I64))
        items = b.bitcast(b.gep(kwnames, [e.int("tuple_items_off")]), I8PP)
        with e.each(nkw, "j") as (j, next_kw):
            matched(b.load(e.word(items, j)), b.load(e.word(args, j)), next_kw)

    def hold(self, e, inobj):
        pass

    def drop(self, e, inobj):
        pass

    def call(self, e, target):
        _, args, nargs, kwnames = e.fn.args
        return e.b.call(e.fnptr("vectorcall", T_VECTORCALL), [target, args, nargs, kwnames])


def _emit(fn: ir.Function, ctx_offset: int, src, release) -> None:
    """The body shared by both entries; ``src`` reads the call's arguments (steps 1-2),
    keeps the keyword values alive from step 4 on where the caller may not, and calls
    the fallback with the call's own arguments."""
    from .fastcall_checks import (check_inputs as _check_inputs, check_labels as _check_labels,
                                  find_primed as _find_primed)
    e = _Emitter(fn, ctx_offset)
    b = e.b
    outs = e.alloca(I8P, MAX_OUTPUTS, name="outs")
    table = e.alloca(I8P, MAX_SLOTS, 16, "table")
    arena = e.alloca(I8, ARENA_BYTES, 64, "arena")
    fake = e.alloca(I8, MAX_INPUTS * FAKE_BYTES, 16, "fake")
    inobj = e.alloca(I8P, MAX_INPUTS, name="inobj")
    odims = e.alloca(I64, MAX_ND, name="odims")
    seen = e.alloca(I64, name="seen")
    n_in, n_out = e.int("n_in"), e.int("n_out")
    decref = e.fnptr("decref", T_REF)
    null = ir.Constant(I8P, None)
    blk = {n: fn.append_basic_block(n) for n in (
        "fallback", "oom", "bad", "bad_reprime", "reprime",
        "stack", "primed", "locked", "run_done", "tuple", "tuple_ok")}

    # 1-2. no positional arguments, one keyword per input; keywords -> inputs (by the
    # name object, else by value; each input once)
    b.store(c64(0), seen)
    recs = b.bitcast(e.ptr("inputs"), I8PP)
    type_off = e.int("type_off")
    unicode, compare = e.ptr("unicode"), e.fnptr("unicode_compare", T_COMPARE)
    which = e.alloca(I64, name="which")

    def matched(key, obj, next_kw):
        found = fn.append_basic_block("found")
        by_value = fn.append_basic_block("by_value")
        with e.each(n_in, "i") as (i, nxt):          # the name object itself (interned)
            b.store(i, which)
            name = b.load(e.word(recs, b.mul(i, c64(REC))))
            b.cbranch(b.icmp_unsigned("==", name, key), found, nxt)
        b.branch(by_value)
        b.position_at_end(by_value)
        exact_str = b.icmp_unsigned("==", e.at(key, type_off, I8P), unicode)
        compare_blk = fn.append_basic_block("compare")
        b.cbranch(exact_str, compare_blk, blk["fallback"])
        b.position_at_end(compare_blk)
        with e.each(n_in, "i2") as (i, nxt):
            b.store(i, which)
            name = b.load(e.word(recs, b.mul(i, c64(REC))))
            same = b.icmp_signed("==", b.call(compare, [name, key]), ir.Constant(I32, 0))
            b.cbranch(same, found, nxt)
        b.branch(blk["fallback"])
        b.position_at_end(found)
        i = b.load(which)
        bit = b.shl(c64(1), i)
        before = b.load(seen)
        b.store(b.or_(before, bit), seen)
        b.store(obj, e.word(inobj, i))
        fresh = b.icmp_unsigned("==", b.and_(before, bit), c64(0))
        b.cbranch(fresh, next_kw, blk["fallback"])
    src.match(e, blk, matched)

    # the fixed arrays follow the keyword arguments
    fixed = b.bitcast(e.ptr("fixed"), I8PP)
    n_fixed = e.int("n_fixed")
    with e.each(n_fixed, "f") as (f, nxt):
        b.store(b.load(e.word(fixed, f)), e.word(inobj, b.add(n_in, f)))
    n_all = b.add(n_in, n_fixed)

    # 3. every input checked (input slots written), the batch size found
    batch = _check_inputs(e, inobj, table, fake, blk["fallback"], n_all)
    primed = b.bitcast(e.ptr("primed"), I8PP)
    is_primed = b.icmp_unsigned("!=", primed, ir.Constant(I8PP, None))
    known = fn.append_basic_block("known")
    b.cbranch(b.and_(is_primed, b.icmp_unsigned("==", _find_primed(e, primed, batch, is_primed),
                                                ir.Constant(I8PP, None))),
              blk["reprime"], known)

    # 4. fresh outputs of this batch size (may run Python code through the GC: step 5)
    b.position_at_end(known)
    src.hold(e, inobj)
    n_plan_in = e.int("n_plan_in")
    new = e.fnptr("new_from_descr", T_NEW_FROM_DESCR)
    orecs, ndarray = b.bitcast(e.ptr("outputs"), I8PP), e.ptr("ndarray")
    incref = e.fnptr("incref", T_REF)
    i64p = I64.as_pointer()
    with e.each(n_out, "o") as (o, nxt):
        rec = b.gep(orecs, [b.mul(o, c64(OUT))])
        descr = b.load(e.word(rec, OUT_FIELDS.index("descr")))
        nd = b.ptrtoint(b.load(e.word(rec, OUT_FIELDS.index("nd"))), I64)
        dims = b.bitcast(b.load(e.word(rec, OUT_FIELDS.index("dims"))), i64p)
        with e.each(nd, "od") as (d, nxt_d):
            want = b.load(b.gep(dims, [d]))
            b.store(b.select(b.icmp_signed("<", want, c64(0)), batch, want), b.gep(odims, [d]))
        b.call(incref, [descr])                     # PyArray_NewFromDescr steals it
        arr = b.call(new, [ndarray, descr, b.trunc(nd, I32), odims, ir.Constant(i64p, None),
                           null, ir.Constant(I32, 0), null])
        b.store(arr, e.word(outs, o))
        b.store(arr, e.word(table, b.add(n_plan_in, o)))
        b.cbranch(b.icmp_unsigned("==", arr, null), blk["oom"], nxt)
    oom_count = o

    # 5. the inputs again: unchanged by whatever ran during step 4; the label values
    again = _check_inputs(e, inobj, table, fake, blk["bad"], n_all)
    _check_labels(e, inobj, n_all, blk["bad"])
    first_temp = e.int("first_temp")
    entry = e.fnptr("entry", T_ENTRY)
    b.cbranch(b.icmp_signed("==", again, batch), blk["stack"], blk["bad"])

    # 6a. a stack arena (small functions, no batch): temporaries, the entry, GIL held
    b.position_at_end(blk["stack"])
    b.cbranch(is_primed, blk["primed"], fn.append_basic_block("stack_run"))
    b.position_at_end(fn.blocks[-1])
    offsets = b.bitcast(e.ptr("temp_offsets"), i64p)
    with e.each(e.int("n_temps"), "k") as (k, nxt):
        b.store(b.gep(arena, [b.load(e.word(offsets, k))]), e.word(table, b.add(first_temp, k)))
    b.call(entry, [table, batch])
    b.branch(blk["run_done"])

    # 6b. a primed state of this batch size, taken by a try-lock; the GIL released
    b.position_at_end(blk["primed"])
    state = _find_primed(e, primed, batch, is_primed)
    b.cbranch(b.icmp_unsigned("==", state, ir.Constant(I8PP, None)), blk["bad_reprime"],
              blk["locked"])
    b.position_at_end(blk["locked"])
    lock = b.bitcast(b.gep(state, [c64(P_LOCK)]), i64p)
    got = b.extract_value(b.cmpxchg(lock, c64(0), c64(1), "acquire", "monotonic"), 1)
    run = fn.append_basic_block("primed_run")
    b.cbranch(got, run, blk["bad"])
    b.position_at_end(run)
    with e.each(e.int("n_temps"), "k2") as (k, nxt):
        b.store(b.load(b.gep(state, [b.add(k, c64(P_TEMPS))])),
                e.word(table, b.add(first_temp, k)))
    ts = b.call(e.fnptr("save_thread", T_SAVE), [])
    b.call(entry, [table, batch])
    b.store_atomic(c64(0), lock, "release", 8)
    b.call(e.fnptr("restore_thread", T_RESTORE), [ts])
    b.branch(blk["run_done"])

    # 7. the array or a new tuple
    b.position_at_end(blk["run_done"])
    single = b.icmp_signed("!=", e.int("single"), c64(0))
    one = fn.append_basic_block("one")
    b.cbranch(single, one, blk["tuple"])
    b.position_at_end(one)
    src.drop(e, inobj)
    b.ret(b.load(outs))
    b.position_at_end(blk["tuple"])
    tup = b.call(e.fnptr("tuple_new", T_TUPLE_NEW), [n_out])
    tuple_fail = fn.append_basic_block("tuple_fail")
    b.cbranch(b.icmp_unsigned("==", tup, null), tuple_fail, blk["tuple_ok"])
    b.position_at_end(tuple_fail)
    b.call(release, [outs, n_out, decref])
    src.drop(e, inobj)
    b.ret(null)
    b.position_at_end(blk["tuple_ok"])
    setitem = e.fnptr("tuple_setitem", T_TUPLE_SET)
    with e.each(n_out, "t") as (t, nxt):
        b.call(setitem, [tup, t, b.load(e.word(outs, t))])   # steals the reference
    src.drop(e, inobj)
    b.ret(tup)

    b.position_at_end(blk["oom"])       # outputs 0..o-1 were made; the error is set
    b.call(release, [outs, oom_count, decref])
    src.drop(e, inobj)
    b.ret(null)
    b.position_at_end(blk["bad"])
    b.call(release, [outs, n_out, decref])
    src.drop(e, inobj)
    b.branch(blk["fallback"])
    b.position_at_end(blk["bad_reprime"])
    b.call(release, [outs, n_out, decref])
    src.drop(e, inobj)
    b.branch(blk["reprime"])
    for name, target in (("fallback", "fallback"), ("reprime", "reprime")):
        b.position_at_end(blk[name])
        b.ret(src.call(e, e.ptr(target)))
    e.finish()

