"""Adam and AdamW: adaptive moments with bias correction; L2 folded into the gradient (Adam) or decoupled (AdamW)."""
from __future__ import annotations

import math
from functools import partial

from ..autograd.grad_mode import no_grad
from ..backend import is_cupy, parallel_for, xp
from .optimizer import Optimizer, check_number


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps):
    """One Adam update of arrays, in place: the moments, then θ ← θ − η · m̂ / (√v̂ + ε).

        m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
        m̂ = m / (1 − β₁ᵗ),    v̂ = v / (1 − β₂ᵗ)          (bias correction; t = ``step``, counted from 1)
    """
    # TASK optim.adamw_step: the Adam part of the update — the moments, their bias correction, the step
    # BEGIN SOLUTION
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
    denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps  # √v̂ + ε
    param -= (lr / bias_correction1) * exp_avg / denom
    # END SOLUTION


def adam_state(state, p):
    """The parameter's moments (zeros at the first step) with the step counter advanced: (m, v, t)."""
    if "exp_avg" not in state:
        state["step"] = 0
        state["exp_avg"] = xp.zeros_like(p.grad)
        state["exp_avg_sq"] = xp.zeros_like(p.grad)
    state["step"] += 1
    return state["exp_avg"], state["exp_avg_sq"], state["step"]


def for_each_block(update, param, grad, *state):
    """Run an in-place ``update(param, grad, *state)`` block by block on the worker threads (one parameter)."""
    update_in_blocks([(update, param, grad, *state)])


def update_in_blocks(jobs, block=1 << 17):
    """Run every job's in-place ``update(param, grad, *state)``, block by block, on the worker threads.

    Every term of an Adam update is elementwise, so it may run on any slice of the arrays at a time:
    slices that fit in the cache make its dozen steps one trip to memory instead of one each. The blocks
    of *all* parameters go into one list that the threads share (``backend.parallel_for``): one hand-off
    per optimizer step, and a big embedding matrix and a hundred small biases keep both threads busy
    alike. A parameter that is not contiguous in memory (rare: a view), or any on the GPU, is updated whole.
    """
    pieces = []  # (update, [param, grad, *state] flattened, slice of the elements)
    for update, param, grad, *state in jobs:
        arrays = (param, *state)
        if is_cupy() or not all(a.flags.c_contiguous for a in arrays):
            update(param, grad, *state)
            continue
        flat = [a.reshape(-1) for a in (param, xp.ascontiguousarray(grad), *state)]  # views, written in place
        pieces += [(update, flat, slice(i, i + block)) for i in range(0, param.size, block)]

    def run(which):  # which: a slice of the list of pieces
        for update, flat, elements in pieces[which]:
            update(*(a[elements] for a in flat))

    parallel_for(run, len(pieces))


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
        jobs = []
        for p, st, lr, b1, b2, eps, wd in self._groups():
            m, v, t = adam_state(st, p)
            g = p.grad + wd * p.data if wd else p.grad  # coupled L2: the decay goes through the moments
            jobs.append((partial(adam_update, step=t, lr=lr, beta1=b1, beta2=b2, eps=eps), p.data, g, m, v))
        update_in_blocks(jobs)


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
        jobs = []
        for p, st, lr, b1, b2, eps, wd in self._groups():
            m, v, t = adam_state(st, p)
            update = partial(adamw_update, step=t, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
            jobs.append((update, p.data, p.grad, m, v))
        update_in_blocks(jobs)  # every parameter's adamw_update(θ, g, m, v), in blocks, on the worker threads


def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update of arrays, in place (the formulas of ``AdamW``); ``step`` = t, counted from 1."""
    # TASK optim.adamw_step: AdamW's decoupled weight decay, then the Adam update
    # BEGIN SOLUTION
    param *= 1 - lr * weight_decay  # decoupled decay first, as PyTorch
    adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps)
    # END SOLUTION
