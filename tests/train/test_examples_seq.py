"""The sequence examples (examples/rnn.py, examples/attention.py) reach their stated
accuracy at their fixed seed on the llvm backend, and the accuracy is earned: with a
learning rate too small to move the weights, the same runs stay at chance."""
import pytest

from test_examples import FAST, example


@pytest.fixture(scope="module")
def rnn():
    return example("rnn")


@pytest.fixture(scope="module")
def attention():
    return example("attention")


def test_rnn_learns_parity_and_generalizes_to_longer_sequences(rnn):
    # the docs state 100% at seed 0 (parity of 16 bits, and of 64 bits with the same weights)
    out = rnn.main(FAST)
    hist = out["history"]
    assert hist.loss[-1] < 0.01 * hist.loss[0]
    assert out["accuracy"] >= 0.99                   # the parity of all 16 bits
    assert out["per_step_accuracy"] >= 0.99          # the Trainer's val accuracy, every prefix
    assert out["long_accuracy"] >= 0.99              # 64 bits: never seen in training


def test_rnn_untrained_is_at_chance(rnn):
    out = rnn.main(["--lr", "1e-7", "--epochs", "3"] + FAST)
    assert out["accuracy"] < 0.6 and out["long_accuracy"] < 0.6


def test_attention_learns_to_sort(attention):
    # the docs state 99.8% of tokens and 98.6% of whole sequences at seed 0
    out = attention.main(FAST)
    hist = out["history"]
    assert hist.loss[-1] < 0.05 * hist.loss[0]
    assert out["accuracy"] >= 0.98
    assert out["sequence_accuracy"] >= 0.90


def test_attention_learns_to_reverse(attention, capsys):
    out = attention.main(["--task", "reverse", "--epochs", "3"] + FAST)
    assert out["accuracy"] >= 0.99 and out["sequence_accuracy"] >= 0.95
    assert "sequences reversed" in capsys.readouterr().out


def test_attention_untrained_is_at_chance(attention):
    # chance is 1/10 per token; sorting's targets are skewed, so allow a little more
    out = attention.main(["--lr", "1e-7", "--epochs", "3"] + FAST)
    assert out["accuracy"] < 0.3 and out["sequence_accuracy"] < 0.01
