"""Helpers shared by the core tests: run a model on the interpreter, and check its forward
values against a numpy reference and its gradients against finite differences.

The finite differences here are computed on the *numpy reference* written in each test, so
they are independent of adjit; ``aj.check_grads`` is run as well, so both are exercised.
"""
from __future__ import annotations

import numpy as np

import adjit as aj

RTOL = 1e-6          # gradient tolerance: |a - b| / (|a| + |b|)
FD_STEP = 1e-5       # two-sided finite-difference step (float64)
COTANGENT = "u_ct"   # name of the random-cotangent input added by check_model


def run(outputs, passes=None, **values):
    """Compile ``outputs`` for the interpreter (default pipeline, or ``passes``) and call."""
    options = {} if passes is None else {"passes": passes}
    return aj.compile(outputs, backend="interp", **options)(**values)


def rel_err(a, b, floor=1e-12):
    """Elementwise |a - b| / (|a| + |b|), with ``floor`` guarding exact zeros."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)


def bound(shape, batch):
    return tuple(batch if d is None else d for d in shape)


def directional_fd(fn, values: dict, directions: dict, h: float = FD_STEP) -> float:
    """(F(x + h d) − F(x − h d)) / 2h for a scalar numpy function F of keyword arrays."""
    plus = {k: v + h * directions[k] if k in directions else v for k, v in values.items()}
    minus = {k: v - h * directions[k] if k in directions else v for k, v in values.items()}
    return (float(fn(**plus)) - float(fn(**minus))) / (2 * h)


def check_model(build, reference, values: dict, shapes: dict, *, dtypes=None, wrt=None,
                seed=0, rtol_forward=1e-12, grad=True):
    """Check ``build(**nodes)`` against the numpy ``reference(**values)``.

    * forward values equal the reference, unoptimized (passes=()) and through the default
      pipeline, with the reference's shape;
    * with a random cotangent u, the VJP of every float input in ``wrt`` (default: all
      float inputs) matches a two-sided finite difference of sum(reference · u) along a
      random direction (relative error ≤ 1e-6), and ``aj.check_grads`` passes.

    Returns (forward value, {name: VJP with the random cotangent}).
    """
    dtypes = dtypes or {}
    nodes = {k: aj.input(k, shape, dtypes.get(k, "float64")) for k, shape in shapes.items()}
    out = build(**nodes)
    expected = np.asarray(reference(**values))
    for passes in ((), None):
        got = run(out, passes, **values)
        assert got.shape == expected.shape, (got.shape, expected.shape)
        assert got.dtype == np.dtype(out.dtype)
        np.testing.assert_allclose(got, expected, rtol=rtol_forward, atol=rtol_forward)
    if not grad:
        return got, {}
    if wrt is None:
        wrt = [k for k in shapes if dtypes.get(k, "float64") in ("float32", "float64")]
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(expected.shape)
    ct = aj.input(COTANGENT, out.shape)
    loss = aj.sum(out * ct)
    grads = aj.grad(loss, [nodes[k] for k in wrt])
    assert isinstance(grads, list) and len(grads) == len(wrt)
    call = {**values, COTANGENT: u}
    analytic = run(grads, None, **call)
    for k, g in zip(wrt, analytic):
        assert g.shape == np.shape(values[k]), (k, g.shape)
    directions = {k: rng.standard_normal(np.shape(values[k])) for k in wrt}
    along = sum(float(np.sum(g * directions[k])) for k, g in zip(wrt, analytic))
    numeric = directional_fd(lambda **v: np.sum(np.asarray(reference(**v)) * u), values,
                             directions)
    err = rel_err(along, numeric, floor=1e-9)
    assert err <= RTOL, f"directional derivative: adjit {along!r}, finite difference {numeric!r}"
    report = aj.check_grads(loss, [nodes[k] for k in wrt], call, rtol=RTOL)
    assert report.ok and report.checked > 0
    return got, dict(zip(wrt, analytic))


def each_elementwise_op(x, y, c):
    """(name, output, operands) for every elementwise op of the registry, its two operands
    ``x`` and ``y`` mapped into the op's domain (``c``: the bool condition of ``where``)."""
    from adjit.ops.registry import REGISTRY
    for name in sorted(n for n, op in REGISTRY.items() if op.elementwise):
        spec = REGISTRY[name]
        lo, hi = spec.domain
        xs = [lo + (hi - lo) * aj.sigmoid(x), lo + (hi - lo) * aj.sigmoid(y),
              lo + (hi - lo) * aj.sigmoid(x * y)]
        if spec.extra.get("operands", "").startswith("bool"):   # logical ops
            xs = [c, x > y][:spec.arity]
        if name == "where":
            out = aj.where(c, xs[0], xs[1])
        elif name == "neg":
            out = -xs[0]
        elif spec.arity == 1 and hasattr(aj.frontend, name):
            out = getattr(aj.frontend, name)(xs[0])
        else:
            out = aj.frontend._elementwise(name, *xs[:spec.arity])
        yield name, out, xs


def finite_differences(fn, X, h=1e-6):
    """Two-sided differences of the scalar numpy function ``fn`` at each entry of ``X``."""
    out = np.zeros_like(X)
    for i in np.ndindex(X.shape):
        up, down = X.copy(), X.copy()
        up[i] += h
        down[i] -= h
        out[i] = (fn(up) - fn(down)) / (2 * h)
    return out
