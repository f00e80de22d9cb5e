"""Reward models: a sequence classifier with ONE output, trained on preference pairs (TRL's RewardTrainer).

A reward model maps a text (prompt + completion) to a number r(x). It is never shown a "correct" reward,
only which of two texts people preferred. The Bradley–Terry model reads rewards as log-odds of preference:

    P(chosen ≻ rejected) = σ(r_c − r_r)

and training maximizes the likelihood of the observed preferences (``losses.bradley_terry_loss``):

    L = mean over pairs of −log σ(r_c − r_r − m)            (m: an optional margin per pair, TRL's ``margin``)
      + c · mean((r_c + r_r)²)                               (TRL's ``center_rewards_coefficient`` c)

    ∂L/∂r_c = −σ(−(r_c − r_r − m)) / B,     ∂L/∂r_r = +σ(−(r_c − r_r − m)) / B     (the pair loss alone)

Only differences of rewards enter the first term, so r and r + k give the same loss for any constant k:
the rewards are defined up to a shift. The centering term picks one: it pulls r_c + r_r toward 0 (mean
reward ≈ 0), which PPO likes (a reward that drifts up everywhere says nothing, and a big offset makes the
value function's job harder). At a head that gives every text the same reward, the loss is ln 2 ≈ 0.693
without a margin (with one, the mean of log(1 + e^m)).

    model = reward_model("checkpoints/tiny-bert")          # AutoModelForSequenceClassification, num_labels=1
    rm = RewardModel(model)                                # forward(batch) → .loss, .rewards_chosen, .rewards_rejected
    collate = DataCollatorForRewardModeling(tokenizer, max_length=64)
    reward_metrics(rm, collate, held_out_pairs)            # accuracy = mean [r_c > r_r], margin, loss
    score = reward_function(model, tokenizer)              # texts → np.ndarray of rewards (PPO's, GRPO's reward)

Batches: TRL up to 0.23 (``RewardDataCollatorWithPadding``) gave four keys, ``input_ids_chosen``,
``attention_mask_chosen``, ``input_ids_rejected``, ``attention_mask_rejected`` (and ``margin``); TRL from
0.24 (its RewardTrainer rewrite, trl#4093) stacks them into one ``input_ids`` (2B, T), the B chosen rows then
the B rejected rows, as this project's DPO collator does. ``RewardModel.forward`` takes either;
``DataCollatorForRewardModeling`` gives the stacked form (one forward pass over both sides, and what the
Trainer counts a batch's size from). TRL calls its own stacking collator ``DataCollatorForPreference``
(in ``trl/trainer/reward_trainer.py``, from token ids ``chosen_ids``/``rejected_ids``), the name of its DPO
collator too; minift keeps the names apart, since its ``DataCollatorForPreference`` is the DPO one.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np  # host-side: token ids of the batches, pairwise statistics, the scores handed to PPO and GRPO

from ..autograd.grad_mode import no_grad
from ..autograd.tensor import Tensor
from ..backend import to_numpy
from ..models.transformer import ModelOutput
from ..nn.module import Module
from ..train.trainer import WrapsTrainer
from .losses import bradley_terry_loss

METHODS = ("full", "lora")
POOLINGS = (None, "pooler", "last", "mean")
ROW_KEYS = ("prompt", "chosen", "rejected")


# ============================================================================ the model
def reward_model(name_or_path="minilm", pooling=None, seed=0):
    """A sequence classifier with one output (``num_labels=1``) on the backbone of ``name_or_path``: the
    reward r(x) is its single logit. ``pooling``: which state the head reads — None for the family's
    default (the pooler for bert, the last real token for decoders, as HF's heads), or "mean" (the mean of
    the real tokens' states; what sentence-transformers trained MiniLM to produce). A directory saved from
    a reward model loads with its trained head. The head starts N(0, 0.02²) as in HF."""
    from .. import backend
    from ..models.auto import AutoModelForSequenceClassification

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    backend.seed(seed)
    options = {} if pooling is None else {"pooling": pooling}
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1, **options)
    if pooling is not None and (model.config.classifier_pooling or _default_pooling(model.config)) != pooling:
        raise ValueError(f"{name_or_path} holds a reward model whose head reads pooling="
                         f"{model.config.classifier_pooling!r}; it cannot be loaded with pooling={pooling!r}")
    if model.config.num_labels != 1:
        raise ValueError(f"{name_or_path} holds a classifier with {model.config.num_labels} outputs; a reward "
                         "model has one (num_labels=1)")
    return model


def _default_pooling(config):
    return "pooler" if config.family == "bert" else "last"


@dataclass
class RewardOutput(ModelOutput):
    """ModelOutput plus TRL's ``rewards_chosen`` and ``rewards_rejected`` ((B,) Tensors, with gradients)."""

    rewards_chosen: Tensor | None = None
    rewards_rejected: Tensor | None = None


def _rewards(model, input_ids, attention_mask):
    """(N,) Tensor: the single logit of ``model`` on each row."""
    logits = model(input_ids, attention_mask=attention_mask).logits  # (N, 1)
    if logits.ndim != 2 or logits.shape[1] != 1:
        raise ValueError(f"a reward model gives one output per text, (N, 1); this model gives {tuple(logits.shape)} "
                         "(build it with num_labels=1, e.g. reward_model(name))")
    return logits.reshape(logits.shape[0])  # (N, 1) -> (N,)


class RewardModel(Module):
    """Wraps a one-output classifier so that the Trainer can train it on preference pairs: ``forward`` takes a
    preference batch and returns a ``RewardOutput`` whose ``.loss`` is

        bradley_terry_loss(r_c, r_r, margin)  +  center_rewards_coefficient · mean((r_c + r_r)²)

    The batch is either stacked (``input_ids``, ``attention_mask``: (2B, T), the chosen rows then the
    rejected rows — one forward pass) or TRL's four keys (``input_ids_chosen``, ``attention_mask_chosen``,
    ``input_ids_rejected``, ``attention_mask_rejected``: two passes). ``margin`` (B,), optional, is a
    constant. ``last_metrics``: the batch's accuracy (mean [r_c > r_r]), margin (mean r_c − r_r) and mean
    reward, for ``DPOMetricsCallback`` to log.
    """

    def __init__(self, model, center_rewards_coefficient=None):
        super().__init__()
        _check_coefficient(center_rewards_coefficient)
        self.model = model
        self.config = model.config
        self.center_rewards_coefficient = center_rewards_coefficient
        self.last_metrics, self.step_metrics = {}, []  # step_metrics: each training batch's (DPOMetricsCallback)

    def forward(self, input_ids=None, attention_mask=None, margin=None, input_ids_chosen=None,
                attention_mask_chosen=None, input_ids_rejected=None, attention_mask_rejected=None):
        pairs = (input_ids_chosen, input_ids_rejected)
        if input_ids is not None and any(x is not None for x in pairs):
            raise ValueError("give a stacked batch (input_ids) or TRL's chosen/rejected keys, not both")
        if input_ids is not None:
            n = len(input_ids)
            if n % 2:
                raise ValueError(f"a stacked reward batch holds B chosen then B rejected rows: an even number, got {n}")
            rewards = _rewards(self.model, input_ids, attention_mask)  # (2B,)
            chosen, rejected = rewards[: n // 2], rewards[n // 2:]
        elif all(x is not None for x in pairs):
            if len(input_ids_chosen) != len(input_ids_rejected):
                raise ValueError(f"{len(input_ids_chosen)} chosen rows but {len(input_ids_rejected)} rejected rows")
            chosen = _rewards(self.model, input_ids_chosen, attention_mask_chosen)
            rejected = _rewards(self.model, input_ids_rejected, attention_mask_rejected)
        else:
            raise ValueError("a reward batch needs input_ids (chosen rows then rejected rows) or both "
                             "input_ids_chosen and input_ids_rejected (TRL's keys)")
        loss = reward_loss(chosen, rejected, margin, self.center_rewards_coefficient)
        c, r = np.asarray(to_numpy(chosen.data), np.float64), np.asarray(to_numpy(rejected.data), np.float64)
        self.last_metrics = {"accuracy": pairwise_accuracy(c, r), "margin": float((c - r).mean()),
                             "mean_reward": float(np.concatenate([c, r]).mean())}
        if self.training:
            self.step_metrics.append(self.last_metrics)
        return RewardOutput(loss=loss, logits=_pair_logits(chosen, rejected), rewards_chosen=chosen,
                            rewards_rejected=rejected)


def _pair_logits(chosen, rejected):
    """(B, 2) logits [r_c, r_r] per pair, as TRL's RewardTrainer returns them for its metrics."""
    from .. import functional as F

    return F.stack([chosen, rejected], axis=1)


def _check_coefficient(c):
    if c is not None and not (isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c >= 0):
        raise ValueError(f"center_rewards_coefficient must be None or a finite number >= 0, got {c!r}")


def reward_loss(chosen_rewards, rejected_rewards, margin=None, center_rewards_coefficient=None):
    """TRL's reward loss: mean −log σ(r_c − r_r − m)  +  c · mean((r_c + r_r)²) when c is given.

    The second term is TRL's ``center_rewards_coefficient`` (Eisenstein et al., 2023): the first term cannot
    see a shift of every reward, this one fixes it near mean 0. Its gradient: ∂/∂r_c = 2c(r_c + r_r)/B.
    """
    _check_coefficient(center_rewards_coefficient)
    loss = bradley_terry_loss(chosen_rewards, rejected_rewards, margin)
    if center_rewards_coefficient:
        from .losses import _tensor

        total = _tensor(chosen_rewards) + _tensor(rejected_rewards)
        loss = loss + center_rewards_coefficient * (total * total).mean()
    return loss


# ============================================================================ the data
def reward_text(prompt, completion):
    """The one text a reward model reads: prompt + completion, outer spaces stripped (the completions of
    ``preference_dataset`` start with a space, for BPE; an encoder reads the whole as one sequence)."""
    return (prompt + completion).strip()


def _ensure_pad(tokenizer):
    if tokenizer.pad_token_id is None:  # decoders ship without a pad token; the attention mask hides it
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _encode(tokenizer, texts, max_length):
    """Padded (N, T) int64 ids and mask of ``texts`` (``DataCollatorWithPadding``, on the tokenizer's padding
    side), each cut to ``max_length`` tokens, each ending with
    the EOS token. A BERT tokenizer closes every text with [SEP], its EOS; a decoder's adds nothing, so the EOS
    is appended, as TRL's RewardTrainer (≥ 0.24) appends it: a head that reads the last token then reads the
    text's end, not its last word. A text cut at ``max_length`` keeps its EOS in the last place. Not when the
    pad token is the EOS (SmolLM2's): Hugging Face's head, after an export, reads the last token that is not
    the pad, and would read the word before it — the scores here and there must agree."""
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length must be an integer >= 2 (tokens per text), got {max_length!r}")
    from ..data.collators import DataCollatorWithPadding

    tokenizer = _ensure_pad(tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id != tokenizer.pad_token_id else None

    def closed(row):  # the row ending with its EOS: appended, or in the last place of a row cut at max_length
        row = list(row)
        if eos is None or (row and row[-1] == eos):
            return row
        keep = len(row) if max_length is None or len(row) < max_length else max_length - 1
        return row[:keep] + [eos]

    rows = tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)["input_ids"]
    batch = DataCollatorWithPadding(tokenizer)([{"input_ids": closed(r)} for r in rows])
    return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)


class RewardDataCollatorWithPadding:
    """Rows ``{"prompt", "chosen", "rejected"}`` → TRL's (≤ 0.23) reward batch: ``input_ids_chosen``,
    ``attention_mask_chosen``, ``input_ids_rejected``, ``attention_mask_rejected`` ((B, T) each, both sides
    padded to one T) and, with ``use_margin``, ``margin`` (B,) from each row's ``"margin"`` (the rating
    difference of ``preference_dataset``). Each text is ``reward_text(prompt, completion)``, cut to
    ``max_length`` tokens."""

    def __init__(self, tokenizer, max_length=None, use_margin=False):
        self.tokenizer, self.max_length, self.use_margin = tokenizer, max_length, bool(use_margin)

    def __call__(self, rows):
        return self.encode_pairs(rows)

    def encode_pairs(self, rows):
        """The four-key batch of ``rows`` (what ``__call__`` gives here; the stacked collator builds on it)."""
        rows = list(rows)
        if not rows:
            raise ValueError("a reward batch needs at least one preference row, got none")
        need = ROW_KEYS + (("margin",) if self.use_margin else ())
        for k, r in enumerate(rows):
            missing = [key for key in need if key not in r]
            if missing:
                raise KeyError(f"preference row {k} lacks {missing} (it has {sorted(r)})")
        texts = [reward_text(r["prompt"], r[side]) for side in ("chosen", "rejected") for r in rows]
        ids, mask = _encode(self.tokenizer, texts, self.max_length)  # (2B, T): one width for both sides
        b = len(rows)
        batch = {"input_ids_chosen": ids[:b], "attention_mask_chosen": mask[:b],
                 "input_ids_rejected": ids[b:], "attention_mask_rejected": mask[b:]}
        if self.use_margin:
            batch["margin"] = np.array([float(r["margin"]) for r in rows])
        return batch


class DataCollatorForRewardModeling(RewardDataCollatorWithPadding):
    """The same rows → the stacked batch (TRL ≥ 0.24): ``input_ids`` and ``attention_mask`` (2B, T), the B
    chosen texts then the B rejected ones, and ``margin`` with ``use_margin``."""

    def __call__(self, rows):
        pairs = self.encode_pairs(rows)
        batch = {"input_ids": np.concatenate([pairs["input_ids_chosen"], pairs["input_ids_rejected"]]),
                 "attention_mask": np.concatenate([pairs["attention_mask_chosen"], pairs["attention_mask_rejected"]])}
        if "margin" in pairs:
            batch["margin"] = pairs["margin"]
        return batch


# ============================================================================ measuring
class RewardTrainer(WrapsTrainer):
    """TRL's ``RewardTrainer`` in minift's pieces: ``RewardModel`` (a one-output classifier, Bradley–Terry) trained
    by the ``Trainer`` on rows ``{"prompt", "chosen", "rejected"[, "margin"]}`` through
    ``DataCollatorForRewardModeling``; accuracy, margin and mean reward logged.

        trainer = RewardTrainer(reward_model("checkpoints/tiny-bert"), args=TrainingArguments(output_dir="runs/rm",
                                learning_rate=1e-4, max_steps=100), train_dataset=pairs, processing_class=tokenizer)
        trainer.train()
        trainer.metrics(held_out_pairs)      # accuracy, margin, loss, … (reward_metrics)
    """

    def __init__(self, model, args=None, train_dataset=None, eval_dataset=None, processing_class=None, max_length=None,
                 center_rewards_coefficient=None, use_margin=False, callbacks=None):
        from .dpo import _preference_trainer

        if processing_class is None:
            raise ValueError("processing_class (the tokenizer) is required: it turns the rows' text into tokens")
        context = model.config.max_position_embeddings  # a longer text is cut: past it there are no positions
        max_length = context if max_length is None else min(max_length, context)
        self.reward_model = RewardModel(model, center_rewards_coefficient=center_rewards_coefficient)
        self.collator = DataCollatorForRewardModeling(processing_class, max_length=max_length, use_margin=use_margin)
        self.trainer = _preference_trainer(self.reward_model, args, train_dataset, self.collator, callbacks, eval_dataset)

    def metrics(self, pairs, batch_size=32):
        return reward_metrics(self.reward_model, self.collator, pairs, batch_size=batch_size)


def pairwise_accuracy(chosen_rewards, rejected_rewards):
    """mean [r_c > r_r]: the share of pairs ranked as people ranked them. Strict: a tie is not a win (TRL's
    RewardTrainer from 0.24; up to 0.23 its default ``compute_accuracy`` dropped the tied pairs and warned)."""
    c = np.asarray(to_numpy(chosen_rewards.data if isinstance(chosen_rewards, Tensor) else chosen_rewards), np.float64)
    r = np.asarray(to_numpy(rejected_rewards.data if isinstance(rejected_rewards, Tensor) else rejected_rewards), np.float64)
    if c.shape != r.shape or c.size == 0:
        raise ValueError(f"pairwise_accuracy needs chosen and rejected rewards of one non-empty shape, got "
                         f"{c.shape} and {r.shape}")
    return float((c > r).mean())


def pair_rewards(model, collator, pairs, batch_size=32):
    """(r_c, r_r): NumPy arrays (P,) of the rewards of every pair's chosen and rejected text, no gradient,
    in eval mode (the model's mode is restored after)."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no preference pairs to score: the list is empty")
    if not isinstance(collator, RewardDataCollatorWithPadding):
        raise TypeError(f"collator must be a RewardDataCollatorWithPadding or DataCollatorForRewardModeling, got "
                        f"{type(collator).__name__}")
    scorer = model.model if isinstance(model, RewardModel) else model
    chosen, rejected = [], []
    was_training = scorer.training
    scorer.eval()
    try:
        with no_grad():
            for start in range(0, len(pairs), batch_size):
                batch = collator.encode_pairs(pairs[start:start + batch_size])
                b = len(batch["input_ids_chosen"])
                ids = np.concatenate([batch["input_ids_chosen"], batch["input_ids_rejected"]])
                mask = np.concatenate([batch["attention_mask_chosen"], batch["attention_mask_rejected"]])
                r = np.asarray(to_numpy(_rewards(scorer, ids, mask).data), np.float64)  # (2B,)
                chosen.append(r[:b])
                rejected.append(r[b:])
    finally:
        scorer.train(was_training)
    return np.concatenate(chosen), np.concatenate(rejected)


def reward_metrics(model, collator, pairs, batch_size=32):
    """A reward model on whole data set ``pairs`` (host statistics with NumPy):

        accuracy     mean [r_c > r_r]            (``pairwise_accuracy``; ties lose; 0.5 is chance)
        margin       mean (r_c − r_r)
        loss         mean −log σ(r_c − r_r)     (the Bradley–Terry loss, no margin, no centering term)
        mean_reward  mean of every reward;  rewards/chosen, rewards/rejected: the means of each side
        ties         pairs with r_c == r_r;  pairs: how many
    """
    c, r = pair_rewards(model, collator, pairs, batch_size)
    d = c - r
    return {"accuracy": pairwise_accuracy(c, r), "margin": float(d.mean()),
            "loss": float(np.logaddexp(0.0, -d).mean()),  # −log σ(d) = log(1 + e^{−d}), stable
            "mean_reward": float(np.concatenate([c, r]).mean()), "rewards/chosen": float(c.mean()),
            "rewards/rejected": float(r.mean()), "ties": int((c == r).sum()), "pairs": int(len(c))}


def reward_function(model, tokenizer, max_length=None, batch_size=32):
    """``score(texts) -> np.ndarray`` (N,) float64: the reward of each text, in batches of ``batch_size``,
    without gradient, in eval mode (the model's mode is restored after). ``max_length`` (default: the
    model's context) cuts long texts. The reward PPO and GRPO optimize."""
    scorer = model.model if isinstance(model, RewardModel) else model
    context = getattr(scorer.config, "max_position_embeddings", None)
    limit = context if max_length is None else max_length if context is None else min(max_length, context)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    def score(texts):
        if isinstance(texts, str):
            raise TypeError("score takes a list of texts, got one string: wrap it in a list")
        texts = list(texts)
        if not texts:
            return np.zeros(0)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"score takes strings; item {bad[0]} is a {type(texts[bad[0]]).__name__}")
        was_training = scorer.training
        scorer.eval()
        out = []
        try:
            with no_grad():
                for start in range(0, len(texts), batch_size):
                    ids, mask = _encode(tokenizer, texts[start:start + batch_size], limit)
                    out.append(np.asarray(to_numpy(_rewards(scorer, ids, mask).data), np.float64))
        finally:
            scorer.train(was_training)
        return np.concatenate(out)

    return score


def load_reward_function(path, max_length=None, batch_size=32):
    """``reward_function`` of a reward model saved by ``minift align rm`` (``OUT/model``, or OUT itself)."""
    from .. import tokenization

    path = Path(path)
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    model = reward_model(str(path)).eval()
    return reward_function(model, tokenization.from_pretrained(str(path)), max_length=max_length, batch_size=batch_size)


# ============================================================================ the run: minift align rm
@dataclass
class RewardConfig:
    """The options of ``minift align rm``, with TRL's ``RewardConfig`` names (``max_length``,
    ``center_rewards_coefficient``, ``learning_rate``, ``per_device_train_batch_size`` …)."""
    model: str = "minilm"  # or a checkpoint directory: checkpoints/tiny-bert, checkpoints/tiny-gpt
    source: str = "sentiment"  # preference_dataset's source: the reviews ranked by their human rating
    method: str = "full"
    learning_rate: float | None = None  # default: 5e-5 for full fine-tuning, 5e-4 with LoRA
    max_steps: int = 200
    per_device_train_batch_size: int = 16
    max_length: int = 64  # tokens per text (prompt + completion; at most the model's context)
    center_rewards_coefficient: float | None = None  # TRL's: + c·mean((r_c + r_r)²)
    pooling: str | None = None  # what the head reads: None (the family's: pooler / last token), "mean", …
    min_margin: float = 1.0  # the chosen review's rating must beat the rejected one's by this much
    use_margin: bool = False  # pass the rating difference as the loss's margin: −log σ(r_c − r_r − m)
    prompt: str = ""  # the prompt in front of every review (preference_dataset's)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: float = 16
    target_modules: str | list = "q_proj,v_proj"
    train_limit: int | None = None
    eval_limit: int | None = 256  # held-out pairs (the test split) measured before and after
    logging_steps: int = 10
    seed: int = 0
    out: str | None = None  # default: runs/rm-<method>

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; minift align rm knows {list(METHODS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.use_margin, bool):
            raise ValueError(f"use_margin must be True or False, got {self.use_margin!r}")
        for name in ("max_steps", "per_device_train_batch_size", "lora_r", "logging_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (tokens per text), got {self.max_length!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.learning_rate is None:
            self.learning_rate = 5e-5 if self.method == "full" else 5e-4
        for name in ("learning_rate", "lora_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        _check_coefficient(self.center_rewards_coefficient)
        if not (isinstance(self.min_margin, (int, float)) and math.isfinite(self.min_margin) and self.min_margin >= 0):
            raise ValueError(f"min_margin must be a finite number >= 0 (a rating difference), got {self.min_margin!r}")
        for name in ("warmup_ratio",):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.method == "lora" and not self.target_modules:
            raise ValueError("method 'lora' needs target_modules (e.g. 'q_proj,v_proj'), got none")
        if self.out is None:
            self.out = str(Path("runs") / f"rm-{self.method}")


def _save_reward_model(model, method, tokenizer, out, say):
    """``OUT/model``: the whole reward model in minift's format (LoRA merged first), what
    ``reward_model(OUT/model)`` and ``load_reward_function(OUT)`` load; with LoRA also ``OUT/adapter``
    (PEFT's format, the head among its saved modules), except for GPT-2-family models (no PEFT name for
    their fused q, k, v)."""
    from ..models import save_pretrained

    if method == "lora":
        if model.config.family != "gpt2":
            model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    save_pretrained(model.eval(), out / "model", tokenizer=tokenizer)
    say(f"saved the reward model to {out / 'model'}")


def run_reward(cfg: RewardConfig, quiet=False):
    """Train a reward model on preference pairs from ``preference_dataset``; writes into ``cfg.out``
    ``log.jsonl`` (loss, accuracy, margin of the training batches), ``loss.png``, ``accuracy.png``,
    ``results.json`` (held-out ``reward_metrics`` before and after, ``train_seconds``, ``train_steps``,
    parameter counts, the arguments) and the model (``OUT/model``; with LoRA also ``OUT/adapter``).

    Returns the results dict. Its held-out pairs are the test split's: no held-out text was trained on.
    """
    from .. import backend, plotting, tokenization
    from ..sft import _write_json
    from ..train import Trainer, TrainingArguments
    from ..train.trainer import check_output_dir
    from .dpo import DPOMetricsCallback
    from .preference_data import preference_dataset

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)  # before anything is loaded
    train = preference_dataset(source=cfg.source, split="train", limit=cfg.train_limit, min_margin=cfg.min_margin,
                               seed=cfg.seed, prompt=cfg.prompt)
    held_out = preference_dataset(source=cfg.source, split="test", limit=cfg.eval_limit, min_margin=cfg.min_margin,
                                  seed=cfg.seed, prompt=cfg.prompt)
    if not train or not held_out:
        raise ValueError(f"no preference pairs (train {len(train)}, test {len(held_out)}) from source {cfg.source!r} "
                         f"with min_margin={cfg.min_margin}: lower --min-margin")
    model = reward_model(cfg.model, pooling=cfg.pooling, seed=cfg.seed)
    tokenizer = _ensure_pad(tokenization.from_pretrained(cfg.model))
    total_parameters = model.num_parameters()
    from ..finetune import check_max_length

    check_max_length(model.config, cfg.max_length, cfg.model)  # past learned positions: refused, not cut silently
    max_length = min(cfg.max_length, model.config.max_position_embeddings)
    if cfg.method == "lora":
        from ..peft import LoraConfig, get_peft_model

        saved = ["classifier"]
        if model.config.family == "bert" and (model.config.classifier_pooling or "pooler") == "pooler":
            saved.append("pooler")  # the head reads the pooler: it learns with the head, as in full fine-tuning
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
                                                 modules_to_save=saved, task_type="SEQ_CLS"))
    rm = RewardModel(model, center_rewards_coefficient=cfg.center_rewards_coefficient)
    collator = DataCollatorForRewardModeling(tokenizer, max_length=max_length, use_margin=cfg.use_margin)
    trainable = sum(int(p.data.size) for p in rm.parameters() if p.requires_grad)
    say(f"reward model on {cfg.model} ({cfg.method}): {len(train):,} training pairs, {trainable:,} of "
        f"{total_parameters:,} parameters trainable; measuring {len(held_out)} held-out pairs…")
    before = reward_metrics(rm, collator, held_out)
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        learning_rate=cfg.learning_rate, warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        logging_steps=min(cfg.logging_steps, cfg.max_steps), save_strategy="no", remove_unused_columns=False,
        seed=cfg.seed, disable_tqdm=quiet)
    trainer = Trainer(rm, args, train_dataset=train, data_collator=collator, callbacks=[DPOMetricsCallback(rm)])
    trainer.train()
    state = trainer.state
    after = reward_metrics(rm, collator, held_out)
    logs = [r for r in state.log_history if "accuracy" in r and "loss" in r]
    if logs:
        plotting.plot_curves({"training batches": [r["accuracy"] for r in logs]}, out / "accuracy.png",
                             title=f"pairwise accuracy mean [r_c > r_r]; held out: {before['accuracy']:.3f} → "
                                   f"{after['accuracy']:.3f}",
                             xlabel=f"logging step (every {args.logging_steps} steps)", ylabel="accuracy")
    results = {"model": cfg.model, "method": cfg.method, "before": before, "after": after,
               "train_seconds": round(state.train_seconds, 2), "train_steps": state.global_step,
               "train_pairs": len(train), "trainable_parameters": trainable, "total_parameters": total_parameters,
               "machine": backend.machine_summary(), "args": asdict(cfg)}
    _save_reward_model(model, cfg.method, tokenizer, out, say)
    _write_json(out / "results.json", results)
    say(f"held-out pairwise accuracy {before['accuracy']:.3f} → {after['accuracy']:.3f}, "
        f"margin {before['margin']:.3f} → {after['margin']:.3f}")
    return results


