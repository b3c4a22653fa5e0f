"""Univariate logistic least squares with L2, the lecture's scalar model, trained with SGD.

    z = w·x + b,   y = σ(z),   L = ½·mean((y − t)²) + λ/2·w²

The backward pass the lecture derives by hand (ȳ = y − t, z̄ = ȳ·σ'(z) = ȳ·y(1 − y),
w̄ = z̄·x + λw, b̄ = z̄) is what ``aj.grad`` builds; ``aj.check_grads`` confirms it
against finite differences before training.

Run:  python examples/logistic_l2.py [--epochs 60] [--lam 0.01]
"""
from __future__ import annotations

import argparse

import numpy as np

import adjit as aj
from adjit import optim, train


def make_data(n: int, seed: int):
    """Points on a line; the label is 1 right of x = 0.5, with 10% of labels flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, size=n)
    t = (x > 0.5).astype(np.float64)
    flip = rng.random(n) < 0.1
    t[flip] = 1.0 - t[flip]
    return x, t


def build(lam: float):
    x, t = aj.input("x", (None,)), aj.input("t", (None,))
    w, b = aj.param("w", ()), aj.param("b", ())
    y = aj.sigmoid(w * x + b)
    loss = 0.5 * aj.mean((y - t) ** 2) + lam / 2 * w ** 2
    return (w, b), y, loss


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lam", type=float, default=0.01, help="L2 coefficient λ")
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    (w, b), y, loss = build(args.lam)
    x_train, t_train = make_data(200, args.seed)
    x_val, t_val = make_data(100, args.seed + 1)
    start = {"w": 0.0, "b": 0.0}
    print(aj.check_grads(loss, [w, b], {"x": x_train[:8], "t": t_train[:8], "w": 0.3, "b": -0.2}))
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    trainer = train.Trainer(loss, start, optim.SGD([w, b], lr=args.lr, momentum=0.9),
                            predictions=y, backend=args.backend, **options)
    hist = trainer.fit({"x": x_train, "t": t_train}, epochs=args.epochs,
                       batch_size=args.batch_size, val={"x": x_val, "t": t_val}, seed=args.seed,
                       progress=False if args.quiet else "lines")
    wv, bv = float(trainer.params["w"]), float(trainer.params["b"])
    print(f"w = {wv:.4f}, b = {bv:.4f}: decision boundary x = {-bv / wv:.3f} (data: 0.5)")
    print(f"loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}; "
          f"validation accuracy {100 * hist.val_accuracy[-1]:.1f}%")
    return {"history": hist, "w": wv, "b": bv}


if __name__ == "__main__":
    main()
