"""Compile time that scales, checked for results (never for time): large constants reach
the native code as bytes (not IR text), long plans are cut into entry parts, and the
garbage collector is paused during a compile.  benchmarks/compile_bench.py measures the
times."""
from __future__ import annotations

import gc
import pathlib
import sys

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import constants, entry
from adjit.gcpause import paused

N = 300_000


def special_values(n: int, dtype: str, seed: int = 0) -> np.ndarray:
    """``n`` values with NaN (also with a payload and a sign), ±inf, ±0, subnormals, the
    extremes, and normal numbers of both signs."""
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dtype)
    fi = np.finfo(dtype)
    uint = np.uint32 if dtype == "float32" else np.uint64
    payload = (np.array([0x7FC00001 if dtype == "float32" else 0x7FF8000000000123], uint)
               .view(dtype)[0])
    special = [np.nan, -np.nan, payload, np.inf, -np.inf, 0.0, -0.0, fi.smallest_subnormal,
               -fi.smallest_subnormal, fi.smallest_subnormal * 3, fi.tiny, fi.max, fi.min]
    special = np.array(special, dtype)
    v[:len(special)] = special
    v[-len(special):] = special
    return v


def same_bits(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def const_model(c: np.ndarray, n: int | None = None):
    """Outputs reading the constant as a stored operand, as an output, and fused."""
    dt = str(c.dtype)
    x = aj.input("x", (c.size if n is None else n,), dt)
    k = aj.const(c)
    return [x * k, k, aj.where(x > 0, k, x), aj.sum(k * 0 + 1)]


def interp_vs_llvm(outs, args, **options):
    want = aj.compile(outs, backend="interp")(**args)
    got = aj.compile(outs, **options)(**args)
    for g, w in zip(got, want):
        same_bits(g, w)
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_large_constant_is_bit_identical_to_the_interpreter(dtype):
    c = special_values(N, dtype)
    x = np.random.default_rng(1).standard_normal(N).astype(dtype)
    x[::7] = -0.0
    interp_vs_llvm(const_model(c), {"x": x}, cache=False)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_a_large_integer_or_bool_constant(dtype):
    rng = np.random.default_rng(2)
    c = (rng.integers(-2**31, 2**31 - 1, N).astype(dtype) if dtype != "bool"
         else rng.random(N) > 0.5)
    if dtype != "bool":
        c[:3] = [np.iinfo(dtype).min, np.iinfo(dtype).max, 0]
    k = aj.const(c)
    x = aj.input("x", (N,), "float64")
    outs = [k, aj.cast(k, "float64") + x] if dtype != "bool" else [k, aj.where(k, x, -x)]
    interp_vs_llvm(outs, {"x": rng.standard_normal(N)}, cache=False)


def test_constants_at_the_inline_limit():
    """A constant of INLINE_BYTES stays IR text; one element more is copied in."""
    itemsize = 8
    at = constants.INLINE_BYTES // itemsize
    x = aj.input("x", (at + 1,), "float64")
    small = special_values(at, "float64", seed=3)
    large = special_values(at + 1, "float64", seed=4)
    outs = [x[:at] * aj.const(small), x * aj.const(large), aj.const(small), aj.const(large)]
    xv = np.random.default_rng(5).standard_normal(at + 1)
    interp_vs_llvm(outs, {"x": xv}, cache=False)
    f = aj.compile(outs, cache=False)
    text = f._impl.llvm_ir
    assert '@"adjit_const0" = global' in text and "adjit_const1" not in text
    assert "zeroinitializer" in text.split('@"adjit_const0" = global', 1)[1].split("\n", 1)[0]
    assert "internal constant" in text        # the small one, as values
    assert not constants.is_large(aj.const(small)) and constants.is_large(aj.const(large))


def test_an_empty_and_a_scalar_constant():
    x = aj.input("x", (3,), "float64")
    outs = [aj.const(np.zeros(0)), x * aj.const(np.float64(-0.0)), aj.const(np.arange(3.0)) + x]
    interp_vs_llvm(outs, {"x": np.array([1.0, -2.0, np.inf])}, cache=False)


def test_large_constants_through_the_disk_cache(cache_dir):
    c = special_values(N, "float32", seed=6)
    x = np.random.default_rng(7).standard_normal(N).astype("float32")
    want = aj.compile(const_model(c), backend="interp")(x=x)
    f = aj.compile(const_model(c))
    assert not f.cache_info.startswith("hit")
    g = aj.compile(const_model(c))                         # the compiled-function cache
    assert g.cache_info.startswith("hit") and g._stages is None
    for a, b, w in zip(f(x=x), g(x=x), want):
        same_bits(a, w)
        same_bits(b, w)
    # the IR holds the constant's size, not its values: the object code is shared (the
    # compiled-function entry is not), each function filled with its own values
    c2 = c.copy()
    c2[100:200] = np.float32(3.5)
    h = aj.compile(const_model(c2))
    assert h._stages is not None                           # not served as the first one
    assert h.cache_info.startswith("hit")                  # ... but its object code is
    want2 = aj.compile(const_model(c2), backend="interp")(x=x)
    for a, w in zip(h(x=x), want2):
        same_bits(a, w)
    for a, w in zip(f(x=x), want):                         # f keeps its own values
        same_bits(a, w)
    assert len(list(cache_dir.glob("*.adjitfn"))) == 2


def test_a_large_constant_on_the_ptx_emulation():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "ptx"))
    from ptx_helpers import emulated
    n = 20_000
    c = special_values(n, "float32", seed=8)
    x = np.random.default_rng(9).standard_normal(n).astype("float32")
    outs = const_model(c)
    want = aj.compile(outs, backend="interp")(x=x)
    got = emulated(outs)(x=x)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert (np.signbit(g) == np.signbit(w))[~np.isnan(w)].all()


