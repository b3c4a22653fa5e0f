"""Forward mode, generated over the op registry.

Every registered op has a JVP rule (``Op.jvp``) unless it is declared non-differentiable,
and every op is exercised here: each elementwise op over the operand shapes of
tests/test_ops.py (broadcasts included), each other op through the cases of ``CASES``.
For each case, in float64:

* the JVP equals two-sided finite differences of the interpreter's forward values along
  the tangent (element by element);
* the JVP agrees with reverse mode: ⟨ȳ, ẏ⟩ = Σ ⟨x̄, ẋ⟩ for a random cotangent ȳ;
* the llvm backend and the ptx emulation compute the same tangent as the interpreter (every
  case on both; an op the ptx backend refuses, ``backends/ptx/lower.py: RULES.refused``, must
  be refused with its reason rather than skipped; none is at present).
"""
from __future__ import annotations

import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "ptx")]

import adjit as aj  # noqa: E402
from adjit.ops import REGISTRY  # noqa: E402
from adjit.ops.conv import conv_node, conv_transpose_node, conv_weight_node  # noqa: E402
from adjit.ops.contract import matmul_sum  # noqa: E402
from adjit.ops.gathers import scatter_add  # noqa: E402
from adjit.ops.registry import make  # noqa: E402
from adjit.backends.ptx.lower import RULES as PTX_RULES  # noqa: E402
from gradtools import run  # noqa: E402
from ptx_helpers import emulated  # noqa: E402
from test_ops import ELEMENTWISE, _cases, _declare, _sample  # noqa: E402

