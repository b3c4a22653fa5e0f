"""The compiled-function cache: from the traced graph straight to machine code.

The object-code cache of :mod:`.target` is keyed by LLVM IR, so a hit still runs the pass
pipeline and the lowering to get that IR (60-300 ms on the reference workloads).  This
cache sits in front of it: its key is the *traced* graph's :func:`~adjit.ir.fingerprint`
plus everything else that decides the generated code -- the source of this adjit
installation, the sympy and llvmlite/LLVM versions, the target CPU (name and features:
the host's, or the one ``cpu=`` / ``$ADJIT_CPU`` names) and the build options --
and an entry holds the lowered graph (:func:`~adjit.ir.to_records`, pickled) and the key of
the object-code entry.  A hit rebuilds the lowered graph, plans it and loads the object
code: no sympy, no LLVM passes.

Entries use the object cache's file format (:mod:`.diskcache`: magic, header with sha256
of every body, atomic rename) with their own suffix.  The payload is a pickle, which can
run code when loaded: it is only ever read from the user-only cache directory that already
holds the object code this process runs, and only after its hash checked out.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import pickle
from pathlib import Path

import sympy

from ...ir import Graph, fingerprint, from_records, to_records
from ..lowering.target.diskcache import (cache_switch, enforce_limit, is_entry, read_entry, usable_cache_dir,
                        write_entry)
from ..lowering.target import compile_ir, host_info, load_cached, target_cpu, target_spec

SUFFIX = ".adjitfn"           # a compiled function: lowered graph + object-code key
SUPPORT_SUFFIX = ".adjitlib"  # a support module by name: object-code key
_FORMAT = "adjit-fn-2"


@functools.cache
def source_digest() -> str:
    """A digest of this adjit installation's Python files: path, size and modification
    time of each (a change to any of them may change the generated code, so it changes
    every key; stat-only, so a fresh process pays ~1 ms rather than reading them all)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def enabled(cache: bool | None) -> bool:
    return cache_switch(cache) is None


def _digest(*parts: str, cpu: str | None = None) -> str:
    info = host_info()
    h = hashlib.sha256()
    for part in (_FORMAT, source_digest(), sympy.__version__, info["llvmlite_version"],
                 info["llvm_version"], info["triple"], target_cpu(cpu), *target_spec(cpu)
                 ) + parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def key(traced: Graph, options: dict, cpu: str | None = None) -> str:
    """The entry key of ``traced`` compiled with ``options`` for ``cpu`` (None: the
    ``$ADJIT_CPU`` / host default)."""
    return _digest(repr(sorted(options.items())), fingerprint(traced), cpu=cpu)


def _path(k: str, suffix: str) -> str | None:
    d, _ = usable_cache_dir()
    return None if d is None else os.path.join(d, k + suffix)


def _read(k: str, suffix: str = SUFFIX) -> tuple[bytes, str, str] | None:
    """(payload, text, path) of entry ``k``; None when absent or bad (a bad one is removed)."""
    path = _path(k, suffix)
    if path is None or not is_entry(path):
        return None
    try:
        got = read_entry(path, k)
    except OSError:
        got = None
    if isinstance(got, tuple):
        return got[0], got[1], path
    try:
        os.unlink(path)
    except OSError:
        pass
    return None


def _write(k: str, payload: bytes, text: str, suffix: str = SUFFIX) -> None:
    """Store an entry; a cache that cannot be written is skipped (the next one misses)."""
    path = _path(k, suffix)
    if path is not None:
        try:
            write_entry(path, k, payload, text)
            enforce_limit(os.path.dirname(path), keep=path)
        except OSError:
            pass


def load(k: str) -> tuple[Graph, str, str] | None:
    """(lowered graph, text stored with it, entry path) of entry ``k``, or None."""
    got = _read(k)
    if got is None:
        return None
    try:
        return from_records(pickle.loads(got[0])), got[1], got[2]
    except Exception:  # noqa: BLE001 - an entry this adjit cannot rebuild is a miss
        return None


def store(k: str, graph: Graph, text: str) -> None:
    """Remember that traced key ``k`` lowers to ``graph`` (``text``: what to load with it)."""
    try:
        payload = pickle.dumps(to_records(graph), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return
    _write(k, payload, text)


def support_symbols(ir_text: str) -> list[str]:
    """The adjit support functions (GEMM library, thread pool) an IR module declares."""
    return sorted(set(re.findall(r'^declare [^@]*@"?(adjit_\w+)', ir_text, re.M)))


def bind_support(names: list[str], cpu: str = "host") -> bool:
    """Load the process-wide code that a cached module (compiled for ``cpu``) calls before
    its object code is linked (MCJIT would otherwise link the call to address 0): the
    GEMM library of its CPU, the pool; False for a name this adjit does not provide."""
    from . import library, pool
    loaders = {}
    for name in names:
        if name in pool.SIGNATURES:
            loaders[name] = pool.ensure_pool
            continue
        got = library.library_for_symbol(name, (cpu,))
        if got is None:
            return False
        loaders[name] = functools.partial(library.ensure_library, *got)
    for name in names:
        loaders[name]()
    return True


def link_text(jit) -> str:
    """What an entry stores beside its payload: the object-code key and the support."""
    return json.dumps({"object": jit.key, "support": support_symbols(jit.llvm_ir),
                       "cpu": jit.cpu})


def load_linked(text: str, name: str, opt_level: int, llvm_ir):
    """The module a :func:`link_text` names, its support bound first; None if unusable."""
    try:
        meta = json.loads(text)
        object_key, support = str(meta["object"]), list(meta["support"])
        cpu = str(meta["cpu"])
    except (ValueError, KeyError, TypeError):
        return None
    if not bind_support(support, cpu):
        return None
    try:
        return load_cached(object_key, name, opt_level, llvm_ir=llvm_ir, cpu=cpu)
    except ValueError:      # a CPU name this LLVM no longer knows
        return None


def compile_once(label: str, make_ir, opt_level: int, cache: bool | None = None,
                 cpu: str | None = None):
    """Compile IR that depends only on adjit's source and the target CPU (the GEMM
    libraries, the thread pool) for ``cpu`` (None: ``$ADJIT_CPU`` or the host): a later
    process finds the object code by ``label`` without emitting the IR again
    (``make_ir()`` runs only on a miss, or when someone reads ``llvm_ir``).  The label
    must name every setting the IR depends on beyond the source and the CPU (e.g.
    pinning)."""
    k = _digest("support", label, f"O{opt_level}", cpu=cpu) if enabled(cache) else None
    got = None if k is None else _read(k, SUPPORT_SUFFIX)
    if got is not None:
        jit = load_linked(got[1], label, opt_level, make_ir)
        if jit is not None:
            return jit
    jit = compile_ir(make_ir(), opt_level=opt_level, cache=cache, name=label, cpu=cpu)
    if k is not None and jit.key is not None:
        _write(k, b"", link_text(jit), SUPPORT_SUFFIX)
    return jit
