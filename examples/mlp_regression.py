"""A two-layer MLP fits a noisy curve: 1 input -> 32 tanh units -> 1 linear output.

    h = tanh(x W1 + b1),   y = h W2 + b2,   L = mean((y − t)²)

Trained with Adam and an exponentially decaying learning rate, with early stopping on a
validation set; ``--plot curve.png`` saves the loss curve (needs matplotlib).

Run:  python examples/mlp_regression.py [--epochs 200] [--plot curve.png]
"""
from __future__ import annotations

import argparse

import numpy as np

import adjit as aj
from adjit import nn, optim, train


def make_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=(n, 1))
    t = np.sin(2.0 * x) + 0.3 * x ** 2 + 0.05 * rng.normal(size=(n, 1))
    return x, t


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--plot", default="", help="save the loss curve to this file")
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    x, t = aj.input("x", (None, 1)), aj.input("t", (None, 1))
    mlp = nn.MLP([1, args.hidden, 1], activation="tanh")
    y = mlp(x)
    loss = aj.mse(y, t)
    x_train, t_train = make_data(256, args.seed)
    x_val, t_val = make_data(128, args.seed + 1)
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    opt = optim.Adam(mlp.params, lr=optim.ExponentialDecay(0.01, gamma=0.99))
    trainer = train.Trainer(loss, mlp.init(args.seed), opt, backend=args.backend, **options)
    hist = trainer.fit({"x": x_train, "t": t_train}, epochs=args.epochs,
                       batch_size=args.batch_size, val={"x": x_val, "t": t_val},
                       patience=args.patience, seed=args.seed,
                       progress=False if args.quiet else "lines")
    best = hist.best_epoch if hist.best_epoch is not None else len(hist.loss) - 1
    print(f"training loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}; best validation loss "
          f"{hist.val_loss[best]:.4f} (epoch {best + 1}, noise floor 0.0025)")
    if args.plot:
        print("loss curve:", hist.plot(args.plot))
    return {"history": hist, "val_loss": hist.val_loss[best]}


if __name__ == "__main__":
    main()
