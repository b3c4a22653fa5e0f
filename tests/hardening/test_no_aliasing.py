"""Results never alias inputs, each other, scratch memory or earlier results; inputs are
never written (checked bitwise, and with read-only memory maps that would fault)."""
from __future__ import annotations

import mmap

import numpy as np
import pytest

import adjit as aj

BACKENDS = ["interp", "llvm"]


def compile_(outputs, backend):
    return aj.compile(outputs, backend=backend, **({"opt_level": 1} if backend == "llvm" else {}))


def model():
    """Outputs that are inputs, views of inputs, constants, duplicates, the batch size and
    arena temporaries, so every storage class of the llvm plan is returned."""
    x = aj.input("x", (None, 3))
    W = aj.param("W", (3, 2))
    h = aj.tanh(x @ W)
    L = aj.sum(h * h)
    outs = [x, aj.reshape(W, (2, 3)), W.T, aj.const(np.array([1.0, 2.0])), h, h, L,
            aj.mean(x, axis=0), aj.grad(L, W), x * 1.0, aj.grad(aj.mean(x), x)]
    return outs


def args(rng, batch=4):
    return {"x": rng.standard_normal((batch, 3)), "W": rng.standard_normal((3, 2))}


def _bytes(d):
    return {k: np.asarray(v).tobytes() for k, v in d.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_share_no_memory_with_anything(backend):
    f = compile_(model(), backend)
    rng = np.random.default_rng(0)
    a = args(rng)
    first = f(**a)
    second = f(**a)
    for i, r in enumerate(first):
        assert r.flags.writeable, i
        for v in a.values():
            assert not np.shares_memory(r, v), f"output {i} aliases an input"
        for j, other in enumerate(first):
            if j != i and r.size and other.size:
                assert not np.shares_memory(r, other), f"outputs {i} and {j} alias"
        for other in second:
            assert not np.shares_memory(r, other), f"output {i} aliases a later result"


@pytest.mark.parametrize("backend", BACKENDS)
def test_later_calls_never_overwrite_earlier_results(backend):
    f = compile_(model(), backend)
    rng = np.random.default_rng(1)
    a1 = args(rng)
    kept = f(**a1)
    snapshot = [r.copy() for r in kept]
    for batch in (4, 4, 7, 0, 4):           # same and different batch sizes (arena reuse)
        f(**args(rng, batch))
    for r, s in zip(kept, snapshot):
        np.testing.assert_array_equal(r, s)
    # and the first call, repeated, still gives the first results
    for r, s in zip(f(**a1), snapshot):
        np.testing.assert_array_equal(r, s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_writing_into_results_changes_nothing_later(backend):
    f = compile_(model(), backend)
    a = args(np.random.default_rng(2))
    want = [r.copy() for r in f(**a)]
    for r in f(**a):
        r[...] = 12345.0                    # the constant output too
    for r, w in zip(f(**a), want):
        np.testing.assert_array_equal(r, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_never_written(backend):
    f = compile_(model(), backend)
    rng = np.random.default_rng(3)
    a = args(rng)
    before = _bytes(a)
    for _ in range(3):
        f(**a)
    assert _bytes(a) == before
    # the same array passed for two inputs, read-only and writeable
    shared = rng.standard_normal((3, 3))
    x = aj.input("x", (3, 3))
    y = aj.input("y", (3, 3))
    g = compile_([x @ y + x, aj.grad(aj.sum(x * y), x)], backend)
    snap = shared.tobytes()
    g(x=shared, y=shared)
    assert shared.tobytes() == snap


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_in_read_only_pages_are_only_read(backend, tmp_path):
    """The input arrays live in a file mapped PROT_READ: a single write would fault.
    (Run in this process on purpose: the child-process harness covers crashes; here a
    fault would also stop the run, which is what an input write must never do.)"""
    f = compile_(model(), backend)
    rng = np.random.default_rng(4)
    a = args(rng, batch=64)
    maps = {}
    for k, v in a.items():
        path = tmp_path / k
        path.write_bytes(v.tobytes())
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        maps[k] = np.frombuffer(mm, dtype=v.dtype).reshape(v.shape)
        assert not maps[k].flags.writeable
    got = f(**maps)
    for r, w in zip(got, f(**a)):
        np.testing.assert_array_equal(r, w)
