"""The loss curve of a training run, drawn with matplotlib (an optional extra)."""
from __future__ import annotations

import os


def plot_history(history, path) -> str:
    """Save the training (and validation) loss and accuracy per epoch to ``path`` (.png, .svg, .pdf).

    Uses matplotlib's object API (no pyplot, no display needed).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plotting the loss curve needs matplotlib: pip install "adjit[plot]" '
                          "(or pip install matplotlib)") from None
    epochs = [e + 1 for e in history.epoch]
    has_acc = any(a is not None for a in history.val_accuracy)
    fig = Figure(figsize=(9 if has_acc else 5, 3.5))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    ax = axes[0]
    ax.plot(epochs, history.loss, label="training loss")
    if any(v is not None for v in history.val_loss):
        ax.plot(epochs, history.val_loss, label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    if has_acc:
        axes[1].plot(epochs, [100 * a for a in history.val_accuracy], color="C2")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    return path
