"""Where the native fast-call entry installs (backends/llvm/fastcall_probe.py).

It rests on layouts outside any ABI and on the GIL, so it installs only on a tested
(Python minor, numpy major.minor) pair, never on a free-threaded build, with
``ADJIT_FASTCALL=0`` never and ``=force`` on untested pairs; otherwise the checked Python
path serves every call (same results) and ``f.native_call_reason`` says why.  The layout
probes never read outside the objects they inspect.
"""
from __future__ import annotations

import ctypes
import sys
import sysconfig
import types

import numpy as np
import pytest

import adjit as aj
from adjit.backends.llvm import fastcall_probe as fp


def model():
    x, w = aj.input("x", (None, 3)), aj.param("w", (3,))
    L = aj.sum(aj.tanh(x * w) ** 2)
    return [L, *aj.grad(L, [w])]


def scalar_model():
    a, c = aj.input("a", ()), aj.param("c", ())
    L = aj.sigmoid(a * c) + c * c
    return [L, *aj.grad(L, [c])]


X, W = np.linspace(-2, 2, 12).reshape(4, 3), np.array([0.5, -1.5, 2.0])


def has_fastcall(f) -> bool:
    return isinstance(type(f).__dict__.get("__call__"), types.BuiltinFunctionType)


def check(f, build, **args):
    want = aj.compile(build(), backend="interp")(**args)
    for a, b in zip(f(**args), want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def compiled_pair():
    return (aj.compile(model(), opt_level=1, cache=False),
            aj.compile(scalar_model(), opt_level=1, cache=False))


@pytest.fixture
def tested_here(monkeypatch):
    """This process's own pair counts as tested (the checks below then change one thing)."""
    monkeypatch.delenv("ADJIT_FASTCALL", raising=False)
    monkeypatch.setattr(fp, "TESTED", fp.TESTED | {fp.versions()})
    assert fp.unavailable() is None, fp.unavailable()


def test_installed_on_a_tested_pair(tested_here):
    for f in compiled_pair():
        assert has_fastcall(f) and f.native_call_reason is None
    g = compiled_pair()[0].bind(w=W)
    assert has_fastcall(g) and g.native_call_reason is None


@pytest.mark.parametrize("py, npv", [((3, 99), fp.versions()[1]), (fp.versions()[0], (9, 1)),
                                     ((3, 10), (1, 21))])
def test_untested_versions_take_the_python_path(tested_here, monkeypatch, py, npv):
    monkeypatch.setattr(fp, "versions", lambda: (py, npv))
    f, s = compiled_pair()
    for fn in (f, s, f.bind(w=W)):
        assert not has_fastcall(fn)
        reason = fn.native_call_reason
        assert "untested versions" in reason and f"{npv[0]}.{npv[1]}" in reason
        assert "ADJIT_FASTCALL=force" in reason
    check(f, model, x=X, w=W)
    check(s, scalar_model, a=0.3, c=-1.2)
    np.testing.assert_allclose(f.bind(w=W)(x=X)[0], f(x=X, w=W)[0])
    # ADJIT_FASTCALL=force tries it (the probes pass in this process)
    monkeypatch.setenv("ADJIT_FASTCALL", "force")
    f, s = compiled_pair()
    assert has_fastcall(f) and has_fastcall(s) and f.native_call_reason is None
    check(f, model, x=X, w=W)
    check(s, scalar_model, a=0.3, c=-1.2)


@pytest.mark.parametrize("how", ["gil_disabled", "config_var"])
@pytest.mark.parametrize("setting", [None, "force"])
def test_free_threaded_build_never_installs(tested_here, monkeypatch, how, setting):
    if how == "gil_disabled":
        monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    else:
        real = sysconfig.get_config_var
        monkeypatch.setattr(sysconfig, "get_config_var",
                            lambda name: 1 if name == "Py_GIL_DISABLED" else real(name))
    if setting:
        monkeypatch.setenv("ADJIT_FASTCALL", setting)
    assert fp.free_threaded()
    f, s = compiled_pair()
    for fn in (f, s):
        assert not has_fastcall(fn)
        assert "free-threaded" in fn.native_call_reason
    check(f, model, x=X, w=W)
    check(s, scalar_model, a=0.3, c=-1.2)


def test_switched_off_says_so(tested_here, monkeypatch):
    monkeypatch.setenv("ADJIT_FASTCALL", "0")
    f, s = compiled_pair()
    assert not has_fastcall(f) and "ADJIT_FASTCALL=0" in f.native_call_reason
    check(f, model, x=X, w=W)


def test_failed_probe_gives_its_reason(tested_here, monkeypatch):
    monkeypatch.setattr(fp, "_probed", [])
    monkeypatch.setattr(fp, "_probe_layout", lambda: "no unique offset for nd_off")
    f, s = compiled_pair()
    assert not has_fastcall(s)
    assert s.native_call_reason == "the object layout probes failed: no unique offset for nd_off"
    check(s, scalar_model, a=0.3, c=-1.2)


def test_unknown_numpy_abi_is_refused(monkeypatch):
    monkeypatch.setattr(fp, "_KNOWN_ABI", set())
    why = fp._new_from_descr()
    assert isinstance(why, str) and "C ABI version" in why
    monkeypatch.undo()
    assert isinstance(fp._new_from_descr(), int)


def test_other_reasons_are_named():
    x = aj.input("x", ())
    assert "profile=True" in aj.compile(aj.sin(x), profile=True).native_call_reason
    assert "check_nans" in aj.compile(aj.sin(x), check_nans=True).native_call_reason
    assert "backend" in aj.compile(aj.sin(x), backend="interp").native_call_reason


# -- the probes stay inside the objects they read --------------------------------------------
_HAVE_GC = 1 << 14      # Py_TPFLAGS_HAVE_GC: sys.getsizeof adds the GC header before the object


def _allocated(obj) -> int:
    """The object's size as the allocator and its type report it (getsizeof less the GC
    header); an upper bound (numpy scalars count their value twice)."""
    size = sys.getsizeof(obj)
    if type(obj).__flags__ & _HAVE_GC:
        size -= sys.getsizeof([]) - [].__sizeof__()
    return size


def test_layout_probes_never_read_past_an_object(monkeypatch):
    """Every read the probes make lands inside the object (before, the scalar and tuple
    probes read up to 80 bytes into a 24-byte float)."""
    real, outside = fp._word, []

    def spy(obj, off, ctype=ctypes.c_void_p):
        got = real(obj, off, ctype)
        if got is not None and off + ctypes.sizeof(ctype) > _allocated(obj):
            outside.append((type(obj).__name__, off, ctypes.sizeof(ctype), _allocated(obj)))
        return got
    monkeypatch.setattr(fp, "_word", spy)
    lay = fp._probe_layout()
    assert isinstance(lay, dict), lay
    assert not outside, outside[:10]


@pytest.mark.parametrize("obj", [1.5, -0.0, "x", "a longer string", (), (1, 2, 3), [],
                                 np.float32(2.5), np.float64(3.0), np.ones(3), np.asarray(1.0),
                                 fp.Context(), fp.MethodDef()], ids=repr)
def test_extent_is_within_the_allocation(obj):
    assert 16 <= fp.extent(obj) <= _allocated(obj)
    last, i64 = fp.extent(obj) - 8, ctypes.c_int64
    assert fp._word(obj, last, i64) is not None
    assert fp._word(obj, last + 1, i64) is None and fp._word(obj, -8, i64) is None


def test_float_value_read_in_place_and_not_beyond():
    off = fp._probe_layout()["value_float64"]
    assert fp._word(2.75, off, ctypes.c_double) == 2.75
    assert fp._word(2.75, off + 8, ctypes.c_double) is None
