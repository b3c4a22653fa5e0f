"""adjit's entries: each workload's graph built with the public adjit API.

``make_adjit(wl, data, backend)`` builds the graph, differentiates it, compiles
it and returns an ``Impl``.  Compile time is measured twice (after the GEMM library,
built once per machine, is loaded: see ``_load_gemm_library``): cold (caching off:
``cache=False`` when ``aj.compile`` accepts it, and ADJIT_CACHE=0 in the
environment for the duration) and warm (the cache populated by a previous
compile, then a fresh build + compile served from it; reported only when the
backend says it was a disk-cache hit).  Both figures include
graph construction and ``aj.grad``; they are small next to code generation.
"""

from __future__ import annotations

import inspect
import os
import time
from contextlib import contextmanager

import numpy as np

from peers import Impl, Skip

try:
    import adjit as aj
    _missing = [n for n in ("input", "param", "grad", "compile") if not hasattr(aj, n)]
    _IMPORT_ERROR = f"adjit lacks {', '.join(_missing)}" if _missing else ""
except Exception as exc:  # pragma: no cover - depends on the tree's state
    aj = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def available() -> str:
    return _IMPORT_ERROR


def _act(name, z):
    if name == "sigmoid":
        return aj.sigmoid(z)
    if name == "relu":
        return aj.relu(z)
    if name == "tanh":
        return aj.tanh(z)
    return z


def mlp(wl):
    """(x, t, params, logits) of the workload's MLP: inputs ``x``, ``t``, parameters
    ``W1, b1, ...`` with the workload's activations after each layer."""
    dt = wl.dtype
    x = aj.input("x", (None, wl.sizes[0]), dtype=dt)
    t = aj.input("t", (None, wl.sizes[-1]), dtype=dt)
    params, h = [], x
    for i, (k, n, act) in enumerate(wl.layers(), start=1):
        W, b = aj.param(f"W{i}", (k, n), dtype=dt), aj.param(f"b{i}", (n,), dtype=dt)
        params += [W, b]
        h = _act(act, h @ W + b)
    return x, t, params, h


def build(wl, lam: float | None = None, fwd_only: bool = False):
    """(outputs, param_names) of the workload's adjit graph.

    Outputs are [loss, d loss / d p ...] (or [loss] when fwd_only), and for W6
    [loss, H v for each parameter]; inputs are named like the data dict keys
    (x, t, the parameter names and, for W6, ``v_<param>``).
    """
    dt = wl.dtype
    if wl.kind == "w11":                  # [the per-example Jacobian] (jac_workloads.py)
        import jac_workloads
        return [jac_workloads.adjit_jacobian(aj, dt)]
    if wl.seq:
        loss, params = build_seq(wl)
        return [loss] if fwd_only else [loss] + list(aj.grad(loss, params))
    if wl.scalar:
        x, t = aj.input("x", (), dtype=dt), aj.input("t", (), dtype=dt)
        w, b = aj.param("w", (), dtype=dt), aj.param("b", (), dtype=dt)
        y = aj.sigmoid(w * x + b)
        loss = 0.5 * (y - t) ** 2 + (lam / 2) * w ** 2
        params = [w, b]
    else:
        x, t, params, h = mlp(wl)
        if wl.loss == "mse":
            loss = 0.5 * aj.mean(aj.sum((h - t) ** 2, axis=1))
        else:
            loss = aj.cross_entropy(h, t)
    if fwd_only:
        return [loss]
    if not wl.hvp:
        return [loss] + list(aj.grad(loss, params))
    # W6: the HVP by forward-over-reverse (aj.hvp: one forward sweep over the gradient
    # graph); benchmarks/hvp_compare.py times it against reverse-over-reverse
    names = wl.param_names()
    dirs = [aj.input(f"v_{n}", p_shape, dtype=dt)
            for n, p_shape in zip(names, _shapes(wl))]
    return [loss] + list(aj.hvp(loss, params, dirs))


