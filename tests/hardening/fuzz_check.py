"""Run one fuzz case on every backend and check it against the oracle; shrink failures.

``check_case(case)`` returns a list of :class:`Failure` (empty: the case passed).  Each
failure has a class key ``check|backend|detail`` so that a long run can count distinct
failure classes; ``shrink(case, failure)`` reduces a failing case to a small one with
the same class (subtrees replaced by their children or by inputs holding their values).

Long run (prints counts per failure class and a shrunk reproducer of each)::

    PYTHONPATH=src:tests:tests/hardening python tests/hardening/fuzz_check.py 5000 [seed]
"""
from __future__ import annotations

import copy
import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np

import adjit as aj
import fuzz_ir_more as more
from fuzz_ir import E, build, evaluate, leaf, source
from fuzz_oracle import (FD, analyze, cotangent_range, matmul_limits, nan_limits,
                         overflow_limits, precision_limited, scale_of)

BACKENDS = {
    "interp": dict(backend="interp"),
    "interp-raw": dict(backend="interp", passes=[]),
    "llvm": dict(backend="llvm", cache=False),
    "ptx-emu": dict(backend="ptx", emulate=True, opt_level=0, cache=False),
}
KINK_EPS = 1e-3


@dataclass
class Failure:
    check: str
    backend: str
    detail: str
    where: str = ""

    @property
    def key(self):
        return f"{self.check}|{self.backend}|{self.detail}"

    @property
    def family(self):
        return f"{self.check}|{self.detail}"


def _norm(msg: str) -> str:
    msg = msg.splitlines()[0] if msg else ""
    msg = re.sub(r"\b(x|k|lab|mask|t|v_x|u_ct|idx|key)\d+\b", "N", msg)
    msg = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", msg)
    return msg[:90]


def reachable_leaves(case):
    return {n.attrs["name"]: n for n in case.out.walk() if n.op == "leaf"}


def prepare(case):
    """The adjit outputs of a case: [out, grads..., hvp...] and the call's values."""
    out, memo = build(case.out)
    assert out.shape == case.out.shape and out.dtype == case.out.dtype, \
        ("generator bug", out.shape, case.out.shape, out.dtype, case.out.dtype)
    leaves = reachable_leaves(case)
    wrt = [k for k in sorted(leaves) if leaves[k].dtype in ("float32", "float64")]
    nodes = {k: memo[id(leaves[k])] for k in leaves}
    u = aj.input("u_ct", out.shape, out.dtype)
    loss = aj.sum(out * u)
    rng = np.random.default_rng(case.seed + 7)
    concrete = lambda s: tuple(case.batch if d is None else d for d in s)   # noqa: E731
    values = {k: case.values[k] for k in leaves}
    values["u_ct"] = rng.standard_normal(concrete(out.shape)).astype(out.dtype)
    outs = [out]
    grads = aj.grad(loss, [nodes[k] for k in wrt]) if wrt else []
    outs += grads
    vdirs = {}
    if case.hvp and wrt:
        vs = []
        for k, g in zip(wrt, grads):
            v = aj.input("v_" + k, nodes[k].shape, nodes[k].dtype)
            vdirs[k] = rng.standard_normal(concrete(nodes[k].shape))
            values["v_" + k] = vdirs[k].astype(nodes[k].dtype)
            vs.append(aj.sum(g * v))
        dot = vs[0]
        for t in vs[1:]:
            dot = dot + t
        outs += aj.grad(dot, [nodes[k] for k in wrt])
    # the gradients read the cotangent u_ct, which has the output's shape: it binds the
    # batch whenever there is something to differentiate
    unbound = (any(None in n.shape for n in case.out.walk()) and not wrt
               and not any(None in n.shape for n in leaves.values()))
    return outs, values, wrt, vdirs, unbound


def _tol(case, S):
    low = case.dtype == "float32" or "cast" in {n.op for n in case.out.walk()}
    return (1e-4, 1e-4 * S) if low else (1e-9, 1e-9 * S)


