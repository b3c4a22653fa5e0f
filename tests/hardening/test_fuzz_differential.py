"""Differential fuzzing: random graphs over every op, on every backend (interp with and
without passes, llvm, the ptx emulation), against an oracle that shares nothing with
adjit: a numpy evaluator of the fuzzer's own IR (forward values, NaN/inf positions
included) and finite differences of it in float64 (gradients and Hessian-vector
products).  At kinks and ties, where differences measure no derivative, the gradient
must still be finite wherever the function is finite around the point and no
singular value is selected, and every backend must agree with the interpreter.

A bounded, seeded run is part of the default test command.  Longer runs::

    ADJIT_FUZZ_CASES=5000 ADJIT_FUZZ_SEED=1 python -m pytest tests/hardening/test_fuzz_differential.py

or, with counts per failure class and a shrunk reproducer of each::

    PYTHONPATH=src:tests:tests/hardening python tests/hardening/fuzz_check.py 5000 1
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import adjit as aj
from adjit.ops import REGISTRY
from adjit.passes import expand
from fuzz_check import check_case, check_labels_out_of_range, prepare, reproducer, shrink
from fuzz_gen import generate
from fuzz_ir import ELEMENTWISE_REF

CASES = int(os.environ.get("ADJIT_FUZZ_CASES", "120"))
SEED = int(os.environ.get("ADJIT_FUZZ_SEED", "0"))


def case_seed(i):
    return SEED * 1_000_003 + i


@pytest.mark.parametrize("i", range(CASES))
def test_random_graph_on_every_backend(i):
    case = generate(case_seed(i))
    fails = check_case(case) + (check_labels_out_of_range(case) if i % 5 == 0 else [])
    if fails:
        small = shrink(case, fails[0], budget=60)
        lines = sorted({f"{f.key}: {f.where}" for f in fails})[:12]
        pytest.fail("\n".join(lines) + "\n--- shrunk reproducer ---\n" + reproducer(small),
                    pytrace=False)


def test_the_generator_reaches_every_op():
    """Over the default run's cases, every registered op appears in a compiled graph
    (forward or derivative), and every elementwise op has a numpy reference here."""
    missing_ref = [n for n, op in REGISTRY.items() if op.elementwise and n not in ELEMENTWISE_REF]
    assert not missing_ref, f"fuzz_ir has no numpy reference for {missing_ref}"
    seen, tags = set(), set()
    for i in range(max(CASES, 300)):
        case = generate(case_seed(i))
        tags |= case.tags
        try:
            outs = prepare(case)[0]
        except aj.AdjitError:
            continue
        graph = aj.Graph(outs)
        # the traced graph keeps conv, conv_transpose and conv_weight; the ops they are
        # computed with (unfold, fold, and the batched matmul_sum of a weight gradient)
        # appear only once passes.expand has written them out, as every backend runs
        seen |= {n.op for n in graph.order()} | {n.op for n in expand(graph).order()}
    assert set(REGISTRY) - seen <= {"fused"}, set(REGISTRY) - seen - {"fused"}
    wanted = {"shared", "hvp", "double_where", "guard", "matmul_T", "pow_int", "pow_frac",
              "pow_carr", "pow_input", "pow_num_base", "repeat", "xent_masked", "xent_int",
              "xent_onehot", "xent_probs", "softmax", "log_softmax", "logsumexp", "mse",
              "sum_keepdims", "max_keepdims", "mean_keepdims", "transpose", "reshape",
              "broadcast_to", "special_values", "step", "cast",
              # the second wave of ops
              "clip", "getitem", "getitem_int", "getitem_newaxis", "pad", "concatenate",
              "take", "take_along_axis", "take_const_index", "take_input_index",
              "argpick_along", "matmul_nd", "einsum", "uniform", "min_keepdims", "prod",
              "var", "std", "logical_not", "logical_xor",
              # convolutions and pooling (fuzz_gen_windows.py)
              "conv1d", "conv2d", "conv_same", "conv_groups", "conv_transpose2d",
              "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "masked_pool"}
    assert wanted <= tags, wanted - tags


def test_the_oracle_catches_a_wrong_value():
    """The checks are not vacuous: a backend returning a perturbed value is caught."""
    from fuzz_check import BACKENDS
    from fuzz_ir import evaluate
    for i in range(50):     # the first case with a finite, non-empty value to perturb
        case = generate(case_seed(i))
        out = np.asarray(evaluate(case.out, case.values, case.batch)[id(case.out)])
        if out.size and np.isfinite(out).all():
            break
    BACKENDS["broken"] = dict(backend="interp")
    real = aj.compile
    try:
        def broken(outs, **kw):
            f = real(outs, **kw)
            if kw.get("backend") == "interp" and "passes" not in kw:
                class Wrap:
                    input_names = f.input_names

                    def __call__(self, **v):
                        return tuple(np.asarray(r) * 1.01 + 0.01 for r in f(**v))
                return Wrap()
            return f
        aj.compile = broken
        fails = check_case(case, ["broken"])
    finally:
        aj.compile = real
        del BACKENDS["broken"]
    assert any(f.check in ("forward-value", "grad-mismatch") for f in fails), fails


@pytest.mark.parametrize("backend", [dict(backend="interp"), dict(backend="llvm", cache=False),
                                     dict(backend="ptx", emulate=True, cache=False)])
def test_cross_entropy_label_gradient_at_zero_labels(backend):
    """Found by the fuzzer (cross_entropy(x, x)): d loss / d label at a label of 0 is
    -log_softmax / rows, not 0; a masked (-inf) logit with label 0 keeps a finite loss and
    a zero gradient for its logit."""
    z = aj.param("z", (2, 3), "float64")
    t = aj.input("t", (2, 3), "float64")
    loss = aj.cross_entropy(z, t)
    f = aj.compile([loss] + aj.grad(loss, [z, t]), **backend)
    Z = np.array([[1.5, 0.0, 1.5], [-np.inf, 0.5, 2.0]])
    T = np.array([[0.5, 0.0, 0.5], [0.0, 0.25, 0.75]])

    def ref(zz, tt):
        m = np.max(zz, -1, keepdims=True)
        ls = zz - m - np.log(np.sum(np.exp(zz - m), -1, keepdims=True))
        with np.errstate(invalid="ignore"):         # 0 * -inf, discarded by where
            return -np.mean(np.sum(np.where(tt == 0, 0.0, tt * ls), -1))
    val, gz, gt = f(z=Z, t=T)
    assert np.isclose(val, ref(Z, T))
    assert gz[1, 0] == 0.0 and np.all(np.isfinite(gz))
    h = 1e-6
    for i, j in [(0, 1), (0, 0), (1, 1)]:           # label 0 with a finite logit, and others
        e = np.zeros_like(T)
        e[i, j] = h
        fd = (ref(Z, T + e) - ref(Z, T - e)) / (2 * h)
        assert abs(gt[i, j] - fd) < 1e-7, (i, j, gt[i, j], fd)
