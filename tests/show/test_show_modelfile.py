"""Model files: the shipped examples load, their gradients are right, bad files are named."""
from __future__ import annotations

import pytest

import adjit as aj
from adjit.show import ModelFileError, load_model, name_nodes
from goldens import MODELS, model


@pytest.mark.parametrize("name", ["lecture_scalar", "logistic", "softmax_regression", "mlp"])
def test_shipped_models_load_and_differentiate(name):
    m = model(name)
    assert m.loss is m.outputs[0] and len(m.outputs) == 1 + len(m.wrt)
    leaves = {n.name for n in aj.Graph(m.outputs).inputs}
    assert set(m.example) == leaves
    if name != "mlp":     # float64 models: gradients against finite differences
        aj.check_grads(m.loss, m.wrt, m.example, rtol=1e-6)


def test_variables_name_the_nodes():
    m = model("mlp")
    names = {n.name for n in aj.Graph(m.outputs).order() if n.name}
    assert {"z", "h", "y", "L", "x", "W1"} <= names
    assert "loss" not in names                 # `loss = L`: the first name wins
    x = aj.input("x", ())
    h = aj.sin(x)
    assert name_nodes({"h": h, "_private": aj.cos(x), "x": x, "k": 3}) == 1 and h.name == "h"


def write(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("import adjit as aj\nx = aj.input('x', ())\n", "defines neither `loss` nor `outputs`"),
    ("x = (\n", "syntax error at line 1"),
    ("raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
    ("import adjit as aj\nloss = aj.input('x', (3,))\n", "`loss` must be a scalar float node"),
    ("import adjit as aj\nx = aj.input('x', ())\nloss = x * x\n", "`wrt` must be a non-empty"),
    ("import adjit as aj\nx = aj.input('x', ())\nloss = x * x\nwrt = [x]\nexample = [1]\n",
     "`example` must be a dict"),
    ("import adjit as aj\noutputs = [1, 2]\n", "`outputs` must be a node"),
    ("import adjit as aj\nx = aj.input('x', ())\nloss = x * x\nwrt = [x]\npeers = {'a': 1}\n",
     "`peers` must be a dict of callables"),
])
def test_bad_model_files_raise_one_clear_error(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert path in str(info.value)


def test_missing_model_file():
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(str(MODELS / "no_such_model.py"))


def test_outputs_convention_and_default_wrt(tmp_path):
    path = write(tmp_path, "import adjit as aj\nw = aj.param('w', ())\nx = aj.input('x', ())\n"
                 "loss = (w * x) ** 2\n")
    m = load_model(path)
    assert [v.name for v in m.wrt] == ["w"] and m.example is None and m.peers == {}
    path = write(tmp_path, "import adjit as aj\nx = aj.input('x', ())\noutputs = aj.sin(x)\n")
    m = load_model(path)
    assert m.loss is None and len(m.outputs) == 1 and m.outputs[0].op == "sin"
