"""``aj.compile``: the callable users get, and every stage it was built from."""
from __future__ import annotations

import types
from typing import Sequence

import numpy as np

from .backends import get_backend
from .backends.protocol import check_precision
from .binding import Binder, Pinned, label_limits, too_small
from .updates import check_update_buffers, check_update_sources, check_updates
from .autodiff import recorded_rewrites
from .ir import VIEWS, Graph, Node, ShapeError, check_batch_bound
from .gcpause import pausing
from .nancheck import NanCheck
from .ops.registry import min_batch
from .passes import PIPELINE, expand, needs_expand, run_pipeline

DEFAULT_BACKEND = "llvm"


def _view(name: str):
    """A view of :mod:`adjit.show`, registered in ``ir.VIEWS`` when ``import adjit`` imports
    it (the views sit above this module and accept anything :class:`~adjit.ir.Staged`)."""
    return VIEWS[name]


class Compiled:
    """A compiled function of the graph's inputs and parameters, called by keyword.

    Attributes
    ----------
    stages : list[Graph]
        The traced graph (forward and adjoint nodes as built), then one graph per pass.
    graph : Graph
        The last stage: what the backend lowered.
    input_names : list[str]
        The keyword arguments the call takes (inputs and parameters), sorted.
    """

    @pausing    # (the garbage collector: see adjit.gcpause)
    def __init__(self, outputs, backend: str = DEFAULT_BACKEND,
                 passes: Sequence | None = None, updates=None, check_nans: bool = False,
                 **options):
        self._single = isinstance(outputs, Node)
        outs = [outputs] if self._single else list(outputs)
        if not outs or not all(isinstance(o, Node) for o in outs):
            raise TypeError("compile: outputs must be a node or a non-empty list/tuple of nodes")
        self.backend = backend
        self.updates = check_updates(updates)
        self._n_returned = len(outs)
        traced = Graph(outs + [v for _, v in self.updates], "traced")
        traced.rewrites = recorded_rewrites(traced.order())  # double_where, ...
        self._traced, self._passes, self._stages = traced, passes, None
        # integer inputs read as indices (one_hot, take, ...), with their ranges (checked
        # every call)
        self._limits = label_limits(traced)
        self._binder = Binder(_arguments(traced) + [k for k, _ in self.updates], self._limits)
        check_batch_bound(traced.order(), self._binder.inputs)
        self._min_batch = min_batch(traced.order())   # (B, node): x[3] on the batch needs B > 3
        self.input_names = sorted(self._binder.names)
        self._update_names = [k.name for k, _ in self.updates]
        module = get_backend(backend)
        # precision= (float32 products): the backends without it compute exact FP32
        self.precision = check_precision(options.pop("precision", None))
        if self.precision not in module.precisions:
            self.precision = "fp32"
        elif self.precision != "fp32":
            options["precision"] = self.precision
        self._in_place = bool(self.updates) and module.in_place_updates
        if self._in_place:
            options["updates"] = {self._n_returned + k: name
                                  for k, name in enumerate(self._update_names)}
        # the compiled-function cache (default pipeline only): traced graph -> native code
        cached = module.load_compiled if passes is None else None
        hit = cached(traced, **options) if cached is not None else None
        if hit is not None:
            self._lowered, self._impl = hit
        else:
            self._lowered = self.stages[-1]
            if needs_expand(self._lowered):   # passes= without "expand": backends need it
                self._lowered = expand(self._lowered)
        check_update_sources(self._lowered, self._n_returned, self._update_names)
        if hit is None:
            self._impl = module.build(self._lowered, **options)
            if cached is not None:
                module.store_compiled(traced, self._lowered, self._impl, **options)
        if check_nans:   # name the first node producing NaN/inf (see nancheck.py)
            self._impl = NanCheck(self._impl, self.stages,
                                  self._update_names if self._in_place else ())
        _install_native(self, self._impl, Compiled.__call__, self._binder)

    def __call__(self, **kwargs):
        values, batch = self._binder.bind(kwargs)
        if self._update_names:
            check_update_buffers(self._update_names, values, kwargs)
        return self._run(self._impl, values, batch)

    def _run(self, run, values: dict, batch, *extra):
        """Call the backend (``run(values, batch, *extra)``) and shape the results: the
        one place that adds the batch size to a MemoryError and writes ``updates`` for
        backends that do not write them in place."""
        if batch is not None and batch < self._min_batch[0]:
            raise ShapeError(too_small(batch, *self._min_batch))
        try:
            results = run(values, batch, *extra)
        except MemoryError as e:   # numpy's own message, plus the batch size
            if "batch size" in str(e):
                raise
            raise MemoryError(f"{e} (batch size {batch})") from None
        if self.updates and not self._in_place:
            new, results = results[self._n_returned:], results[:self._n_returned]
            for name, arr in zip(self._update_names, new):
                np.copyto(values[name], arr)
        return results[0] if self._single else tuple(results)

    def bind(self, **arrays) -> "Bound":
        """This function with some arguments fixed: ``g = f.bind(W=W, b=b); g(x=X)``.

        The bound arrays are checked here and passed to every call without copying (a
        training step binds its parameters and optimizer state and passes only the
        batch).  The function keeps a reference to each bound array, so it stays alive;
        writing new values into a bound array between calls is how a caller changes it
        (``W[...] = W0``).  Arrays updated in place (``updates=``) must be the caller's
        own writeable arrays.  Every call re-checks, cheaply, what the caller could have
        changed since: dtype, shape, C-contiguity and alignment, the writeable flag of an
        updated array, labels in range; a change raises naming the input (see
        :class:`~adjit.binding.Pinned`).  A new data pointer (``resize`` and back to the
        bound shape) is fine: the call reads the array's current one.
        """
        return Bound(self, arrays)

    # -- inspection ----------------------------------------------------------------------
    @property
    def stages(self) -> list[Graph]:
        """The traced graph, then one graph per pass (run on first access when the native
        code came from the compiled-function cache)."""
        if self._stages is None:
            self._stages = run_pipeline(self._traced,
                                        PIPELINE if self._passes is None else self._passes)
        return self._stages

    @property
    def graph(self) -> Graph:
        """The last stage: what the backend lowered."""
        return self.stages[-1]

    @property
    def traced(self) -> Graph:
        return self._traced

    @property
    def forward(self) -> Graph:
        """The forward part of the traced graph: outputs that are not adjoint nodes."""
        fwd = [o for o in self.traced.outputs if o.meta.get("role") != "adjoint"]
        return Graph(fwd, "forward")

    def node_counts(self) -> dict[str, int]:
        """Nodes in each stage, in pipeline order."""
        return {g.stage: len(g) for g in self.stages}

    def report(self) -> str:
        """Each pass with the rewrites it applied (by rule name), node counts before and
        after, and each output's size as an expanded expression tree."""
        return _view("report")(self)

    def equations(self, stage: str = "traced"):
        """Forward and backward equations in backprop notation (``stage``: 'traced',
        'simplified', 'both' or a pass name).  ``str()`` gives Unicode; ``.latex`` and
        ``.markdown`` the other forms; Jupyter shows LaTeX."""
        return _view("equations")(self, stage)

    def trace(self, **values):
        """A worked example at ``values`` (keyword arrays, like a call): the primal then
        the adjoint trace with the number at every step."""
        return _view("trace")(self, values)

    def dot(self, stage: str = "simplified") -> str:
        """Graphviz DOT text of a stage (adjoint nodes tinted, fused regions grouped);
        write it with ``adjit.show.render(f.dot(), "out.svg")``."""
        return _view("dot")(self, stage)

    def _repr_markdown_(self) -> str:
        return f"`{self!r}`\n\n" + _view("equations")(self).markdown

    def __getattr__(self, name):
        # backend-specific views (llvm_ir, asm, ...): those the runner declares
        impl = self.__dict__.get("_impl")
        if impl is not None and name in impl.views:
            return getattr(impl, name)
        raise AttributeError(f"{type(self).__name__} (backend {self.__dict__.get('backend')!r}) "
                             f"has no attribute {name!r}")

    def __repr__(self):
        return (f"<adjit.Compiled backend={self.backend!r} inputs={self.input_names} "
                f"outputs={len(self._lowered.outputs)}>")


