"""The lecture's LeNet, declared as in PyTorch, on the 8×8 digits scikit-learn ships.

The lecture's network (``nn.Conv2d(1, 6, 3)``, ``F.max_pool2d(F.relu(...), 2)``,
``nn.Conv2d(6, 16, 3)``, flatten, three linear layers) adapted to 8×8 images: the
convolutions pad by 1 so each pooling halves the image (8 -> 4 -> 2), and the first
linear layer sees 16·2·2 = 64 features.  Trained with Adam, one compiled call per
mini-batch (forward, backward through the convolutions and pools, and the update).

Needs scikit-learn for the data: pip install "adjit[examples]".

At the default seed (1: the data split, the initial weights and the batch order) it
reaches 99.2% test accuracy in 40 epochs of batch 16 (about 0.4 s of training on one
core, plus about 2 s to compile); over seeds 0-4 the test accuracy is 97-99% (mean 98.1%),
the spread coming mostly from which 359 images the split holds out.

Run:  python examples/lenet.py [--epochs 40] [--seed 1] [--plot lenet.png]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import adjit as aj
from adjit import nn, optim, train
from adjit.train.data import load_digits


class LeNet:
    """conv 1→6 3×3, ReLU, max-pool 2, conv 6→16 3×3, ReLU, max-pool 2, 64→120→84→10."""

    def __init__(self, dtype="float32"):
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1, name="conv1", dtype=dtype)
        self.conv2 = nn.Conv2d(6, 16, 3, padding=1, name="conv2", dtype=dtype)
        self.fc1 = nn.Linear(16 * 2 * 2, 120, name="fc1", dtype=dtype)
        self.fc2 = nn.Linear(120, 84, name="fc2", dtype=dtype)
        self.fc3 = nn.Linear(84, 10, name="fc3", dtype=dtype)
        self.layers = [self.conv1, self.conv2, self.fc1, self.fc2, self.fc3]

    def __call__(self, x):
        x = aj.max_pool2d(aj.relu(self.conv1(x)), 2)      # (N, 6, 4, 4)
        x = aj.max_pool2d(aj.relu(self.conv2(x)), 2)      # (N, 16, 2, 2)
        x = aj.reshape(x, (None, 16 * 2 * 2))            # flatten; None is the batch
        x = aj.relu(self.fc1(x))
        x = aj.relu(self.fc2(x))
        return self.fc3(x)

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    def init(self, seed=0):
        rng = nn.rng_from(seed)
        return {k: v for layer in self.layers for k, v in layer.init(rng).items()}


def images(x):
    """Pixel rows (N, 64) -> images (N, 1, 8, 8)."""
    return np.ascontiguousarray(x.reshape(-1, 1, 8, 8))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--gamma", type=float, default=0.92, help="learning-rate decay per epoch")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=1, help="data split, initial weights, batches")
    p.add_argument("--plot", default="", help="save the loss curve to this file")
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    data = load_digits(seed=args.seed)
    train_set = {"x": images(data.x_train), "y": data.y_train}
    test_set = {"x": images(data.x_test), "y": data.y_test}
    print(f"digits: {len(data.y_train)} training and {len(data.y_test)} test images of 8×8")

    net = LeNet()
    x = aj.input("x", (None, 1, 8, 8), dtype="float32")
    labels = aj.input("y", (None,), dtype="int64")
    logits = net(x)
    loss = aj.cross_entropy(logits, labels)
    opt = optim.Adam(net.params, lr=optim.ExponentialDecay(args.lr, args.gamma))
    t0 = time.perf_counter()
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    trainer = train.Trainer(loss, net.init(args.seed), opt, predictions=logits,
                            backend=args.backend, **options)
    compile_s = time.perf_counter() - t0
    print(f"compiled the training step in {compile_s:.2f} s")
    hist = trainer.fit(train_set, epochs=args.epochs, batch_size=args.batch_size, val=test_set,
                       seed=args.seed, progress=False if args.quiet else None)
    acc = trainer.evaluate(test_set)["accuracy"]
    per_epoch = statistics.median(hist.seconds)
    print(f"test accuracy {100 * acc:.1f}%  (loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.4f}); "
          f"{1e3 * per_epoch:.1f} ms per epoch")
    if args.plot:
        print("loss curve:", hist.plot(args.plot))
    return {"history": hist, "accuracy": acc, "seconds_per_epoch": per_epoch,
            "compile_seconds": compile_s}


if __name__ == "__main__":
    main()
