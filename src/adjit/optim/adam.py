"""Adam with bias-corrected moments (Kingma & Ba), compiled into the training step."""
from __future__ import annotations

from typing import Sequence

from .. import frontend as F
from ..ir import Node
from .base import Optimizer


class Adam(Optimizer):
    """Adam: with ``g`` the gradient (plus ``weight_decay·p``) and ``t`` the step count,

    ``t ← t + 1``,
    ``m ← β₁·m + (1 − β₁)·g``,  ``v ← β₂·v + (1 − β₂)·g²``,
    ``p ← p − lr · m̂ / (√v̂ + ε)`` with ``m̂ = m / (1 − β₁ᵗ)`` and ``v̂ = v / (1 − β₂ᵗ)``.

    The bias corrections are 0-d values computed once per step and folded into one step
    size, ``p ← p − α·m / (√v + ε̂)`` with ``α = lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ)`` and
    ``ε̂ = ε·√(1 − β₂ᵗ)`` (the same value, with one division per element instead of three).
    State: ``f"{name}_m_{param}"``, ``f"{name}_v_{param}"`` and the counter ``f"{name}_t"``.
    """

    def __init__(self, params: Sequence[Node], lr=1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, *, weight_decay: float = 0.0, name: str = "adam"):
        b1, b2 = betas
        for what, b in (("beta1", b1), ("beta2", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {what} must be in [0, 1), got {b!r}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps!r}")
        self.betas, self.eps = (float(b1), float(b2)), float(eps)
        super().__init__(params, lr, weight_decay=weight_decay, name=name)
        self.scalar("t")
        for p in self.params:
            self.slot("m", p)
            self.slot("v", p)

    @property
    def step_count(self) -> int:
        """How many updates have been applied."""
        return int(self.state[f"{self.name}_t"])

    def rules(self, grads):
        b1, b2 = self.betas
        t = self.scalar("t")
        t_new = t + 1.0
        bc1 = 1.0 - b1 ** t_new
        root_bc2 = F.sqrt(1.0 - b2 ** t_new)
        alpha = self._lr * root_bc2 / bc1
        eps_hat = self.eps * root_bc2
        out = [(t, t_new)]
        for p, g in zip(self.params, grads):
            m, v = self.slot("m", p), self.slot("v", p)
            m_new = b1 * m + (1.0 - b1) * g
            v_new = b2 * v + (1.0 - b2) * (g * g)
            step = F.cast(alpha, p.dtype) * m_new / (F.sqrt(v_new) + F.cast(eps_hat, p.dtype))
            out += [(p, p - step), (m, m_new), (v, v_new)]
        return out