def build_seq(wl):
    """(loss, params) of W7 / W8 written with adjit's layers (seq_workloads.py: sizes, and
    parameter names that are the layers' own); W9 / W10: conv_workloads.adjit_loss."""
    if wl.kind in ("w9", "w10"):
        import conv_workloads
        return conv_workloads.adjit_loss(aj, wl.kind, wl.dtype)
    from adjit import nn
    import seq_workloads as S
    dt = wl.dtype
    if wl.kind == "w7":
        c = S.W7
        x = aj.input("x", (None, c["T"]), dtype="int64")
        t = aj.input("t", (None, c["classes"]), dtype=dt)
        emb = nn.Embedding(c["vocab"], c["dim"], dtype=dt)
        attn = nn.Attention(c["dim"], heads=c["heads"], bias=False, dtype=dt)
        head = nn.Dense(c["dim"], c["classes"], name="out", dtype=dt)
        e = emb(x)
        h = e + attn(e)                                  # residual
        logits = head(aj.mean(h, axis=1))                # mean over T
        params = emb.params + attn.params + head.params
    else:
        c = S.W8
        x = aj.input("x", (None, c["T"], c["input"]), dtype=dt)
        t = aj.input("t", (None, c["classes"]), dtype=dt)
        rnn = nn.RNN(c["input"], c["hidden"], "tanh", dtype=dt)
        head = nn.Dense(c["hidden"], c["classes"], name="out", dtype=dt)
        _, h_last = rnn(x)
        logits = head(h_last)
        params = rnn.params + head.params
    assert [p.name for p in params] == list(S.param_shapes(wl.kind))
    return aj.cross_entropy(logits, t), params


def _shapes(wl):
    out = []
    for k, n, _ in wl.layers():
        out += [(k, n), (n,)]
    return out


def feeds(data) -> dict:
    f = {}
    f.update(data["inputs"])
    f.update(data["params"])
    f.update({f"v_{k}": v for k, v in data["dirs"].items()})
    return f


@contextmanager
def _env(name, value):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _accepts_cache(backend: str) -> bool:
    """Whether aj.compile (or, through its **options, the backend's build) takes ``cache``."""
    fns = [aj.compile]
    try:
        from adjit.backends import get_backend
        fns.append(get_backend(backend).build)
    except Exception:  # noqa: BLE001 - older layouts: only look at aj.compile
        pass
    for fn in fns:
        try:
            if "cache" in inspect.signature(fn).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _compile(wl, lam, backend, fwd_only, cache):
    outs = build(wl, lam, fwd_only)
    kw = {"backend": backend}
    if _accepts_cache(backend):
        kw["cache"] = cache
    return aj.compile(outs, **kw)


def _load_gemm_library(dtype) -> None:
    """adjit's GEMM library is built once per machine (about 1.1 s at O3 for float32, 1.0 s
    for float64) and then loaded from the disk cache by every process, like a shipped
    binary; a tiny product brings it into this process so that the cold column times
    the model's own compile.  (First-ever build: ``benchmarks/compile_bench.py``.)"""
    x = aj.input("x", (None, 2), dtype=dtype)
    W = aj.param("W", (2, 2), dtype=dtype)
    aj.compile(aj.sum(x @ W))


def _to_numpy(out):
    if not isinstance(out, (tuple, list)):
        out = (out,)
    return [np.asarray(o, dtype=np.float64) if np.ndim(o) == 0 else np.asarray(o) for o in out]


def make_adjit(wl, data, backend: str, fwd_only: bool = False) -> Impl:
    if _IMPORT_ERROR:
        raise Skip(f"adjit not usable yet ({_IMPORT_ERROR})")
    if fwd_only and (wl.scalar or wl.hvp):
        raise Skip("loss-only timing only for W2-W5")
    lam = data["consts"].get("lam")
    if backend == "llvm" and not wl.scalar:
        _load_gemm_library(wl.dtype)
    try:
        t0 = time.perf_counter()
        with _env("ADJIT_CACHE", "0"):
            f = _compile(wl, lam, backend, fwd_only, cache=False)
        cold = time.perf_counter() - t0
    except (NotImplementedError, ValueError) as exc:
        raise Skip(f"{backend} backend not available ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
    except Exception as exc:  # noqa: BLE001 - a backend under construction must not stop the run
        raise Skip(f"{backend} backend not available (compile raised {type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
    warm = None
    try:   # populate the cache, then time a compile served from it
        _compile(wl, lam, backend, fwd_only, cache=True)
        t0 = time.perf_counter()
        f = _compile(wl, lam, backend, fwd_only, cache=True)
        warm = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a cache problem must not hide the timing
        pass
    info = getattr(f, "cache_info", None) if backend == "llvm" else None
    if not (isinstance(info, str) and info.startswith("hit")):
        warm = None   # no disk cache (interp) or a miss: do not claim a cached compile
    kw = feeds(data)
    label = "adjit" if backend == "llvm" else f"adjit {backend}"
    if fwd_only:
        label += " (loss only)"
    return Impl(label, lambda: f(**kw), _to_numpy, compile_s=cold, compile_warm_s=warm,
                fwd_only=fwd_only, is_adjit=True, extra={"backend": backend})
