"""``minift finetune MODEL TASK --method …``: fine-tune a pretrained model on a task, evaluate on its test split.

    minift finetune minilm sentiment --method full --max-steps 300 --batch-size 32 --max-length 64 \\
        --learning-rate 5e-5 --seed 0 --out runs/sentiment-full

1. data: ``load_dataset(TASK)`` (fixed train / validation / test splits), tokenized for the model;
2. model: the pretrained backbone with a fresh head (``AutoModelFor…``);
3. method — which parameters train, at which learning rate:
   probe (backbone frozen, head only), full, discriminative (head at ``head_learning_rate``), llrd
   (lr·decay^(L − depth)), unfreeze (ULMFiT: one more layer group from the top every 1/(groups) of the run,
   slanted-triangular learning rates); multitask (TASK is "a+b": one shared body, a head per task, each step
   drawn from one task — ``minift.multitask``);
4. the ``Trainer`` (AdamW, warmup, clipping, evaluations on validation, the best checkpoint kept);
5. the test split: metrics in ``OUT/results.json`` with ``train_seconds`` (optimization only), steps and
   parameter counts, the curves as PNG and the fine-tuned model in ``OUT/model`` (multitask: per task, in
   ``OUT/TASK/results.json`` and ``OUT/TASK/model`` — the shared body with that task's head).
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from . import backend
from .models.checkpoint import write_text_atomically

SENTIMENT_TASKS = ("sentiment", "sentiment-tweets", "sentiment-amazon", "sentiment-nyt")
TASKS = SENTIMENT_TASKS + ("ner", "qa")
METHODS = ("probe", "full", "discriminative", "llrd", "unfreeze", "lora", "qlora", "dora", "ia3", "adapter", "prompt",
           "prefix", "bitfit", "multitask")
PEFT_METHODS = ("lora", "qlora", "dora", "ia3")
HEADS = {"qa": "qa_outputs"}  # the head each task trains beside a LoRA adapter (default: classifier)
PRIMARY_METRIC = {"ner": "f1", "qa": "f1"}  # every sentiment task: accuracy
MULTITASK_TASKS = SENTIMENT_TASKS + ("ner",)  # what --method multitask can combine ("sentiment+ner")


@dataclass
class FinetuneConfig:
    model: str = "minilm"
    task: str = "sentiment"
    method: str = "full"
    max_steps: int = 300
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float | None = None  # default: 1e-3 for probe (a head alone), 5e-5 otherwise
    head_learning_rate: float | None = None  # discriminative: default 20 × learning_rate
    pooling: str | None = None  # sequence classification: "mean" for probe, the HF head's otherwise
    llrd_decay: float = 0.9
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.1
    target_modules: str | list = "q_proj,v_proj"  # lora: which Linear layers get an adapter
    num_virtual_tokens: int = 20  # prompt and prefix tuning: how many virtual tokens
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    eval_steps: int = 100
    eval_batch_size: int = 64
    doc_stride: int | None = None  # qa: tokens two windows of a long context share; default max_length // 2
    train_limit: int | None = None  # use only the first N training rows (quick runs)
    eval_limit: int | None = None  # and the first N validation / test rows
    task_sampling: str = "round_robin"  # multitask: round_robin, proportional or temperature
    sampling_temperature: float = 2.0  # multitask with temperature sampling: p_i ∝ n_i^(1/T)
    seed: int = 0
    out: str | None = None  # default: runs/<task>-<method>
    save_model: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        if self.method == "multitask":
            self._check_multitask()
        elif self.task not in TASKS:
            if "+" in str(self.task):
                raise ValueError(f"several tasks ({self.task!r}) train together only with --method multitask")
            raise ValueError(f"unknown task {self.task!r}; minift finetune knows {list(TASKS)}")
        if self.doc_stride is None and isinstance(self.max_length, int):
            self.doc_stride = max(1, self.max_length // 2)  # 32 at the default 64 tokens
        for name in ("max_steps", "batch_size", "max_length", "eval_steps", "eval_batch_size", "doc_stride",
                     "num_virtual_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.learning_rate is None:
            self.learning_rate = {"probe": 1e-3, "lora": 5e-4, "qlora": 5e-4, "dora": 5e-4, "ia3": 3e-3, "adapter": 1e-3,
                                  "prompt": 3e-2, "prefix": 1e-2, "bitfit": 1e-3}.get(
                self.method, 5e-5)
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.head_learning_rate is None:
            self.head_learning_rate = 20 * self.learning_rate
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.llrd_decay <= 1:
            raise ValueError(f"llrd_decay must be in (0, 1], got {self.llrd_decay!r}")
        if self.task == "qa" and self.doc_stride >= self.max_length:
            raise ValueError(f"doc_stride {self.doc_stride} (--doc-stride) must be smaller than max_length "
                             f"{self.max_length} (--max-length)")
        if self.pooling is None and self.method == "probe":
            self.pooling = "mean"  # frozen features: the token mean is what the encoder was trained to give
        if self.pooling not in (None, "pooler", "last", "mean"):
            raise ValueError(f"pooling must be pooler, last or mean, got {self.pooling!r}")
        if self.out is None:
            self.out = str(Path("runs") / f"{self.task}-{self.method}")

    @property
    def tasks(self) -> list:
        """The tasks of the run: ["sentiment", "ner"] for "sentiment+ner", [task] otherwise."""
        return str(self.task).split("+")

    def _check_multitask(self):
        from .multitask import STRATEGIES

        tasks = self.tasks
        for t in tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r} in {self.task!r}; minift finetune knows {list(TASKS)}, "
                                 "joined by '+' for --method multitask (e.g. sentiment+ner)")
            if t not in MULTITASK_TASKS:
                raise ValueError(f"--method multitask combines {list(MULTITASK_TASKS)}; {t!r} is not one of them")
        if len(tasks) < 2:
            raise ValueError(f"--method multitask needs two or more tasks joined by '+', e.g. sentiment+ner; got "
                             f"{self.task!r}")
        if len(set(tasks)) < len(tasks):
            raise ValueError(f"a task is named twice in {self.task!r}")
        if self.task_sampling not in STRATEGIES:
            raise ValueError(f"unknown task sampling {self.task_sampling!r}; expected one of {list(STRATEGIES)}")
        value = self.sampling_temperature
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"sampling_temperature must be a number > 0, got {value!r}")


# ----------------------------------------------------------------------------- data
def _limit(ds, n):
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def prepare_data(cfg: FinetuneConfig, tokenizer, task=None):
    """(train, validation, test, extra): tokenized splits of ``task`` (default ``cfg.task``); ``extra`` holds
    what evaluation needs."""
    from .data import load_dataset
    from .data.alignment import tokenize_and_align_labels
    from .data.qa import prepare_train_features, prepare_validation_features

    task = cfg.task if task is None else task
    raw = load_dataset(task)
    train = _limit(raw["train"], cfg.train_limit)
    validation = _limit(raw["validation"], cfg.eval_limit)
    test = _limit(raw["test"], cfg.eval_limit)
    if task in SENTIMENT_TASKS:
        def encode(batch):
            return tokenizer(batch["text"], truncation=True, max_length=cfg.max_length)

        names = raw["train"].features["label"].names
        splits = [s.map(encode, batched=True, remove_columns=["text"]) for s in (train, validation, test)]
        return (*splits, {"label_names": names})
    if task == "ner":
        names = raw["train"].features["ner_tags"].feature.names
        options = dict(tokenizer=tokenizer, max_length=cfg.max_length, label_names=names)
        splits = [s.map(lambda b: tokenize_and_align_labels(b, **options), batched=True,
                        remove_columns=s.column_names) for s in (train, validation, test)]
        return (*splits, {"label_names": names})
    options = dict(tokenizer=tokenizer, max_length=cfg.max_length, doc_stride=cfg.doc_stride)
    try:
        train_features = train.map(lambda b: prepare_train_features(b, **options), batched=True,
                                   remove_columns=train.column_names)
        validation_features = validation.map(lambda b: prepare_train_features(b, **options), batched=True,
                                             remove_columns=validation.column_names)
        test_features = test.map(lambda b: prepare_validation_features(b, **options), batched=True,
                                 remove_columns=test.column_names)
    except ValueError as e:  # a question too long for the window, or a stride as long as what is left of it
        if "stride" not in str(e) and "nothing of the truncated text fits" not in str(e):
            raise
        raise ValueError(f"qa: {e}; each window holds the question, the special tokens and a piece of the context: "
                         f"give a smaller --doc-stride (now {cfg.doc_stride}) or a larger --max-length "
                         f"(now {cfg.max_length})") from None
    return train_features, validation_features, test_features, {"test_examples": test}


# ----------------------------------------------------------------------------- model and method
def build_model(cfg: FinetuneConfig, label_names):
    from .models.auto import (
        AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoModelForTokenClassification,
    )

    # qlora: a GGUF model's Linear weights stay in their 4/8-bit blocks; any other model is quantized to NF4
    gguf = cfg.method == "qlora" and (cfg.model == "smollm2" or str(cfg.model).endswith(".gguf"))
    if cfg.task == "qa":
        model = AutoModelForQuestionAnswering.from_pretrained(cfg.model, keep_quantized=gguf)
    elif cfg.task == "ner":
        model = AutoModelForTokenClassification.from_pretrained(cfg.model, keep_quantized=gguf,
                                                                id2label=dict(enumerate(label_names)))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(cfg.model, keep_quantized=gguf, pooling=cfg.pooling,
                                                                   id2label=dict(enumerate(label_names)))
    if cfg.method == "qlora" and not gguf:
        from .models import quantize_model

        quantize_model(model, "NF4")  # every Linear but the head's (and BERT's pooler) into NF4 blocks
    return model


def apply_method(cfg: FinetuneConfig, model, total_steps):
    """(optimizer, scheduler or None, callbacks, lr_scheduler_type) for the method."""
    from .optim import AdamW
    from .train import (
        GradualUnfreezingCallback, bitfit_param_groups, discriminative_param_groups, freeze_backbone, full_param_groups, layer_groups,
        llrd_param_groups, trainable_param_groups,
    )

    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.method in PEFT_METHODS + ("adapter", "prompt", "prefix"):  # adapters in place by now: they and the head train
        return AdamW(trainable_param_groups(model, lr, wd), lr=lr), [], "linear"
    if cfg.method == "bitfit":
        return AdamW(bitfit_param_groups(model, lr, wd), lr=lr), [], "linear"
    if cfg.method == "probe":
        freeze_backbone(model)
        return AdamW(trainable_param_groups(model, lr, wd), lr=lr), [], "linear"
    if cfg.method == "full":
        return AdamW(full_param_groups(model, lr, wd), lr=lr), [], "linear"
    if cfg.method == "discriminative":
        return AdamW(discriminative_param_groups(model, lr, cfg.head_learning_rate, wd), lr=lr), [], "linear"
    if cfg.method == "llrd":
        return AdamW(llrd_param_groups(model, lr, cfg.llrd_decay, wd), lr=lr), [], "linear"
    stages = layer_groups(model)
    callback = GradualUnfreezingCallback(stages, steps_per_stage=max(1, total_steps // len(stages)))
    return AdamW(full_param_groups(model, lr, wd), lr=lr), [callback], "stlr"


# ----------------------------------------------------------------------------- the run
def check_max_length(config, max_length, model_name):
    """``--max-length`` must fit the context of a model with learned positions (a row of its position table per
    position: past the last there is none). RoPE models compute positions, so they are not held to it."""
    context = config.max_position_embeddings
    if not config.rope and max_length > context:
        raise ValueError(f"--max-length {max_length} is longer than {model_name}'s context of {context} tokens (its "
                         f"learned position embeddings stop there): use --max-length {context} or less")


def run_finetune(cfg: FinetuneConfig, quiet=False):
    """Train, evaluate on test, write ``OUT/results.json``; returns the results dict."""
    from . import tokenization
    from .data.collators import DataCollatorForTokenClassification, DataCollatorWithPadding
    from .metrics import classification_metrics, token_classification_metrics
    from .train import Trainer, TrainingArguments
    from .train.trainer import check_output_dir

    if cfg.method == "multitask":
        return run_multitask(cfg, quiet)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)  # before the data and the model are loaded, not after training
    curves_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}  # an earlier run's, maybe
    backend.seed(cfg.seed)
    tokenizer = tokenization.from_pretrained(cfg.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders ship without a pad token; masks hide it
    train, validation, test, extra = prepare_data(cfg, tokenizer)
    label_names = extra.get("label_names")
    model = build_model(cfg, label_names)
    check_max_length(model.config, cfg.max_length, cfg.model)
    from .nn.quantized import quantized_weight_count

    total_parameters = model.num_parameters() + quantized_weight_count(model)  # qlora: the 4-bit weights count too
    if cfg.method in PEFT_METHODS:
        from .peft import IA3Config, LoraConfig, get_peft_model

        head = HEADS.get(cfg.task, "classifier")
        saved = [head]
        if cfg.task in SENTIMENT_TASKS and model.config.family == "bert" and (model.config.classifier_pooling or
                                                                             "pooler") == "pooler":
            saved.append("pooler")  # BERT's classifier reads the pooler: it learns with the head, as in full fine-tuning
        if cfg.method == "ia3":  # k, v and the FFN's down projection (its input scaled), PEFT's default
            peft_config = IA3Config(modules_to_save=saved)
        else:
            peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                     target_modules=cfg.target_modules, modules_to_save=saved,
                                     use_dora=cfg.method == "dora")
        model = get_peft_model(model, peft_config)
    if cfg.method == "adapter":
        from .peft import AdapterConfig, add_adapters

        model = add_adapters(model, AdapterConfig(modules_to_save=[HEADS.get(cfg.task, "classifier")]))
    if cfg.method in ("prompt", "prefix"):  # n virtual tokens in front of each input: they take n positions
        from .peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

        n, context = cfg.num_virtual_tokens, model.config.max_position_embeddings
        if not model.config.rope and cfg.max_length + n > context:
            raise ValueError(f"{cfg.method} tuning puts {n} virtual tokens before each input, and this model's context "
                             f"is {context} tokens: use --max-length {context - n} or less (got {cfg.max_length}), or "
                             f"fewer --num-virtual-tokens")
        saved = [HEADS.get(cfg.task, "classifier")]
        if cfg.method == "prompt":  # started from the embeddings of random vocabulary tokens
            peft_config = PromptTuningConfig(num_virtual_tokens=n, prompt_tuning_init="SAMPLE_VOCAB", modules_to_save=saved)
        else:  # the prefix trained directly (PEFT's default: no projection MLP)
            peft_config = PrefixTuningConfig(num_virtual_tokens=n, modules_to_save=saved)
        model = get_peft_model(model, peft_config)
    optimizer, callbacks, schedule = apply_method(cfg, model, cfg.max_steps)
    trainable = sum(int(p.data.size) for g in optimizer.param_groups for p in g["params"])
    if cfg.task == "ner":
        collator = DataCollatorForTokenClassification(tokenizer)
        compute_metrics, metric = token_classification_metrics(label_names), "f1"
    else:
        collator = DataCollatorWithPadding(tokenizer)
        compute_metrics, metric = (classification_metrics, "accuracy") if cfg.task != "qa" else (None, "loss")
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, lr_scheduler_type=schedule,
        eval_strategy="steps", eval_steps=cfg.eval_steps, logging_steps=max(1, min(10, cfg.eval_steps)),
        save_strategy="no", load_best_model_at_end=True, metric_for_best_model=metric, seed=cfg.seed,
        disable_tqdm=quiet)
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=validation, data_collator=collator,
                      compute_metrics=compute_metrics, callbacks=callbacks, optimizers=(optimizer, None))
    say(f"fine-tuning {cfg.model} on {cfg.task} ({cfg.method}): {len(train):,} training rows, "
        f"{trainable:,} of {total_parameters:,} parameters trainable")
    trainer.train()
    state = trainer.state
    test_metrics = evaluate_test(cfg, trainer, test, extra)
    results = {
        "model": cfg.model, "task": cfg.task, "method": cfg.method, "test": test_metrics,
        "primary_metric": PRIMARY_METRIC.get(cfg.task, "accuracy"),
        "train_seconds": round(state.train_seconds, 2), "train_steps": state.global_step,
        "trainable_parameters": trainable, "total_parameters": total_parameters,
        "best_validation": {"step": state.best_step, metric: state.best_metric},
        "machine": backend.machine_summary(),
        "args": asdict(cfg),
    }
    saved = []  # what this run writes beside results.json, recorded there
    if cfg.method in PEFT_METHODS:  # the adapter in PEFT's format (small: always); the merged model with save_model
        if model.config.family == "gpt2":
            say("(GPT-2's q, k, v are one c_attn matrix in Hugging Face: no PEFT adapter file for this model; "
                + ("and a merge into 4-bit weights rounds most of the update away: only results.json is saved)"
                   if cfg.method == "qlora"
                   else "the merged model is saved)"))
        else:
            model.save_pretrained(out / "adapter")
            saved.append("adapter")
        if cfg.method != "qlora":
            model = model.merge_and_unload()
    if cfg.save_model and cfg.method == "qlora":
        say("(qlora: a merge into 4-bit weights rounds most of the LoRA update away: the adapter is saved, "
            "the model is not)")
    elif cfg.save_model and cfg.method in ("adapter", "prompt", "prefix"):
        say(f"({cfg.method} tuning changes how the model is called: the model is not saved; results.json is)")
    elif cfg.save_model:
        from .models import save_pretrained

        save_pretrained(model.eval(), out / "model", tokenizer=tokenizer)
        saved.append("model")
    results["saved"] = saved
    earlier = [name for name in ("model", "adapter") if (out / name).exists() and name not in saved]
    earlier += sorted(name for name, mtime in curves_before.items()  # e.g. eval.png of a run that evaluated more
                      if (out / name).is_file() and (out / name).stat().st_mtime_ns == mtime)
    if earlier:  # left, never deleted (a save deletes only what it wrote), but not to be taken for this run's
        results["not_from_this_run"] = earlier
        say(f"note: {', '.join(str(out / n) for n in earlier)} {'is' if len(earlier) == 1 else 'are'} from an "
            "earlier run, not this one (results.json lists them under not_from_this_run)")
    write_text_atomically(out / "results.json", json.dumps(results, indent=1))
    return results


def run_multitask(cfg: FinetuneConfig, quiet=False):
    """``--method multitask``: one shared body, a fresh head per task (``minift.multitask``); each optimizer
    step trains on one task drawn by ``--task-sampling``. The body learns at ``learning_rate``, the heads (and
    the body's final norm / pooler) at ``head_learning_rate``, as ``discriminative``. Writes per task
    ``OUT/TASK/results.json`` (its test metrics, with the run's steps and parameters) and ``OUT/TASK/model``
    (the body with that head: a plain single-task model), and ``OUT/results.json`` holding them all.
    Returns {"method": "multitask", "tasks": {task: results}, ...}."""
    from . import tokenization
    from .data.collators import DataCollatorForTokenClassification, DataCollatorWithPadding
    from .metrics import classification_metrics, token_classification_metrics
    from .models.auto import load_backbone
    from .models.heads import TransformerForSequenceClassification, TransformerForTokenClassification
    from .multitask import MultiTaskModel, MultiTaskSampler, MultiTaskTrainer
    from .optim import AdamW
    from .train import TrainingArguments, discriminative_param_groups
    from .train.trainer import check_output_dir

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)
    backend.seed(cfg.seed)
    tokenizer = tokenization.from_pretrained(cfg.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    splits = {t: prepare_data(cfg, tokenizer, task=t) for t in cfg.tasks}  # (train, validation, test, extra)
    body = load_backbone(cfg.model)
    check_max_length(body.config, cfg.max_length, cfg.model)
    heads, collators, metrics = {}, {}, {}
    for t, (_, _, _, extra) in splits.items():
        id2label = dict(enumerate(extra["label_names"]))
        if t == "ner":
            heads[t] = TransformerForTokenClassification(body.config, backbone=body, id2label=id2label)
            collators[t] = DataCollatorForTokenClassification(tokenizer)
            metrics[t] = token_classification_metrics(extra["label_names"])
        else:
            heads[t] = TransformerForSequenceClassification(body.config, backbone=body, pooling=cfg.pooling,
                                                            id2label=id2label)
            collators[t] = DataCollatorWithPadding(tokenizer)
            metrics[t] = classification_metrics
    model = MultiTaskModel(body, heads).train()
    optimizer = AdamW(discriminative_param_groups(model, cfg.learning_rate, cfg.head_learning_rate, cfg.weight_decay),
                      lr=cfg.learning_rate)
    trainable = sum(int(p.data.size) for g in optimizer.param_groups for p in g["params"])
    total_parameters = model.num_parameters()
    sampler = MultiTaskSampler({t: len(s[0]) for t, s in splits.items()}, cfg.task_sampling, cfg.sampling_temperature,
                               seed=cfg.seed)
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, eval_strategy="steps", eval_steps=cfg.eval_steps,
        logging_steps=max(1, min(10, cfg.eval_steps)), save_strategy="no", load_best_model_at_end=True,
        metric_for_best_model="score", seed=cfg.seed, disable_tqdm=quiet)
    primary = {t: PRIMARY_METRIC.get(t, "accuracy") for t in cfg.tasks}
    trainer = MultiTaskTrainer(model, args, train_dataset={t: s[0] for t, s in splits.items()},
                               eval_dataset={t: s[1] for t, s in splits.items()}, data_collator=collators,
                               compute_metrics=metrics, sampler=sampler, primary_metrics=primary,
                               optimizers=(optimizer, None))
    shares = ", ".join(f"{t} {p:.2f}" for t, p in sampler.probabilities.items())
    say(f"fine-tuning {cfg.model} on {cfg.task} (multitask, {cfg.task_sampling} sampling: {shares}): "
        + ", ".join(f"{len(s[0]):,} {t}" for t, s in splits.items())
        + f" training rows, {trainable:,} of {total_parameters:,} parameters trainable")
    trainer.train()
    state = trainer.state
    machine = backend.machine_summary()
    per_task = {}
    for t, (_, _, test, _) in splits.items():
        measured = trainer.evaluate(test, metric_key_prefix="test", task=t)
        per_task[t] = {
            "model": cfg.model, "task": t, "method": "multitask", "tasks": cfg.tasks,
            "test": {k[len("test_"):]: v for k, v in measured.items()}, "primary_metric": primary[t],
            "train_seconds": round(state.train_seconds, 2), "train_steps": state.global_step,
            "task_steps": trainer.task_steps[t], "sampling_probability": sampler.probabilities[t],
            "trainable_parameters": trainable, "total_parameters": total_parameters,
            "best_validation": {"step": state.best_step, "score": state.best_metric}, "machine": machine,
            "args": asdict(cfg),
        }
        _write_json(out / t / "results.json", per_task[t])
        if cfg.save_model:
            from .models import save_pretrained

            save_pretrained(model.heads[t].eval(), out / t / "model", tokenizer=tokenizer)
    results = {"model": cfg.model, "task": cfg.task, "method": "multitask", "tasks": per_task,
               "mean_primary_metric": sum(r["test"][r["primary_metric"]] for r in per_task.values()) / len(per_task),
               "train_seconds": round(state.train_seconds, 2), "train_steps": state.global_step,
               "sampling": {"strategy": cfg.task_sampling, "probabilities": sampler.probabilities},
               "trainable_parameters": trainable, "total_parameters": total_parameters, "machine": machine,
               "args": asdict(cfg)}
    _write_json(out / "results.json", results)
    return results


def _write_json(path: Path, data):
    """Write ``data`` as JSON to ``path`` atomically (see ``write_text_atomically``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(data, indent=1))


def evaluate_test(cfg, trainer, test, extra) -> dict:
    """Test metrics without the ``test_`` prefix: accuracy/F1 (classification), entity P/R/F1 (ner),
    exact match / F1 (qa, after mapping the best span of each window back to the text), with the loss and
    HF's timings of the prediction loop (for qa, as HF's QuestionAnsweringTrainer, before the mapping)."""
    if cfg.task != "qa":
        metrics = trainer.evaluate(test, metric_key_prefix="test")
    else:
        from .data.qa import postprocess_qa_predictions
        from .metrics import squad_scores

        (start_logits, end_logits), _, metrics = trainer.predict(test, metric_key_prefix="test")
        examples = extra["test_examples"]
        predictions = postprocess_qa_predictions(examples, test, start_logits, end_logits)
        references = {row["id"]: row["answers"]["text"] for row in examples}
        metrics = {**squad_scores(predictions, references), **metrics}
    return {k.removeprefix("test_"): v for k, v in metrics.items()}


def results_table(rows) -> str:
    """A plain-text table of results dicts: method, the primary test metric, trainable parameters, seconds."""
    names = [r["method"] if r["method"] != "multitask" else f"multitask {r['task']}" for r in rows]
    width = max([16] + [len(n) for n in names])
    lines = [f"{'method':{width}} {'test metric':>20} {'trainable':>14} {'total':>14} {'train s':>9}"]
    for name, r in zip(names, rows):
        key = r["primary_metric"]
        value = r["test"][key]
        shown = f"{key} {value:.4f}" if r["task"] != "qa" else f"{key} {value:.2f}"  # SQuAD scores are ×100
        lines.append(f"{name:{width}} {shown:>20} {r['trainable_parameters']:>14,} {r['total_parameters']:>14,} "
                     f"{r['train_seconds']:>9.1f}")
    return "\n".join(lines)


DEMO_OUT = "out/demo"  # `minift demo`'s folder (the engine demo has its own: minift.demo.ENGINE_DEMO_OUT)


def run_finetune_demo(out=DEMO_OUT, steps=120, quiet=False):
    """``make demo``: MiniLM on movie-review sentiment: a frozen-encoder probe, LoRA, and full fine-tuning.

    The same data, batches and schedule for all three; only what trains differs (the 770 parameters of
    the head; LoRA's rank-8 adapters on q and v plus the pooler and the head, 222 thousand; or all 22.7
    million). Prints
    the comparison and writes each run's curves and results under ``out/probe``, ``out/lora`` (with the
    adapter in PEFT's format, ``out/lora/adapter``) and ``out/full``, and the table to ``out/results.md``.
    """
    from .train.trainer import check_output_dir

    check_output_dir(Path(out))  # the folder given, before three runs each check their own inside it
    say = (lambda *a: None) if quiet else print
    fast = os.environ.get("MINIFT_FAST") == "1"
    limits = dict(train_limit=256, eval_limit=128) if fast else {}
    rows = []
    what = {"probe": "the head alone, on a frozen MiniLM", "lora": "rank-8 LoRA adapters on q and v, the pooler and the head",
            "full": "every parameter"}
    for method in ("probe", "lora", "full"):
        say(f"\n== {method}: {what[method]}")
        cfg = FinetuneConfig(model="minilm", task="sentiment", method=method, max_steps=steps, batch_size=32,
                             max_length=64, eval_steps=steps, seed=0, save_model=False,
                             out=str(Path(out) / method), **limits)
        rows.append(run_finetune(cfg, quiet=quiet))
    table = results_table(rows)
    say("\nMiniLM on movie-review sentiment (test split, "
        f"{rows[0]['args']['max_steps']} steps of 32 examples each):\n{table}")
    Path(out, "results.md").write_text("```\n" + table + "\n```\n")
    return rows
