"""Learning-rate schedules: plain functions of the epoch index (0 for the first epoch).

A schedule is evaluated in Python between calls and written into the optimizer's 0-d
learning-rate array (``opt.lr = schedule(epoch)``), so changing the rate never
recompiles the step.  :class:`adjit.train.Trainer` does this at the start of each epoch;
in a hand-written loop call ``opt.start_epoch(epoch)``.

>>> StepDecay(0.1, step_size=2, gamma=0.5)(5)
0.025
>>> round(ExponentialDecay(1.0, gamma=0.9)(2), 12)
0.81
"""
from __future__ import annotations


class Schedule:
    """Base class: ``schedule(epoch) -> learning rate``."""

    def __call__(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _check(lr, **positive):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


class Constant(Schedule):
    """The same rate every epoch."""

    def __init__(self, lr: float):
        self._check(lr)
        self.lr = float(lr)

    def __call__(self, epoch: int) -> float:
        return self.lr

    def __repr__(self):
        return f"Constant({self.lr})"


class StepDecay(Schedule):
    """``lr · gamma ** (epoch // step_size)``: multiply by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self._check(lr, step_size=step_size, gamma=gamma)
        self.lr, self.step_size, self.gamma = float(lr), int(step_size), float(gamma)

    def __call__(self, epoch: int) -> float:
        return self.lr * self.gamma ** (int(epoch) // self.step_size)

    def __repr__(self):
        return f"StepDecay({self.lr}, step_size={self.step_size}, gamma={self.gamma})"


class ExponentialDecay(Schedule):
    """``lr · gamma ** epoch``."""

    def __init__(self, lr: float, gamma: float):
        self._check(lr, gamma=gamma)
        self.lr, self.gamma = float(lr), float(gamma)

    def __call__(self, epoch: int) -> float:
        return self.lr * self.gamma ** int(epoch)

    def __repr__(self):
        return f"ExponentialDecay({self.lr}, gamma={self.gamma})"


def as_schedule(lr) -> Schedule:
    """A number becomes :class:`Constant`; a Schedule (or any callable) is kept."""
    if isinstance(lr, Schedule):
        return lr
    if callable(lr):
        return _Callable(lr)
    try:
        return Constant(float(lr))
    except TypeError:
        raise TypeError(f"lr must be a number or a schedule, got {type(lr).__name__}") from None


class _Callable(Schedule):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, epoch: int) -> float:
        return float(self.fn(epoch))
