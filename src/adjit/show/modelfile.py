"""Model files: a Python file that builds an adjit graph at import time.

The convention (see docs/model-files.md):

* ``loss`` -- a scalar node; with ``wrt`` (a list of float leaves, by default every
  parameter the loss depends on) the model's outputs are ``[loss] + aj.grad(loss, wrt)``;
* or ``outputs`` -- a node or a list of nodes, compiled as they are;
* ``example`` (optional) -- a dict of input values by name, for worked examples and
  ``adjit bench``;
* ``peers`` (optional) -- a dict ``{name: factory}``; ``factory(values)`` returns a
  zero-argument callable computing the same loss and gradients with another library
  (it may raise ImportError when that library is not installed).

Every module-level variable bound to an unnamed node gives that node its display name
(``h = aj.sigmoid(z)`` shows as ``h`` in equations and pictures); see :func:`name_nodes`.
"""
from __future__ import annotations

import os
import runpy
from dataclasses import dataclass, field

from ..autodiff import grad
from ..ir import FLOAT_DTYPES, AdjitError, Node, ancestors


class ModelFileError(AdjitError):
    """A model file is missing, fails to run, or does not follow the convention."""


def name_nodes(namespace: dict) -> int:
    """Give each unnamed node bound in ``namespace`` the variable's name; returns how many.

    Names are display annotations only (they never change what a node computes).  A
    node bound to several variables keeps the first; names starting with ``_`` are
    skipped.  In a notebook: ``aj.show.name_nodes(globals())``.

    >>> import adjit as aj
    >>> x = aj.input("x", ())
    >>> h = aj.sin(x)
    >>> aj.show.name_nodes({"h": h}), h.name
    (1, 'h')
    """
    count = 0
    for var, value in list(namespace.items()):
        if (isinstance(value, Node) and not var.startswith("_") and var.isidentifier()
                and value.op not in ("input", "param", "const") and not value.name):
            value.meta["name"] = var
            count += 1
    return count


@dataclass
class Model:
    """What a model file defines (see the module docstring)."""

    path: str
    outputs: list
    loss: Node | None = None
    wrt: list = field(default_factory=list)
    example: dict | None = None
    peers: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def load_model(path: str) -> Model:
    """Run a model file and collect its outputs; raises :class:`ModelFileError` on any problem."""
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    try:
        ns = runpy.run_path(path, run_name="__adjit_model__")
    except SyntaxError as e:
        raise ModelFileError(f"model file {path!r} has a syntax error at line {e.lineno}: "
                             f"{e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported, not raised raw
        raise ModelFileError(f"model file {path!r} failed: {type(e).__name__}: {e}") from None
    name_nodes(ns)
    model = Model(path=path, outputs=[])
    if ns.get("outputs") is not None:
        outs = ns["outputs"]
        outs = [outs] if isinstance(outs, Node) else list(outs) if isinstance(outs, (list, tuple)) else outs
        if not isinstance(outs, list) or not outs or not all(isinstance(o, Node) for o in outs):
            raise ModelFileError(f"model file {path!r}: `outputs` must be a node or a non-empty "
                                 f"list of nodes")
        model.outputs = outs
    elif ns.get("loss") is not None:
        model.loss, model.wrt = _loss_and_wrt(path, ns)
        model.outputs = [model.loss] + list(grad(model.loss, model.wrt))
    else:
        raise ModelFileError(f"model file {path!r} defines neither `loss` nor `outputs`")
    model.example = _example(path, ns.get("example"))
    peers = ns.get("peers") or {}
    if not isinstance(peers, dict) or not all(callable(p) for p in peers.values()):
        raise ModelFileError(f"model file {path!r}: `peers` must be a dict of callables")
    model.peers = dict(peers)
    return model


def _loss_and_wrt(path: str, ns: dict):
    loss = ns["loss"]
    if not isinstance(loss, Node) or loss.shape != () or loss.dtype not in FLOAT_DTYPES:
        raise ModelFileError(f"model file {path!r}: `loss` must be a scalar float node, got "
                             f"{loss!r}")
    wrt = ns.get("wrt")
    if wrt is None:
        wrt = [n for n in ancestors([loss]) if n.op == "param"]
    elif isinstance(wrt, Node):
        wrt = [wrt]
    if not isinstance(wrt, (list, tuple)) or not wrt:
        raise ModelFileError(f"model file {path!r}: `wrt` must be a non-empty list of nodes "
                             f"(and `loss` must depend on a param when `wrt` is left out)")
    for v in wrt:
        if not isinstance(v, Node) or v.dtype not in FLOAT_DTYPES:
            raise ModelFileError(f"model file {path!r}: `wrt` holds {v!r}, not a float node")
    return loss, list(wrt)


def _example(path: str, example):
    if example is None:
        return None
    if not isinstance(example, dict) or not all(isinstance(k, str) for k in example):
        raise ModelFileError(f"model file {path!r}: `example` must be a dict of values by "
                             f"input name")
    return dict(example)
