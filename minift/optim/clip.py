"""Gradient clipping by the global norm (PyTorch's ``clip_grad_norm_``)."""
from __future__ import annotations

import math

from ..autograd.tensor import Tensor
from ..backend import xp
from .optimizer import check_number


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint norm is at most ``max_norm``; returns the norm before.

        ‖g‖ = (Σ_params Σ_i |g_i|^p)^{1/p}      (max |g_i| for p = inf)
        g ← g · min(1, max_norm / (‖g‖ + 1e-6))

    Each parameter's sum is taken in its gradient's dtype (float32 usually); for p = 2 it is one BLAS
    dot product ``vdot(g, g)`` per parameter, several times faster than squaring into a temporary array
    and summing it. A sum that overflows that dtype (float32 past 3.4e38, float16 past 65504) is taken
    again in float64, so a large but finite norm is never reported as inf. The per-parameter sums are
    added up in Python floats (float64).

    A NaN or infinite gradient makes the norm non-finite. As in PyTorch, ``error_if_nonfinite=True``
    raises then (naming the first parameter at fault); with the default ``False`` the gradients are
    scaled by PyTorch's factor max_norm / (‖g‖ + 1e-6): NaN when the norm is NaN, 0 when it is infinite
    (so the infinite entries become NaN) — the step that follows is visibly broken rather than quietly
    taken with a bad gradient.
    """
    check_number("max_norm", max_norm, minimum=0.0)
    if not (norm_type == math.inf or (isinstance(norm_type, (int, float)) and 0 < norm_type < math.inf)):
        raise ValueError(f"norm_type must be a number > 0 or math.inf (the p of the p-norm), got {norm_type!r}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        largest = [float(xp.abs(g).max()) for g in grads if g.size]
        total = math.nan if any(math.isnan(m) for m in largest) else max(largest, default=0.0)
    else:
        total = sum(_power_sum(g, norm_type) for g in grads) ** (1.0 / norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            bad = next(i for i, p in enumerate(params) if p.grad is not None and not bool(xp.isfinite(p.grad).all()))
            raise RuntimeError(
                f"the total norm of order {norm_type} of the gradients is {total}: parameter {bad} (shape "
                f"{tuple(params[bad].shape)}) has a NaN or infinite gradient, so it cannot be clipped; lower the "
                "learning rate or look for a log/division of zero, or pass error_if_nonfinite=False"
            )
    coef = max_norm / (total + 1e-6)  # inf -> 0 (finite gradients become 0), nan -> nan, as in PyTorch
    coef = coef if math.isnan(coef) else min(1.0, coef)
    if coef < 1.0 or math.isnan(coef):
        for p in params:
            if p.grad is not None:
                p.grad *= p.grad.dtype.type(coef)
    return total


def _power_sum(g, p):
    """Σ |g_i|^p as a Python float: fast in g's dtype, again in float64 if that overflowed."""
    flat = g.reshape(-1)  # any shape -> (n,)
    total = float(xp.vdot(flat, flat)) if p == 2 else float((xp.abs(flat) ** p).sum())
    if math.isinf(total) and bool(xp.isfinite(flat).all()):  # overflow, not an infinite gradient
        total = float((xp.abs(flat.astype(xp.float64)) ** p).sum())
    return total
