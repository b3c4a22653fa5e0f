"""Handwritten digits (the 8×8 set scikit-learn ships): a 64-128-64-10 ReLU MLP with Adam.

Trains with one compiled call per mini-batch of 32 (forward, backward and the Adam
update in native code), reports test accuracy, and, when PyTorch is installed, trains
the same model (same initial weights, same batches, same optimizer and schedule) with
PyTorch eager and prints the wall time per epoch of both (training only, validation
excluded, median over epochs).

Needs scikit-learn for the data: pip install "adjit[examples]".

Run:  python examples/digits.py [--epochs 40] [--no-torch] [--plot digits.png]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import adjit as aj
from adjit import nn, optim, train
from adjit.train.data import load_digits

SIZES = [64, 128, 64, 10]


def build():
    x = aj.input("x", (None, 64), dtype="float32")
    labels = aj.input("y", (None,), dtype="int64")
    mlp = nn.MLP(SIZES, activation="relu", dtype="float32")
    logits = mlp(x)
    return mlp, logits, aj.cross_entropy(logits, labels)


def torch_epochs(init: dict, data, args) -> dict | None:
    """The same model and training in PyTorch eager; None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(args.torch_threads)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:]), start=1):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():                      # adjit stores W as (in, out)
            lin.weight.copy_(torch.from_numpy(init[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(init[f"b{i}"]))
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=args.gamma)
    loss_fn = torch.nn.functional.cross_entropy
    rng = np.random.default_rng(args.seed)        # the same batches as adjit's loop
    seconds = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for batch in train.minibatches({"x": data.x_train, "y": data.y_train}, 32, rng=rng):
            xb, yb = torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
        sched.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x_test)).numpy()
    return {"seconds": seconds, "accuracy": train.accuracy(pred, data.y_test),
            "threads": torch.get_num_threads(), "version": torch.__version__}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--gamma", type=float, default=0.93, help="learning-rate decay per epoch")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=1, help="data split, initial weights, batches")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="PyTorch's intra-op threads (default 1: at batch 32 its second "
                        "thread only adds synchronization)")
    p.add_argument("--plot", default="", help="save the loss curve to this file")
    p.add_argument("--save", default="", help="save the trained parameters (.npz)")
    p.add_argument("--backend", default="llvm", choices=["llvm", "interp"])
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    data = load_digits(seed=args.seed)
    print(f"digits: {len(data.y_train)} training and {len(data.y_test)} test images of 8×8")
    mlp, logits, loss = build()
    init = mlp.init(args.seed)
    opt = optim.Adam(mlp.params, lr=optim.ExponentialDecay(args.lr, args.gamma),
                     weight_decay=args.weight_decay)
    t0 = time.perf_counter()
    options = {"opt_level": args.opt_level} if args.backend == "llvm" else {}
    trainer = train.Trainer(loss, init, opt, predictions=logits, backend=args.backend, **options)
    print(f"compiled the training step in {time.perf_counter() - t0:.2f} s")
    hist = trainer.fit({"x": data.x_train, "y": data.y_train}, epochs=args.epochs,
                       batch_size=32, val={"x": data.x_test, "y": data.y_test}, seed=args.seed,
                       progress=False if args.quiet else None)
    acc = trainer.evaluate({"x": data.x_test, "y": data.y_test})["accuracy"]
    per_epoch = statistics.median(hist.seconds)
    print(f"test accuracy {100 * acc:.1f}%  (loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.4f})")
    print("wall time per epoch (median, training only):")
    print(f"  adjit          {1e3 * per_epoch:8.1f} ms")
    result = {"history": hist, "accuracy": acc, "seconds_per_epoch": per_epoch}
    peer = None if args.no_torch else torch_epochs(init, data, args)
    if peer is not None:
        t = statistics.median(peer["seconds"])
        threads = f"{peer['threads']} thread" + ("s" if peer["threads"] != 1 else "")
        print(f"  PyTorch eager  {1e3 * t:8.1f} ms  (torch {peer['version']}, {threads}, test "
              f"accuracy {100 * peer['accuracy']:.1f}%): adjit is {t / per_epoch:.1f}x faster")
        result["torch"] = peer
    elif not args.no_torch:
        print("  (PyTorch is not installed: no comparison)")
    if args.plot:
        print("loss curve:", hist.plot(args.plot))
    if args.save:
        print("parameters saved to", trainer.save(args.save))
    return result


if __name__ == "__main__":
    main()
