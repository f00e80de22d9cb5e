"""Multi-task fine-tuning: one shared encoder, one head per task, and which task each step trains on.

    body ──┬── heads["sentiment"]: pooler → classifier      (one label per text)
           └── heads["ner"]:       classifier on each token (one label per token)

* ``MultiTaskModel(body, heads)``: the heads are minift's own task models (``TransformerForSequenceClassification``,
  ``TransformerForTokenClassification``, ``TransformerForQuestionAnswering``) built on **the same** backbone
  object, so ``heads[t]`` alone is a complete single-task model that saves and loads like any other, and
  ``forward(task=t, …)`` is exactly ``heads[t](…)``. The body's parameters are one set: the gradient of
  every task's loss flows into them; a head only learns from its own task.
* ``MultiTaskSampler(sizes, strategy, temperature, seed)``: the task of each optimizer step. With n_i training
  examples for task i,

      proportional:  p_i = n_i / Σ_j n_j              (what shuffling the concatenated data gives)
      temperature:   p_i = n_i^{1/T} / Σ_j n_j^{1/T}  (T = 1: proportional; T → ∞: uniform)
      round_robin:   tasks in turn, 1, 2, …, K, 1, 2, …  (each 1/K of the steps, with no randomness)

  Proportional sampling starves a small task (here NER has 1,836 tweets against 8,452 reviews: 18 % of the
  steps); T > 1 flattens the distribution towards uniform, as in multilingual training (Arivazhagan et al.,
  2019, where α = 1/T; mT5 used α = 0.3).
* ``MultiTaskTrainer``: the ``Trainer`` with a dict of datasets. Each optimizer step draws one task from the
  sampler and takes **all** of its ``gradient_accumulation_steps`` micro-batches from that task (so the
  n_k/N weighting of the micro-batches stays the per-target mean of one task's loss). The log records carry
  ``loss_<task>`` (the mean loss of that task's steps since the last record) and ``steps_<task>`` (its steps
  so far); ``evaluate`` gives ``eval_<task>_<metric>`` for every task, their means (below) and ``eval_score``.

Why share a body: each task's data also trains the features the others read (positive transfer: the
sentiment reviews teach the encoder about English the NER tweets are too few to teach), and one model serves
both. The risk is **negative transfer**: the tasks pull the shared weights different ways, and a task can end
up worse than it would alone with the same number of its own steps. Lesson 13 measures both.
"""
from __future__ import annotations

import math
import time
import zlib
from collections import Counter

import numpy as np  # host side: task draws, data order and metrics are host data, as in the Trainer

from .nn import Module, ModuleDict
from .train.trainer import PredictionOutput, Trainer, check_ignore_keys

STRATEGIES = ("round_robin", "proportional", "temperature")


