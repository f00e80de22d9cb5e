"""The Trainer: one training loop for every technique in minift, with Hugging Face's names.

    for step in 1..max_steps:
        micro-batches ← the next gradient_accumulation_steps batches of the (per-epoch shuffled) data
        for each micro-batch:  loss_k · n_k / N  →  backward        (N = targets in all the micro-batches)
        clip the gradient norm; optimizer step; scheduler step; zero the gradients
        log / evaluate / save when their strategy says so

Why ``n_k / N``: a model's loss is the *mean* over the targets of its batch (tokens for a language model
or NER, examples for classification). Averaging the micro-batch means gives each micro-batch the same
weight, whatever its number of targets — with uneven lengths that is not the loss of the big batch.
Weighting each mean by its share of the targets, n_k / N, gives exactly Σ(all target losses) / N: the
accumulated gradient then equals the gradient of one big batch (transformers#34191).
"""
from __future__ import annotations

import inspect
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np  # host side: data order, metrics and logs are host data
from tqdm import tqdm

from .. import backend
from ..autograd import no_grad
from ..metrics import EvalPrediction
from ..nn import LayerNorm, Module, RMSNorm
from ..optim import AdamW, clip_grad_norm_, get_scheduler
from .arguments import TrainingArguments
from .callbacks import TrainerControl, TrainerState, is_better
from .checkpointing import load_checkpoint, save_checkpoint

LABEL_KEYS = ("labels", "start_positions", "end_positions")
SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second")  # HF's timings of evaluate and predict


class TrainOutput(NamedTuple):
    """What ``Trainer.train`` returns, with HF's fields: the step reached, the mean training loss of the steps
    this call ran, and ``metrics`` = {train_runtime, train_samples_per_second, train_steps_per_second, train_loss,
    epoch}. The curves are in ``trainer.state.log_history``."""
    global_step: int
    training_loss: float
    metrics: dict


class PredictionOutput(NamedTuple):
    """What ``Trainer.predict`` returns, with HF's fields: the model's outputs over the dataset (an array, or a
    tuple for a span model), the labels (None when the rows have none), and ``metrics``: ``test_loss``, what
    ``compute_metrics`` gives and HF's timings (``test_runtime``, ``test_samples_per_second``,
    ``test_steps_per_second``), each key prefixed ``metric_key_prefix``."""
    predictions: object
    label_ids: object
    metrics: dict


PREDICTED_KEYS = ("logits", "start_logits", "end_logits")  # the outputs minift's predictions are made of


def check_ignore_keys(ignore_keys):
    """HF's ``ignore_keys``: None or a list of output names; the outputs that are the predictions are refused."""
    if ignore_keys is None:
        return
    if not isinstance(ignore_keys, (list, tuple)) or not all(isinstance(k, str) for k in ignore_keys):
        raise TypeError(f"ignore_keys must be a list of output names, e.g. ['past_key_values'], got {ignore_keys!r}")
    predicted = [k for k in ignore_keys if k in PREDICTED_KEYS]
    if predicted:
        raise ValueError(f"ignore_keys names {predicted}: minift's predictions are the logits alone, so leaving "
                         "them out leaves nothing to predict (every other output is left out already)")


class WrapsTrainer:
    """What the TRL-style trainers (``SFTTrainer``, ``DPOTrainer``, ``RewardTrainer``) pass on to the ``Trainer``
    they wrap (``self.trainer``): ``train``, ``state`` and ``evaluate``. ``_eval_rows`` turns a dataset given to
    ``evaluate`` into the wrapped Trainer's rows (SFT fits its prompts and completions; the others take rows as
    they are)."""

    def train(self, **kw):
        return self.trainer.train(**kw)

    @property
    def state(self):
        """The wrapped ``Trainer``'s ``TrainerState``: the log, the step, the best checkpoint."""
        return self.trainer.state

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """The wrapped ``Trainer``'s ``evaluate`` on ``eval_dataset`` (rows like the training rows; default: the
        one given at construction), keys prefixed ``eval_``."""
        rows = None if eval_dataset is None else self._eval_rows(eval_dataset)
        return self.trainer.evaluate(rows, ignore_keys, metric_key_prefix)

    def _eval_rows(self, dataset):
        return dataset


