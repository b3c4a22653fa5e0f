"""The W12 benchmark (per-example gradients of W3's loss): the numpy reference against a
loop of per-example finite differences, adjit's entry (interpreter and llvm) against it,
and the peers (JAX jit(vmap(value_and_grad)), torch.func vmap(grad_and_value):
benchmark-only extras, tested where installed) against it and against adjit."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import pex_bench  # noqa: E402
from workloads import as_float64, make_data, select  # noqa: E402


def _data(dtype="float32"):
    wl = select(["W12"])[0]
    data = make_data(wl)
    return wl, data if dtype == "float32" else as_float64(data)


def _check(out, ref, rtol):
    assert len(out) == len(ref) == 7
    for a, b in zip(out, ref):
        assert np.shape(a) == np.shape(b)
        scale = max(np.abs(b).max(), 1e-30)
        assert np.abs(np.asarray(a, np.float64) - b).max() <= rtol * scale


def test_reference_matches_finite_differences():
    wl, data = _data("float64")
    ref = pex_bench.reference(wl, data)
    assert ref[0].shape == (32,) and ref[1].shape == (32, 64, 128)
    rng, h = np.random.default_rng(0), 1e-6
    names = list(data["params"])
    for k, name in enumerate(names):
        d = rng.standard_normal(data["params"][name].shape)

        def losses(s):
            p = dict(data, params={**data["params"], name: data["params"][name] + s * d})
            return pex_bench.reference(wl, p)[0]
        fd = (losses(h) - losses(-h)) / (2 * h)
        an = np.tensordot(ref[1 + k], d, axes=d.ndim)
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_adjit_entry_matches_reference(backend):
    wl, data = _data()
    impl = pex_bench.make_adjit(wl, data, backend)
    _check(impl.to_numpy(impl.fn()), pex_bench.reference(wl, as_float64(data)), 1e-4)


@pytest.mark.parametrize("peer", ["jax", "torch"])
def test_peers_match_reference_and_adjit(peer):
    pytest.importorskip(peer)
    wl, data = _data()
    impl = (pex_bench.make_jax if peer == "jax" else pex_bench.make_torch)(wl, data)
    out = impl.to_numpy(impl.fn())
    _check(out, pex_bench.reference(wl, as_float64(data)), 1e-4)
    a = pex_bench.make_adjit(wl, data, "llvm")
    _check(a.to_numpy(a.fn()), [np.asarray(o, np.float64) for o in out], 1e-4)
