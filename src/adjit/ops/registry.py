"""The op registry: every primitive op is declared exactly once, here or in a sibling module.

An :class:`Op` record carries everything the rest of adjit needs to know about a primitive:

* ``infer(inputs, attrs) -> TensorType`` -- shape and dtype rule; raises ShapeError /
  DTypeError naming the operands.
* ``numpy(args, node, env)`` -- the reference implementation the interpreter runs.
* ``vjp(node, g, needs)`` -- cotangents for the inputs, written with front-end ops (so
  gradients are ordinary nodes and can be differentiated again).  ``needs[k]`` says
  whether input k needs one; return ``None`` where it does not.
* ``jvp(node, tangents)`` -- forward mode: the tangent of the node given one tangent node
  per input (``None`` where that input's tangent is zero), written with front-end ops;
  returns a node shaped like ``node``, or ``None`` for a zero tangent.  Elementwise ops
  derive it from their VJP rules (the derivative is diagonal, so the VJP with ``g``
  replaced by the tangent is the JVP); the other records use the shared rules of
  :mod:`.tangents` (linear in one operand, jointly linear, the product rule) or their own.
  Ops with ``differentiable=False`` need none (their tangent is zero).
* ``scalar`` -- for elementwise ops, the sympy scalar form.  The numpy reference of an
  elementwise op and its native lowering are both derived from it.
* ``domain`` / ``test_shapes`` -- where the generated tests sample it.
* ``support(node, k, m)`` -- structural ops only: given ``m``, a bool node shaped like
  ``node`` that is false only where the cotangent is exactly zero, a bool node shaped like
  input ``k`` with the same property for that input's contribution (or ``None``: it may be
  nonzero anywhere).  Lets a ``where`` branch's mask (autodiff's double-where rule) follow
  a value through the op; an op without it ends the mask.
* ``masked_vjp(node, g, needs, supports)`` -- the VJP when the inputs' supports are known,
  for ops whose plain VJP multiplies an exact zero of ``g`` by another operand (matmul).

What the rest of adjit reads instead of keeping lists of op names:

* ``public`` -- the name of the front-end function made from the record (elementwise ops:
  ``aj.<public>``), or None when the front end writes the function by hand.
* ``display`` / ``latex`` -- how the equations view names the op (``σ``, ``\\sigma``).  A
  ``latex`` holding ``{0}`` is a template over the operands (``\\lfloor {0} \\rfloor``).
* ``shown(node, dropped) -> Shown`` -- how the views write a node whose attributes matter (slices,
  gathers, joins, random draws): see :class:`Shown`.  Ops without it are written
  ``display(operands)``.
* ``cost`` -- rough work per output element (1 for arithmetic, 5 for a transcendental
  function), or ``cost(node) -> int`` when it depends on the attributes (``fold`` sums
  one element per kernel tap); the llvm backend splits steps over threads by it.
* ``view`` -- the result is the operand's memory read another way (reshape,
  stop_gradient): no kernel, no buffer.
* ``zero_preserving`` -- the VJP is zero wherever the cotangent is (±g, or sums, copies and
  moves of its elements): autodiff's double-where masks pass through it.
* ``moves_values`` -- moves integer values without changing them (labels that reach
  ``one_hot`` through it are still checked at call time).
* ``linear`` -- linear in each operand taken alone (add, matmul, sum, broadcast, ...).
* ``commutative`` -- operand order does not matter (pictures number the operands of the
  others).
* ``expand(node, inputs) -> Node`` -- the op computed from other ops (a convolution as a
  matrix product of its unfolded windows).  The pass ``passes.expand`` applies it before
  a backend lowers the graph, so backends need no rule of their own; the traced graph,
  and so the equations view, keeps the op.
* ``min_batch(node) -> int`` -- the smallest batch size a call may bind for this node
  (``x[3]`` on the batch axis needs B > 3); compiled functions check it at call time.
* ``index_range(node, k)`` -- for an op reading integer operand ``k`` as indices (one_hot,
  take, ...): ``(lo, hi, what)``, the values ``lo <= v < hi`` it accepts and what reads
  them (for error messages), or None (not an index operand, or a range only known at
  call time).  An integer *input* reaching it (through ``moves_values`` ops) is checked at
  call time (:func:`adjit.binding.label_limits`); computed indices are not.

Each backend keeps one rule table keyed by op name (``rules`` in its package) and a test
checks that every registered op has a rule or a declared refusal in each of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..ir import AdjitError, Node, TensorType, building, freeze_attrs


@dataclass(frozen=True)
class Shown:
    """How the views (equations, pictures) write one node (``Op.shown(node)``).

    * ``index`` -- numpy indexing parts, one per axis (trailing ``:`` may be left out):
      text (``":"``, ``"0"``, ``"1:3"``, ``"::-1"``), or an int ``k`` standing for the
      values of operand ``k`` (``take``: ``E[:, ids]``).  Without ``into`` the node reads
      ``operand0[index]``; with ``into`` it writes its operand 0 at ``[index]`` of an
      array of zeros (``pad``), which a backward pass writes ``x̄[index] += ḡ``.
      ``Op.shown(node, dropped)``: ``dropped`` names the axes of a size-1 range that the
      reshape around the node drops (or, for ``pad``, that the reshape of its operand
      adds); they are written as one index (``x[:, 0]`` is a slice ``[:, 0:1]`` and a
      reshape).
    * ``into`` -- the node adds its operands into zeros (``pad`` with 0, ``scatter_add``):
      a backward pass writes it as an accumulation, ``Ē += scatter(ids, ȳ)``.
    * ``name`` -- the function written (default: the op's ``display``/name).
    * ``note`` -- the attributes written after the operands: ``concat(a, b; axis 1)``
      (and after the name in pictures).
    * ``args`` -- the operands' order as written (``scatter(ids, ȳ)``), default as stored.
    """

    index: tuple = ()
    into: bool = False
    name: str | None = None
    note: str = ""
    args: tuple | None = None


@dataclass
class Op:
    name: str
    infer: Callable
    numpy: Callable
    vjp: Callable | None = None
    jvp: Callable | None = None             # forward mode: (node, tangents) -> tangent
    scalar: Callable | None = None          # sympy form (elementwise ops only)
    elementwise: bool = False
    arity: int | None = None
    domain: tuple = (-2.0, 2.0)             # test sampling range (elementwise ops)
    differentiable: bool = True             # False: derivative zero wherever it exists
    doc: str = ""
    support: Callable | None = None         # how a mask of the cotangent maps to input k
    masked_vjp: Callable | None = None      # the VJP given the inputs' supports
    public: str | None = None               # front-end function made from the record
    display: str | None = None              # equations view: function name ("σ")
    latex: str | None = None                # equations view, LaTeX form
    cost: int | Callable = 1                # work per output element (transcendental: 5)
    view: bool = False                      # result aliases the operand's memory
    zero_preserving: bool = False           # VJP is zero wherever the cotangent is
    moves_values: bool = False              # integer values pass through unchanged
    linear: bool = False                    # linear in each operand
    commutative: bool = False               # operand order does not matter (drawings)
    min_batch: Callable | None = None       # node -> smallest batch size a call may bind
    index_range: Callable | None = None     # (node, k) -> (lo, hi, what) of index operand k
    shown: Callable | None = None           # (node, dropped=()) -> Shown, for the views
    expand: Callable | None = None          # (node, inputs) -> the node from other ops
    extra: dict = field(default_factory=dict)

    @property
    def shown_as(self) -> str:
        """The name the equations view writes for the op."""
        return self.display or self.name

    @property
    def relation(self) -> bool:
        """A comparison: two operands of one dtype, a bool result, no derivative."""
        return self.elementwise and self.arity == 2 and not self.differentiable \
            and self.display is not None

    @property
    def leaf(self) -> bool:
        """A value bound at call time or built in (input, param, const, batch_size)."""
        return self.arity == 0


REGISTRY: dict[str, Op] = {}


def min_batch(nodes) -> tuple[int, Node | None]:
    """``(B, node)``: the smallest batch size that every node of ``nodes`` accepts, and the
    node that needs the most (None when any batch size will do)."""
    need, who = 0, None
    for n in nodes:
        rule = REGISTRY[n.op].min_batch
        k = rule(n) if rule is not None else 0
        if k > need:
            need, who = k, n
    return need, who


class Env:
    """What a node's numpy reference may read: bound input values and the batch size."""

    __slots__ = ("values", "batch")

    def __init__(self, values: dict, batch: int | None):
        self.values, self.batch = values, batch

    def require_batch(self) -> int:
        if self.batch is None:
            raise AdjitError("the graph uses the batch size but no batched input was given")
        return self.batch



def register(op: Op) -> Op:
    if op.name in REGISTRY:
        raise RuntimeError(f"op {op.name!r} declared twice")
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> Op:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


def make(op: str, inputs: tuple | list = (), attrs: dict | None = None, *,
         name: str | None = None, meta: dict | None = None) -> Node:
    """Make a node, checking its shape and dtype rule now (at declaration)."""
    spec = get_op(op)
    if spec.arity is not None and len(inputs) != spec.arity:
        raise TypeError(f"{op} takes {spec.arity} operand(s), got {len(inputs)}")
    frozen = freeze_attrs(attrs)
    ttype: TensorType = spec.infer(tuple(inputs), dict(frozen))
    node_meta = dict(meta or {})
    if name is not None:
        node_meta["name"] = name
    return Node(op, inputs, frozen, ttype, node_meta)


def rebuild(node: Node, inputs: tuple | list) -> Node:
    """The same op and attrs over new inputs (keeps the user-facing meta)."""
    if all(a is b for a, b in zip(inputs, node.inputs)) and len(inputs) == len(node.inputs):
        return node
    spec = get_op(node.op)
    ttype = spec.infer(tuple(inputs), dict(node.attrs))
    return Node(node.op, inputs, node.attrs, ttype, copy_meta(node.meta))


def copy_meta(meta: dict) -> dict:
    """A node's meta for a new node: its own dict and lists, so that annotating the new
    node (passes carry error-signal names) never changes an earlier stage's node."""
    return {k: list(v) if isinstance(v, list) else v for k, v in meta.items()}


def ops_where(**flags) -> frozenset[str]:
    """Names of the registered ops whose fields equal ``flags`` (e.g. ``view=True``)."""
    return frozenset(name for name, op in REGISTRY.items()
                     if all(getattr(op, k) == v for k, v in flags.items()))


__all__ = ["Env", "Op", "Shown", "ops_where", "REGISTRY", "register", "get_op", "make", "rebuild", "building"]
