"""A seeded generator of random graphs for the differential fuzzer (see fuzz_check.py).

``generate(seed)`` returns a :class:`Case`: an expression in the fuzzer's own IR
(fuzz_ir.E), its leaves and their values.  The generator covers every elementwise op of
the registry, broadcasting on either operand, reductions over each axis with and without
keepdims, reshape/transpose/broadcast_to, matmul with transposed operands, where /
maximum / minimum / comparisons with ties (grid values make ties and zeros common),
integer and fractional powers of negative bases (literal, constant-array and input
exponents, and products sympy merges into powers), guarded singular branches ("double
where"), composites (softmax, log_softmax, logsumexp, mse, cross_entropy with integer,
one-hot and probability labels, and masked -inf logits), shared sub-expressions, casts,
and second order (Hessian-vector products) -- with special values (±inf, NaN, large
magnitudes) in some cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adjit.ops import REGISTRY
from fuzz_gen_more import MoreKinds
from fuzz_gen_windows import WindowKinds
from fuzz_ir import COMPARE_OPS, E, leaf

# (ops of bool operands, the logical ones, are drawn by MoreKinds.logical; clip by k_clip)
_FLOAT = {n: op for n, op in REGISTRY.items() if op.elementwise and "operands" not in op.extra}
UNARY = sorted(n for n, op in _FLOAT.items() if op.arity == 1)
BINARY = sorted(n for n, op in _FLOAT.items() if op.arity == 2
                and n not in COMPARE_OPS and op.differentiable)
COMPARE = sorted(n for n, op in _FLOAT.items() if op.arity == 2 and not op.differentiable)
GRID = np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0])      # ties, ±0
NUMBERS = [0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 3.0]
INT_POWERS = [0, 1, 2, 3, 4, -1, -2, 2.0, 3.0, -1.0, 17, 18, -16, 9]
FRAC_POWERS = [0.5, 1.5, -0.5, 2.5, 1 / 3]
SPECIALS = [np.nan, np.inf, -np.inf, 1e30, -1e30, 1e6, -3e5, 1e-300, -5e-310, -0.0]


@dataclass
class Case:
    seed: int
    dtype: str
    batch: int
    n: int
    m: int
    classes: int
    grid: bool                                      # values from GRID (ties and zeros)
    leaves: dict = field(default_factory=dict)      # name -> E
    pool: dict = field(default_factory=dict)        # shape -> [E] (for shared nodes)
    out: E = None
    values: dict = field(default_factory=dict)
    hvp: bool = False
    special: bool = False
    tags: set = field(default_factory=set)

    @property
    def wrt(self):
        """The leaves the fuzzer differentiates: every float leaf, by name."""
        return [k for k in sorted(self.leaves) if self.leaves[k].dtype in ("float32", "float64")]


def broadcast(*shapes):
    """numpy's broadcast of shapes with None (the batch) matching None or 1."""
    r = max(len(s) for s in shapes)
    out = []
    for i in range(1, r + 1):
        dims = {s[-i] for s in shapes if i <= len(s)} - {1}
        out.append(dims.pop() if len(dims) == 1 else (1 if not dims else "bad"))
    return tuple(reversed(out))


