"""Fused epilogues: a matrix product read only by one elementwise map of its shape runs the map
before storing (backends/lowering/epilogue.py, the Product hook of backends/ptx/matmul.py).

* dense layers with relu / tanh / sigmoid / bias-only epilogues, forward and gradient graphs,
  on every kernel (64x64, 128x128, 128x128 split K, tf32 and bf16 tensor cores), batch 0, 1,
  3, 64 and odd sizes, against the interpreter in the CPU grid emulation;
* transposed operands, stacks with broadcast operands and a per-stack bias, matmul_sum;
  epilogue operands that are a row vector, a column vector, a full matrix, a scalar, a bool;
  NaN and +-inf in the bias and the operands;
* what must not fuse (the product used twice, an output, reduced or broadcast by its user,
  the other operand computed after it) computes the same and shows no fusion;
* the arena: a temporary live across the product's old position never shares bytes with
  the map's output, which now is written there;
* the MLP runs fewer kernels; ptxas (sm_80, sm_90) assembles the fused kernels without spills.
"""
import re

import numpy as np
import pytest

import adjit as aj
import adjit.backends.ptx as ptx_backend
from adjit.backends.lowering.plan import Plan
from adjit.backends.ptx.sources import ptxas_path
from adjit.ops.contract import matmul_sum
from ptx_helpers import compare, emulated, mlp, mlp_args

KINDS = [("tile64", 1), ("big", 1), ("big", 3)]
ACTS = {"relu": aj.relu, "tanh": aj.tanh, "sigmoid": aj.sigmoid, "bias": lambda v: v}


@pytest.fixture
def unfused(monkeypatch):
    """Compile with the plan of before (no epilogues) for the rest of the test."""
    def off():
        monkeypatch.setattr(ptx_backend, "Plan",
                            lambda g, **kw: Plan(g, **{**kw, "epilogues": False}))
    return off


def fused_lines(f) -> list[str]:
    return [ln for ln in f.launch_plan.splitlines() if " + " in ln]


def fused_steps(f) -> set[str]:
    """The steps (``k3``) whose product runs a fused map."""
    return {ln.split("_")[0] for ln in fused_lines(f)}


def run(outs, args, dtype, **options):
    f = emulated(outs, **options)
    for a in args:
        compare(f, outs, a, dtype)
    return f


def _dense(dtype, M=17, K=33, N=29):
    """Each activation of x @ W + b as an output of its own, and the four transpose forms."""
    x = aj.input("x", (None, K), dtype)
    xt = aj.input("xt", (K, None), dtype)
    W = aj.param("W", (K, N), dtype)
    Wt = aj.param("Wt", (N, K), dtype)
    b = aj.param("b", (N,), dtype)
    outs = [act(x @ aj.param(f"W{k}", (K, N), dtype) + b)     # (one product each: no CSE)
            for k, act in enumerate(ACTS.values())]
    outs += [aj.relu(aj.transpose(xt) @ W + b), aj.tanh(x @ aj.transpose(Wt) + b),
             aj.sigmoid(aj.transpose(xt) @ aj.transpose(Wt) - b)]
    return outs


def _dense_args(dtype, B, K=33, N=29, seed=0):
    rng = np.random.default_rng(seed + B)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    return dict(x=r(B, K), xt=r(K, B), W=r(K, N) / 4, Wt=r(N, K) / 4, b=r(N),
                **{f"W{k}": r(K, N) / 4 for k in range(len(ACTS))})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,S", KINDS)
def test_dense_layers_on_every_kernel(force, dtype, kind, S):
    force(kind, S)
    outs = _dense(dtype)
    f = run(outs, [_dense_args(dtype, B) for B in (0, 1, 3, 64)], dtype)
    assert len(fused_steps(f)) == len(outs)       # every layer fused
    assert "k0_matmul" in f.launch_plan and "fused" not in f.launch_plan.replace(" + fused", "")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,S", KINDS)
def test_mlp_gradients_on_every_kernel(force, dtype, kind, S):
    force(kind, S)
    sizes = (17, 33, 29)
    for act in (aj.relu, aj.tanh):
        outs = mlp(dtype, sizes, act=act)
        f = run(outs, [mlp_args(dtype, B, sizes) for B in (0, 1, 3, 64)], dtype)
        assert len(fused_steps(f)) >= 3   # two forward, one backward


