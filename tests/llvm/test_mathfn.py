"""Accuracy, IEEE edge cases and vectorization of adjit.backends.lowering.mathfn.

Each function is applied by a loop ``void f_<name>(T* noalias x, T* noalias y, i64 n)``
compiled at O3.  Accuracy is measured on code compiled for the host; vectorization is
checked on code compiled for named CPUs (whatever the host is): the optimized IR must use
the vector width LLVM picks for that CPU (proof that the loop vectorized with the function
inlined).

Error measures (printed with ``pytest -s``):
  * float64: error against ``np.longdouble`` (x87 80-bit, 11 extra bits) in float64 ulps, and
    the integer ulp distance to numpy's float64 result.  Both must be <= 4.
  * float32: integer ulp distance to the correctly rounded result (numpy float64, rounded to
    float32).  Must be <= 2.
"""

from __future__ import annotations

import ctypes
import platform

import llvmlite.ir as ir
import mpmath       # (sympy's own dependency: always installed with adjit)
import numpy as np
import pytest

from adjit.backends.lowering import mathfn
from adjit.backends.lowering.mathfn import SUPPORTED, get_math_fn
from adjit.backends.lowering.target import compile_ir

LD = np.longdouble
DTYPES = ("float32", "float64")
NAMES = sorted(SUPPORTED)
_math_erf = np.frompyfunc(__import__("math").erf, 1, 1)


def _erf(x):
    """erf: in long double from 30-digit mpmath, else glibc's (math.erf) in float64."""
    if x.dtype == LD:
        with mpmath.workdps(30):
            return np.array([LD(mpmath.nstr(mpmath.erf(mpmath.mpf(float(v))), 25)) for v in x],
                            dtype=LD)
    return _math_erf(x.astype(np.float64)).astype(np.float64)


REF = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
       "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
       "tan": np.tan, "erf": _erf, "log2": np.log2, "exp2": np.exp2}
MAX_ULP = {"float32": 2, "float64": 4}
pytestmark = pytest.mark.skipif(np.finfo(LD).nmant < 63,
                                reason="needs an extended-precision np.longdouble reference")


def _loop_module(dtype: str) -> ir.Module:
    """One elementwise loop per supported function: y[i] = fn(x[i]) for 0 <= i < n."""
    m = ir.Module(name=f"mathfn_test_{dtype}")
    ft = ir.FloatType() if dtype == "float32" else ir.DoubleType()
    i64 = ir.IntType(64)
    for name in NAMES:
        fnty = ir.FunctionType(ir.VoidType(), [ft.as_pointer(), ft.as_pointer(), i64])
        fn = ir.Function(m, fnty, name=f"f_{name}")
        for a in fn.args[:2]:
            a.add_attribute("noalias")
        entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        b.cbranch(b.icmp_signed(">", fn.args[2], ir.Constant(i64, 0)), loop, done)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), entry)
        v = b.load(b.gep(fn.args[0], [i], inbounds=True))
        b.store(b.call(get_math_fn(m, name, dtype), [v]), b.gep(fn.args[1], [i], inbounds=True))
        nxt = b.add(i, ir.Constant(i64, 1))
        i.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed("<", nxt, fn.args[2]), loop, done)
        b.position_at_end(done)
        b.ret_void()
    return m


class _Compiled:
    def __init__(self, dtype):
        self.dtype = dtype
        self.jm = compile_ir(str(_loop_module(dtype)), opt_level=3, cache=False)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self._fns = {n: proto(self.jm.address(f"f_{n}")) for n in NAMES}

    def __call__(self, name, x):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.empty_like(x)
        self._fns[name](x.ctypes.data, y.ctypes.data, x.size)
        return y


@pytest.fixture(scope="module", params=DTYPES)
def compiled(request):
    return _Compiled(request.param)


def _ordered(a):
    """Map floats to integers monotonically (adjacent floats differ by 1; +0 == -0)."""
    i = a.view(np.int32 if a.dtype == np.float32 else np.int64).astype(np.int64)
    magnitude = np.int64(0x7FFFFFFF if a.dtype == np.float32 else 0x7FFFFFFFFFFFFFFF)
    return np.where(i < 0, -(i & magnitude), i)


