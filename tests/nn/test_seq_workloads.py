"""The W7/W8 benchmark workloads: the hand-written numpy reference against finite
differences, and the peers (PyTorch eager, torch.compile, JAX jit; benchmark-only extras,
tested where installed) against the reference at the workloads' fixed init."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import seq_workloads as S  # noqa: E402
from workloads import as_float64, make_data, select  # noqa: E402


def _wl(key):
    return select([key])[0]


@pytest.mark.parametrize("key", ["W7", "W8"])
def test_numpy_reference_matches_finite_differences(key):
    wl = _wl(key)
    data = as_float64(make_data(wl))
    x, t, P = data["inputs"]["x"], data["inputs"]["t"], data["params"]
    fn = S.w7_value_and_grad if wl.kind == "w7" else S.w8_value_and_grad
    out = fn(x, t, P)
    assert len(out) == 1 + len(wl.param_names())
    rng = np.random.default_rng(0)
    for name, g in zip(wl.param_names(), out[1:]):
        assert g.shape == P[name].shape
        d = rng.standard_normal(P[name].shape)
        h = 1e-6
        up = fn(x, t, {**P, name: P[name] + h * d}, True)[0]
        down = fn(x, t, {**P, name: P[name] - h * d}, True)[0]
        fd, an = (up - down) / (2 * h), float(np.sum(g * d))
        assert abs(fd - an) <= 1e-6 * (abs(fd) + abs(an)) + 1e-12, (name, fd, an)
    if wl.kind == "w7":      # the embedding gradient touches only the rows that were read
        rows = np.flatnonzero(np.abs(out[1]).sum(axis=1))
        assert set(rows) <= set(np.unique(x))


@pytest.mark.parametrize("key", ["W7", "W8"])
@pytest.mark.parametrize("peer", ["torch eager", "torch.compile", "jax jit"])
def test_peers_agree_with_the_reference(key, peer):
    if peer.startswith("torch"):
        pytest.importorskip("torch", reason="torch is a benchmark-only extra")
        import peers_torch as mod
        make = mod.make_eager if peer == "torch eager" else mod.make_compiled
    else:
        pytest.importorskip("jax", reason="jax is a benchmark-only extra")
        import peers_jax as mod
        make = mod.make_jit
    import peers
    import timing
    wl = _wl(key)
    data = make_data(wl)
    ref = peers.reference(wl, as_float64(data))
    ok, why = timing.check(make(wl, data), ref, wl.rtol)
    assert ok, why
