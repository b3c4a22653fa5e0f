"""Passes keep results equal to the unoptimized graph, and do the rewrites they promise."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import adjit as aj
from adjit.ops.realfn import ieee_zero
from adjit.passes import PIPELINE, cse, fold, fuse, verify
from gradtools import run
from test_lecture import (logistic_model, logistic_values, mlp_model, mlp_values,
                          softmax_regression_model, softmax_regression_values)

MODELS = {
    "logistic": (logistic_model, logistic_values),
    "mlp": (mlp_model, mlp_values),
    "softmax-regression": (softmax_regression_model, softmax_regression_values),
}
SINGLE_PASSES = [[(name, fn)] for name, fn in PIPELINE] + [[("fuse", fuse), ("fold", fold)]]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("passes", [None] + SINGLE_PASSES,
                         ids=["pipeline"] + ["+".join(n for n, _ in p) for p in SINGLE_PASSES])
def test_passes_keep_results(model, passes):
    build, values = MODELS[model]
    L, _, params = build()
    outputs = [L] + aj.grad(L, list(params))
    v = values()
    reference = run(outputs, (), **v)
    got = run(outputs, passes, **v)
    for r, g in zip(reference, got):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)


def test_hvp_survives_the_pipeline():
    L, _, (W1, b1, W2, b2) = mlp_model()
    v = aj.input("v", (4, 5))
    hvp = aj.grad(aj.sum(aj.grad(L, W1) * v), W1)
    vals = {**mlp_values(), "v": np.random.default_rng(9).standard_normal((4, 5))}
    np.testing.assert_allclose(run(hvp, None, **vals), run(hvp, (), **vals), rtol=1e-12,
                               atol=1e-15)


def test_unoptimized_compile_has_only_the_traced_stage():
    L, _, params = logistic_model()
    f = aj.compile([L] + aj.grad(L, list(params)), backend="interp", passes=())
    assert [g.stage for g in f.stages] == ["traced"]
    assert "fused" not in f.graph.op_counts()


def _stage(outputs, name):
    f = aj.compile(outputs, backend="interp")
    return {g.stage: g for g in f.stages}[name], f


def test_cse_merges_duplicate_subexpressions():
    x = aj.input("x", (3,))
    a = aj.sin(x) * aj.cos(x)
    b = aj.sin(x) * aj.cos(x)        # built twice: distinct nodes, same value
    y = a + b
    traced = aj.Graph([y])
    assert traced.op_counts()["sin"] == 2 and traced.op_counts()["mul"] == 2
    merged = cse(traced)
    assert merged.op_counts()["sin"] == 1 and merged.op_counts()["mul"] == 1
    assert len(merged) == len(traced) - 3 and merged.rewrites == {"cse": 3}
    add = merged.outputs[0]
    assert add.inputs[0] is add.inputs[1]
    X = np.array([0.1, 0.7, 2.0])
    np.testing.assert_allclose(run(y, None, x=X), 2 * np.sin(X) * np.cos(X), rtol=1e-15)
    # leaves with different names are never merged
    p, q = aj.input("p", (3,)), aj.input("q", (3,))
    assert len(cse(aj.Graph([aj.exp(p) + aj.exp(q)]))) == 5


@pytest.mark.parametrize("make, rule", [
    (lambda x: x * 1.0, "x*1=x"), (lambda x: 1.0 * x, "1*x=x"), (lambda x: x + 0.0, "x+0=x"),
    (lambda x: 0.0 + x, "0+x=x"), (lambda x: x - 0.0, "x-0=x"), (lambda x: x / 1.0, "x/1=x"),
    (lambda x: x ** 1.0, "x**1=x"), (lambda x: -(-x), "--x=x"),
    (lambda x: x.T.T, "transpose∘transpose=id"),
    (lambda x: aj.reshape(aj.reshape(x, (6,)), (2, 3)), "reshape∘reshape=id"),
])
def test_fold_identities(make, rule):
    x = aj.input("x", (2, 3))
    y = make(x)
    folded = fold(aj.Graph([y]))
    assert folded.outputs[0] is x, folded.op_counts()
    assert folded.rewrites.get(rule, 0) >= 1
    X = np.arange(6.0).reshape(2, 3) - 2.5
    np.testing.assert_array_equal(run(y, None, x=X), X)


def test_fold_rewrites_to_negation_and_folds_constants():
    x = aj.input("x", (3,))
    for y, rule in ((0.0 - x, "0-x=-x"), (x * -1.0, "x*-1=-x"), (-1.0 * x, "-1*x=-x")):
        folded = fold(aj.Graph([y]))
        assert folded.outputs[0].op == "neg" and folded.outputs[0].inputs[0] is x
        assert rule in folded.rewrites
    c = aj.exp(aj.const(np.array([0.0, 1.0]))) * aj.const(np.array([2.0, 2.0])) + aj.const(
        np.array([1.0, 1.0]))
    folded = fold(aj.Graph([c]))
    assert folded.op_counts() == {"const": 1} and folded.rewrites == {"fold-constants": 3}
    np.testing.assert_allclose(folded.outputs[0].attr("value").array, [3.0, 2 * np.e + 1],
                               rtol=1e-15)


def test_fold_keeps_x_times_zero():
    # x * 0 is NaN for infinite x, so it is not an identity in IEEE arithmetic
    x = aj.input("x", (3,))
    y = x * 0.0
    assert fold(aj.Graph([y])).op_counts().get("mul") == 1
    out = run(y, [("fold", fold), ("cse", cse)], x=np.array([1.0, np.inf, -2.0]))
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 0.0


def test_report_counts_rewrites():
    x = aj.input("x", (3,))
    f = aj.compile(aj.sum(x * 1.0 + 0.0), backend="interp")
    assert "x*1=x" in f.report() and "x+0=x" in f.report()
    assert f.node_counts()["fold"] < f.node_counts()["traced"]


def _leaf_symbols(node):
    return {sp.Symbol(f"x{k}", real=True): leaf for k, leaf in enumerate(node.inputs)}


def test_fuse_sigmoid_backward():
    x = aj.param("x", (4,))
    u = aj.input("u", (4,))
    y = aj.sigmoid(x)
    gx = aj.grad(aj.sum(y * u), x)          # ḡ = u · y (1 − y)
    fused_graph, f = _stage([y, gx], "fuse")
    forward, backward = fused_graph.outputs
    assert forward.op == "fused" and backward.op == "fused"
    # the forward region is sigmoid itself: it contains exp
    (xs,) = _leaf_symbols(forward)
    assert forward.inputs == (x,)
    assert sp.simplify(forward.attr("expr") - 1 / (1 + sp.exp(-xs))) == 0
    # the backward region reads the forward output as a leaf and recomputes no exp
    e = backward.attr("expr")
    assert not e.has(sp.exp)
    leaves = _leaf_symbols(backward)
    by_leaf = {id(leaf): s for s, leaf in leaves.items()}
    assert id(forward) in by_leaf and id(u) in by_leaf and len(leaves) == 2
    s, us = by_leaf[id(forward)], by_leaf[id(u)]
    assert sp.expand(e - us * s * (1 - s)) == 0
    verify(fused_graph)
    X, U = np.array([-3.0, -0.5, 0.5, 4.0]), np.array([1.0, -2.0, 0.5, 3.0])
    sig = 1 / (1 + np.exp(-X))
    ys, gs = f(x=X, u=U)
    np.testing.assert_allclose(ys, sig, rtol=1e-15)
    np.testing.assert_allclose(gs, U * sig * (1 - sig), rtol=1e-14)


def test_fuse_tanh_and_exp_backward_use_the_forward_output():
    x = aj.param("x", (3,))
    for fn, deriv in ((aj.tanh, lambda y: 1 - y ** 2), (aj.exp, lambda y: y)):
        y = fn(x)
        g = aj.grad(aj.sum(y * y), x)          # 2 y y'
        graph, _ = _stage([y, g], "fuse")
        forward, backward = graph.outputs
        leaves = _leaf_symbols(backward)
        assert list(leaves.values()) == [forward]
        (s,) = leaves
        assert not backward.attr("expr").has(sp.exp, sp.tanh)
        assert sp.expand(backward.attr("expr") - 2 * s * deriv(s)) == 0


def test_fuse_regions_and_sympy_cancellation():
    a, b = aj.input("a", (2, 3)), aj.input("b", (3,))
    y = (a * b + a) - a * b                    # sympy cancels to a, keeping b's inf/NaN
    z = aj.exp(a) * 2.0 * 3.0
    graph, f = _stage([y, z], "fuse")
    fy, fz = graph.outputs
    assert fy.op == "fused" and fz.op == "fused"
    # a*b, shared by CSE, is its own region; the cancelled copy leaves zero_of(a*b)
    ab, = [i for i in fy.inputs if i is not a]
    leaf = {i.id: sp.Symbol(f"x{k}", real=True) for k, i in enumerate(fy.inputs)}
    assert ab.op == "fused" and set(ab.inputs) == {a, b}
    assert fy.attr("expr") == leaf[a.id] - ieee_zero(leaf[ab.id])
    assert fz.attr("expr") == 6 * sp.exp(sp.Symbol("x0", real=True)) and fz.inputs == (a,)
    assert graph.op_counts() == {"fused": 3, "input": 2}
    A, B = np.arange(6.0).reshape(2, 3) / 5, np.array([1.0, -2.0, 0.5])
    ya, za = f(a=A, b=B)
    np.testing.assert_allclose(ya, A, rtol=1e-15)
    with np.errstate(all="ignore"):            # numpy: a*inf + a - a*inf is NaN
        ya, _ = f(a=A, b=np.array([np.inf, 1.0, np.nan]))
    assert np.isnan(ya[:, [0, 2]]).all() and np.allclose(ya[:, 1], A[:, 1])
    np.testing.assert_allclose(za, 6 * np.exp(A), rtol=1e-15)


def test_fuse_reads_broadcast_leaves_and_keeps_shared_values():
    x = aj.input("x", (None, 3))
    b = aj.param("b", (3,))
    h = aj.tanh(x + b)                          # h is used twice: it must stay a value
    y = h * h + h
    graph, f = _stage(y, "fuse")
    out = graph.outputs[0]
    assert out.op == "fused"
    (hh,) = out.inputs
    assert hh.op == "fused" and set(hh.inputs) == {x, b}   # b read through broadcasting
    X, B = np.arange(12.0).reshape(4, 3) / 10, np.array([0.1, -0.2, 0.3])
    H = np.tanh(X + B)
    np.testing.assert_allclose(f(x=X, b=B), H * H + H, rtol=1e-15)


def test_fused_node_count_is_lower_for_the_mlp():
    L, _, params = mlp_model()
    f = aj.compile([L] + aj.grad(L, list(params)), backend="interp")
    counts = f.node_counts()
    assert counts["fuse"] < counts["cse"] <= counts["fold"] < counts["traced"]
    ops = f.graph.op_counts()
    # 2 forward matmuls, 3 backward (W̄2 = hᵀȳ, h̄ = ȳW2ᵀ, W̄1 = xᵀz̄; x̄ is not requested)
    assert ops["matmul"] == 5 and "sigmoid" not in ops and ops["fused"] >= 3


def test_passes_never_annotate_earlier_stages():
    """Carrying error-signal names onto replacements must not touch shared nodes."""
    import adjit as aj
    x, t = aj.input("x", (None, 3)), aj.input("t", (None, 2))
    W, b = aj.param("W", (3, 2)), aj.param("b", (2,))
    y = aj.sigmoid(x @ W + b) * 1.0 + 0.0          # identities the fold pass removes
    loss = aj.mean(aj.sum((y - t) ** 2, axis=1))
    outs = [loss, *aj.grad(loss, [W, b])]
    before = {n.id: [p.id for p in n.meta.get("bars", ())] for n in aj.Graph(outs).order()}
    f = aj.compile(outs, backend="interp")
    after = {n.id: [p.id for p in n.meta.get("bars", ())] for n in f.traced.order()}
    assert after == before
    for stage in f.stages[1:]:     # annotations given to shared nodes live on the stage
        for nid, bars in stage.extra_bars.items():
            assert nid in {n.id for n in stage.order()} and bars


# --- bool values inside fused regions (regressions found by the graph fuzzer) ---------------
BACKENDS = [("interp", {}), ("llvm", {"opt_level": 1, "cache": False})]


@pytest.mark.parametrize("backend, opts", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_fused_where_nested_in_a_comparison(backend, opts):
    x, y, z = (aj.input(k, (4,)) for k in "xyz")
    m = aj.input("m", (4,), "bool")
    out = aj.where(x > aj.where(m, y, z), x, -x)
    v = dict(x=np.array([1.0, 1.0, -1.0, 3.0]), y=np.array([0.0, 2.0, -2.0, 5.0]),
             z=np.array([2.0, 0.0, 0.0, 1.0]), m=np.array([True, True, False, False]))
    inner = np.where(v["m"], v["y"], v["z"])                   # [0, 2, 0, 1]
    want = np.where(v["x"] > inner, v["x"], -v["x"])           # [1, -1, 1, 3]
    np.testing.assert_array_equal(want, [1.0, -1.0, 1.0, 3.0])
    f = aj.compile(out, backend=backend, **opts)
    np.testing.assert_array_equal(f(**v), want)
    # one fused region that still reads both branches (the bug dropped z)
    (region,) = [n for n in f.graph.order() if n.op == "fused"]
    assert {i.name for i in region.inputs} == {"x", "y", "z", "m"}


@pytest.mark.parametrize("backend, opts", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_gradient_of_a_maximum_over_a_fused_where(backend, opts):
    y = aj.input("y", (None, 3))
    s = aj.param("s", ())
    m = aj.input("m", (None, 3), "bool")
    c = np.array([1.0, 2.0, 4.0])
    L = aj.sum(aj.maximum(0.5, aj.where(m, y, s)) * c)
    v = dict(y=np.array([[1.0, 0.0, 1.0], [0.2, 0.9, -1.0]]), s=np.float64(0.8),
             m=np.array([[True, True, False], [False, True, True]]))
    u = np.where(v["m"], v["y"], v["s"])                       # [[1, 0, .8], [.8, .9, -1]]
    gu = np.where(0.5 >= u, 0.0, c)                            # maximum's ties go to 0.5
    want = (np.sum(np.maximum(0.5, u) * c), np.where(v["m"], gu, 0.0),
            np.sum(np.where(v["m"], 0.0, gu)))
    assert want[2] == 4.0 + 1.0                                # s reaches two elements
    got = aj.compile([L] + aj.grad(L, [y, s]), backend=backend, **opts)(**v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-15)
    aj.check_grads(L, [y, s], v, backend=backend)


@pytest.mark.parametrize("backend, opts", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_fused_comparisons_of_bools_order_false_before_true(backend, opts):
    x, y = aj.input("x", (4,)), aj.input("y", (4,))
    m = aj.input("m", (4,), "bool")
    p = x > y
    v = dict(x=np.array([1.0, 1.0, -1.0, -1.0]), y=np.zeros(4),
             m=np.array([True, False, True, False]))
    P, M = v["x"] > v["y"], v["m"]                             # P = [T, T, F, F]
    cases = [(aj.equal(p, m), P == M), (aj.equal(m, True), M),
             (p > m, P > M), (m <= p, M <= P)]
    for out, want in cases:
        got = aj.compile(aj.where(out, x, y), backend=backend, **opts)(**v)
        np.testing.assert_array_equal(got, np.where(want, v["x"], v["y"]))


def test_numpy_references_do_not_import_all_of_numpy():
    """The numpy functions of ops and fused regions are made without ``from numpy import
    *`` (which imports numpy's lazy subpackages: ~0.1 s of every process's first compile)."""
    code = ("import sys, numpy as np, adjit as aj\n"
            "x = aj.input('x', (None, 3)); W = aj.param('W', (3, 2))\n"
            "L = aj.sum(aj.where(x @ W > 0, aj.exp(x @ W), 0.5 * (x @ W)))\n"
            "f = aj.compile([L, *aj.grad(L, [W])], backend='interp')\n"
            "f(x=np.ones((4, 3)), W=np.ones((3, 2)))\n"
            "print(sorted(m for m in ('numpy.f2py', 'numpy.polynomial', 'numpy.ma')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
