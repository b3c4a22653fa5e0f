"""The W9/W10 benchmark workloads (LeNet-5, residual stage): the hand-written numpy
reference against finite differences, adjit's model (interpreter and llvm) against the
reference, and the peers (PyTorch eager, torch.compile, JAX jit; benchmark-only extras,
tested where installed) against the reference and against adjit, on a smaller batch."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import conv_workloads as C  # noqa: E402
from workloads import as_float64, make_data, select  # noqa: E402


def _small(key, batch, dtype="float64"):
    """The workload's data cut to ``batch`` examples (W10 also to 8×8 images: the model
    takes any spatial size), in float64 or float32."""
    wl = select([key])[0]
    data = make_data(wl)
    x, t = data["inputs"]["x"][:batch], data["inputs"]["t"][:batch]
    if wl.kind == "w10":
        x = x[:, :, 3:11, 5:13]
    cast = lambda a: np.asarray(a, dtype)  # noqa: E731
    return wl, cast(x), cast(t), {k: cast(v) for k, v in data["params"].items()}


def _fn(wl):
    return C.w9_value_and_grad if wl.kind == "w9" else C.w10_value_and_grad


@pytest.mark.parametrize("key", ["W9", "W10"])
def test_numpy_reference_matches_finite_differences(key):
    wl, x, t, P = _small(key, 5)
    fn = _fn(wl)
    out = fn(x, t, P)
    assert len(out) == 1 + len(wl.param_names())
    rng = np.random.default_rng(0)
    for name, g in zip(wl.param_names(), out[1:]):
        assert g.shape == P[name].shape
        assert np.abs(g).max() > 0, name
        d = rng.standard_normal(P[name].shape)
        an, fds = float(np.sum(g * d)), []
        # thousands of ReLUs sit near their kink: a step may cross one (W10's b1_conv2_W
        # does at h = 1e-6), which only a smaller step avoids; one of two steps must agree
        for h in (1e-6, 1e-7):
            up = fn(x, t, {**P, name: P[name] + h * d}, True)[0]
            down = fn(x, t, {**P, name: P[name] - h * d}, True)[0]
            fds.append((up - down) / (2 * h))
        assert min(abs(fd - an) / (abs(fd) + abs(an)) for fd in fds) <= 1e-6, (name, fds, an)


def test_flop_counts():
    """Hand counts: W9 forward 15.05 + 30.72 + 7.54 M; W10 four 2.416 G convolutions."""
    vg, fwd = C.flops("w9")
    assert fwd == 2 * 64 * (6 * 784 * 25 + 16 * 100 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
    assert vg == 3 * fwd - 2 * 64 * 6 * 784 * 25
    vg, fwd = C.flops("w10")
    conv = 2 * 32 * 64 * 1024 * 64 * 9
    assert fwd == 4 * conv + 2 * 32 * 64 * 10 and vg == 3 * fwd - conv


def _adjit(wl, backend, dtype):
    import adjit as aj
    loss, params = C.adjit_loss(aj, wl.kind, dtype, size=8 if wl.kind == "w10" else None)
    return aj.compile([loss] + list(aj.grad(loss, params)), backend=backend)


def _close(got, want, rtol):
    for i, (g, r) in enumerate(zip(got, want)):
        g = np.asarray(g, dtype=np.float64)
        assert g.shape == np.shape(r), i
        scale = max(float(np.max(np.abs(r))), 1e-30)
        err = float(np.max(np.abs(g - r))) / scale
        assert err <= rtol, (i, err)


@pytest.mark.parametrize("key", ["W9", "W10"])
@pytest.mark.parametrize("backend", ["interp", "llvm"])
def test_adjit_model_matches_the_reference(key, backend):
    wl, x, t, P = _small(key, 3)
    f = _adjit(wl, backend, "float64")
    _close(f(x=x, t=t, **P), _fn(wl)(x, t, P), 1e-9)


@pytest.mark.parametrize("key", ["W9", "W10"])
@pytest.mark.parametrize("peer", ["torch eager", "torch.compile", "jax jit"])
def test_peers_agree_with_adjit(key, peer):
    """Loss and every gradient of the peer, adjit (llvm) and the float64 reference agree
    on a batch of 4 in float32."""
    if peer.startswith("torch"):
        pytest.importorskip("torch", reason="torch is a benchmark-only extra")
        import peers_torch as mod
        make = mod.make_eager if peer == "torch eager" else mod.make_compiled
    else:
        pytest.importorskip("jax", reason="jax is a benchmark-only extra")
        import peers_jax as mod
        make = mod.make_jit
    wl, x, t, P = _small(key, 4, "float32")
    labels = t.argmax(axis=1)
    data = {"inputs": {"x": x, "t": t}, "params": P, "dirs": {}, "consts": {},
            "labels": labels}
    impl = make(wl, data)
    got = impl.to_numpy(impl.fn())
    ref = _fn(wl)(x.astype(np.float64), t.astype(np.float64),
                  {k: v.astype(np.float64) for k, v in P.items()})
    mine = _adjit(wl, "llvm", "float32")(x=x, t=t, **P)
    _close(got, ref, 1e-4)
    _close(mine, ref, 1e-4)
    _close(mine, got, 2e-4)
