"""The simplification report: what each pass rewrote, node counts, and expression swell.

The last part answers "how big would this derivative be as one formula?": the size of
each output written as an expression tree, every shared value copied out again where
it is used (what symbolic differentiation without sharing produces), against the size
of the graph adjit actually builds.
"""
from __future__ import annotations

from typing import Sequence

from ..ir import Graph, Node, ancestors
from .equations import width
from .names import Naming


def tree_size(outputs: Sequence[Node]) -> int:
    """Nodes in the outputs written out as expression trees (no sharing), summed.

    A ``fused`` node counts the operations it merged.

    >>> import adjit as aj
    >>> x = aj.input("x", ())
    >>> s = aj.sin(x)
    >>> tree_size([s * s])      # mul(sin(x), sin(x)): 1 + 2 × 2
    5
    """
    memo: dict[int, int] = {}
    for n in ancestors(outputs):
        own = max(1, n.attr("members", 1)) if n.op == "fused" else 1
        memo[n.id] = own + sum(memo[i.id] for i in n.inputs)
    return sum(memo[o.id] for o in outputs)


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"{n:.3e}"


def report(compiled) -> str:
    """Each pass of ``compiled`` with the rewrites it applied (by rule name), node counts
    before and after, and the expanded expression-tree size of each output."""
    stages: list[Graph] = compiled.stages
    out = [f"simplification report ({len(stages[0].outputs)} outputs, backend "
           f"{compiled.backend})",
           f"  {'stage':<12} {'nodes':>6} {'change':>7}   rewrites",
           f"  {stages[0].stage:<12} {len(stages[0]):>6} {'':>7}   "
           + ", ".join(f"{k}×{v}" for k, v in getattr(stages[0], "rewrites", {}).items())]
    for before, after in zip(stages, stages[1:]):
        rules = getattr(after, "rewrites", {})
        applied = ", ".join(f"{k}×{v}" for k, v in rules.items()) or "no change"
        delta = len(after) - len(before)
        out.append(f"  {after.stage:<12} {len(after):>6} {delta:>+7}   {applied}"
                   .replace("+0 ", " 0 "))
    traced = stages[0]
    naming = Naming(traced)
    names = [_output_name(naming, o) for o in traced.outputs]
    sizes = [tree_size([o]) for o in traced.outputs]
    total = sum(sizes)
    out[2] = out[2].rstrip()
    out.append("as expression trees (each shared value written out again where it is used):")
    w = max(width(n) for n in names + ["total"])
    for name, size in zip(names, sizes):
        out.append(f"  {name}{' ' * (w - width(name))}  {_count(size):>12} nodes")
    ratio = total / max(1, len(traced))
    out.append(f"  {'total':<{w}}  {_count(total):>12} nodes, against {len(traced)} in the traced "
               f"graph ({ratio:.1f}×) and {len(stages[-1])} after the passes")
    return "\n".join(out)


def _output_name(naming: Naming, node: Node) -> str:
    """A gradient output is named after its variable (b̄ even where b̄ = z̄)."""
    leaves = [p for p in naming.bars.get(node.id, ()) if p.op in ("input", "param")]
    name = naming.user(leaves[0]).barred() if leaves else naming.generate(node)
    return name.unicode()
