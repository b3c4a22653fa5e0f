"""Argument checks and state lookup of the fastcall wrapper (see :mod:`.fastcall_ir`):
IR emitted into ``adjit_fastcall`` by :func:`.fastcall_ir.wrapper_ir`."""
from __future__ import annotations

from llvmlite import ir

from .fastcall_ir import (FAKE_BYTES, I8P, I8PP, I32, I64, N_PRIMED, P_BATCH, REC,
                          REC_FIELDS, T_REF, VOID, _Emitter, c64)


def find_primed(e: _Emitter, primed, batch, is_primed):
    """The primed state of ``batch`` (or NULL): a scan of the N_PRIMED pointers."""
    b, fn = e.b, e.fn
    var = e.alloca(I8PP, name="state.var")
    b.store(ir.Constant(I8PP, None), var)
    scan, done = fn.append_basic_block("scan"), fn.append_basic_block("scan.done")
    b.cbranch(is_primed, scan, done)
    b.position_at_end(scan)
    with e.each(c64(N_PRIMED), "p") as (k, nxt):
        st = b.bitcast(b.load(b.gep(primed, [k])), I8PP)
        has = fn.append_basic_block("has_state")
        b.cbranch(b.icmp_unsigned("==", st, ir.Constant(I8PP, None)), nxt, has)
        b.position_at_end(has)
        st_batch = b.ptrtoint(b.load(b.gep(st, [c64(P_BATCH)])), I64)
        hit = fn.append_basic_block("hit")
        b.cbranch(b.icmp_signed("==", st_batch, batch), hit, nxt)
        b.position_at_end(hit)
        b.store(st, var)
        b.branch(done)
    b.branch(done)
    b.position_at_end(done)
    return b.load(var)


def check_inputs(e: _Emitter, inobj, table, fake, fail, n):
    """Check the first ``n`` input objects (``inobj[i]``: the keyword arguments, then a
    bound function's fixed arrays) against their records, write their slots; the batch
    size (0 without batch dims).  Any mismatch branches to ``fail``."""
    b, fn = e.b, e.fn
    i64p = I64.as_pointer()
    bvar = e.alloca(I64, name="batch.var")
    b.store(c64(-1), bvar)
    recs = b.bitcast(e.ptr("inputs"), I8PP)
    ndarray, type_off = e.ptr("ndarray"), e.int("type_off")
    nd_off, descr_off, flags_off = e.int("nd_off"), e.int("descr_off"), e.int("flags_off")
    data_off, dims_off = e.int("data_off"), e.int("dims_off")
    with e.each(n, "c") as (i, next_in):
        obj = b.load(e.word(inobj, i))
        rec = b.gep(recs, [b.mul(i, c64(REC))])
        field = lambda name: e.word(rec, REC_FIELDS.index(name))   # noqa: E731
        tp = e.at(obj, type_off, I8P)
        is_array, dims_blk, scalar, is_scalar, store = (fn.append_basic_block(n) for n in (
            "is_array", "dims", "scalar", "is_scalar", "store"))
        b.cbranch(b.icmp_unsigned("==", tp, ndarray), is_array, scalar)

        b.position_at_end(is_array)     # exact ndarray: rank, builtin dtype, the flags
        nd = b.sext(e.at(obj, nd_off, I32), I64)
        ok = b.and_(b.icmp_signed("==", nd, b.ptrtoint(b.load(field("nd")), I64)),
                    b.icmp_unsigned("==", e.at(obj, descr_off, I8P), b.load(field("descr"))))
        flags = b.zext(e.at(obj, flags_off, I32), I64)
        mask = b.load(b.bitcast(field("flags"), i64p))
        ok = b.and_(ok, b.icmp_unsigned("==", b.and_(flags, mask), mask))
        b.cbranch(ok, dims_blk, fail)
        b.position_at_end(dims_blk)
        got_dims = e.at(obj, dims_off, i64p)
        wants = b.bitcast(b.load(field("dims")), i64p)
        with e.each(nd, "d") as (d, nxt):
            want, got = b.load(b.gep(wants, [d])), b.load(b.gep(got_dims, [d]))
            is_batch, static, first, compare = (fn.append_basic_block(n) for n in (
                "batch_dim", "static_dim", "first_batch", "same_batch"))
            b.cbranch(b.icmp_signed("<", want, c64(0)), is_batch, static)
            b.position_at_end(static)
            b.cbranch(b.icmp_signed("==", want, got), nxt, fail)
            b.position_at_end(is_batch)
            cur = b.load(bvar)
            b.cbranch(b.icmp_signed("<", cur, c64(0)), first, compare)
            b.position_at_end(first)
            b.store(got, bvar)
            b.branch(nxt)
            b.position_at_end(compare)
            b.cbranch(b.icmp_signed("==", cur, got), nxt, fail)
        array_done = b.block
        b.branch(store)

        b.position_at_end(scalar)       # an exact scalar type accepted for this input
        ok = b.or_(b.icmp_unsigned("==", tp, b.load(field("scalar_a"))),
                   b.icmp_unsigned("==", tp, b.load(field("scalar_b"))))
        b.cbranch(ok, is_scalar, fail)          # (an unused type word is NULL)
        b.position_at_end(is_scalar)
        fake_obj = b.gep(fake, [b.mul(i, c64(FAKE_BYTES))])
        value_off = b.load(b.bitcast(field("value_off"), i64p))
        b.store(b.gep(obj, [value_off]), b.bitcast(b.gep(fake_obj, [data_off]), I8PP))
        b.branch(store)

        b.position_at_end(store)
        val = b.phi(I8P, "slot_value")
        val.add_incoming(obj, array_done)
        val.add_incoming(fake_obj, is_scalar)
        for name in ("slot", "out_slot"):   # its own slot; the output updating it
            slot = b.load(b.bitcast(field(name), i64p))
            write, skip = fn.append_basic_block("write"), fn.append_basic_block("written")
            b.cbranch(b.icmp_signed(">=", slot, c64(0)), write, skip)
            b.position_at_end(write)
            b.store(val, e.word(table, slot))
            b.branch(skip)
            b.position_at_end(skip)
    batch = b.load(bvar)
    return b.select(b.icmp_signed("<", batch, c64(0)), c64(0), batch)


