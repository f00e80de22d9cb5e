"""DPO with the Trainer: the policy and its reference in one module, preference batches, TRL's logged rewards.

The loss itself is ``losses.dpo_loss``; this file wires it to a model and to data.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np  # host-side: token ids of the preference batches, and the per-pair statistics

from .. import backend
from ..autograd.grad_mode import no_grad
from ..nn.attention import MultiHeadAttention
from ..nn.layers import Dropout
from ..nn.module import Module
from ..train.callbacks import TrainerCallback
from ..train.trainer import WrapsTrainer
from .losses import dpo_loss, sequence_logprobs


def disable_dropout(model):
    """Set every dropout of ``model`` to 0 (TRL's ``disable_dropout=True``): the log-probs DPO compares must
    not be noisy, and the reference pass must see the same network as the policy pass."""
    for m in model.modules():
        if isinstance(m, Dropout):
            m.p = 0.0
        elif isinstance(m, MultiHeadAttention):
            m.dropout_p = 0.0
    return model


class DPOModel(Module):
    """Wraps a policy so that the Trainer can run DPO: ``forward`` takes a batch of preference pairs and
    returns an output whose ``.loss`` is the mean DPO loss (``dpo_loss``).

    The batch (``DataCollatorForPreference``) holds 2B sequences, the B chosen ones then the B rejected
    ones, each prompt + completion, with ``completion_mask`` 1 on the completion's tokens. Log-probs are
    summed over those tokens (``sequence_logprobs``); for ``loss_type="ipo"`` they are averaged over them, as
    TRL does before IPO's (h − 1/(2β))² (``average_logps``). The reference: ``ref_model`` if given (frozen, never
    trained, not part of this module's parameters); otherwise the policy itself with its PEFT adapter
    disabled (``with policy.disable_adapter()``) — no second copy of the model. Dropout is switched off
    (TRL's ``disable_dropout``) unless ``dropout=True``. ``last_metrics`` holds TRL's logged numbers for
    the last batch: rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins; ``step_metrics``
    those of every training-mode batch since ``DPOMetricsCallback`` last took them (each micro-batch of a step).
    """

    def __init__(self, policy, ref_model=None, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, dropout=False):
        super().__init__()
        if ref_model is None and not hasattr(policy, "disable_adapter"):
            raise ValueError("DPO needs a reference: pass ref_model=, or give the policy a PEFT adapter "
                             "(mf.peft.get_peft_model) so that the reference is the policy with it disabled")
        self.policy = policy
        object.__setattr__(self, "ref_model", ref_model)  # not a submodule: never trained, never saved with us
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.average_logps = loss_type == "ipo"  # IPO's target 1/(2β) is per token: TRL divides by the length
        self.last_metrics, self.step_metrics = {}, []
        if not dropout:
            disable_dropout(policy)
            if ref_model is not None:
                disable_dropout(ref_model)
        dpo_loss(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), beta=beta, loss_type=loss_type,
                 label_smoothing=label_smoothing)  # check the options now, not at the first step

    def policy_logps(self, input_ids, attention_mask, completion_mask):
        """log π(completion | prompt) of every sequence (averaged over its tokens for IPO): (B,) Tensor."""
        return sequence_logprobs(self.policy, input_ids, attention_mask, completion_mask, average=self.average_logps)

    def reference_logps(self, input_ids, attention_mask, completion_mask):
        """log π_ref(completion | prompt) of every sequence, as ``policy_logps``, without gradient."""
        with no_grad():
            if self.ref_model is not None:
                return sequence_logprobs(self.ref_model, input_ids, attention_mask, completion_mask,
                                         average=self.average_logps)
            with self.policy.disable_adapter():
                return self.policy_logps(input_ids, attention_mask, completion_mask)

    def forward(self, input_ids, attention_mask, completion_mask):
        from ..models.transformer import ModelOutput

        n = len(input_ids)
        if n % 2:
            raise ValueError(f"a DPO batch holds chosen then rejected sequences: an even number, got {n}")
        b = n // 2
        policy = self.policy_logps(input_ids, attention_mask, completion_mask)  # (2B,)
        reference = self.reference_logps(input_ids, attention_mask, completion_mask).data
        losses, chosen, rejected = dpo_loss(policy[:b], policy[b:], reference[:b], reference[b:], beta=self.beta,
                                            loss_type=self.loss_type, label_smoothing=self.label_smoothing)
        self.last_metrics = {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
                             "rewards/accuracies": float((chosen > rejected).mean()),
                             "rewards/margins": float((chosen - rejected).mean())}
        if self.training:
            self.step_metrics.append(self.last_metrics)
        return ModelOutput(loss=losses.mean())


class DataCollatorForPreference:
    """Rows ``{"prompt", "chosen", "rejected"}`` (strings) → a DPO batch: the chosen sequences, then the
    rejected ones, each tokenized by ``sft_example`` (chat template by default), right-padded, with
    ``completion_mask`` 1 on the completion's tokens."""

    def __init__(self, tokenizer, max_length=None, chat=True):
        self.tokenizer, self.max_length, self.chat = tokenizer, max_length, chat

    def __call__(self, rows):
        from ..sft import DataCollatorForSFT, sft_example

        for k, r in enumerate(rows):
            missing = {"prompt", "chosen", "rejected"} - set(r)
            if missing:
                raise KeyError(f"preference row {k} lacks {sorted(missing)} (it has {sorted(r)})")
        examples = []
        for side in ("chosen", "rejected"):
            for k, r in enumerate(rows):
                try:
                    examples.append(sft_example(self.tokenizer, r["prompt"], r[side], self.max_length, self.chat))
                except ValueError as e:  # said with the preference row and the side, and the option to change
                    hint = ("; raise max_length (--max-length)" + (" or shorten the prompt" if r["prompt"] else "")
                            if "max_length" in str(e) else "")
                    raise ValueError(f"preference row {k}, its {side} completion: {e}{hint}") from None
        # token t is predicted from t − 1, so a completion's token at position 0 is never predicted
        empty = [k for k, e in enumerate(examples) if all(y == -100 for y in e["labels"][1:])]
        if empty:  # said here, before the collator's own check, with the preference row and the side
            k = empty[0]
            side = "chosen" if k < len(rows) else "rejected"
            raise ValueError(f"preference row {k % len(rows)}: within max_length = {self.max_length} tokens no token of "
                             f"its {side} completion is left to predict (each is predicted from the token before "
                             "it); raise max_length (--max-length) or shorten the prompt")
        batch = DataCollatorForSFT(self.tokenizer)(examples)  # padded ids, (B, T) mask, labels −100 off the completion
        completion = (batch["labels"] != -100).astype(np.int64)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "completion_mask": completion}


class DPOMetricsCallback(TrainerCallback):
    """Adds the preference model's metrics (``DPOModel``'s or ``RewardModel``'s), averaged over every training
    batch since the previous log — each micro-batch of an accumulated step counts, as in TRL — to each log record."""

    def __init__(self, dpo_model):
        self.dpo_model = dpo_model
        self.seen = []

    def on_train_begin(self, args, state, control, **kw):
        self.dpo_model.step_metrics.clear()  # batches measured before training (in train mode) are not step 1's

    def on_step_end(self, args, state, control, **kw):
        self.seen.extend(self.dpo_model.step_metrics or [self.dpo_model.last_metrics])
        self.dpo_model.step_metrics = []

    def on_log(self, args, state, control, logs=None, **kw):
        if self.seen and logs is not None and "loss" in logs:
            for key in self.seen[0]:
                logs[key] = float(np.mean([m[key] for m in self.seen]))
            self.seen = []


def _preference_trainer(model, args, train_dataset, collator, callbacks, eval_dataset=None):
    """A ``Trainer`` for a preference model (``DPOModel``, ``RewardModel``): the rows' text columns kept for the
    collator (``remove_unused_columns=False``, on a copy of ``args``), TRL's metrics logged."""
    from dataclasses import replace

    from ..train import Trainer

    if args is None:
        raise ValueError("args is required: TrainingArguments(output_dir=…, learning_rate=…, max_steps=…)")
    args = replace(args, remove_unused_columns=False)  # the collator reads "prompt", "chosen", "rejected"
    return Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=collator,
                   callbacks=[DPOMetricsCallback(model)] + list(callbacks or []))


