"""Hostile arguments for a compiled function, run in a child process.

``python hostile_cases.py BACKEND...`` compiles one model for each BACKEND (and for the
numpy interpreter, the oracle) and calls it with every case below, printing one JSON line per
case: what happened, whether the results equal the oracle's on the canonical arguments,
and whether the caller's arrays are unchanged afterwards.  test_hostile_inputs.py reads
the lines; a crash of this process fails the cases from the one that crashed on.

A case is either *accepted* (``give`` are the hostile arguments, ``same_as`` the plain
arrays they must be read as) or *refused* (``error`` is the exception class name and a
regex its message must match, so the message names the offending input).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

B = 2
X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
W = np.array([0.3, -0.2, 0.9])
S = np.float32(1.5)
LAB = np.array([1, 3], np.int32)
M = np.array([[True, False, True], [True, True, False]])
CANONICAL = {"x": X, "w": W, "s": S, "lab": LAB, "m": M}


def build_model():
    """Float64 and float32 params, int32 labels, a bool mask, a batch dimension."""
    import adjit as aj
    x = aj.input("x", (None, 3))
    w = aj.param("w", (3,))
    s = aj.param("s", (), "float32")
    lab = aj.input("lab", (None,), "int32")
    m = aj.input("m", (None, 3), "bool")
    y = aj.tanh(x * w)
    L = (aj.sum(aj.where(m, y, 0.0)) + aj.sum(aj.cast(lab, "float64") * 0.5)
         + aj.cast(s * s, "float64"))
    gw, gs = aj.grad(L, [w, s])
    return [L, gw, gs, y, aj.one_hot(lab, 4)]


class ArrayLike:
    """An object numpy converts through ``__array__``."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.a, dtype=dtype)


class BrokenArrayLike:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("this object cannot be read")


def misaligned(a: np.ndarray) -> np.ndarray:
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def read_only_memmap(a: np.ndarray) -> np.ndarray:
    """``a`` in a file mapped read-only: any write to it would crash the process."""
    fd, path = tempfile.mkstemp(suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        f.write(np.ascontiguousarray(a).tobytes())
    mm = np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)
    os.unlink(path)       # the mapping stays valid
    return mm


def read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


def strided(a: np.ndarray) -> np.ndarray:
    big = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
    big[:, ::2] = a
    return big[:, ::2]


def reversed_view(a: np.ndarray) -> np.ndarray:
    return a[::-1].copy()[::-1]


XI = np.array([[1, -2, 3], [0, 4, -1]])
NANX = np.array([[np.nan, 1.0, np.inf], [-np.inf, 0.0, 1e308]])
BIG_BATCH = 1000
XB = np.linspace(-3, 3, 3 * BIG_BATCH).reshape(BIG_BATCH, 3)
LABB = (np.arange(BIG_BATCH) % 4).astype(np.int32)
MB = (np.arange(3 * BIG_BATCH).reshape(BIG_BATCH, 3) % 3) > 0


DROP = object()   # leaves an argument out


def ok(name, give, same_as=None):
    return {"name": name, "give": give, "same_as": same_as or give, "error": None}


def refused(name, give, error, pattern):
    return {"name": name, "give": give, "same_as": None, "error": (error, pattern)}


