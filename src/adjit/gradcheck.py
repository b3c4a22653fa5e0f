"""``aj.check_grads``: adjit's gradients against finite differences, in float64.

The model is first widened to float64 (every float32 leaf becomes float64), so a
float32 model is checked without float32 rounding noise.  Derivatives are two-sided
differences refined by one Richardson step, ((4·D(h/2) − D(h)) / 3 with
D(h) = (f(x+h) − f(x−h)) / 2h), accurate to O(h⁴).

The error of an element is |a − b| / (|a| + |b|); where both are tiny (below the
floor) the difference is compared to the floor instead, so exact zeros pass.  The floor
is ``floor`` or, when larger, 1e7·eps·|y|/h: the rounding noise of a difference
quotient grows with the loss value, so a zero gradient of a loss near 1 is not failed
for noise of ~1e-12.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autodiff import grad
from .compiled import compile
from .ir import AdjitError, Graph, Node, TensorType, label
from .ops.registry import make
from .passes.rewrite import rewrite


class GradientCheckError(AdjitError, AssertionError):
    """Analytic and numeric gradients disagree beyond the tolerance."""


@dataclass
class GradCheckReport:
    max_error: float
    variable: str
    index: tuple
    analytic: float
    numeric: float
    rtol: float
    checked: int

    @property
    def ok(self) -> bool:
        return self.max_error <= self.rtol

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"gradient check {verdict}: {self.checked} elements, worst relative error "
                f"{self.max_error:.3g} (rtol {self.rtol:g}) at {self.variable}{list(self.index)}: "
                f"analytic {self.analytic:.12g}, numeric {self.numeric:.12g}")


def widen(outputs: list[Node]) -> list[Node]:
    """The same graph computed in float64."""
    def rule(node, inputs):
        if node.op in ("input", "param") and node.dtype == "float32":
            t = TensorType(node.shape, "float64")
            return make(node.op, (), {"name": node.name, "type": t}, name=node.name)
        if node.op == "const" and node.dtype == "float32":
            from .frontend import const
            return const(node.attr("value").array.astype("float64"))
        if node.op == "cast" and node.dtype == "float32":
            return inputs[0] if inputs[0].dtype == "float64" else make("cast", inputs, {"dtype": "float64"})
        if node.op in ("batch_size", "one_hot") and node.dtype == "float32":
            return make(node.op, inputs, {**dict(node.attrs), "dtype": "float64"})
        return None
    return list(rewrite(Graph(outputs), rule, "float64").outputs)


def check_grads(y: Node, wrt, values: dict, *, rtol: float = 1e-6, h: float = 1e-4,
                floor: float = 1e-7, elements: int = 32, seed: int = 0,
                backend: str = "interp", raise_on_failure: bool = True) -> GradCheckReport:
    """Compare ``grad(y, wrt)`` with finite differences at ``values`` (dict by input name).

    Up to ``elements`` entries of each variable (sampled with ``seed``; all of them when
    there are fewer) are checked one by one, plus one random direction across all
    entries of each variable.  Raises :class:`GradientCheckError` when the worst error
    exceeds ``rtol`` (unless ``raise_on_failure=False``); returns the report.
    """
    variables = [wrt] if isinstance(wrt, Node) else list(wrt)
    for v in variables:
        if v.op not in ("input", "param"):
            raise TypeError(f"check_grads: {label(v)} is not an input or parameter")
    wide = widen([y] + variables)
    y64, vars64 = wide[0], wide[1:]
    f_loss = compile(y64, backend=backend)
    f_grad = compile(grad(y64, vars64), backend=backend)
    base = {k: np.array(v, dtype="float64" if np.asarray(v).dtype.kind == "f" else None)
            for k, v in values.items()}
    analytic = [np.asarray(a, dtype="float64") for a in f_grad(**base)]

    def loss_at(name, delta):
        args = dict(base)
        args[name] = base[name] + delta
        return float(f_loss(**args))

    def numeric(name, direction):
        d = lambda s: (loss_at(name, s * direction) - loss_at(name, -s * direction)) / (2 * s)
        return (4 * d(h / 2) - d(h)) / 3

    # a difference quotient of f carries rounding noise ~ eps·|f|/h, which no gradient
    # below ~1e7 times that can be told apart from: compare those absolutely
    floor = max(floor, 1e7 * np.finfo(np.float64).eps * abs(float(f_loss(**base))) / h)
    rng = np.random.default_rng(seed)
    worst = GradCheckReport(0.0, "", (), 0.0, 0.0, rtol, 0)
    for v, a in zip(variables, analytic):
        x0 = base[v.name]
        flat = np.arange(x0.size)
        picks = flat if x0.size <= elements else rng.choice(flat, elements, replace=False)
        probes = []
        for p in picks:
            e = np.zeros_like(x0)
            e.reshape(-1)[p] = 1.0
            probes.append((np.unravel_index(p, x0.shape), e, a.reshape(-1)[p]))
        u = rng.standard_normal(x0.shape)
        probes.append((("direction",), u, float(np.sum(a * u))))
        for index, direction, an in probes:
            nu = numeric(v.name, direction)
            err = abs(an - nu) / max(abs(an) + abs(nu), floor)
            worst.checked += 1
            if err >= worst.max_error:
                worst.max_error, worst.variable, worst.index = err, v.name, tuple(
                    int(i) if not isinstance(i, str) else i for i in index)
                worst.analytic, worst.numeric = float(an), float(nu)
    if raise_on_failure and not worst.ok:
        raise GradientCheckError(str(worst))
    return worst