@pytest.mark.parametrize("kind,S", KINDS)
def test_stacks_broadcasts_and_matmul_sum(force, kind, S):
    """A stack against a shared weight with a bias, a per-stack bias (3, 1, 9) against a
    broadcast stacked weight, a full-matrix operand varying with the batch, a matmul_sum
    (a weight gradient) with weight decay; forward and gradients."""
    force(kind, S)
    dt = "float32"
    s = aj.input("s", (None, 3, 5, 12), dt)
    g = aj.input("g", (None, 3, 5, 7), dt)
    v, c = aj.param("v", (12, 7), dt), aj.param("c", (7,), dt)
    u, d = aj.param("u", (3, 7, 9), dt), aj.param("d", (3, 1, 9), dt)
    h = aj.tanh(s @ v + c)                         # (B, 3, 5, 7)
    y = aj.relu(h @ u + d)                         # u broadcast over B, stacked over 3
    z = (s @ aj.param("v2", (12, 7), dt)) * g      # a full matrix from the batch
    ws = matmul_sum(aj.swapaxes(s, -1, -2), g) + 0.01 * v     # (12, 7)
    loss = aj.sum(y * y) + aj.sum(z)
    outs = [y, z, ws, loss] + aj.grad(loss, [s, v, c, u, d])  # (ws: sum of two matmul_sums)
    rng = np.random.default_rng(4)
    args = [dict(s=rng.standard_normal((B, 3, 5, 12)).astype(dt),
                 g=rng.standard_normal((B, 3, 5, 7)).astype(dt),
                 v=(rng.standard_normal((12, 7)) / 3).astype(dt),
                 v2=rng.standard_normal((12, 7)).astype(dt), c=rng.standard_normal(7).astype(dt),
                 u=(rng.standard_normal((3, 7, 9)) / 3).astype(dt),
                 d=rng.standard_normal((3, 1, 9)).astype(dt)) for B in (0, 1, 3)]
    f = run(outs, args, dt)
    plan = f.launch_plan
    assert "matmul (B, 3, 5, 12) @ (1, 1, 12, 7) + fused (B, 3, 5, 7)" in plan   # h and z
    assert "(1, 3, 7, 9) + fused (B, 3, 5, 9)" in plan
    assert re.search(r"matmul_sum .* \+ fused \(12, 7\)", plan)


@pytest.mark.parametrize("kind,S", KINDS)
def test_operand_shapes_row_column_matrix_scalar_bool(force, kind, S):
    force(kind, S)
    dt = "float64"
    x = aj.input("x", (None, 9), dt)
    p = [x @ aj.param(f"W{k}", (9, 6), dt) for k in range(6)]    # six products (no CSE)
    row, col = aj.param("row", (6,), dt), aj.input("col", (None, 1), dt)
    full, sc = aj.input("full", (None, 6), dt), aj.param("sc", (), dt)
    mask = aj.input("mask", (None, 6), "bool")
    outs = [p[0] + row, p[1] * col, aj.maximum(p[2], full), p[3] * sc + 1.0,
            aj.where(mask, p[4], -1.0), 2.0 * p[5]]
    rng = np.random.default_rng(9)
    args = [dict(x=rng.standard_normal((B, 9)),
                 **{f"W{k}": rng.standard_normal((9, 6)) for k in range(6)},
                 row=rng.standard_normal(6), col=rng.standard_normal((B, 1)),
                 full=rng.standard_normal((B, 6)), sc=np.float64(-1.5),
                 mask=rng.standard_normal((B, 6)) > 0) for B in (0, 1, 5, 70)]
    f = run(outs, args, dt)
    assert len(fused_steps(f)) == len(outs)


@pytest.mark.parametrize("kind,S", KINDS)
def test_nan_and_inf_propagate_as_in_numpy(force, kind, S):
    force(kind, S)
    dt = "float32"
    x, W, b = aj.input("x", (None, 5), dt), aj.param("W", (5, 4), dt), aj.param("b", (4,), dt)
    outs = [aj.relu(x @ W + b), aj.tanh(x @ W - b), aj.sigmoid(x @ W + b), x @ W + b]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 5)).astype(dt)
    X[1, 2], X[3, 0], X[4, 4] = np.inf, -np.inf, np.nan
    Wv = rng.standard_normal((5, 4)).astype(dt)
    Wv[0, 3] = np.inf
    bias = np.array([np.nan, np.inf, -np.inf, 0.5], dt)
    want = aj.compile(outs, backend="interp")(x=X, W=Wv, b=bias)
    assert any(np.isnan(w).any() for w in want) and any(np.isinf(w).any() for w in want)
    run(outs, [dict(x=X, W=Wv, b=bias)], dt)


