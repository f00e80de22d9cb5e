"""GRPO (Shao et al., 2024, DeepSeekMath), as TRL's ``GRPOTrainer``: no value model, the group is the baseline.

For each prompt, G completions are sampled; each gets a reward r_i from a rule (a *verifiable* reward) or a
model; its advantage is how much better it did than its group (``losses.grpo_advantages``):

    A_i = (r_i − mean(r_group)) / (std(r_group) + 1e-4)         the same A_i on every token of completion i

and the policy minimizes, per completion token t of completion i, PPO's clipped term plus a KL penalty to the
reference (the k3 estimator, ``losses.kl_penalty``):

    ρ_it = π(y_it | ·) / π_old(y_it | ·)
    ℓ_it = −min(ρ_it A_i, clip(ρ_it, 1 − ε, 1 + ε_high) A_i) + β · (e^{log π_ref − log π} − (log π_ref − log π) − 1)

summed in one of TRL's three ways (``loss_type``), with m_it the completion mask and |o_i| = Σ_t m_it:

    "grpo":     (1/B) Σ_i (1/|o_i|) Σ_t m_it ℓ_it        each completion's mean, then the mean over completions
    "bnpo":     Σ_it m_it ℓ_it / Σ_it m_it               the mean over every token of the batch
    "dr_grpo":  Σ_it m_it ℓ_it / (B · L_max)             a constant normalizer (Dr. GRPO, Liu et al., 2025)

"grpo" gives each completion the same weight whatever its length, so each token of a short completion weighs
more than a token of a long one: a wrong answer is pushed down less per token when it is long (the length
bias Dr. GRPO removes by dividing by a constant, L_max = ``max_completion_length``).

With one pass per batch (``num_iterations=1``) π_old = π, so ρ = 1 and at the start π = π_ref (k3 = 0): each
token's term is −A_i. "grpo" averages each completion first, so its loss is −(1/B) Σ_i A_i = 0 whatever the
lengths (the advantages of a group sum to 0); "bnpo" and "dr_grpo" weigh completion i by its length,
−Σ_i |o_i| A_i / N, which is 0 only when the lengths are equal (or uncorrelated with A). Either way the
gradient is not 0: ∂ℓ/∂log π_it = −A_i · (weight of the token). That gradient, A ∇ log π, is the policy
gradient with the group as baseline (open-r1#239: "the loss is 0, is it learning?" — yes).
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np  # host-side: sampled ids, rewards, advantages, statistics and traces; the loss itself is xp

from .. import functional as F
from ..autograd.grad_mode import no_grad
from ..backend import to_numpy, xp
from ..inspect.trace import Trace
from ..train.callbacks import TrainerState
from ..train.trainer import TrainOutput
from .losses import _array, _check_same_shape, _tensor, grpo_advantages, token_logprobs

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")  # TRL's later default "dapo" is "bnpo" on one process without accumulation


# ============================================================================ the loss
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, beta=0.04, epsilon=0.2, epsilon_high=None,
              loss_type="grpo", max_completion_length=None, trace=False):
    """GRPO's loss (see the module docstring) → ``(loss, stats)`` [, ``Trace``].

    ``logprobs`` (B, L): log π of each completion token (a Tensor with gradients); ``old_logprobs`` and
    ``ref_logprobs`` (B, L): constants; ``advantages`` (B,): one per completion; ``mask`` (B, L): 1 on the
    completion's tokens (through its EOS), 0 on padding. ``epsilon_high`` defaults to ``epsilon`` (DAPO's
    "clip higher" sets it larger). ``beta = 0`` drops the KL term (TRL's default since v0.19, trl#3516; 0.04 before).
    ``max_completion_length`` (for "dr_grpo"): L_max, default the width L of the batch.

    ``stats``: ``kl`` (the masked mean of k3), ``clip_ratio`` (TRL's: the share of tokens where the clip is
    active — ρ < 1 − ε with A < 0, or ρ > 1 + ε_high with A > 0), ``ratio_mean``. ``trace=True`` adds a
    per-token ``Trace`` (completion, position, the three log-probs, ρ, clipped, A, k3, the token's term and its
    weight in the loss) whose Σ weight · term is the loss.
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES} (TRL's), got {loss_type!r}")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    for name, value in (("beta", beta), ("epsilon", epsilon), ("epsilon_high", epsilon_high)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    _check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, ref_logprobs=ref_logprobs, mask=mask)
    logprobs = _tensor(logprobs)
    if logprobs.ndim != 2:
        raise ValueError(f"logprobs must be (completions, tokens), got shape {tuple(logprobs.shape)}")
    b, width = logprobs.shape
    adv_host = _array(advantages).reshape(-1)  # any shape -> (n,), checked to be (B,) below
    if adv_host.shape != (b,):
        raise ValueError(f"advantages must hold one number per completion, ({b},), got shape {np.shape(advantages)}")
    m_host = _array(mask)
    lengths = m_host.sum(axis=1)
    if (lengths == 0).any():
        raise ValueError(f"completions {np.flatnonzero(lengths == 0).tolist()} have no token with mask 1")
    max_len = width if max_completion_length is None else max_completion_length
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < width:
        raise ValueError(f"max_completion_length must be an integer >= the completions' width {width}, got "
                         f"{max_completion_length!r}")
    dtype = logprobs.dtype
    old = xp.asarray(_array(old_logprobs)).astype(dtype)
    ref = xp.asarray(_array(ref_logprobs)).astype(dtype)
    adv = xp.asarray(adv_host).astype(dtype)
    m = xp.asarray(m_host).astype(dtype)
    # TASK rlhf.grpo_loss: GRPO's loss: clipped ratio, k3 KL to the reference, the grpo/bnpo/dr_grpo normalizations
    # BEGIN SOLUTION
    ratio = F.exp(logprobs - old)  # ρ, (B, L)
    per_token_adv = adv[:, None]  # one advantage per completion, on each of its tokens
    unclipped = ratio * per_token_adv
    clipped = F.clip(ratio, 1.0 - epsilon, 1.0 + epsilon_high) * per_token_adv
    per_token = -F.minimum(unclipped, clipped)
    if beta:
        log_ratio_ref = ref - logprobs  # log(π_ref / π)
        per_token = per_token + beta * (F.exp(log_ratio_ref) - log_ratio_ref - 1.0)
    if loss_type == "grpo":
        loss = ((per_token * m).sum(axis=1) / m.sum(axis=1)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * m).sum() / m.sum()
    else:
        loss = (per_token * m).sum() / (b * max_len)
    # END SOLUTION
    lp, old_h, ref_h = _array(logprobs), _array(old_logprobs), _array(ref_logprobs)
    rho = np.exp(lp - old_h)
    k3 = np.exp(ref_h - lp) - (ref_h - lp) - 1.0
    active = ((rho < 1 - epsilon) & (adv_host[:, None] < 0)) | ((rho > 1 + epsilon_high) & (adv_host[:, None] > 0))
    count = m_host.sum()
    stats = {"kl": float((k3 * m_host).sum() / count), "clip_ratio": float((active * m_host).sum() / count),
             "ratio_mean": float((rho * m_host).sum() / count)}
    if not trace:
        return loss, stats
    if loss_type == "grpo":
        weights = m_host / (b * lengths[:, None])
    elif loss_type == "bnpo":
        weights = m_host / count
    else:
        weights = m_host / (b * max_len)
    terms = -np.minimum(rho * adv_host[:, None], np.clip(rho, 1 - epsilon, 1 + epsilon_high) * adv_host[:, None]) + beta * k3
    rows, cols = np.nonzero(m_host)
    table = Trace({"completion": rows, "t": cols, "logprob": lp[rows, cols], "old": old_h[rows, cols],
                   "ref": ref_h[rows, cols], "ratio": rho[rows, cols], "clipped": active[rows, cols],
                   "advantage": adv_host[rows], "k3": k3[rows, cols], "term": terms[rows, cols],
                   "weight": weights[rows, cols]})
    return loss, stats, table


# ============================================================================ verifiable rewards
POSITIVE_WORDS = frozenset(
    "good great best wonderful excellent fun funny beautiful brilliant delight delightful enjoyable moving "
    "charming superb fine love loved lovely perfect touching warm witty smart fresh terrific amazing".split())
NEGATIVE_WORDS = frozenset(
    "bad worst awful boring dull terrible mess poor stupid waste tedious flat weak lame horrible ugly "
    "annoying pointless bland".split())
_WORD = re.compile(r"[a-z']+")


def positive_word_reward(completion, prompt=None):
    """1.0 if the completion uses a word of ``POSITIVE_WORDS`` and none of ``NEGATIVE_WORDS``, else 0.0.

    A RULE, not a model: it can be checked by reading the text (a "verifiable" reward, as the answer of a
    math problem is). tiny-gpt wrote movie reviews before; this asks it to write approving ones."""
    words = set(_WORD.findall(completion.lower()))
    return float(bool(words & POSITIVE_WORDS) and not words & NEGATIVE_WORDS)


def arithmetic_reward(completion, prompt):
    """1.0 if the last integer in the completion is the answer to the prompt's "a + b" (or a − b, a × b),
    else 0.0: a verifiable reward for an instruction model such as SmolLM2.

    The *last* integer, as lm-evaluation-harness's "flexible extract" reads GSM8K answers: a small model
    restates the question before answering ("To add 9 and 26, we …"), so the first integer is usually an
    operand. A completion cut before its answer scores 0, as it would with an exact-match grader."""
    match = re.search(r"(-?\d+)\s*([+\-*×x])\s*(-?\d+)", prompt)
    if not match:
        raise ValueError(f"arithmetic_reward needs a prompt with 'a + b', 'a - b' or 'a * b', got {prompt[:60]!r}")
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    answer = a + b if op == "+" else a - b if op == "-" else a * b
    found = re.findall(r"-?\d+", completion)
    return float(bool(found) and int(found[-1]) == answer)


REWARDS = {"positive_words": positive_word_reward, "arithmetic": arithmetic_reward}


def prompts_for(task, tokenizer, split, n, prompt_tokens, chat, seed=0):
    """(prompt texts, their token ids (n, P)) — every prompt the same number of tokens, so a batch needs no padding.

    ``positive_words``: the first ``prompt_tokens`` tokens of real movie reviews (the split of
    ``load_dataset("sentiment")``); ``arithmetic``: "What is a + b?" with random one-digit a and b. (With
    numbers up to 49 SmolLM2-135M answered almost none right, so every group scored 0 and GRPO had nothing to
    learn from; with one digit about one answer in seven is right: the groups have a spread.)"""
    rng = np.random.default_rng(seed)
    if task == "positive_words":
        from ..data.tasks import load_dataset

        texts, ids = [], []
        for text in load_dataset("sentiment")[split]["text"]:
            enc = tokenizer.encode(text, add_special_tokens=False)
            if len(enc) > prompt_tokens:
                ids.append(list(enc[:prompt_tokens]))
                texts.append(tokenizer.decode(ids[-1]))
            if len(ids) == n:
                break
        if len(ids) < n:
            raise ValueError(f"{n} {split} prompts of {prompt_tokens} tokens are needed, but only {len(ids)} reviews of "
                             f"the {split} split are longer than that: lower --prompt-tokens, or fewer prompts "
                             "(--prompts-per-step, --max-steps, --eval-prompts)")
        return texts, np.asarray(ids, dtype=np.int64)
    if task == "arithmetic":
        offset = 0 if split == "train" else 10_000  # other draws for held-out prompts
        rng = np.random.default_rng(seed + offset)
        texts = [f"What is {a} + {b}? Answer with the number only." for a, b in rng.integers(1, 10, size=(n, 2))]
        encoded = [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True)
                   if chat else tokenizer.encode(t, add_special_tokens=False) for t in texts]
        width = max(len(e) for e in encoded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if any(len(e) != width for e in encoded):  # left-pad with the pad id: only the chat template's tokens differ
            encoded = [[pad] * (width - len(e)) + list(e) for e in encoded]
        return texts, np.asarray(encoded, dtype=np.int64)
    raise ValueError(f"unknown task {task!r}; GRPO knows {sorted(REWARDS)}")


# ============================================================================ sampling and log-probs
def sample_completions(model, prompt_ids, num_generations, max_completion_length, temperature, eos_token_id,
                       pad_token_id, top_k=None):
    """G completions of each prompt: (ids (B·G, P + L), completion mask (B·G, L)); completions i·G … i·G + G − 1
    belong to prompt i. The mask is 1 through each completion's first EOS and 0 after it."""
    from ..models.generation import generate

    prompts = np.repeat(np.asarray(prompt_ids), num_generations, axis=0)  # (B·G, P)
    ids = to_numpy(generate(model, prompts, max_new_tokens=max_completion_length, do_sample=True,
                            temperature=temperature, top_k=top_k, eos_token_id=eos_token_id, pad_token_id=pad_token_id))
    completion = ids[:, prompts.shape[1]:]  # (B·G, L)
    is_eos = completion == eos_token_id
    after_eos = np.cumsum(is_eos, axis=1) - is_eos > 0  # positions after the first EOS
    return ids, (~after_eos).astype(np.int64)


def completion_logprobs(model, ids, prompt_length, temperature=1.0):
    """log π(y_t | prompt, y_<t) of each completion token under softmax(logits / T), the distribution the
    tokens were sampled from: (B, L) Tensor (with gradients if the model has them). TRL divides the logits by
    the sampling temperature for π, π_old and π_ref alike, so that π_old is the sampling policy at any T."""
    return token_logprobs(model(ids).logits * (1.0 / temperature), ids)[:, prompt_length - 1:]


# ============================================================================ the run: minift align grpo
METHODS = ("lora", "full")


@dataclass
class GRPOConfig:
    """The options of ``minift align grpo``, with TRL's ``GRPOConfig`` names (``num_generations``, ``beta``,
    ``epsilon``, ``epsilon_high``, ``loss_type``, ``scale_rewards``, ``max_completion_length``,
    ``temperature``, ``num_iterations``, ``learning_rate``). ``max_steps`` counts optimizer steps, as TRL's;
    a new batch is sampled every ``num_iterations`` of them."""
    policy: str = "checkpoints/tiny-gpt"
    task: str = "positive_words"
    method: str = "lora"
    num_generations: int = 8
    prompts_per_step: int = 4
    max_steps: int = 50
    max_completion_length: int = 16
    prompt_tokens: int = 4  # positive_words: the prompt is a review's first tokens
    temperature: float = 1.0
    top_k: int | None = None
    num_iterations: int = 1  # TRL's μ: optimizer steps on each sampled batch (π_old = the sampling policy)
    beta: float = 0.04
    epsilon: float = 0.2
    epsilon_high: float | None = None
    loss_type: str = "grpo"
    scale_rewards: bool = True
    learning_rate: float | None = None  # default: 5e-3 with LoRA, 1e-4 for full fine-tuning
    max_grad_norm: float = 1.0
    lora_r: int = 8
    lora_alpha: float = 16
    target_modules: str | list = "q_proj,k_proj,v_proj,o_proj"
    eval_prompts: int = 16
    logging_steps: int = 5
    seed: int = 0
    out: str | None = None  # default: runs/grpo-<task>-<method>

    def __post_init__(self):
        if self.task not in REWARDS:
            raise ValueError(f"unknown task {self.task!r}; minift align grpo knows {sorted(REWARDS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; minift align grpo knows {list(METHODS)}")
        if self.loss_type not in GRPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(GRPO_LOSS_TYPES)}, got {self.loss_type!r}")
        for name in ("prompts_per_step", "max_steps", "max_completion_length", "prompt_tokens", "lora_r",
                     "logging_steps", "eval_prompts", "num_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.num_generations, bool) or not isinstance(self.num_generations, int) or self.num_generations < 2:
            raise ValueError(f"num_generations must be an integer >= 2 (a group needs a spread), got {self.num_generations!r}")
        for name in ("temperature",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.learning_rate is None:
            self.learning_rate = 1e-4 if self.method == "full" else 5e-3
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.out is None:
            self.out = str(Path("runs") / f"grpo-{self.task}-{self.method}")
        for name in ("beta", "epsilon", "epsilon_high"):  # checked here, not by calling grpo_loss (a student's task)
            value = getattr(self, name)
            if value is None and name == "epsilon_high":
                continue
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _reference(policy, ref_model, temperature):
    """A function ids → reference log-probs of the completion tokens: the frozen copy, or the adapter off."""
    def reference(ids, prompt_length):
        with no_grad():
            if ref_model is not None:
                return completion_logprobs(ref_model, ids, prompt_length, temperature).data
            with policy.disable_adapter():
                return completion_logprobs(policy, ids, prompt_length, temperature).data
    return reference


def mean_reward(policy, tokenizer, prompt_texts, prompt_ids, cfg, reward_fn, seed):
    """The mean reward of ``num_generations`` sampled completions of each prompt (seeded: before and after
    training see the same random numbers), and a few samples."""
    from .. import backend

    backend.seed(seed)
    ids, mask = sample_completions(policy, prompt_ids, cfg.num_generations, cfg.max_completion_length, cfg.temperature,
                                   tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.top_k)
    texts = [tokenizer.decode(row[: int(m.sum())].tolist(), skip_special_tokens=True)
             for row, m in zip(ids[:, prompt_ids.shape[1]:], mask)]
    prompts = np.repeat(np.asarray(prompt_texts, dtype=object), cfg.num_generations)
    rewards = np.array([reward_fn(t, p) for t, p in zip(texts, prompts)])
    samples = [{"prompt": str(p), "completion": t, "reward": float(r)} for p, t, r in list(zip(prompts, texts, rewards))[::cfg.num_generations][:5]]
    return float(rewards.mean()), samples


class GRPOTrainer:
    """TRL's ``GRPOTrainer`` in minift's pieces: sampling, rewards, group advantages, ``grpo_loss``, AdamW.

        trainer = GRPOTrainer(policy, positive_word_reward, GRPOConfig(num_generations=8, max_steps=50),
                              prompts_for("positive_words", tok, "train", 200, 4, chat=False), tok)
        trainer.train()                     # a TrainOutput, as TRL's (a transformers Trainer) returns
        trainer.state.log_history           # one record per step, TRL's keys

    ``reward_funcs``: a function (completion, prompt) → float, or a list of them (their rewards are summed, as
    TRL sums its reward functions). ``train_dataset``: (prompt texts, prompt ids (N, P)) — every prompt the same
    number of tokens (``prompts_for`` makes them so). ``ref_model=None`` with a PEFT policy: the reference is
    its adapter disabled; with any other policy it needs ``beta = 0``, and then, as in TRL, no reference is
    computed and the records have no ``kl`` (``run_grpo`` always keeps one, to report the KL). Only the
    optimization options of ``args`` are read (``num_generations``, ``prompts_per_step``, ``max_steps``,
    ``num_iterations``, the loss's, the sampling's, ``learning_rate``).

    Every ``num_iterations`` steps a new batch: ``prompts_per_step`` prompts, ``num_generations`` sampled
    completions each, their rewards, the group advantages, the reference log-probs and the old log-probs; each
    step one gradient step on ``grpo_loss``. With ``num_iterations`` = 1, π_old = π detached (ρ = 1, TRL's
    shortcut); with more, π_old is the sampling policy, fixed while the batch is reused, and the clip binds.
    """

    def __init__(self, model, reward_funcs, args, train_dataset, processing_class, ref_model=None):
        from ..optim import AdamW
        from .dpo import disable_dropout

        has_reference = ref_model is not None or hasattr(model, "disable_adapter")
        if not has_reference and args.beta != 0:
            raise ValueError(f"GRPO with beta = {args.beta} needs a reference: pass ref_model=, or give the policy a "
                             "PEFT adapter (mf.peft.get_peft_model) so that the reference is the policy with it "
                             "disabled, or set beta=0 (no KL term: then, as in TRL, no reference is needed)")
        funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        if not funcs or not all(callable(f) for f in funcs):
            raise TypeError("reward_funcs must be a function (completion, prompt) → float, or a list of them")
        texts, ids = train_dataset
        ids = np.asarray(ids)
        if ids.ndim != 2 or len(texts) != len(ids):
            raise ValueError(f"train_dataset must be (prompt texts, prompt ids of shape (N, P)) with one text per row, "
                             f"got {len(texts)} texts and ids of shape {ids.shape}")
        needed = args.prompts_per_step * -(-args.max_steps // args.num_iterations)
        if len(ids) < needed:
            steps = f"{args.max_steps} step{'s' if args.max_steps != 1 else ''}"
            raise ValueError(f"{steps} of {args.prompts_per_step} prompts (a new batch every {args.num_iterations} "
                             f"step{'s' if args.num_iterations != 1 else ''}) need {needed} prompts; train_dataset has "
                             f"{len(ids)} (--prompts-per-step, --max-steps, --num-iterations)")
        self.model, self.args, self.tokenizer, self.ref_model = disable_dropout(model), args, processing_class, ref_model
        if ref_model is not None:
            disable_dropout(ref_model).eval().requires_grad_(False)
        self.reward_funcs, self.texts, self.ids = funcs, list(texts), ids
        self.reference = _reference(model, ref_model, args.temperature) if has_reference else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = AdamW(self.params, lr=args.learning_rate, weight_decay=0.0)
        self.state = TrainerState()  # the step reached, the records, the seconds of the steps

    def reward(self, completion, prompt):
        return float(sum(f(completion, prompt) for f in self.reward_funcs))

    def sample_batch(self, batch):
        """Batch ``batch``'s prompts: completions, mask, rewards, advantages, reference and old log-probs."""
        cfg, tok = self.args, self.tokenizer
        rows = slice(batch * cfg.prompts_per_step, (batch + 1) * cfg.prompts_per_step)
        prompt_ids = self.ids[rows]
        ids, mask = sample_completions(self.model, prompt_ids, cfg.num_generations, cfg.max_completion_length,
                                       cfg.temperature, tok.eos_token_id, tok.pad_token_id, cfg.top_k)
        p = prompt_ids.shape[1]
        texts = [tok.decode(row[: int(m.sum())].tolist(), skip_special_tokens=True) for row, m in zip(ids[:, p:], mask)]
        prompts = np.repeat(np.asarray(self.texts[rows], dtype=object), cfg.num_generations)  # (B·G,)
        rewards = np.array([self.reward(t, q) for t, q in zip(texts, prompts)])
        old_logps = None
        if cfg.num_iterations > 1:  # the sampling policy's log-probs, kept while the batch is reused
            with no_grad():
                old_logps = completion_logprobs(self.model, ids, p, cfg.temperature).data
        return {"ids": ids, "mask": mask, "prompt_length": p, "rewards": rewards, "texts": texts,
                "advantages": grpo_advantages(rewards, cfg.num_generations, scale_rewards=cfg.scale_rewards),
                "ref_logps": None if self.reference is None else self.reference(ids, p), "old_logps": old_logps}

    def step(self, batch, step):
        """One gradient step on ``grpo_loss`` over a sampled ``batch``; returns the step's record."""
        from ..optim import clip_grad_norm_

        cfg = self.args
        self.model.train()
        logps = completion_logprobs(self.model, batch["ids"], batch["prompt_length"], cfg.temperature)
        old = logps.data if batch["old_logps"] is None else batch["old_logps"]
        ref = old if batch["ref_logps"] is None else batch["ref_logps"]  # none (β = 0): the KL term is dropped anyway
        loss, stats = grpo_loss(logps, old, ref, batch["advantages"], batch["mask"], beta=cfg.beta,
                                epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                max_completion_length=cfg.max_completion_length)
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        rewards, mask = batch["rewards"], batch["mask"]
        groups = rewards.reshape(-1, cfg.num_generations)  # (prompts, G): a prompt's completions are neighbours
        record = {"step": step, "loss": loss.item(), "reward": float(rewards.mean()),
                  # the mean of the groups' stds, TRL's reward_std through v0.26 (since v0.27: the whole batch's
                  # std); 0 when every group's completions score alike: every advantage is 0, no policy-gradient
                  # signal is left (the KL term, with β > 0, still pulls toward the reference)
                  "reward_std": float(groups.std(axis=1, ddof=1).mean()), "kl": stats["kl"],
                  "clip_ratio": stats["clip_ratio"], "ratio_mean": stats["ratio_mean"],
                  "completion_length": float(mask.sum(axis=1).mean()), "grad_norm": float(grad_norm)}
        if batch["ref_logps"] is None:
            del record["kl"]  # no reference, no KL to report
        return record

    def train(self, log_path=None, quiet=True):
        """``args.max_steps`` steps, each record into ``self.state.log_history`` and, if given, ``log_path`` (JSON
        lines). Returns a ``TrainOutput`` (global_step, training_loss: the mean step loss, metrics), as TRL's: a
        sample is one completion (``prompts_per_step · num_generations`` a step) and ``epoch`` the share of
        ``train_dataset``'s prompts drawn."""
        import json
        import time

        from tqdm import tqdm

        cfg, t_start = self.args, time.perf_counter()
        self.state = TrainerState(max_steps=cfg.max_steps)
        history = self.state.log_history
        log = open(log_path, "w") if log_path is not None else None
        bar = tqdm(total=cfg.max_steps, desc="grpo", disable=quiet, ncols=90, mininterval=1.0, file=sys.stderr)
        try:
            for step in range(1, cfg.max_steps + 1):
                t0 = time.perf_counter()
                if (step - 1) % cfg.num_iterations == 0:  # a new batch of prompts and completions
                    batch = self.sample_batch((step - 1) // cfg.num_iterations)
                record = self.step(batch, step)
                self.state.train_seconds += time.perf_counter() - t0
                self.state.global_step = step
                history.append(record)
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                bar.update(1)
                if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                    bar.set_postfix(reward=f"{np.mean([r['reward'] for r in history[-cfg.logging_steps:]]):.3f}",
                                    **({"kl": f"{record['kl']:.4f}"} if "kl" in record else {}))
        finally:
            bar.close()
            if log is not None:
                log.close()
        runtime = time.perf_counter() - t_start
        training_loss = float(np.mean([r["loss"] for r in history]))
        completions = len(history) * cfg.prompts_per_step * cfg.num_generations  # a sample is a completion, as TRL's
        batches = -(-len(history) // cfg.num_iterations)  # the prompt batches drawn, each used num_iterations steps
        self.state.epoch = batches * cfg.prompts_per_step / len(self.ids)  # the share of train_dataset's prompts seen
        return TrainOutput(self.state.global_step, training_loss, {
            "train_runtime": round(runtime, 4), "train_samples_per_second": round(completions / runtime, 3),
            "train_steps_per_second": round(len(history) / runtime, 3), "train_loss": training_loss,
            "epoch": self.state.epoch})


def run_grpo(cfg: GRPOConfig, quiet=False):
    """GRPO of ``cfg.policy`` on ``cfg.task``'s prompts with its verifiable reward; writes into ``cfg.out``
    ``log.jsonl`` (TRL's keys: reward, reward_std, kl, completion_length, clip_ratio, loss), ``reward.png``,
    ``results.json`` (the mean reward on held-out prompts before and after, samples) and the adapter or model.

    The steps are ``GRPOTrainer``'s. Dropout is switched off (TRL's ``disable_dropout``): ρ must compare the same
    network twice."""
    from .. import backend, plotting
    from ..sft import _save_model, _write_json, load_policy
    from ..train.trainer import check_output_dir
    from .dpo import disable_dropout

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)
    policy, tokenizer, chat = load_policy(cfg.policy, cfg.method, cfg.seed)
    disable_dropout(policy)
    if cfg.task == "positive_words" and chat:
        chat = False  # the review's first words are continued as text, not answered
    room = policy.config.max_position_embeddings - cfg.max_completion_length
    reward_fn = REWARDS[cfg.task]
    n_batches = -(-cfg.max_steps // cfg.num_iterations)
    n_train = cfg.prompts_per_step * n_batches
    train_texts, train_ids = prompts_for(cfg.task, tokenizer, "train", n_train, cfg.prompt_tokens, chat, cfg.seed)
    eval_texts, eval_ids = prompts_for(cfg.task, tokenizer, "test", cfg.eval_prompts, cfg.prompt_tokens, chat, cfg.seed)
    if train_ids.shape[1] > room:
        raise ValueError(f"prompts of {train_ids.shape[1]} tokens + max_completion_length {cfg.max_completion_length} "
                         f"exceed the model's context of {policy.config.max_position_embeddings}")
    ref_model = None
    if cfg.method == "lora":
        from ..peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                   target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    else:
        ref_model, _, _ = load_policy(cfg.policy, cfg.method, cfg.seed)
        disable_dropout(ref_model).eval().requires_grad_(False)
    trainer = GRPOTrainer(policy, reward_fn, cfg, (train_texts, train_ids), tokenizer, ref_model=ref_model)
    say(f"GRPO of {cfg.policy} on {cfg.task} ({cfg.method}, G = {cfg.num_generations}, β = {cfg.beta}, "
        f"{cfg.loss_type}): {sum(int(p.data.size) for p in trainer.params):,} parameters trainable; measuring before…")
    before, before_samples = mean_reward(policy, tokenizer, eval_texts, eval_ids, cfg, reward_fn, cfg.seed + 1)
    backend.seed(cfg.seed)
    trainer.train(log_path=out / "log.jsonl", quiet=quiet)
    history, train_seconds = trainer.state.log_history, trainer.state.train_seconds
    after, after_samples = mean_reward(policy, tokenizer, eval_texts, eval_ids, cfg, reward_fn, cfg.seed + 1)
    plotting.plot_curves({"reward (training batch)": [r["reward"] for r in history]}, out / "reward.png",
                         title=f"GRPO on {cfg.task}", xlabel="step", ylabel="mean reward")
    results = {"policy": cfg.policy, "task": cfg.task, "method": cfg.method,
               "before": {"mean_reward": before}, "after": {"mean_reward": after, "kl": history[-1]["kl"]},
               "samples_before": before_samples, "samples_after": after_samples,
               "train_seconds": round(train_seconds, 2), "train_steps": cfg.max_steps,
               "machine": backend.machine_summary(), "args": asdict(cfg)}
    _save_model(policy, cfg.method, tokenizer, out, say)
    _write_json(out / "results.json", results)
    say(f"held-out mean reward {before:.3f} → {after:.3f}")
    return results


def add_cli_arguments(parser):
    """The options of ``minift align grpo POLICY``."""
    from ..cli import non_negative_float, non_negative_int, positive_float, positive_int

    d = GRPOConfig()
    parser.add_argument("policy", help="checkpoints/tiny-gpt (task positive_words) or smollm2 (task arithmetic)")
    parser.add_argument("--task", choices=sorted(REWARDS), default=d.task,
                        help="the verifiable reward: positive_words (a review approving by a word list), arithmetic")
    parser.add_argument("--method", choices=METHODS, default=d.method,
                        help="lora: the reference is the adapter disabled; full: a frozen copy is the reference")
    def group_size(text):
        import argparse

        value = non_negative_int(text)
        if value < 2:
            raise argparse.ArgumentTypeError(f"expected an integer >= 2 (a group needs a spread), got {text!r}")
        return value

    parser.add_argument("--num-generations", type=group_size, default=d.num_generations, help="G, at least 2")
    parser.add_argument("--prompts-per-step", type=positive_int, default=d.prompts_per_step)
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    parser.add_argument("--max-completion-length", type=positive_int, default=d.max_completion_length)
    parser.add_argument("--prompt-tokens", type=positive_int, default=d.prompt_tokens)
    parser.add_argument("--temperature", type=positive_float, default=d.temperature)
    parser.add_argument("--top-k", type=positive_int, default=None)
    parser.add_argument("--num-iterations", type=positive_int, default=d.num_iterations,
                        help="optimizer steps on each sampled batch (TRL's μ; > 1: the clip binds)")
    parser.add_argument("--beta", type=non_negative_float, default=d.beta, help="the k3 KL coefficient (0: no reference)")
    parser.add_argument("--epsilon", type=non_negative_float, default=d.epsilon)
    parser.add_argument("--epsilon-high", type=non_negative_float, default=None, help="default: --epsilon")
    parser.add_argument("--loss-type", choices=GRPO_LOSS_TYPES, default=d.loss_type)
    parser.add_argument("--no-scale-rewards", dest="scale_rewards", action="store_false",
                        help="do not divide the advantages by the group's std (Dr. GRPO)")
    parser.add_argument("--learning-rate", type=positive_float, default=None, help="default: 5e-3 lora, 1e-4 full")
    parser.add_argument("--lora-r", type=positive_int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=positive_float, default=d.lora_alpha)
    parser.add_argument("--eval-prompts", type=positive_int, default=d.eval_prompts)
    parser.add_argument("--logging-steps", type=positive_int, default=d.logging_steps)
    parser.add_argument("--seed", type=non_negative_int, default=d.seed)
    parser.add_argument("--out", default=None, help="output directory (default: runs/grpo-TASK-METHOD)")


def run_from_args(args, quiet=False):
    """``minift align grpo``: the parsed options → ``GRPOConfig`` → ``run_grpo``; returns its results."""
    from ..cli import config_from_args

    return run_grpo(config_from_args(GRPOConfig, args), quiet=quiet)


__all__ = ["GRPOConfig", "GRPOTrainer", "GRPO_LOSS_TYPES", "NEGATIVE_WORDS", "POSITIVE_WORDS", "REWARDS", "add_cli_arguments",
           "arithmetic_reward", "completion_logprobs", "grpo_loss", "mean_reward", "positive_word_reward", "prompts_for",
           "run_from_args", "run_grpo", "sample_completions"]
