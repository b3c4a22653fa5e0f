"""Backends turn a pipeline-processed Graph into a function of bound arrays.

A backend package declares ``BACKEND`` (:class:`.protocol.Backend`): its ``build(graph,
**options)`` returns a :class:`.protocol.Runner`, called as ``runner(values, batch)`` with
arguments already validated by :mod:`adjit.binding`.
"""
from __future__ import annotations

import importlib

BACKENDS = {"interp": "adjit.backends.interp", "llvm": "adjit.backends.llvm"}
BACKENDS["ptx"] = "adjit.backends.ptx"   # CUDA kernels (PTX); runs where a GPU is


def get_backend(name: str):
    """The :class:`.protocol.Backend` named ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name]).BACKEND
