"""``minift continual``: a model fine-tuned on one task after another, with or without a remedy for forgetting.

    minift continual minilm sentiment,sentiment-tweets,sentiment-amazon,sentiment-nyt --method ewc \\
        --steps-per-task 100 --out runs/continual-ewc

Domain shift: the four sentiment sources (movie reviews → tweets → Amazon → New York Times) share the labels
negative/positive, so one classifier head serves them all. After each task the model is evaluated on
every task's test split: row i of the accuracy matrix R. Methods (``minift.continual`` has the math):

* ``naive``: plain fine-tuning, task after task — the forgetting to beat;
* ``ewc`` / ``ewc-true``: EWC with the empirical / the true Fisher, one penalty per past task;
* ``online-ewc``: one anchor and a running Fisher F ← γF + F_new;
* ``l2``: the pull to the last task's weights without a Fisher (F = 1);
* ``replay``: a reservoir of earlier tasks' training rows, a ``replay_fraction`` of each new task's data;
* ``lora``: one LoRA adapter (with its own classifier copy) per task on the frozen base; a task is
  evaluated with its own adapter (the task's identity is known at test time), a task not yet trained
  with the newest adapter.

Results: ``OUT/results.json`` with R, ``continual_summary(R)`` (average accuracy, backward transfer,
forgetting) and the seconds spent training and estimating Fishers.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import backend
from .finetune import SENTIMENT_TASKS, check_max_length
from .models.checkpoint import write_text_atomically

METHODS = ("naive", "ewc", "ewc-true", "online-ewc", "l2", "replay", "lora")


@dataclass
class ContinualConfig:
    model: str = "minilm"
    tasks: list = field(default_factory=lambda: list(SENTIMENT_TASKS))
    method: str = "naive"
    steps_per_task: int = 100
    batch_size: int = 16
    learning_rate: float | None = None  # default: 5e-4 for lora, 5e-5 otherwise
    max_length: int = 64
    ewc_lambda: float = 1e5  # the Fisher's entries are tiny (1e-9 … 1e-3): λ makes the springs felt (1e7 is too stiff)
    l2_lambda: float = 0.01  # Σ (θ − θ*)² over 22.7M weights: a small λ gives a penalty like EWC's
    online_gamma: float = 1.0
    fisher_examples: int = 100  # training rows of each task on which its Fisher is estimated (≤ train_limit)
    replay_capacity: int = 1000
    replay_fraction: float = 0.25
    lora_r: int = 8
    train_limit: int | None = None
    eval_limit: int | None = 400  # test rows per task (all: None)
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        known = SENTIMENT_TASKS + ("ner",)
        if any(t not in known for t in self.tasks) or len(self.tasks) < 2 or len(set(self.tasks)) < len(self.tasks):
            raise ValueError(f"tasks must be two or more different ones of {list(known)}, got {self.tasks!r}")
        if self.method == "replay" and "ner" in self.tasks:
            raise ValueError("replay mixes earlier rows into the new task's batches, so every task must share the "
                             "head: replay runs the sentiment (domain-shift) tasks only, not ner")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        for name in ("steps_per_task", "batch_size", "max_length", "fisher_examples", "replay_capacity", "lora_r"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.learning_rate is None:
            self.learning_rate = 5e-4 if self.method == "lora" else 5e-5
        for name in ("learning_rate", "ewc_lambda", "l2_lambda"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.replay_fraction, (int, float)) and 0 <= self.replay_fraction < 1):
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction!r}")
        if not (isinstance(self.online_gamma, (int, float)) and 0 < self.online_gamma <= 1):  # before any loading
            raise ValueError(f"online_gamma must be in (0, 1] (F ← γF + F_new), got {self.online_gamma!r}")
        if self.out is None:
            self.out = str(Path("runs") / f"continual-{self.method}")


def _rows(ds, limit=None):
    n = len(ds) if limit is None else min(limit, len(ds))
    return [ds[i] for i in range(n)]


def run_continual(cfg: ContinualConfig, quiet=False, return_model=False):
    """Train on ``cfg.tasks`` in order with ``cfg.method``; returns (and writes) the results with R.

    ``return_model=True``: returns ``(results, model)``, the model of the last task as it is at the end.
    """
    from . import tokenization
    from .continual import EWC, L2Anchor, ReplayBuffer, continual_summary
    from .data import load_dataset
    from .data.alignment import tokenize_and_align_labels
    from .data.collators import DataCollatorForTokenClassification, DataCollatorWithPadding
    from .metrics import EvalPrediction, token_classification_metrics
    from .models.auto import AutoModelForSequenceClassification
    from .models.heads import TransformerForTokenClassification
    from .optim import AdamW
    from .train import EWCCallback, Trainer, TrainingArguments, full_param_groups, trainable_param_groups
    from .train.trainer import check_output_dir

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)  # before anything is loaded or trained
    backend.seed(cfg.seed)
    tokenizer = tokenization.from_pretrained(cfg.model)

    # ---- data: each task's train and test rows, tokenized, and its collator
    data, collators, ner_names = {}, {}, None
    for task in cfg.tasks:
        raw = load_dataset(task)
        if task == "ner":
            ner_names = raw["train"].features["ner_tags"].feature.names
            encode = lambda b: tokenize_and_align_labels(b, tokenizer=tokenizer, max_length=cfg.max_length,  # noqa: E731
                                                         label_names=ner_names)
            columns = raw["train"].column_names
            collators[task] = DataCollatorForTokenClassification(tokenizer)
        else:
            encode = lambda b: tokenizer(b["text"], truncation=True, max_length=cfg.max_length)  # noqa: E731
            columns = ["text"]
            collators[task] = DataCollatorWithPadding(tokenizer)
        data[task] = {split: raw[split].map(encode, batched=True, remove_columns=columns) for split in ("train", "test")}

    # ---- models: the sentiment tasks share one classifier; NER gets its own head on the same encoder
    def new_models():
        sentiment = AutoModelForSequenceClassification.from_pretrained(cfg.model, id2label={0: "negative", 1: "positive"})
        ner = (TransformerForTokenClassification(sentiment.config, backbone=sentiment.model,
                                                 id2label=dict(enumerate(ner_names))).train() if ner_names else None)
        return {task: ner if task == "ner" else sentiment for task in cfg.tasks}

    models = new_models()
    check_max_length(models[cfg.tasks[0]].config, cfg.max_length, cfg.model)
    if cfg.method == "lora":  # nothing shared is trained: one adapter (and head copy) per task on a frozen base
        from .peft import LoraConfig, get_peft_model

        def lora_config(saved):
            return LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules=["q_proj", "v_proj"],
                              modules_to_save=saved)

        first_of_kind = {}
        for i, task in enumerate(cfg.tasks):
            kind = "ner" if task == "ner" else "sentiment"
            saved = ["classifier"] if kind == "ner" else ["classifier", "pooler"]
            if kind not in first_of_kind:
                fresh = new_models()[task] if first_of_kind else models[task]  # a task kind's own base copy
                first_of_kind[kind] = get_peft_model(fresh, lora_config(saved), adapter_name=f"task{i}")
            else:
                first_of_kind[kind].add_adapter(f"task{i}", lora_config(saved))
            models[task] = first_of_kind[kind]

    shared = set.intersection(*({(n, tuple(p.shape)) for n, p in m.named_parameters() if p.requires_grad}
                                for m in models.values()))
    shared_names = sorted(n for n, _ in shared)  # what EWC / L2 hold: the parameters every task's model trains
    regularizer = {"ewc": lambda: EWC(cfg.ewc_lambda), "ewc-true": lambda: EWC(cfg.ewc_lambda),
                   "online-ewc": lambda: EWC(cfg.ewc_lambda, mode="online", gamma=cfg.online_gamma),
                   "l2": lambda: L2Anchor(cfg.l2_lambda)}.get(cfg.method, lambda: None)()
    fisher_kind = "true" if cfg.method == "ewc-true" else "empirical"
    replay = ReplayBuffer(cfg.replay_capacity, seed=cfg.seed) if cfg.method == "replay" else None

    def score(task, trainer, adapter=None):
        """Accuracy (sentiment) or entity F1 (NER) on the task's test rows."""
        model = models[task]
        if adapter is not None:
            model.set_adapter(adapter)
        rows = _rows(data[task]["test"], cfg.eval_limit)
        evaluator = Trainer(model, trainer.args, data_collator=collators[task])
        predictions, label_ids, _ = evaluator.predict(rows)
        if task == "ner":
            return float(token_classification_metrics(ner_names)(EvalPrediction(predictions, label_ids))["f1"])
        return float((predictions.argmax(-1) == label_ids).mean())

    n = len(cfg.tasks)
    R = np.zeros((n, n))
    seconds = {"train": 0.0, "fisher": 0.0}
    for i, task in enumerate(cfg.tasks):
        model = models[task]
        if cfg.method == "lora":
            model.set_adapter(f"task{i}")
        train_rows = _rows(data[task]["train"], cfg.train_limit)
        if replay is not None and len(replay):
            train_rows = replay.mixed_with(train_rows, cfg.replay_fraction)
        params = (trainable_param_groups if cfg.method == "lora" else full_param_groups)(model, cfg.learning_rate, 0.01)
        args = TrainingArguments(output_dir=str(out / f"task{i}-{task}"), max_steps=cfg.steps_per_task,
                                 per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=64,
                                 learning_rate=cfg.learning_rate, warmup_ratio=0.1, lr_scheduler_type="linear",
                                 logging_steps=max(1, min(10, cfg.steps_per_task)), save_strategy="no",
                                 eval_strategy="no", seed=cfg.seed + i, disable_tqdm=quiet, plot=False)
        callbacks = [EWCCallback(regularizer)] if regularizer is not None and regularizer.anchors else []
        trainer = Trainer(model, args, train_dataset=train_rows, data_collator=collators[task], callbacks=callbacks,
                          optimizers=(AdamW(params, lr=cfg.learning_rate), None))
        say(f"[{cfg.method}] task {i + 1}/{n}: {task}, {len(train_rows):,} training rows")
        trainer.train()
        state = trainer.state
        seconds["train"] += state.train_seconds
        for j, other in enumerate(cfg.tasks):  # row i of R: every task after training task i
            adapter = None
            if cfg.method == "lora" and j <= i:  # a trained task: its own adapter, untouched since
                adapter = f"task{j}"
            elif cfg.method == "lora":  # not trained yet: the newest adapter of its kind (or its own, still zero)
                trained = [k for k in range(i + 1) if models[cfg.tasks[k]] is models[other]]
                adapter = f"task{trained[-1] if trained else j}"
            R[i, j] = score(other, trainer, adapter)
        if cfg.method == "lora":
            model.set_adapter(f"task{i}")
        say("  scores: " + ", ".join(f"{t} {R[i, j]:.3f}" for j, t in enumerate(cfg.tasks)))
        if regularizer is not None and i < n - 1:
            t0 = time.perf_counter()
            fisher_rows = _rows(data[task]["train"], min(cfg.fisher_examples, cfg.train_limit or cfg.fisher_examples))
            batches = [collators[task](fisher_rows[k:k + 16]) for k in range(0, len(fisher_rows), 16)]
            regularizer.consolidate(model, batches, kind=fisher_kind, parameters=shared_names)
            seconds["fisher"] += time.perf_counter() - t0
        if replay is not None:
            replay.extend(_rows(data[task]["train"], cfg.train_limit))
    results = {"model": cfg.model, "method": cfg.method, "tasks": cfg.tasks,
               "metric": {t: "f1" if t == "ner" else "accuracy" for t in cfg.tasks}, "R": R.round(4).tolist(),
               **{k: round(v, 4) for k, v in continual_summary(R).items()},
               "train_seconds": round(seconds["train"], 2), "fisher_seconds": round(seconds["fisher"], 2),
               "machine": backend.machine_summary(), "args": asdict(cfg)}
    write_text_atomically(out / "results.json", json.dumps(results, indent=1))
    return (results, models[cfg.tasks[-1]]) if return_model else results


def continual_table(results: list) -> str:
    """A Markdown table: one row per method with ACC, BWT and forgetting."""
    lines = ["| method | average accuracy | backward transfer | forgetting | train s |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['average_accuracy']:.3f} | {r['backward_transfer']:+.3f} | "
                     f"{r['forgetting']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)
