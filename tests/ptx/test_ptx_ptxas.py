"""The PTX users get (default opt level) is accepted by ptxas for sm_80 and sm_90.

Two modules are assembled: the reference models (MLP with squared error, float32 and float64;
softmax regression with integer labels), forward and backward; and every op of the registry,
forward and backward (elementwise ops fused into a few kernels, as the default pipeline does),
with the structural ops and every reduction and matmul path.
"""
import numpy as np
import pytest

import adjit as aj
from adjit.backends.ptx import ARCHES, assemble, split_kernels
from adjit.backends.ptx.sources import ptxas_path, registers
from adjit.ops.contract import matmul_sum
from ptx_helpers import every_elementwise_op_fused, mlp, softmax_regression

needs_ptxas = pytest.mark.skipif(ptxas_path() is None,
                                 reason="ptxas (CUDA toolkit) is not on the PATH")


def _every_op():
    outs = []
    for dtype, tag in (("float32", "32"), ("float64", "64")):
        outs += every_elementwise_op_fused(dtype, tag)
    x = aj.input("s", (None, 3, 4), "float32")
    lab = aj.input("lab", (None,), "int32")
    v = aj.param("v", (4,), "float64")
    outs += [aj.transpose(x, (2, 0, 1)), aj.cast(x, "float64") + v, aj.cast(x > 0.5, "float32"),
             aj.cast(lab, "float64"), aj.one_hot(lab, 5, "float32"), aj.mean(x, axis=0),
             aj.stop_gradient(x) + aj.const(np.arange(4.0, dtype="float32")),
             aj.reshape(x, (None, 12)), aj.max(x), aj.sum(x, axis=(0, 2)), aj.max(x, axis=2)]
    w = aj.param("w", (12, 6), "float64")
    xv = aj.reshape(aj.cast(x, "float64"), (None, 12))
    outs += [aj.transpose(w) @ aj.transpose(xv), aj.grad(aj.sum(aj.tanh(xv @ w)), w)]
    # matmul_sum: a weight gradient over a sequence (left operand transposed), the other
    # operand forms, and a sum of products aᵀb folded into one
    w3 = aj.param("w3", (4, 5), "float32")
    y = aj.input("y", (None, 3, 4), "float32")
    outs += [aj.grad(aj.sum(aj.tanh(x @ w3)), w3), matmul_sum(x, aj.swapaxes(y, -1, -2)),
             aj.transpose(x[:, 0]) @ y[:, 1] + aj.transpose(x[:, 2]) @ y[:, 0]]
    # convolutions: unfold (forward, weight gradient) and fold (input gradient) kernels
    xc, Wc = aj.input("xc", (None, 4, 7, 5), "float32"), aj.param("Wc", (6, 2, 3, 2), "float32")
    zc = aj.conv2d(xc, Wc, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    outs += [zc] + aj.grad(aj.sum(aj.tanh(zc)), [xc, Wc])
    # convolutions computed directly (ops/conv_direct.py): one input channel, and 16 output
    # channels (forward and weight gradient each)
    x1, W1 = aj.input("x1", (None, 1, 6, 7), "float64"), aj.param("W1", (3, 1, 3, 2), "float64")
    W16 = aj.param("W16", (16, 3, 2, 2), "float64")
    z16 = aj.conv2d(aj.conv2d(x1, W1, padding=1), W16)
    outs += [z16] + aj.grad(aj.sum(aj.tanh(z16)), [x1, W1, W16])
    gc = aj.input("gc", (None, 3, 4), "float64")
    outs += [aj.conv_transpose1d(gc, aj.param("Vc", (3, 2, 3), "float64"), stride=2)]
    # pooling: max_pool, avg_pool, and their gradients (pool_argmax + scatter_add,
    # avg_pool_grad) in both float types
    for dtype in ("float32", "float64"):
        im = aj.input("im" + dtype[-2:], (None, 2, 5, 6), dtype)
        pm = aj.max_pool2d(im, 3, 2, 1)
        pa = aj.avg_pool2d(im, 2, 1, 1, count_include_pad=False)
        outs += [pm, pa, aj.grad(aj.sum(pm * pm) + aj.sum(pa * pa), im)]
    return outs


@pytest.fixture(scope="module")
def compiled():
    return {"mlp_f32": aj.compile(mlp("float32"), backend="ptx"),
            "mlp_f64": aj.compile(mlp("float64"), backend="ptx"),
            "softmax_f32": aj.compile(softmax_regression("float32"), backend="ptx"),
            "every_op": aj.compile(_every_op(), backend="ptx")}


def test_ptx_is_emitted_without_a_gpu(compiled):
    f = compiled["mlp_f32"]
    assert f.ptx.startswith("//") and ".target sm_80" in f.ptx
    kernels = split_kernels(f.ptx)
    assert set(kernels) == {L.kernel for L in f.launches} == set(f.ptx_kernels)
    assert all(body.startswith(".visible .entry") for body in kernels.values())
    assert "bar.sync" in "".join(v for k, v in kernels.items() if "matmul" in k)
    assert ".shared" in f.ptx and "fma.rn.f32" in f.ptx
    assert ".target sm_90" in f.ptx_for("sm_90")
    assert "matmul" in f.launch_plan and "T(" in f.launch_plan   # transposed products


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("which", ["mlp_f32", "mlp_f64", "softmax_f32", "every_op"])
def test_ptxas_accepts(compiled, which, arch):
    f = compiled[which]
    report = assemble(f.ptx_for(arch), arch)
    used = registers(report)
    assert set(used) == {L.kernel for L in f.launches}
    assert max(used.values()) <= 255
    if which == "every_op":     # the window kernels of the convolutions are among them
        assert {"unfold", "fold"} <= {k.split("_", 1)[1] for k in used if "_" in k}


def test_arches_are_checked():
    assert {"sm_80", "sm_90"} <= set(ARCHES)
    x = aj.input("x", (None,))
    with pytest.raises(ValueError, match="sm_12"):
        aj.compile(x * 2.0, backend="ptx", arch="sm_12")


def test_cli_prints_the_ptx(capsys):
    from pathlib import Path
    from adjit.cli import main
    model = Path(__file__).resolve().parents[2] / "examples" / "models" / "mlp.py"
    assert main(["ir", str(model), "--ptx", "--arch", "sm_90", "--opt-level", "1"]) == 0
    out = capsys.readouterr().out
    assert ".target sm_90" in out and ".visible .entry" in out and "bar.sync" in out