def _ulp_distance(y, ref):
    """Integer ulp distance between two arrays of the same float dtype; non-finite values
    must match exactly (0 if they do, a huge number if not)."""
    d = np.abs(_ordered(y) - _ordered(ref)).astype(np.float64)
    finite = np.isfinite(y) & np.isfinite(ref)
    same = (y == ref) | (np.isnan(y) & np.isnan(ref))
    return np.where(finite, d, np.where(same, 0.0, np.inf))


def _true_ulp_error(y, ref_ld):
    """|y - ref| in ulps of float64 at the reference (ref in long double)."""
    rd = ref_ld.astype(np.float64)
    err = np.abs(y.astype(LD) - ref_ld) / np.spacing(np.abs(rd)).astype(LD)
    finite = np.isfinite(y) & np.isfinite(rd)
    same = (y == rd) | (np.isnan(y) & np.isnan(rd))
    return np.where(finite, err.astype(np.float64), np.where(same, 0.0, np.inf))


def _domain(name, dtype):
    """A dense grid over the useful range of ``name``, plus tiny and boundary inputs."""
    f32 = dtype == "float32"
    lin, geo = np.linspace, np.logspace
    tiny = geo(-45 if f32 else -323, 0, 20001)
    tiny = np.concatenate([tiny, -tiny])
    if name == "exp":
        x = [lin(-104.0 if f32 else -745.2, 88.73 if f32 else 709.79, 400001), lin(-1, 1, 20001)]
    elif name == "expm1":
        x = [lin(-20 if f32 else -40, 88.73 if f32 else 709.79, 400001), lin(-2, 2, 40001)]
    elif name == "log":
        e = lin(-149 if f32 else -1074, 128 if f32 else 1024, 400001)
        x = [np.exp2(e[:-1]), 1 + tiny[np.abs(tiny) < 0.5], lin(0.5, 2, 40001)]
    elif name == "log1p":
        e = lin(-10, 127 if f32 else 1023, 200001)
        x = [-1 + geo(-7 if f32 else -16, 0, 20001), np.exp2(e[:-1]), lin(-0.9, 3, 40001)]
    elif name == "tanh":
        x = [lin(-12 if f32 else -22, 12 if f32 else 22, 400001)]
    elif name == "log2":
        e = lin(-149 if f32 else -1074, 128 if f32 else 1024, 400001)
        x = [np.exp2(e[:-1]), 1 + tiny[np.abs(tiny) < 0.5], lin(0.5, 2, 40001)]
    elif name == "exp2":
        x = [lin(-151 if f32 else -1076, 128 if f32 else 1024, 400001), lin(-1, 1, 20001)]
    elif name == "erf":   # (the reference is mpmath: fewer points)
        x = [lin(-4.5 if f32 else -6.5, 4.5 if f32 else 6.5, 60001), lin(0.9, 1.1, 4001),
             tiny[::10]]
    else:
        rng = np.random.default_rng(1)
        x = [lin(-1e5, 1e5, 400001), lin(-10, 10, 40001), rng.uniform(-1e5, 1e5, 100000)]
    with np.errstate(over="ignore"):
        x = np.concatenate(x + [tiny]).astype(dtype)
    x = x[np.isfinite(x)]
    if name == "erf":
        return x
    if name in ("log", "log2"):
        x = x[x > 0]
    if name == "log1p":
        x = x[x > -1]
    return x


def _errors(compiled, name, x):
    """(max error used for the bound, description string) for inputs x."""
    y = compiled(name, x)
    with np.errstate(all="ignore"):
        if compiled.dtype == "float32":
            ref = REF[name](x.astype(np.float64)).astype(np.float32)
            d = _ulp_distance(y, ref)
            return d.max(), f"{d.max():.0f} ulp vs correctly rounded (x={x[np.argmax(d)]!r})"
        true = _true_ulp_error(y, REF[name](x.astype(LD)))
        d = _ulp_distance(y, REF[name](x))
    worst = max(true.max(), d.max())
    return worst, (f"{true.max():.2f} ulp vs long double (x={x[np.argmax(true)]!r}), "
                   f"{d.max():.0f} ulp vs numpy float64")


