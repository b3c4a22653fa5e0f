"""The examples in examples/ and `adjit demo` run, and their losses go down."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["--quiet", "--opt-level", "1"]


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, **kw):
    # the demo prints W̄ and ∘: UTF-8 both ways, whatever this process's locale says
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable] + args, capture_output=True, encoding="utf-8",
                          cwd=ROOT, env=env, timeout=120, **kw)


def test_xor_learns_all_four_cases():
    out = example("xor").main(["--epochs", "300"] + FAST)
    hist = out["history"]
    assert hist.loss[-1] < 0.1 * hist.loss[0]
    assert out["accuracy"] == 1.0


def test_logistic_l2_finds_the_boundary():
    out = example("logistic_l2").main(["--epochs", "20"] + FAST)
    hist = out["history"]
    assert hist.loss[-1] < hist.loss[0]
    assert 0.2 < -out["b"] / out["w"] < 0.8            # the labels switch at x = 0.5
    assert hist.val_accuracy[-1] > 0.8


def test_mlp_regression_fits_the_curve(tmp_path):
    out = example("mlp_regression").main(["--epochs", "40", "--plot", str(tmp_path / "c.png")]
                                         + FAST)
    hist = out["history"]
    assert hist.loss[-1] < 0.2 * hist.loss[0]
    assert os.path.getsize(tmp_path / "c.png") > 0


@pytest.mark.slow
def test_digits_short_run_with_the_torch_comparison(capsys):
    pytest.importorskip("torch", reason="the PyTorch comparison needs torch (a benchmark extra)")
    out = example("digits").main(["--epochs", "2"] + FAST)
    assert out["history"].loss[-1] < out["history"].loss[0]
    text = capsys.readouterr().out
    assert "PyTorch eager" in text and "faster" in text
    assert len(out["torch"]["seconds"]) == 2


@pytest.mark.slow
def test_digits_reaches_97_percent(tmp_path):
    out = example("digits").main(["--no-torch", "--save", str(tmp_path / "d.npz")] + FAST)
    assert out["accuracy"] >= 0.97
    assert out["history"].loss[-1] < 0.1 * out["history"].loss[0]
    assert os.path.exists(tmp_path / "d.npz")


def test_examples_run_as_scripts():
    res = run(["examples/xor.py", "--epochs", "50"] + FAST)
    assert res.returncode == 0, res.stderr
    assert "xor(1, 1) = 0" in res.stdout and "accuracy" in res.stdout


def test_adjit_demo_command():
    cli = os.path.join(ROOT, "src", "adjit", "cli.py")
    cmd = ["-m", "adjit.cli", "demo"] if os.path.exists(cli) else ["-m", "adjit.train.demo"]
    res = run(cmd + ["--epochs", "3", "--timing-seconds", "0.05"])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "W̄1 = xᵀ z̄" in out or "adjoint" in out      # the backward equations (or listing)
    assert "test accuracy" in out and "compiled is" in out and "interpreted (numpy)" in out
    assert "3/3" in res.stderr                            # the progress bar (tqdm is installed)


def test_demo_help(capsys):
    from adjit.train import demo
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--help"])
    assert exit_.value.code == 0 and "--epochs" in capsys.readouterr().out


def test_demo_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    from adjit.train import demo
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert demo.main(["--epochs", "1"]) == 1
    assert 'pip install "adjit[demo]"' in capsys.readouterr().err