# --- what must not fuse -----------------------------------------------------------------------
def test_what_must_not_fuse_computes_the_same_and_shows_no_fusion():
    dt = "float64"
    x, W = aj.input("x", (None, 6), dt), aj.param("W", (6, 5), dt)
    b = aj.param("b", (5,), dt)
    cases = {
        "used twice": lambda: (lambda m: [aj.relu(m + b), aj.sum(m, axis=1)])(x @ W),
        "an output": lambda: (lambda m: [m, aj.relu(m + b)])(x @ W),
        "reduced": lambda: [aj.sum(x @ W, axis=1)],
        "broadcast": lambda: [(x @ aj.param("w1", (6, 1), dt)) + aj.input("z", (None, 5), dt)],
        "operand after": lambda: (lambda m: [m + aj.sum(aj.input("y", (None, 5, 3), dt), axis=2)])(x @ W),
    }
    rng = np.random.default_rng(3)
    for what, build in cases.items():
        outs = build()
        f = emulated(outs)
        assert not fused_lines(f), (what, f.launch_plan)
        names = {n.name for n in f.plan.inputs}
        shapes = {"x": (6,), "W": (6, 5), "b": (5,), "w1": (6, 1), "z": (5,), "y": (5, 3)}
        for B in (0, 3):
            args = {k: rng.standard_normal(shapes[k] if k in ("W", "b", "w1") else (B, *shapes[k]))
                    for k in names}
            compare(f, outs, args, dt)


def test_epilogues_are_asked_for():
    """Only the ptx backend asks for them: the default plan (llvm's) keeps the product."""
    x, W = aj.input("x", (None, 6), "float32"), aj.param("W", (6, 5), "float32")
    f = emulated(aj.relu(x @ W + 1.0))
    plain = Plan(f.plan.graph)
    assert [n.op for n in plain.steps] == ["matmul", "fused"] and not plain.epilogue_of
    assert [n.op for n in f.plan.steps] == ["fused"] and f.plan.epilogue_of


# --- the arena ---------------------------------------------------------------------------------
def _overlap(plan, batch, a, b):
    """Whether the float64 temporaries ``a`` and ``b`` share bytes of the arena."""
    at = dict(zip([t.id for t in plan.temps], plan.arena_offsets(batch)[0]))
    size = lambda n: int(np.prod([batch if d is None else d for d in n.shape])) * 8
    return at[a.id] < at[b.id] + size(b) and at[b.id] < at[a.id] + size(a)


def test_the_arena_follows_the_new_order():
    """T = x @ V is read by a reduction scheduled between M = x @ W and E = relu(M + b).  In
    the plan of before, E's output starts after T's last read and takes T's bytes; fused, E
    is written where M was computed, while T is still to be read: they must not share."""
    dt = "float64"
    x = aj.input("x", (None, 8), dt)
    V, W, b = aj.param("V", (8, 32), dt), aj.param("W", (8, 8), dt), aj.param("b", (8,), dt)
    T = x @ V
    M = x @ W
    U = aj.sum(T, axis=1)
    E = aj.relu(M + b)
    outs = [U, aj.sum(E, axis=1)]
    f = emulated(outs)
    g = f.plan.graph
    before, after = Plan(g), f.plan
    steps = lambda p: [n.op for n in p.steps]
    assert steps(before)[:4] == ["matmul", "matmul", "sum", "fused"]
    assert steps(after)[:3] == ["matmul", "fused", "sum"]
    t_node, e_node = before.steps[0], before.steps[3]
    assert _overlap(before, 4, t_node, e_node)            # the old plan shares the bytes
    assert not _overlap(after, 4, t_node, e_node)
    rng = np.random.default_rng(0)
    for B in (1, 4, 33):
        compare(f, outs, dict(x=rng.standard_normal((B, 8)), V=rng.standard_normal((8, 32)),
                              W=rng.standard_normal((8, 8)), b=rng.standard_normal(8)), dt)


# --- launches ----------------------------------------------------------------------------------
def _launches(f, B):
    return sum(1 for L in f.launches if L.when(B))


def test_the_mlp_runs_fewer_kernels(unfused):
    sizes = (784, 128, 10)
    outs = mlp("float32", sizes, act=aj.relu)
    fused = aj.compile(outs, backend="ptx")
    unfused()
    plain = aj.compile(outs, backend="ptx")
    for B in (1, 64, 4096):
        assert _launches(fused, B) == _launches(plain, B) - 3, B
    assert len(fused.launch_plan.splitlines()) < len(plain.launch_plan.splitlines())


