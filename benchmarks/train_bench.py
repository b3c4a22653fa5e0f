"""Training throughput: the digits MLP (64-128-64-10, ReLU, batch 32, Adam), one step each.

    python benchmarks/train_bench.py [--threads 1] [--repeat 3] [--budget 2] [--json out.json]

Timed step (optimizer included in every entry), cycling through 45 pre-made batches of
the 8×8 digits (random data of the same shape when scikit-learn is missing):

* adjit: ``aj.compile([loss], updates=Adam.updates(loss))`` called with the batch, the
  parameters and the optimizer state (forward, backward and update in one native call);
* PyTorch eager: ``zero_grad(); cross_entropy(model(x), y).backward(); Adam.step()``
  (torch's default Adam, ``foreach`` implementation);
* JAX: one ``jax.jit`` function doing ``value_and_grad`` and the Adam update (optax when
  installed, else the same update written with jax.numpy), buffers donated, then
  ``block_until_ready``.

Before timing, three steps from the same initial weights on the same batches are checked
against adjit's numpy interpreter (scaled error ≤ 1e-4, float32).  Thread counts are
pinned through the environment before numpy, torch or jax is imported.  ``--breakdown``
also times the bound call alone and splits an unbound call into argument binding and the
runtime (it reaches into private attributes, for diagnosis only).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every library (default 1: a batch-32 step of this size is "
                        "latency-bound; try 2)")
    p.add_argument("--repeat", type=int, default=3, help="independent timing passes (default 3)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="timing seconds per entry, all passes together (default 2)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--breakdown", action="store_true", help="split adjit's call time")
    p.add_argument("--json", default="", help="also write the results here")
    return p.parse_args(argv)


args = parse_args()
os.environ.update({k: str(args.threads) for k in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ADJIT_NUM_THREADS")})
if args.threads == 1 and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                               "false intra_op_parallelism_threads=1").strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import timing  # noqa: E402
from peers import Impl  # noqa: E402

import adjit as aj  # noqa: E402
from adjit import nn, optim, train  # noqa: E402

SIZES, BATCH, BETAS, EPS = [64, 128, 64, 10], 32, (0.9, 0.999), 1e-8
CHECK_STEPS, RTOL = 3, 1e-4


def load_batches(seed=0):
    try:
        from adjit.train.data import load_digits
        d = load_digits(seed=seed)
        X, y, source = d.x_train, d.y_train, "8×8 digits (scikit-learn)"
    except ImportError:
        rng = np.random.default_rng(seed)
        X = rng.random((1438, 64), dtype=np.float32)
        y = rng.integers(0, 10, 1438)
        source = "random data shaped like the digits (scikit-learn not installed)"
    batches = [{k: np.ascontiguousarray(v) for k, v in b.items()}
               for b in train.minibatches({"x": X, "y": y}, BATCH, rng=seed, drop_last=True)]
    return batches, source


class Cycle:
    """Hands out the batches in turn (the same order for every entry)."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def next(self):
        b = self.batches[self.i]
        self.i = (self.i + 1) % len(self.batches)
        return b


# --- adjit ----------------------------------------------------------------------------------
def adjit_step(init, batches, backend, **options):
    x = aj.input("x", (None, 64), dtype="float32")
    y = aj.input("y", (None,), dtype="int64")
    mlp = nn.MLP(SIZES, activation="relu", dtype="float32")
    loss = aj.cross_entropy(mlp(x), y)
    opt = optim.Adam(mlp.params, lr=args.lr, betas=BETAS, eps=EPS)
    t0 = time.perf_counter()
    f = aj.compile([loss], backend=backend, updates=opt.updates(loss), **options)
    compile_s = time.perf_counter() - t0
    fixed = {**{k: v.copy() for k, v in init.items()}, **opt.state}
    cyc = Cycle(batches)
    bound = f.bind(**fixed)     # as Trainer does: params and Adam state checked once

    def step():
        return bound(**cyc.next())[0]
    return step, (lambda: {k: fixed[k] for k in init}), compile_s, f, fixed, cyc