@pytest.mark.parametrize("name", NAMES)
def test_accuracy(compiled, name):
    x = _domain(name, compiled.dtype)
    worst, desc = _errors(compiled, name, x)
    print(f"\n{name} {compiled.dtype}: {desc} over {x.size} points")
    assert worst <= MAX_ULP[compiled.dtype], desc


# Lanes per vector LLVM 22 uses for each CPU (bytes: 16 SSE, 32 AVX2, 64 AVX-512).
# skylake-avx512 and x86-64-v4 have AVX-512 but prefer 256-bit vectors; Zen 4/5 use 512.
# Baseline x86-64 has no FMA instruction (llvm.fma is a libm call there), so LLVM's cost
# model vectorizes only some float64 bodies: only float32 is asserted for it.
VECTOR_BYTES = {"x86-64": 16, "haswell": 32, "znver3": 32, "x86-64-v3": 32,
                "skylake-avx512": 32, "x86-64-v4": 32, "znver4": 64, "znver5": 64}


@pytest.fixture(scope="module")
def compiled_for():
    """(cpu, dtype) -> JitModule compiled for that CPU (read, never run)."""
    made = {}

    def get(cpu, dtype):
        if (cpu, dtype) not in made:
            made[cpu, dtype] = compile_ir(str(_loop_module(dtype)), opt_level=3,
                                          cache=False, cpu=cpu)
        return made[cpu, dtype]
    return get


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="named x86-64 CPUs")
@pytest.mark.parametrize("cpu, dtype", [(c, d) for c in sorted(VECTOR_BYTES) for d in DTYPES
                                        if (c, d) != ("x86-64", "float64")])
def test_loops_vectorize(compiled_for, cpu, dtype):
    jm = compiled_for(cpu, dtype)
    lanes = VECTOR_BYTES[cpu] // (4 if dtype == "float32" else 8)
    want = f"<{lanes} x {'float' if dtype == 'float32' else 'double'}>"
    wider = f"<{2 * lanes} x {'float' if dtype == 'float32' else 'double'}>"
    bodies = {}
    for chunk in jm.llvm_ir_optimized.split("\ndefine ")[1:]:
        bodies[chunk.split("@", 1)[1].split("(", 1)[0]] = chunk.split("\n}\n", 1)[0]
    half = f"<{lanes // 2} x float>"
    for name in NAMES:
        body = bodies[f"f_{name}"]
        if (name, dtype) == ("tan", "float32"):   # computed in float64: float64's width
            assert cpu == "x86-64" or want in body or half in body, f"tan float32 {cpu}"
            continue                              # (x86-64: as float64, see above)
        assert want in body, f"{name} {dtype} {cpu}: loop did not vectorize to {want}"
        assert wider not in body, f"{name} {dtype} {cpu}: vectors wider than the CPU's"
        # Nothing left to call but vector intrinsics: the math function was inlined.
        calls = [ln for ln in body.splitlines() if " call " in ln]
        assert all("@llvm." in ln for ln in calls), calls


def test_no_libm_or_unsafe_intrinsics():
    """Bodies use only intrinsics that vectorize and lower on NVPTX (no llvm.exp etc.)."""
    m = ir.Module()
    for name in NAMES:
        for dtype in DTYPES:
            get_math_fn(m, name, dtype)
    declared = {f.name for f in m.functions if f.is_declaration}
    allowed = {"llvm.fma", "llvm.fabs", "llvm.copysign"}
    assert {d.rsplit(".", 1)[0] for d in declared} <= allowed, declared


_PTX_SCRIPT = """
import sys, llvmlite.binding as llvm, llvmlite.ir as ir
from adjit.backends.lowering.mathfn import get_math_fn, SUPPORTED
llvm.initialize_all_targets(); llvm.initialize_all_asmprinters()
m = ir.Module(); m.triple = "nvptx64-nvidia-cuda"
try:
    llvm.Target.from_triple(m.triple)
except RuntimeError:
    sys.exit(3)                     # this llvmlite has no NVPTX backend
for dt in ("float32", "float64"):
    for n in sorted(SUPPORTED):
        f = get_math_fn(m, n, dt)
        g = ir.Function(m, f.function_type, name=f"k_{n}_{dt}")
        b = ir.IRBuilder(g.append_basic_block()); b.ret(b.call(f, g.args))
tm = llvm.Target.from_triple(m.triple).create_target_machine(cpu="sm_80", opt=3)
sys.stdout.write(tm.emit_assembly(llvm.parse_assembly(str(m))))
"""