class DPOTrainer(WrapsTrainer):
    """TRL's ``DPOTrainer`` in minift's pieces: ``DPOModel`` (the policy and its reference) trained by the
    ``Trainer`` on rows ``{"prompt", "chosen", "rejected"}`` through ``DataCollatorForPreference``, TRL's
    ``rewards/*`` logged. ``ref_model=None`` needs a PEFT policy (the reference is its adapter disabled).

        trainer = DPOTrainer(peft_policy, args=TrainingArguments(output_dir="runs/dpo", learning_rate=5e-4,
                             max_steps=100), train_dataset=pairs, processing_class=tokenizer, beta=0.1)
        trainer.train()

    ``max_length``: prompt + completion tokens (default and at most: the model's context; the completion's end is
    cut). ``chat``: the tokenizer's chat template (default: used when the tokenizer has one). ``.dpo_model`` is the
    wrapped model, ``.trainer`` the ``Trainer``; ``train()`` and ``evaluate()`` are the Trainer's.
    """

    def __init__(self, model, ref_model=None, args=None, train_dataset=None, eval_dataset=None, processing_class=None,
                 beta=0.1, loss_type="sigmoid", label_smoothing=0.0, max_length=None, chat=None, callbacks=None):
        if processing_class is None:
            raise ValueError("processing_class (the tokenizer) is required: it turns the rows' text into tokens")
        chat = bool(getattr(processing_class, "chat_template", None)) if chat is None else chat
        context = model.config.max_position_embeddings  # a longer pair is cut: past it there are no positions
        max_length = context if max_length is None else min(max_length, context)
        self.dpo_model = DPOModel(model, ref_model=ref_model, beta=beta, loss_type=loss_type,
                                  label_smoothing=label_smoothing)
        self.collator = DataCollatorForPreference(processing_class, max_length=max_length, chat=chat)
        self.trainer = _preference_trainer(self.dpo_model, args, train_dataset, self.collator, callbacks, eval_dataset)

    def metrics(self, pairs, batch_size=16):
        """``preference_metrics`` of ``pairs`` (held-out rows): TRL's rewards/* over the whole set."""
        return preference_metrics(self.dpo_model, self.collator, pairs, batch_size=batch_size)


