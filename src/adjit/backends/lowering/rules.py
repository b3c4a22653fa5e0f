"""A backend's rule table: every registered op has a kernel builder, needs no kernel, or is
refused with a reason (``tests/core/test_rule_tables.py`` checks each backend's table).

``kernels`` maps an op to its builder; map-shaped ops (a rule in :mod:`.elements`) share
the backend's ``map_builder``; leaves and views need no kernel (the plan handles them).
"""
from __future__ import annotations

from typing import Callable

from ...ops.registry import get_op
from .elements import map_rule


class RuleTable:
    def __init__(self, backend: str, kernels: dict[str, Callable], map_builder: Callable,
                 refused: dict[str, str] | None = None):
        self.backend, self.kernels, self.map_builder = backend, kernels, map_builder
        self.refused = dict(refused or {})

    def rule_for(self, op: str) -> Callable:
        """The kernel builder of ``op``; NotImplementedError for an op with no rule."""
        if op in self.kernels:
            return self.kernels[op]
        if map_rule(op) is not None:   # (a kept direct convolution has one)
            return self.map_builder
        if get_op(op).expand is not None:
            raise NotImplementedError(f"op {op!r} is computed from other ops: run "
                                      f"passes.expand before the {self.backend} backend")
        why = self.refused.get(op, "no rule in its table")
        raise NotImplementedError(f"the {self.backend} backend has no lowering for op "
                                  f"{op!r}: {why}")

    def coverage(self, op: str) -> str:
        """'kernel', 'no kernel' (leaves and views) or 'refused: why'."""
        spec = get_op(op)
        if spec.leaf or spec.view:
            return "no kernel"
        if spec.expand is not None:
            return "no kernel"
        if op in self.refused:
            return f"refused: {self.refused[op]}"
        self.rule_for(op)
        return "kernel"
