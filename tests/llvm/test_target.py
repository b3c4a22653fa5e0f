"""Tests for adjit.backends.lowering.target: JIT, host facts, symbols and the object cache."""

import ctypes
import glob
import os
import platform
import stat

import pytest

from adjit.backends.lowering.target import diskcache
from adjit.backends.lowering import target

ADD1 = """
define i64 @add1(i64 %x) {
  %y = add i64 %x, 1
  ret i64 %y
}
"""

# A loop the vectorizer works on: sum of squares of a float array.
SUMSQ = """
define double @sumsq(double* noalias %p, i64 %n) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %acc = phi double [ 0.0, %entry ], [ %acc1, %loop ]
  %q = getelementptr double, double* %p, i64 %i
  %v = load double, double* %q
  %sq = fmul double %v, %v
  %acc1 = fadd reassoc contract double %acc, %sq
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %n
  br i1 %more, label %loop, label %done
done:
  %r = phi double [ 0.0, %entry ], [ %acc1, %loop ]
  ret double %r
}
"""


x86_64 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                            reason="named x86-64 CPUs")


def call_add1(jm, x):
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("add1"))(x)


def entries(d):
    return glob.glob(os.path.join(d, "*.adjitobj"))


def test_compile_and_call():
    jm = target.compile_ir(ADD1, cache=False)
    assert call_add1(jm, 41) == 42
    assert jm.cache_info == "miss: disabled by argument cache=False"
    assert "add1" in jm.llvm_ir and "add1" in jm.llvm_ir_optimized
    assert "add1" in jm.asm
    with pytest.raises(KeyError):
        jm.address("nope")


def test_vectorized_loop_is_correct():
    import numpy as np
    jm = target.compile_ir(SUMSQ, cache=False)
    f = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_int64)(jm.address("sumsq"))
    x = np.arange(1001, dtype=np.float64) / 7
    assert f(x.ctypes.data, x.size) == pytest.approx(float(x @ x), rel=1e-12)
    assert f(x.ctypes.data, 0) == 0.0


@x86_64
def test_named_cpu_features_reach_the_code_generator():
    """Whatever the host: haswell code uses 256-bit registers, baseline x86-64 none."""
    assert "ymm" in target.compile_ir(SUMSQ, cache=False, cpu="haswell").asm
    assert "ymm" not in target.compile_ir(SUMSQ, cache=False, cpu="x86-64").asm


def test_opt_levels_and_invalid_ir():
    for level in (0, 1, 2, 3):
        assert call_add1(target.compile_ir(ADD1, opt_level=level, cache=False), 1) == 2
    with pytest.raises(ValueError):
        target.compile_ir(ADD1, opt_level=4, cache=False)
    with pytest.raises(RuntimeError):
        target.compile_ir("define i64 @bad( {", cache=False)


def test_host_info():
    info = target.host_info()
    assert set(info) >= {"cpu", "features", "triple", "llvm_version", "llvmlite_version"}
    assert info["llvm_version"].count(".") == 2
    assert target.vector_width_bytes() in (16, 32, 64)


def test_add_symbol_is_callable_from_jit_code():
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    cb = cb_type(lambda x: 3 * x)      # must stay alive while JIT code may call it
    target.add_symbol("adjit_test_triple", ctypes.cast(cb, ctypes.c_void_p).value)
    ir_text = """
declare i64 @adjit_test_triple(i64)
define i64 @use(i64 %x) {
  %y = call i64 @adjit_test_triple(i64 %x)
  %z = add i64 %y, 1
  ret i64 %z
}
"""
    jm = target.compile_ir(ir_text, cache=False)
    assert ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("use"))(5) == 16


