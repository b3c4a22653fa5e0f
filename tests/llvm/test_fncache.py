"""The compiled-function cache: a compile of a graph seen before goes from the traced graph
to native code without running the passes or the lowering, and gives the same function."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.ir import Graph, fingerprint, from_records, to_records

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 4))
W = RNG.standard_normal((4, 3)) / 2
T = RNG.standard_normal((5, 3))


def layer(lam=0.01, name="x", width=3):
    x = aj.input(name, (None, 4))
    Wp = aj.param("W", (4, width))
    t = aj.input("t", (None, width))
    y = aj.tanh(x @ Wp)
    loss = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1)) + lam * aj.sum(Wp * Wp)
    return [loss] + list(aj.grad(loss, [Wp]))


def fn_entries(d) -> set[str]:
    return set(glob.glob(os.path.join(d, "*.adjitfn")))


def served_by_cache(f) -> bool:
    """The passes did not run while compiling: the function came from the cache."""
    return f._stages is None


def test_second_compile_skips_the_pipeline_and_matches(cache_dir):
    f = aj.compile(layer())
    assert not served_by_cache(f) and len(fn_entries(cache_dir)) == 1
    g = aj.compile(layer())
    assert served_by_cache(g)
    assert g.cache_info.startswith("hit ")
    a, b = f(x=X, W=W, t=T), g(x=X, W=W, t=T)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    ref = aj.compile(layer(), backend="interp")(x=X, W=W, t=T)
    for u, v in zip(a, ref):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_inspection_of_a_cached_function_is_unchanged(cache_dir):
    f = aj.compile(layer())
    g = aj.compile(layer())
    assert served_by_cache(g)
    assert str(g.equations()) == str(f.equations())            # runs the passes now
    assert [s.stage for s in g.stages] == [s.stage for s in f.stages]
    assert g.node_counts() == f.node_counts()
    assert g.graph.op_counts() == f.graph.op_counts()
    assert g.llvm_ir == f.llvm_ir                             # lowered again on demand
    assert g.llvm_ir_optimized == f.llvm_ir_optimized
    assert g.input_names == f.input_names


@pytest.mark.parametrize("change", [
    lambda: layer(lam=0.02),              # a constant
    lambda: layer(name="inputs"),         # an input's name
    lambda: layer(width=2),               # a shape
])
def test_a_different_graph_is_a_miss(cache_dir, change):
    aj.compile(layer())
    g = aj.compile(change())
    assert not served_by_cache(g)
    assert len(fn_entries(cache_dir)) == 2


def test_options_are_part_of_the_key(cache_dir):
    aj.compile(layer(), opt_level=1)
    assert not served_by_cache(aj.compile(layer(), opt_level=0))
    assert not served_by_cache(aj.compile(layer(), opt_level=1, profile=True))
    assert served_by_cache(aj.compile(layer(), opt_level=1))


def test_cache_off_writes_and_reads_nothing(cache_dir, monkeypatch):
    aj.compile(layer(), cache=False)
    assert not fn_entries(cache_dir)
    aj.compile(layer())
    assert not served_by_cache(aj.compile(layer(), cache=False))
    monkeypatch.setenv("ADJIT_CACHE", "0")
    assert not served_by_cache(aj.compile(layer()))


def test_custom_passes_never_use_it(cache_dir):
    from adjit.passes import PIPELINE
    aj.compile(layer())
    assert not served_by_cache(aj.compile(layer(), passes=PIPELINE))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage payload"])
def test_a_bad_entry_is_a_miss_and_is_rewritten(cache_dir, damage):
    aj.compile(layer())
    (path,) = fn_entries(cache_dir)
    data = bytearray(open(path, "rb").read())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0x40
    else:    # a well-formed entry whose payload is not a graph
        from adjit.backends.lowering.target.diskcache import write_entry
        write_entry(path, os.path.basename(path).split(".")[0], b"not a pickle", "{}")
        data = bytearray(open(path, "rb").read())
    open(path, "wb").write(bytes(data))
    g = aj.compile(layer())
    assert not served_by_cache(g)
    np.testing.assert_allclose(g(x=X, W=W, t=T)[0],
                               aj.compile(layer(), backend="interp")(x=X, W=W, t=T)[0],
                               rtol=1e-12)
    assert served_by_cache(aj.compile(layer()))                  # rewritten


def test_a_missing_object_entry_is_a_miss(cache_dir):
    aj.compile(layer())
    for p in glob.glob(os.path.join(cache_dir, "*.adjitobj")):
        os.unlink(p)
    g = aj.compile(layer())
    assert not served_by_cache(g)
    assert np.isfinite(g(x=X, W=W, t=T)[0])


def test_updates_from_the_cache_still_write_in_place(cache_dir):
    def step():
        x = aj.input("x", (None, 4))
        Wp = aj.param("W", (4, 3))
        loss = aj.sum(aj.tanh(x @ Wp))
        (g,) = aj.grad(loss, [Wp])
        return aj.compile(loss, updates={Wp: Wp - 0.1 * g})
    first, second = step(), step()
    assert served_by_cache(second)
    W1, W2 = W.copy(), W.copy()
    first(x=X, W=W1)
    second(x=X, W=W2)
    np.testing.assert_array_equal(W1, W2)
    assert not np.array_equal(W1, W)


CHILD = """
import json, sys
import numpy as np
import adjit as aj
x = aj.input("x", (None, 256)); W = aj.param("W", (256, 256))
loss = aj.sum(aj.tanh(x @ W) * 2.0)
f = aj.compile([loss, aj.grad(loss, W)])
X = np.linspace(-1, 1, 64 * 256).reshape(64, 256); W0 = np.eye(256) / 4
L, g = f(x=X, W=W0)      # 64*256*256 multiply-adds: the product is split over the pool
print(json.dumps({"cached": f._stages is None, "L": float(L), "g": g.ravel()[::97].tolist()}))
"""


def test_a_new_process_loads_the_library_pool_and_function_from_disk(cache_dir):
    """The GEMM library calls the thread pool: loading it by name must bind the pool first
    (a cached module whose support is not loaded would call address 0)."""
    env = {**os.environ, "ADJIT_CACHE_DIR": str(cache_dir)}
    runs = []
    for _ in range(3):
        p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        runs.append(json.loads(p.stdout))
    assert [r["cached"] for r in runs] == [False, True, True]
    assert glob.glob(os.path.join(cache_dir, "*.adjitlib"))       # library and pool by name
    X = np.linspace(-1, 1, 64 * 256).reshape(64, 256)
    h = np.tanh(X / 4)
    assert runs[1]["L"] == pytest.approx(2 * h.sum(), rel=1e-12)
    np.testing.assert_allclose(runs[1]["g"], (X.T @ (2 * (1 - h * h))).ravel()[::97],
                               rtol=1e-10, atol=1e-12)
    assert runs[0] == {**runs[1], "cached": False} and runs[2] == runs[1]


def test_fingerprint_and_records():
    a, b = layer(), layer()
    ga, gb = Graph(a), Graph(b)
    assert fingerprint(ga) == fingerprint(gb)              # ids differ, content does not
    assert fingerprint(ga) != fingerprint(Graph(layer(lam=0.5)))
    back = from_records(to_records(ga))
    assert fingerprint(back) == fingerprint(ga)
    assert [n.op for n in back.nodes] == [n.op for n in ga.nodes]
    assert min(n.id for n in back.nodes) > max(n.id for n in gb.nodes)   # fresh ids


def test_how_the_table_holds_arrays_is_part_of_the_key(cache_dir):
    """An entry compiled to read array objects from its table must never serve a process
    that puts plain addresses there (ADJIT_ARRAY_OBJECTS=0), and the other way round."""
    def child(flag):
        env = {**os.environ, "ADJIT_CACHE_DIR": str(cache_dir), "ADJIT_ARRAY_OBJECTS": flag}
        p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout)
    first, other, again = child("1"), child("0"), child("1")
    assert (first["cached"], other["cached"], again["cached"]) == (False, False, True)
    assert {**other, "cached": True} == again == {**first, "cached": True}
