"""Compile-time machinery of the llvm backend: kernels shared by equal steps, the lowering
split into modules compiled in parallel, and reductions without an initializing pass."""
import numpy as np
import pytest

import adjit as aj
from adjit.backends.lowering import target
from adjit.backends.llvm.codegen import Lowering, kernel_key
from adjit.backends.lowering.plan import Plan
from adjit.backends.llvm.runtime import DATA_OFFSET, NativeFunction


def deep_tanh(layers=6, width=8):
    """W5 in small: equal layers, so equal steps."""
    x = aj.input("x", (None, width))
    t = aj.input("t", (None, width))
    h, params = x, []
    for i in range(layers):
        W, b = aj.param(f"W{i}", (width, width)), aj.param(f"b{i}", (width,))
        params += [W, b]
        h = aj.tanh(h @ W + b)
    loss = 0.5 * aj.mean(aj.sum((h - t) ** 2, axis=1))
    return [loss] + list(aj.grad(loss, params)), params


def feeds(params, batch=5, width=8, seed=0):
    rng = np.random.default_rng(seed)
    kw = {"x": rng.standard_normal((batch, width)), "t": rng.standard_normal((batch, width))}
    for p in params:
        kw[p.name] = rng.standard_normal(p.shape) / np.sqrt(p.shape[0])
    return kw


def native(graph, parts):
    """The graph's native function with the lowering split into at most ``parts`` modules."""
    plan = Plan(graph)
    lw = Lowering(plan, DATA_OFFSET, parts=parts)
    texts = lw.lower()
    return NativeFunction(plan, target.compile_ir(texts, opt_level=1, cache=False)), lw, texts


def test_equal_steps_share_a_kernel_and_match_the_interpreter():
    outs, params = deep_tanh()
    f = aj.compile(outs, opt_level=1, cache=False)
    plan = Plan(f.graph)
    lw = Lowering(plan, DATA_OFFSET)
    lw.lower()
    keys = {kernel_key(plan, n) for n in plan.steps}
    assert lw.n_kernels == len(keys) < len(plan.steps) / 2
    kw = feeds(params)
    for got, want in zip(f(**kw), aj.compile(outs, backend="interp")(**kw)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_split_lowering_gives_the_same_results_as_one_module():
    outs, params = deep_tanh(layers=8, width=16)
    graph = aj.compile(outs, backend="interp").graph
    one, lw1, texts1 = native(graph, 1)
    two, lw2, texts2 = native(graph, 2)
    # one module; or up to two per kind of kernel (maps without loop unrolling, the rest)
    assert len(texts1) == 1 and 2 <= len(texts2) <= 4
    assert any(t.startswith(target.NO_UNROLL) for t in texts2)
    assert not texts1[0].startswith(target.NO_UNROLL)
    assert sum(t.count("\ndefine ") for t in texts2) >= texts1[0].count("\ndefine ")
    assert all("adjit_entry" in t for t in texts1) and sum("@\"adjit_entry\"(" in t
                                                            for t in texts2) >= 1
    kw = feeds(params, batch=7, width=16, seed=3)
    values = {k: np.ascontiguousarray(v) for k, v in kw.items()}
    for a, b in zip(one(values, 7), two(values, 7)):
        np.testing.assert_array_equal(a, b)          # same kernels, same code: same bits


def test_split_model_is_stored_and_loaded_from_the_cache(cache_dir, monkeypatch):
    monkeypatch.setenv("ADJIT_COMPILE_THREADS", "2")
    outs, params = deep_tanh(layers=8, width=16)
    f = aj.compile(outs, opt_level=1)
    assert f.cache_info.startswith("miss") and f.jit.timings["modules"] >= 2
    g = aj.compile(deep_tanh(layers=8, width=16)[0], opt_level=1)
    assert g.cache_info.startswith("hit ")
    kw = feeds(params, batch=4, width=16)
    for a, b in zip(f(**kw), g(**kw)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("axes", [(2,), (1, 2), (0,), (0, 2), (0, 1, 2), (1,)])
def test_reductions_over_any_axes(op, axes, dtype):
    """Inner axes reduce in a register from the start value; others update the output."""
    x = aj.input("x", (None, 3, 5), dtype)
    y = getattr(aj, op)(x, axis=axes)
    X = np.random.default_rng(7).standard_normal((4, 3, 5)).astype(dtype)
    want = getattr(np, op)(X, axis=axes)
    got = aj.compile(y, opt_level=1, cache=False)(x=X)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)
