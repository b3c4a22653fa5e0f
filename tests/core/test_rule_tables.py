"""Every registered op has a rule (or a declared refusal) in every backend's table.

The op record is the op: a new op that no backend can lower, or that a backend forgets,
fails here instead of at a user's first compile.
"""
import pytest

import adjit  # noqa: F401  (registers every op)
from adjit.backends.llvm import codegen
from adjit.backends.ptx import lower as ptx_lower
from adjit.ops.registry import REGISTRY

OPS = sorted(REGISTRY)


@pytest.mark.parametrize("op", OPS)
def test_interpreter_has_a_reference(op):
    assert callable(REGISTRY[op].numpy), op


@pytest.mark.parametrize("table", [codegen, ptx_lower], ids=["llvm", "ptx"])
@pytest.mark.parametrize("op", OPS)
def test_backend_rule_or_refusal(table, op):
    how = table.coverage(op)
    assert how in ("kernel", "no kernel") or how.startswith("refused: "), (op, how)


@pytest.mark.parametrize("table", [codegen, ptx_lower], ids=["llvm", "ptx"])
def test_an_op_without_a_rule_is_reported(table, monkeypatch):
    from adjit.ops.registry import Op
    monkeypatch.setitem(REGISTRY, "no_such_rule", Op("no_such_rule", None, None, arity=1))
    with pytest.raises(NotImplementedError, match="no_such_rule"):
        table.coverage("no_such_rule")


@pytest.mark.parametrize("op", OPS)
def test_elementwise_records_make_their_public_function(op):
    import adjit as aj
    spec = REGISTRY[op]
    if spec.elementwise and spec.public:
        fn = getattr(aj, spec.public)
        assert fn.__name__ == spec.public and spec.public in aj.__all__
