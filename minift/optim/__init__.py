"""Optimizers (SGD, Adam, AdamW), learning-rate schedules and gradient clipping."""
from .adamw import Adam, AdamW
from .clip import clip_grad_norm_
from .optimizer import Optimizer
from .schedules import (
    SCHEDULES, LambdaLR, get_constant_schedule, get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup, get_scheduler, get_slanted_triangular_schedule,
)
from .sgd import SGD

__all__ = [
    "SCHEDULES", "SGD", "Adam", "AdamW", "LambdaLR", "Optimizer", "clip_grad_norm_", "get_constant_schedule",
    "get_constant_schedule_with_warmup", "get_cosine_schedule_with_warmup", "get_linear_schedule_with_warmup",
    "get_scheduler", "get_slanted_triangular_schedule",
]
