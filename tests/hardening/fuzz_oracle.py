"""The fuzzer's oracle: numpy forward values and finite differences in float64, with a
per-element account of kinks, ties and singular points.

Nothing here uses adjit's derivative rules or its interpreter: forward values come from
fuzz_ir's own numpy evaluator, gradients from two-sided differences of it (with a
Richardson error estimate), Hessian-vector products from mixed second differences.
"""
from __future__ import annotations

import numpy as np

import fuzz_ir_more as more
import fuzz_ir_windows as windows
from fuzz_ir import COMPARE_OPS, E, dropout_mask, evaluate

KINK_OPS = {"relu", "abs", "sign", "leaky_relu", "elu"}
# ops whose VJP hands some operand elements an exact 0 cotangent (a slice's dropped
# elements, a gather's unread ones, floor's zero derivative, the unselected bound of
# clip): below them the chain rule meets 0 · inf where the operand's subtree holds an inf
# (see nan_limits)
ZERO_COTANGENT = {"getitem", "take", "take_along", "floor", "ceil", "round", "clip",
                  "leaky_relu", "elu", "min", "argmax", "argmin", "maxpool"}


def _unbroadcast(mask, shape):
    """Any-reduce a bool mask of a broadcast result back onto an operand's shape."""
    mask = np.asarray(mask)
    while mask.ndim > len(shape):
        mask = mask.any(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and mask.shape[i] != 1:
            mask = mask.any(axis=i, keepdims=True)
    return np.broadcast_to(mask, shape)


def analyze(root: E, vals: dict):
    """Liveness (which elements reach the output through selected where-branches), and over
    live elements: the smallest distance to a kink or tie, whether a value is non-finite,
    and whether a derivative is singular (sqrt at 0, a non-integer power of 0, ...)."""
    order = list(root.walk())
    live = {id(n): np.zeros(np.shape(vals[id(n)]), bool) for n in order}
    live[id(root)][...] = True
    gap, nonfinite, singular = np.inf, False, False
    for n in reversed(order):
        L = live[id(n)]
        v = vals[id(n)]
        a = [vals[id(c)] for c in n.args]
        if not L.any():
            continue
        if np.asarray(v).dtype.kind == "f" and not np.all(np.isfinite(np.asarray(v)[L])):
            nonfinite = True
        with np.errstate(all="ignore"):
            g = None
            if n.op in KINK_OPS:
                g = np.abs(a[0])
            elif n.op in ("maximum", "minimum") or n.op in COMPARE_OPS:
                g = np.abs(np.asarray(a[0], float) - np.asarray(a[1], float))
            elif n.op in ("sqrt", "log", "log2", "log1p"):
                z = a[0] + 1.0 if n.op == "log1p" else a[0]
                g = np.abs(z)
                singular |= bool(np.any(np.broadcast_to(z == 0, L.shape)[L]))
            elif n.op == "div":
                g = np.abs(a[1])
            elif n.op == "reciprocal":
                g = np.abs(a[0])
            elif n.op == "clip":
                x, lo, hi = (np.asarray(t, float) for t in a)
                g = np.minimum(np.minimum(np.abs(x - lo), np.abs(x - hi)), np.abs(lo - hi))
            elif n.op in ("floor", "ceil"):
                g = np.abs(a[0] - np.round(a[0]))
            elif n.op == "round":
                g = np.abs(a[0] - np.floor(a[0]) - 0.5)
            elif n.op == "std":                      # sqrt(var) at var = 0
                singular |= bool(np.any(np.asarray(v)[L] == 0))
            elif n.op == "pow":
                b = n.args[1]
                const_int = b.op in ("num", "carr") and np.all(np.mod(a[1], 1) == 0)
                if not const_int:
                    g = np.abs(a[0])
                    singular |= bool(np.any(np.broadcast_to(a[0] <= 0, L.shape)[L]))
            elif n.op == "maxpool":                 # ties within a window
                gap = min(gap, windows.pool_gap(a[0], n.attrs))
            elif n.op in ("max", "min", "argmax", "argmin"):
                x = a[0] if n.op in ("max", "argmax") else -np.asarray(a[0], float)
                axis = n.attrs["axis"]
                s = np.sort(x, axis=axis if axis is not None else None)
                if axis is None:
                    s = s.reshape(-1)
                    axis = 0
                if s.shape[axis] >= 2 and s.size:
                    top = np.take(s, [-1], axis=axis) - np.take(s, [-2], axis=axis)
                    g = top
            if g is not None and np.size(g):
                gb = np.broadcast_to(np.asarray(g, float), np.broadcast(g, L).shape) \
                    if n.op not in REDUCE_KINKS else np.asarray(g, float)
                sel = gb[np.broadcast_to(L, gb.shape)] if n.op not in REDUCE_KINKS \
                    else gb.reshape(-1)
                sel = sel[~np.isnan(sel)]
                if sel.size:
                    gap = min(gap, float(np.min(sel)))
        _propagate(n, L, a, live, v)
    return gap, nonfinite, singular, live


REDUCE_KINKS = {"max", "min", "argmax", "argmin"}
REDUCTIONS = {"sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin"}


def _moved_ids(n, a):
    """Element ids of the operands (numbered over all float operands in turn) at each
    output element of a value-moving node; -1 where none."""
    if n.op in ("take", "take_along"):
        ids = np.arange(np.size(a[0])).reshape(np.shape(a[0]))
        if n.op == "take":
            return np.take(ids, a[1], axis=n.attrs["axis"]) if ids.size else None
        if np.shape(a[0])[n.attrs["axis"]] == 0:
            return None
        return np.take_along_axis(ids, a[1], axis=n.attrs["axis"])
    ids, k = [], 0
    for x in a:
        ids.append(np.arange(k, k + np.size(x)).reshape(np.shape(x)))
        k += np.size(x)
    return more.moved_ids(n, ids, None)


def _propagate(n, L, a, live, v):
    def give(child, mask):
        cur = live[id(child)]
        live[id(child)] = cur | np.broadcast_to(mask, cur.shape)

    op, at = n.op, n.attrs
    if op == "where":
        c = np.broadcast_to(a[0], L.shape)
        give(n.args[0], _unbroadcast(L, np.shape(a[0])))
        give(n.args[1], _unbroadcast(L & c, np.shape(a[1])))
        give(n.args[2], _unbroadcast(L & ~c, np.shape(a[2])))
    elif op in more.MOVES:
        out = _moved_ids(n, a)
        floats = n.args if op in ("getitem", "pad", "concat") else n.args[:1]
        total = sum(np.size(x) for x in a[:len(floats)])
        hit = np.zeros(total, bool)
        if out is not None:
            sel = np.broadcast_to(out, L.shape)[L]
            hit[sel[sel >= 0]] = True
        k = 0
        for c, x in zip(floats, a):
            give(c, hit[k:k + np.size(x)].reshape(np.shape(x)))
            k += np.size(x)
        for c, x in zip(n.args[len(floats):], a[len(floats):]):
            give(c, np.full(np.shape(x), bool(L.any())))
    elif op == "uniform":
        pass                                           # the key: not differentiable
    elif op in windows.OPS:                            # window ops: all or nothing
        for c, x in zip(n.args, a):
            give(c, np.full(np.shape(x), bool(L.any())))
    elif op in REDUCTIONS:
        m = L
        if at["axis"] is None:
            m = np.broadcast_to(L.any(), np.shape(a[0]))
        else:
            if not at["keepdims"]:
                m = np.expand_dims(L, at["axis"])
            m = np.broadcast_to(m, np.shape(a[0]))
        give(n.args[0], m)
    elif op == "reshape":
        give(n.args[0], L.reshape(np.shape(a[0])))
    elif op == "transpose":
        perm = at["perm"] if at["perm"] is not None else tuple(reversed(range(L.ndim)))
        give(n.args[0], np.transpose(L, np.argsort(perm)))
    elif op in ("cast", "to_float"):
        give(n.args[0], L)
    elif op == "dropout":                              # the kept elements; not the key
        keep = dropout_mask(a[1], L.shape, n.dtype, at["rate"]) if at["rate"] else True
        give(n.args[0], L & keep)
    elif op in ("broadcast_to",) or len(n.args) and np.shape(v) == L.shape and op not in (
            "matmul", "softmax", "log_softmax", "logsumexp", "mse", "xent", "one_hot", "einsum"):
        for c, x in zip(n.args, a):
            give(c, _unbroadcast(L, np.shape(x)))
    else:                                              # matmul, composites: all or nothing
        for c, x in zip(n.args, a):
            give(c, np.full(np.shape(x), bool(L.any())))


def scale_of(root: E, vals: dict, live) -> float:
    mags = [1.0]
    for n in root.walk():
        v = np.asarray(vals[id(n)])
        if v.dtype.kind == "f" and v.size:
            x = np.abs(v[live[id(n)] & np.isfinite(v)]) if live[id(n)].shape == v.shape else []
            if np.size(x):
                mags.append(float(np.max(x)))
    return max(mags)


EPS64 = np.finfo(np.float64).eps


class FD:
    """Finite differences of L(values) = sum(reference(values) * u), in float64.

    ``watch``: (node id, bool mask) pairs of precision-limited elements
    (:func:`precision_limited`); a gradient element whose perturbation moves one of them
    is reported as ``imprecise``."""

    def __init__(self, case, u, watch=()):
        self.case, self.u, self.watch = case, np.asarray(u, float), list(watch)

    def _eval(self, vals):
        r = evaluate(self.case.out, vals, self.case.batch, "float64", smooth=True)
        with np.errstate(all="ignore"):
            return float(np.sum(np.asarray(r[id(self.case.out)], float) * self.u)), r

    def loss(self, vals):
        return self._eval(vals)[0]

    def grad_element(self, vals, k, j):
        x = np.array(vals[k], dtype=float)
        h = 1e-5 * max(1.0, abs(float(x.flat[j])))
        seen = []

        def at(t):
            y = x.copy()
            y.flat[j] += t
            f, r = self._eval({**vals, k: y})
            seen.append([np.asarray(r[i])[m] for i, m in self.watch])
            return f
        f0, fp, fm, fp2, fm2 = at(0.0), at(h), at(-h), at(2 * h), at(-2 * h)
        fph, fmh = at(h / 2), at(-h / 2)
        with np.errstate(all="ignore"):
            fd = (fp - fm) / (2 * h)
            fd2, fdh = (fp2 - fm2) / (4 * h), (fph - fmh) / h
            err = abs(fd - fd2)
            right, left = (fp - f0) / h, (f0 - fm) / h
            # the rounding floor of the differences: L's own float64 rounding over 2h
            # (a loss dominated by another, huge element resolves nothing below it)
            big = max((abs(v) for v in (f0, fp, fm, fp2, fm2) if np.isfinite(v)), default=0.0)
            noise = 8 * EPS64 * big / h
            # Richardson: in the asymptotic regime D(h) - D(h/2) is a quarter of
            # D(2h) - D(h).  When it is not (the function turns over within the step, as
            # sin(x**17) or cos(3e6) with a step relative to |x| do), the differences
            # measure nothing and the estimate is unresolved.
            unresolved = bool(np.isfinite(fd) and np.isfinite(fd2) and np.isfinite(fdh) and
                              abs(fd - fdh) > 0.5 * err + noise + 1e-9 * abs(fd))
        imprecise = any(not np.array_equal(a, b, equal_nan=True)
                        for s in seen[1:] for a, b in zip(seen[0], s))
        return dict(fd=fd, err=err, f0=f0, fp=fp, fm=fm, left=left, right=right, h=h,
                    noise=noise, unresolved=unresolved, imprecise=imprecise)

    def hvp_element(self, vals, vdirs, k, j, h=2e-4):
        """d/dx_kj of the directional derivative along v (mixed second differences);
        returns the estimate, its Richardson error and its rounding floor."""
        base = {k2: np.asarray(v, float) if k2 in vdirs else v for k2, v in vals.items()}
        big = [0.0]

        def D(shift_j, hh):
            out = 0.0
            for sgn in (1, -1):
                moved = dict(base)
                for k2, d in vdirs.items():
                    moved[k2] = np.array(base[k2] + sgn * hh * d, dtype=float)
                y = np.array(moved[k], dtype=float)
                y.flat[j] += shift_j
                moved[k] = y
                f = self.loss(moved)
                if np.isfinite(f):
                    big[0] = max(big[0], abs(f))
                out += sgn * f
            return out / (2 * hh)
        with np.errstate(all="ignore"):
            a = (D(h, h) - D(-h, h)) / (2 * h)
            b = (D(2 * h, 2 * h) - D(-2 * h, 2 * h)) / (4 * h)
        return a, abs(a - b), 8 * EPS64 * big[0] / (h * h)


def matmul_limits(root: E, vals_list, live) -> set:
    """Names of the leaves whose gradients adjit's contract lets be non-finite although
    finite differences are finite: the double-where mask follows a matmul row by row (for
    the left operand's cotangent G Bᵀ) and column by column (for the right one's, Aᵀ G).
    Where a row of the product is only partly selected, an inf or NaN of the other operand
    in an unselected column that another row selects meets an exact 0 of G inside the
    product (0 · NaN), and the NaN reaches every leaf below that operand.  ``vals_list``:
    evaluations to look for non-finite operands in (the smooth and the plain one)."""
    out = set()
    for n in root.walk():
        if n.op not in ("matmul", "einsum", "conv", "conv_t"):
            continue
        L = np.asarray(live[id(n)])
        if not L.any() or L.all():
            continue
        if n.op != "matmul" or max(np.ndim(vals_list[0][id(c)]) for c in n.args) > 2:
            # batched products, einsum and convolutions (compositions of them, and of
            # unfold, a matmul of its columns): any operand with an inf
            # or NaN may meet a zero of the cotangent
            if any(_has_nonfinite(c, vals_list) for c in n.args):
                out |= set().union(*(_leaves(c) for c in n.args))
            continue
        shapes = [np.shape(vals_list[0][id(c)]) for c in n.args]
        Lm = L.reshape(shapes[0][0] if len(shapes[0]) == 2 else 1,
                       shapes[1][1] if len(shapes[1]) == 2 else 1)
        rows, cols = Lm.any(axis=1), Lm.any(axis=0)
        bad_a = np.zeros(Lm.shape[0], bool)       # rows of A with an inf/NaN
        bad_b = np.zeros(Lm.shape[1], bool)       # columns of B with an inf/NaN
        for vals in vals_list:
            with np.errstate(all="ignore"):
                A = np.asarray(vals[id(n.args[0])], float).reshape(Lm.shape[0], -1)
                B = np.asarray(vals[id(n.args[1])], float).reshape(-1, Lm.shape[1])
            bad_a |= ~np.isfinite(A).all(axis=1)
            bad_b |= ~np.isfinite(B).all(axis=0)
        partial = rows[:, None] & cols[None, :] & ~Lm    # unselected, row and column in use
        for k, bad in ((0, partial & bad_b[None, :]), (1, partial & bad_a[:, None])):
            if bad.any():
                out |= {c.attrs["name"] for c in n.args[k].walk() if c.op == "leaf"}
    return out


# sin/cos of an argument whose rounding at the node's precision is a sizeable phase: a
# float argument carries a relative error of a few ulps from the ops that made it (pow
# through exp/log: ~|p log x| ulps), so its absolute error is about PHASE_ULPS · eps · |a|
# radians.  Where that exceeds the gradient tolerance / 10, cos(a) (the derivative) is not
# determined at that precision: backends that round the argument differently by one ulp
# legitimately disagree, and neither matches float64 differences.
PHASE_ULPS = 16
TRIG = {"sin", "cos"}


def precision_limited(root: E, vals: dict, live, grad_rtol: float):
    """(node id, mask) of live sin/cos elements whose argument is too large for the
    node's float precision to fix the phase (see PHASE_ULPS)."""
    out = []
    for n in root.walk():
        if n.op not in TRIG:
            continue
        a = np.abs(np.asarray(vals[id(n.args[0])], float))
        with np.errstate(all="ignore"):
            m = (PHASE_ULPS * np.finfo(n.dtype).eps * a > grad_rtol / 10) & live[id(n)]
        if m.any():
            out.append((id(n.args[0]), np.asarray(m)))
    return out


def _leaves(n):
    return {c.attrs["name"] for c in n.walk() if c.op == "leaf"}


def _has_nonfinite(n, vals_list):
    with np.errstate(all="ignore"):
        return any(np.asarray(v[id(c)]).dtype.kind == "f" and
                   not np.all(np.isfinite(np.asarray(v[id(c)])))
                   for c in n.walk() for v in vals_list)


def nan_limits(root: E, vals_list, live) -> set:
    """Names of leaves whose gradient may be NaN by adjit's documented limits, although
    the maths (and finite differences) give a finite value:

    * minimum/maximum select elementwise but, unlike where, are not double-guarded: the
      unselected operand gets a cotangent of exactly 0, and where its own derivative is
      infinite (exp of 985 is inf, its derivative too) the chain rule makes 0 · inf = NaN.
      This only happens where the unselected operand's subtree holds a non-finite value.
    * the exponent's gradient of ``a ** p`` at an infinite base: ``a**p · log|a|`` is
      0 · inf = NaN for p < 0 (docs/api.md's formula, as JAX), although inf**p is 0 on
      p < 0.
    * std where the variance is 0 (documented in adjit/ops/reductions.py, as in JAX and
      PyTorch): sqrt's derivative 1/(2·0) meets a zero derivative of the variance, NaN,
      also where the slice has one element and std is identically 0.
    * ops that hand operand elements a zero cotangent (ZERO_COTANGENT) above a subtree
      holding an inf: 0 · inf, as for minimum/maximum.
    * an operand broadcast into an empty result (batch 0) gets a cotangent summed over no
      element, exactly 0; a non-finite local derivative below it (0 ** -0.5) makes NaN.
      The output is not empty, so the checks of an empty output do not cover this.

    Only NaN is excused (0 · inf is NaN, never inf), and only for leaves in such a
    subtree."""
    out = set()
    for n in root.walk():
        L = np.asarray(live[id(n)])
        v = np.asarray(vals_list[0][id(n)])
        if n.op == "pow" and L.any() and n.args[1].op not in ("num", "carr"):
            base = np.broadcast_to(np.asarray(vals_list[0][id(n.args[0])], float), L.shape)
            if np.any(np.isinf(base)[L]):   # d/dp = a**p log|a| = 0 · inf at a = ±inf, p < 0
                out |= _leaves(n.args[1])   # (documented in docs/api.md, as JAX)
        if n.op == "std" and np.any(v[L] == 0):
            out |= _leaves(n)           # documented: std's gradient at var = 0 is 0/0 (JAX)
        if n.op in ZERO_COTANGENT and L.any():
            for c in n.args:
                if _has_nonfinite(c, vals_list):
                    out |= _leaves(c)
        if n.op in ("maximum", "minimum") and L.any():
            a, b = (np.asarray(vals_list[0][id(c)], float) for c in n.args)
            with np.errstate(all="ignore"):
                pick_a = np.broadcast_to((a >= b) if n.op == "maximum" else (a <= b), L.shape)
            for c, unsel in ((n.args[0], L & ~pick_a), (n.args[1], L & pick_a)):
                if unsel.any() and _has_nonfinite(c, vals_list):
                    out |= _leaves(c)
        elif v.size == 0:
            for c in n.args:
                if np.size(vals_list[0][id(c)]) and _has_nonfinite(c, vals_list):
                    out |= _leaves(c)
    return out


def overflow_limits(root: E, smooth: dict, low: dict, live) -> set:
    """Leaves below a live node that overflows at the working precision (``low``: the
    evaluation in the case's dtype, casts rounding) where float64 stays finite, e.g.
    0.5 / s ** -16 for a float32 s of -0.0019 (s ** -16 is 4e43, inf in float32).  The
    model really computes that inf, and the chain rule through it meets 0 · inf; float64
    differences of the smooth function say nothing about the float32 derivative there."""
    out = set()
    for n in root.walk():
        L = np.asarray(live[id(n)])
        lo, hi = np.asarray(low[id(n)]), np.asarray(smooth[id(n)])
        if lo.dtype.kind != "f" or not L.any() or lo.shape != L.shape:
            continue
        with np.errstate(all="ignore"):
            if np.any(~np.isfinite(lo) & np.isfinite(hi) & L):
                out |= _leaves(n)
    return out


def cotangent_range(root: E, leaf_name: str, leaf_dtype: str) -> float:
    """The largest finite value the leaf's gradient can pass through: the smallest
    finfo(dtype).max over the leaf itself and the float nodes on every path from it to the
    output (their cotangents are held in their dtype).  A node is on every path iff
    paths(leaf -> n) · paths(n -> root) == paths(leaf -> root)."""
    order = list(root.walk())
    frm, to = {}, {id(root): 1}
    for n in order:
        frm[id(n)] = 1 if (n.op == "leaf" and n.attrs["name"] == leaf_name) else \
            sum(frm[id(a)] for a in n.args)
    for n in reversed(order):
        for a in n.args:
            to[id(a)] = to.get(id(a), 0) + to.get(id(n), 0)
    total = frm[id(root)]
    top = float(np.finfo(leaf_dtype).max)
    for n in order:
        if n.dtype in ("float32", "float64") and total and frm[id(n)] * to.get(id(n), 0) == total:
            top = min(top, float(np.finfo(n.dtype).max))
    return top
