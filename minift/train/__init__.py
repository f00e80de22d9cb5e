"""Training: ``TrainingArguments``, the ``Trainer``, callbacks, checkpoints and classic strategies."""
from .arguments import TrainingArguments
from .callbacks import (
    EarlyStoppingCallback, EWCCallback, GradualUnfreezingCallback, TrainerCallback, TrainerControl, TrainerState,
)
from .checkpointing import load_checkpoint, save_checkpoint
from .strategies import (
    bitfit_param_groups, discriminative_param_groups, freeze_backbone, full_param_groups, layer_groups, layer_parameter_names,
    llrd_param_groups, trainable_param_groups,
)
from .trainer import EvalPrediction, PredictionOutput, Trainer, TrainOutput, count_targets, decay_parameter_names

__all__ = [
    "EarlyStoppingCallback", "EWCCallback", "EvalPrediction", "bitfit_param_groups", "GradualUnfreezingCallback",
    "PredictionOutput", "Trainer", "TrainerCallback", "TrainOutput",
    "TrainerControl", "TrainerState", "TrainingArguments", "count_targets", "decay_parameter_names",
    "discriminative_param_groups", "freeze_backbone", "full_param_groups", "layer_groups", "layer_parameter_names",
    "llrd_param_groups", "load_checkpoint", "save_checkpoint", "trainable_param_groups",
]
