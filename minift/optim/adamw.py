"""Adam and AdamW: adaptive moments with bias correction; L2 folded into the gradient (Adam) or decoupled (AdamW)."""
from __future__ import annotations

import math

from ..autograd.grad_mode import no_grad
from ..backend import xp
from .optimizer import Optimizer, check_number


def adam_moments(state, g, beta1, beta2):
    """Update the running moments in place:  m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²."""
    if "exp_avg" not in state:
        state["step"] = 0
        state["exp_avg"] = xp.zeros_like(g)
        state["exp_avg_sq"] = xp.zeros_like(g)
    state["step"] += 1
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g


def adam_direction(state, lr, beta1, beta2, eps):
    """The Adam step  η · m̂ / (√v̂ + ε)  with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) (bias correction)."""
    t = state["step"]
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    return (lr / bc1) * state["exp_avg"] / (xp.sqrt(state["exp_avg_sq"]) / math.sqrt(bc2) + eps)


class Adam(Optimizer):
    """Adam with *coupled* L2 weight decay: g ← g + λθ before the moments (so decay is rescaled by 1/√v̂)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps, weight_decay=weight_decay))

    def check_options(self, group):
        for name in ("lr", "eps", "weight_decay"):
            check_number(name, group[name], minimum=0.0)
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for name, beta in zip(("betas[0]", "betas[1]"), betas):
            check_number(name, beta, minimum=0.0, below=1.0)

    def _groups(self):
        """(p, state, lr, β₁, β₂, ε, λ) for every parameter that has a gradient."""
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is not None:
                    yield p, self.state.setdefault(id(p), {}), lr, b1, b2, eps, wd

    @no_grad()
    def step(self):
        for p, st, lr, b1, b2, eps, wd in self._groups():
            g = p.grad + wd * p.data if wd else p.grad
            adam_moments(st, g, b1, b2)
            p.data -= adam_direction(st, lr, b1, b2, eps).astype(p.data.dtype, copy=False)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), PyTorch's update for parameter θ with gradient g at step t:

        θ ← θ − ηλθ                                  (decoupled weight decay: not seen by the moments)
        m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
        θ ← θ − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @no_grad()
    def step(self):
        for p, st, lr, b1, b2, eps, wd in self._groups():
            # TASK optim.adamw_step: one AdamW update of a parameter
            # BEGIN SOLUTION
            p.data *= 1 - lr * wd  # decoupled decay first, as PyTorch
            adam_moments(st, p.grad, b1, b2)
            p.data -= adam_direction(st, lr, b1, b2, eps).astype(p.data.dtype, copy=False)
            # END SOLUTION
