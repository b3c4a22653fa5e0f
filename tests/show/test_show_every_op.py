"""Every differentiable op (from the registry) shows in every form, and a worked example's
numbers are the compiled gradient's; the module docstrings' examples run too."""
from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import adjit as aj
from adjit.ops import REGISTRY
from adjit.ops.registry import make
from adjit.show import equations, name_nodes, trace
from adjit.show.dot import dot
from adjit.show.report import report

OPS = sorted(name for name, spec in REGISTRY.items()
             if spec.elementwise and spec.differentiable and name != "where")


@pytest.mark.parametrize("op", OPS)
def test_op_shows_in_every_form_and_traces_its_gradient(op):
    spec = REGISTRY[op]
    lo, hi = spec.domain
    xs = [aj.input(f"x{k}", (3,)) for k in range(spec.arity)]
    y = make(op, xs)
    loss = aj.sum(y * y)
    grads = aj.grad(loss, xs)
    name_nodes({"y": y, "loss": loss})
    f = aj.compile([loss] + grads, backend="interp")
    text = equations(f, "both")
    for k in range(spec.arity):      # every gradient has its line, in every form
        assert f"x̄{k} = " in " ".join(text.unicode.split())
        assert rf"\bar{{x}}_{{{k}}} &= " in text.latex
        assert rf"$\bar{{x}}_{{{k}}} = " in text.markdown
    assert dot(f).startswith("digraph") and dot(f, "traced").startswith("digraph")
    assert "fuse" in report(f)
    rng = np.random.default_rng(len(op))
    values = {x.name: rng.uniform(lo, hi, 3) for x in xs}
    t = trace(f, values)
    want = f(**values)
    for k, x in enumerate(xs):
        np.testing.assert_allclose(t.value(f"x̄{k}"), want[1 + k], rtol=1e-12, atol=1e-15)


def test_structural_ops_and_a_hessian_vector_product_show():
    x = aj.input("x", (None, 2, 3))
    W = aj.param("W", (3, 3))
    v = aj.input("v", (3, 3))
    h = aj.relu(aj.max(x, axis=1) @ W)
    loss = aj.mean(aj.logsumexp(aj.transpose(aj.reshape(h, (None, 3, 1)), (0, 2, 1)), axis=-1))
    hvp = aj.grad(aj.sum(aj.grad(loss, W) * v), W)
    name_nodes({"h": h, "loss": loss, "hvp": hvp})
    f = aj.compile([loss, hvp], backend="interp")
    text = equations(f, "both")
    flat = " ".join(text.unicode.split())
    # relu's mask reads h, so the product before it is not kept (nor named)
    assert "h = relu((max_axis1 x) W)" in flat
    # a transpose of the last two axes is a (batched) ᵀ
    assert "v1 = max_axis2 hᵀ" in flat and "hvp = (max_axis1 x)ᵀ where([h > 0], h̄, 0)" in flat
    assert text.latex.count("{") == text.latex.count("}")
    assert dot(f).startswith("digraph")
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((4, 2, 3)), "W": rng.standard_normal((3, 3)),
              "v": rng.standard_normal((3, 3))}
    np.testing.assert_allclose(trace(f, values).value("hvp"), f(**values)[1], rtol=1e-12)


@pytest.mark.parametrize("module", ["equations", "modelfile", "report", "tidy", "trace"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"adjit.show.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