CASES = [
    # -- accepted, read as the plain arrays in same_as ------------------------------------
    ok("python lists and numbers", lambda: dict(x=X.tolist(), w=W.tolist(), s=1.5,
                                                 lab=[1, 3], m=M.tolist()),
       lambda: {}),
    ok("numpy scalars and 0-d arrays", lambda: dict(s=np.float32(1.5)), lambda: {}),
    ok("0-d float64 array for a float32 scalar", lambda: dict(s=np.array(1.1)),
       lambda: dict(s=np.float32(1.1))),
    ok("int data for a float input", lambda: dict(x=XI), lambda: dict(x=XI.astype(float))),
    ok("bool data for a float input", lambda: dict(x=X > 0), lambda: dict(x=(X > 0) * 1.0)),
    ok("float32 data for a float64 input", lambda: dict(x=X.astype(np.float32)),
       lambda: dict(x=X.astype(np.float32).astype(float))),
    ok("float16 data", lambda: dict(x=X.astype(np.float16)),
       lambda: dict(x=X.astype(np.float16).astype(float))),
    ok("longdouble data is rounded", lambda: dict(x=X.astype(np.longdouble) / 3),
       lambda: dict(x=(X.astype(np.longdouble) / 3).astype(float))),
    ok("big-endian arrays", lambda: dict(x=X.astype(">f8"), lab=LAB.astype(">i4"),
                                         w=W.astype(">f8")), lambda: {}),
    ok("Fortran order", lambda: dict(x=np.asfortranarray(X), m=np.asfortranarray(M)),
       lambda: {}),
    ok("non-contiguous views", lambda: dict(x=strided(X), m=strided(M),
                                            lab=np.repeat(LAB, 2)[::2]), lambda: {}),
    ok("negative strides", lambda: dict(x=reversed_view(X), w=reversed_view(W)),
       lambda: {}),
    ok("read-only arrays", lambda: {k: read_only(np.asarray(v))
                                    for k, v in CANONICAL.items()}, lambda: {}),
    ok("zero strides (broadcast_to)", lambda: dict(x=np.broadcast_to(X[0], (2, 3))),
       lambda: dict(x=np.tile(X[0], (2, 1)))),
    ok("misaligned arrays", lambda: dict(x=misaligned(X), w=misaligned(W),
                                         lab=misaligned(LAB)), lambda: {}),
    ok("read-only memory-mapped files", lambda: dict(x=read_only_memmap(X),
                                                     w=read_only_memmap(W),
                                                     m=read_only_memmap(M)), lambda: {}),
    ok("ndarray subclass (np.matrix)", lambda: dict(x=np.asmatrix(X)), lambda: {}),
    ok("objects with __array__", lambda: dict(w=ArrayLike(W)), lambda: {}),
    ok("safe integer casts", lambda: dict(lab=LAB.astype(np.uint8)), lambda: {}),
    ok("int64 labels that fit int32", lambda: dict(lab=LAB.astype(np.int64)), lambda: {}),
    ok("uint64 labels that fit int32", lambda: dict(lab=LAB.astype(np.uint64)), lambda: {}),
    ok("a batch of zero", lambda: dict(x=np.zeros((0, 3)), lab=np.zeros(0, np.int32),
                                       m=np.zeros((0, 3), bool))),
    ok("a batch of one", lambda: dict(x=X[:1], lab=LAB[:1], m=M[:1])),
    ok("a batch of 1000", lambda: dict(x=XB, lab=LABB, m=MB)),
    ok("NaN and inf propagate", lambda: dict(x=NANX, w=np.array([np.inf, 1.0, -0.0]))),
    ok("the same array for two inputs", lambda: (lambda a: dict(
        x=a, w=a[0], lab=np.zeros(3, np.int32), m=np.ones((3, 3), bool)))(np.full((3, 3), 0.5))),
    # -- refused, with the offending input named ---------------------------------------------
    refused("missing input", lambda: {"w": DROP}, "TypeError", r"missing 'w'"),
    refused("unknown input", lambda: dict(bias=W), "TypeError", r"unknown 'bias'"),
    refused("wrong rank", lambda: dict(x=X[0]), "ShapeError", r"input 'x': expected 2-D"),
    refused("wrong static dimension", lambda: dict(x=np.ones((2, 4))), "ShapeError",
            r"input 'x': expected shape \(2, 3\).*got \(2, 4\)"),
    refused("batch sizes disagree", lambda: dict(lab=np.zeros(3, np.int32)), "ShapeError",
            r"input 'm': expected shape \(3, 3\) \(batch size 3 bound by 'lab'\), got \(2, 3\)"),
    refused("scalar for a vector", lambda: dict(w=1.0), "ShapeError",
            r"input 'w': expected shape \(3,\), got \(\)"),
    refused("vector for a scalar", lambda: dict(s=np.ones(1, np.float32)), "ShapeError",
            r"input 's': expected shape \(\), got \(1,\)"),
    refused("complex data", lambda: dict(x=X + 1j), "DTypeError", r"input 'x'.*complex128"),
    refused("object dtype", lambda: dict(x=X.astype(object)), "DTypeError", r"input 'x'.*object"),
    refused("strings", lambda: dict(w=["a", "b", "c"]), "DTypeError", r"input 'w'.*<U1"),
    refused("bytes", lambda: dict(w=b"abc"), "DTypeError", r"input 'w'"),
    refused("datetimes", lambda: dict(x=X.astype("datetime64[s]")), "DTypeError",
            r"input 'x'.*datetime64"),
    refused("structured dtype", lambda: dict(x=np.zeros((2, 3), [("a", "f8")])), "DTypeError",
            r"input 'x'"),
    refused("None", lambda: dict(w=None, x=X), "DTypeError", r"input 'w'.*object"),
    refused("huge Python int", lambda: dict(w=[2**80, 1, 1]), "DTypeError", r"input 'w'"),
    refused("float labels", lambda: dict(lab=LAB * 1.0), "DTypeError",
            r"input 'lab': expected an integer array of int32, got dtype float64"),
    refused("labels out of int32 range", lambda: dict(lab=np.array([1, 2**40])), "DTypeError",
            r"input 'lab': values from 1 to 1099511627776 do not fit int32"),
    refused("negative uint64 wrap", lambda: dict(lab=np.array([1, 2**63 + 5], np.uint64)),
            "DTypeError", r"input 'lab'.*do not fit int32"),
    refused("labels out of one_hot's range", lambda: dict(lab=np.array([-1, 7], np.int32)),
            "DTypeError", r"input 'lab': labels must be class indices 0 to 3 \(one_hot with 4 "
            r"classes\), got -1 at index \(0,\)"),
    refused("1-based labels", lambda: dict(lab=np.array([1, 4], np.int32)), "DTypeError",
            r"input 'lab': labels must be class indices 0 to 3.*1-based labels\? subtract 1"),
    refused("int data for a bool mask", lambda: dict(m=M.astype(int)), "DTypeError",
            r"input 'm': expected a bool array"),
    refused("ragged nested lists", lambda: dict(x=[[1.0, 2.0, 3.0], [1.0]]), "ShapeError",
            r"input 'x': cannot make an array of the list given"),
    refused("masked arrays", lambda: dict(x=np.ma.masked_array(X, X > 1)), "TypeError",
            r"input 'x': masked arrays are not accepted"),
    refused("__array__ that raises", lambda: dict(w=BrokenArrayLike()), "TypeError",
            r"input 'w': cannot make an array of the BrokenArrayLike given \(RuntimeError"),
]


