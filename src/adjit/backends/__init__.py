"""Backends turn a pipeline-processed Graph into a function of bound arrays.

A backend module provides ``build(graph, **options) -> runner`` where
``runner(values: dict[str, ndarray], batch: int | None) -> list[ndarray]``.
Arguments reach a runner already validated by :mod:`adjit.binding`.
"""
from __future__ import annotations

import importlib

BACKENDS = {"interp": "adjit.backends.interp", "llvm": "adjit.backends.llvm"}
BACKENDS["ptx"] = "adjit.backends.ptx"   # CUDA kernels (PTX); runs where a GPU is


def get_backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
