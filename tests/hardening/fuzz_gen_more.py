"""Generator kinds for the second wave of ops (mixed into fuzz_gen.Gen): clip, logical
conditions, basic indexing, pad, concatenate, take / take_along_axis with valid int
indices (constants or int inputs, repeated and negative), min/prod/var/std/argmax/argmin,
N-D matmul with batch axes, einsum, and uniform random numbers from a key input.
"""
from __future__ import annotations

import numpy as np

from fuzz_ir import E

LOGICAL2 = ["logical_and", "logical_or", "logical_xor"]
LETTERS = "abcdefghij"


class MoreKinds:
    """Kinds of expressions beyond the elementwise core of fuzz_gen.Gen (whose helpers,
    expr/leaf/num/pick/chance/tag/size/sub_shapes, these use)."""
    KINDS = ["clip", "slice", "slice", "pad", "concat", "take", "take", "along", "along",
             "argpick", "einsum", "einsum", "uniform", "reduce2", "reduce2"]

    # -- elementwise -------------------------------------------------------------------------
    def k_clip(self, shape, d):
        """clip(x, lo, hi): bounds are numbers or expressions, lo > hi sometimes."""
        self.tag("clip")
        x = self.expr(shape, d)

        def bound(vals):
            if self.chance(0.6):
                return self.num(vals)
            return self.expr(self.pick(self.sub_shapes(shape)), d)
        return E("clip", (x, bound([-1.0, -0.5, 0.0, 0.5]), bound([0.0, 0.5, 1.0, 2.0, -1.0])),
                 {}, shape, self.c.dtype)

    def logical(self, shape, d):
        """A bool condition combined with logical_and/or/xor/not."""
        if self.chance(0.3):
            self.tag("logical_not")
            return E("logical_not", (self.cond(shape, d, full=True),), {}, shape, "bool")
        name = self.pick(LOGICAL2)
        self.tag(name)
        return E(name, (self.cond(shape, d, full=True), self.cond(shape, d, full=True)), {},
                 shape, "bool")

    # -- moves -----------------------------------------------------------------------------------
    def k_slice(self, shape, d):
        """x[key] with ints, slices of any step (negative starts, reversals), None, ..."""
        self.tag("getitem")
        key, child = [], []
        for s in shape:
            while self.chance(0.25):                 # an int index drops a static axis
                n = int(self.r.integers(1, 4))
                key.append(int(self.r.integers(-n, n)))
                child.append(n)
                self.tag("getitem_int")
            if s is None:
                key.append(slice(None, None, -1) if self.chance(0.4) else slice(None))
                child.append(None)
            elif s == 0:                              # (a zero-size part of a concatenate)
                n = int(self.r.integers(0, 3))
                key.append(slice(n, None))
                child.append(n)
            elif s == 1 and self.chance(0.3):
                key.append(None)                      # a new axis
                self.tag("getitem_newaxis")
            else:
                step = self.pick([1, 1, 2, -1, -2, 3])
                n = (s - 1) * abs(step) + 1 + int(self.r.integers(0, 3))
                if step > 0:
                    start = int(self.r.integers(0, n - (s - 1) * step))
                    stop = start + (s - 1) * step + 1
                else:
                    start = int(self.r.integers((s - 1) * -step, n))
                    stop = start + (s - 1) * step - 1
                    stop = None if stop < 0 else stop
                if self.chance(0.3):
                    start -= n                        # counted from the end
                key.append(slice(start, stop if not (stop == n and self.chance(0.5)) else None,
                                 step))
                child.append(n)
        while (not shape or self.chance(0.1)) and len(key) < 3:   # trailing ints
            n = int(self.r.integers(1, 4))
            key.append(int(self.r.integers(-n, n)))
            child.append(n)
        if len(key) and key[0] == slice(None) and self.chance(0.3):
            key[0] = Ellipsis
        return E("getitem", (self.expr(tuple(child), d),), {"key": tuple(key)}, shape,
                 self.c.dtype)

    def k_pad(self, shape, d):
        self.tag("pad")
        widths, child = [], []
        for s in shape:
            if s is None:
                widths.append((0, 0))
                child.append(None)
                continue
            lo = int(self.r.integers(0, s + 1))
            hi = int(self.r.integers(0, s - lo + 1))
            if lo + hi == s and s and self.chance(0.7):     # keep the operand non-empty, mostly
                lo, hi = (lo - 1, hi) if lo else (lo, hi - 1)
            widths.append((lo, hi))
            child.append(s - lo - hi)
        value = self.pick([0.0, 0.0, 1.5, -2.0, -np.inf])
        if not shape:
            widths = 0                                # numpy's spelling for a 0-d array
        return E("pad", (self.expr(tuple(child), d),), {"widths": widths, "value": value},
                 shape, self.c.dtype)

    def k_concat(self, shape, d):
        axes = [i for i, s in enumerate(shape) if s is not None and s >= 2]
        if not axes:
            return self.k_pad(shape, d)
        self.tag("concatenate")
        p = self.pick(axes)
        cuts = sorted(int(v) for v in self.r.integers(1, shape[p], self.pick([1, 1, 2])))
        sizes = np.diff([0] + cuts + [shape[p]])
        parts = tuple(self.expr(shape[:p] + (int(k),) + shape[p + 1:], d) for k in sizes)
        return E("concat", parts, {"axis": p, "spelled_axis": p - len(shape) if
                                   self.chance(0.3) else p}, shape, self.c.dtype)

    # -- gathers -----------------------------------------------------------------------------------
    def indices(self, shape, n, const_ok=True):
        """Valid int indices into an axis of size n: a constant (ties, negatives) or an
        int input (checked at call time)."""
        if const_ok and None not in shape and self.chance(0.5):
            self.tag("take_const_index")
            vals = self.r.integers(-n, n, shape)
            return E("carr", (), {"value": vals.astype(np.int64)}, tuple(shape), "int64")
        self.tag("take_input_index")
        return self.leaf(tuple(shape), "index", self.pick(["int64", "int64", "int32"]), depth=n)

    def k_take(self, shape, d):
        self.tag("take")
        na = self.pick([self.c.n, self.c.m, 3, 1])
        mode = self.pick(["vector", "vector", "scalar", "flat"])
        if mode == "flat" or not shape:               # axis=None: a flattened operand
            ashape = self.pick([(na,), (self.c.n, self.c.m)])
            size = int(np.prod(ashape))
            return E("take", (self.expr(ashape, d), self.indices(shape, size)),
                     {"axis": None, "spelled_axis": None}, shape, self.c.dtype)
        if mode == "scalar":
            p = int(self.r.integers(len(shape) + 1))
            ashape, ishape = shape[:p] + (na,) + shape[p:], ()
        else:
            p = int(self.r.integers(len(shape)))
            ashape, ishape = shape[:p] + (na,) + shape[p + 1:], (shape[p],)
        spelled = p - len(ashape) if self.chance(0.3) else p
        return E("take", (self.expr(ashape, d), self.indices(ishape, na)),
                 {"axis": p, "spelled_axis": spelled}, shape, self.c.dtype)

    def k_along(self, shape, d):
        if not shape:
            return self.k_take(shape, d)
        self.tag("take_along_axis")
        p = int(self.r.integers(len(shape)))
        na = self.pick([self.c.n, self.c.m, 3, 1])
        ash, ish = list(shape), list(shape)
        for i, s in enumerate(shape):                 # either side broadcasts the others
            if i != p and s is not None and s != 1 and self.chance(0.3):
                (ash if self.chance(0.5) else ish)[i] = 1
        ash[p] = na
        spelled = p - len(shape) if self.chance(0.3) else p
        return E("take_along", (self.expr(tuple(ash), d), self.indices(tuple(ish), na)),
                 {"axis": p, "spelled_axis": spelled}, shape, self.c.dtype)

    # -- reductions ---------------------------------------------------------------------------------
    def reduce_child(self, shape, keep_ok=True):
        """(child shape, axis, keepdims): reducing one axis of the child gives ``shape``."""
        nb = None not in shape
        ones = [i for i, s in enumerate(shape) if s == 1]
        if keep_ok and ones and self.chance(0.5):
            p = self.pick(ones)
            return shape[:p] + (self.size(nb),) + shape[p + 1:], p, True
        p = int(self.r.integers(len(shape) + 1))
        return shape[:p] + (self.size(nb),) + shape[p:], p, False

    def k_reduce2(self, shape, d):
        """min, prod, var, std over one axis (or all) with and without keepdims."""
        op = self.pick(["min", "prod", "var", "std"])
        if shape == () and self.chance(0.3):
            child = self.pick([(None, self.c.n), (self.c.n,), (self.c.n, self.c.m), (None,)])
            axis, spelled, keep = None, None, False
        else:
            child, axis, keep = self.reduce_child(shape)
            spelled = axis - len(child) if self.chance(0.3) else axis
        self.tag(f"{op}_keepdims" if keep else op)
        at = {"axis": axis, "spelled_axis": spelled, "keepdims": keep}
        if op in ("var", "std"):
            at["ddof"] = self.pick([0, 0, 1])
        return E(op, (self.expr(child, d),), at, shape, self.c.dtype)

    def k_argpick(self, shape, d):
        """cast(argmax(x), float), or y[argmax(x)] along an axis (take_along_axis)."""
        op = self.pick(["argmax", "argmin"])
        self.tag(op)
        dt = self.c.dtype
        if self.chance(0.4):
            if shape == () and self.chance(0.5):
                child, axis, keep = self.pick([(None, self.c.n), (self.c.n, self.c.m)]), None, False
            else:
                child, axis, keep = self.reduce_child(shape)
            x = self.expr(child, d)
            at = {"axis": axis, "spelled_axis": axis, "keepdims": keep}
            return E("to_float", (E(op, (x,), at, shape, "int64"),), {}, shape, dt)
        self.tag("argpick_along")
        p = int(self.r.integers(len(shape) + 1))
        child = shape[:p] + (self.size(None not in shape),) + shape[p:]
        kept = shape[:p] + (1,) + shape[p:]
        x = self.expr(child, d)
        y = x if self.chance(0.5) else self.expr(child, d)
        idx = E(op, (x,), {"axis": p, "spelled_axis": p, "keepdims": True}, kept, "int64")
        out = E("take_along", (y, idx), {"axis": p, "spelled_axis": p}, kept, dt)
        return E("reshape", (out,), {}, shape, dt)

    # -- products -----------------------------------------------------------------------------------
    def matmul_nd(self, shape, d):
        """np.matmul with batch axes: stacks broadcasting (None, 1 or absent), and 1-D
        operands against stacks."""
        self.tag("matmul_nd")
        k = self.size(False)
        lead = shape[:-2]
        if len(shape) == 2 and self.chance(0.5):      # (k,) @ (L, k, n) or (L, n, k) @ (k,)
            if self.chance(0.5):
                return E("matmul", (self.expr((k,), d), self.expr((shape[0], k, shape[1]), d)),
                         {}, shape, self.c.dtype)
            return E("matmul", (self.expr((shape[0], shape[1], k), d), self.expr((k,), d)),
                     {}, shape, self.c.dtype)
        la, lb = [], []
        for s in lead:
            opts = [(s, s), (s, 1), (1, s)] if s != 1 else [(1, 1)]
            x, y = self.pick(opts)
            la.append(x)
            lb.append(y)
        la, lb = tuple(la), tuple(lb)
        if la and la[0] == 1 and self.chance(0.5):
            la = la[1:]
        sa, sb = la + (shape[-2], k), lb + (k, shape[-1])
        return E("matmul", (self.expr(sa, d), self.expr(sb, d)), {}, shape, self.c.dtype)

    def k_einsum(self, shape, d):
        """A random spec: the output's letters, 0-2 contracted letters (the batch one
        sometimes), each operand a permuted subset (every letter used somewhere)."""
        self.tag("einsum")
        out = LETTERS[:len(shape)]
        size = dict(zip(out, shape))
        extra = LETTERS[len(shape):len(shape) + int(self.r.integers(0, 3))]
        for c in extra:
            size[c] = None if None not in shape and self.chance(0.15) else self.size(False)
        letters = out + extra
        nops = self.pick([1, 2, 2, 2, 3])
        terms = []
        for _ in range(nops):
            sub = [c for c in letters if self.chance(0.6)]
            terms.append(sub or [self.pick(letters)] if letters else sub)
        for c in letters:
            if not any(c in t for t in terms):
                terms[int(self.r.integers(nops))].append(c)
        for t in terms:
            self.r.shuffle(t)
        spec = ",".join("".join(t) for t in terms) + "->" + out
        args = tuple(self.expr(tuple(size[c] for c in t), d) for t in terms)
        return E("einsum", args, {"spec": spec}, shape, self.c.dtype)

    # -- random numbers ----------------------------------------------------------------------------
    def k_uniform(self, shape, d):
        """x * u or x + u for u = aj.random.uniform(key, shape, ...)."""
        self.tag("uniform")
        key = self.leaf((2,), "key", "uint32")
        lo, hi = self.pick([(0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (2.0, 2.5)])
        u = E("uniform", (key,), {"minval": lo, "maxval": hi}, shape, self.c.dtype)
        return E(self.pick(["mul", "add"]), (self.expr(shape, d), u), {}, shape, self.c.dtype)

    # -- composites (softmax, log_softmax, logsumexp, mse, cross_entropy) --------------------
    def logits(self, shape, d):
        z = self.expr(shape, d)
        return z

    def k_composite(self, shape, d):
        dt = self.c.dtype
        opts = ["logsumexp"]
        if shape:
            opts += ["softmax", "log_softmax"]
        if shape == ():
            opts += ["mse", "mse", "xent", "xent", "xent", "xent"]
        if len(shape) == 2 and shape[1] == self.c.classes:
            opts += ["one_hot"]
        kind = self.pick(opts)
        self.tag(kind)
        if kind in ("softmax", "log_softmax"):
            axis = int(self.r.integers(-len(shape), len(shape)))
            return E(kind, (self.expr(shape, d),), {"axis": axis}, shape, dt)
        if kind == "logsumexp":
            keep = bool(shape) and 1 in shape and self.chance(0.5)
            if keep:
                p = self.pick([i for i, s in enumerate(shape) if s == 1])
                child = shape[:p] + (self.size(None not in shape),) + shape[p + 1:]
            else:
                p = int(self.r.integers(len(shape) + 1))
                child = shape[:p] + (self.size(None not in shape),) + shape[p:]
            return E("logsumexp", (self.expr(child, d),), {"axis": p, "keepdims": keep}, shape, dt)
        if kind == "mse":
            s = self.pick([(None, self.c.n), (self.c.n,), (None,)])
            return E("mse", (self.expr(s, d), self.expr(s, d)), {}, shape, dt)
        if kind == "one_hot":
            lab = self.leaf(shape[:1], "labels", "int64", depth=shape[1])
            return E("one_hot", (lab,), {"depth": shape[1]}, shape, dt)
        rows = self.pick([None, None, self.c.n])
        c = self.c.classes
        z = self.expr((rows, c), d)
        labels = self.pick(["int", "int", "onehot", "probs"])
        self.tag("xent_" + labels)
        lab = self.leaf((rows,), "labels", "int64", depth=c)
        if labels == "int":
            t = lab
        elif labels == "onehot":
            t = E("one_hot", (lab,), {"depth": c}, (rows, c), dt)
        else:
            t = E("softmax", (self.expr((rows, c), d),), {"axis": -1}, (rows, c), dt)
        if labels != "probs" and self.chance(0.5):
            self.tag("xent_masked")
            mask = self.leaf((rows, c), "mask", "bool", keep=lab.attrs["name"])
            z = E("where", (mask, z, E("num", (), {"value": -np.inf}, (), dt)), {}, (rows, c), dt)
        return E("xent", (z, t), {}, shape, dt)