# ----------------------------------------------------------------------------- the run: minift align dpo
METHODS = ("lora", "full")


@dataclass
class DPOConfig:
    """The options of ``minift align dpo``, with TRL's ``DPOConfig`` names (``beta``, ``loss_type``,
    ``label_smoothing``, ``max_length``, ``learning_rate``, ``per_device_train_batch_size`` …)."""
    policy: str = "checkpoints/tiny-gpt"
    source: str = "sentiment"  # preference_dataset's source: the reviews ranked by their human rating
    method: str = "lora"
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    max_length: int = 64  # prompt + completion tokens (the completion's end is cut; at most the model's context)
    max_steps: int = 200
    per_device_train_batch_size: int = 8
    learning_rate: float | None = None  # default: 5e-4 with LoRA, 5e-5 for full fine-tuning
    warmup_ratio: float = 0.1
    lora_r: int = 8
    lora_alpha: float = 16
    target_modules: str | list = "q_proj,k_proj,v_proj,o_proj"
    min_margin: float = 1.0  # the chosen review's rating must beat the rejected one's by this much
    prompt: str = ""  # the prompt in front of every review (preference_dataset's)
    train_limit: int | None = None
    eval_limit: int | None = 256  # held-out pairs (the test split) measured before and after
    logging_steps: int = 10
    seed: int = 0
    out: str | None = None  # default: runs/dpo-<method>

    def __post_init__(self):
        from .losses import DPO_LOSS_TYPES

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; minift align dpo knows {list(METHODS)}")
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(DPO_LOSS_TYPES)}, got {self.loss_type!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ValueError(f"label_smoothing applies to the sigmoid loss only, got loss_type={self.loss_type!r}")
        for name in ("max_length", "max_steps", "per_device_train_batch_size", "lora_r", "logging_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.learning_rate is None:
            self.learning_rate = 5e-5 if self.method == "full" else 5e-4
        for name in ("learning_rate", "beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.out is None:
            self.out = str(Path("runs") / f"dpo-{self.method}")


def preference_metrics(dpo_model, collator, pairs, batch_size=16):
    """TRL's reward statistics over whole data set ``pairs``: the implicit rewards r = β(log π − log π_ref) of
    every chosen and rejected completion; ``rewards/accuracies`` = mean [r_c > r_r] (TRL's strict >: 0 at
    π = π_ref, where every reward is 0), ``rewards/margins`` = mean (r_c − r_r), the mean rewards, the mean
    DPO loss, and ``logps/accuracies`` = mean [log π(chosen) > log π(rejected)] (what the policy itself
    prefers, without the reference: the base model's preference before training). Host-side statistics
    (NumPy) of the per-pair numbers."""
    from .. import backend
    from .losses import dpo_loss

    rows = {"chosen": [], "rejected": [], "loss": [], "policy_chosen": [], "policy_rejected": []}
    with no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = collator(pairs[start:start + batch_size])
            b = len(batch["input_ids"]) // 2
            policy = dpo_model.policy_logps(**batch).data  # (2B,): chosen then rejected
            reference = dpo_model.reference_logps(**batch).data
            losses, chosen, rejected = dpo_loss(policy[:b], policy[b:], reference[:b], reference[b:],
                                                beta=dpo_model.beta, loss_type=dpo_model.loss_type,
                                                label_smoothing=dpo_model.label_smoothing)
            for key, value in (("chosen", chosen), ("rejected", rejected), ("loss", losses.data),
                               ("policy_chosen", policy[:b]), ("policy_rejected", policy[b:])):
                rows[key].append(backend.to_numpy(value))
    c, r = np.concatenate(rows["chosen"]), np.concatenate(rows["rejected"])
    pc, pr = np.concatenate(rows["policy_chosen"]), np.concatenate(rows["policy_rejected"])
    return {"loss": float(np.concatenate(rows["loss"]).mean()), "rewards/chosen": float(c.mean()),
            "rewards/rejected": float(r.mean()), "rewards/accuracies": float((c > r).mean()),
            "rewards/margins": float((c - r).mean()), "logps/accuracies": float((pc > pr).mean()), "pairs": len(c)}


def run_dpo(cfg: DPOConfig, quiet=False):
    """DPO of ``cfg.policy`` on preference pairs from ``preference_dataset``; writes into ``cfg.out``
    ``log.jsonl`` (with TRL's rewards/* keys), ``loss.png``, ``rewards.png``, ``accuracies.png``,
    ``results.json`` (held-out reward statistics before and after) and the adapter or the model.

    LoRA: the reference is the policy with its adapter disabled. Full fine-tuning: a second, frozen copy
    of the model loaded from the same weights (``ref_model``).
    """
    from .. import plotting
    from ..nn.quantized import quantized_weight_count
    from ..sft import _save_model, _write_json, load_policy
    from ..train import Trainer, TrainingArguments
    from ..train.trainer import check_output_dir
    from .preference_data import preference_dataset

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)
    policy, tokenizer, chat = load_policy(cfg.policy, cfg.method, cfg.seed)
    total_parameters = policy.num_parameters() + quantized_weight_count(policy)
    from ..finetune import check_max_length

    check_max_length(policy.config, cfg.max_length, cfg.policy)  # past learned positions: refused, not cut silently
    max_length = min(cfg.max_length, policy.config.max_position_embeddings)
    train = preference_dataset(source=cfg.source, split="train", limit=cfg.train_limit, min_margin=cfg.min_margin,
                               seed=cfg.seed, prompt=cfg.prompt)
    held_out = preference_dataset(source=cfg.source, split="test", limit=cfg.eval_limit, min_margin=cfg.min_margin,
                                  seed=cfg.seed, prompt=cfg.prompt)
    if not train or not held_out:
        raise ValueError(f"no preference pairs (train {len(train)}, test {len(held_out)}) from source {cfg.source!r} "
                         f"with min_margin={cfg.min_margin}: lower --min-margin")
    ref_model = None
    if cfg.method == "lora":
        from ..peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                   target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    else:
        ref_model, _, _ = load_policy(cfg.policy, cfg.method, cfg.seed)
        ref_model.eval().requires_grad_(False)
    dpo = DPOModel(policy, ref_model=ref_model, beta=cfg.beta, loss_type=cfg.loss_type,
                   label_smoothing=cfg.label_smoothing)
    collator = DataCollatorForPreference(tokenizer, max_length=max_length, chat=chat)
    trainable = sum(int(p.data.size) for p in dpo.parameters() if p.requires_grad)
    say(f"DPO of {cfg.policy} ({cfg.method}, β = {cfg.beta}, {cfg.loss_type}): {len(train):,} training pairs, "
        f"{trainable:,} of {total_parameters:,} parameters trainable; measuring {len(held_out)} held-out pairs…")
    before = preference_metrics(dpo, collator, held_out)
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        learning_rate=cfg.learning_rate, warmup_ratio=cfg.warmup_ratio, weight_decay=0.0,
        logging_steps=min(cfg.logging_steps, cfg.max_steps), save_strategy="no", remove_unused_columns=False,
        seed=cfg.seed, disable_tqdm=quiet)
    trainer = Trainer(dpo, args, train_dataset=train, data_collator=collator, callbacks=[DPOMetricsCallback(dpo)])
    trainer.train()
    state = trainer.state
    after = preference_metrics(dpo, collator, held_out)
    logs = [r for r in state.log_history if "rewards/margins" in r]
    if logs:
        plotting.plot_curves({k: [r[k] for r in logs] for k in ("rewards/chosen", "rewards/rejected", "rewards/margins")},
                             out / "rewards.png", title="DPO's implicit rewards β(log π − log π_ref), training batches",
                             xlabel=f"logging step (every {args.logging_steps} steps)", ylabel="reward")
        plotting.plot_curves({"rewards/accuracies": [r["rewards/accuracies"] for r in logs]}, out / "accuracies.png",
                             title="reward accuracy, training batches",
                             xlabel=f"logging step (every {args.logging_steps} steps)", ylabel="accuracy")
    results = {"policy": cfg.policy, "method": cfg.method, "chat_template": chat, "before": before, "after": after,
               "train_seconds": round(state.train_seconds, 2), "train_steps": state.global_step,
               "train_pairs": len(train), "trainable_parameters": trainable, "total_parameters": total_parameters,
               "machine": backend.machine_summary(), "args": asdict(cfg)}
    _save_model(policy, cfg.method, tokenizer, out, say)
    _write_json(out / "results.json", results)
    say(f"held-out reward accuracy {before['rewards/accuracies']:.3f} → {after['rewards/accuracies']:.3f}, "
        f"margin {before['rewards/margins']:.3f} → {after['rewards/margins']:.3f}")
    return results


def add_cli_arguments(parser):
    """The options of ``minift align dpo POLICY``."""
    from ..cli import non_negative_int, positive_float, positive_int, probability
    from .losses import DPO_LOSS_TYPES

    d = DPOConfig()
    parser.add_argument("policy", help="checkpoints/tiny-gpt (plain text) or smollm2 (chat template)")
    parser.add_argument("--source", default=d.source, help="preference_dataset's source of ranked texts")
    parser.add_argument("--method", choices=METHODS, default=d.method,
                        help="lora: the reference is the adapter disabled; full: a frozen copy is the reference")
    parser.add_argument("--beta", type=positive_float, default=d.beta, help="β: larger keeps π closer to π_ref")
    parser.add_argument("--loss-type", choices=DPO_LOSS_TYPES, default=d.loss_type)
    parser.add_argument("--label-smoothing", type=probability, default=d.label_smoothing)
    parser.add_argument("--max-length", type=positive_int, default=d.max_length)
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    parser.add_argument("--per-device-train-batch-size", "--batch-size", dest="per_device_train_batch_size",
                        type=positive_int, default=d.per_device_train_batch_size)
    parser.add_argument("--learning-rate", type=positive_float, default=None,
                        help="default: 5e-4 with lora, 5e-5 with full")
    parser.add_argument("--warmup-ratio", type=probability, default=d.warmup_ratio)
    parser.add_argument("--lora-r", type=positive_int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=positive_float, default=d.lora_alpha)
    parser.add_argument("--target-modules", default=",".join(d.target_modules) if isinstance(d.target_modules, list)
                        else d.target_modules)
    parser.add_argument("--min-margin", type=float, default=d.min_margin,
                        help="the chosen text's rating must beat the rejected one's by this much")
    parser.add_argument("--prompt", default=d.prompt, help="the prompt in front of every completion")
    parser.add_argument("--train-limit", type=positive_int, default=d.train_limit)
    parser.add_argument("--eval-limit", type=positive_int, default=d.eval_limit)
    parser.add_argument("--logging-steps", type=positive_int, default=d.logging_steps)
    parser.add_argument("--seed", type=non_negative_int, default=d.seed)
    parser.add_argument("--out", default=None, help="output directory (default: runs/dpo-METHOD)")


def run_from_args(args, quiet=False):
    """``minift align dpo``: the parsed options → ``DPOConfig`` → ``run_dpo``; returns its results."""
    from ..cli import config_from_args

    return run_dpo(config_from_args(DPOConfig, args), quiet=quiet)


__all__ = ["DPOConfig", "DPOMetricsCallback", "DPOTrainer", "DPOModel", "DataCollatorForPreference", "METHODS", "add_cli_arguments",
           "disable_dropout", "preference_metrics", "run_dpo", "run_from_args"]
