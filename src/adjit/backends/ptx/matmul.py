"""Matrix products with shared-memory tiles: C[..., M, N] = op(A)[..., M, K] @ op(B)[..., K, N].

``op`` is a transpose when the operand is a transpose *view* (the plan's GEMM flag), which is
how the backward pass's products (G @ W^T, X^T @ G) arrive; an operand is then read through
strides, never copied.

A stack of products (batch axes, broadcast ones read with stride 0) is one launch: the
tiles of every matrix of the stack are numbered together, and a tile's number gives its
matrix (hence each operand's offset) and its place in it.

Each block computes one BM x BN tile of C (tiles are handed out grid-stride) with NTID = 256
threads, each owning TM x TN = 4 x 4 outputs at rows ty + 16i, columns tx + 16j (so the shared
reads of a warp are broadcasts or consecutive, and the stores coalesce).  Per BK-wide step of K
the block stages an A tile (kept k-major) and a B tile in shared memory, reading consecutive
addresses of whichever dimension is contiguous in memory; out-of-range elements load as 0 (the
address is clamped into the matrix and the value selected away, so no load is ever out of
bounds).  Accumulators are private per thread and use ``llvm.fma``.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir import Node, shape_str
from ..lowering.irkit import c64
from ..lowering.loops import accumulate, merge_dims, size_value
from ..lowering.plan import Size, batch_strides, numel, row_major_strides
from ..lowering.printer import intrinsic
from ..lowering.elements import element_fn
from .lower import ELEM_TYPES, ITEMSIZE, MAX_GRID, NTID, ElemCtx, Launch, accesses, blocks

BM = BN = 64
BK = 16
TM = TN = 4
THREADS_M, THREADS_N = BM // TM, BN // TN    # 16 x 16 threads over a tile
assert THREADS_M * THREADS_N == NTID


class Product:
    """What every matmul kernel needs to know about ``node``: transposes, sizes, the stack,
    and the epilogue.

    **Epilogue.**  When the plan runs an elementwise map E as this product's epilogue
    (:mod:`adjit.backends.lowering.epilogue`: E is the product's only user, of its shape),
    C is E: ``self.out`` is E (else the product), the kernels made by :meth:`kernel` also
    take E's other operands (after A and B), :meth:`launch` passes them, and every element
    of C must be stored through the hook, which applies E (the identity without one):

    * ``d.store(b, pc, row, col, value)`` inside the ``write`` of :meth:`each_tile`
      (``pc`` as given there; ``row``, ``col`` inside the matrix), or
    * in a kernel with its own tile loop, ``ep = d.epilogue(b, mat)`` once per tile in
      uniform code (``mat``: the matrix of the stack, ignored for a matmul_sum), then
      ``ep(value, row, col)`` per element, in bounds only (it reads E's operands there).

    Partial results (split-K partials) are stored raw; only the final sum applies the hook.
    """

    def __init__(self, lw, node: Node, summed: bool):
        a, bnode = node.inputs
        view = lambda n: n.op == "transpose" and lw.plan.storage[n.id].kind == "view"
        self.lw, self.node, self.summed, self.a, self.b = lw, node, summed, a, bnode
        self.ta, self.tb = ta, tb = view(a), view(bnode)
        self.M, self.K, self.N = a.shape[-2], a.shape[-1], node.shape[-1]
        inline = lw.plan.storage[node.id].kind == "inline"
        self.map = e = lw.plan.graph.users(node)[0] if inline else None   # the epilogue's map
        self.out = node if e is None else e
        self.extras = [i for i in e.inputs if i is not node] if e is not None else []
        self._ep_acc = ([acc for i, acc in zip(e.inputs, accesses(e)) if i is not node]
                        if e is not None else [])
        batch_shape = a.shape[:-2] if summed else node.shape[:-2]
        strides = [[Size(0)] * len(batch_shape) if summed else row_major_strides(node.shape)[:-2],
                   batch_strides(a, a.inputs[0] if ta else a, a if summed else node),
                   batch_strides(bnode, bnode.inputs[0] if tb else bnode, a if summed else node)]
        if not summed:            # E's operands along the stack (a matmul_sum's E is 2-D)
            strides += [acc[:-2] for acc in self._ep_acc]
        self.batch_shape = batch_shape
        self.batch_sizes, self.strides = merge_dims(batch_shape, strides)
        self.T = ELEM_TYPES[node.dtype]
        self.what = (f"{node.op} {'T' if ta else ''}{shape_str(a.shape)} @ "
                     f"{'T' if tb else ''}{shape_str(bnode.shape)}"
                     + (f" + {e.op} {shape_str(e.shape)}" if e is not None else ""))
        self.tile_ep = None      # the epilogue of the tile each_tile is writing

    def sizes(self, B: int) -> tuple[int, int, int, int]:
        """(M, N, K, matrices in the stack) at batch size ``B``."""
        ev = lambda d: numel((d,)).eval(B)
        return ev(self.M), ev(self.N), ev(self.K), numel(self.batch_shape).eval(B)

    def bind(self, k) -> "Product":
        """Set the i64 values of kernel ``k``: m, n, k, mats and the operands' strides."""
        b = k.b
        dim = lambda d: size_value(b, numel((d,)), k.batch)
        self.m, self.n, self.k = m, n, kk = dim(self.M), dim(self.N), dim(self.K)
        # element (i, l) of op(A) is A[i*sa_i + l*sa_l]; stored transposed it is (K, M) row-major
        self.sa_i, self.sa_l = (c64(1), m) if self.ta else (kk, c64(1))
        self.sb_l, self.sb_j = (c64(1), kk) if self.tb else (n, c64(1))
        mats = c64(1)
        for s_ in self.batch_sizes:
            mats = b.mul(mats, size_value(b, s_, k.batch))
        self.mats, self._batch = mats, k.batch
        return self

    def kernel(self, lw, name: str, n_ints: int = 0, reads=None):
        """A new kernel ``name`` reading ``reads`` (A and B by default) and the epilogue's
        operands, bound (:meth:`bind`): (kernel, its operand references, A's and B's base
        pointers (those of ``reads`` when given))."""
        reads = [self.a, self.b] if reads is None else reads
        k, refs, ptrs = lw.kernel(name, self.out.dtype, reads + self.extras, n_ints)
        if any(p is None for p in ptrs[:len(reads)]):
            raise NotImplementedError("matmul of the batch size")
        self.bind(k)
        self._k, self._ep_ptrs = k, ptrs[len(reads):]
        return (k, refs, *ptrs[:len(reads)])

    def _offsets(self, b, mat):
        """Element offsets of matrix ``mat`` of the stack in C, A, B and E's operands."""
        offs = [c64(0)] * len(self.strides)
        for d in reversed(range(len(self.batch_sizes))):
            size = size_value(b, self.batch_sizes[d], self._batch)
            idx = b.urem(mat, size)
            mat = b.udiv(mat, size)
            offs = [b.add(o, b.mul(idx, size_value(b, st[d], self._batch)))
                    for o, st in zip(offs, self.strides)]
        return offs

    def offsets(self, b, mat, ptrs):
        """Pointers to matrix ``mat`` of the stack in C, A and B (from their bases ``ptrs``)."""
        return [b.gep(p, [o]) for p, o in zip(ptrs, self._offsets(b, mat))]

    def epilogue(self, b, mat):
        """``fn(value, row, col)``: E's element (mat, row, col) from the product's ``value``
        there (``value`` itself without an epilogue); see the class docstring."""
        e = self.map
        if e is None:
            return lambda value, row, col: value
        k, lw, ops, ptrs = self._k, self.lw, self.extras, self._ep_ptrs
        base = [c64(0)] * len(ops) if self.summed else self._offsets(b, mat)[3:]
        sv = lambda s: size_value(b, s, k.batch)
        rc = [(sv(acc[-2]), sv(acc[-1])) for acc in self._ep_acc]
        elem, ctx = element_fn(e), ElemCtx(lw, k, ops, ptrs)

        def apply(value, row, col):
            vals, j = [], 0
            for i in e.inputs:
                if i is self.node:
                    vals.append(value)
                    continue
                off = b.add(base[j], b.add(b.mul(row, rc[j][0]), b.mul(col, rc[j][1])))
                vals.append(lw.load(k, ops[j], ptrs[j], off))
                j += 1
            return elem(b, vals, [row, col], ctx)
        return apply

    def store(self, b, pc, row, col, value) -> None:
        """C[row, col] = E(value) of the tile :meth:`each_tile` is writing (``pc`` its C)."""
        b.store(self.tile_ep(value, row, col), b.gep(pc, [b.add(b.mul(row, self.n), col)]))

    def each_tile(self, k, BM: int, BN: int, ptrs, clear, products, write) -> None:
        """For each BM x BN tile of C this block takes (grid-stride): ``clear()`` the
        accumulators, ``products(pa, pb, m0, n0)`` for the matrix pair it sums (every pair
        of the stack for a matmul_sum), then ``write(pc, m0, n0)``, which stores each element
        with :meth:`store`; ``ptrs``: the bases of C, A and B (after :meth:`kernel`)."""
        b = k.b
        tiles_n = b.udiv(b.add(self.n, c64(BN - 1)), c64(BN))
        tiles_mat = b.mul(b.udiv(b.add(self.m, c64(BM - 1)), c64(BM)), tiles_n)
        tiles = tiles_mat if self.summed else b.mul(tiles_mat, self.mats)
        with k.uniform_loop(k.ctaid, tiles, k.nctaid, "tile") as t:
            # the tile's matrix in the stack (batch index, innermost axis last), its place
            mat = c64(0) if self.summed else b.udiv(t, tiles_mat)
            t = b.sub(t, b.mul(mat, tiles_mat))
            # (summed: no stack offsets here, the stack may be empty and its sizes 0)
            pc, pa_t, pb_t = ptrs if self.summed else self.offsets(b, mat, ptrs)
            tm = b.udiv(t, tiles_n)
            m0, n0 = b.mul(tm, c64(BM)), b.mul(b.sub(t, b.mul(tm, tiles_n)), c64(BN))
            clear()
            if self.summed:
                with k.uniform_loop(c64(0), self.mats, c64(1), "mat") as mat:
                    _, pa_t, pb_t = self.offsets(b, mat, ptrs)
                    products(pa_t, pb_t, m0, n0)
            else:
                products(pa_t, pb_t, m0, n0)
            self.tile_ep = self.epilogue(b, mat)
            write(pc, m0, n0)

    def launch(self, lw, name: str, refs, BM: int, BN: int, when, what: str) -> None:
        """Append the launch of a kernel giving each block BM x BN tiles of C."""
        mt, nt = numel((self.M,)), numel((self.N,))
        nb = numel(()) if self.summed else numel(self.batch_shape)
        n_tiles = lambda B: -(-mt.eval(B) // BM) * -(-nt.eval(B) // BN) * nb.eval(B)  # noqa
        out = ("slot", lw.plan.storage[self.out.id].slot)
        lw.launches.append(Launch(name, (out, *refs),
                                  grid=lambda B: max(1, min(n_tiles(B), MAX_GRID)),
                                  when=lambda B: n_tiles(B) > 0 and when(B), what=what))


def fetch(b, zero, ptr, row, col, rows, cols, s_row, s_col):
    """ptr[row*s_row + col*s_col], or ``zero`` outside the rows x cols matrix (the address
    clamped into it, so no load is ever out of bounds)."""
    inside = b.and_(b.icmp_unsigned("<", row, rows), b.icmp_unsigned("<", col, cols))
    r = b.select(b.icmp_unsigned("<", row, rows), row, b.sub(rows, c64(1)))
    c = b.select(b.icmp_unsigned("<", col, cols), col, b.sub(cols, c64(1)))
    v = b.load(b.gep(ptr, [b.add(b.mul(r, s_row), b.mul(c, s_col))]))
    return b.select(inside, v, zero)


SMS = 132                 # streaming multiprocessors to fill (an H100/H200)
SMALL_WORK = 1 << 24      # multiply-adds below which the 64 x 64 kernel is used (launch-bound)
MIN_SPLIT_K = 256         # each split of K at least this deep
MAX_SPLITS = 16
BIG_DTYPES = ("float32",)  # element types the 128 x 128 kernel is chosen for


def choose(M: int, N: int, K: int, mats: int, summed: bool,
           dtype: str = "float32") -> tuple[str, int]:
    """The kernel for one product: ``("tile64", 1)`` (this module's kernel) or
    ``("big", S)`` (:mod:`.matmul_big`, K split S ways when its 128 x 128 tiles alone would
    leave SMs idle).  Depends on the shape only, so a shape always runs the same kernel.
    float64 keeps the 64 x 64 kernel: the big one needs 252-255 registers there and spills
    on sm_80 (it is built and emulation-tested for float64 all the same)."""
    if dtype not in BIG_DTYPES:
        return "tile64", 1
    big_tiles = -(-M // 128) * -(-N // 128) * (1 if summed else mats)
    if M * N * K * mats < SMALL_WORK or big_tiles == 0:
        return "tile64", 1
    if big_tiles >= SMS:
        return "big", 1
    S = max(1, min(-(-SMS // big_tiles), K // MIN_SPLIT_K, MAX_SPLITS))
    small_tiles = -(-M // 64) * -(-N // 64) * (1 if summed else mats)
    if S == 1 and small_tiles > 2 * big_tiles and small_tiles <= 2 * SMS:
        return "tile64", 1      # more blocks, each as deep: fills the GPU better
    return "big", S


def lower_matmul(lw, name: str, node: Node, summed: bool = False) -> None:
    """Add the kernels and launches computing ``node`` (a matmul) to the Lowering ``lw``.

    ``summed``: ``node`` is a ``matmul_sum`` (ops/contract.py), one output matrix summed
    over the operands' batch axes.  :func:`choose` picks the kernel per call from the sizes;
    kernels that cannot be chosen (static sizes) are not built."""
    d = Product(lw, node, summed)
    pick = lambda B: choose(*d.sizes(B), summed, node.dtype)
    if all(numel((x,)).power == 0 for x in (d.M, d.N, d.K)) and numel(d.batch_shape).power == 0:
        kinds = {pick(0)[0]}
        splits = pick(0)[1] > 1
    elif node.dtype in BIG_DTYPES:
        kinds, splits = {"tile64", "big"}, True
    else:                     # (choose never picks the big kernel: it is not built)
        kinds, splits = {"tile64"}, False
    if "tile64" in kinds:
        _lower_tile64(lw, name, d, when=lambda B: pick(B)[0] == "tile64")
    if "big" in kinds:
        from .matmul_big import lower_big, lower_split_sum
        nm = f"{name}_big"
        k, refs, pa, pb = d.kernel(lw, nm, n_ints=1)
        lower_big(lw, nm, k, d, pa, pb)
        out = ("slot", lw.plan.storage[d.out.id].slot)
        out_mats = (lambda B: 1) if summed else (lambda B: d.sizes(B)[3])
        c_size = lambda B: d.sizes(B)[0] * d.sizes(B)[1] * out_mats(B)
        tasks = lambda B: (-(-d.sizes(B)[0] // 128) * -(-d.sizes(B)[1] // 128) * out_mats(B)
                           * pick(B)[1])
        grid = lambda B: max(1, min(tasks(B), MAX_GRID))
        S = lambda B: pick(B)[1]
        big = lambda B: pick(B)[0] == "big"
        lw.launches.append(Launch(nm, (out, *refs), grid=grid, ints=(S,),
                                  when=lambda B: big(B) and S(B) == 1 and c_size(B) > 0,
                                  what=d.what + " (128x128)"))
        if splits:
            fin = f"{name}_splitsum"     # reads the partials in A's place, then E's operands
            kf, refs_f, _ = d.kernel(lw, fin, n_ints=1, reads=[d.a])
            lower_split_sum(kf, size_value(kf.b, numel(node.shape), kf.batch), kf.ints[0],
                            final_epilogue(d))
            work = ("work",)
            lw.launches += [
                Launch(nm, (work, *refs), grid=grid, ints=(S,),
                       when=lambda B: big(B) and S(B) > 1 and c_size(B) > 0,
                       work_bytes=lambda B: S(B) * c_size(B) * ITEMSIZE[node.dtype],
                       what=d.what + " (128x128, split K)"),
                Launch(fin, (out, work, *refs_f[1:]), grid=lambda B: blocks(c_size(B)), ints=(S,),
                       when=lambda B: big(B) and S(B) > 1 and c_size(B) > 0,
                       what=d.what + " (sum of the K splits)")]


def final_epilogue(d: Product):
    """``finish(b, i, value)`` for the split-K sum: the epilogue at flat element ``i`` of C
    (None without one)."""
    if d.map is None:
        return None

    def finish(b, i, value):
        mn = b.mul(d.m, d.n)
        mat = b.udiv(i, mn)
        r = b.sub(i, b.mul(mat, mn))
        row = b.udiv(r, d.n)
        return d.epilogue(b, mat)(value, row, b.sub(r, b.mul(row, d.n)))
    return finish


def _lower_tile64(lw, name: str, d: Product, when) -> None:
    """The 64 x 64 kernel (module docstring) for the product ``d``."""
    ta, tb, T = d.ta, d.tb, d.T
    k, refs, pa, pb = d.kernel(lw, name)
    b = k.b
    m, n, kk_total = d.m, d.n, d.k
    sa_i, sa_l, sb_l, sb_j = d.sa_i, d.sa_l, d.sb_l, d.sb_j
    zero = ir.Constant(T, 0.0)
    fma = intrinsic(lw.module, "fma", T, 3)
    a_sh, b_sh = k.shared(T, BK * BM), k.shared(T, BK * BN)
    acc = k.private(T, TM * TN)

    def get(ptr, row, col, rows, cols, s_row, s_col):
        return fetch(b, zero, ptr, row, col, rows, cols, s_row, s_col)

    def stage(tid, sh, W, x0, k0, x_contiguous, get):
        """Copy a BK x W tile into shared ``sh[l*W + x]`` (l along K, x along M or N, from
        offsets ``k0`` and ``x0``); consecutive threads walk the dimension that is
        contiguous in memory (x when ``x_contiguous``)."""
        for rep in range(W * BK // NTID):
            e = b.add(tid, c64(rep * NTID))
            x, l = ((b.urem(e, c64(W)), b.udiv(e, c64(W))) if x_contiguous else
                    (b.udiv(e, c64(BK)), b.urem(e, c64(BK))))
            v = get(b.add(x0, x), b.add(k0, l))
            b.store(v, b.gep(sh, [b.add(b.mul(l, c64(W)), x)]))

    def products(pa_t, pb_t, m0, n0):
        """Add op(A) @ op(B) of one matrix pair to the tile's accumulators."""
        with k.uniform_loop(c64(0), kk_total, c64(BK), "k0") as k0:
            with k.threads() as tid:
                stage(tid, a_sh, BM, m0, k0, ta,          # op(A)[m0 + x, k0 + l]
                      lambda x, l: get(pa_t, x, l, m, kk_total, sa_i, sa_l))
                stage(tid, b_sh, BN, n0, k0, not tb,      # op(B)[k0 + l, n0 + x]
                      lambda x, l: get(pb_t, l, x, kk_total, n, sb_l, sb_j))
            k.barrier()
            with k.threads() as tid:
                ty, tx = b.udiv(tid, c64(THREADS_N)), b.urem(tid, c64(THREADS_N))

                def step(l, c):
                    arow, brow = b.add(b.mul(l, c64(BM)), ty), b.add(b.mul(l, c64(BN)), tx)
                    av = [b.load(b.gep(a_sh, [b.add(arow, c64(THREADS_M * i))])) for i in range(TM)]
                    bv = [b.load(b.gep(b_sh, [b.add(brow, c64(THREADS_N * j))])) for j in range(TN)]
                    return [b.call(fma, [av[q // TN], bv[q % TN], c[q]]) for q in range(TM * TN)]
                c = accumulate(b, c64(0), c64(BK), c64(1),
                               [b.load(acc.at(q)) for q in range(TM * TN)], step)
                for q in range(TM * TN):
                    b.store(c[q], acc.at(q))
            k.barrier()

    def clear():
        acc.fill(zero)

    def write(pc, m0, n0):
        with k.threads() as tid:
            ty, tx = b.udiv(tid, c64(THREADS_N)), b.urem(tid, c64(THREADS_N))
            for q in range(TM * TN):
                row = b.add(m0, b.add(ty, c64(THREADS_M * (q // TN))))
                col = b.add(n0, b.add(tx, c64(THREADS_N * (q % TN))))
                inside = b.and_(b.icmp_unsigned("<", row, m), b.icmp_unsigned("<", col, n))
                with b.if_then(inside):
                    d.store(b, pc, row, col, b.load(acc.at(q)))

    d.each_tile(k, BM, BN, (k.ptrs[0], pa, pb), clear, products, write)
    k.finish()
    d.launch(lw, name, refs, BM, BN, when, d.what)
