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
        seen |= {n.op for n in aj.Graph(outs).order()}
    assert set(REGISTRY) - seen <= {"fused"}, set(REGISTRY) - seen - {"fused"}
    wanted = {"shared", "hvp", "double_where", "guard", "matmul_T", "pow_int", "pow_frac",
              "pow_carr", "pow_input", "pow_num_base", "repeat", "xent_masked", "xent_int",
              "xent_onehot", "xent_probs", "softmax", "log_softmax", "logsumexp", "mse",
              "sum_keepdims", "max_keepdims", "mean_keepdims", "transpose", "reshape",
              "broadcast_to", "special_values", "step", "cast"}
    assert wanted <= tags, wanted - tags


def test_the_oracle_catches_a_wrong_value():
    """The checks are not vacuous: a backend returning a perturbed value is caught."""
    from fuzz_check import BACKENDS
    case = generate(case_seed(0))
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