H = 1e-5


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# --- the cases -----------------------------------------------------------------------------
# name: (ops it covers, {input: (shape, dtype, kind)}, the float inputs moved, build)
# kind: "n" standard normal, "u" uniform in (0.5, 2), "p" a permutation (distinct values,
# no ties: for max, min, max_pool), "z" normal with zeros (prod), (lo, hi) integers
G2 = {"stride": (2, 1), "dilation": (1, 2), "pad": ((1, 0), (0, 1)), "groups": 2}
GEO = {"kernel": (2, 3), "stride": (2, 1), "dilation": (1, 2), "pad": ((1, 0), (0, 1))}
CASES = {
    "broadcast": (["broadcast"], {"x": ((2, 1), "float64", "n")}, ["x"],
                  lambda x: aj.broadcast_to(x, (3, 2, 4)) * 1.5),
    "reshape over the batch": (["reshape"], {"x": ((None, 6), "float64", "n")}, ["x"],
                               lambda x: aj.reshape(x, (None, 2, 3))),
    "transpose": (["transpose"], {"x": ((2, 3, 4), "float64", "n")}, ["x"],
                  lambda x: aj.transpose(x, (2, 0, 1))),
    "sum": (["sum", "batch_size"], {"x": ((None, 3, 4), "float64", "n")}, ["x"],
            lambda x: aj.sum(x, axis=(0, 2)) + aj.mean(x)),
    "max and min": (["max", "min"], {"x": ((3, 5), "float64", "p")}, ["x"],
                    lambda x: aj.max(x, axis=1) * aj.min(x, axis=0, keepdims=True)[:, :3]),
    "max of everything": (["max"], {"x": ((None, 4), "float64", "p")}, ["x"],
                          lambda x: aj.max(x)),
    "prod with zeros": (["prod"], {"x": ((4, 3), "float64", "z")}, ["x"],
                        lambda x: aj.prod(x, axis=1)),
    "prod": (["prod"], {"x": ((2, 3, 2), "float64", "u")}, ["x"],
             lambda x: aj.prod(x, axis=(0, 2))),
    "matmul": (["matmul"], {"x": ((None, 3), "float64", "n"), "W": ((3, 4), "float64", "n")},
               ["x", "W"], lambda x, W: x @ W),
    "matmul broadcast batch": (["matmul"], {"a": ((2, 3, 4), "float64", "n"),
                                            "b": ((1, 4, 5), "float64", "n")},
                               ["a", "b"], lambda a, b: a @ b),
    "matmul one operand moved": (["matmul"], {"a": ((3, 4), "float64", "n"),
                                              "b": ((4,), "float64", "n")},
                                 ["b"], lambda a, b: a @ b),
    "einsum": (["matmul"], {"a": ((2, 3), "float64", "n"), "b": ((3, 4), "float64", "n")},
               ["a", "b"], lambda a, b: aj.einsum("ij,jk->ki", a, b)),
    "matmul_sum": (["matmul_sum"], {"a": ((2, 3, 4), "float64", "n"),
                                    "b": ((2, 4, 5), "float64", "n")},
                   ["a", "b"], lambda a, b: matmul_sum(a, b)),
    "cast": (["cast"], {"x": ((3,), "float64", "n"), "k": ((3,), "int64", (-3, 4))}, ["x"],
             lambda x, k: x * aj.cast(k, "float64")),     # (float to float: test_cast_between_floats)
    "stop_gradient": (["stop_gradient"], {"x": ((3,), "float64", "n")}, ["x"],
                      lambda x: x * aj.stop_gradient(x), {"fd": False}),   # (by design)
    "one_hot": (["one_hot"], {"x": ((None, 4), "float64", "n"), "t": ((None,), "int64", (0, 4))},
                ["x"], lambda x, t: x * aj.one_hot(t, 4)),
    "slice": (["slice"], {"x": ((None, 5), "float64", "n")}, ["x"], lambda x: x[:2, ::2] + x[:, 1:4][1:3]),
    "pad": (["pad"], {"x": ((2, 3), "float64", "n")}, ["x"],
            lambda x: aj.pad(x, ((1, 2), (0, 1)), constant_values=3.0)),
    "concatenate": (["concatenate"], {"x": ((2, 3), "float64", "n"), "y": ((2, 2), "float64", "n")},
                    ["x", "y"], lambda x, y: aj.concatenate([x, y, aj.const(np.ones((2, 1)))],
                                                            axis=1)),
    "concatenate, one moved": (["concatenate"], {"x": ((2, 3), "float64", "n"),
                                                 "y": ((1, 3), "float64", "n")},
                               ["y"], lambda x, y: aj.concatenate([x, y], axis=0)),
    "take": (["take"], {"x": ((5, 3), "float64", "n"), "i": ((4,), "int64", (-5, 5))}, ["x"],
             lambda x, i: aj.take(x, i, axis=0)),
    "take_along_axis": (["take_along_axis"], {"x": ((3, 4), "float64", "n"),
                                              "i": ((3, 5), "int64", (0, 4))},
                        ["x"], lambda x, i: aj.take_along_axis(x, i, axis=1)),
    "scatter_add": (["scatter_add"], {"v": ((4, 3), "float64", "n"), "i": ((4,), "int64", (0, 5))},
                    ["v"], lambda v, i: scatter_add(v, i, (5, 3), axis=0)),
    "argmax and argmin": (["argmax", "argmin"], {"x": ((3, 4), "float64", "p")}, ["x"],
                          lambda x: aj.take_along_axis(x, aj.argmax(x, axis=1, keepdims=True), 1)
                          - aj.take_along_axis(x, aj.argmin(x, axis=1, keepdims=True), 1)),
    "max_pool": (["max_pool", "pool_argmax"], {"x": ((2, 2, 5, 5), "float64", "p")}, ["x"],
                 lambda x: aj.max_pool2d(x, 3, stride=2, padding=1)),
    "max_pool 1d": (["max_pool"], {"x": ((None, 2, 7), "float64", "p")}, ["x"],
                    lambda x: aj.max_pool1d(x, 2, stride=2, dilation=2)),
    "avg_pool": (["avg_pool"], {"x": ((2, 2, 5, 4), "float64", "n")}, ["x"],
                 lambda x: aj.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)),
    "avg_pool_grad": (["avg_pool_grad"], {"x": ((1, 2, 5, 4), "float64", "n"),
                                          "u": ((1, 2, 3, 2), "float64", "n")}, ["u"],
                      lambda x, u: aj.grad(aj.sum(aj.avg_pool2d(x, 3, stride=2, padding=1) * u), x)),
    "max_pool's gradient": (["scatter_add", "pool_argmax"],
                            {"x": ((1, 2, 5, 4), "float64", "p"), "u": ((1, 2, 2, 2), "float64", "n")},
                            ["x", "u"],
                            lambda x, u: aj.grad(aj.sum(aj.max_pool2d(x, 2, stride=2) ** 2 * u), x)),
    "conv": (["conv"], {"x": ((2, 4, 5, 6), "float64", "n"), "W": ((6, 2, 2, 3), "float64", "n")},
             ["x", "W"], lambda x, W: conv_node(x, W, G2)),
    "conv2d with bias": (["conv"], {"x": ((None, 2, 5, 5), "float64", "n"),
                                    "W": ((3, 2, 3, 3), "float64", "n"), "b": ((3,), "float64", "n")},
                         ["x", "W", "b"], lambda x, W, b: aj.conv2d(x, W, b, stride=2, padding=1)),
    "conv_transpose": (["conv_transpose"], {"g": ((2, 6, 3, 3), "float64", "n"),
                                            "W": ((6, 2, 2, 3), "float64", "n")},
                       ["g", "W"], lambda g, W: conv_transpose_node(g, W, G2, (5, 6))),
    "conv_weight": (["conv_weight"], {"x": ((2, 4, 5, 6), "float64", "n"),
                                      "g": ((2, 6, 3, 3), "float64", "n")},
                    ["x", "g"], lambda x, g: conv_weight_node(x, g, G2, (2, 3))),
    "unfold and fold": (["unfold", "fold"], {"x": ((2, 2, 5, 6), "float64", "n")}, ["x"],
                        lambda x: make("fold", (make("unfold", (x,), GEO) * 2.0,),
                                       dict(GEO, spatial=(5, 6)))),
    "dropout": (["philox"], {"x": ((3, 4), "float64", "n"), "key": ((2,), "uint32", (0, 2**31))},
                ["x"], lambda x, key: aj.dropout(x, 0.5, key)),
    "param and const": (["param", "const", "input"],
                        {"x": ((3,), "float64", "n")}, ["x"],
                        lambda x: x * aj.param("w", (3,)) + aj.const([1.0, 2.0, 3.0])),
}
# values of the parameters the cases declare with aj.param
PARAMS = {"w": np.array([0.5, -1.0, 2.0])}
# (every case runs on interp, llvm and the ptx emulation: the shapes above are small enough
# for the emulation, which builds at O0, to run each case in a fraction of a second)