def add_cli_arguments(parser):
    """The options of ``minift align rm MODEL``."""
    from ..cli import non_negative_float, non_negative_int, positive_float, positive_int, probability

    d = RewardConfig()
    parser.add_argument("model", help="minilm, or a checkpoint directory such as checkpoints/tiny-bert")
    parser.add_argument("--source", default=d.source, help="preference_dataset's source of ranked texts")
    parser.add_argument("--method", choices=METHODS, default=d.method)
    parser.add_argument("--learning-rate", type=positive_float, default=None,
                        help="default: 5e-5 with full, 5e-4 with lora")
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    parser.add_argument("--per-device-train-batch-size", "--batch-size", dest="per_device_train_batch_size",
                        type=positive_int, default=d.per_device_train_batch_size)
    parser.add_argument("--max-length", type=positive_int, default=d.max_length, help="tokens per text")
    parser.add_argument("--center-rewards-coefficient", type=non_negative_float, default=None,
                        help="adds c·mean((r_c + r_r)²) to the loss: rewards centred near 0")
    parser.add_argument("--pooling", choices=[p for p in POOLINGS if p], default=None,
                        help="what the head reads (default: the pooler for bert, the last real token for decoders)")
    parser.add_argument("--min-margin", type=non_negative_float, default=d.min_margin,
                        help="the chosen text's rating must beat the rejected one's by this much")
    parser.add_argument("--use-margin", action="store_true",
                        help="ask the chosen reward to win by the rating difference: −log σ(r_c − r_r − m)")
    parser.add_argument("--prompt", default=d.prompt, help="the prompt in front of every completion")
    parser.add_argument("--warmup-ratio", type=probability, default=d.warmup_ratio)
    parser.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    parser.add_argument("--lora-r", type=positive_int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=positive_float, default=d.lora_alpha)
    parser.add_argument("--target-modules", default=d.target_modules)
    parser.add_argument("--train-limit", type=positive_int, default=d.train_limit)
    parser.add_argument("--eval-limit", type=positive_int, default=d.eval_limit)
    parser.add_argument("--logging-steps", type=positive_int, default=d.logging_steps)
    parser.add_argument("--seed", type=non_negative_int, default=d.seed)
    parser.add_argument("--out", default=None, help="output directory (default: runs/rm-METHOD)")


def run_from_args(args, quiet=False):
    """``minift align rm``: the parsed options → ``RewardConfig`` → ``run_reward``; returns its results."""
    from ..cli import config_from_args

    return run_reward(config_from_args(RewardConfig, args), quiet=quiet)


__all__ = ["DataCollatorForRewardModeling", "METHODS", "RewardConfig", "RewardDataCollatorWithPadding", "RewardModel",
           "RewardTrainer",
           "RewardOutput", "add_cli_arguments", "load_reward_function", "pair_rewards", "pairwise_accuracy",
           "reward_function", "reward_loss", "reward_metrics", "reward_model", "reward_text", "run_from_args",
           "run_reward"]
