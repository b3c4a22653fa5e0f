"""The one intermediate representation: tensor types, nodes, and the Graph.

Every stage of adjit -- the forward graph a user declares, the adjoint nodes that
:func:`adjit.grad` adds, and the output of every pass -- is made of :class:`Node`
objects collected in a :class:`Graph`.

Invariants
----------
* A node is immutable once made.  Its ``inputs`` were all made before it, so node ids
  (a process-wide counter) are already a topological order; sorting by id is the
  deterministic order every printer and backend uses.
* ``None`` in a shape is *the* batch dimension: every ``None`` in a graph stands for the
  same size, bound when the compiled function is called.
* ``attrs`` is a sorted tuple of ``(key, value)`` pairs, so two nodes with equal op,
  inputs and attrs compute the same value (what CSE relies on).  ``meta`` holds
  annotations (user name, adjoint role) that never change what a node computes.
"""
from __future__ import annotations

import hashlib
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import networkx as nx
import numpy as np

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")
# uint32 holds random keys and random bits only (adjit.random); no arithmetic takes it
UINT_DTYPES = ("uint32",)
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",) + UINT_DTYPES


class AdjitError(Exception):
    """Base class of every error adjit raises on purpose."""


class ShapeError(AdjitError, ValueError):
    """Operand shapes do not fit an op; the message names the operands."""


class DTypeError(AdjitError, ValueError):
    """Operand dtypes do not fit an op; the message names the operands."""


def shape_str(shape: Sequence[int | None]) -> str:
    """``(None, 784)`` -> ``'(B, 784)'``: the batch dimension prints as B."""
    dims = ["B" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


@dataclass(frozen=True)
class TensorType:
    """Static shape (ints, or None for the batch dimension) and dtype name."""

    shape: tuple
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise DTypeError(f"unsupported dtype {self.dtype!r}; adjit supports {', '.join(DTYPES)}")
        for d in self.shape:
            if d is not None and (not isinstance(d, (int, np.integer)) or d < 0):
                raise ShapeError(f"bad dimension {d!r} in shape {self.shape!r}")
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def has_batch(self) -> bool:
        return None in self.shape

    def concrete(self, batch: int | None) -> tuple[int, ...]:
        """The shape with the batch dimension bound to ``batch``."""
        return tuple(batch if d is None else d for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}{shape_str(self.shape)}"


class ConstValue:
    """A numpy array made hashable by content, for use inside ``attrs``."""

    __slots__ = ("array", "_key")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, order="C", copy=True)  # (ascontiguousarray makes 0-d 1-d)
        self.array.setflags(write=False)
        digest = hashlib.sha1(self.array.tobytes()).hexdigest()
        self._key = (self.array.dtype.str, self.array.shape, digest)

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        if self.array.size == 1:
            return repr(self.array.reshape(()).item())
        return f"array{shape_str(self.array.shape)}"


_ids = itertools.count()
_role_stack: list[str] = []


@contextmanager
def building(role: str):
    """Nodes made inside this block get ``meta['role'] = role`` (e.g. 'adjoint')."""
    _role_stack.append(role)
    try:
        yield
    finally:
        _role_stack.pop()


def freeze_attrs(attrs: dict | None) -> tuple:
    return tuple(sorted((attrs or {}).items()))


class Node:
    """One value in a graph: ``op`` applied to ``inputs`` with ``attrs``.

    Users get nodes from :func:`adjit.input`, :func:`adjit.param`, operators and the
    functions in :mod:`adjit`; they are symbolic, not numbers.
    """

    __slots__ = ("id", "op", "inputs", "attrs", "type", "meta", "__weakref__")
    __array_priority__ = 1000  # numpy defers `ndarray op Node` to Node's reflected ops

    def __init__(self, op: str, inputs: Sequence["Node"], attrs: tuple, type: TensorType,
                 meta: dict | None = None):
        self.id = next(_ids)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.type = type
        self.meta = dict(meta or {})
        if _role_stack and "role" not in self.meta:
            self.meta["role"] = _role_stack[-1]

    # -- read-only views ------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def name(self) -> str | None:
        return self.meta.get("name")

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def key(self) -> tuple:
        """What the node computes: equal keys mean equal values (used by CSE)."""
        return (self.op, tuple(i.id for i in self.inputs), self.attrs)

    def __repr__(self) -> str:
        return f"<{label(self)}: {self.type}>"

    def __bool__(self):
        raise TypeError(f"the graph node {label(self)} has no truth value (comparisons such as "
                        "x == y build bool nodes): use aj.where for conditions, and `is` to ask "
                        "whether two nodes are the same node")

    # Operators (+, @, .T, ...) are installed by adjit.frontend, which owns broadcasting.


def label(node: Node, depth: int = 2) -> str:
    """A short human name: the user's name, else a small expression."""
    if node.name:
        return node.name
    if node.op == "const":
        return repr(node.attr("value"))
    if depth <= 0 or not node.inputs:
        return f"{node.op}#{node.id}"
    return f"{node.op}(" + ", ".join(label(i, depth - 1) for i in node.inputs) + ")"


def ancestors(outputs: Iterable[Node]) -> list[Node]:
    """All nodes the outputs depend on (outputs included), in id (= topological) order."""
    seen: dict[int, Node] = {}
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen[n.id] = n
        stack.extend(n.inputs)
    return [seen[i] for i in sorted(seen)]