def test_lowers_to_ptx(tmp_path):
    """NVPTX codegen accepts every function (LLVM would exit the process on llvm.exp etc.,
    hence the subprocess); ptxas checks the PTX when it is installed."""
    import shutil
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c", _PTX_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    if res.returncode == 3:
        pytest.skip("llvmlite built without NVPTX")
    assert res.returncode == 0, res.stderr[-2000:]
    assert ".func" in res.stdout and "fma.rn.f64" in res.stdout
    if shutil.which("ptxas"):
        ptx = tmp_path / "mathfn.ptx"
        ptx.write_text(res.stdout)
        chk = subprocess.run(["ptxas", "-arch=sm_80", str(ptx), "-o", str(tmp_path / "o.cubin")],
                             capture_output=True, text=True, timeout=120)
        assert chk.returncode == 0, chk.stderr[-2000:]


def test_api():
    m = ir.Module()
    f = get_math_fn(m, "tanh", "float32")
    assert f.name == "adjit_tanh_f32" and f.linkage == "internal"
    assert "alwaysinline" in f.attributes
    assert get_math_fn(m, "tanh", "f32") is f
    assert get_math_fn(m, "tanh", "float64") is not f
    assert f.function_type.return_type == ir.FloatType()
    assert {"exp", "log", "log1p", "expm1", "tanh", "sin", "cos"} <= SUPPORTED
    assert {"tan", "erf", "log2", "exp2"} <= SUPPORTED
    with pytest.raises(ValueError):
        get_math_fn(m, "lgamma", "float32")
    with pytest.raises(ValueError):
        get_math_fn(m, "exp", "float16")
    clash = ir.Module()
    clash.declare_intrinsic("llvm.fma", [ir.DoubleType()])    # llvmlite's 1-argument form
    with pytest.raises(TypeError):
        get_math_fn(clash, "exp", "float64")
    assert "adjit_exp_f64" not in clash.globals                # no half-built function left


def _special_cases(dtype):
    f32 = dtype == "float32"
    inf, nan = np.inf, np.nan
    big = 1e5 if f32 else 1e300
    return [
        ("exp", [-inf, inf, nan, -0.0, 0.0, 1e4, -1e4, 89.0 if f32 else 710.0],
         [0.0, inf, nan, 1.0, 1.0, inf, 0.0, inf]),
        ("expm1", [-inf, inf, nan, -0.0, 0.0, -1e4, 1e4], [-1.0, inf, nan, -0.0, 0.0, -1.0, inf]),
        ("log", [0.0, -0.0, -1.0, -inf, inf, nan, 1.0], [-inf, -inf, nan, nan, inf, nan, 0.0]),
        ("log1p", [-1.0, -2.0, -inf, inf, nan, 0.0, -0.0],
         [-inf, nan, nan, inf, nan, 0.0, -0.0]),
        ("tanh", [-inf, inf, nan, -0.0, 0.0, big, -big], [-1.0, 1.0, nan, -0.0, 0.0, 1.0, -1.0]),
        ("sin", [-inf, inf, nan, -0.0, 0.0], [nan, nan, nan, -0.0, 0.0]),
        ("cos", [-inf, inf, nan, -0.0, 0.0], [nan, nan, nan, 1.0, 1.0]),
        ("tan", [-inf, inf, nan, -0.0, 0.0], [nan, nan, nan, -0.0, 0.0]),
        ("erf", [-inf, inf, nan, -0.0, 0.0, 10.0, -10.0, big, -big],
         [-1.0, 1.0, nan, -0.0, 0.0, 1.0, -1.0, 1.0, -1.0]),
        ("log2", [0.0, -0.0, -1.0, -inf, inf, nan, 1.0, 8.0, 0.5, 2.0 ** -149 if f32 else 2.0 ** -1074],
         [-inf, -inf, nan, nan, inf, nan, 0.0, 3.0, -1.0, -149.0 if f32 else -1074.0]),
        ("exp2", [-inf, inf, nan, -0.0, 0.0, 3.0, -1.0, 128.0 if f32 else 1024.0,
                  -151.0 if f32 else -1076.0, -149.0 if f32 else -1074.0, 1e4, -1e4],
         [0.0, inf, nan, 1.0, 1.0, 8.0, 0.5, inf, 0.0, 2.0 ** -149 if f32 else 2.0 ** -1074,
          inf, 0.0]),
    ]


