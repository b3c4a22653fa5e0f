"""docs/ops.md lists every public function and every registered op (the op reference
cannot fall behind the registry)."""
import pathlib
import re

import adjit as aj
from adjit.ops.registry import REGISTRY

DOC = (pathlib.Path(__file__).parents[2] / "docs" / "ops.md").read_text(encoding="utf-8")
NOT_OPS = {"AdjitError", "Compiled", "DTypeError", "GradCheckReport", "GradientCheckError",
           "Graph", "Node", "NonFiniteError", "ShapeError", "TensorType", "check_grads",
           "compile", "get_num_threads", "grad", "machine_peaks", "nn", "optim", "random",
           "set_num_threads", "train"}


def test_every_public_function_is_documented():
    words = set(re.findall(r"aj\.(\w+)", DOC))
    missing = sorted(n for n in aj.__all__ if n not in NOT_OPS and n not in words)
    assert not missing, f"not in docs/ops.md: {missing}"


def test_every_registered_op_is_named():
    words = set(re.findall(r"[\w]+", DOC))
    missing = sorted(op for op in REGISTRY if op not in words)
    assert not missing, f"ops not named in docs/ops.md: {missing}"