# ----------------------------------------------------------------------------- sampling
def temperature_probabilities(sizes, temperature):
    """Temperature sampling over tasks of sizes n_1..n_K (an array of positive numbers):

        p_i = n_i^{1/T} / Σ_j n_j^{1/T}

    T = 1 gives proportional sampling n_i / Σ n_j; T → ∞ gives the uniform 1/K; T < 1 sharpens towards the
    largest task. Computed in log space, p = softmax(log n / T), so that a small T on large sizes cannot
    overflow (10⁶^{1/0.01} = 10⁶⁰⁰ is not a float64): subtracting the largest logit before exp changes nothing
    after normalization. Returns a float64 array of K probabilities summing to 1.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    # TASK multitask.temperature_probabilities: the task probabilities p_i ∝ n_i^(1/T)
    # BEGIN SOLUTION
    logits = np.log(sizes) / temperature  # log n_i^{1/T}
    weights = np.exp(logits - logits.max())  # n_i^{1/T} / max_j n_j^{1/T}: at most 1, no overflow
    return weights / weights.sum()
    # END SOLUTION


class MultiTaskSampler:
    """Which task each training step comes from.

    ``sizes``: {task: number of training examples n_i}, in the order round-robin visits them. ``strategy``:

    * ``"round_robin"``: tasks in turn (deterministic; each gets 1/K of the steps),
    * ``"proportional"``: draw task i with p_i = n_i / Σ_j n_j,
    * ``"temperature"``: draw task i with p_i = n_i^{1/T} / Σ_j n_j^{1/T} (``temperature`` = T > 0; T = 1 is
      proportional, T = ∞ is uniform).

    ``probabilities`` ({task: p_i}) is the long-run share of the steps each task gets (1/K for round-robin).
    Draws are reproducible: a sampler with the same ``seed`` gives the same sequence, however it is asked
    (``next(sampler)`` one at a time or ``sample(n)`` at once: each draw is one uniform u from the seeded
    generator, and the task is the first i whose cumulative probability exceeds u). ``reset()`` starts the
    sequence over.
    """

    def __init__(self, sizes: dict, strategy: str = "round_robin", temperature: float = 2.0, seed: int = 0):
        if not isinstance(sizes, dict) or not sizes:
            raise ValueError(f"sizes must be a non-empty dict {{task: number of training examples}}, got {sizes!r}")
        for task, n in sizes.items():
            if not isinstance(task, str) or not task:
                raise ValueError(f"task names must be non-empty strings, got {task!r}")
            if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(n) or n <= 0:
                raise ValueError(f"the size of task {task!r} must be a finite number > 0 (its number of training "
                                 f"examples), got {n!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r}; expected one of {list(STRATEGIES)}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
                or math.isnan(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0 (1: proportional, larger: flatter, inf: uniform), "
                             f"got {temperature!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.tasks = list(sizes)
        self.sizes = {t: sizes[t] for t in self.tasks}
        self.strategy = strategy
        self.temperature = float(temperature)
        self.seed = int(seed)
        n = np.array([sizes[t] for t in self.tasks], dtype=np.float64)
        if strategy == "round_robin":
            p = np.full(len(n), 1.0 / len(n))
        elif strategy == "proportional":
            p = n / n.sum()
        else:
            p = temperature_probabilities(n, self.temperature)
        self.probabilities = {t: float(v) for t, v in zip(self.tasks, p)}
        self._cdf = np.cumsum(p)
        self._cdf[-1] = 1.0  # rounding must not leave a u in [Σp, 1) without a task
        self.reset()

    def reset(self):
        """Start the sequence of draws over (the same sequence again)."""
        self._rng = np.random.default_rng(self.seed)
        self._drawn = 0

    def sample(self, n: int) -> list:
        """The next ``n`` tasks of the sequence."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        if self.strategy == "round_robin":
            picks = (self._drawn + np.arange(n)) % len(self.tasks)
        else:
            u = self._rng.random(n)  # (n,) uniforms in [0, 1)
            picks = np.searchsorted(self._cdf, u, side="right")  # the first i with cdf_i > u: P(i) = p_i
        self._drawn += n
        return [self.tasks[int(i)] for i in picks]

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return self.sample(1)[0]

    def __repr__(self):
        shown = ", ".join(f"{t}: {p:.3f}" for t, p in self.probabilities.items())
        extra = f", temperature={self.temperature:g}" if self.strategy == "temperature" else ""
        return f"MultiTaskSampler({self.strategy}{extra}, seed={self.seed}; p = {{{shown}}})"


# ----------------------------------------------------------------------------- the model
class MultiTaskModel(Module):
    """One shared backbone (``model``, as in minift's heads) and a head per task (``heads``).

    ``heads``: {task: head}. A head is a minift task model built on ``body`` —
    ``TransformerForSequenceClassification(body.config, num_labels=2, backbone=body)`` — or a callable
    ``head(body.config, backbone=body)`` that builds one (a head class, or a ``functools.partial`` of one with
    its options). A head built on another backbone is refused: it would not share anything.

    ``forward(task, input_ids, attention_mask, token_type_ids, labels, …)`` runs the body and that task's head
    and returns the head's output (``.logits``, ``.loss`` when labels are given). ``heads[task]`` is a
    complete single-task model (save it with ``save_pretrained`` and load it with ``AutoModelFor…``).
    Parameters are listed once: the body's as ``model.…``, each head's own as ``heads.<task>.…``.
    """

    def __init__(self, body, heads: dict):
        super().__init__()
        if not isinstance(body, Module) or not hasattr(body, "config"):
            raise TypeError(f"body must be a minift backbone (a TransformerModel), got {type(body).__name__}")
        if not isinstance(heads, dict) or not heads:
            raise ValueError(f"heads must be a non-empty dict {{task: head}}, got {heads!r}")
        built = {}
        for task, head in heads.items():
            if not isinstance(task, str) or not task or "." in task:
                raise ValueError(f"task names must be non-empty strings without '.', got {task!r}")
            if not isinstance(head, Module):
                if not callable(head):
                    raise TypeError(f"head {task!r} must be a task model built on the body or a callable "
                                    f"(config, backbone=body) -> one, got {type(head).__name__}")
                head = head(body.config, backbone=body)
            if getattr(head, "model", None) is not body:
                raise ValueError(f"head {task!r} ({type(head).__name__}) runs its own backbone, not the shared body: "
                                 f"build it with backbone=body, e.g. {type(head).__name__}(body.config, ..., "
                                 "backbone=body)")
            built[task] = head
        self.config = body.config
        self.model = body  # registered first: the body's parameters are named model.…, each head's own after
        self.heads = ModuleDict(built)

    @property
    def tasks(self) -> list:
        return list(self.heads.keys())

    def forward(self, task, input_ids, attention_mask=None, token_type_ids=None, labels=None, start_positions=None,
                end_positions=None, **kw):
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model has heads for {self.tasks}")
        targets = {"labels": labels, "start_positions": start_positions, "end_positions": end_positions}
        extra = {k: v for k, v in targets.items() if v is not None}
        return self.heads[task](input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **extra, **kw)

    def __repr__(self):
        body = repr(self.model).replace("\n", "\n  ")
        lines = [f"{type(self).__name__}(", f"  (model): {body}", "  (heads):"]
        for task, head in self.heads.items():
            own = [f"({name}): {repr(m)}" for name, m in head.named_children() if m is not self.model]
            lines.append(f"    ({task}): {type(head).__name__}(model=<shared>, " + ", ".join(own) + ")")
        return "\n".join(lines) + "\n)"


