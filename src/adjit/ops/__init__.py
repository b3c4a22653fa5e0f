"""Primitive ops (declared once each in the registry) and composite functions."""
from . import elementwise, fused, gathers, moves, reductions, structural  # noqa: F401  (registers the ops)
from .registry import REGISTRY, Op, get_op, make

__all__ = ["REGISTRY", "Op", "get_op", "make"]