def _snapshot(v):
    if isinstance(v, np.ndarray):
        return ("array", np.array(v, copy=True), v.dtype.str, v.shape)
    return ("other", repr(v))


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "other":
        return a[1] == b[1]
    return a[2:] == b[2:] and a[1].tobytes() == b[1].tobytes()


def _matches(got, want) -> bool:
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype != w.dtype:
            return False
        finite = np.abs(w[np.isfinite(w)]) if w.dtype.kind == "f" else np.abs(w)
        # sums over a batch may be reassociated: absolute slack relative to the scale
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        if not np.allclose(g, w, rtol=1e-10, atol=1e-10 * scale, equal_nan=True):
            return False
    return len(got) == len(want)


def run_case(f, oracle, case) -> dict:
    give = {k: v for k, v in {**CANONICAL, **case["give"]()}.items() if v is not DROP}
    before = {k: _snapshot(v) for k, v in give.items()}
    rec = {"case": case["name"]}
    try:
        got = f(**give)
        rec["outcome"] = "ok"
    except Exception as e:  # noqa: BLE001 - the test compares the type and message
        rec.update(outcome="raised", error=type(e).__name__, message=str(e),
                   mro=[c.__name__ for c in type(e).__mro__])
        got = None
    if got is not None and case["same_as"] is not None:
        want = oracle(**{**CANONICAL, **case["same_as"]()})
        rec["matches"] = _matches(got, want)
        rec["writeable_results"] = all(np.asarray(r).flags.writeable for r in got)
    rec["intact"] = all(_same(before[k], _snapshot(v)) for k, v in give.items())
    return rec


def main(backend: str) -> None:
    import adjit as aj
    outs = build_model()
    opts = {"opt_level": 1} if backend == "llvm" else {}
    f = aj.compile(outs, backend=backend, **opts)
    oracle = aj.compile(outs, backend="interp")
    for case in CASES:
        print(json.dumps({"backend": backend, "start": case["name"]}), flush=True)
        print(json.dumps({"backend": backend, **run_case(f, oracle, case)}), flush=True)
    # positional arguments are refused too
    rec = {"backend": backend, "case": "positional argument", "outcome": "ok"}
    try:
        f(X)
    except TypeError as e:
        rec.update(outcome="raised", error="TypeError", message=str(e))
    print(json.dumps(rec), flush=True)


def huge_batch(backend: str, batch: int) -> None:
    """A (B, B) temporary: far more memory than any machine has, from an 8 MB input."""
    import adjit as aj
    print(json.dumps({"backend": backend, "start": "huge batch"}), flush=True)
    x = aj.input("x", (None, 1))
    opts = {"opt_level": 1} if backend == "llvm" else {}
    f = aj.compile(aj.sum(x @ aj.transpose(x)), backend=backend, **opts)
    rec = {"backend": backend, "case": "huge batch", "outcome": "ok"}
    try:
        f(x=np.ones((batch, 1)))
    except MemoryError as e:
        rec.update(outcome="raised", error=type(e).__name__, message=str(e))
    rec["after"] = float(f(x=np.ones((3, 1))))     # still usable afterwards
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    # hostile_cases.py BACKEND... [--huge BATCH BACKEND...]: the huge batches run last
    args = sys.argv[1:]
    cut = args.index("--huge") if "--huge" in args else len(args)
    for name in args[:cut]:
        main(name)
    if cut < len(args):
        for name in args[cut + 2:]:
            huge_batch(name, int(args[cut + 1]))