def test_special_values(compiled):
    for name, xs, want in _special_cases(compiled.dtype):
        y = compiled(name, np.array(xs, dtype=compiled.dtype))
        want = np.array(want, dtype=compiled.dtype)
        ok = (y == want) & (np.signbit(y) == np.signbit(want)) | (np.isnan(y) & np.isnan(want))
        assert ok.all(), (name, compiled.dtype, list(zip(xs, y, want)))


def test_tiny_inputs_exact(compiled):
    """log1p, expm1, tanh, sin, tan are x itself (to rounding) for tiny x, subnormals included."""
    t = np.finfo(compiled.dtype).smallest_subnormal
    x = np.array([t, -t, 3 * t, 1e-30, -1e-30, 2.0 ** -60], dtype=compiled.dtype)
    for name in ("log1p", "expm1", "tanh", "sin", "tan"):
        np.testing.assert_array_equal(compiled(name, x), x, err_msg=name)


def test_subnormal_results_and_inputs(compiled):
    """exp underflows gradually (no flush to zero); log of subnormals is accurate."""
    info = np.finfo(compiled.dtype)
    lo = np.log(float(info.smallest_subnormal)) - 0.3
    x = np.linspace(lo, np.log(float(info.smallest_normal)), 100001).astype(compiled.dtype)
    y = compiled("exp", x)
    assert (y[x > lo + 1] > 0).all()
    with np.errstate(all="ignore"):
        ref = np.exp(x.astype(LD)).astype(compiled.dtype)    # one rounding, to subnormal
    assert _ulp_distance(y, ref).max() <= 1
    sub = (np.arange(1, 200001) * info.smallest_subnormal).astype(compiled.dtype)
    worst, desc = _errors(compiled, "log", sub)
    assert worst <= MAX_ULP[compiled.dtype], desc


def _near_multiples_of_pio2(dtype, top, n, seed):
    """Floats next to k*pi/2 for k log-spaced up to top*2/pi (and the floats above them)."""
    rng = np.random.default_rng(seed)
    k = np.rint(np.exp(rng.uniform(0, np.log(top) + np.log(2 / np.pi), n)))
    near = (k.astype(LD) * (LD(np.pi) / 2)).astype(dtype)     # pi/2 to float64 is enough
    up = np.nextafter(near, np.array(np.inf, dtype))
    return np.concatenate([near, up])


def _log_spaced(dtype, lo, hi, n, seed):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(dtype)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sincos_range(compiled, name):
    """Accuracy for |x| up to 1e6 (f32) / 1e15 (f64), the Cody–Waite range, also next to
    multiples of pi/2."""
    f32 = compiled.dtype == "float32"
    top = 1e6 if f32 else 1e15
    x = np.concatenate([_near_multiples_of_pio2(compiled.dtype, top, 100000, 2),
                        _log_spaced(compiled.dtype, 1, top, 50000, 3)])
    worst, desc = _errors(compiled, name, x[np.abs(x) <= top])
    print(f"\n{name} {compiled.dtype} |x| <= {top:g}: {desc}")
    assert worst <= MAX_ULP[compiled.dtype], desc