def test_cache_miss_then_hit(cache_dir):
    jm1 = target.compile_ir(ADD1)
    assert jm1.cache_info == "miss: no entry"
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    (path,) = entries(cache_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    jm2 = target.compile_ir(ADD1)
    assert jm2.cache_info == f"hit {path}"
    assert call_add1(jm2, 1) == 2
    assert jm2.llvm_ir_optimized == jm1.llvm_ir_optimized
    assert "add1" in jm2.asm
    # A different opt level is a different key.
    assert target.compile_ir(ADD1, opt_level=0).cache_info == "miss: no entry"
    assert len(entries(cache_dir)) == 2


@pytest.mark.parametrize("damage, reason", [
    ("flip", "hash mismatch"), ("truncate", "truncated"), ("garbage", "bad header")])
def test_corrupt_entry_is_rejected_and_rebuilt(cache_dir, damage, reason):
    target.compile_ir(ADD1)
    (path,) = entries(cache_dir)
    data = bytearray(open(path, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF           # inside the object / IR payload
    elif damage == "truncate":
        data = data[: len(data) - 100]
    else:
        data = b"not an adjit cache entry"
    with open(path, "wb") as f:
        f.write(data)
    jm = target.compile_ir(ADD1)
    assert jm.cache_info == f"miss: entry corrupt ({reason})"
    assert call_add1(jm, 41) == 42
    again = target.compile_ir(ADD1)                 # the rebuilt entry is good
    assert again.cache_info.startswith("hit ")
    assert call_add1(again, 0) == 1


def test_cache_disabled_by_env(cache_dir, monkeypatch):
    monkeypatch.setenv("ADJIT_CACHE", "0")
    jm = target.compile_ir(ADD1)
    assert jm.cache_info == "miss: disabled by ADJIT_CACHE=0"
    assert call_add1(jm, 1) == 2
    assert not cache_dir.exists() or not entries(cache_dir)
    # An explicit argument wins over the environment.
    assert target.compile_ir(ADD1, cache=True).cache_info == "miss: no entry"


def test_cache_disabled_by_argument(cache_dir):
    assert target.compile_ir(ADD1, cache=False).cache_info.startswith("miss: disabled")
    assert not cache_dir.exists() or not entries(cache_dir)


def test_unsafe_cache_dir_is_not_used(tmp_path, monkeypatch):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    monkeypatch.setenv("ADJIT_CACHE_DIR", str(d))
    monkeypatch.delenv("ADJIT_CACHE", raising=False)
    jm = target.compile_ir(ADD1)
    assert "writable" in jm.cache_info
    assert call_add1(jm, 1) == 2
    assert not entries(d)


def test_cache_dir_location(monkeypatch, tmp_path):
    monkeypatch.delenv("ADJIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert target.cache_dir() == str(tmp_path / "adjit")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert target.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "adjit")


# --- several module texts compiled in parallel and linked into one module -----------------
CALLER = """
declare i64 @add1(i64)
define i64 @add2(i64 %x) {
  %y = call i64 @add1(i64 %x)
  %z = call i64 @add1(i64 %y)
  ret i64 %z
}
"""


def call_add2(jm, x):
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(jm.address("add2"))(x)


def test_split_modules_link_into_one():
    jm = target.compile_ir([CALLER, ADD1], cache=False)
    assert call_add2(jm, 40) == 42 and call_add1(jm, 1) == 2
    assert jm.timings["modules"] == 2 and jm.timings["cpu"] > 0
    # llvm_ir holds both texts; asm and the optimized IR cover both modules
    assert "@add2" in jm.llvm_ir and "@add1" in jm.llvm_ir
    assert "add1" in jm.asm and "add2" in jm.asm
    assert "define" in jm.llvm_ir_optimized and "add2" in jm.llvm_ir_optimized
    with pytest.raises(RuntimeError):
        target.compile_ir([CALLER, "define i64 @bad( {"], cache=False)


def test_split_cache_entry_hits_and_loads(cache_dir):
    jm1 = target.compile_ir([CALLER, ADD1])
    assert jm1.cache_info == "miss: no entry"
    (path,) = entries(cache_dir)
    jm2 = target.compile_ir([CALLER, ADD1])
    assert jm2.cache_info == f"hit {path}"
    assert call_add2(jm2, 0) == 2 and jm2.llvm_ir_optimized == jm1.llvm_ir_optimized
    jm3 = target.load_cached(jm1.key, llvm_ir=lambda: [CALLER, ADD1])
    assert call_add2(jm3, 1) == 3 and jm3.llvm_ir == jm1.llvm_ir
    # one text and the same text as a one-element list are the same entry
    assert target.compile_ir(ADD1).key == target.compile_ir([ADD1]).key


def test_object_pack_is_checked():
    objs = [b"\x7fELF one", b"\x7fELF two two"]
    packed = diskcache.pack_objects(objs)
    assert diskcache.unpack_objects(packed) == objs
    assert diskcache.unpack_objects(objs[0]) == [objs[0]]   # one object is stored as itself
    assert diskcache.unpack_objects(packed[:-1]) is None
    assert diskcache.unpack_objects(packed + b"x") is None
    assert diskcache.unpack_objects(diskcache._OBJS_MAGIC + b"\xff") is None


def test_compile_threads(monkeypatch):
    monkeypatch.setenv("ADJIT_COMPILE_THREADS", "3")
    assert target.compile_threads() == 3
    monkeypatch.delenv("ADJIT_COMPILE_THREADS")
    assert target.compile_threads() >= 1


# --- the target CPU: host by default, a named one by cpu= or ADJIT_CPU ----------------------
def other_cpu() -> str:
    """A CPU LLVM knows that is not the host's name (so not known to run here)."""
    return next(c for c in ("znver3", "haswell") if c != target.host_info()["cpu"])


@x86_64
def test_baseline_cpu_compiles_and_runs(monkeypatch):
    monkeypatch.delenv("ADJIT_CPU", raising=False)
    jm = target.compile_ir(ADD1, cache=False, cpu="x86-64")
    assert jm.cpu == "x86-64" and call_add1(jm, 41) == 42
    assert target.compile_ir(ADD1, cache=False).cpu == "host"
    monkeypatch.setenv("ADJIT_CPU", "x86-64")
    assert target.target_cpu() == "x86-64"
    assert target.compile_ir(ADD1, cache=False).cpu == "x86-64"
    assert target.target_spec() == ("x86-64", "")
    assert target.target_spec("host") == (target.host_info()["cpu"],
                                          target.host_info()["features"])


@x86_64
def test_code_for_a_cpu_the_host_may_lack_is_compiled_but_not_run():
    cpu = other_cpu()
    jm = target.compile_ir(ADD1, cache=False, cpu=cpu)
    assert "add1" in jm.asm and "add1" in jm.llvm_ir_optimized
    with pytest.raises(RuntimeError, match=f"compiled for cpu '{cpu}'"):
        jm.address("add1")


@pytest.mark.parametrize("name", ["no-such-cpu", "pentium4"])
def test_unknown_or_32_bit_cpu_is_a_clear_error(name, monkeypatch):
    """LLVM would end the process for these (it is tried in a child process first)."""
    with pytest.raises(ValueError, match=f"cpu '{name}'"):
        target.compile_ir(ADD1, cache=False, cpu=name)
    monkeypatch.setenv("ADJIT_CPU", name)
    with pytest.raises(ValueError, match=f"cpu '{name}'"):
        target.compile_ir(ADD1, cache=False)


@pytest.mark.parametrize("name", ["", "-march=x", "a b", "../x"])
def test_malformed_cpu_name_is_refused(name):
    with pytest.raises(ValueError, match="cpu must be"):
        target.compile_ir(ADD1, cache=False, cpu=name)


@x86_64
def test_cache_key_covers_the_cpu(cache_dir):
    cpu = other_cpu()
    a = target.compile_ir(SUMSQ, cpu="x86-64")
    b = target.compile_ir(SUMSQ, cpu=cpu)
    assert a.cache_info == b.cache_info == "miss: no entry"
    assert a.key != b.key and len(entries(cache_dir)) == 2
    hit = target.compile_ir(SUMSQ, cpu=cpu)
    assert hit.cache_info.startswith("hit ") and hit.cpu == cpu
    assert "ymm" in hit.asm and "ymm" not in target.compile_ir(SUMSQ, cpu="x86-64").asm
    with pytest.raises(RuntimeError):
        hit.address("sumsq")
