"""Generator kinds for the window ops (mixed into fuzz_gen.Gen): conv1d/conv2d with stride,
padding (ints, tuples, "same"), dilation, groups and an optional bias; conv_transpose2d
with output_padding; max and average pools (1-D and 2-D, padding, stride, dilation,
count_include_pad), max pools of masked inputs (-inf where a bool mask says, through
logical_not).  A window op makes an ``(N, C, *spatial)`` result: the requested shape is
``(N, C)`` or ``(N, C, L)`` (N may be the batch), the 2-D ops reshaped to it (a spatial
axis of size 1 dropped).
"""
from __future__ import annotations

from fuzz_ir import E


class WindowKinds:
    KINDS = ["window"] * 4

    def _fits(self, shape):
        return len(shape) in (2, 3) and all(s is not None for s in shape[1:]) and \
            all(s >= 1 for s in shape[1:])

    def k_window(self, shape, d):
        if not self._fits(shape):
            return self.k_unary(shape, d)
        kind = self.pick(["conv", "conv", "conv_t", "maxpool", "maxpool", "avgpool"])
        N, C = shape[:2]
        L = shape[2] if len(shape) == 3 else 1
        nd = 1 if kind != "conv_t" and self.chance(0.5) else 2
        out = (L,) if nd == 1 else self.pick([(L, 1), (1, L)])
        full = (N, C) + out
        e = getattr(self, "w_" + kind)(full, nd, d)
        if e.shape != tuple(shape):
            e = E("reshape", (e,), {}, tuple(shape), self.c.dtype)
        return e

    # -- one axis: parameters giving ``o`` outputs -------------------------------------------
    def _axis(self, o, pool=False, allow_dil=True):
        """(input size, kernel, stride, pad, dilation) with ``o`` window positions."""
        k = self.pick([1, 2, 3])
        s = self.pick([1, 1, 2, 3])
        dl = self.pick([1, 1, 2]) if allow_dil else 1
        p = int(self.r.integers(0, k // 2 + 1)) if pool else int(self.r.integers(0, 3))
        span = dl * (k - 1) + 1
        n = (o - 1) * s + span - 2 * p + int(self.r.integers(0, s))
        if n < 1 or (pool and n < span - 2 * p) or (n + 2 * p - span) // s + 1 != o:
            return o, 1, 1, 0, 1
        return n, k, s, p, dl

    def _spell(self, vals, nd):
        if len(set(vals)) == 1 and self.chance(0.6):
            return vals[0]
        return tuple(vals)

    def w_conv(self, full, nd, d):
        N, Co = full[:2]
        self.tag(f"conv{nd}d")
        G = self.pick([1, 1, Co]) if Co > 1 else 1
        cin = G * self.pick([1, 2])
        same = self.chance(0.2)
        if same:
            self.tag("conv_same")
            ks = [self.pick([1, 2, 3]) for _ in range(nd)]
            ds = [self.pick([1, 2]) for _ in range(nd)]
            spatial, at = full[2:], {"stride": 1, "padding": "same",
                                     "dilation": self._spell(ds, nd)}
        else:
            axes = [self._axis(o) for o in full[2:]]
            spatial = tuple(a[0] for a in axes)
            ks = [a[1] for a in axes]
            at = {"stride": self._spell([a[2] for a in axes], nd),
                  "padding": self._spell([a[3] for a in axes], nd),
                  "dilation": self._spell([a[4] for a in axes], nd)}
        if G > 1:
            self.tag("conv_groups")
        at.update(nd=nd, groups=G)
        x = self.expr((N, cin) + tuple(spatial), d)
        W = self.leaf((Co, cin // G) + tuple(ks))
        args = (x, W) + ((self.leaf((Co,)),) if self.chance(0.4) else ())
        return E("conv", args, at, full, self.c.dtype)

    def w_conv_t(self, full, nd, d):
        """conv_transpose2d: input size i with (i-1)s - 2p + d(k-1) + e + 1 = o."""
        self.tag("conv_transpose2d")
        N, Co = full[:2]
        G = self.pick([1, 1, Co]) if Co > 1 else 1
        cin = G * self.pick([1, 2])
        sizes, ks, ss, ps, ds, es = [], [], [], [], [], []
        for o in full[2:]:
            for _ in range(20):
                k, s, dl = self.pick([1, 2, 3]), self.pick([1, 1, 2]), self.pick([1, 1, 2])
                # output_padding below max(stride, dilation), as PyTorch accepts
                p, e = int(self.r.integers(0, 2)), int(self.r.integers(0, max(s, dl)))
                top = o + 2 * p - dl * (k - 1) - e - 1
                if top >= 0 and top % s == 0:
                    break
            else:
                k, s, dl, p, e, top = 1, 1, 1, 0, 0, o - 1
            sizes.append(top // s + 1)
            ks.append(k), ss.append(s), ps.append(p), ds.append(dl), es.append(e)
        at = {"nd": 2, "groups": G, "stride": self._spell(ss, 2), "padding": self._spell(ps, 2),
              "dilation": self._spell(ds, 2), "output_padding": self._spell(es, 2)}
        x = self.expr((N, cin) + tuple(sizes), d)
        W = self.leaf((cin, Co // G) + tuple(ks))
        args = (x, W) + ((self.leaf((Co,)),) if self.chance(0.4) else ())
        return E("conv_t", args, at, full, self.c.dtype)

    def w_maxpool(self, full, nd, d):
        return self._pool("maxpool", full, nd, d)

    def w_avgpool(self, full, nd, d):
        return self._pool("avgpool", full, nd, d)

    def _pool(self, op, full, nd, d):
        self.tag(f"{op}{nd}d")
        axes = [self._axis(o, pool=True, allow_dil=op == "maxpool") for o in full[2:]]
        stride = self._spell([a[2] for a in axes], nd)
        kernel = self._spell([a[1] for a in axes], nd)
        if stride == kernel and self.chance(0.5):
            stride = None                              # PyTorch's default: the kernel
        at = {"nd": nd, "kernel": kernel, "stride": stride,
              "padding": self._spell([a[3] for a in axes], nd)}
        if op == "maxpool":
            at["dilation"] = self._spell([a[4] for a in axes], nd)
        else:
            at["include"] = self.chance(0.5)
        xs = full[:2] + tuple(a[0] for a in axes)
        x = self.expr(xs, d)
        if op == "maxpool" and self.chance(0.3):
            # masked max pooling: masked-out elements -inf (whole windows of -inf too)
            self.tag("masked_pool")
            self.tag("logical_not")
            keep = E("logical_not", (self.leaf(xs, "mask", "bool"),), {}, xs, "bool")
            x = E("where", (keep, x, E("num", (), {"value": -float("inf")}, (), self.c.dtype)),
                  {}, xs, self.c.dtype)
        return E(op, (x,), at, full, self.c.dtype)
