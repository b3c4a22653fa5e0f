"""The native entry ``void adjit_entry(i8** table, i64 batch)``: one call per step.

A plan of at most :data:`ENTRY_CHUNK` steps calls its kernels straight from the entry.  A
longer one (a graph of thousands of small steps: a long elementwise chain and its
gradient) is cut into parts of ENTRY_CHUNK steps, each a function
``adjit_entry.<k>(table, batch, counters)`` in a module of its own, which the entry calls
in order: LLVM's code generation grows faster than linearly with the size of one function
(5,336 calls in one entry: 4.2 s of codegen, against ~0.1 s for the same calls in parts),
and the parts are compiled in parallel like the kernels.  Each function loads the table
slots it uses where it first uses them (:meth:`Lowering.slot`), never all of them up
front.  ``counters`` is the profile's counter array (null without ``profile=True``).

Large constants (:mod:`.constants`) are defined here, in the entry's module, whether or
not the entry itself reads them, so :func:`.constants.fill` always finds them.
"""
from __future__ import annotations

from llvmlite import ir

from .constants import const_array, large_constants, large_global
from .profile import StepTimer

I8 = ir.IntType(8)
I64 = ir.IntType(64)
I8PP = I8.as_pointer().as_pointer()
I64P = I64.as_pointer()
ENTRY = "adjit_entry"
ENTRY_CHUNK = 128    # steps per part of a longer entry (see the module doc)


def lower_entry(lw) -> list[ir.Module]:
    """Emit the entry into ``lw.entry_module``; return the modules of its parts."""
    plan, module = lw.plan, lw.entry_module
    for k, node in enumerate(large_constants(plan)):
        large_global(module, lw.llvm_type(node.dtype), max(const_array(node).size, 1), k,
                     define=True)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8PP, I64]), name=ENTRY)
    table, batch = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    steps = list(enumerate(plan.steps))
    timer = StepTimer(module, len(steps)) if lw.profile else None
    if timer:
        timer.entry(b, batch)
    parts: list[ir.Module] = []
    if len(steps) <= ENTRY_CHUNK:
        _emit_steps(lw, b, table, batch, steps, timer)
    else:
        counters = timer.base(b) if timer else ir.Constant(I64P, None)
        fty = ir.FunctionType(ir.VoidType(), [I8PP, I64, I64P])
        for p, start in enumerate(range(0, len(steps), ENTRY_CHUNK)):
            m = ir.Module(name=f"adjit_entry{p}")
            part = ir.Function(m, fty, name=f"{ENTRY}.{p}")
            part.attributes.add("noinline")
            pb = ir.IRBuilder(part.append_basic_block("entry"))
            pt = StepTimer(m, len(steps), part.args[2]) if timer else None
            lw.module = m
            try:
                _emit_steps(lw, pb, part.args[0], part.args[1],
                            steps[start:start + ENTRY_CHUNK], pt)
            finally:
                lw.module = module
            pb.ret_void()
            parts.append(m)
            b.call(ir.Function(module, fty, name=part.name), [table, batch, counters])
    lw.begin_function(b, table, batch)
    for node, slot in plan.copies:
        lw.copy_output(b, node, slot)
    b.ret_void()
    return parts


def _emit_steps(lw, b, table, batch, steps, timer) -> None:
    lw.begin_function(b, table, batch)
    for k, node in steps:
        kernel = lw.kernel_for(node)
        if timer:
            with timer.step(b, k):
                lw.call_kernel(b, node, kernel)
        else:
            lw.call_kernel(b, node, kernel)