# sin/cos over the whole float range: Payne–Hanek reduction (mathfn_trig) from PH_MIN on.
# Bounds: float64 <= 2 ulp against long double (glibc sinl/cosl reduce exactly; measured max
# 1.49), float32 <= 1 ulp from the correctly rounded result.  The old Cody–Waite-only code
# returned NaN past 2^50 / 2^22.
HUGE_ULP = {"float32": 1, "float64": 2}


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sincos_huge_arguments(compiled, name):
    """Per decade of |x| up to 3e38 (f32) / 1e300 (f64), and next to multiples of pi/2 of
    every size: one error table, printed with ``pytest -s``."""
    dt, f32 = compiled.dtype, compiled.dtype == "float32"
    top = 3.4e38 if f32 else 1.7e308
    edges = np.geomspace(1.0, top, 20 if f32 else 40)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        x = np.concatenate([_log_spaced(dt, lo, hi, 20000, i),
                            _near_multiples_of_pio2(dt, hi, 2000, 100 + i)])
        x = x[np.isfinite(x) & (np.abs(x) >= lo)]
        worst, desc = _errors(compiled, name, x)
        rows.append((lo, worst, desc))
        print(f"\n{name} {dt} [{lo:.1e}, {hi:.1e}): {desc}", end="")
    bad = [r for r in rows if not r[1] <= HUGE_ULP[dt]]
    assert not bad, bad
    big = np.finfo(dt).max
    x = np.array([big, -big, np.nextafter(big, 0), 2.0 ** 1000 if not f32 else 2.0 ** 100],
                 dtype=dt)
    worst, desc = _errors(compiled, name, x)
    assert worst <= HUGE_ULP[dt], desc


def test_sincos_hardest_reductions(compiled):
    """The floats closest to a multiple of pi/2 (|x mod pi/2| ~ 2^-61 f64, 2^-30 f32 class)
    against 2000-bit mpmath: the reduction keeps every bit that matters."""
    mp = mpmath
    f32 = compiled.dtype == "float32"
    xs = ([16367173 * 2.0 ** 72, 16367173 * 2.0 ** -0, 13176795.0, 3.4e38, 2.0 ** 127]
          if f32 else
          [6381956970095103 * 2.0 ** 797, 5261692873635770 * 2.0 ** 499,
           8700973067983583 * 2.0 ** 956, 1e22, 2.0 ** 1023, np.finfo(np.float64).max])
    x = np.array(xs + [-v for v in xs], dtype=compiled.dtype)
    with mp.workprec(2000):
        for name, f in (("sin", mp.sin), ("cos", mp.cos)):
            y = compiled(name, x)
            for xi, yi in zip(x, y):
                ref = f(mp.mpf(float(xi)))
                ulp = float(np.spacing(np.abs(np.array(float(ref), compiled.dtype))))
                err = float(abs(mp.mpf(float(yi)) - ref)) / ulp
                assert err <= 1.0, (name, xi, yi, float(ref), err)


def test_sincos_payne_hanek_everywhere(monkeypatch):
    """The Payne–Hanek path alone (PH_MIN = 1) on the dense small-argument grid: it is
    correct wherever it is selected, not only above the threshold."""
    from adjit.backends.lowering import mathfn_trig
    for dt in DTYPES:
        key = "f32" if dt == "float32" else "f64"
        monkeypatch.setitem(mathfn_trig.PH, key, {**mathfn_trig.PH[key], "PH_MIN": 1.0})
        c = _Compiled(dt)
        x = np.concatenate([_near_multiples_of_pio2(dt, 1e5, 50000, 7),
                            _log_spaced(dt, 1, 1e5, 100000, 8)])
        for name in ("sin", "cos"):
            worst, desc = _errors(c, name, x)
            assert worst <= HUGE_ULP[dt], (dt, name, desc)


def test_sincos_special_values_every_path(compiled):
    """±inf and NaN give NaN, ±0 and subnormals are exact (sin) / 1 (cos), on both
    reductions' side of PH_MIN."""
    dt = compiled.dtype
    t = float(np.finfo(dt).smallest_subnormal)
    x = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, t, -t, 7 * t], dtype=dt)
    s, c = compiled("sin", x), compiled("cos", x)
    assert np.isnan(s[:4]).all() and np.isnan(c[:4]).all()
    np.testing.assert_array_equal(s[4:], x[4:])
    assert np.signbit(s[5]) and not np.signbit(s[4])
    np.testing.assert_array_equal(c[4:], np.ones(5, dt))


