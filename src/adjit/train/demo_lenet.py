"""``adjit demo --model lenet``: the lecture's LeNet, differentiated, compiled and trained.

The network of examples/lenet.py, declared here as an ``nn.Sequential`` of PyTorch-style
layers: conv 1→6 3×3 (padding 1), ReLU, max-pool 2, conv 6→16 3×3 (padding 1), ReLU,
max-pool 2, flatten, 64→120→84→10, cross-entropy on the 8×8 digits.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

# display names of the outputs of the layers, in order (the equations view uses them)
LAYER_NAMES = ["z1", "h1", "p1", "z2", "h2", "p2", "f", "z3", "h3", "z4", "h4", "y"]


def lenet(dtype: str = "float32"):
    """The LeNet for 1×8×8 images as an ``nn.Sequential``."""
    from .. import nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, name="conv1", dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 3, padding=1, name="conv2", dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 120, name="fc1", dtype=dtype), nn.ReLU(),
        nn.Linear(120, 84, name="fc2", dtype=dtype), nn.ReLU(),
        nn.Linear(84, 10, name="fc3", dtype=dtype))


def build():
    """``(model, loss, logits, names)``: the graph, with each layer's output named."""
    import adjit as aj
    model = lenet()
    x = aj.input("x", (None, 1, 8, 8), dtype="float32")
    labels = aj.input("t", (None,), dtype="int64")
    names, h = {}, x
    for layer, name in zip(model, LAYER_NAMES):
        h = layer(h)
        names[name] = h
    loss = aj.cross_entropy(h, labels)
    names["L"] = loss
    return model, loss, h, names


def run(args) -> int:
    """The demo's steps for the LeNet (``args`` from ``adjit.train.demo``'s parser)."""
    import adjit as aj
    from .. import optim
    from .data import load_digits
    from .demo import equations_text, time_against_interp
    from .loop import Trainer

    print("adjit demo: the lecture's LeNet (two convolutions, two max-pools, three linear "
          "layers), differentiated, compiled and trained on the 8×8 digits\n")
    data = load_digits(seed=args.seed)
    model, L, y, names = build()
    print(f"   {model}")
    grads = aj.grad(L, model.params)
    print("\n1. The model and its backward pass, as aj.grad built it (graph nodes, not numbers)\n")
    print(equations_text([L] + grads, names))

    print("\n2. Compiling the training step: forward + backward + Adam update, one native call")
    lr = 3e-3 if args.lr is None else args.lr
    t0 = time.perf_counter()
    trainer = Trainer(L, model.init(args.seed), optim.Adam(
        model.params, lr=optim.ExponentialDecay(lr, gamma=0.92)), predictions=y)
    step = trainer.step_function
    cache = str(getattr(step, "cache_info", "")).split(" ", 1)[0].rstrip(":") or "off"
    print(f"   compiled in {time.perf_counter() - t0:.2f} s (disk cache: {cache}); nodes per "
          "stage: " + " -> ".join(f"{k} {v}" for k, v in step.node_counts().items()))

    def images(x):
        return np.ascontiguousarray(x.reshape(-1, 1, 8, 8))
    train_set = {"x": images(data.x_train), "t": data.y_train}
    test_set = {"x": images(data.x_test), "t": data.y_test}
    epochs = 40 if args.epochs is None else args.epochs
    print(f"\n3. Training on {len(data.y_train)} images, batch 16, Adam (lr {lr:g} × 0.92 per "
          f"epoch); {len(data.y_test)} held-out test images")
    hist = trainer.fit(train_set, epochs=epochs, batch_size=16, val=test_set, seed=args.seed,
                       progress="lines" if args.no_progress else None)
    acc = trainer.evaluate(test_set)["accuracy"]
    print(f"   training loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}; test accuracy "
          f"{100 * acc:.1f}%; {1e3 * statistics.median(hist.seconds):.1f} ms per epoch")

    if args.timing_seconds > 0:
        interp = Trainer(L, trainer.params, optim.Adam(model.params, lr=lr), backend="interp")
        time_against_interp(trainer, interp, train_set, 16, args.timing_seconds)
    return 0
