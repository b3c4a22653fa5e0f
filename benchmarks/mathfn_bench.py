"""Elementwise transcendental throughput: adjit's inline functions vs the alternatives.

For exp, log, tanh, sin, tan, erf, log2, exp2 over 1e6 contiguous elements, float32 and float64, times the loop
``y[i] = f(x[i])`` done four ways, all single-threaded on the same arrays:

  adjit     ``adjit.backends.lowering.mathfn`` inlined into the loop (vectorized by LLVM)
  numpy     ``np.<f>(x, out=y)`` (erf: scipy.special.erf)
  llvm-intr ``llvm.<f>`` intrinsics in the same loop: LLVM vectorizes the loop but calls
            scalar libm once per lane
  libmvec   scalar libm call carrying the ``vector-function-abi-variant`` call-site attribute,
            so the vectorizer calls glibc's AVX2 variant (``_ZGVdN4v_exp``, ``_ZGVdN8v_expf``...)
            loaded with ``load_library('libmvec.so.1')``

Each IR variant is checked after optimization (does the loop contain the vector type or the
libmvec call?) and its accuracy on the benchmark inputs is printed next to its time (max ulp
distance to numpy's float64 result, rounded to the dtype for float32), so a fast column
cannot hide a wrong one.  Variants are interleaved within each repetition round so machine
noise hits them alike; the table gives the median (and min) over the rounds in ms per 1e6
elements.  The "copy floor" line times np.copyto over the same amount of data: the
memory traffic alone, below which no variant can go.

Run:  python benchmarks/mathfn_bench.py [--n 1000000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import llvmlite.ir as ir
import numpy as np

from adjit.backends.lowering.mathfn import get_math_fn
from adjit.backends.lowering.target import compile_ir, host_info, load_library

FUNCS = ("exp", "log", "tanh", "sin", "tan", "erf", "log2", "exp2")
# Inputs: ranges a model would see (exp over the whole softmax/sigmoid range, log over
# probabilities to large values, tanh through saturation, sin a few hundred periods).
INPUTS = {"exp": lambda r, n: r.uniform(-50, 50, n),
          "log": lambda r, n: np.exp(r.uniform(np.log(1e-6), np.log(1e6), n)),
          "tanh": lambda r, n: r.uniform(-6, 6, n),
          "sin": lambda r, n: r.uniform(-400, 400, n),
          "tan": lambda r, n: r.uniform(-400, 400, n),
          "erf": lambda r, n: r.uniform(-5, 5, n),
          "log2": lambda r, n: np.exp(r.uniform(np.log(1e-6), np.log(1e6), n)),
          "exp2": lambda r, n: r.uniform(-70, 70, n)}
_math_erf = np.frompyfunc(__import__("math").erf, 1, 1)


def _numpy_fn(fname):
    """numpy's function (erf, which numpy lacks: scipy.special.erf, else math.erf per element)."""
    if fname != "erf":
        return getattr(np, fname)
    try:
        from scipy.special import erf
        return erf
    except ImportError:
        return lambda x, out=None: np.copyto(out, _math_erf(x).astype(out.dtype)) \
            if out is not None else _math_erf(x).astype(x.dtype)


def _available(kind: str, fname: str, dtype: str) -> bool:
    """Whether a comparison variant exists: LLVM has no llvm.erf; libmvec lacks some."""
    if kind == "llvm-intr":
        return fname != "erf"
    if kind == "libmvec":
        import llvmlite.binding as llvm
        lanes = 8 if dtype == "float32" else 4
        return llvm.address_of_symbol(f"_ZGVdN{lanes}v_{fname}{'f' if dtype == 'float32' else ''}") \
            is not None
    return True

_LOOP = """
define void @run(ptr noalias %x, ptr noalias %y, i64 %n) {{
entry:
  %go = icmp sgt i64 %n, 0
  br i1 %go, label %loop, label %done
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %px = getelementptr inbounds {t}, ptr %x, i64 %i
  %v = load {t}, ptr %px
  %r = call {t} {callee}({t} %v){callattr}
  %py = getelementptr inbounds {t}, ptr %y, i64 %i
  store {t} %r, ptr %py
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}}
"""


def _ir_variant(kind: str, fname: str, dtype: str) -> tuple[str, str]:
    """(IR text, marker expected in the optimized loop) for one variant."""
    f32 = dtype == "float32"
    t, lanes = ("float", 8) if f32 else ("double", 4)
    vec = f"<{lanes} x {t}>"
    if kind == "adjit":
        m = ir.Module(name="bench")
        fn = get_math_fn(m, fname, dtype)
        # any vector width counts (AVX2 gives 8 x float, AVX-512 may give 16)
        return str(m) + _LOOP.format(t=t, callee=f'@"{fn.name}"', callattr=""), f" x {t}>"
    if kind == "llvm-intr":
        name = f"llvm.{fname}.{'f32' if f32 else 'f64'}"
        decl = f"declare {t} @{name}({t})\n"
        return decl + _LOOP.format(t=t, callee=f"@{name}", callattr=""), f" x {t}>"
    assert kind == "libmvec"
    scalar = fname + ("f" if f32 else "")
    vname = f"_ZGVdN{lanes}v_{scalar}"             # AVX2 ("d") variant, unmasked
    text = (f"declare {t} @{scalar}({t}) #0\n"
            f"declare {vec} @{vname}({vec})\n"
            # Without this the O3 pipeline deletes the (still unused) declaration before the
            # vectorizer looks for it, and the loop gets four scalar libm calls per vector.
            f"@llvm.compiler.used = appending global [1 x ptr] [ptr @{vname}], "
            f'section "llvm.metadata"\n'
            + _LOOP.format(t=t, callee=f"@{scalar}", callattr=" #1")
            + "attributes #0 = { nounwind willreturn memory(none) }\n"
            + f'attributes #1 = {{ "vector-function-abi-variant"='
              f'"_ZGV_LLVM_N{lanes}v_{scalar}({vname})" }}\n')
    return text, f"@{vname}"


