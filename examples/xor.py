"""XOR with a small MLP, the lecture's first network: 2 inputs -> 4 tanh units -> 1 sigmoid.

No linear model separates XOR; one hidden layer does.  The whole data set is one batch,
and each epoch is one compiled call (forward, backward and the Adam update).

Run:  python examples/xor.py [--epochs 300] [--backend llvm|interp]
"""
from __future__ import annotations

import argparse

import numpy as np

import adjit as aj
from adjit import nn, optim, train

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
T = np.array([[0], [1], [1], [0]], dtype=np.float64)


def build():
    """The model: nodes only (x, t inputs; W1, b1, W2, b2 parameters)."""
    x, t = aj.input("x", (None, 2)), aj.input("t", (None, 1))
    mlp = nn.MLP([2, 4, 1], activation="tanh", output_activation="sigmoid")
    y = mlp(x)
    loss = aj.mse(y, t)
    return mlp, y, loss


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)

    mlp, y, loss = build()
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    trainer = train.Trainer(loss, mlp.init(args.seed), optim.Adam(mlp.params, lr=args.lr),
                            predictions=y, backend=args.backend, **options)
    data = {"x": X, "t": T}
    hist = trainer.fit(data, epochs=args.epochs, batch_size=4, shuffle=False,
                       progress=False if args.quiet else "lines")
    out = trainer.predict(data)
    print(f"loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f} after {args.epochs} epochs")
    for (a, b), target, got in zip(X, T[:, 0], out[:, 0]):
        print(f"  xor({a:.0f}, {b:.0f}) = {target:.0f}   network: {got:.3f}")
    acc = train.accuracy(out, T)
    print(f"accuracy {100 * acc:.0f}%")
    return {"history": hist, "accuracy": acc, "predictions": out}


if __name__ == "__main__":
    main()
