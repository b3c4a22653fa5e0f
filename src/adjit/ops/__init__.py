"""Primitive ops (declared once each in the registry) and composite functions."""
from . import (contract, elementwise, elementwise_more, fused, gathers, moves, random,  # noqa: F401
               reductions, structural)  # (declaring registers the ops)
from .registry import REGISTRY, Op, get_op, make

__all__ = ["REGISTRY", "Op", "get_op", "make"]
