"""Callbacks: code the Trainer calls at fixed moments of training, with Hugging Face's event names.

A callback subclasses ``TrainerCallback`` and overrides the events it cares about. Each event receives the
``TrainingArguments``, the ``TrainerState`` (step, epoch, log history, best metric) and the
``TrainerControl`` (flags a callback sets to ask the Trainer to evaluate, save or stop), plus keyword
arguments (``model``, ``optimizer``, ``metrics``, ``logs``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint as ``trainer_state.json``."""

    global_step: int = 0  # optimizer steps taken
    epoch: float = 0.0  # fractional: 1.5 = half-way through the second pass over the data
    max_steps: int = 0
    micro_batches_seen: int = 0  # in the current epoch: where to pick up the data order on resume
    log_history: list = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    train_seconds: float = 0.0  # optimization only: evaluation and saving are not counted

    def to_dict(self):
        return asdict(self)


@dataclass
class TrainerControl:
    should_training_stop: bool = False
    should_evaluate: bool = False
    should_save: bool = False
    should_log: bool = False


class TrainerCallback:
    """Override any of these; each gets (args, state, control, **kwargs).

    ``loss_term(model)`` is minift's one addition to HF's events: a callback may return a Tensor (a
    regularizer: EWC's penalty, an L2 pull to the initial weights) that the Trainer adds to every optimizer
    step's loss — once per step, not per micro-batch, since it does not depend on the data — and logs
    under ``loss_term_name``. ``None`` (the default) adds nothing.
    """

    loss_term_name = "loss_term"

    def loss_term(self, model):
        return None

    def on_train_begin(self, args, state, control, **kw): ...
    def on_epoch_begin(self, args, state, control, **kw): ...
    def on_step_end(self, args, state, control, **kw): ...
    def on_log(self, args, state, control, logs=None, **kw): ...
    def on_evaluate(self, args, state, control, metrics=None, **kw): ...
    def on_save(self, args, state, control, **kw): ...
    def on_epoch_end(self, args, state, control, **kw): ...
    def on_train_end(self, args, state, control, **kw): ...


class EarlyStoppingCallback(TrainerCallback):
    """Stop when ``metric_for_best_model`` has not improved by more than ``early_stopping_threshold`` for
    ``early_stopping_patience`` evaluations in a row (HF's rule; needs ``metric_for_best_model``)."""

    def __init__(self, early_stopping_patience=1, early_stopping_threshold=0.0):
        if not isinstance(early_stopping_patience, int) or early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be an integer >= 1, got {early_stopping_patience!r}")
        self.patience = early_stopping_patience
        self.threshold = early_stopping_threshold
        self.best = None
        self.bad_evaluations = 0

    def on_train_begin(self, args, state, control, **kw):
        if args.metric_for_best_model is None:
            raise ValueError("EarlyStoppingCallback needs TrainingArguments(metric_for_best_model=...)")
        if args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback needs evaluations: set eval_strategy to 'steps' or 'epoch'")

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        key = args.metric_for_best_model
        key = key if key.startswith("eval_") else "eval_" + key
        value = metrics[key]
        better = (lambda a, b: a > b + self.threshold) if args.greater_is_better else (
            lambda a, b: a < b - self.threshold)
        if self.best is None or better(value, self.best):
            self.best = value
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
            if self.bad_evaluations >= self.patience:
                control.should_training_stop = True


class GradualUnfreezingCallback(TrainerCallback):
    """ULMFiT's gradual unfreezing (Howard & Ruder, 2018): train the head alone first, then unfreeze one more
    layer group, from the top down, every ``steps_per_stage`` optimizer steps (default: once per epoch).

    ``groups``: lists of parameters from the top (head) to the bottom (embeddings), e.g. from
    ``minift.train.strategies.layer_groups(model)``. Every group starts frozen except the first.
    """

    def __init__(self, groups, steps_per_stage=None):
        if not groups:
            raise ValueError("GradualUnfreezingCallback needs at least one group of parameters")
        self.groups = [list(g) for g in groups]
        self.steps_per_stage = steps_per_stage
        self.unfrozen = 0

    def stage_at(self, step, steps_per_epoch):
        """How many groups are trainable at optimizer step ``step`` (0-based): 1 + completed stages."""
        every = self.steps_per_stage or steps_per_epoch
        return min(len(self.groups), 1 + step // max(1, every))

    def _apply(self, n):
        for i, group in enumerate(self.groups):
            for p in group:
                p.requires_grad = i < n
        self.unfrozen = n

    def on_train_begin(self, args, state, control, steps_per_epoch=1, **kw):
        self.steps_per_epoch = steps_per_epoch
        self._apply(self.stage_at(state.global_step, steps_per_epoch))

    def on_step_end(self, args, state, control, **kw):
        n = self.stage_at(state.global_step, self.steps_per_epoch)
        if n != self.unfrozen:
            self._apply(n)


def is_better(value, best, greater_is_better):
    if best is None:
        return not math.isnan(value)
    return value > best if greater_is_better else value < best


class EWCCallback(TrainerCallback):
    """Add a regularizer's penalty to every optimizer step's loss: ``mf.continual.EWC`` (or ``L2Anchor``,
    or anything with ``.penalty(model)`` returning a Tensor). Logged as ``ewc_penalty``."""

    loss_term_name = "ewc_penalty"

    def __init__(self, ewc):
        if not callable(getattr(ewc, "penalty", None)):
            raise TypeError(f"EWCCallback needs an object with .penalty(model) (mf.continual.EWC), got {type(ewc).__name__}")
        self.ewc = ewc

    def loss_term(self, model):
        return self.ewc.penalty(model)
