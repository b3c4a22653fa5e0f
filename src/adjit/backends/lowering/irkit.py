"""Small llvmlite.ir helpers shared by the generated kernels (GEP addressing, loops, vectors).

Addresses are always GEPs (LLVM 22 can miscompile inttoptr/ptrtoint arithmetic).
"""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

I32, I64 = ir.IntType(32), ir.IntType(64)

def c64(v):
    return ir.Constant(I64, v)


def c32(v):
    return ir.Constant(I32, v)


@contextmanager
def loop(b, start, stop, step, name):
    """``for (i = start; i < stop; i += step)`` with the test at the top; yields i."""
    start, stop, step = (c64(x) if isinstance(x, int) else x for x in (start, stop, step))
    pre = b.block
    head, body, done = (b.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)
    yield i
    i.add_incoming(b.add(i, step), b.block)
    b.branch(head)
    b.position_at_end(done)


def imin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def imax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def at(b, ptr, *offsets):
    """GEP ptr + sum(offsets) (element units)."""
    for off in offsets:
        ptr = b.gep(ptr, [c64(off) if isinstance(off, int) else off])
    return ptr


def vload(b, ptr, vt, align):
    return b.load(b.bitcast(ptr, vt.as_pointer()), align=align)


def vstore(b, val, ptr, align):
    b.store(val, b.bitcast(ptr, val.type.as_pointer()), align=align)


def function(module, name, ret, args, names, noalias=()):
    """An internal nounwind function with named args; returns (fn, builder at entry)."""
    fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    for i, (a, n) in enumerate(zip(fn.args, names)):
        a.name = n
        if i in noalias:
            a.add_attribute("noalias")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def declare(module, name, fnty):
    """Declare an external/intrinsic function once per module."""
    g = module.globals.get(name)
    return g if g is not None else ir.Function(module, fnty, name=name)


# --- several llvmlite.ir modules as the texts of fewer LLVM modules -------------------------
# A compiled function is lowered into many small ir.Modules (the entry, one per kernel) and
# compiled as a few LLVM modules in parallel (see codegen.Lowering.lower).  Printing with
# llvmlite.ir is slow, so every global is printed once, and globals that several small
# modules share by name (math functions, intrinsic and runtime declarations) once per
# lowering: equal names always stand for equal text there.

def module_pieces(module: ir.Module, memo: dict) -> list[tuple[str, bool, str]]:
    """``(name, is_definition, text)`` for each global of ``module``, texts memoized in
    ``memo`` by (name, is_definition)."""
    out = []
    for name, gv in module.globals.items():
        defn = (not gv.is_declaration if isinstance(gv, ir.Function)
                else getattr(gv, "initializer", True) is not None)   # (external globals)
        text = memo.get((name, defn))
        if text is None:
            text = memo[(name, defn)] = str(gv)
        out.append((name, defn, text))
    return out


def module_text(pieces: list[list[tuple[str, bool, str]]], name: str = "adjit") -> str:
    """One module's text from the pieces of several: each name once, and a definition
    replaces a declaration of the same name (the entry declares the kernels it calls)."""
    chosen: dict[str, tuple[bool, str]] = {}
    for group in pieces:
        for gname, defn, text in group:
            have = chosen.get(gname)
            if have is None or (defn and not have[0]):
                chosen[gname] = (defn, text)
    head = [f'; ModuleID = "{name}"', 'target triple = ""', 'target datalayout = ""', ""]
    return "\n".join(head + [text for _, text in chosen.values()]) + "\n"


def balance(sizes: list[int], n: int) -> list[list[int]]:
    """Indices of ``sizes`` in ``n`` groups of similar total (largest first, each to the
    lightest group); groups keep the original order and none is empty."""
    groups: list[list[int]] = [[] for _ in range(min(n, len(sizes)))]
    load = [0] * len(groups)
    for k in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        g = load.index(min(load))
        groups[g].append(k)
        load[g] += sizes[k]
    return [sorted(g) for g in groups]
