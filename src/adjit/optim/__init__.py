"""Optimizers whose update rules are compiled into the training step.

>>> import adjit as aj, numpy as np
>>> from adjit import optim
>>> w = aj.param("w", (3,))
>>> loss = aj.sum((w - 1.0) ** 2)
>>> opt = optim.Adam([w], lr=0.1)
>>> step = aj.compile(loss, backend="interp", updates=opt.updates(loss))
>>> W = np.zeros(3)
>>> for _ in range(3):
...     _ = step(w=W, **opt.state)       # forward, backward and update in one call
>>> opt.step_count, bool(np.all(W > 0.29))
(3, True)
"""
from .adam import Adam
from .base import Optimizer
from .schedules import Constant, ExponentialDecay, Schedule, StepDecay
from .sgd import SGD


__all__ = ["Adam", "Constant", "ExponentialDecay", "Optimizer", "SGD", "Schedule",
           "StepDecay"]