def _ulp_distance(y, ref):
    """Max integer ulp distance (same dtype arrays); inf if a non-finite value differs."""
    ints = np.int32 if y.dtype == np.float32 else np.int64
    mag = np.int64(0x7FFFFFFF if y.dtype == np.float32 else 0x7FFFFFFFFFFFFFFF)

    def ordered(a):
        i = a.view(ints).astype(np.int64)
        return np.where(i < 0, -(i & mag), i)
    bad = ~(np.isfinite(y) & np.isfinite(ref)) & ~((y == ref) | (np.isnan(y) & np.isnan(ref)))
    if bad.any():
        return float("inf")
    d = np.abs(ordered(y) - ordered(ref))
    return float(d[np.isfinite(y)].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()

    kinds = ("adjit", "numpy", "llvm-intr", "libmvec")
    try:
        load_library("libmvec.so.1")     # must precede compiling: unresolved calls crash
    except RuntimeError as e:
        print(f"# libmvec not loadable ({e}); that column is skipped")
        kinds = kinds[:3]
    info = host_info()
    print(f"# {info['cpu']}, LLVM {info['llvm_version']}, numpy {np.__version__}, "
          f"n={args.n}, {args.rounds} interleaved rounds, single thread")
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    rng = np.random.default_rng(0)
    keep = []                                     # JIT modules must outlive their addresses
    rows = []
    for dtype in ("float32", "float64"):
        for fname in FUNCS:
            x = INPUTS[fname](rng, args.n).astype(dtype)
            y = np.empty_like(x)
            with np.errstate(all="ignore"):
                ref = np.asarray((np.vectorize(__import__("math").erf) if fname == "erf"
                                  else getattr(np, fname))(x.astype(np.float64))).astype(dtype)
            runners, notes = {}, {}
            npf = _numpy_fn(fname)
            runners["numpy"] = lambda npf=npf, x=x, y=y: npf(x, out=y)
            xa, ya = x.ctypes.data, y.ctypes.data
            for kind in ("adjit",) + kinds[2:]:
                if not _available(kind, fname, dtype):
                    continue
                text, marker = _ir_variant(kind, fname, dtype)
                jm = compile_ir(text, opt_level=3, cache=False)
                keep.append(jm)
                body = jm.llvm_ir_optimized.split("define void @run", 1)[1]
                notes[kind] = "" if marker in body else " (NOT vectorized)"
                f = proto(jm.address("run"))
                runners[kind] = lambda f=f, xa=xa, ya=ya, n=args.n: f(xa, ya, n)
            here = [k for k in kinds if k in runners]
            acc = {}
            for kind in here:
                y.fill(np.nan)
                runners[kind]()
                acc[kind] = _ulp_distance(y, ref)
            times = {k: [] for k in here}
            for k in here:                        # warm-up
                runners[k]()
            for _ in range(args.rounds):
                for k in here:
                    t0 = time.perf_counter()
                    runners[k]()
                    times[k].append((time.perf_counter() - t0) * 1e3 * 1e6 / args.n)
            rows.append((f"{fname} {dtype[5:]}", {k: (statistics.median(times[k]),
                                                      min(times[k]), acc[k],
                                                      notes.get(k, "")) for k in here}))
    floor = {}
    for dtype in ("float32", "float64"):          # memory floor: same traffic, no math
        x = np.ones(args.n, dtype)
        y = np.empty_like(x)
        ts = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            np.copyto(y, x)
            ts.append((time.perf_counter() - t0) * 1e3 * 1e6 / args.n)
        floor[dtype] = statistics.median(ts)
    print(f"\ncopy floor (np.copyto, same bytes moved): f32 {floor['float32']:.3f} ms, "
          f"f64 {floor['float64']:.3f} ms per 1e6 elements")
    print("ms per 1e6 elements: median (min) [max ulp vs numpy-f64-rounded]")
    print(f"{'':9s}" + "".join(f"{k:>24s}" for k in kinds))
    for label, cells in rows:
        line = f"{label:9s}"
        for k in kinds:
            if k not in cells:
                line += f"{'n/a':>24s}"
                continue
            med, mn, ulp, note = cells[k]
            line += f"{f'{med:6.3f} ({mn:5.3f}) [{ulp:g}]{note}':>24s}"
        print(line)


if __name__ == "__main__":
    main()
