"""Shared by the layer tests: gradients of a layer's loss against finite differences of a
numpy reference, and llvm against the interpreter."""
from __future__ import annotations

import numpy as np

import adjit as aj
from gradtools import RTOL, directional_fd, rel_err


def check_layer_grads(out, wrt, values, reference, seed=0):
    """The VJP of ``out`` (with a random cotangent) with respect to the nodes ``wrt``
    matches two-sided finite differences of ``sum(reference(**values) · u)`` along a random
    direction (float64, relative error ≤ 1e-6), and ``aj.check_grads`` agrees."""
    rng = np.random.default_rng(seed)
    expected = np.asarray(reference(**values))
    u = rng.standard_normal(expected.shape)
    ct = aj.input("u_ct", out.shape, out.dtype)
    loss = aj.sum(out * ct)
    grads = aj.grad(loss, wrt)
    call = {**values, "u_ct": u}
    analytic = aj.compile(grads, backend="interp")(**call)
    names = [n.name for n in wrt]
    directions = {k: rng.standard_normal(np.shape(values[k])) for k in names}
    along = sum(float(np.sum(g * directions[k])) for k, g in zip(names, analytic))
    numeric = directional_fd(lambda **v: np.sum(np.asarray(reference(**v)) * u), values,
                             directions)
    assert rel_err(along, numeric, floor=1e-9) <= RTOL, (along, numeric)
    report = aj.check_grads(loss, wrt, call, rtol=RTOL)
    assert report.ok and report.checked > 0
    return dict(zip(names, analytic))


def assert_backends_agree(outputs, values, rtol=1e-10, backends=("llvm",)):
    """Each backend's outputs equal the interpreter's (to ``rtol`` of the largest value)."""
    want = aj.compile(outputs, backend="interp")(**values)
    want = want if isinstance(want, tuple) else (want,)
    for backend in backends:
        got = aj.compile(outputs, backend=backend)(**values)
        got = got if isinstance(got, tuple) else (got,)
        for k, (g, w) in enumerate(zip(got, want)):
            scale = float(np.max(np.abs(w))) if np.size(w) else 0.0
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(scale, 1e-30),
                                       err_msg=f"{backend} output {k}")
