"""The ``adjit`` command, run as a user runs it (subprocesses) on the shipped model files.

The subprocesses start together (each pays Python's and adjit's start-up), and the
finer cases run ``adjit.cli.main`` in-process.
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from adjit.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every command at once; returns {key: (exit status, stdout, stderr)}."""
    tmp = tmp_path_factory.mktemp("cli")
    py = [sys.executable, "-m", "adjit.cli"]
    commands = {
        "show": py + ["show", str(MODELS / "logistic.py")],
        "explain": py + ["explain", str(MODELS / "lecture_scalar.py"), "--example"],
        "dot": py + ["dot", str(MODELS / "mlp.py"), "-o", str(tmp / "mlp.dot")],
        "ir": py + ["ir", str(MODELS / "lecture_scalar.py"), "--optimized"],
        "bench": py + ["bench", str(MODELS / "lecture_scalar.py"), "--seconds", "0.05",
                       "--plot", str(tmp / "bench.png")],
    }
    procs = {key: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, encoding="utf-8")
             for key, cmd in commands.items()}
    out = {}
    for key, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[key] = (p.returncode, stdout, stderr)
    out["tmp"] = tmp
    return out


def test_show(runs):
    rc, out, err = runs["show"]
    assert rc == 0, err
    assert "graph [forward]" in out and "graph [traced]" in out and "graph [fuse]" in out
    assert "simplification report" in out and "fold-constants×" in out


def test_explain_with_the_worked_example(runs):
    rc, out, err = runs["explain"]
    assert rc == 0, err
    assert "x̄1 = f̄ x2 + f̄ / x1" in out
    rows = {ln.split("=")[0].strip(): ln.rsplit("=", 1)[1].strip() for ln in out.splitlines()
            if ln.startswith("  x̄")}
    assert float(rows["x̄1"]) == 5.5                                      # 1/x1 + x2
    assert float(rows["x̄2"]) == pytest.approx(2 - math.cos(5), abs=5e-4)  # 1.716


def test_dot(runs):
    rc, out, err = runs["dot"]
    assert rc == 0, err
    assert (runs["tmp"] / "mlp.dot").read_text(encoding="utf-8").startswith("digraph adjit {")


def test_ir(runs):
    rc, out, err = runs["ir"]
    assert rc == 0, err
    assert "define" in out and "adjit_entry" in out


def test_bench(runs):
    rc, out, err = runs["bench"]
    assert rc == 0, err
    assert "adjit llvm" in out and "adjit interp" in out and "vs interp" in out
    assert "agreement: llvm vs interp" in out
    assert (runs["tmp"] / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_is_dispatched_with_its_arguments(monkeypatch, capsys):
    demo = types.ModuleType("adjit.train.demo")
    seen = []
    demo.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "adjit.train.demo", demo)
    assert main(["demo", "--epochs", "2", "--help"]) == 7      # --help is the demo's own
    assert seen == [["--epochs", "2", "--help"]]


def test_missing_model_file_and_graphviz_are_one_line(tmp_path, monkeypatch, capsys):
    assert main(["show", str(tmp_path / "missing.py")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("adjit: error: model file") and "missing.py" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("PATH", str(tmp_path))                 # a PATH without Graphviz
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # nor matplotlib to draw instead
    assert main(["dot", str(MODELS / "logistic.py"), "-o", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err
    assert "sudo apt install graphviz" in err and len(err.strip().splitlines()) == 1


# --- in-process ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["show", "explain", "dot", "ir", "bench", None])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main(([command] if command else []) + ["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: adjit {command or ''}".rstrip())


@pytest.mark.parametrize("form, marker", [("latex", r"\bar{W}_{1} &= {x}^{\top} \bar{z}"),
                                          ("markdown", r"| $\bar{W}_{1} = {x}^{\top} \bar{z}$ |")])
def test_explain_forms(form, marker, capsys):
    assert main(["explain", str(MODELS / "mlp.py"), "--form", form]) == 0
    assert marker in capsys.readouterr().out


def write(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_bench_peers_where_installed(tmp_path, capsys):
    path = write(tmp_path, """
        import numpy as np
        import adjit as aj
        x = aj.input("x", (None, 3))
        w = aj.param("w", (3,))
        loss = aj.sum(aj.tanh(x @ w))
        wrt = [w]
        example = {"x": np.ones((4, 3)), "w": np.full(3, 0.1)}

        def numpy_peer(values):
            def step():
                z = np.tanh(values["x"] @ values["w"])
                return [z.sum(), values["x"].T @ (1 - z * z)]
            return step

        def missing_peer(values):
            import no_such_library_for_adjit  # noqa: F401

        peers = {"numpy": numpy_peer, "nosuch": missing_peer}
    """)
    assert main(["bench", path, "--seconds", "0.02", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "numpy (peer)" in out and "agreement: numpy loss vs adjit" in out
    assert "nosuch (peer)" in out and "not installed (no_such_library_for_adjit)" in out
    assert main(["bench", path, "--seconds", "0.02", "--no-progress", "--no-peers"]) == 0
    assert "peer" not in capsys.readouterr().out


def test_command_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    scalar = str(MODELS / "lecture_scalar.py")
    no_example = write(tmp_path, "import adjit as aj\nx = aj.input('x', ())\nloss = x * x\n"
                                 "wrt = [x]\n")
    cases = [
        (["bench", no_example], "defines no `example`"),
        (["explain", no_example, "--example"], "give the inputs as --example NAME=VALUE"),
        (["explain", scalar, "--example", "x9=1"], "no input or parameter named 'x9'"),
        (["explain", scalar, "--example", "x1=abc"], "'abc' is not a number"),
        (["explain", scalar, "--example", "x1"], "expects NAME=VALUE"),
        (["explain", scalar, "--stage", "nope"], "unknown stage 'nope'"),
        (["show", scalar, "--stage", "nope"], "unknown stage 'nope'"),
        (["dot", scalar, "-o", str(tmp_path / "a.jpg")], "use a .svg, .png, .pdf or .dot"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # as if it were not installed
    assert main(["bench", scalar, "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot needs matplotlib: pip install matplotlib" in capsys.readouterr().err


def test_explain_example_values_override(capsys):
    assert main(["explain", str(MODELS / "lecture_scalar.py"), "--example", "x1=4"]) == 0
    out = capsys.readouterr().out
    assert "worked example at x1 = 4, x2 = 5" in out
    assert out.rstrip().endswith("= 5.25")                    # x̄1 = 1/4 + 5


def test_ir_asm_and_ptx_in_process(capsys):
    scalar = str(MODELS / "lecture_scalar.py")
    assert main(["ir", scalar, "--asm", "--opt-level", "1"]) == 0
    assert "adjit_entry" in capsys.readouterr().out
    assert main(["ir", scalar, "--ptx", "--arch", "sm_90", "--opt-level", "1"]) == 0
    ptx = capsys.readouterr().out
    assert ".target sm_90" in ptx and ".entry k0_fused" in ptx
    assert main(["ir", scalar, "--ptx", "--arch", "sm_12"]) == 2
    assert "unsupported GPU architecture 'sm_12'" in capsys.readouterr().err
