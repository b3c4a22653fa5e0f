"""examples/lenet.py (the lecture's LeNet on the 8×8 digits) reaches the accuracy its
docstring states at its fixed seed on the llvm backend, and the accuracy is earned: with a
learning rate too small to move the weights, the same run stays near chance."""
import pytest

from test_examples import FAST, example

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