def test_two_over_pi_table():
    """mathfn_trig.TWO_OVER_PI is 2/pi's fraction bits, re-derived with mpmath."""
    mp = mpmath
    from adjit.backends.lowering.mathfn_trig import TWO_OVER_PI
    words = TWO_OVER_PI[2:]
    with mp.workprec(32 * len(words) + 64):
        v = int(mp.floor(2 / mp.pi * mp.mpf(2) ** (32 * len(words))))
    assert TWO_OVER_PI[:2] == (0, 0)
    assert list(words) == [(v >> (32 * (len(words) - 1 - k))) & 0xFFFFFFFF
                           for k in range(len(words))]


def _interp(g, a, b, n, mp):
    """Polynomial (monomial coefficients, low first) interpolating g at n+1 Chebyshev nodes."""
    ts = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (2 * i + 1) / (2 * (n + 1)))
          for i in range(n + 1)]
    c = mp.lu_solve(mp.matrix([[t ** j for j in range(n + 1)] for t in ts]),
                    mp.matrix([g(t) for t in ts]))
    return [c[j] for j in range(n + 1)]


def test_coefficients_rederive():
    """The polynomial constants in mathfn are the Chebyshev-node interpolants described in
    its docstring (60-digit mpmath, rounded to the dtype), so they can be regenerated."""
    mp = mpmath.mp
    mp.dps = 60

    def guard(f, at0):
        return lambda t: at0 if abs(t) < mp.mpf("1e-30") else f(t)

    sq = mp.sqrt
    zmax_trig = (mp.pi / 4 + mp.mpf("1e-3")) ** 2
    targets = {
        "Q": (guard(lambda r: (mp.expm1(r) - r - r ** 2 / 2) / r ** 3, mp.mpf(1) / 6),
              -mp.log(2) / 2, mp.log(2) / 2),
        "T": (guard(lambda z: (2 * mp.atanh(sq(z)) / sq(z) - 2) / z, mp.mpf(2) / 3),
              0, ((sq(2) - 1) / (sq(2) + 1)) ** 2),
        "S": (guard(lambda z: (mp.sin(sq(z)) / sq(z) - 1) / z, -mp.mpf(1) / 6), 0, zmax_trig),
        "CC": (guard(lambda z: (mp.cos(sq(z)) - 1 + z / 2) / z ** 2, mp.mpf(1) / 24),
               0, zmax_trig),
        "P": (guard(lambda z: (mp.tanh(sq(z)) / sq(z) - 1) / z, -mp.mpf(1) / 3),
              0, mp.mpf("0.55") ** 2),
    }
    for suffix, npt in (("f32", np.float32), ("f64", np.float64)):
        for key, (g, a, b) in targets.items():
            have = mathfn._C[suffix][key]
            got = _interp(g, mp.mpf(a), mp.mpf(b), len(have) - 1, mp)
            assert [float(npt(float(c))) for c in got] == list(have), (suffix, key)


def test_special_coefficients_rederive():
    """erf's constants in mathfn_special: the Chebyshev-node interpolants of its docstring."""
    from adjit.backends.lowering import mathfn_special
    mp = mpmath.mp
    mp.dps = 60

    def small(z):
        return 2 / mp.sqrt(mp.pi) - 1 if abs(z) < mp.mpf("1e-30") else mp.erf(mp.sqrt(z)) / mp.sqrt(z) - 1
    for suffix, npt in (("f32", np.float32), ("f64", np.float64)):
        k = mathfn_special._K[suffix]
        got = _interp(small, mp.mpf(0), mp.mpf(1), len(k["ERF_SMALL"]) - 1, mp)
        assert [float(npt(float(c))) for c in got] == list(k["ERF_SMALL"]), suffix
        edges = k["ERF_EDGES"]
        for (lo, hi), have in zip(zip(edges, edges[1:]), k["ERFCX"]):
            lo, hi = mp.mpf(lo), mp.mpf(hi)
            c = (lo + hi) / 2
            got = _interp(lambda t: mp.exp((t + c) ** 2) * mp.erfc(t + c), lo - c, hi - c,
                          len(have) - 1, mp)
            assert [float(npt(float(v))) for v in got] == list(have), (suffix, float(lo))
