"""``aj.compile(..., check_nans=True)``: name the node where a NaN or inf first appears.

After each call, the function's float outputs are checked.  When one holds NaN or inf,
the call is replayed in the interpreter node by node (each op's numpy reference; no
second implementation of any op) on the traced graph, whose nodes carry the user's names.
From the non-finite output the search walks back through non-finite operands to the
node that *produces* non-finite values from finite operands (or to the input that
brought them in).  Where several operands are non-finite, it follows the one whose
values matter: the operand that, replaced by finite numbers, makes fewer output
elements non-finite (so ``where(c, log(x), 0)`` does not blame a discarded ``log``).

If the traced graph gives finite outputs, the optimized graph (the last stage, what the
backend lowered) is searched instead; if that is finite too, the error says that only
the compiled code produced the values.

>>> import adjit as aj, numpy as np
>>> x = aj.input("x", (3,))
>>> f = aj.compile(aj.sum(aj.log(x)), backend="interp", check_nans=True)
>>> try:
...     f(x=np.array([1.0, -1.0, 2.0]))
... except aj.NonFiniteError as e:
...     print(e.node.op, e.index)
log (1,)
"""
from __future__ import annotations

import numpy as np

from .backends.protocol import Runner
from .ops.registry import Env
from .ir import AdjitError, Graph, Node, label, shape_str
from .ops.registry import get_op


class NonFiniteError(AdjitError, FloatingPointError):
    """An output of a function compiled with ``check_nans=True`` is NaN or infinite.

    Attributes: ``output`` (index of the first non-finite output), ``node`` (the node
    that first produced non-finite values, or the input that brought them in), ``stage``
    (the graph it was found in), ``index`` (its first non-finite element), ``nan`` and
    ``inf`` (how many of its elements are NaN / infinite).
    """

    def __init__(self, message, output=None, node=None, stage=None, index=None, nan=0, inf=0):
        super().__init__(message)
        self.output, self.node, self.stage = output, node, stage
        self.index, self.nan, self.inf = index, nan, inf


def node_values(graph: Graph, values: dict, batch: int | None) -> dict[int, np.ndarray]:
    """Every node's value in ``graph`` (by node id), computed by the interpreter."""
    env = Env(values, batch)
    out: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for n in graph.order():
            out[n.id] = np.asarray(get_op(n.op).numpy([out[i.id] for i in n.inputs], n, env))
    return out


def _bad(a: np.ndarray) -> np.ndarray | None:
    """Mask of non-finite elements of a float array (None for other dtypes)."""
    a = np.asarray(a)
    return ~np.isfinite(a) if a.dtype.kind == "f" else None


def _n_bad(a) -> int:
    m = _bad(a)
    return 0 if m is None else int(np.count_nonzero(m))


class NanCheck(Runner):
    """Wraps a backend runner: after each call, a non-finite float output (or in-place
    update) raises :class:`NonFiniteError` naming the node that produced it.

    ``in_place`` names the inputs the runner itself overwrites (``updates=``); their old
    values are kept for the replay, and their new values are checked as the outputs
    after the returned ones.  Other attributes are the runner's (``llvm_ir``, ...).
    """

    # every call must pass through the check: no native fast path, no bound-call route
    # around it (Runner's defaults offer neither)

    def __init__(self, runner, stages: list[Graph], in_place=()):
        self.runner, self.in_place = runner, list(in_place)
        self.views = runner.views
        self.stages = [stages[0]] if len(stages) == 1 else [stages[0], stages[-1]]

    def __call__(self, values: dict, batch: int | None) -> list:
        before = {name: values[name].copy() for name in self.in_place}
        results = self.runner(values, batch)
        checked = list(results) + [values[name] for name in self.in_place]
        for k, r in enumerate(checked):
            if r.dtype.kind == "f" and not np.isfinite(r).all():
                raise self.explain({**values, **before}, batch, k, r)
        return results

    def __getattr__(self, name):
        if name in self.__dict__.get("views", ()):
            return getattr(self.__dict__["runner"], name)
        raise AttributeError(name)

    def fastcall_reason(self) -> str:
        return "check_nans=True: every call is checked in Python"

    def explain(self, values: dict, batch: int | None, k: int, result) -> NonFiniteError:
        counts = f"{_describe_counts(result)}"
        for graph in self.stages:
            vals = node_values(graph, values, batch)
            out = graph.outputs[k]
            if _n_bad(vals[out.id]) == 0:
                continue
            node = _origin(out, vals, Env(values, batch))
            v = vals[node.id]
            mask = _bad(v)
            index = tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()
            nan, inf = int(np.count_nonzero(np.isnan(v))), int(np.count_nonzero(np.isinf(v)))
            listing = {n.id: j for j, n in enumerate(graph.order())}
            if node.op in ("input", "param"):
                what = (f"{node.op} {node.name!r} {node.dtype}{shape_str(v.shape)} was given "
                        f"{nan} NaN and {inf} inf values (first at index {index})")
            else:
                operands = ", ".join(label(i) for i in node.inputs)
                what = (f"node %{listing[node.id]} in the {graph.stage!r} graph, {node.op}"
                        f"({operands}){_named(node)} {node.dtype}{shape_str(v.shape)}, "
                        f"produced {nan} NaN and {inf} inf values from finite operands "
                        f"(first at index {index})")
            return NonFiniteError(f"output {k} ({label(graph.outputs[k])}) holds {counts}: {what}",
                                  k, node, graph.stage, index, nan, inf)
        return NonFiniteError(f"output {k} holds {counts}, but the interpreter computes it "
                              "finite at every stage: only the compiled code produced them", k)


def _named(node: Node) -> str:
    return f" named {node.name!r}" if node.name else ""


def _describe_counts(a) -> str:
    a = np.asarray(a)
    return f"{int(np.count_nonzero(np.isnan(a)))} NaN and {int(np.count_nonzero(np.isinf(a)))} inf"


def _origin(node: Node, vals: dict, env: Env) -> Node:
    """Walk back from a non-finite node to the one producing the non-finite values."""
    while True:
        bad = [i for i in node.inputs if _n_bad(vals[i.id])]
        if not bad:
            return node
        found = _culprit(node, bad, vals, env)
        node = bad[0] if found is None else found


def _culprit(node: Node, bad: list[Node], vals: dict, env: Env) -> Node | None:
    """The first non-finite operand whose values, made finite, shrink the non-finite output."""
    if len(bad) == 1:
        return bad[0]
    fn = get_op(node.op).numpy
    before = _n_bad(vals[node.id])
    for cand in bad:
        args = [np.nan_to_num(vals[i.id], nan=1.0, posinf=1.0, neginf=-1.0) if i is cand
                else vals[i.id] for i in node.inputs]
        with np.errstate(all="ignore"):
            after = _n_bad(fn(args, node, env))
        if after < before:
            return cand
    return None
