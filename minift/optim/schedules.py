"""Learning-rate schedules: a multiplier λ(step) of each group's base lr, as PyTorch's ``LambdaLR``.

Call ``scheduler.step()`` once after each ``optimizer.step()``; ``get_last_lr()`` is the lr in use.
The factory names and formulas are Hugging Face's (``get_linear_schedule_with_warmup`` …), plus ULMFiT's
slanted triangular schedule.
"""
from __future__ import annotations

import math


class LambdaLR:
    """lr_group(step) = base_lr_group · lr_lambda(step); step 0 is set at construction."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.optimizer = optimizer
        self.lr_lambda = lr_lambda
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        return [base * self.lr_lambda(self.last_epoch) for base in self.base_lrs]

    def step(self):
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "_last_lr": list(self._last_lr)}

    def load_state_dict(self, sd):
        self.last_epoch, self.base_lrs, self._last_lr = sd["last_epoch"], list(sd["base_lrs"]), list(sd["_last_lr"])
        for g, lr in zip(self.optimizer.param_groups, self._last_lr):
            g["lr"] = lr


def _check(num_warmup_steps, num_training_steps=None):
    if num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
    if num_training_steps is not None and num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be > 0, got {num_training_steps}")


def get_constant_schedule(optimizer):
    """λ(t) = 1."""
    return LambdaLR(optimizer, lambda t: 1.0)


def get_constant_schedule_with_warmup(optimizer, num_warmup_steps):
    """λ(t) = t/W while t < W, then 1."""
    _check(num_warmup_steps)
    return LambdaLR(optimizer, lambda t: t / max(1, num_warmup_steps) if t < num_warmup_steps else 1.0)


def get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps):
    """λ(t) = t/W for t < W, then (T − t)/(T − W) down to 0 at t = T."""
    _check(num_warmup_steps, num_training_steps)

    def lr_lambda(t):
        if t < num_warmup_steps:
            return t / max(1, num_warmup_steps)
        return max(0.0, (num_training_steps - t) / max(1, num_training_steps - num_warmup_steps))

    return LambdaLR(optimizer, lr_lambda)


def get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps, num_cycles=0.5):
    """λ(t) = t/W for t < W, then ½(1 + cos(2π·c·p)) with progress p = (t − W)/(T − W) (c = ½: one half wave)."""
    _check(num_warmup_steps, num_training_steps)

    def lr_lambda(t):
        if t < num_warmup_steps:
            return t / max(1, num_warmup_steps)
        p = (t - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * p)))

    return LambdaLR(optimizer, lr_lambda)


def get_slanted_triangular_schedule(optimizer, num_training_steps, cut_frac=0.1, ratio=32):
    """ULMFiT (Howard & Ruder, 2018): a short linear rise, then a long linear fall.

        cut = ⌊T · cut_frac⌋,   p = t/cut  if t < cut  else  1 − (t − cut)/(cut · (1/cut_frac − 1))
        λ(t) = (1 + p (ratio − 1)) / ratio          (from 1/ratio up to 1 and back down)
    """
    _check(0, num_training_steps)
    if not 0 < cut_frac < 1 or ratio < 1:
        raise ValueError(f"need 0 < cut_frac < 1 and ratio >= 1, got {cut_frac}, {ratio}")
    cut = max(1, math.floor(num_training_steps * cut_frac))

    def lr_lambda(t):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        return (1 + max(0.0, p) * (ratio - 1)) / ratio

    return LambdaLR(optimizer, lr_lambda)


SCHEDULES = {
    "constant": lambda opt, warmup, total: get_constant_schedule(opt),
    "constant_with_warmup": lambda opt, warmup, total: get_constant_schedule_with_warmup(opt, warmup),
    "linear": lambda opt, warmup, total: get_linear_schedule_with_warmup(opt, warmup, total),
    "cosine": lambda opt, warmup, total: get_cosine_schedule_with_warmup(opt, warmup, total),
    "slanted_triangular": lambda opt, warmup, total: get_slanted_triangular_schedule(opt, total),
}
SCHEDULES["stlr"] = SCHEDULES["slanted_triangular"]  # ULMFiT's abbreviation


def get_scheduler(name, optimizer, num_warmup_steps=0, num_training_steps=None):
    """A schedule by name (HF's ``lr_scheduler_type``): one of ``SCHEDULES``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](optimizer, num_warmup_steps, num_training_steps)