class Gen(MoreKinds, WindowKinds):
    def __init__(self, case: Case, rng):
        self.c, self.r = case, rng

    # -- helpers -----------------------------------------------------------------------------
    def pick(self, seq):
        return seq[int(self.r.integers(len(seq)))]

    def chance(self, p):
        return self.r.random() < p

    def tag(self, t):
        self.c.tags.add(t)

    def leaf(self, shape, role="float", dtype=None, **attrs):
        c = self.c
        dtype = dtype or c.dtype
        same = [e for e in c.leaves.values() if e.shape == tuple(shape) and e.dtype == dtype
                and e.attrs["role"] == role and all(e.attrs.get(k) == v for k, v in attrs.items())]
        if same and (len(same) >= 2 or self.chance(0.5)):
            return self.pick(same)
        prefix = {"float": "x", "int_exp": "k", "labels": "lab", "mask": "mask",
                  "key": "key", "index": "idx"}[role]
        name = f"{prefix}{len(c.leaves)}"
        kind = "input" if None in shape or role != "float" or self.chance(0.5) else "param"
        e = leaf(name, shape, dtype, kind, role, **attrs)
        c.leaves[name] = e
        return e

    def sub_shapes(self, shape):
        """Shapes that broadcast to ``shape`` (leading dims dropped, dims set to 1)."""
        out = [tuple(shape)]
        for lead in range(len(shape) + 1):
            tail = shape[lead:]
            out.append(tuple(1 if d != 1 and self.chance(0.4) else d for d in tail))
        return out

    def operand_shapes(self, shape):
        """Two shapes broadcasting to exactly ``shape``: either operand may broadcast."""
        a, b = [], []
        for d in shape:
            k = self.r.integers(3) if d != 1 else 0
            a.append(d if k != 1 else 1)
            b.append(d if k != 2 else 1)
        a, b = tuple(a), tuple(b)
        if self.chance(0.3):                          # drop broadcast leading dims
            while a and a[0] == 1 and self.chance(0.7):
                a = a[1:]
        if self.chance(0.5):
            a, b = b, a
        return a, b

    def num(self, values=NUMBERS):
        return E("num", (), {"value": self.pick(values)}, (), self.c.dtype)

    # -- expressions -------------------------------------------------------------------------------
    def expr(self, shape, depth):
        shape = tuple(shape)
        pool = self.c.pool.setdefault((shape, self.c.dtype), [])
        if pool and self.chance(0.15):
            self.tag("shared")
            return self.pick(pool)
        if depth <= 0 or self.chance(0.12):
            e = self.leaf(shape)
        else:
            kinds = ["unary"] * 3 + ["binary"] * 3 + ["pow"] * 2 + ["where"] * 2 + \
                    ["reduce"] * 2 + ["composite"] * 2 + ["guard", "reshape", "matmul",
                                                          "repeat", "step", "cast", "bcast",
                                                          "dropout"] + self.KINDS + \
                WindowKinds.KINDS
            if len(shape) >= 2:
                kinds += ["transpose"] * 2
            if shape == ():
                kinds += ["composite"] * 3
            kind = self.pick(kinds)
            e = getattr(self, "k_" + kind)(shape, depth - 1)
        pool.append(e)
        return e

    def k_unary(self, shape, d):
        name = self.pick(UNARY)
        self.tag(name)
        x = self.expr(shape, d)
        if self.chance(0.4) and tuple(REGISTRY[name].domain) != (-2.0, 2.0):
            lo, hi = REGISTRY[name].domain                # into the op's declared domain
            s = E("sigmoid", (x,), {}, shape, x.dtype)
            x = E("add", (self.numv(lo), E("mul", (self.numv(hi - lo), s), {}, shape, x.dtype)),
                  {}, shape, x.dtype)
        return E(name, (x,), {}, shape, self.c.dtype)

    def numv(self, v):
        return E("num", (), {"value": float(v)}, (), self.c.dtype)

    def k_binary(self, shape, d):
        name = self.pick(BINARY)
        self.tag(name)
        sa, sb = self.operand_shapes(shape)
        a = self.expr(sa, d)
        b = self.num() if self.chance(0.25) else self.expr(sb, d)
        if sa != shape and b.op == "num":
            a = self.expr(shape, d)
        if self.chance(0.5):
            a, b = b, a
        return E(name, (a, b), {}, shape, self.c.dtype)

    def k_pow(self, shape, d):
        self.tag("pow")
        sa, sb = self.operand_shapes(shape)
        kind = self.pick(["int", "int", "frac", "carr", "input", "num_base"])
        self.tag("pow_" + kind)
        if kind == "num_base":                        # 2 ** x, (-2) ** k
            base = self.num([2.0, -2.0, 0.5, -1.0, 0.0, -0.5])
            e = self.leaf(shape, "int_exp") if self.chance(0.6) else self.expr(shape, d)
            return E("pow", (base, e), {}, shape, self.c.dtype)
        base = self.expr(shape if kind in ("int", "frac") else sa, d)
        if kind == "int":
            p = E("num", (), {"value": self.pick(INT_POWERS)}, (), self.c.dtype)
        elif kind == "frac":
            p = E("num", (), {"value": self.pick(FRAC_POWERS)}, (), self.c.dtype)
        elif kind == "carr":
            cs = tuple(1 if x is None else x for x in sb)
            vals = self.r.integers(-2, 5, cs).astype(float)
            if self.chance(0.3) and vals.size:        # (a zero-size part of a concatenate)
                vals.flat[0] = 0.5
            p = E("carr", (), {"value": vals}, cs, self.c.dtype)
            if None in sb:
                base = self.expr(shape, d)
        else:
            p = self.leaf(sb, "int_exp")
        return E("pow", (base, p), {}, shape, self.c.dtype)

    def k_repeat(self, shape, d):
        """x * x * ... (sympy merges the factors into one power) or x**9 * x**8."""
        self.tag("repeat")
        x = self.expr(shape, d)
        if self.chance(0.3):
            p9 = E("pow", (x, E("num", (), {"value": 9}, (), x.dtype)), {}, shape, x.dtype)
            p8 = E("pow", (x, E("num", (), {"value": 8}, (), x.dtype)), {}, shape, x.dtype)
            return E("mul", (p9, p8), {}, shape, x.dtype)
        out = x
        for _ in range(self.pick([1, 2, 4, 8, 16]) if self.chance(0.8) else 1):
            out = E("mul", (out, x), {}, shape, x.dtype)
        return out

    def cond(self, shape, d, full=False):
        if d > 0 and self.chance(0.2):
            return self.logical(shape, d - 1)
        if self.chance(0.2):
            if full:
                return self.leaf(shape, "mask", "bool")
            return self.leaf(self.pick(self.sub_shapes(shape)), "mask", "bool")
        name = self.pick(COMPARE)
        self.tag(name)
        sa, sb = self.operand_shapes(shape)
        a = self.expr(sa, d - 1)
        b = self.num() if self.chance(0.4) else self.expr(sb, d - 1)
        if b.op == "num" and sa != shape:
            a = self.expr(shape, d - 1)
        return E(name, (a, b), {}, shape, "bool")

    def k_where(self, shape, d):
        self.tag("where")
        c = self.cond(shape, d)
        sa, sb = self.operand_shapes(shape)
        a = self.expr(sa, d) if not self.chance(0.2) else self.num()
        b = self.expr(sb, d) if not self.chance(0.2) else self.num()
        if broadcast(c.shape, a.shape, b.shape) != shape or a.op == b.op == "num":
            a = self.expr(shape, d)
        return E("where", (c, a, b), {}, shape, self.c.dtype)

    def k_dropout(self, shape, d):
        """aj.dropout(x, rate, key): a random mask (a key input) times a scale."""
        self.tag("dropout")
        x, key = self.expr(shape, d), self.leaf((2,), "key", "uint32")
        return E("dropout", (x, key), {"rate": self.pick([0.0, 0.25, 0.5, 1.0])}, shape,
                 self.c.dtype)

    def k_step(self, shape, d):
        """cast(a <op> b, float): a step function (zero derivative, kinks at ties)."""
        self.tag("step")
        return E("to_float", (self.cond(shape, d, full=True),), {}, shape, self.c.dtype)

    def k_guard(self, shape, d):
        """where(x > 0, f(x), 0) with f singular at 0: once, or twice with separate conditions."""
        self.tag("guard")
        x, dt = self.expr(shape, d), self.c.dtype
        f = self.pick(["log", "sqrt", "inv", "pow_half", "pow_neg"])
        if f in ("log", "sqrt"):
            s = E(f, (x,), {}, shape, dt)
        elif f == "inv":
            s = E("div", (self.numv(1.0), x), {}, shape, dt)
        else:
            s = E("pow", (x, self.numv(0.5 if f == "pow_half" else -1.0)), {}, shape, dt)

        def guarded(branch):
            c = E(self.pick(["greater", "greater"]), (x, self.numv(0.0)), {}, shape, "bool")
            if self.chance(0.5):
                return E("where", (c, branch, self.numv(0.0)), {}, shape, dt)
            c = E("less_equal", (x, self.numv(0.0)), {}, shape, "bool")
            return E("where", (c, self.numv(0.0), branch), {}, shape, dt)
        out = guarded(s)
        if self.chance(0.6):
            self.tag("double_where")
            out = E("add", (out, guarded(E("mul", (s, s), {}, shape, dt))), {}, shape, dt)
        return out

    def size(self, allow_batch):
        opts = [self.c.n, self.c.m, 1] + ([None] if allow_batch else [])
        return self.pick(opts)

    def k_reduce(self, shape, d):
        op = self.pick(["sum", "mean", "max"])
        self.tag(op)
        nb = None not in shape
        if shape == () and self.chance(0.3):
            child = self.pick([(None, self.c.n), (self.c.n,), (self.c.n, self.c.m), (None,)])
            return E(op, (self.expr(child, d),), {"axis": None, "keepdims": False}, shape,
                     self.c.dtype)
        ones = [i for i, s in enumerate(shape) if s == 1]
        if ones and self.chance(0.5):
            p = self.pick(ones)
            child = shape[:p] + (self.size(nb),) + shape[p + 1:]
            axis, keep = p, True
        else:
            p = int(self.r.integers(len(shape) + 1))
            child = shape[:p] + (self.size(nb),) + shape[p:]
            axis, keep = p, False
        self.tag(f"{op}_keepdims" if keep else op)
        if self.chance(0.3):
            axis -= len(child)                         # negative axis spelling
        return E(op, (self.expr(child, d),), {"axis": axis, "keepdims": keep}, shape,
                 self.c.dtype)

    def k_reshape(self, shape, d):
        self.tag("reshape")
        opts = []
        p = int(self.r.integers(len(shape) + 1))
        opts.append(shape[:p] + (1,) + shape[p:])
        opts += [shape[:i] + shape[i + 1:] for i, s in enumerate(shape) if s == 1]
        for i in range(len(shape) - 1):
            a, b = shape[i], shape[i + 1]
            if a is not None and b is not None:
                opts.append(shape[:i] + (a * b,) + shape[i + 2:])
        for i, s in enumerate(shape):
            if s in (4, 6, 9):
                f = {4: (2, 2), 6: (2, 3), 9: (3, 3)}[s]
                opts.append(shape[:i] + f + shape[i + 1:])
        child = self.pick(opts)
        return E("reshape", (self.expr(child, d),), {}, shape, self.c.dtype)

    def k_transpose(self, shape, d):
        self.tag("transpose")
        r = len(shape)
        perm = None if self.chance(0.3) else tuple(int(i) for i in self.r.permutation(r))
        q = tuple(reversed(range(r))) if perm is None else perm
        child = [None] * r
        for i in range(r):
            child[q[i]] = shape[i]
        return E("transpose", (self.expr(tuple(child), d),), {"perm": perm}, shape, self.c.dtype)

    def mat(self, shape, d):
        """An operand of matmul, sometimes as the transpose of a transposed expression."""
        if len(shape) == 2 and self.chance(0.4):
            self.tag("matmul_T")
            return E("transpose", (self.expr(shape[::-1], d),), {"perm": None}, shape,
                     self.c.dtype)
        return self.expr(shape, d)

    def k_matmul(self, shape, d):
        if len(shape) > 2 or (len(shape) == 2 and self.chance(0.3)):
            return self.matmul_nd(shape, d)
        self.tag("matmul")
        k = self.size(None not in shape)
        if len(shape) == 2:
            sa, sb = (shape[0], k), (k, shape[1])
        elif len(shape) == 1:
            if self.chance(0.5):
                sa, sb = (k,), (k, shape[0])
            else:
                sa, sb = (shape[0], k), (k,)
        else:
            sa, sb = (k,), (k,)
        return E("matmul", (self.mat(sa, d), self.mat(sb, d)), {}, shape, self.c.dtype)

    def k_cast(self, shape, d):
        self.tag("cast")
        other = "float32" if self.c.dtype == "float64" else "float64"
        x = self.expr(shape, d)
        return E("cast", (E("cast", (x,), {"dtype": other}, shape, other),),
                 {"dtype": self.c.dtype}, shape, self.c.dtype)

    def k_bcast(self, shape, d):
        self.tag("broadcast_to")
        child = self.pick(self.sub_shapes(shape)[1:] or [()])
        if None in shape and None not in child and self.chance(0.8):
            child = shape[:shape.index(None) + 1] + child[len(child) - len(shape) + shape.index(None) + 1:] \
                if len(child) >= len(shape) - shape.index(None) - 1 else shape
        return E("broadcast_to", (self.expr(child, d),), {}, shape, self.c.dtype)


