"""``adjit demo``: the whole product in one command.

Compiles the lecture's two-layer MLP (h = σ(x W1 + b1), y = h W2 + b2,
L = ½ Σ (y − t)² / B), prints its backward equations, trains it on the 8×8 digits that
scikit-learn ships (one native call per mini-batch: forward, backward and the Adam
update), and times the compiled training step against adjit's numpy interpreter.

``adjit demo --model lenet`` does the same for the lecture's LeNet (two convolutions,
two max-pools, three linear layers; see adjit.train.demo_lenet).

Run:  adjit demo [--model lenet] [--epochs 30]   or   python -m adjit.train.demo
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def build(hidden: int):
    """The lecture's two-layer MLP in float32: ``(loss, outputs, params)``."""
    import adjit as aj
    x = aj.input("x", (None, 64), dtype="float32")
    t = aj.input("t", (None, 10), dtype="float32")
    W1 = aj.param("W1", (64, hidden), dtype="float32")
    b1 = aj.param("b1", (hidden,), dtype="float32")
    W2 = aj.param("W2", (hidden, 10), dtype="float32")
    b2 = aj.param("b2", (10,), dtype="float32")
    z = x @ W1 + b1
    h = aj.sigmoid(z)
    y = h @ W2 + b2
    L = 0.5 * aj.mean(aj.sum((y - t) ** 2, axis=1))
    names = {"z": z, "h": h, "y": y, "L": L}
    return L, y, [W1, b1, W2, b2], names


def equations_text(outputs, names: dict) -> str:
    """The backward equations (adjit.show), or the graph listing when show is unavailable."""
    try:
        from ..show import equations, name_nodes
    except ImportError:
        from ..ir import Graph
        return "(adjit.show.equations is not available; the traced graph instead)\n" + \
            str(Graph(outputs, "traced"))
    name_nodes(names)
    return str(equations(outputs))


def per_step(step, batch: dict, seconds: float = 0.3, repeats: int = 5) -> float:
    """Median seconds per call of ``step(**batch)`` over ``repeats`` timed blocks."""
    step(**batch)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds / repeats / 2 or n < 2:
        step(**batch)
        n += 1
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            step(**batch)
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:8.0f} µs" if seconds < 1e-2 else f"{seconds * 1e3:8.1f} ms"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit status (0 on success)."""
    p = argparse.ArgumentParser(prog="adjit demo", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("mlp", "lenet"), default="mlp",
                   help="mlp (default): the lecture's two-layer MLP; lenet: its LeNet "
                        "(convolutions and max-pooling)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default 30 for mlp, 40 for lenet)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default 0.02 for mlp, 0.003 for lenet)")
    p.add_argument("--seed", type=int, default=1, help="data split, weights, batches (default 1)")
    p.add_argument("--no-progress", action="store_true", help="plain lines, no progress bar")
    p.add_argument("--timing-seconds", type=float, default=1.0,
                   help="time spent timing each backend (default 1.0; 0 skips the timing)")
    args = p.parse_args(argv)
    if args.model == "lenet":
        from .demo_lenet import run
        try:
            return run(args)
        except ImportError as e:              # scikit-learn missing: no digits
            print(f"adjit demo: {e}", file=sys.stderr)
            return 1
    args.epochs = 30 if args.epochs is None else args.epochs
    args.lr = 0.02 if args.lr is None else args.lr

    import adjit as aj
    from .. import nn, optim
    from .data import load_digits, one_hot
    from .loop import Trainer

    print("adjit demo: the lecture's two-layer MLP, differentiated, compiled and trained on the "
          "8×8 digits\n")
    try:
        data = load_digits(seed=args.seed)
    except ImportError as e:
        print(f"adjit demo: {e}", file=sys.stderr)
        return 1
    L, y, params, names = build(args.hidden)
    grads = aj.grad(L, params)
    print("1. The model and its backward pass, as aj.grad built it (graph nodes, not numbers)\n")
    print(equations_text([L] + grads, names))

    print("\n2. Compiling the training step: forward + backward + Adam update, one native call")
    init = nn.MLP([64, args.hidden, 10], "sigmoid", dtype="float32").init(args.seed)
    schedule = optim.ExponentialDecay(args.lr, gamma=0.95)
    t0 = time.perf_counter()
    trainer = Trainer(L, init, optim.Adam(params, lr=schedule), predictions=y)
    step = trainer.step_function
    cache = str(getattr(step, "cache_info", "")).split(" ", 1)[0].rstrip(":") or "off"
    print(f"   compiled in {time.perf_counter() - t0:.2f} s (disk cache: {cache}); nodes per "
          "stage: " + " -> ".join(f"{k} {v}" for k, v in step.node_counts().items()))

    train_set = {"x": data.x_train, "t": one_hot(data.y_train)}
    test_set = {"x": data.x_test, "t": one_hot(data.y_test)}
    print(f"\n3. Training on {len(data.y_train)} images, batch 32, Adam (lr {args.lr} × 0.95 per "
          f"epoch); {len(data.y_test)} held-out test images")
    hist = trainer.fit(train_set, epochs=args.epochs, batch_size=32, val=test_set, seed=args.seed,
                       progress="lines" if args.no_progress else None)
    acc = trainer.evaluate(test_set)["accuracy"]
    print(f"   training loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}; test accuracy "
          f"{100 * acc:.1f}%; {1e3 * statistics.median(hist.seconds):.1f} ms per epoch")

    if args.timing_seconds > 0:
        time_against_interp(trainer, Trainer(L, trainer.params, optim.Adam(params, lr=args.lr),
                                             backend="interp"), train_set, 32, args.timing_seconds)
    return 0


def time_against_interp(trainer, interp, train_set: dict, batch_size: int, seconds: float):
    """The demo's last step: one training step compiled against the interpreter's."""
    print(f"\n4. One training step (batch {batch_size}), compiled against adjit's numpy "
          "interpreter")
    batch = {k: np.ascontiguousarray(v[:batch_size]) for k, v in train_set.items()}
    t_native = per_step(trainer.step, batch, seconds)
    t_interp = per_step(interp.step, batch, seconds)
    print(f"   compiled (llvm)      {_fmt(t_native)}")
    print(f"   interpreted (numpy)  {_fmt(t_interp)}   "
          f"compiled is {t_interp / t_native:.1f}× faster")


if __name__ == "__main__":
    sys.exit(main())