def count_targets(inputs, shifts_labels=False):
    """How many targets the loss of this batch averages over.

    Token labels (B, T): the entries that are not −100 — for a causal LM only from position 1 on, since
    position t predicts token t+1 and the first label is never a target. Sequence labels (B,) or span
    positions: one target per example.
    """
    # TASK train.count_targets: the number of targets a micro-batch's mean loss divides by
    # BEGIN SOLUTION
    labels = inputs.get("labels")
    if labels is None:
        return len(inputs["start_positions"]) if "start_positions" in inputs else len(inputs["input_ids"])
    labels = np.asarray(backend.to_numpy(labels))
    if labels.ndim == 1 or labels.dtype.kind == "f":
        return labels.shape[0]
    if shifts_labels:
        labels = labels[:, 1:]
    return int((labels != -100).sum())
    # END SOLUTION


def decay_parameter_names(model) -> set:
    """Names of the parameters weight decay applies to: every one but biases and norm weights (HF's rule).

    Decay pulls a weight towards 0. A norm's gain should stay near 1 and a bias is a shift; shrinking
    either only hurts, so neither is decayed.
    """
    no_decay = set()
    for module_name, module in model.named_modules():
        if isinstance(module, (LayerNorm, RMSNorm)):
            no_decay.update(f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters())
    return {n for n, _ in model.named_parameters() if not n.endswith("bias") and n not in no_decay}


