"""Schedule and buffer plan for the llvm backend.

Every value gets a storage class:

* ``slot``  -- a pointer read from the call's pointer table: inputs, outputs and
  temporaries (temporaries point into one per-thread arena; their offsets are planned
  per batch size with lifetime-based reuse, see :func:`arena_offsets`);
* ``const`` -- a constant array: on llvm a global (small ones as IR values, large ones
  filled with their bytes after loading, see ``llvm/constants.py``), on ptx a buffer
  uploaded once;
* ``batch`` -- the batch size itself (a ``batch_size`` node);
* ``inline`` -- none: an elementwise node computed inside the one reduction reading it;
* ``view``  -- the storage of another node (reshape, stop_gradient, and a transpose of
  the last two axes whose every user is a matmul, which reads it through the GEMM's transpose flag).

With ``windows=True`` (the llvm backend) an ``unfold`` read only as the ``B`` operand of
matrix products (:func:`window_operand`) is never computed in full: it gets a ``slot``
holding scratch for one image per thread only (``Plan.windows``: its elements per image),
and each product unfolds one image (or rows of one) there right before multiplying it, so
the columns stay in cache instead of going through memory three times.  Likewise a
``matmul`` read only by folds (an input gradient, ``fold(Wᵀ ḡ)``, :func:`window_product`)
gets scratch for one block of one image's rows per thread: the fold computes a block of
the product there and adds it into its output at once.  And an elementwise ``fused``
node read only by a reduction (``sum((x - m)**2)``) is ``inline``: the reduction computes
it per element as it reads it (:func:`inline_reduced`), never storing it.

With ``epilogues=True`` (the ptx backend) a matrix product read only by one elementwise map
of its shape is ``inline`` too, and the map takes the product's place in the schedule: its
kernel computes the product and applies the map before storing (:mod:`.epilogue`;
``Plan.epilogue_of`` maps the map's id to the product).

Sizes are symbolic in the batch size B: :class:`Size` is ``static · B**power``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...ir import Graph, Node
from ...ops.registry import get_op

ALIGN = 64


@dataclass(frozen=True)
class Size:
    """``static * B**power``; ``Size(0, 0)`` is zero (a broadcast stride)."""

    static: int
    power: int = 0

    def __mul__(self, other: "Size") -> "Size":
        if self.static == 0 or other.static == 0:
            return ZERO
        return Size(self.static * other.static, self.power + other.power)

    def eval(self, batch: int) -> int:
        return self.static * (batch ** self.power if self.power else 1)


ZERO, ONE = Size(0), Size(1)


def dim(d) -> Size:
    return Size(1, 1) if d is None else Size(int(d))


def numel(shape) -> Size:
    out = ONE
    for d in shape:
        out = out * dim(d)
    return out


def row_major_strides(shape) -> list[Size]:
    strides, acc = [], ONE
    for d in reversed(shape):
        strides.append(acc)
        acc = acc * dim(d)
    return strides[::-1]


def batch_strides(operand: Node, stored: Node, out: Node) -> list[Size]:
    """Elements between consecutive matrices of a matmul operand along each batch axis of
    the product ``out`` (``stored``: the node whose memory it reads, itself or a transpose
    view's base); ZERO along an axis it is broadcast over."""
    strides = row_major_strides(stored.shape)[:-2]
    return [ZERO if d == 1 and o != 1 else s
            for d, o, s in zip(operand.shape[:-2], out.shape[:-2], strides)]


@dataclass
class Storage:
    kind: str            # "slot" | "const" | "batch" | "view" | "inline"
    slot: int = -1
    base: Node | None = None


GEMM_OPS = frozenset({"matmul", "matmul_sum"})   # steps that call the GEMM


def swaps_last_two(node: Node) -> bool:
    """A transpose that swaps the last two axes only (the matrices of a stack)."""
    n = node.ndim
    return (node.op == "transpose" and n >= 2
            and node.attr("perm") == tuple(range(n - 2)) + (n - 1, n - 2))


def is_gemm_transpose(graph: Graph, node: Node) -> bool:
    users = graph.users(node)
    return (swaps_last_two(node) and bool(users)
            and all(o is not node for o in graph.outputs)
            and all(u.op in GEMM_OPS for u in users))


MAX_WINDOW_THREADS = 64   # threads that may each unfold one image into a window's scratch


def window_threads() -> int:
    """Threads a window's scratch is made for: the cores adjit may use (at most
    MAX_WINDOW_THREADS; the pool gives a window step no more participants)."""
    from .target.description import num_threads
    return max(1, min(num_threads(), MAX_WINDOW_THREADS))

FOLD_BLOCK_BYTES = 1 << 30   # a folded product's rows computed at a time: a whole image (W10
#   measured as fast as blocks of 512 KB, and faster than 256 or 128 KB)


def fold_block(node: Node, taps: int) -> int:
    """Rows of a folded product (:func:`window_product`) computed at a time: the rows of
    whole channels (``taps`` rows each), at most FOLD_BLOCK_BYTES (at least one channel)."""
    row = np.dtype(node.dtype).itemsize * node.shape[2] * taps
    return taps * max(1, min(node.shape[1] // taps, FOLD_BLOCK_BYTES // row))


def window_unfold(graph: Graph, node: Node) -> bool:
    """Whether ``node`` is an ``unfold`` read only as the columns operand of products:
    ``matmul(A, reshape(u))`` with ``reshape(u)`` the ``(N, C·ΠK, ΠO)`` stack, or
    ``matmul_sum(A, transpose(reshape(u)))`` (a weight gradient), and not an output."""
    if (node.op != "unfold" or node.dtype not in ("float32", "float64")
            or any(d is None for d in node.shape[1:])):
        return False
    nd = len(node.attr("kernel"))
    want = (node.shape[0], numel(node.shape[1:2 + nd]).static, numel(node.shape[2 + nd:]).static)
    if any(o is node for o in graph.outputs) or not graph.users(node):
        return False
    for r in graph.users(node):
        if r.op != "reshape" or tuple(r.shape) != want or any(o is r for o in graph.outputs):
            return False
        for u in graph.users(r):
            if u.op == "matmul" and u.inputs[1] is r and u.inputs[0] is not r:
                continue
            if (u.op == "transpose" and swaps_last_two(u) and is_gemm_transpose(graph, u)
                    and all(m.op == "matmul_sum" and m.inputs[1] is u and m.inputs[0] is not u
                            for m in graph.users(u))):
                continue
            return False
        if not graph.users(r):
            return False
    return True


def window_product(graph: Graph, node: Node) -> bool:
    """Whether ``node`` is a ``matmul(A, B)`` read only as the columns of folds
    (``fold(reshape(matmul))``, a transposed convolution) and not an output: ``A`` one
    matrix (2-D or a stack of one), ``B`` an ``(N, K, L)`` stack stored as is (not a transpose view)."""
    if (node.op != "matmul" or node.dtype not in ("float32", "float64") or node.ndim != 3
            or any(d is None for d in node.shape[1:])):
        return False
    a, b = node.inputs
    if (not (a.ndim == 2 or (a.ndim == 3 and a.shape[0] == 1)) or b.ndim != 3 or b.shape[0] != node.shape[0] or a is b
            or (b.op == "transpose" and is_gemm_transpose(graph, b))
            or any(o is node for o in graph.outputs) or not graph.users(node)):
        return False
    users = graph.users(node)
    if len(users) != 1:        # one fold computes it (two would compute it twice)
        return False
    r = users[0]
    if (r.op != "reshape" or any(o is r for o in graph.outputs)
            or [u.op for u in graph.users(r)] != ["fold"]):
        return False
    taps = math.prod(graph.users(r)[0].attr("kernel"))
    return node.shape[1] % taps == 0


def inline_reduced(graph: Graph, node: Node) -> bool:
    """Whether ``node`` is an elementwise ``fused`` node (float) read only by one
    reduction, as its operand, and not an output: that reduction computes it."""
    from .reducers import REDUCERS     # (reducers imports this module's sizes)
    if node.op != "fused" or node.dtype not in ("float32", "float64"):
        return False
    users = graph.users(node)
    return (len(users) == 1 and users[0].op in REDUCERS and users[0].inputs[0] is node
            and all(o is not node for o in graph.outputs))


def inlined_operand(plan: "Plan", node: Node) -> Node | None:
    """The elementwise node a reduction step computes as it reads it, else None."""
    from .reducers import REDUCERS
    if node.op not in REDUCERS:
        return None
    st = plan.storage.get(node.inputs[0].id)
    return node.inputs[0] if st is not None and st.kind == "inline" else None


def window_operand(plan: "Plan", node: Node) -> Node | None:
    """The unfold whose columns a product step's ``B`` operand reads, if it is a window
    (computed inside the product), else None."""
    r = plan.root(node.inputs[1])
    return r if r.id in plan.windows and r.op == "unfold" else None


def folded_product(plan: "Plan", node: Node) -> Node | None:
    """The product a fold step reads as a window (computed inside the fold), else None."""
    if node.op != "fold":
        return None
    r = plan.root(node.inputs[0])
    return r if r.id in plan.windows and r.op == "matmul" else None


class Plan:
    """What runs in which order, and where every value lives."""

    def __init__(self, graph: Graph, in_place: frozenset[int] = frozenset(),
                 windows: bool = False, epilogues: bool = False):
        """``in_place``: indices of outputs whose buffer is an input's (``updates=``);
        ``windows``: unfolds read only by products become per-image scratch (see above);
        ``epilogues``: products read by one elementwise map run it as their epilogue.

        Those outputs are always computed elsewhere and copied after every step, so
        the input they overwrite is read in full before it changes.
        """
        self.graph = graph
        self.inputs = sorted(graph.inputs, key=lambda n: n.name)
        self.storage: dict[int, Storage] = {}
        self.steps: list[Node] = []           # nodes computed by a kernel, in order
        self.copies: list[tuple[Node, int]] = []  # outputs copied from another storage
        slot = 0
        for n in self.inputs:
            self.storage[n.id] = Storage("slot", slot)
            slot += 1
        self.output_slots: list[int] = []
        claimed: set[int] = set()
        for o in graph.outputs:
            self.output_slots.append(slot)
            if (o.id not in claimed and not get_op(o.op).leaf and not self._is_view(o)
                    and len(self.output_slots) - 1 not in in_place):
                self.storage[o.id] = Storage("slot", slot)
                claimed.add(o.id)
            else:
                self.copies.append((o, slot))   # copied into its own output buffer
            slot += 1
        self.n_array_slots = slot   # inputs and outputs: arrays the caller sees
        self.temps: list[Node] = []
        self.windows: dict[int, int] = {}     # unfold/product id -> its scratch per thread
        self.window_threads = window_threads()   # threads a window's scratch is made for
        self.epilogue_of: dict[int, Node] = {}   # map id -> the product it is the epilogue of
        fused: dict[int, Node] = {}              # product id -> its map
        scheduled: set[int] = set()
        for n in graph.order():
            if n.id in self.storage and n.op in ("input", "param"):
                continue
            if n.op == "const":
                self.storage[n.id] = Storage("const")
            elif n.op == "batch_size":
                self.storage[n.id] = Storage("batch")
            elif self._is_view(n):
                self.storage[n.id] = Storage("view", base=n.inputs[0])
            elif windows and n.id not in self.storage and window_unfold(graph, n):
                self.storage[n.id] = Storage("slot", slot)
                self.temps.append(n)
                self.windows[n.id] = numel(n.shape[1:]).static
                slot += 1
            elif windows and n.id not in self.storage and window_product(graph, n):
                self.storage[n.id] = Storage("slot", slot)
                self.temps.append(n)
                fold = graph.users(graph.users(n)[0])[0]
                self.windows[n.id] = fold_block(n, math.prod(fold.attr("kernel"))) * n.shape[-1]
                slot += 1
            elif windows and n.id not in self.storage and inline_reduced(graph, n):
                self.storage[n.id] = Storage("inline")
            elif epilogues and n.id not in self.storage and self._epilogue(n, scheduled, windows):
                self.storage[n.id] = Storage("inline")
                fused[n.id] = e = graph.users(n)[0]
                self.epilogue_of[e.id] = n
                self.steps.append(n)       # where the map will run
                scheduled.update((n.id, e.id))
            else:
                if n.id not in self.storage:
                    self.storage[n.id] = Storage("slot", slot)
                    self.temps.append(n)
                    slot += 1
                self.steps.append(n)
                scheduled.add(n.id)
        if fused:     # each map runs at its product's place (the product's step is the map's)
            self.steps = [fused.get(n.id, n) for n in self.steps if n.id not in self.epilogue_of]
        self.workspace_slot = slot
        self.n_slots = slot + 1
        self._lifetimes()

    def calls_gemm(self) -> bool:
        """Whether a step calls the GEMM (and so needs its workspace): a product step, or a
        fold step computing its folded product (:func:`window_product`) inside."""
        return (any(n.op in GEMM_OPS for n in self.steps)
                or any(t.op in GEMM_OPS for t in self.temps if t.id in self.windows))

    def _epilogue(self, n: Node, scheduled: set[int], windows: bool) -> bool:
        from .epilogue import epilogue_user
        e = epilogue_user(self.graph, n, lambda i: i.id in scheduled, self._is_view)
        return e is not None and not (windows and inline_reduced(self.graph, e))

    def _is_view(self, n: Node) -> bool:
        return get_op(n.op).view or is_gemm_transpose(self.graph, n)

    def root(self, n: Node) -> Node:
        """The node whose storage ``n`` reads (follows views)."""
        while self.storage[n.id].kind == "view":
            n = self.storage[n.id].base
        return n

    def _lifetimes(self) -> None:
        """First and last step index at which each temporary is live."""
        step_of = {n.id: k for k, n in enumerate(self.steps)}
        self.live: dict[int, list[int]] = {t.id: [step_of[t.id], step_of[t.id]] for t in self.temps
                                           if t.id not in self.windows}
        for k, n in enumerate(self.steps):
            reads = list(n.inputs)
            for i in n.inputs:   # a step reading a window reads what it is computed from
                r = self.root(i)
                if r.id in self.windows:
                    reads.extend(r.inputs[:1] if r.op == "unfold" else r.inputs)
                elif self.storage[r.id].kind == "inline":
                    reads.extend(r.inputs)
            for i in reads:
                r = self.root(i)
                if r.id in self.windows and r.id not in self.live:   # first product reading it
                    self.live[r.id] = [k, k]
                if r.id in self.live:
                    self.live[r.id][1] = max(self.live[r.id][1], k)
        for o, _ in self.copies:   # copies run after every step
            r = self.root(o)
            if r.id in self.live:
                self.live[r.id][1] = len(self.steps)

    def arena_offsets(self, batch: int) -> tuple[list[int], int]:
        """Byte offsets of the temporaries for this batch size, and the arena size.

        First-fit over live ranges: two temporaries share bytes only when their live
        ranges (in steps) do not overlap, so no kernel reads a buffer another wrote.
        """
        placed: list[tuple[int, int, int, int]] = []   # (start, end, first, last)
        offsets = []
        for t in self.temps:
            elems = (self.window_threads * self.windows[t.id] if t.id in self.windows
                     else numel(t.shape).eval(batch))
            nbytes = elems * np.dtype(t.dtype if t.dtype != "bool" else "u1").itemsize
            nbytes = -(-max(nbytes, 1) // ALIGN) * ALIGN
            first, last = self.live[t.id]
            clashes = sorted((s, e) for s, e, f, l in placed if not (l < first or f > last))
            offset = 0
            for s, e in clashes:
                if offset + nbytes <= s:
                    break
                offset = max(offset, e)
            placed.append((offset, offset + nbytes, first, last))
            offsets.append(offset)
        size = max((e for _, e, _, _ in placed), default=0)
        return offsets, size