# --- PyTorch eager ----------------------------------------------------------------------------
def torch_step(init, batches):
    import torch
    torch.set_num_threads(args.threads)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:]), start=1):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(init[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(init[f"b{i}"]))
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=BETAS, eps=EPS)
    tb = [(torch.from_numpy(b["x"]), torch.from_numpy(b["y"])) for b in batches]
    cyc = Cycle(tb)
    ce = torch.nn.functional.cross_entropy

    def step():
        xb, yb = cyc.next()
        opt.zero_grad()
        loss = ce(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    def params():
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        out = {}
        for i, lin in enumerate(lins, start=1):
            out[f"W{i}"] = lin.weight.detach().numpy().T
            out[f"b{i}"] = lin.bias.detach().numpy()
        return out
    note = f"torch {torch.__version__}, Adam foreach={opt.defaults.get('foreach')}, " \
           f"{torch.get_num_threads()} thread(s)"
    return step, params, note


# --- JAX jit ------------------------------------------------------------------------------------
def jax_step(init, batches):
    import jax
    import jax.numpy as jnp
    try:
        import optax
    except ImportError:
        optax = None
    names = [f"{w}{i}" for i in range(1, len(SIZES)) for w in ("W", "b")]

    def loss_fn(p, x, y):
        h = x
        for i in range(1, len(SIZES)):
            h = h @ p[f"W{i}"] + p[f"b{i}"]
            if i < len(SIZES) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    params = {k: jnp.asarray(init[k]) for k in names}
    if optax is not None:
        tx = optax.adam(args.lr, b1=BETAS[0], b2=BETAS[1], eps=EPS)
        state = tx.init(params)

        def update(p, g, s):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s
        note = "optax.adam"
    else:
        state = ({k: jnp.zeros_like(v) for k, v in params.items()},
                 {k: jnp.zeros_like(v) for k, v in params.items()}, jnp.zeros((), jnp.float32))

        def update(p, g, s):
            m, v, t = s
            t = t + 1
            m = {k: BETAS[0] * m[k] + (1 - BETAS[0]) * g[k] for k in p}
            v = {k: BETAS[1] * v[k] + (1 - BETAS[1]) * g[k] ** 2 for k in p}
            c1, c2 = 1 - BETAS[0] ** t, 1 - BETAS[1] ** t
            p = {k: p[k] - args.lr * (m[k] / c1) / (jnp.sqrt(v[k] / c2) + EPS) for k in p}
            return p, (m, v, t)
        note = "hand-written Adam (optax not installed)"

    @jax.jit
    def jstep(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        p, s = update(p, g, s)
        return loss, p, s
    jstep = jax.jit(jstep.__wrapped__, donate_argnums=(0, 1))
    jb = [(jax.device_put(b["x"]), jax.device_put(b["y"].astype(np.int32))) for b in batches]
    cyc = Cycle(jb)
    box = {"p": params, "s": state}

    def step():
        xb, yb = cyc.next()
        loss, box["p"], box["s"] = jstep(box["p"], box["s"], xb, yb)
        return jax.block_until_ready(loss)
    return step, (lambda: {k: np.asarray(v) for k, v in box["p"].items()}), \
        f"jax {jax.__version__}, {note}, jit with donated buffers"


# --- driver --------------------------------------------------------------------------------------
def scaled_error(got: dict, ref: dict) -> float:
    return max(float(np.max(np.abs(got[k] - ref[k]))) / max(float(np.max(np.abs(ref[k]))), 1e-30)
               for k in ref)


def breakdown(f, fixed, cyc, n=3000):
    """Seconds per call: the bound call the step makes (native from the second call of a
    batch size, see adjit's fastcall), and the unbound call split into argument binding
    and the runtime (Python) call."""
    kw = {**cyc.batches[0], **fixed}
    values, batch = f._binder.bind(kw)
    bound = f.bind(**{k: v.copy() for k, v in fixed.items()})

    def per(fn):
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n
    return {"bound call": per(lambda: bound(**cyc.batches[0])),
            "call": per(lambda: f(**kw)), "bind": per(lambda: f._binder.bind(kw)),
            "runtime (after binding)": per(lambda: f._impl(values, batch))}


def main():
    batches, source = load_batches()
    init = nn.MLP(SIZES, activation="relu", dtype="float32").init(seed=0)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, numpy {np.__version__}; "
          f"threads pinned to {args.threads}; load average "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"data: {source}, {len(batches)} batches of {BATCH}; model {SIZES} ReLU, "
          f"softmax cross-entropy, Adam(lr={args.lr})")
    entries = []
    ref_step, ref_params, _, _, _, _ = adjit_step(init, batches, "interp")
    for _ in range(CHECK_STEPS):
        ref_step()
    reference = ref_params()
    a_step, a_params, a_compile, f, fixed, cyc = adjit_step(init, batches, "llvm")
    entries.append(("adjit", a_step, a_params, f"llvm, compiled in {a_compile:.2f} s "
                                                  f"({f.cache_info})"))
    for name, make in (("torch eager", torch_step), ("jax jit", jax_step)):
        try:
            entries.append((name,) + make(init, batches))
        except ImportError as e:
            print(f"skip {name}: {e}")
    impls = []
    for name, step, params, note in entries:
        for _ in range(CHECK_STEPS):
            step()
        err = scaled_error(params(), reference)
        ok = err <= RTOL
        print(f"  {name:<12} {'ok' if ok else 'FAILED'}: params after {CHECK_STEPS} steps vs "
              f"the interpreter, scaled error {err:.1e}; {note}")
        if ok:
            impls.append(Impl(name, step, None, note=note))
    passes = [timing.measure(impls, args.budget / args.repeat) for _ in range(args.repeat)]
    stats = timing.summarize(passes, "adjit")
    print(f"\n{'entry':<12} {'median µs':>10} {'min µs':>9}   adjit speedup")
    for impl in impls:
        s = stats[impl.name]
        speed = "" if impl.name == "adjit" else f"{1 / s['ratio']:.2f}x"
        print(f"{impl.name:<12} {1e6 * s['median_s']:>10.1f} {1e6 * s['min_s']:>9.1f}   {speed}")
    for name, target in (("torch eager", 3.0), ("jax jit", 1.5)):
        if name in stats:
            got = 1 / stats[name]["ratio"]
            print(f"target adjit >= {target}x {name}: {got:.2f}x "
                  f"{'met' if got >= target else 'NOT met'}")
    result = {"threads": args.threads, "stats": stats, "load_end": os.getloadavg()}
    if args.breakdown:
        parts = breakdown(f, fixed, cyc)
        print("\nadjit call breakdown (µs): " + ", ".join(f"{k} {1e6 * v:.1f}"
                                                         for k, v in parts.items()))
        result["breakdown"] = parts
    print("load average at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
