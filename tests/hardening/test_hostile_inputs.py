"""Hostile call-time arguments never crash or corrupt: they are read correctly or refused
with an error naming the input.  Every case runs in a child process (hostile_cases.py),
so a segfault fails the cases from the one that crashed instead of killing the run."""
from __future__ import annotations

import re

import numpy as np
import pytest

import adjit as aj
from hostile_cases import CASES
from isolation import describe_exit, records, run_child

BACKENDS = ["interp", "llvm"]
ERRORS = {"TypeError": TypeError, "ShapeError": aj.ShapeError, "DTypeError": aj.DTypeError}


HUGE = 2 ** 20    # a (B, B) float64 temporary of 8 TiB, from an 8 MB input


def _overcommits() -> bool:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


# the interpreter has no memory guard of its own: numpy refuses 8 TiB unless the kernel
# overcommits, in which case it would be handed the address space and the process killed
HUGE_BACKENDS = ["llvm"] + ([] if _overcommits() else ["interp"])


@pytest.fixture(scope="module")
def outcomes():
    """{(backend, case name): record}, and the crash description (or None), from one child."""
    proc = run_child(["hostile_cases.py", *BACKENDS, "--huge", str(HUGE), *HUGE_BACKENDS])
    recs = records(proc)
    started = [(r["backend"], r["start"]) for r in recs if "start" in r]
    crash = None
    if proc.returncode != 0:
        crash = f"while running {started[-1] if started else '?'}: {describe_exit(proc)}"
    return {(r["backend"], r["case"]): r for r in recs if "case" in r}, crash


def _record(outcomes, backend, name):
    by_case, crash = outcomes
    if (backend, name) not in by_case:
        pytest.fail(f"no result for {name!r} on {backend}: the child died {crash}")
    return by_case[backend, name]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hostile_argument(outcomes, backend, case):
    rec = _record(outcomes, backend, case["name"])
    assert rec["intact"], "the caller's arrays were modified by the call"
    if case["error"] is None:
        assert rec["outcome"] == "ok", f"refused: {rec.get('error')}: {rec.get('message')}"
        assert rec["matches"], "results differ from the interpreter on the plain arrays"
        assert rec["writeable_results"]
    else:
        name, pattern = case["error"]
        assert rec["outcome"] == "raised", "accepted, but it must be refused"
        assert rec["error"] == name, rec["message"]
        assert ERRORS[name].__name__ in rec["mro"]
        assert re.search(pattern, rec["message"]), rec["message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_positional_arguments_are_refused(outcomes, backend):
    rec = _record(outcomes, backend, "positional argument")
    assert rec["outcome"] == "raised" and rec["error"] == "TypeError"


def test_error_classes_are_the_documented_ones():
    assert issubclass(aj.ShapeError, ValueError) and issubclass(aj.DTypeError, ValueError)
    assert issubclass(aj.ShapeError, aj.AdjitError) and issubclass(aj.DTypeError, aj.AdjitError)
    assert issubclass(aj.NonFiniteError, FloatingPointError)
    assert issubclass(aj.NonFiniteError, aj.AdjitError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_batch_is_a_clear_memory_error(outcomes, backend):
    """A (B, B) temporary of 8 TiB: MemoryError naming the batch size and the bytes."""
    if backend not in HUGE_BACKENDS:
        pytest.skip("vm.overcommit_memory=1: numpy would be handed 8 TiB of address space "
                    "and the interpreter has no memory guard of its own")
    rec = _record(outcomes, backend, "huge batch")
    assert rec["outcome"] == "raised" and rec["error"] == "MemoryError"
    assert f"batch size {HUGE}" in rec["message"]
    # bytes needed: ours say 8,796,093,0xx,xxx bytes, numpy's (interpreter) 8.00 TiB
    assert re.search(r"8,796,093,\d{3},\d{3} bytes|8\.00 TiB", rec["message"]), rec["message"]
    assert rec["after"] == 9.0          # the function still works with a sane batch


def test_memory_guard_names_batch_and_bytes():
    from adjit.binding import require_memory
    require_memory(1024, 4, "a call")              # fits
    with pytest.raises(MemoryError, match=r"a call needs 1,152,921,504,606,846,976 bytes .*"
                                          r"batch size 7"):
        require_memory(2 ** 60, 7, "a call")


def test_llvm_refuses_a_batch_just_over_available_memory(monkeypatch):
    """Not only absurd sizes: anything over what the system reports available is refused
    before allocation (allocating would succeed, then the kernel would kill the process)."""
    from adjit import binding
    monkeypatch.setattr(binding, "_available_memory", lambda: 1_000_000)
    x = aj.input("x", (None, 10))
    f = aj.compile(aj.sum(aj.tanh(x) * 2.0, axis=1), opt_level=1)
    assert f(x=np.zeros((100, 10))).shape == (100,)            # 800 bytes out: fine
    with pytest.raises(MemoryError, match=r"needs [0-9,]+ bytes .*batch size 200000"):
        f(x=np.zeros((200_000, 1)).repeat(10, axis=1))
    np.testing.assert_allclose(f(x=np.ones((2, 10))), np.full(2, 20 * np.tanh(1.0)), rtol=1e-14)


def test_bool_bytes_other_than_0_and_1_read_as_numpy_reads_them():
    m = aj.input("m", (4,), "bool")
    x = aj.input("x", (4,))
    out = aj.where(m, x, -x)
    mask = np.array([2, 0, 1, 255], np.uint8).view(bool)   # numpy: True False True True
    X = np.arange(1.0, 5.0)
    want = aj.compile(out, backend="interp")(m=mask, x=X)
    np.testing.assert_array_equal(want, [1.0, -2.0, 3.0, 4.0])
    np.testing.assert_array_equal(aj.compile(out, opt_level=1)(m=mask, x=X), want)



def test_a_crashing_child_fails_the_test_instead_of_the_run():
    from isolation import run_python
    with pytest.raises(pytest.fail.Exception, match="killed by SIGSEGV"):
        run_python("import ctypes; ctypes.string_at(0)")
