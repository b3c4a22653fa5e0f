"""Primitive ops (declared once each in the registry) and composite functions."""
from . import (elementwise, fused, gathers, moves, random, reductions,  # noqa: F401
               structural)  # (declaring registers the ops)
from .registry import REGISTRY, Op, get_op, make

__all__ = ["REGISTRY", "Op", "get_op", "make"]