def _values(spec, key, batch=3):
    rng = _rng(key)
    out = {}
    for name, (shape, dtype, kind) in spec.items():
        shape = tuple(batch if d is None else d for d in shape)
        n = int(np.prod(shape, dtype=np.int64))
        if isinstance(kind, tuple):
            out[name] = rng.integers(*kind, size=shape).astype(dtype)
        elif kind == "p":
            out[name] = (rng.permutation(n) * 0.25 - n / 8).reshape(shape).astype(dtype)
        elif kind == "u":
            out[name] = rng.uniform(0.5, 2.0, shape).astype(dtype)
        elif kind == "z":
            v = rng.standard_normal(shape)
            v.reshape(-1)[:: max(1, n // 3)] = 0.0     # one zero in some rows, two in others
            v.reshape(-1)[1] = 0.0
            out[name] = v.astype(dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out


def _build(name):
    ops, spec, wrt, build, *flags = CASES[name]
    nodes = {k: aj.input(k, shape, dtype) for k, (shape, dtype, _) in spec.items()}
    out = build(**nodes)
    values = {**_values(spec, name), **{k: v for k, v in PARAMS.items()}}
    return nodes, out, [nodes[k] for k in wrt], values, *flags


def _elementwise_build(name, shapes):
    call, _, kinds = ELEMENTWISE[name]
    names, decl, dtypes = _declare(name, shapes)
    nodes = {n: aj.input(n, decl[n], dtypes[n]) for n in names}
    out = call(*(nodes[n] for n in names))
    values = dict(zip(names, _sample(name, shapes)))
    wrt = [nodes[n] for n, kind in zip(names, kinds) if kind == "f"]
    return nodes, out, wrt, values


def _call(f, values):
    return f(**{k: v for k, v in values.items() if k in f.input_names})


def _check(nodes, out, wrt, values, flags=None, backends=("llvm",)):
    """JVP = finite differences = reverse mode; the native backends = the interpreter."""
    rng = _rng(out.op, out.shape, sorted(values))
    dirs = {v.name: rng.standard_normal(np.shape(values[v.name])) for v in wrt}
    tans = [aj.input("dot_" + v.name, v.shape, v.dtype) for v in wrt]
    ydot = aj.jvp(out, wrt, tans)
    assert ydot.shape == out.shape and ydot.dtype == out.dtype
    call = {**values, **{"dot_" + k: d for k, d in dirs.items()}}
    f = aj.compile(out, backend="interp")
    got = _call(aj.compile(ydot, backend="interp"), call)
    # finite differences of the forward values (each element)
    fd = (flags or {}).get("fd", True)
    plus = _call(f, {**values, **{k: values[k] + H * d for k, d in dirs.items()}})
    minus = _call(f, {**values, **{k: values[k] - H * d for k, d in dirs.items()}})
    diff = (plus - minus) / (2 * H)
    scale = max(1.0, float(np.max(np.abs(diff), initial=0.0)))
    if fd:
        np.testing.assert_allclose(got, diff, rtol=1e-6, atol=1e-7 * scale, err_msg="JVP vs FD")
    # reverse mode: <u, ydot> = sum_k <grad_k, dir_k>
    u = rng.standard_normal(np.shape(got))
    ct = aj.input("u_ct", out.shape, out.dtype)
    grads = aj.grad(aj.sum(out * ct), wrt)
    gv = _call(aj.compile(grads, backend="interp"), {**values, "u_ct": u})
    lhs = float(np.sum(u * got))
    rhs = sum(float(np.sum(g * dirs[v.name])) for g, v in zip(gv, wrt))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs) + abs(rhs)), (lhs, rhs)
    # the native backends
    for backend in backends:
        refused = _ptx_refusals(ydot) if backend == "ptx" else {}
        if refused:     # a declared refusal is asserted, never skipped
            op, why = next(iter(refused.items()))
            with pytest.raises(NotImplementedError, match=f"op '{op}'.*{re.escape(why)}"):
                emulated(ydot)
            continue
        fn = emulated(ydot) if backend == "ptx" else aj.compile(ydot, backend=backend)
        np.testing.assert_allclose(_call(fn, call), got, rtol=1e-10, atol=1e-12 * scale,
                                   err_msg=backend)
    return got


def _ptx_refusals(outputs):
    """{op: reason} for the ops in the graph of ``outputs`` that the ptx backend refuses."""
    seen, stack, found = set(), list(outputs if isinstance(outputs, list) else [outputs]), {}
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        if n.op in PTX_RULES.refused and PTX_RULES.coverage(n.op).startswith("refused"):
            found[n.op] = PTX_RULES.refused[n.op]
        stack.extend(n.inputs)
    return found


# --- every op has a rule, every op is exercised ---------------------------------------------
def _exempt(op):
    """Ops with no JVP of their own: leaves (the walk seeds them), the non-differentiable
    ones (a zero tangent), and ``fused``, made by the fuse pass after forward mode ran."""
    return op.arity == 0 or not op.differentiable or op.name == "fused"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_differentiable_op_has_a_jvp_rule(name):
    op = REGISTRY[name]
    assert _exempt(op) or callable(op.jvp), f"{name}: no JVP rule and not declared " \
        "non-differentiable (Op.jvp, see adjit.ops.tangents)"


def test_every_op_is_exercised():
    covered = {op for ops, *_ in CASES.values() for op in ops}
    missing = [n for n, op in REGISTRY.items()
               if not op.elementwise and n not in covered and n != "fused"]
    assert not missing, f"ops without a forward-mode case: {missing}"
    stale = covered - set(REGISTRY)
    assert not stale, stale


def test_a_rule_missing_is_reported(monkeypatch):
    from adjit.ops.registry import Op
    x = aj.input("x", (3,))
    y = aj.exp(x)
    monkeypatch.setattr(REGISTRY["exp"], "jvp", None)
    with pytest.raises(TypeError, match="exp .* no forward-mode rule"):
        aj.jvp(y, x, aj.input("v", (3,)))
    assert Op  # (the record type the rule lives in)


# --- the generated checks -------------------------------------------------------------------
DIFFERENTIABLE = sorted(n for n, op in REGISTRY.items() if op.elementwise and op.differentiable)
CONSTANT = sorted(n for n, op in REGISTRY.items() if op.elementwise and not op.differentiable)


@pytest.mark.parametrize("name, shapes", _cases(DIFFERENTIABLE))
def test_elementwise_jvp(name, shapes):
    _check(*_elementwise_build(name, shapes))


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_elementwise_jvp_on_the_ptx_emulation(name):
    shapes = _cases([name])[2].values[1]       # (2, 3) operands
    _check(*_elementwise_build(name, shapes), None, backends=("ptx",))


@pytest.mark.parametrize("name", CONSTANT)
def test_constant_elementwise_ops_pass_no_tangent(name):
    call, _, kinds = ELEMENTWISE[name]
    x = aj.input("x", (4,))
    args = [x > 0.0 if k == "b" else x for k in kinds]
    out = call(*args)
    t = aj.jvp(aj.where(out, x, -x) if out.dtype == "bool" else out * 1.0, x, aj.input("v", (4,)))
    xv, vv = np.array([-1.5, -0.2, 0.7, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])
    got = run(t, x=xv, v=vv)
    if out.dtype == "bool":
        sel = run(out, x=xv)
        np.testing.assert_array_equal(got, np.where(sel, vv, -vv))
    else:
        np.testing.assert_array_equal(got, np.zeros(4))


@pytest.mark.parametrize("name", list(CASES))
def test_jvp(name):
    nodes, out, wrt, values, *flags = _build(name)
    _check(nodes, out, wrt, values, *flags, backends=("llvm", "ptx"))


def test_a_ptx_refusal_is_asserted_not_skipped(monkeypatch):
    """A refusal the ptx backend declares (none at present) is asserted with its reason."""
    monkeypatch.delitem(PTX_RULES.kernels, "scatter_add")
    monkeypatch.setitem(PTX_RULES.refused, "scatter_add", "(a refusal for this test)")
    nodes, out, wrt, values, *flags = _build("scatter_add")
    _check(nodes, out, wrt, values, *flags, backends=("ptx",))


def test_cast_between_floats():
    """The tangent is cast like the value (float32 -> float64 -> float32)."""
    x = aj.input("x", (3,), "float32")
    y = aj.cast(aj.cast(x, "float64") * 2.0, "float32")
    t = aj.jvp([y, aj.cast(x, "float64")], x, aj.input("v", (3,), "float32"))
    assert [n.dtype for n in t] == ["float32", "float64"]
    v = np.array([1.0, -2.0, 0.5], "float32")
    got = run(t, x=np.ones(3, "float32"), v=v)
    np.testing.assert_array_equal(got[0], 2 * v)
    np.testing.assert_array_equal(got[1], v.astype("float64"))