def check_case(case, backends=None) -> list[Failure]:
    """Every check of one case; the failures found (IEEE warnings are expected here)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _check_case(case, backends)


def _check_case(case, backends=None, fd_cache=None) -> list[Failure]:
    backends = backends or list(BACKENDS)
    fails = []
    try:
        outs, values, wrt, vdirs, unbound = prepare(case)
    except AssertionError:
        raise
    except Exception as e:                                    # building the graph failed
        return [Failure("build", "frontend", f"{type(e).__name__}: {_norm(str(e))}")]
    results = {}
    for b in backends:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = aj.compile(outs, **BACKENDS[b])
                got = f(**{k: values[k] for k in f.input_names})
        except Exception as e:
            if not unbound:
                fails.append(Failure("crash", b, f"{type(e).__name__}: {_norm(str(e))}"))
            continue
        if unbound:
            fails.append(Failure("unbound-batch-accepted", b, "no input binds the batch"))
            continue
        results[b] = got
    if unbound or not results:
        return fails
    # --- forward values against the numpy reference -----------------------------------------
    vals64 = {k: v for k, v in values.items()}
    ref = evaluate(case.out, vals64, case.batch, "float64")
    want = np.asarray(ref[id(case.out)])
    ref32 = (np.asarray(evaluate(case.out, vals64, case.batch, "float32")[id(case.out)],
                        float) if case.dtype == "float32" else want)
    smooth = evaluate(case.out, vals64, case.batch, "float64", smooth=True)
    alt = other_order(case, vals64)
    gap, nonfinite, singular, live = analyze(case.out, smooth)
    limited = matmul_limits(case.out, [smooth, ref], live)    # the contract's matmul limit
    S = scale_of(case.out, smooth, live)
    rtol, atol = _tol(case, S)
    for b, got in results.items():
        fails += _compare_forward(b, np.asarray(got[0]), want, ref32, case, rtol, atol, alt)
    # --- gradients against finite differences ---------------------------------------------
    if case.special or not wrt or not want.size:
        return fails        # an empty output: the chain rule's 0 * NaN is not checked
    kinky = gap < KINK_EPS
    grtol, gatol = (2e-3, 2e-4) if rtol > 1e-6 else (1e-6, 1e-9)
    nan_ok = nan_limits(case.out, [smooth, ref], live)         # the contract's 0 · inf limits
    fd = FD(case, values["u_ct"], precision_limited(case.out, smooth, live, grtol))
    leaves = reachable_leaves(case)
    top = {k: cotangent_range(case.out, k, leaves[k].dtype) for k in wrt}
    low = ref if case.dtype == "float64" else evaluate(case.out, vals64, case.batch, case.dtype)
    limited |= overflow_limits(case.out, smooth, low, live)
    elems = fd_cache if fd_cache is not None else {}
    for i, k in enumerate(wrt):
        x = np.asarray(values[k])
        for j in range(x.size):
            if (k, j) not in elems:
                elems[(k, j)] = fd.grad_element(vals64, k, j)
            r = elems[(k, j)]
            gscale = max(S, abs(r["fd"]) if np.isfinite(r["fd"]) else 0.0)
            fails += _compare_grad(results, 1 + i, j, r, kinky, nonfinite or singular,
                                   grtol, gatol * gscale, f"d/d{k}[{j}]", k in limited,
                                   k in nan_ok, top[k])
    if case.hvp:
        base = 1 + len(wrt)
        for i, k in enumerate(wrt):
            for j in range(np.size(values[k])):
                fp = elems[(k, j)]
                if not np.isfinite(fp["f0"]):
                    continue    # the loss is inf/NaN at the point (a pole): no derivative
                a, err, noise = fd.hvp_element(vals64, vdirs, k, j)
                ok_nbhd = np.isfinite(fp["fp"]) and np.isfinite(fp["fm"]) and np.isfinite(fp["f0"])
                vague = fp["unresolved"] or fp["imprecise"]
                for b, got in results.items():
                    g = float(np.asarray(got[base + i]).flat[j])
                    if limited and not np.isfinite(g):
                        continue        # second order spreads the matmul limit's NaN
                    if nan_ok and np.isnan(g):
                        continue        # and nan_limits' NaN (to every leaf: v mixes them)
                    if _beyond_range(g, a, top[k]):
                        continue
                    if vague and np.isfinite(g):
                        continue        # first differences already unresolved/imprecise here
                    if gap < 1e-2:
                        if ok_nbhd and not (nonfinite or singular) and not np.isfinite(g):
                            fails.append(Failure("hvp-kink-nonfinite", b, "nan/inf at a kink",
                                                 f"hvp {k}[{j}]={g}"))
                    elif np.isfinite(a):
                        tol = (1e-4 * max(abs(a), abs(g)) + 1e-6 * max(S, abs(a)) + 20 * err
                               + noise)
                        if not np.isfinite(g):
                            fails.append(Failure("hvp-nonfinite", b, "nan/inf where FD finite",
                                                 f"hvp {k}[{j}]: got {g}, FD {a}"))
                        elif abs(g - a) > tol:
                            fails.append(Failure("hvp-mismatch", b, "value",
                                                 f"hvp {k}[{j}]: got {g}, FD {a}"))
    return fails


def other_order(case, vals):
    """The reference with einsum evaluated in numpy's optimized order (letters of one
    operand summed first, as adjit, numpy's optimize=True and PyTorch do): with infinities
    the order decides between NaN and ±inf, so either is right; and with IEEE 754-2019
    signs of tied zeros in min/max (either sign is right: a later 1/x gives ±inf).  None
    without einsum, min or max."""
    if not any(n.op in ("einsum", "min", "max") for n in case.out.walk()):
        return None
    more.EINSUM_OPTIMIZE = more.ZERO_TIES = True
    try:
        return np.asarray(evaluate(case.out, vals, case.batch, "float64")[id(case.out)])
    finally:
        more.EINSUM_OPTIMIZE = more.ZERO_TIES = False


def _compare_forward(b, got, want, ref32, case, rtol, atol, alt=None):
    if got.shape != want.shape or got.dtype != np.dtype(case.out.dtype):
        return [Failure("forward-shape", b, f"{got.shape}/{got.dtype}",
                        f"want {want.shape} {case.out.dtype}")]
    with np.errstate(all="ignore"):
        return _compare_values(b, got, want, ref32, rtol, atol, alt)


def _compare_values(b, got, want, ref32, rtol, atol, alt=None):
    g, w, w32 = (np.asarray(a, float) for a in (got, want, ref32))
    wa = w32 if alt is None else np.asarray(alt, float)
    fails = []
    nan_must = np.isnan(w) & np.isnan(w32) & np.isnan(wa)
    nan_may = np.isnan(w) | np.isnan(w32) | np.isnan(wa)
    bad = (np.isnan(g) & ~nan_may) | (~np.isnan(g) & nan_must)
    for s in (np.inf, -np.inf):
        must = (w == s) & (w32 == s) & (wa == s)
        may = (w == s) | (w32 == s) | (wa == s)
        bad |= ((g == s) & ~may & ~nan_may) | ((g != s) & must)
    if bad.any():
        j = int(np.argmax(bad.reshape(-1)))
        fails.append(Failure("forward-nonfinite", b, "nan/inf pattern differs from numpy",
                             f"out[{j}]: got {g.flat[j]}, numpy {w.flat[j]}"))
    fin = np.isfinite(w) & np.isfinite(g) & np.isfinite(w32)
    tol = rtol * np.abs(w) + atol + 8 * np.abs(w32 - w)
    off = fin & (np.abs(g - w) > tol)
    if off.any():
        j = int(np.argmax(off.reshape(-1)))
        fails.append(Failure("forward-value", b, "differs from numpy",
                             f"out[{j}]: got {g.flat[j]!r}, numpy {w.flat[j]!r}"))
    return fails


def _beyond_range(g, fd, top):
    """The true derivative overflows the leaf's dtype (|FD| past its largest finite value,
    within the rounding of the last step): ±inf of FD's sign is the correctly rounded
    answer, e.g. d/ds of (cast(s, float64) ** 18) ** 9 for a float32 s of 2.1 is 9e52."""
    return np.isinf(g) and np.isfinite(fd) and np.sign(g) == np.sign(fd) and \
        abs(fd) > top * (1 - 1e-3)


def _compare_grad(results, idx, j, r, kinky, unsafe, rtol, atol, what, limited=False,
                  nan_ok=False, top=np.inf):
    """``limited``: the contract allows a non-finite gradient here (matmul_limits);
    ``nan_ok``: a NaN one (nan_limits); ``top``: the leaf dtype's largest finite value.
    An element whose differences are unresolved (Richardson, FD.grad_element) or whose
    derivative the working precision does not fix (precision_limited) is checked like a
    kink: finite where the function is, but no value to compare with."""
    fails = []
    fd, err = r["fd"], r["err"] + r["noise"] / 10
    finite_nbhd = all(np.isfinite(r[t]) for t in ("f0", "fp", "fm"))
    if not np.isfinite(r["f0"]):
        return fails
    sides_agree = (np.isfinite(r["left"]) and np.isfinite(r["right"]) and
                   abs(r["left"] - r["right"]) <= 1e-3 * max(abs(r["left"]), abs(r["right"]))
                   + 1e3 * r["h"] * max(1.0, abs(fd)) + 10 * err)
    kink_here = kinky or not sides_agree or r["unresolved"] or r["imprecise"]
    gs = {b: float(np.asarray(got[idx]).flat[j]) for b, got in results.items()}
    for b, g in gs.items():
        if (limited and not np.isfinite(g)) or (nan_ok and np.isnan(g)) \
                or _beyond_range(g, fd, top):
            continue
        if kink_here:
            if finite_nbhd and not unsafe and not np.isfinite(g):
                fails.append(Failure("kink-nonfinite-grad", b, "nan/inf gradient at a kink/tie",
                                     f"{what}={g}, one-sided {r['left']:.3g}/{r['right']:.3g}"))
        elif np.isfinite(fd):
            if not np.isfinite(g):
                fails.append(Failure("grad-nonfinite", b, "nan/inf where FD finite",
                                     f"{what}: got {g}, FD {fd!r}"))
            elif abs(g - fd) > rtol * max(abs(g), abs(fd)) + atol + 10 * err:
                fails.append(Failure("grad-mismatch", b, "differs from FD",
                                     f"{what}: got {g!r}, FD {fd!r}"))
    # backends agree with each other (not where the precision does not fix the value)
    if kink_here and not unsafe and not r["imprecise"] and "interp-raw" in gs:
        ref = gs["interp-raw"]
        for b, g in gs.items():
            same = (np.isnan(g) and np.isnan(ref)) or g == ref or (
                np.isfinite(g) and np.isfinite(ref)
                and abs(g - ref) <= 1e-6 * max(abs(g), abs(ref)) + atol)
            if not same:
                fails.append(Failure("kink-backends-disagree", b, "vs interp without passes",
                                     f"{what}: {g} vs {ref}"))
    return fails


def check_labels_out_of_range(case, backends=None) -> list[Failure]:
    """cross_entropy/one_hot with a label >= depth, and take/take_along_axis with an index
    input outside [-n, n), must raise an error naming the input, on every backend."""
    labs = [n for n in case.out.walk() if n.op == "leaf" and n.attrs["role"] in
            ("labels", "index") and np.size(case.values[n.attrs["name"]])]
    if not labs:
        return []
    outs, values, *_ = prepare(case)
    name, depth = labs[0].attrs["name"], labs[0].attrs["depth"]
    bad = values[name].copy()
    bad.flat[0] = -depth - 1 if labs[0].attrs["role"] == "index" and case.seed % 2 else depth
    values[name] = bad
    fails = []
    for b in backends or list(BACKENDS):
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                f = aj.compile(outs, **BACKENDS[b])
                f(**{k: values[k] for k in f.input_names})
        except Exception as e:
            if name not in str(e):
                fails.append(Failure("label-range-error-unnamed", b, type(e).__name__))
            continue
        fails.append(Failure("label-out-of-range-accepted", b, "no error"))
    return fails


# --- shrinking --------------------------------------------------------------------------------------
def _replace(root, target, new, memo=None):
    memo = {} if memo is None else memo
    if root is target:
        return new
    if id(root) in memo:
        return memo[id(root)]
    args = tuple(_replace(a, target, new, memo) for a in root.args)
    out = root if all(a is b for a, b in zip(args, root.args)) else \
        E(root.op, args, root.attrs, root.shape, root.dtype)
    memo[id(root)] = out
    return out


def _variant(case, out, extra_values=None):
    c = copy.copy(case)
    c.out = out
    c.values = {**case.values, **(extra_values or {})}
    c.leaves = reachable_leaves(c)
    return c


def shrink(case, failure: Failure, budget: int = 120):
    """A smaller case failing with the same class on the same backend."""
    run = lambda c: any(f.key == failure.key for f in _check_any(c, failure))  # noqa: E731
    tries, changed = 0, True
    if case.hvp and run(_flag(case, hvp=False)):
        case = _flag(case, hvp=False)
    while changed and tries < budget:
        changed = False
        vals = evaluate(case.out, case.values, case.batch, case.dtype)
        for n in list(case.out.walk())[::-1]:
            if n.op in ("leaf", "num", "carr"):
                continue
            opts = [a for a in n.args if a.shape == n.shape and a.dtype == n.dtype]
            name = f"s{tries}"
            role = "mask" if n.dtype == "bool" else "float"
            opts.append(leaf(name, n.shape, n.dtype, "input", role))
            for o in opts:
                extra = {name: np.asarray(vals[id(n)]).astype(n.dtype)} if o.op == "leaf" else {}
                cand = _variant(case, _replace(case.out, n, o), extra)
                tries += 1
                if run(cand):
                    case, changed = cand, True
                    break
                if tries >= budget:
                    break
            if changed or tries >= budget:
                break
    return case


def _flag(case, **kw):
    c = copy.copy(case)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _check_any(case, failure):
    try:
        if failure.check.startswith("label"):
            return check_labels_out_of_range(case, [failure.backend])
        backends = [failure.backend] + (["interp-raw"] if failure.check.startswith("kink-b") else [])
        return check_case(case, backends)
    except AssertionError:
        return []


def reproducer(case) -> str:
    vals = {k: case.values[k] for k in reachable_leaves(case)}
    body = source(case.out)
    lines = [f"# seed {case.seed}, dtype {case.dtype}, batch {case.batch}, hvp {case.hvp}", body]
    for k, v in vals.items():
        lines.append(f"{k} = np.array({np.asarray(v).tolist()!r}, {np.asarray(v).dtype.name!r})")
    return "\n".join(lines)


if __name__ == "__main__":
    from fuzz_report import main
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200,
         int(sys.argv[2]) if len(sys.argv) > 2 else 0)
