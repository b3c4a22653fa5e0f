"""Primitive ops (declared once each in the registry) and composite functions."""
from . import (contract, conv, elementwise, elementwise_more, fused, gathers, moves,  # noqa: F401
               pooling, random, reductions, structural, unfold)  # (declaring registers the ops)
from .registry import REGISTRY, Op, get_op, make

__all__ = ["REGISTRY", "Op", "get_op", "make"]
