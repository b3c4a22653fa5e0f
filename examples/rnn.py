"""An Elman RNN learns the parity of a bit sequence (XOR of all its bits so far).

The data are random bit strings the script draws itself.  At every step t the network
reads one bit and says whether the bits 1..t hold an odd number of ones; it is scored on
the last step, the parity of the whole sequence (chance: 50%), on test sequences it has
not seen.  No feed-forward network of the same size does this: the answer flips with
every single bit, so the network must carry one bit of state through all T steps.

The model is ``nn.RNN`` (tanh, unrolled over T steps: ``x @ Wx`` for every step at once,
then ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``) and a ``nn.Linear`` readout on every hidden
state; the loss is the cross-entropy of every step's parity.  Each mini-batch is one
compiled call (forward, backpropagation through time, Adam's update).

Run:  python examples/rnn.py [--length 16] [--epochs 30] [--backend llvm|interp]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import adjit as aj
from adjit import nn, optim, train


def parity_data(n: int, length: int, rng) -> dict:
    """``n`` random bit strings: ``x`` (n, length, 2) one-hot bits (float32), ``y``
    (n, length) int64 parity of every prefix."""
    bits = rng.integers(0, 2, size=(n, length))
    x = np.eye(2, dtype=np.float32)[bits]
    y = (np.cumsum(bits, axis=1) % 2).astype(np.int64)
    return {"x": x, "y": y}


def build(length: int, hidden: int):
    """The model: ``x`` (B, T, 2) -> RNN -> Linear -> logits (B, T, 2); the loss on ``y``."""
    x = aj.input("x", (None, length, 2), dtype="float32")
    y = aj.input("y", (None, length), dtype="int64")
    rnn = nn.RNN(2, hidden, "tanh", dtype="float32")
    readout = nn.Linear(hidden, 2, name="out", dtype="float32")
    hs, _ = rnn(x)
    logits = readout(hs)                     # (B, T, 2): one prediction per step
    model = nn.Sequential(rnn, readout)
    return model, logits, aj.cross_entropy(logits, y)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=16, help="bits per sequence (T)")
    p.add_argument("--test-length", type=int, default=64,
                   help="also test on sequences this long, never seen in training")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--train-size", type=int, default=2048)
    p.add_argument("--test-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0, help="data, initial weights, batches")
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    data = parity_data(args.train_size, args.length, rng)
    test = parity_data(args.test_size, args.length, rng)
    model, logits, loss = build(args.length, args.hidden)
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    t0 = time.perf_counter()
    trainer = train.Trainer(loss, model.init(args.seed), optim.Adam(model.params, lr=args.lr),
                            predictions=logits, backend=args.backend, **options)
    print(f"parity of {args.length} bits: {args.train_size} training and {args.test_size} test "
          f"sequences; compiled the training step in {time.perf_counter() - t0:.2f} s")
    hist = trainer.fit(data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       val=test, progress=False if args.quiet else "lines")
    scores = trainer.predict(test)                       # (n, T, 2)
    longer = parity_data(args.test_size, args.test_length, rng)
    _, long_logits, _ = build(args.test_length, args.hidden)   # same parameter names
    long_guess = aj.compile([long_logits], backend=args.backend, **options)(
        x=longer["x"], **trainer.params)[0].argmax(axis=-1)
    long_accuracy = float(np.mean(long_guess[:, -1] == longer["y"][:, -1]))
    guess = scores.argmax(axis=-1)
    accuracy = float(np.mean(guess[:, -1] == test["y"][:, -1]))
    per_step = hist.val_accuracy[-1]                     # the Trainer's: every prefix
    print(f"loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f} after {args.epochs} epochs "
          f"({sum(hist.seconds):.2f} s of training)")
    bits = "".join(str(int(b)) for b in test["x"][0].argmax(axis=-1))
    print(f"  bits {bits}: parity {test['y'][0, -1]}, network {guess[0, -1]}")
    print(f"test accuracy {100 * accuracy:.1f}% on the parity of all {args.length} bits "
          f"({100 * per_step:.1f}% over every prefix)")
    print(f"test accuracy {100 * long_accuracy:.1f}% on sequences of {args.test_length} bits "
          f"(the same weights, unrolled over {args.test_length} steps)")
    return {"history": hist, "accuracy": accuracy, "per_step_accuracy": per_step,
            "long_accuracy": long_accuracy}


if __name__ == "__main__":
    main()
