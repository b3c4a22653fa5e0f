"""Training: mini-batches, the compiled training step, the loop, checkpoints, plots, data.

See :class:`Trainer` (``adjit.train.loop``) and ``python -m adjit.train.demo``.
"""
from .batches import minibatches
from .checkpoint import load_npz, save_npz
from .loop import History, Trainer, accuracy
from .plot import plot_history

__all__ = ["History", "Trainer", "accuracy", "load_npz", "minibatches", "plot_history",
           "save_npz"]
