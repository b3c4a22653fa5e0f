"""Layers point down: no module imports one of a higher layer (lazy imports included).

ir, gcpause < ops < frontend < autodiff, forward, per_example, jacobians < passes, binding, updates < backends < compiled, nancheck,
machine < gradcheck < show < nn, optim, train < cli.  One exception, by design: op records write
their VJPs (and ops' public functions their argument handling) with front-end functions,
so ``ops`` may import ``frontend``.
"""
import ast
import pathlib

import adjit

LAYER = {"ir": 0, "gcpause": 0, "ops": 1, "frontend": 2, "autodiff": 3, "forward": 3,
         "per_example": 3, "jacobians": 3, "passes": 4, "binding": 4,
         "updates": 4, "backends": 5, "nancheck": 6, "compiled": 6, "machine": 6, "gradcheck": 7, "show": 8,
         "nn": 9, "optim": 9, "train": 9, "random": 9, "cli": 10, "__init__": 11}
ALLOWED = {("ops", "frontend")}
ROOT = pathlib.Path(adjit.__file__).parent


def _layer(parts):
    return parts[0].removesuffix(".py") if parts else None


def _imports(path: pathlib.Path):
    rel = path.relative_to(ROOT).parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(rel[:-1])[:len(rel) - node.level]
            target = base + (node.module.split(".") if node.module else [])
            if not target:
                target = [node.names[0].name]
        elif node.module and node.module.startswith("adjit"):
            target = node.module.split(".")[1:] or [node.names[0].name]
        else:
            continue
        yield node.lineno, target


def test_layers_point_down():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        me = _layer(path.relative_to(ROOT).parts)
        assert me in LAYER, f"{path}: place this module in a layer of {__file__}"
        for line, target in _imports(path):
            to = _layer(target)
            if to in LAYER and LAYER[to] > LAYER[me] and (me, to) not in ALLOWED:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {'.'.join(target)}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_backends_declare_what_they_offer():
    from adjit.backends import BACKENDS, get_backend
    from adjit.backends.protocol import Backend, Runner
    for name in BACKENDS:
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
    import adjit as aj
    import numpy as np
    x = aj.input("x", (None,))
    for name in ("interp", "llvm"):
        f = aj.compile(aj.sum(x * x), backend=name)
        assert isinstance(f._impl, Runner)
        assert float(f(x=np.array([1.0, 2.0]))) == 5.0
        for view in f._impl.views:
            getattr(f, view)
    f = aj.compile(aj.sum(x * x), backend="interp")
    try:
        f.llvm_ir
    except AttributeError as e:
        assert "llvm_ir" in str(e)
    else:
        raise AssertionError("the interpreter declares no llvm_ir view")
