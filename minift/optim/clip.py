"""Gradient clipping by the global norm (PyTorch's ``clip_grad_norm_``)."""
from __future__ import annotations

import math

from ..autograd.tensor import Tensor
from ..backend import xp


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together so that their joint norm is at most ``max_norm``; returns the norm before.

        ‖g‖ = (Σ_params Σ_i |g_i|^p)^{1/p}      (max |g_i| for p = inf)
        g ← g · min(1, max_norm / (‖g‖ + 1e-6))
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(xp.abs(g).max()) for g in grads)
    else:
        total = float(sum(float((xp.abs(g.astype(xp.float64)) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type))
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad *= p.grad.dtype.type(coef)
    return total
