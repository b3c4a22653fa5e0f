"""The W11 benchmark workload (per-example Jacobian of W2's 10 outputs w.r.t. its 784
inputs): the hand-written numpy Jacobian against finite differences and against
aj.jacobian (interpreter, float64; llvm, float32), and the peers (jax.jacrev / jacfwd under
jit(vmap), torch.func vmap(jacrev); benchmark-only extras, tested where installed) against
the float64 reference, through the factories run.py uses."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import jac_workloads as J  # noqa: E402
from workloads import as_float64, make_data, select  # noqa: E402

WL = select(["W11"])[0]


def _data():
    return make_data(WL)


def test_numpy_reference_matches_finite_differences():
    d = as_float64(_data())
    P, x = d["params"], d["inputs"]["x"][:3]
    got = J.numpy_jacobian(x, **P)
    assert got.shape == (3, 10, 784)

    def f(v):
        return 1.0 / (1.0 + np.exp(-(v @ P["W1"] + P["b1"]))) @ P["W2"] + P["b2"]
    rng = np.random.default_rng(0)
    for b in range(3):
        for j in rng.choice(784, 6, replace=False):
            e = np.zeros_like(x)
            e[b, j] = 1e-6
            fd = (f(x + e) - f(x - e)) / 2e-6
            np.testing.assert_allclose(got[b, :, j], fd[b], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_adjit_entry_matches_the_reference(backend):
    data = _data()
    ref = J.numpy_step("w11", as_float64(data))()
    if backend == "interp":      # float64 graph: equal to the reference to rounding
        import adjit as aj
        f = aj.compile(J.adjit_jacobian(aj, "float64"), backend="interp")
        d64 = as_float64(data)
        np.testing.assert_allclose(f(**d64["inputs"], **d64["params"]), ref[0],
                                   rtol=1e-10, atol=1e-12)
        return
    impl = J.make_adjit(WL, data, backend)
    out = impl.to_numpy(impl.fn())[0]
    assert out.shape == (64, 10, 784) and out.dtype == np.float32
    scale = np.max(np.abs(ref[0]))
    assert np.max(np.abs(out - ref[0])) <= WL.rtol * scale


@pytest.mark.parametrize("entry", ["jacrev", "jacfwd", "torch"])
def test_peers_match_the_reference(entry):
    if entry == "torch":
        pytest.importorskip("torch")
        make = J.make_torch
    else:
        pytest.importorskip("jax")
        make = lambda wl, d: J.make_jax(wl, d, entry)  # noqa: E731
    data = _data()
    ref = J.numpy_step("w11", as_float64(data))()[0]
    impl = make(WL, data)
    out = impl.to_numpy(impl.fn())[0]
    assert out.shape == ref.shape
    assert np.max(np.abs(out - ref)) <= WL.rtol * np.max(np.abs(ref))