class Bound:
    """A compiled function with some arguments bound (see :meth:`Compiled.bind`)."""

    def __init__(self, fn: Compiled, arrays: dict):
        unknown = sorted(arrays.keys() - fn._binder.names)
        if unknown:
            raise TypeError(f"bind: unknown {', '.join(map(repr, unknown))} "
                            f"(the function takes {', '.join(fn.input_names)})")
        self.fn = fn
        bound = [n for n in fn._binder.inputs if n.name in arrays]
        free = [n for n in fn._binder.inputs if n.name not in arrays]
        self.values, self.batch = Binder(bound, fn._limits).bind(arrays)
        updated = [n for n in fn._update_names if n in arrays]
        if updated:
            check_update_buffers(updated, self.values, arrays)
        # re-checked every call (a backend keeping the state on its device makes the host
        # arrays read-only while it holds it, and checks that itself)
        self.pinned = Pinned(self.values, fn._limits,
                             [] if fn._impl.resident_state else updated)
        self._free = Binder(free, fn._limits)
        self._free_updates = [n for n in fn._update_names if n not in arrays]
        self.input_names = sorted(self._free.names)
        # llvm writes bound slots once per thread; other backends get the merged arguments
        self._fast = fn._impl.call_bound
        _install_native(self, fn._impl, Bound.__call__, self._free, bound=self)

    def __call__(self, **kwargs):
        fn = self.fn
        values, batch = self._free.bind(kwargs)
        self.pinned.check()        # the bound arrays: unchanged where native code relies
        if self.batch is not None:
            if batch is None:
                batch = self.batch
            elif batch != self.batch:
                raise ShapeError(f"batch size {batch} given, but the bound arrays have "
                                 f"batch size {self.batch}")
        if self._free_updates:
            check_update_buffers(self._free_updates, values, kwargs)
        if self._fast is not None:
            return fn._run(self._fast, values, batch, self)
        return fn._run(fn._impl, {**self.values, **values}, batch)

    # -- where the bound state lives (the ptx backend keeps it on the device) ---------------
    def state_to_host(self) -> dict:
        """The bound arrays, current: ``{name: array}`` (the arrays given to ``bind``).

        Where the backend keeps the bound state on its device (ptx), this downloads the
        arrays ``updates=`` changes into the host arrays and hands the state back to the
        host: the arrays are writeable again, and the next call uploads them (so a
        change made to them now is used).  Elsewhere the host arrays are always the state.
        """
        return self.fn._impl.state_to_host(self)

    def state_to_device(self) -> None:
        """Upload the bound arrays now (the next call would); a no-op where the host
        arrays are the state.  While the device holds the state (ptx), the host arrays
        are read-only: call :meth:`state_to_host` before changing them."""
        self.fn._impl.state_to_device(self)

    @property
    def on_device(self) -> bool:
        """Whether the device holds the bound state now (the host arrays are stale and
        read-only until :meth:`state_to_host`)."""
        return self.fn._impl.on_device(self)

    def __repr__(self):
        return f"<adjit.Bound of {self.fn!r}: takes {self.input_names}>"


