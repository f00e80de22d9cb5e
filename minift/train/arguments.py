"""``TrainingArguments``: every knob of a training run, with Hugging Face's names and defaults.

What a learner sets here carries over word for word to ``transformers.TrainingArguments``. Values are
checked when the object is made, so a bad learning rate or batch size fails before any work starts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..optim.schedules import SCHEDULES

STRATEGIES = ("no", "steps", "epoch")


@dataclass
class TrainingArguments:
    output_dir: str
    overwrite_output_dir: bool = False
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # how the micro-batches' mean losses combine: "tokens" weighs each by its share of the targets, so the step
    # is the big batch's (Hugging Face since 4.46); "mean" takes the plain mean of the means (HF before it, and
    # most hand-written loops), which over-weighs the targets of short micro-batches (transformers#34191)
    accumulation_normalization: str = "tokens"
    learning_rate: float = 5e-5
    weight_decay: float = 0.0  # never applied to biases and norm weights
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0  # 0 turns clipping off
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0  # > 0 overrides warmup_ratio
    logging_steps: int = 500
    eval_strategy: str = "no"
    eval_steps: int | None = None  # defaults to logging_steps
    save_strategy: str = "steps"
    save_steps: int = 500
    save_total_limit: int | None = None  # keep this run's newest N checkpoint-*; unlike HF, never another run's
    # (one it writes over, with the same step, becomes its own)
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None  # defaults to "loss" when load_best_model_at_end
    greater_is_better: bool | None = None  # defaults to False for a metric ending in "loss", else True
    seed: int = 42
    dataloader_drop_last: bool = False
    remove_unused_columns: bool = True
    disable_tqdm: bool = False
    trace_first_step: bool = False  # keep a table of the first optimizer step (Trainer.first_step_trace)
    plot: bool = True  # write the loss / learning-rate / metric curves as PNG at the end

    def __post_init__(self):
        if self.accumulation_normalization not in ("tokens", "mean"):
            raise ValueError("accumulation_normalization must be 'tokens' (each micro-batch weighed by its share of "
                             "the targets) or 'mean' (the mean of the micro-batch means), got "
                             f"{self.accumulation_normalization!r}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("max_steps", self.max_steps, minimum=-1)
        if self.max_steps == 0:
            raise ValueError("max_steps must be > 0, or -1 to train for num_train_epochs")
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if self.eval_steps is not None:
            _check_int("eval_steps", self.eval_steps, minimum=1)
        if self.save_total_limit is not None:
            _check_int("save_total_limit", self.save_total_limit, minimum=1)
        for name in ("learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm", "num_train_epochs"):
            _check_float(name, getattr(self, name), minimum=0.0)
        if self.max_steps < 0 and self.num_train_epochs <= 0:
            raise ValueError("num_train_epochs must be > 0 when max_steps is not set")
        for name in ("adam_beta1", "adam_beta2"):
            _check_float(name, getattr(self, name), minimum=0.0, below=1.0)
        _check_float("warmup_ratio", self.warmup_ratio, minimum=0.0, at_most=1.0)
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(f"lr_scheduler_type must be one of {sorted(SCHEDULES)}, got {self.lr_scheduler_type!r}")
        for name in ("eval_strategy", "save_strategy"):
            if getattr(self, name) not in STRATEGIES:
                raise ValueError(f"{name} must be one of {STRATEGIES}, got {getattr(self, name)!r}")
        if self.eval_steps is None:
            self.eval_steps = self.logging_steps
        if self.load_best_model_at_end:
            if self.eval_strategy == "no":
                raise ValueError("load_best_model_at_end needs evaluations: set eval_strategy to 'steps' or 'epoch'")
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "loss"
        if self.metric_for_best_model is not None and self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list:
        return [f.name for f in fields(cls)]


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name, value, minimum, below=None, at_most=None):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= minimum
    ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        bound = f" and < {below}" if below is not None else f" and <= {at_most}" if at_most is not None else ""
        raise ValueError(f"{name} must be a finite number >= {minimum}{bound}, got {value!r}")
