"""The numpy interpreter: the oracle every other backend is tested against.

It runs each node's numpy reference in topological order.  It is also the
"interpreted" side of compiled-vs-interpreted benchmarks.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ops.registry import Env, get_op  # noqa: F401  (Env: what a reference reads)
from .protocol import Backend, Runner


class Interpreted(Runner):
    """Evaluates a graph with numpy, node by node."""

    def __init__(self, graph: Graph):
        index = {n.id: k for k, n in enumerate(graph.order())}
        self.graph = graph
        self._plan = [(get_op(n.op).numpy, n, [index[i.id] for i in n.inputs])
                      for n in graph.order()]
        self._outputs = [index[o.id] for o in graph.outputs]

    def __call__(self, values: dict, batch: int | None) -> list[np.ndarray]:
        env = Env(values, batch)
        slots: list = [None] * len(self._plan)
        with np.errstate(all="ignore"):  # IEEE semantics: inf and nan propagate
            for k, (fn, node, args) in enumerate(self._plan):
                slots[k] = fn([slots[a] for a in args], node, env)
        # results never alias the caller's inputs or each other
        return [np.array(slots[k], dtype=self.graph.outputs[j].dtype, copy=True, order="C")
                for j, k in enumerate(self._outputs)]


def build(graph: Graph, **options) -> Interpreted:
    """A runner evaluating ``graph`` with numpy."""
    return Interpreted(graph)


BACKEND = Backend("interp", build)