def draw_values(case: Case, rng):
    vals = {}
    leaves = case.leaves
    order = sorted(leaves, key=lambda k: leaves[k].attrs["role"] == "mask")   # labels first
    for name in order:
        e = leaves[name]
        shape = tuple(case.batch if d is None else d for d in e.shape)
        role = e.attrs["role"]
        if role == "labels":
            v = rng.integers(0, e.attrs["depth"], shape).astype(np.int64)
        elif role == "mask":
            v = rng.random(shape) < 0.7
            keep = e.attrs.get("keep")
            if keep is not None and rng.random() < 0.9 and v.ndim == 2:
                lab = vals[keep]
                v[np.arange(v.shape[0]), lab] = True
        elif role == "index":                     # valid indices, negative ones too
            v = rng.integers(-e.attrs["depth"], e.attrs["depth"], shape).astype(e.dtype)
        elif role == "key":
            v = rng.integers(0, 2 ** 32, shape, dtype=np.uint64).astype(np.uint32)
        elif role == "int_exp":
            v = rng.integers(-3, 5, shape).astype(e.dtype)
        elif case.grid:
            v = rng.choice(GRID, shape).astype(e.dtype)
        else:
            v = (rng.standard_normal(shape) * 1.2).astype(e.dtype)
        vals[name] = v
    if case.special:
        floats = [k for k in case.wrt if np.size(vals[k])]
        if floats:
            k = floats[int(rng.integers(len(floats)))]
            v = vals[k].copy()
            v.flat[int(rng.integers(v.size))] = rng.choice(SPECIALS)
            vals[k] = v.astype(leaves[k].dtype)
    return vals


def generate(seed: int, max_depth: int = 4) -> Case:
    rng = np.random.default_rng(seed)
    case = Case(seed=seed, dtype="float32" if rng.random() < 0.25 else "float64",
                batch=int(rng.choice([0, 1, 1, 2, 2, 3, 3, 3])), n=int(rng.integers(1, 4)),
                m=int(rng.integers(1, 4)), classes=int(rng.integers(2, 4)),
                grid=rng.random() < 0.5)
    g = Gen(case, rng)
    n, m = case.n, case.m
    shape = g.pick([(None, n), (None, n), (n,), (None,), (), (), (n, m), (None, n, m)])
    case.out = g.expr(shape, int(rng.integers(2, max_depth + 1)))
    case.special = rng.random() < 0.12
    case.hvp = (case.dtype == "float64" and not case.special and rng.random() < 0.3)
    case.values = draw_values(case, rng)
    if case.hvp:
        case.tags.add("hvp")
    if case.special:
        case.tags.add("special_values")
    return case