# --- tensor cores ------------------------------------------------------------------------------
@pytest.mark.parametrize("prec", ["tf32", "bf16"])
@pytest.mark.parametrize("kind,S", [(None, 1), ("tile64", 1), ("big", 1), ("big", 2), ("big", 5)])
def test_tensor_core_epilogues(monkeypatch, prec, kind, S):
    """Small integers: the products are exact in both precisions, so relu(M + b) and the
    gradient's epilogue are exact too; then random operands against the interpreter within the
    precision's bound (the maps here are 1-Lipschitz).  On each tensor-core kernel (None: as
    chosen), the 128 x 128 one also with K split 2 and 5 ways (the epilogue in the sum)."""
    from test_ptx_mma import bound
    from adjit.backends.ptx import matmul_mma as mma
    if kind is not None:
        monkeypatch.setattr(mma, "choose", lambda *a, **k: (kind, S))
    dt = "float32"
    x, W, b = aj.input("x", (None, 21), dt), aj.param("W", (21, 19), dt), aj.param("b", (19,), dt)
    gy = aj.input("gy", (None, 19), dt)
    y = aj.relu(x @ W + b)
    gx = aj.where(x > 0, gy @ aj.transpose(W), 0.0)
    outs = [y, gx, aj.tanh(x @ aj.param("V", (21, 19), dt) - b)]
    f = emulated(outs, precision=prec)
    assert len(fused_steps(f)) == 3 and f"{prec} mma.sync" in fused_lines(f)[0]
    if kind == "big":
        assert any("128x128" in ln for ln in fused_lines(f))
    rng = np.random.default_rng(5)
    for B in (0, 1, 37):
        X = rng.integers(-3, 4, (B, 21)).astype(dt)
        Wv = rng.integers(-3, 4, (21, 19)).astype(dt)
        bv = rng.integers(-20, 21, 19).astype(dt)
        G = rng.integers(-3, 4, (B, 19)).astype(dt)
        got = f(x=X, W=Wv, b=bv, gy=G, V=Wv)
        np.testing.assert_array_equal(got[0], np.maximum(X @ Wv + bv, 0))
        np.testing.assert_array_equal(got[1], np.where(X > 0, G @ Wv.T, 0))
    X, Wv = rng.standard_normal((37, 21)).astype(dt), rng.standard_normal((21, 19)).astype(dt)
    bv, G = rng.standard_normal(19).astype(dt), rng.standard_normal((37, 19)).astype(dt)
    got = f(x=X, W=Wv, b=bv, gy=G, V=Wv)
    want = aj.compile(outs, backend="interp")(x=X, W=Wv, b=bv, gy=G, V=Wv)
    x64, w64 = X.astype(np.float64), Wv.astype(np.float64)
    for g, w, tol in ((got[0], want[0], bound(x64, w64, prec, 21)),
                      (got[2], want[2], bound(x64, w64, prec, 21)),
                      (got[1], want[1], bound(G.astype(np.float64), w64.T, prec, 19))):
        assert (np.abs(g.astype(np.float64) - w) <= tol + 4e-7 * np.abs(w)).all()


# --- ptxas ---------------------------------------------------------------------------------------
@pytest.mark.skipif(ptxas_path() is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("prec", ["fp32", "tf32"])
def test_ptxas_accepts_the_fused_kernels_without_spills(arch, prec):
    """The MLP (every kernel built: sizes depend on the batch) and a stacked product with a
    per-stack bias (fp32 only: the tf32 kernel on a stack whose batch axes do not merge
    spills 16-20 bytes on sm_80 with or without an epilogue, ptxas choosing 48 registers)."""
    from adjit.backends.ptx import assemble
    from adjit.backends.ptx.sources import registers, spills
    outs = mlp("float32", (512, 256, 10), act=aj.relu)
    s = aj.input("s", (None, 4, 8, 64), "float32")
    if prec == "fp32":
        outs.append(aj.tanh(s @ aj.param("v", (64, 32), "float32")
                            + aj.param("c", (4, 1, 32), "float32")))
    f = aj.compile(outs, backend="ptx", precision=prec, arch=arch)
    report = assemble(f.ptx_for(arch), arch)
    used, spilled = registers(report), spills(report)
    fused = {ln.split()[0] for ln in fused_lines(f)}
    assert len(fused_steps(f)) == (4 if prec == "fp32" else 3)
    for k in fused:
        assert used[k] <= 255 and spilled[k] == 0, (k, used[k], spilled[k])
