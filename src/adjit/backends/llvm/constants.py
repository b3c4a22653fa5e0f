"""Constants in the native code: small ones as IR text, large ones as bytes copied in.

A constant of at most :data:`INLINE_BYTES` bytes is an ``internal constant`` global in the
IR text of every module that reads it, so LLVM sees its values (and folds loads of them).
A larger one would cost seconds to print and parse as text (about 10 µs per element), so
it is an external global of its size, zero-initialized (``.bss``: no bytes in the object
code), named ``adjit_const<k>`` by its position among the plan's large constants
(:func:`large_constants`, the same order for a compile and for a cache hit), and
:func:`fill` copies the array's bytes into it once the object code is loaded, before
anything can call the entry.  So the IR -- and with it the object-code cache key and
entry -- holds only the constant's type and size: two functions differing only in a
large constant's values share object code, each engine with its own copy of the global
filled with its own values (the compiled-function cache's key covers the values, see
:func:`adjit.ir.fingerprint`).  The bytes are copied as they are: NaN payloads, -0.0 and
subnormals are kept.  The global is writable memory (LLVM must not assume it stays
zero); nothing but :func:`fill` writes it.
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir

from ...ir import Node
from ..lowering.plan import Plan

INLINE_BYTES = 256      # larger constants are copied in after loading (see module doc)
PREFIX = "adjit_const"


def const_array(node: Node) -> np.ndarray:
    """The constant's elements, flat and C-contiguous."""
    return np.ascontiguousarray(node.attr("value").array).reshape(-1)


def is_large(node: Node) -> bool:
    return const_array(node).nbytes > INLINE_BYTES


def large_constants(plan: Plan) -> list[Node]:
    """The large constants the plan stores, in graph order (their symbols' numbering)."""
    return [n for n in plan.graph.order()
            if plan.storage.get(n.id) is not None and plan.storage[n.id].kind == "const"
            and is_large(n)]


def symbol(k: int) -> str:
    return f"{PREFIX}{k}"


def large_global(module: ir.Module, T: ir.Type, n: int, k: int,
                 define: bool) -> ir.GlobalVariable:
    """``@adjit_const<k>``, ``n`` elements of ``T``: defined (zero-initialized) in the
    entry's module, declared in the others."""
    g = module.globals.get(symbol(k))
    if g is None:
        g = ir.GlobalVariable(module, ir.ArrayType(T, n), symbol(k))
        g.align = 64
        if define:
            g.initializer = ir.Constant(ir.ArrayType(T, n), None)
    return g


def inline_global(module: ir.Module, T: ir.Type, arr: np.ndarray, name: str) -> ir.GlobalVariable:
    """A small constant as an internal IR constant (one copy per module reading it)."""
    g = module.globals.get(name)
    if g is None:
        if arr.dtype == np.uint32:      # (i32 constants are written signed)
            arr = arr.view(np.int32)
        integer = isinstance(T, ir.IntType)
        data = [ir.Constant(T, int(v) if integer else float(v)) for v in arr] \
            or [ir.Constant(T, 0)]
        g = ir.GlobalVariable(module, ir.ArrayType(T, len(data)), name)
        g.initializer = ir.Constant(ir.ArrayType(T, len(data)), data)
        g.global_constant, g.linkage, g.align = True, "internal", 64
    return g


def fill(plan: Plan, jit) -> None:
    """Copy every large constant's bytes into its global in ``jit`` (a freshly compiled or
    loaded module, before its entry is called)."""
    for k, node in enumerate(large_constants(plan)):
        arr = const_array(node)
        ctypes.memmove(jit.address(symbol(k)), arr.ctypes.data, arr.nbytes)