def check_labels(e: _Emitter, inobj, n, fail):
    """Every label array among the first ``n`` input objects (a record with a nonzero
    ``label_bytes``: 4 or 8) holds values ``label_low <= v < label_low + label_limit``
    only; else ``fail`` (the Python path, which raises naming the input).  One unsigned
    compare per value: ``v - label_low`` below 0 is a huge unsigned one.  The objects were
    checked before (exact ndarrays of the record's rank, dims and integer dtype,
    C-contiguous)."""
    b, fn = e.b, e.fn
    i64p, i32p = I64.as_pointer(), I32.as_pointer()
    recs = b.bitcast(e.ptr("inputs"), I8PP)
    nd_off, data_off, dims_off = e.int("nd_off"), e.int("data_off"), e.int("dims_off")
    count_var = e.alloca(I64, name="labels.count")
    with e.each(n, "lab") as (i, next_in):
        rec = b.gep(recs, [b.mul(i, c64(REC))])
        def field(name, rec=rec):
            return b.load(b.bitcast(e.word(rec, REC_FIELDS.index(name)), i64p))
        elem = field("label_bytes")
        has = fn.append_basic_block("labels")
        b.cbranch(b.icmp_unsigned("==", elem, c64(0)), next_in, has)
        b.position_at_end(has)
        limit, low = field("label_limit"), field("label_low")
        obj = b.load(e.word(inobj, i))
        nd = b.sext(e.at(obj, nd_off, I32), I64)
        dims = e.at(obj, dims_off, i64p)
        b.store(c64(1), count_var)
        with e.each(nd, "labd") as (d, _):
            b.store(b.mul(b.load(count_var), b.load(b.gep(dims, [d]))), count_var)
        count = b.load(count_var)
        data = e.at(obj, data_off, I8P)
        wide, narrow = fn.append_basic_block("labels64"), fn.append_basic_block("labels32")
        b.cbranch(b.icmp_unsigned("==", elem, c64(8)), wide, narrow)
        b.position_at_end(wide)
        with e.each(count, "l64") as (k, nxt):
            v = b.sub(b.load(b.gep(b.bitcast(data, i64p), [k])), low)
            b.cbranch(b.icmp_unsigned(">=", v, limit), fail, nxt)
        b.branch(next_in)
        b.position_at_end(narrow)
        with e.each(count, "l32") as (k, nxt):
            v = b.sub(b.sext(b.load(b.gep(b.bitcast(data, i32p), [k])), I64), low)
            b.cbranch(b.icmp_unsigned(">=", v, limit), fail, nxt)


def release_fn(module: ir.Module) -> ir.Function:
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


def count_keywords(e, blk, nargs, kw, size):
    """Step 1 for either entry: the number of keywords (0 when ``kw``, the kwnames tuple or
    the kwargs dict, is NULL; else ``size()``); no positional arguments and as many
    keywords as inputs continue at a new block, anything else goes to the fallback."""
    b = e.b
    start = b.block
    some, count, go = (e.fn.append_basic_block(n) for n in ("kw_some", "count", "match"))
    b.cbranch(b.icmp_unsigned("!=", kw, ir.Constant(I8P, None)), some, count)
    b.position_at_end(some)
    nkw_some = size()
    b.branch(count)
    b.position_at_end(count)
    nkw = b.phi(I64, "nkw")
    nkw.add_incoming(c64(0), start)
    nkw.add_incoming(nkw_some, some)
    ok = b.and_(b.icmp_signed("==", nargs, c64(0)), b.icmp_signed("==", nkw, e.int("n_in")))
    b.cbranch(ok, go, blk["fallback"])
    b.position_at_end(go)
    return nkw
