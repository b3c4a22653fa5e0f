"""The pass pipeline: pure Graph -> Graph functions, run in one named order.

Dead-code elimination is structural: a Graph is the set of ancestors of its outputs,
so every pass's result is free of dead nodes (the report's node counts show what each
pass removed).
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..ir import Graph
from ..ops.registry import get_op
from .cse import cse
from .expand import expand, needs_expand
from .fold import fold
from .fuse import fuse

Pass = Callable[[Graph], Graph]

#: The default pipeline, in order.  Backends that lower elementwise regions need "fuse" last;
#: "expand" (ops computed from other ops) runs first so the later passes see what they compute.
PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("expand", expand),
    ("fold", fold),
    ("cse", cse),
    ("fold-again", fold),   # CSE exposes new identities (e.g. transpose∘transpose)
    ("fuse", fuse),
)


def verify(graph: Graph, before: Graph | None = None) -> None:
    """Re-run every node's shape/dtype rule: a pass must never change a node's type.
    Nodes also in ``before`` (the pass kept them: nodes are immutable) are not checked
    again."""
    kept = {n.id for n in before.order()} if before is not None else set()
    for n in graph.order():
        if n.id in kept:
            continue
        t = get_op(n.op).infer(n.inputs, dict(n.attrs))
        if t != n.type:
            raise AssertionError(f"pass {graph.stage}: node {n!r} has type {n.type}, rule says {t}")


def run_pipeline(graph: Graph, passes: Sequence[tuple[str, Pass]] = PIPELINE) -> list[Graph]:
    """All stages: the given graph first, then each pass's output (named by the pass)."""
    stages = [graph]
    for name, fn in passes:
        g = fn(stages[-1])
        g.stage = name
        verify(g, stages[-1])
        stages.append(g)
    return stages


__all__ = ["PIPELINE", "run_pipeline", "verify", "cse", "expand", "fold", "fuse",
           "needs_expand"]