def _install_native(obj, impl, method, binder: Binder, bound: "Bound | None" = None) -> None:
    """Give ``obj`` (a Compiled, or a Bound) its backend's native call, if ``impl`` offers
    one for it.

    ``impl.fastcall(fallback, binder, single, bound)`` may answer a builtin callable that
    handles the calls it can check itself -- the keywords ``binder`` takes, the bound
    arrays of ``bound`` fixed -- and hands every other call, unchanged, to ``fallback``
    (``method`` bound to ``obj``: the checked Python path).  Special methods are looked up
    on the type, so the builtin becomes ``__call__`` of a subclass made for this instance.
    """
    single = (bound.fn if bound is not None else obj)._single
    native = impl.fastcall(types.MethodType(method, obj), binder, single, bound)
    # why the checked Python path serves every call (None: the native entry is installed)
    obj.native_call_reason = None if native is not None else impl.fastcall_reason()
    if native is not None:
        cls = type(type(obj).__name__, (type(obj),),
                   {"__call__": native, "__module__": __name__,
                    "__qualname__": type(obj).__qualname__})
        impl.install_call(cls, native)      # its native tp_call, where it can
        obj.__class__ = cls


def _arguments(graph: Graph) -> list[Node]:
    """The graph's inputs, plus those of the models its gradients came from (see grad)."""
    args = list(graph.inputs)
    names = {n.name for n in args}
    for n in graph.order():
        for leaf in n.meta.get("model_inputs", ()):
            if leaf.name not in names:
                names.add(leaf.name)
                args.append(leaf)
    return args


def compile(outputs, backend: str = DEFAULT_BACKEND, **options) -> Compiled:  # noqa: A001
    """Compile ``outputs`` (a node, or a list/tuple of nodes) into a callable.

    The callable takes every input and parameter by name and returns numpy arrays: one
    array for a single node, a tuple for a list/tuple.  ``check_nans=True`` makes every
    call check its float outputs and raise :class:`adjit.NonFiniteError` naming the first
    node that produced a NaN or inf (a debugging aid: the check replays the call in the
    interpreter only when it fires).

    >>> import adjit as aj, numpy as np
    >>> x = aj.input("x", (None,))
    >>> f = aj.compile(aj.sum(x * x), backend="interp")
    >>> float(f(x=np.array([1.0, 2.0])))
    5.0
    """
    return Compiled(outputs, backend, **options)