def check_batch_bound(nodes: Iterable[Node], arguments: Iterable[Node]) -> None:
    """Raise ShapeError when a node uses the batch size (``None`` in its shape, or
    ``batch_size``) but no argument carries a batch dimension, so no call could bind it."""
    if any(None in a.shape for a in arguments):
        return
    for n in nodes:
        if None in n.shape or n.op == "batch_size":
            what = "reads the batch size" if n.op == "batch_size" else \
                f"has the batch dimension B in its shape {shape_str(n.shape)}"
            raise ShapeError(f"compile: {label(n)} {what}, but no input of the compiled function has a "
                             "batch dimension (None in its shape) to bind it: declare an input "
                             "with None in its shape, or use a static size")


class Graph:
    """A set of output nodes and everything they depend on, as a networkx DiGraph.

    Edges run from an input to the node that uses it.  ``stage`` says which step of
    the pipeline produced the graph ('traced', 'cse', 'fuse', ...).
    """

    def __init__(self, outputs: Sequence[Node], stage: str = "traced"):
        self.outputs = tuple(outputs)
        self.stage = stage
        # error-signal annotations a pass gave nodes it did not make (see passes/rewrite.py)
        self.extra_bars: dict[int, list[Node]] = {}
        self.extra_dots: dict[int, list[Node]] = {}     # the same for tangents (dots)
        self.nodes = ancestors(self.outputs)
        self._nx = None
        self._users: dict[int, list[Node]] | None = None

    @property
    def nx(self) -> "nx.DiGraph":
        """The graph as a networkx DiGraph (node attribute ``node``; edge attribute
        ``slots``: the operand positions), built on first use."""
        if self._nx is None:
            g = nx.DiGraph()
            for n in self.nodes:
                g.add_node(n.id, node=n)
                for k, i in enumerate(n.inputs):
                    # parallel edges (x * x) collapse in a DiGraph; keep every operand slot
                    slots = g.edges[i.id, n.id]["slots"] if g.has_edge(i.id, n.id) else ()
                    g.add_edge(i.id, n.id, slots=slots + (k,))
            self._nx = g
        return self._nx

    def order(self) -> list[Node]:
        """Deterministic topological order (by node id)."""
        return self.nodes

    def users(self, node: Node) -> list[Node]:
        """The nodes reading ``node``, each once, by id."""
        if self._users is None:
            users: dict[int, list[Node]] = {n.id: [] for n in self.nodes}
            for n in self.nodes:            # (id order: every list comes out sorted)
                for i in {i.id: i for i in n.inputs}.values():
                    users[i.id].append(n)
            self._users = users
        return list(self._users[node.id])

    def leaves(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    @property
    def inputs(self) -> list[Node]:
        """Nodes bound by name at call time (``input`` and ``param`` ops), by id."""
        return [n for n in self.nodes if n.op in ("input", "param")]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        text = VIEWS.get("listing")
        return text(self) if text else f"<Graph {self.stage!r}: {len(self)} nodes>"

    def _repr_svg_(self) -> str | None:
        """Jupyter shows the graph as a picture when Graphviz or matplotlib is installed."""
        svg = VIEWS.get("svg")
        return svg(self) if svg else None


# How graphs print: the views (adjit.show) register ``listing`` and ``svg`` here when
# imported, so the IR never imports them (layers point down).
VIEWS: dict = {}


@runtime_checkable
class Staged(Protocol):
    """What the views accept besides a Graph: a function with its stages (adjit.Compiled).

    ``stages``: the traced graph then one graph per pass; ``graph``: the last stage;
    ``forward``: the traced graph's forward outputs."""

    stages: list
    graph: Graph
    forward: Graph


# --- content digests and a portable form (the compiled-function cache, backends/llvm) ------
def _attr_text(value) -> str:
    if isinstance(value, ConstValue):
        return f"const{value._key!r}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_attr_text(v) for v in value) + ")"
    if hasattr(value, "func") and hasattr(value, "args"):   # a sympy expression
        import sympy
        return sympy.srepr(value)
    return f"{type(value).__name__}:{value!r}"


def fingerprint(graph: Graph) -> str:
    """A sha256 of what the graph computes and how its values are named: per node (in
    order) op, operand positions, attrs, type, name and role.  Equal fingerprints mean the
    same graph up to node ids, so a compiled form of one serves the other."""
    pos = {n.id: k for k, n in enumerate(graph.nodes)}
    h = hashlib.sha256()
    for n in graph.nodes:
        args = ",".join(str(pos[i.id]) for i in n.inputs)
        attrs = ";".join(f"{k}={_attr_text(v)}" for k, v in n.attrs)
        h.update(f"{n.op}({args})[{attrs}]{n.type}|{n.name}|{n.meta.get('role')}\n".encode())
    h.update(("->" + ",".join(str(pos[o.id]) for o in graph.outputs)).encode())
    return h.hexdigest()


def to_records(graph: Graph) -> tuple:
    """The graph as plain data (picklable, no node objects): ``(stage, nodes, outputs)``
    with each node ``(op, operand positions, attrs, type, name, role)``.  Other meta
    (display annotations) is dropped."""
    pos = {n.id: k for k, n in enumerate(graph.nodes)}
    nodes = [(n.op, tuple(pos[i.id] for i in n.inputs), n.attrs, n.type, n.name,
              n.meta.get("role")) for n in graph.nodes]
    return graph.stage, nodes, tuple(pos[o.id] for o in graph.outputs)


def from_records(records: tuple) -> Graph:
    """Rebuild a :func:`to_records` graph from fresh nodes (new ids, so the id order stays
    a topological order in this process)."""
    stage, nodes, outputs = records
    made: list[Node] = []
    for op, args, attrs, type_, name, role in nodes:
        meta = {k: v for k, v in (("name", name), ("role", role)) if v is not None}
        made.append(Node(op, [made[k] for k in args], attrs, type_, meta))
    return Graph([made[k] for k in outputs], stage)
