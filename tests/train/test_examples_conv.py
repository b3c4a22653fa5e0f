"""examples/lenet.py (the lecture's LeNet on the 8×8 digits) reaches the accuracy its
docstring states at its fixed seed on the llvm backend, and the accuracy is earned: with a
learning rate too small to move the weights, the same run stays near chance."""
import os
import re
import sys

import pytest

from test_examples import FAST, ROOT, example, run

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")


@pytest.fixture(scope="module")
def lenet():
    return example("lenet")


def test_lenet_reaches_its_stated_accuracy_on_the_digits(lenet):
    # the docstring states 99.2% at seed 1; the issue asks for at least 98.5%
    out = lenet.main(FAST)
    hist = out["history"]
    assert out["accuracy"] >= 0.985
    assert hist.loss[-1] < 0.01 * hist.loss[0]
    assert hist.val_accuracy[-1] == out["accuracy"]      # the Trainer's evaluation agrees


def test_lenet_untrained_is_at_chance(lenet):
    out = lenet.main(["--lr", "1e-7", "--epochs", "2"] + FAST)
    assert out["accuracy"] < 0.3


def test_lenet_layers_are_the_lectures(lenet):
    net = lenet.LeNet()
    shapes = {p.name: p.shape for p in net.params}
    assert shapes == {"Wconv1": (6, 1, 3, 3), "bconv1": (6,), "Wconv2": (16, 6, 3, 3),
                      "bconv2": (16,), "Wfc1": (64, 120), "bfc1": (120,), "Wfc2": (120, 84),
                      "bfc2": (84,), "Wfc3": (84, 10), "bfc3": (10,)}


# --- adjit demo --model lenet --------------------------------------------------------------
def test_demo_lenet_trains_to_the_stated_accuracy_and_shows_the_conv_backward(capsys):
    from adjit.train import demo
    assert demo.main(["--model", "lenet", "--no-progress", "--timing-seconds", "0"]) == 0
    out = capsys.readouterr().out
    # x̄ of the second convolution and W̄ of the first (window attributes may follow a ";")
    assert re.search(r"p̄1 += conv_transpose\(z̄2, Wconv2[;)]", out), out
    assert re.search(r"conv_weight\(x, z̄1[;)]", out), out
    assert "epoch 40/40" in out
    acc = float(re.search(r"test accuracy (\d+\.\d)%", out).group(1))
    assert acc >= 98.5


def test_demo_lenet_nets_match_the_example(lenet):
    from adjit.train.demo_lenet import lenet as demo_net
    assert [(p.name, p.shape) for p in demo_net().params] == \
        [(p.name, p.shape) for p in lenet.LeNet().params]


def test_adjit_demo_model_lenet_command_with_the_progress_bar():
    res = run(["-m", "adjit.cli", "demo", "--model", "lenet", "--epochs", "2",
               "--timing-seconds", "0.05"])
    assert res.returncode == 0, res.stderr
    assert "conv_transpose(" in res.stdout and "test accuracy" in res.stdout
    assert "compiled is" in res.stdout
    assert "2/2" in res.stderr                            # the progress bar (tqdm is installed)


def test_demo_lenet_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    from adjit.train import demo
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert demo.main(["--model", "lenet", "--epochs", "1"]) == 1
    assert 'pip install "adjit[demo]"' in capsys.readouterr().err