# --- long plans: the entry in parts -----------------------------------------------------------
def mixed_model():
    """Products, reductions, large and small constants, views and copied outputs, the
    batch size: every kind of step and storage an entry part may meet."""
    x = aj.input("x", (None, 6))
    W = aj.param("W", (6, 70))
    big = aj.const(np.linspace(-1, 1, 70))                    # large (560 bytes)
    small = aj.const(np.array([0.5, -1.5, 2.0]))
    h = aj.tanh(x @ W + big)
    s = aj.sum(h * h, axis=1)
    m = aj.max(h, axis=0)
    loss = aj.mean(s) + aj.sum(m[:3] * small)
    outs = [loss, h.reshape((None, 7, 10)), x, s - aj.mean(s)]
    return outs + list(aj.grad(loss, [W]))


ARGS = {"x": np.random.default_rng(11).standard_normal((5, 6)),
        "W": np.random.default_rng(12).standard_normal((6, 70)) / 3}


def test_entry_parts_at_every_boundary(monkeypatch):
    whole = aj.compile(mixed_model(), cache=False)
    n = len(whole._impl.plan.steps)
    assert n > 8
    base = whole(**ARGS)
    interp = aj.compile(mixed_model(), backend="interp")(**ARGS)
    for a, w in zip(base, interp):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-12)
    for chunk in (1, 2, 3, n // 2, n - 1, n, n + 1):
        monkeypatch.setattr(entry, "ENTRY_CHUNK", chunk)
        f = aj.compile(mixed_model(), cache=False)
        parts = f._impl.llvm_ir.count("define void @\"adjit_entry.")
        assert parts == (0 if chunk >= n else -(-n // chunk)), chunk
        for a, b in zip(f(**ARGS), base):
            same_bits(a, b)


def test_profile_counts_every_step_of_every_part(monkeypatch):
    monkeypatch.setattr(entry, "ENTRY_CHUNK", 3)
    f = aj.compile(mixed_model(), cache=False, profile=True)
    f(**ARGS)
    f(**ARGS)
    rows = f._impl.profile(as_rows=True)
    assert len(rows) == len(f._impl.plan.steps)
    assert all(r["calls"] == 2 for r in rows)


def chain(y, n_ops: int):
    """``n_ops`` elementwise ops whose derivative stays near 1 (the gradient neither
    vanishes nor explodes over 1,000 ops)."""
    ops, i = 0, 0
    while ops < n_ops:
        k = i % 4
        if k == 0:
            y = y + 0.01 * aj.sin(y)                 # 3 ops
        elif k == 1:
            y = y - aj.tanh(y) * 0.01                # 3 ops
        elif k == 2:
            y = y * 0.999 + 0.001 * y * y            # 4 ops
        else:
            y = aj.exp(-y * y) * 0.001 + y           # 5 ops
        ops += (3, 3, 4, 5)[k]
        i += 1
    return y


def test_a_1000_op_chain_and_its_gradient_match_the_interpreter():
    x = aj.input("x", (None, 7))
    y = chain(x, 1000)
    loss = aj.sum(y * y)
    outs = [y, loss, aj.grad(loss, [x])[0]]
    xv = np.linspace(-1.5, 1.5, 21).reshape(3, 7)
    f = aj.compile(outs, cache=False)
    assert len(f._impl.plan.steps) > entry.ENTRY_CHUNK      # the entry comes in parts
    got, want = f(x=xv), aj.compile(outs, backend="interp")(x=xv)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
    assert np.abs(want[2]).min() > 0.1                      # a gradient worth comparing


# --- the garbage collector ---------------------------------------------------------------------
def test_compiling_leaves_the_collector_as_it_found_it():
    x = aj.input("x", (3,))
    assert gc.isenabled()
    aj.compile(aj.sin(x), cache=False)
    assert gc.isenabled()
    gc.disable()
    try:
        aj.compile(aj.cos(x), cache=False)
        aj.grad(aj.sum(aj.cos(x)), x)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(Exception):
        aj.compile(aj.sin(x), backend="no such backend")
    assert gc.isenabled()
    with paused():
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_graph_users_match_the_networkx_view():
    from adjit.ir import Graph
    x = aj.input("x", (4,))
    y = x * x + aj.sin(x)
    g = Graph([y * y, y + x])
    for n in g.order():
        assert [u.id for u in g.users(n)] == sorted(g.nx.successors(n.id))


# --- modules: maps without loop unrolling, more texts than compile threads ---------------------
def test_module_groups_keep_one_kind_each_and_every_kernel_once():
    from adjit.backends.llvm.modules import SPLIT_MIN_CHARS, _groups
    big = SPLIT_MIN_CHARS
    cases = [([10, 20, 30], [True, False, True], 4),        # tiny: one module
             ([big] * 3, [True, False, True], 1),            # parts=1: one module
             ([big] * 4, [False] * 4, 2),                    # one kind
             ([big, 5, big, 7, big], [True, False, False, True, False], 2),
             ([big] * 9, [k % 3 == 0 for k in range(9)], 3)]
    for sizes, unroll, parts in cases:
        groups, flags = _groups(sizes, unroll, parts)
        assert sorted(k for g in groups for k in g) == list(range(len(sizes)))
        assert len(groups) == len(flags) and all(groups)
        if sum(sizes) < SPLIT_MIN_CHARS or parts == 1:
            assert len(groups) == 1 and flags == [any(unroll)]
            continue
        for g, flag in zip(groups, flags):
            assert {unroll[k] for k in g} == {flag}
        assert len(groups) <= parts * len(set(unroll))


def test_more_module_texts_than_compile_threads(monkeypatch):
    import ctypes
    from adjit.backends.lowering import target
    monkeypatch.setenv("ADJIT_COMPILE_THREADS", "2")
    texts = [f"define i64 @f{k}(i64 %x) {{\n  %y = add i64 %x, {k}\n  ret i64 %y\n}}\n"
             for k in range(5)]
    texts[4] = target.NO_UNROLL + "declare i64 @f3(i64)\n" + \
        "define i64 @g(i64 %x) {\n  %y = call i64 @f3(i64 %x)\n  ret i64 %y\n}\n"
    jm = target.compile_ir(texts, opt_level=1, cache=False)
    assert jm.timings["modules"] == 5
    call = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    assert [call(jm.address(f"f{k}"))(10) for k in range(4)] == [10, 11, 12, 13]
    assert call(jm.address("g"))(1) == 4
    with pytest.raises(RuntimeError):
        target.compile_ir(texts[:3] + ["define i64 @bad( {"], opt_level=1, cache=False)