class Trainer:
    """Train ``model`` on ``train_dataset`` as ``args`` say; evaluate on ``eval_dataset``.

    ``model(**batch)`` must return an output with ``.loss`` when the batch holds labels. Datasets are
    ``minift.data.Dataset`` (or any sequence of row dicts); ``data_collator`` turns a list of rows into a
    batch of arrays. ``compute_metrics(EvalPrediction) -> dict`` adds metrics to each evaluation.
    ``optimizers=(optimizer, scheduler)`` replaces the default AdamW with decay groups and the schedule of
    ``args.lr_scheduler_type`` (use it for discriminative or layer-wise learning rates).
    """

    def __init__(self, model, args=None, train_dataset=None, eval_dataset=None, data_collator=None,
                 compute_metrics=None, callbacks=None, optimizers=(None, None)):
        if not isinstance(model, Module):
            raise TypeError(f"Trainer needs a minift model (a Module), got {type(model).__name__}")
        if args is None:  # HF's default: every option at its default, the files into tmp_trainer/
            args = TrainingArguments(output_dir="tmp_trainer")
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"Trainer's args must be a TrainingArguments (TrainingArguments(**options) turns a dict "
                            f"into one), got {type(args).__name__}")
        self.model = model
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.data_collator = data_collator or default_collate
        self.compute_metrics = compute_metrics
        self.callbacks = list(callbacks or [])
        self.optimizer, self.lr_scheduler = optimizers
        self.state = TrainerState()
        self.control = TrainerControl()
        self.output_dir = Path(args.output_dir)
        self._best_state = None
        self._loss_terms = {}  # name -> values since the last log: what callbacks' loss_term added
        self._trace_rows = None  # a list while the first step is traced (args.trace_first_step)
        self.first_step_trace, self.first_step = None, None

    # ------------------------------------------------------------------ data
    def _model_inputs(self, row: dict) -> dict:
        """Drop the columns ``model.forward`` does not take (text, ids, …), as HF's remove_unused_columns."""
        if not self.args.remove_unused_columns:
            return dict(row)
        accepted = self._forward_parameters()
        kept = {k: v for k, v in row.items() if k in accepted or k in ("label", "label_ids")}
        if "input_ids" not in kept:
            raise KeyError(f"a row of the dataset has no input_ids column (it has {sorted(row)}); tokenize the "
                           "dataset first, e.g. ds.map(lambda b: tok(b['text'], truncation=True), batched=True)")
        return kept

    def _forward_parameters(self) -> set:
        """The named arguments of ``model.forward`` — of the nearest class in the MRO that names any, so a
        subclass or wrapper written as ``forward(self, *args, **kwargs)`` still drops the text columns."""
        if not hasattr(self, "_accepted"):
            self._accepted = set()
            model = self.model.get_base_model() if hasattr(type(self.model), "get_base_model") else self.model
            for cls in type(model).__mro__:  # (a PeftModel passes everything on: ask the model inside it)
                if "forward" in vars(cls):
                    params = inspect.signature(vars(cls)["forward"]).parameters.values()
                    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}
                    if named:
                        self._accepted = named
                        break
        return self._accepted

    def _batch(self, dataset, indices):
        rows = [self._model_inputs(dataset[int(i)]) for i in indices]
        batch = self.data_collator(rows)
        if "label" in batch:  # HF's collators rename label -> labels
            batch["labels"] = batch.pop("label")
        return batch

    def epoch_order(self, epoch: int):
        """The order of the training rows in ``epoch``: a permutation seeded by (seed, epoch) — so a resumed
        run sees exactly the batches the uninterrupted run would have seen."""
        return np.random.default_rng([self.args.seed, epoch]).permutation(len(self.train_dataset))

    def steps_per_epoch(self) -> int:
        micro = len(self.train_dataset) // self.args.per_device_train_batch_size
        if not self.args.dataloader_drop_last and len(self.train_dataset) % self.args.per_device_train_batch_size:
            micro += 1
        return max(1, micro // self.args.gradient_accumulation_steps)

    def _micro_batches(self):
        """Endless (epoch, micro-batch index, batch) from the resume point on."""
        bs = self.args.per_device_train_batch_size
        epoch = int(self.state.epoch)
        start = self.state.micro_batches_seen
        per_epoch = self.steps_per_epoch() * self.args.gradient_accumulation_steps
        while True:
            order = self.epoch_order(epoch)
            for k in range(start, per_epoch):
                idx = order[k * bs: (k + 1) * bs]
                if len(idx) == 0:
                    break
                yield epoch, k, self._batch(self.train_dataset, idx)
            epoch += 1
            start = 0

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self):
        """AdamW over the trainable parameters, without weight decay on biases and norm weights."""
        if self.optimizer is None:
            decay = decay_parameter_names(self.model)
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            if not named and not self.callbacks:
                raise ValueError("the model has no trainable parameter (requires_grad=True): nothing to train")
            groups = [
                {"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay},
                {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
            ]
            groups = [g for g in groups if g["params"]]
            self.optimizer = AdamW(groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1,
                                   self.args.adam_beta2), eps=self.args.adam_epsilon)
        return self.optimizer

    def num_training_steps(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps
        return max(1, math.ceil(self.args.num_train_epochs * self.steps_per_epoch()))

    def create_scheduler(self, total):
        if self.lr_scheduler is None:
            warmup = self.args.warmup_steps or math.ceil(self.args.warmup_ratio * total)
            self.lr_scheduler = get_scheduler(self.args.lr_scheduler_type, self.optimizer, warmup, total)
        return self.lr_scheduler

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint=None) -> TrainOutput:
        """Run the training loop; returns a ``TrainOutput`` (global_step, training_loss, metrics), as HF does;
        ``trainer.state`` (the ``TrainerState``) holds the log. ``resume_from_checkpoint``: a checkpoint
        directory, or True for the latest ``checkpoint-N`` in ``output_dir``.

        ``training_loss`` is the mean of the step losses of this call (NaN if it ran no step); the samples per
        second count full batches, per_device_train_batch_size × gradient_accumulation_steps a step, as HF's."""
        args = self.args
        t_start = time.perf_counter()
        if self.train_dataset is None or len(self.train_dataset) == 0:
            raise ValueError("Trainer.train needs a non-empty train_dataset")
        check_output_dir(self.output_dir)
        backend.seed(args.seed)
        self.create_optimizer()
        total = self.num_training_steps()
        self.create_scheduler(total)
        self.state = TrainerState(max_steps=total)
        if resume_from_checkpoint:
            path = latest_checkpoint(self.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            if path is None:
                raise FileNotFoundError(f"resume_from_checkpoint=True but {self.output_dir} has no checkpoint-N")
            self.state = load_checkpoint(path, self.model, self.optimizer, self.lr_scheduler)
        # the checkpoints save_total_limit may rotate: this run's, and on a resume from output_dir the run's it
        # continues — never those another run left there (a save never deletes what it did not write; one it
        # writes over, checkpoint-N of the same N, becomes this run's, as in HF)
        continues_here = resume_from_checkpoint and Path(path).resolve().parent == self.output_dir.resolve()
        self._own_checkpoints = all_checkpoints(self.output_dir) if continues_here else []
        self._call("on_train_begin", steps_per_epoch=self.steps_per_epoch())
        shifts = bool(getattr(self.model, "shifts_labels", False))
        accumulation = args.gradient_accumulation_steps
        self.model.train()
        self.model.zero_grad()  # a gradient left from before train() (a test backward, a probe) must not enter step 1
        self._trace_rows = [] if args.trace_first_step and self.state.global_step == 0 else None
        log_path = self.output_dir / "log.jsonl"
        log = open(log_path, "a" if resume_from_checkpoint else "w")
        bar = tqdm(total=total, initial=self.state.global_step, desc="train", disable=args.disable_tqdm,
                   ncols=90, mininterval=1.0, file=sys.stderr)
        batches = self._micro_batches()
        running, step_losses = [], []
        try:
            while self.state.global_step < total and not self.control.should_training_stop:
                t0 = time.perf_counter()
                group = [next(batches) for _ in range(accumulation)]
                loss = self.training_step([b for _, _, b in group], shifts)
                if self._trace_rows is not None:
                    self._finish_trace(loss)
                grad_norm = clip_grad_norm_(self.model.parameters(), args.max_grad_norm) if args.max_grad_norm else None
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad()
                self.state.train_seconds += time.perf_counter() - t0
                epoch, k, _ = group[-1]
                epoch_ended = self._advance(epoch, k)
                running.append(loss)
                step_losses.append(loss)
                bar.update(1)
                self._call("on_step_end")
                step = self.state.global_step
                if step % args.logging_steps == 0 or step == total:
                    record = {"step": step, "epoch": round(self.state.epoch, 4), "loss": float(np.mean(running)),
                              "learning_rate": self.lr_scheduler.get_last_lr()[0],
                              "grad_norm": grad_norm, "train_seconds": round(self.state.train_seconds, 3)}
                    if len(self.optimizer.param_groups) > 1:
                        record["learning_rates"] = self.lr_scheduler.get_last_lr()
                    for name, values in self._loss_terms.items():  # the regularizers' share of the loss
                        record[name] = float(np.mean(values))
                    self._loss_terms = {}
                    running = []
                    self._log(record, log)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                if self._due(args.eval_strategy, args.eval_steps, step, epoch_ended) and self.eval_dataset is not None:
                    metrics = self.evaluate()
                    self._log({"step": step, **metrics}, log)
                    self._track_best(metrics)
                if self._due(args.save_strategy, args.save_steps, step, epoch_ended):
                    self.save_checkpoint()
        finally:
            bar.close()
            log.close()
        if args.load_best_model_at_end and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        self._call("on_train_end")
        if args.plot:
            self.plot_curves()
        self.model.eval()
        runtime = time.perf_counter() - t_start
        samples = len(step_losses) * args.per_device_train_batch_size * accumulation
        training_loss = float(np.mean(step_losses)) if step_losses else float("nan")
        metrics = {"train_runtime": round(runtime, 4), "train_samples_per_second": round(samples / runtime, 3),
                   "train_steps_per_second": round(len(step_losses) / runtime, 3), "train_loss": training_loss,
                   "epoch": self.state.epoch}
        return TrainOutput(self.state.global_step, training_loss, metrics)

    def training_step(self, micro_batches, shifts_labels=False) -> float:
        """Forward and backward over the micro-batches of one optimizer step; returns their mean loss.

        Each micro-batch's mean loss is weighted by n_k / N (its share of the targets) before backward, so
        the summed gradient is the gradient of the mean over all N targets; with
        ``accumulation_normalization="mean"`` each by 1/K instead (K micro-batches with a target).
        """
        counts = [count_targets(b, shifts_labels) for b in micro_batches]
        total_targets = sum(counts)
        if total_targets == 0:
            raise ValueError(f"step {self.state.global_step + 1}: no target in the batch (every label is -100)")
        loss_value = 0.0
        for batch, n in zip(micro_batches, counts):
            if n == 0:  # nothing to learn from; its mean loss would be 0/0
                continue
            out = self.model(**batch)
            if out.loss is None:
                raise ValueError(f"the model returned no loss: the batch needs labels (it has {sorted(batch)})")
            value = out.loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"step {self.state.global_step + 1}: the loss is {value}; lower the learning rate "
                    f"(now {self.lr_scheduler.get_last_lr()[0]:.3g}) or check the inputs")
            # TASK train.accumulation_weight: weight each micro-batch's mean loss by its share of the targets
            # BEGIN SOLUTION
            weight = n / total_targets
            # END SOLUTION
            if self.args.accumulation_normalization == "mean":  # the mean of the means (the switch's other side)
                weight = 1.0 / sum(1 for c in counts if c)
            (out.loss * weight).backward()
            loss_value += value * weight
            if self._trace_rows is not None:
                self._trace_rows.append({"part": f"micro-batch {len(self._trace_rows)}", "targets": n, "mean_loss": value,
                                         "weight": weight, "weighted_loss": value * weight})
        for cb in self.callbacks:  # regularizers (EWC, L2 to θ₀): one term per step, its gradient added once
            term = cb.loss_term(self.model)
            if term is not None:
                term.backward()
                self._loss_terms.setdefault(cb.loss_term_name, []).append(term.item())
                loss_value += term.item()
                if self._trace_rows is not None:
                    self._trace_rows.append({"part": cb.loss_term_name, "targets": 0, "mean_loss": term.item(),
                                             "weight": 1.0, "weighted_loss": term.item()})
        return loss_value

    def _finish_trace(self, loss):
        """``first_step_trace``: the first step's micro-batches (targets n_k, mean loss, weight, weighted loss) and
        the regularizers' terms — the weighted losses sum to the step's loss — then the gradient's norm before
        clipping and the learning rate the step uses, in ``first_step``."""
        from ..backend import xp
        from ..inspect.trace import Trace

        grads = [p.grad.reshape(-1) for p in self.model.parameters() if p.grad is not None]
        norm = math.sqrt(sum(float(xp.vdot(g, g)) for g in grads))  # ‖g‖₂ before clipping, as clip_grad_norm_ reports
        rows, self._trace_rows = self._trace_rows, None
        self.first_step_trace = Trace({k: [r[k] for r in rows] for k in ("part", "targets", "mean_loss", "weight",
                                                                         "weighted_loss")})
        self.first_step = {"loss": loss, "grad_norm": norm,
                           "max_grad_norm": self.args.max_grad_norm, "learning_rate": self.lr_scheduler.get_last_lr()[0]}

    def _advance(self, epoch, k) -> bool:
        """Count one optimizer step that ended on micro-batch ``k`` of ``epoch``; True when the epoch ended."""
        per_epoch = self.steps_per_epoch() * self.args.gradient_accumulation_steps
        self.state.global_step += 1
        if k + 1 >= per_epoch:
            self.state.epoch = float(epoch + 1)
            self.state.micro_batches_seen = 0
            self._call("on_epoch_end")
            return True
        self.state.epoch = epoch + (k + 1) / per_epoch
        self.state.micro_batches_seen = k + 1
        return False

    @staticmethod
    def _due(strategy, every, step, epoch_ended) -> bool:
        """Whether an evaluation or a save is due now under ``strategy`` ("no", "steps" or "epoch")."""
        if strategy == "steps":
            return step % every == 0
        return strategy == "epoch" and epoch_ended

    def _log(self, record, file):
        self._call("on_log", logs=record)  # first: a callback may add to the record (pretraining's perplexity)
        self.state.log_history.append(record)
        file.write(json.dumps(record) + "\n")
        file.flush()

    def _track_best(self, metrics):
        key = self.args.metric_for_best_model
        if key is None:
            return
        key = key if key.startswith("eval_") else "eval_" + key
        if key not in metrics:
            raise KeyError(f"metric_for_best_model={self.args.metric_for_best_model!r} is not among the "
                           f"evaluation's metrics {sorted(metrics)}")
        if is_better(metrics[key], self.state.best_metric, self.args.greater_is_better):
            self.state.best_metric = metrics[key]
            self.state.best_step = self.state.global_step
            if self.args.load_best_model_at_end:
                self._best_state = {k: v.copy() for k, v in self.model.state_dict().items()}

    def _call(self, event, **kw):
        for cb in self.callbacks:
            getattr(cb, event)(self.args, self.state, self.control, model=self.model, optimizer=self.optimizer,
                               **kw)

    # ------------------------------------------------------------------ evaluation
    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test") -> PredictionOutput:
        """The model over ``test_dataset``, without gradients: ``PredictionOutput(predictions, label_ids,
        metrics)``, as HF's, the metrics timed as HF's are (``speed_metrics``). A model whose output has no
        logits (``DPOModel``: a loss only) gives ``predictions=None``.

        ``ignore_keys``, as in HF: the names of model outputs to leave out of the predictions (HF gathers
        every output; ``["past_key_values"]`` is the usual one). minift's predictions are the logits alone
        (a span model's start and end logits), so every other output is always left out, and naming the
        logits themselves is refused: that would leave nothing to predict."""
        check_ignore_keys(ignore_keys)
        start = time.perf_counter()
        predictions, label_ids, loss = self._prediction_loop(test_dataset)
        metrics = self._metrics(predictions, label_ids, loss, self.compute_metrics, metric_key_prefix)
        metrics.update(self._speed_metrics(metric_key_prefix, start, len(test_dataset)))
        return PredictionOutput(predictions, label_ids, metrics)

    def _speed_metrics(self, prefix, start, *sizes) -> dict:
        """HF's ``speed_metrics`` for a run that began at ``start`` over datasets of ``sizes`` rows:
        ``{prefix}_runtime`` (seconds), rows and batches a second, rounded as HF's."""
        runtime = time.perf_counter() - start
        n_rows = sum(sizes)
        batches = sum(-(-n // self.args.per_device_eval_batch_size) for n in sizes)
        return dict(zip((f"{prefix}_{name}" for name in SPEED_METRICS),
                        (round(runtime, 4), round(n_rows / runtime, 3), round(batches / runtime, 3))))

    def _prediction_loop(self, dataset):
        """(predictions, label_ids, mean loss over the targets or None), the batches run in order."""
        if dataset is None or len(dataset) == 0:
            raise ValueError("evaluation needs a non-empty dataset")
        shifts = bool(getattr(self.model, "shifts_labels", False))
        was_training = self.model.training
        self.model.eval()
        preds, labels, loss_sum, targets = [], [], 0.0, 0
        bs = self.args.per_device_eval_batch_size
        try:
            with no_grad():
                for start in range(0, len(dataset), bs):
                    batch = self._batch(dataset, range(start, min(start + bs, len(dataset))))
                    out = self.model(**batch)
                    if getattr(out, "start_logits", None) is not None:
                        preds.append((backend.to_numpy(out.start_logits.data), backend.to_numpy(out.end_logits.data)))
                    elif getattr(out, "logits", None) is not None:  # a loss-only model (DPO's) has none
                        preds.append(backend.to_numpy(out.logits.data))
                    label_keys = [k for k in LABEL_KEYS if k in batch]
                    if label_keys:
                        labels.append(tuple(np.asarray(backend.to_numpy(batch[k])) for k in label_keys))
                    if out.loss is not None:
                        n = count_targets(batch, shifts)
                        if n:
                            loss_sum += out.loss.item() * n
                            targets += n
        finally:
            self.model.train(was_training)
        predictions = _concat(preds) if preds else None
        label_ids = _concat(labels) if labels else None
        if isinstance(label_ids, tuple) and len(label_ids) == 1:
            label_ids = label_ids[0]
        return predictions, label_ids, (loss_sum / targets if targets else None)

    @staticmethod
    def _metrics(predictions, label_ids, loss, compute_metrics, prefix=None) -> dict:
        """{loss, what ``compute_metrics`` gives}, numbers as floats, each key prefixed ``prefix_`` if given."""
        metrics = {} if loss is None else {"loss": loss}
        if compute_metrics is not None and label_ids is not None:
            metrics.update(compute_metrics(EvalPrediction(predictions, label_ids)))
        return {f"{prefix}_{k}" if prefix else k: float(v) if isinstance(v, (int, float, np.floating)) else v
                for k, v in metrics.items()}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Loss and ``compute_metrics`` on ``eval_dataset`` (default: the one given to the Trainer), each key
        prefixed ``eval_`` as in HF, and the run's timings; e.g. {"eval_loss": 0.41, "eval_accuracy": 0.83,
        "eval_runtime": 1.2, "eval_samples_per_second": 166.7, "eval_steps_per_second": 5.8}. HF's parameters,
        in HF's order (``ignore_keys``: see ``predict``)."""
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        metrics = self.predict(dataset, ignore_keys, metric_key_prefix).metrics
        self._call("on_evaluate", metrics=metrics)
        return metrics

    # ------------------------------------------------------------------ checkpoints and curves
    def save_checkpoint(self):
        path = self.output_dir / f"checkpoint-{self.state.global_step}"
        save_checkpoint(path, self.model, self.optimizer, self.lr_scheduler, self.state)
        self._call("on_save")
        own = getattr(self, "_own_checkpoints", [])  # (save_checkpoint called outside train(): nothing to rotate)
        own[:] = sorted({*own, path}, key=lambda p: int(p.name.split("-")[1]))
        if self.args.save_total_limit:
            for old in own[:-self.args.save_total_limit]:
                if (old / "trainer_state.json").exists():  # a checkpoint, as this Trainer writes them
                    shutil.rmtree(old)
                own.remove(old)
        return path

    def plot_curves(self):
        from ..plotting import plot_curves

        logs = [r for r in self.state.log_history if "loss" in r and "eval_loss" not in r]
        if len(logs) >= 2:
            plot_curves({"training loss": [r["loss"] for r in logs]}, self.output_dir / "loss.png",
                        title="training loss", xlabel=f"logging step (every {self.args.logging_steps} steps)")
            plot_curves({"learning rate": [r["learning_rate"] for r in logs]}, self.output_dir / "learning_rate.png",
                        title="learning rate", xlabel=f"logging step (every {self.args.logging_steps} steps)",
                        ylabel="learning rate")
        evals = [r for r in self.state.log_history if any(k.startswith("eval_") for k in r)]
        if len(evals) >= 2:
            keys = [k for k in evals[0] if k.startswith("eval_") and isinstance(evals[0][k], float)
                    and not k.endswith(SPEED_METRICS)]  # the scores, not the seconds
            plot_curves({k: [r.get(k, float("nan")) for r in evals] for k in keys}, self.output_dir / "eval.png",
                        title="evaluation", xlabel="evaluation", ylabel="value")


def _concat(chunks):
    """Concatenate per-batch arrays along the batch axis; token-level arrays of different lengths are
    padded with −100 first (HF's convention), tuples (start and end logits) element by element."""
    if isinstance(chunks[0], tuple):
        return tuple(_concat([c[i] for c in chunks]) for i in range(len(chunks[0])))
    if chunks[0].ndim >= 2 and len({c.shape[1] for c in chunks}) > 1:
        width = max(c.shape[1] for c in chunks)
        padded = []
        for c in chunks:
            pad = [(0, 0), (0, width - c.shape[1])] + [(0, 0)] * (c.ndim - 2)
            padded.append(np.pad(c, pad, constant_values=-100))
        chunks = padded
    return np.concatenate(chunks, axis=0)


def default_collate(rows):
    """Stack each column of equally long rows into an array (no padding: use DataCollatorWithPadding)."""
    keys = rows[0].keys()
    try:
        return {k: np.asarray([r[k] for r in rows]) for k in keys}
    except ValueError as e:
        raise ValueError(f"rows of different lengths cannot be stacked ({e}); pass "
                         "data_collator=minift.data.DataCollatorWithPadding(tokenizer)") from None


def all_checkpoints(output_dir) -> list:
    """``checkpoint-N`` directories in ``output_dir``, oldest (smallest N) first."""
    d = Path(output_dir)
    found = [p for p in d.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir):
    found = all_checkpoints(output_dir)
    return found[-1] if found else None


CREATED_OUTPUT_DIRS = []  # the folders check_output_dir made, innermost first (remove_empty_output_dirs)


def file_in_the_way(path):
    """The file that keeps ``path`` from being a directory — ``path`` itself or a folder above it — or None."""
    path = Path(path)
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def check_output_dir(path: Path, what="output directory", flag="--out (output_dir)"):
    """Make sure ``path`` can be written before any work starts (a probe file is created and removed): trying
    is the only reliable test, since permission bits say nothing for root, a read-only mount or a path below a
    regular file. The folders it has to create are remembered, so that a run that then fails (a model that
    does not load, a second directory that cannot be written) can take them back if nothing was written into
    them (``remove_empty_output_dirs``). ``what`` and ``flag`` name the directory in the error."""
    path = Path(path)
    blocked = file_in_the_way(path)
    if blocked is not None:
        raise NotADirectoryError(f"cannot use {path} as the {what}: {blocked} is a file; choose another {flag}")
    new = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        CREATED_OUTPUT_DIRS.extend(new)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to the {what} {path} ({e.strerror or e}); choose another {flag} or make it "
                      "writable") from None


def remove_empty_output_dirs():
    """Remove the folders ``check_output_dir`` created that are still empty (never one holding a file)."""
    while CREATED_OUTPUT_DIRS:
        d = CREATED_OUTPUT_DIRS.pop(0)
        try:
            d.rmdir()  # only succeeds on an empty folder
        except OSError:
            pass