# ----------------------------------------------------------------------------- training
class MultiTaskTrainer(Trainer):
    """The ``Trainer`` over several tasks: ``train_dataset``, ``eval_dataset``, ``data_collator`` and
    ``compute_metrics`` are dicts {task: …} (a single collator serves every task), ``model`` a
    ``MultiTaskModel`` with a head for each task.

    Every optimizer step: ``task = next(sampler)``, then that task's next ``gradient_accumulation_steps``
    micro-batches (each task has its own epochs, shuffled with (seed, task name, epoch)); forward, backward,
    clip, step — the ``Trainer``'s loop, unchanged. ``sampler`` defaults to round-robin over the training
    tasks, seeded with ``args.seed``. One "epoch" here is as many micro-batches as all the tasks hold together.

    ``evaluate()`` (on the dict ``eval_dataset``) returns for every task ``eval_<task>_loss`` and
    ``eval_<task>_<metric>`` from that task's ``compute_metrics``; then macro averages, each task counting once
    whatever its size (as the GLUE score): ``eval_loss`` (the mean of the task losses), ``eval_<metric>`` for
    each metric every task reports (beware: "f1" is a binary F1 for a classifier and an entity F1 for NER —
    the mean mixes two different quantities), and ``eval_score``, the mean of each task's
    ``primary_metrics[task]`` (e.g. {"sentiment": "accuracy", "ner": "f1"}) when given. ``evaluate(ds,
    task=t)`` evaluates one task's dataset with the plain keys (``eval_loss``, ``eval_accuracy``, …).
    """

    def __init__(self, model, args, train_dataset=None, eval_dataset=None, data_collator=None, compute_metrics=None,
                 sampler: MultiTaskSampler | None = None, primary_metrics: dict | None = None, callbacks=None,
                 optimizers=(None, None)):
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"MultiTaskTrainer trains a MultiTaskModel, got {type(model).__name__}")
        tasks = model.tasks
        train_dataset = self._per_task("train_dataset", train_dataset, tasks)
        eval_dataset = self._per_task("eval_dataset", eval_dataset, tasks)
        for task, ds in (train_dataset or {}).items():
            if len(ds) == 0:
                raise ValueError(f"the training set of task {task!r} is empty")
        if data_collator is None or isinstance(data_collator, dict):
            collators = self._per_task("data_collator", data_collator, tasks) or {}
        else:
            collators = {t: data_collator for t in tasks}
        self.compute_metrics_by_task = self._per_task("compute_metrics", compute_metrics, tasks) or {}
        self.primary_metrics = self._per_task("primary_metrics", primary_metrics, tasks) or {}
        super().__init__(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=None,
                         compute_metrics=None, callbacks=callbacks, optimizers=optimizers)
        self.collators = {t: collators.get(t) or self.data_collator for t in tasks}
        if sampler is None and train_dataset:
            sampler = MultiTaskSampler({t: len(ds) for t, ds in train_dataset.items()}, seed=args.seed)
        if sampler is not None and train_dataset and set(sampler.tasks) != set(train_dataset):
            raise ValueError(f"the sampler draws tasks {sampler.tasks} but the training sets are {list(train_dataset)}")
        self.sampler = sampler
        self._task = None  # the task of the batches being made (training step or evaluation)
        self._task_losses = {}  # task -> step losses since the last log record
        self.task_steps = Counter()  # task -> optimizer steps so far

    @staticmethod
    def _per_task(name, value, tasks):
        """``value`` as a {task: …} dict over the model's tasks (None stays None)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict {{task: …}} over the tasks {tasks}, got {type(value).__name__}")
        unknown = [t for t in value if t not in tasks]
        if unknown:
            raise ValueError(f"{name} names tasks {unknown} that the model has no head for (its tasks: {tasks})")
        return dict(value)

    # ------------------------------------------------------------------ data
    def _batch(self, dataset, indices):
        """A batch of ``self._task``'s rows, collated by that task's collator, with ``task`` set."""
        rows = [self._model_inputs(dataset[int(i)]) for i in indices]
        batch = self.collators[self._task](rows)
        if "label" in batch:  # HF's collators rename label -> labels
            batch["labels"] = batch.pop("label")
        batch["task"] = self._task
        return batch

    def _micro_batches_per_epoch(self, task) -> int:
        n, bs = len(self.train_dataset[task]), self.args.per_device_train_batch_size
        return max(1, n // bs if self.args.dataloader_drop_last else math.ceil(n / bs))

    def steps_per_epoch(self) -> int:
        micro = sum(self._micro_batches_per_epoch(t) for t in self.train_dataset)
        return max(1, micro // self.args.gradient_accumulation_steps)

    def task_order(self, task, epoch: int):
        """The order of ``task``'s training rows in its ``epoch``: a permutation seeded by (seed, the task's name,
        epoch) — so a task's batches come in the same order whichever tasks train beside it (alone too)."""
        key = zlib.crc32(task.encode())  # a stable number for the name (Python's hash() changes per process)
        return np.random.default_rng([self.args.seed, key, epoch]).permutation(len(self.train_dataset[task]))

    def _task_micro_batches(self, task, skip):
        """Endless batches of ``task``, after the first ``skip`` (a resumed run continues where it stopped)."""
        bs, per_epoch = self.args.per_device_train_batch_size, self._micro_batches_per_epoch(task)
        epoch, k = divmod(skip, per_epoch)
        while True:
            order = self.task_order(task, epoch)
            for j in range(k, per_epoch):
                self._task = task
                yield self._batch(self.train_dataset[task], order[j * bs: (j + 1) * bs])
            epoch, k = epoch + 1, 0

    def _micro_batches(self):
        """(epoch, micro-batch index in the epoch, batch): each step's micro-batches all from one drawn task.
        Resuming replays the sampler's first ``global_step`` draws to find where each task stands."""
        accumulation = self.args.gradient_accumulation_steps
        per_epoch = self.steps_per_epoch() * accumulation
        self.sampler.reset()
        done = Counter(self.sampler.sample(self.state.global_step))
        self.task_steps = Counter(done)
        streams = {t: self._task_micro_batches(t, done[t] * accumulation) for t in self.train_dataset}
        seen = self.state.global_step * accumulation
        for task in self.sampler:
            for _ in range(accumulation):
                epoch, k = divmod(seen, per_epoch)
                yield epoch, k, next(streams[task])
                seen += 1

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint=None):
        if not self.train_dataset:
            raise ValueError("MultiTaskTrainer.train needs train_dataset: a dict {task: non-empty dataset}")
        self._task_losses = {}
        return super().train(resume_from_checkpoint)

    def training_step(self, micro_batches, shifts_labels=False) -> float:
        task = micro_batches[0]["task"]
        loss = super().training_step(micro_batches, shifts_labels)
        self._task_losses.setdefault(task, []).append(loss)
        self.task_steps[task] += 1
        return loss

    def _log(self, record, file):
        if "loss" in record and not any(k.startswith("eval_") for k in record):  # a training record
            for task in self.train_dataset:
                if self._task_losses.get(task):
                    record[f"loss_{task}"] = float(np.mean(self._task_losses[task]))
                record[f"steps_{task}"] = self.task_steps[task]
            self._task_losses = {}
        super()._log(record, file)

    # ------------------------------------------------------------------ evaluation
    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test", *, task=None):
        """``PredictionOutput(predictions, label_ids, metrics)`` of ``task``'s head over ``test_dataset``; the
        metrics are that task's loss and ``compute_metrics``. The ``Trainer``'s parameters in HF's order, then
        ``task`` by keyword."""
        check_ignore_keys(ignore_keys)
        start = time.perf_counter()
        predictions, label_ids, loss = self._predict_task(task, test_dataset)
        metrics = self._metrics(predictions, label_ids, loss, self.compute_metrics_by_task.get(task), metric_key_prefix)
        metrics.update(self._speed_metrics(metric_key_prefix, start, len(test_dataset)))
        return PredictionOutput(predictions, label_ids, metrics)

    def _predict_task(self, task, dataset):
        if task not in self.model.tasks:
            raise ValueError(f"predict needs task= one of {self.model.tasks}, got {task!r}")
        self._task = task
        return self._prediction_loop(dataset)

    def _evaluate_task(self, task, dataset) -> dict:
        """``task``'s loss and metrics over ``dataset``, unprefixed."""
        return self._metrics(*self._predict_task(task, dataset), self.compute_metrics_by_task.get(task))

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", *, task=None):
        """Per-task metrics and their macro averages (class docstring); with ``task`` (by keyword), one task's plain
        metrics. Either way the run's timings too (``eval_runtime``…, over every task's rows)."""
        check_ignore_keys(ignore_keys)
        start = time.perf_counter()
        if task is not None:
            dataset = self.eval_dataset.get(task) if eval_dataset is None and self.eval_dataset else eval_dataset
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in self._evaluate_task(task, dataset).items()}
            metrics.update(self._speed_metrics(metric_key_prefix, start, len(dataset)))
            self._call("on_evaluate", metrics=metrics)
            return metrics
        datasets = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(datasets, dict) or not datasets:
            raise ValueError("MultiTaskTrainer.evaluate needs a dict {task: dataset} (or task=… with one dataset), "
                             f"got {type(datasets).__name__}")
        datasets = self._per_task("eval_dataset", datasets, self.model.tasks)
        by_task = {t: self._evaluate_task(t, ds) for t, ds in datasets.items()}
        metrics = {f"{metric_key_prefix}_{t}_{k}": v for t, m in by_task.items() for k, v in m.items()}
        shared = [k for k in next(iter(by_task.values())) if all(isinstance(m.get(k), float) for m in by_task.values())]
        for k in shared:  # macro average: each task once
            metrics[f"{metric_key_prefix}_{k}"] = float(np.mean([m[k] for m in by_task.values()]))
        if self.primary_metrics and set(self.primary_metrics) >= set(by_task):
            for t in by_task:
                if self.primary_metrics[t] not in by_task[t]:
                    raise KeyError(f"primary metric {self.primary_metrics[t]!r} of task {t!r} is not among its "
                                   f"metrics {sorted(by_task[t])}")
            metrics[f"{metric_key_prefix}_score"] = float(np.mean([by_task[t][self.primary_metrics[t]] for t in by_task]))
        metrics.update(self._speed_metrics(metric_key_prefix, start, *(len(ds) for ds in datasets.values())))
        self._call("on_evaluate", metrics=metrics)
        return metrics

    def plot_curves(self):
        super().plot_curves()
        from .plotting import plot_curves

        logs = [r for r in self.state.log_history if "loss" in r and not any(k.startswith("eval_") for k in r)]
        curves = {f"loss ({t})": [r.get(f"loss_{t}", float("nan")) for r in logs] for t in self.train_dataset}
        if len(logs) >= 2:
            plot_curves(curves, self.output_dir / "loss_per_task.png", title="training loss per task",
                        xlabel=f"logging step (every {self.args.logging_steps} steps)")


def per_task_curves(log_history, tasks):
    """{task: (steps, losses)} from a ``MultiTaskTrainer``'s log: each task's mean loss at each log record
    where it had steps — the curves to plot per task."""
    out = {}
    for t in tasks:
        rows = [r for r in log_history if f"loss_{t}" in r]
        out[t] = (np.array([r["step"] for r in rows]), np.array([r[f"loss_{t}"] for r in rows]))
    return out


__all__ = ["MultiTaskModel", "MultiTaskSampler", "MultiTaskTrainer", "STRATEGIES", "per_task_curves",
           "temperature_probabilities"]
