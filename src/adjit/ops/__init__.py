"""Primitive ops (declared once each in the registry) and composite functions."""
from . import elementwise, elementwise_more, fused, structural  # noqa: F401  (declaring registers the ops)
from .registry import REGISTRY, Op, get_op, make

__all__ = ["REGISTRY", "Op", "get_op", "make"]
