"""PPO for language models (Ziegler et al., 2019; Ouyang et al., 2022), as TRL's ``PPOTrainer`` does it.

One PPO step, on a batch of B prompts:

1. **rollout** — sample a response of up to ``response_length`` tokens from π_θ (``temperature``), stop at
   EOS (the EOS token counts, what follows it is masked); record log π_θ, log π_ref and the value V of each
   response token (one forward pass each, no gradient);
2. **score** — the reward function reads each prompt + response and gives one number s (B,);
3. **per-token rewards** — r_t = −β·KL_t on every response token, plus s on the last real one
   (``ppo_rewards``), KL_t = log π_θ − log π_ref (k1);
4. **advantages** — GAE over the response (``compute_gae``), then whitened (``whiten``);
5. **update** — ``num_ppo_epochs`` passes over ``num_mini_batches`` minibatches, each minimizing

       loss = clipped surrogate(ρ, A)  +  vf_coef · clipped value loss(V, returns)

   with AdamW and gradient clipping; ρ = exp(log π_θ − log π_old) is exactly 1 on the first minibatch.

β is fixed (``FixedKLController``) or adapted to a KL target (``AdaptiveKLController``). The policy and the
value function share one body (TRL's ``AutoModelForCausalLMWithValueHead``): ``PolicyWithValueHead``. With
LoRA the reference is the policy with its adapter disabled (no second copy); with full fine-tuning, a frozen
copy. Rollout buffers are host (NumPy) arrays; the model's work runs on ``xp``.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np  # host-side: rollouts' ids, scores, rewards, advantages and traces; the losses are xp Tensors

from .. import backend
from ..autograd.grad_mode import no_grad
from ..backend import to_numpy, xp
from ..inspect.trace import Trace
from ..nn.layers import Linear
from ..nn.module import Module
from .losses import (KL_KINDS, compute_gae, masked_mean, ppo_policy_loss, ppo_value_loss,
                     token_logprobs, value_clipfrac, whiten)


# ============================================================================ the per-token rewards
def ppo_rewards(scores, logprobs, ref_logprobs, mask, kl_coef, kl_estimator="k1"):
    """PPO's per-token rewards → ``(rewards, kl)``, host arrays (B, T):

        kl_t      = KL estimate of token t (``kl_penalty``'s k1 = log π − log π_ref, k2, k3), 0 where mask = 0
        rewards_t = −β · kl_t                    on every response token (mask 1)
        rewards_T += s                           at T = the LAST position with mask 1 of each row

    so that Σ_t rewards_t = s − β Σ_t kl_t over the mask. ``scores`` (B,): the reward model's score of each
    whole response; ``mask`` (B, T): 1 on the response's tokens (up to and including EOS), 0 on the padding
    after it. Here the score lands on the last real token (the EOS if the response stopped), as the RLHF
    literature places it. TRL's ``PPOTrainer`` adds it one position later, at ``sequence_lengths + 1`` — the
    first pad after EOS, which it keeps in GAE — whenever the row has padding (trl#1893, trl#3750; the pull
    request that proposed moving it to the EOS, trl#5338, was closed unmerged). When the pad id is the EOS
    id, TRL's search for the first pad finds the EOS itself: its score then lands on the EOS, which it also
    counts as padding in the policy loss.
    """
    s = np.asarray(to_numpy(getattr(scores, "data", scores)), dtype=np.float64)
    lp = np.asarray(to_numpy(getattr(logprobs, "data", logprobs)), dtype=np.float64)
    ref = np.asarray(to_numpy(getattr(ref_logprobs, "data", ref_logprobs)), dtype=np.float64)
    m = np.asarray(to_numpy(getattr(mask, "data", mask)), dtype=np.float64)
    if lp.ndim != 2 or lp.shape != ref.shape or lp.shape != m.shape:
        raise ValueError(f"logprobs, ref_logprobs and mask must be (batch, positions) of one shape, got "
                         f"{lp.shape}, {ref.shape} and {m.shape}")
    if s.shape != (lp.shape[0],):
        raise ValueError(f"scores must be one number per sequence, shape ({lp.shape[0]},), got {s.shape}")
    if not ((m == 0) | (m == 1)).all():
        raise ValueError("mask must hold only 0 and 1")
    if (m.sum(axis=1) == 0).any():
        raise ValueError(f"sequences {np.flatnonzero(m.sum(axis=1) == 0).tolist()} have no response token "
                         "(mask all 0): the score has no token to go to")
    if not (isinstance(kl_coef, (int, float, np.floating)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0 (β), got {kl_coef!r}")
    if kl_estimator not in KL_KINDS:
        raise ValueError(f"kl_estimator must be one of {KL_KINDS}, got {kl_estimator!r}")
    # the estimators of losses.kl_penalty (k1, k2, k3), on the host: this task does not build on that one
    log_ratio = lp - ref  # log π − log π_ref
    per_token = {"k1": log_ratio, "k2": 0.5 * log_ratio**2, "k3": np.expm1(-log_ratio) + log_ratio}[kl_estimator]
    # TASK rlhf.ppo_rewards: PPO's per-token rewards: −β·KL on every token, the score on the last real one
    # BEGIN SOLUTION
    kl = per_token * m  # (B, T): 0 on the padding
    rewards = -kl_coef * kl
    last = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)  # (B,): index of each row's last 1
    rewards[np.arange(len(s)), last] += s
    # END SOLUTION
    return rewards, kl


# ============================================================================ β: fixed or adaptive
class FixedKLController:
    """β stays ``kl_coef``."""

    def __init__(self, kl_coef):
        if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
        self.value = float(kl_coef)

    def update(self, current_kl, n_steps):
        return self.value


class AdaptiveKLController:
    """Ziegler et al. (2019)'s β, steered toward a KL target (TRL's ``AdaptiveKLController``):

        e = clip(KL / target − 1, −0.2, 0.2),        β ← β · (1 + e · n_steps / horizon)

    KL above the target raises β (the penalty pulls π back), below lowers it. ``n_steps``: the number of
    episodes (sequences) since the last update.
    """

    def __init__(self, init_kl_coef, target, horizon):
        for name, value, low in (("init_kl_coef", init_kl_coef, 0), ("target", target, None), ("horizon", horizon, None)):
            ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if low == 0 else value > 0)
            if not ok:
                raise ValueError(f"{name} must be a finite number {'>= 0' if low == 0 else '> 0'}, got {value!r}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl, n_steps):
        error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


# ============================================================================ policy + value head
class PolicyWithValueHead(Module):
    """A causal LM and a linear value head on its last hidden states (TRL's
    ``AutoModelForCausalLMWithValueHead``): ``forward(input_ids, attention_mask)`` → ``(logits, values)``,
    (B, T, V) and (B, T). V at position t is the value of the state x_≤t — the state in which token t + 1 is
    chosen, the same position whose logits choose it. The head (``v_head``: hidden → 1) starts small (weights
    N(0, 0.02²), bias 0) so that the first values are near 0."""

    def __init__(self, pretrained_model):
        super().__init__()
        self.pretrained_model = pretrained_model
        config = pretrained_model.config
        self.config = config
        self.v_head = Linear(config.hidden_size, 1)
        self.v_head.weight.data[...] = backend.asarray(
            backend.rng().normal(0.0, 0.02, self.v_head.weight.shape)).astype(self.v_head.weight.dtype)
        self.v_head.bias.data[...] = 0

    def forward(self, input_ids, attention_mask=None):
        out = self.pretrained_model(input_ids, attention_mask=attention_mask)
        h = out.last_hidden_state  # (B, T, C)
        values = self.v_head(h)  # (B, T, 1)
        return out.logits, values.reshape(values.shape[0], values.shape[1])  # (B, T, V), (B, T)


# ============================================================================ rollouts
@dataclass
class Rollout:
    """One batch of sampled responses; every array is on the host. Response arrays are (B, R), position t
    being response token t."""
    query: np.ndarray  # (B, P) prompt ids, left-padded
    query_mask: np.ndarray  # (B, P) 1 on real prompt tokens
    response: np.ndarray  # (B, R) sampled ids; after EOS: the pad id
    mask: np.ndarray  # (B, R) float: 1 up to and including the first EOS
    logprobs: np.ndarray  # (B, R) log π_θ(token) (the temperature-scaled distribution it was drawn from)
    ref_logprobs: np.ndarray  # (B, R) log π_ref(token), same scaling
    values: np.ndarray  # (B, R) V before each token
    sampling_logprobs: np.ndarray  # (B, R) the same log-probs, from the logits seen while sampling (KV cache)
    texts: list = field(default_factory=list)  # prompt + response, as the reward function reads them
    responses: list = field(default_factory=list)  # the response's text alone
    scores: np.ndarray | None = None  # (B,) the reward function's scores


def encode_prompts(tokenizer, prompts, add_bos=True):
    """Prompts → left-padded ids and mask (B, P), int64 (generation continues from the right edge). A BOS
    token goes first when the tokenizer has one (a pretrained gpt2's documents start after it)."""
    if isinstance(prompts, str) or not len(prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    bos = tokenizer.bos_token_id if add_bos else None
    rows = [([bos] if bos is not None else []) + list(tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    empty = [i for i, r in enumerate(rows) if not r]
    if empty:
        raise ValueError(f"prompt {empty[0]} has no token")
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
    return ids, mask


def response_mask(response, eos_token_id):
    """(B, R) float mask: 1 on each token up to and including the first EOS, 0 after it."""
    is_eos = np.asarray(response) == eos_token_id if eos_token_id is not None else np.zeros(np.shape(response), bool)
    eos_before = np.cumsum(is_eos, axis=1) - is_eos  # EOS tokens strictly before t
    return (eos_before == 0).astype(np.float64)


def _response_logprobs(logits, ids, prompt_length, temperature):
    """(B, R) Tensor: log-probs of the response tokens ids[:, P:] under softmax(logits / temperature)."""
    return token_logprobs(logits * (1.0 / temperature), ids)[:, prompt_length - 1:]


class PPOTrainer:
    """PPO on ``policy`` (a ``PolicyWithValueHead``) with ``reward_fn(texts) -> (B,)``; see the module's
    docstring for the step. ``ref_model``: None — the reference is the policy with its PEFT adapter disabled
    — or a frozen causal LM. ``config``: a ``PPOConfig`` (its algorithm fields are used)."""

    def __init__(self, config, policy, tokenizer, reward_fn, ref_model=None):
        from ..optim import AdamW
        from .dpo import disable_dropout

        if not isinstance(policy, PolicyWithValueHead):
            raise TypeError(f"policy must be a PolicyWithValueHead (a causal LM + value head), got {type(policy).__name__}")
        if ref_model is None and not hasattr(policy.pretrained_model, "disable_adapter"):
            raise ValueError("PPO needs a reference: pass ref_model= (a frozen copy), or give the policy a PEFT "
                             "adapter (mf.peft.get_peft_model) so that the reference is the adapter disabled")
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be a callable texts -> scores (B,), got {type(reward_fn).__name__}")
        self.config, self.policy, self.tokenizer, self.reward_fn = config, policy, tokenizer, reward_fn
        self.ref_model = ref_model
        disable_dropout(policy)
        if ref_model is not None:
            disable_dropout(ref_model).eval().requires_grad_(False)
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        self.params = [p for p in policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the policy has no trainable parameter")
        self.optimizer = AdamW(self.params, lr=config.learning_rate, eps=1e-5, weight_decay=0.0)
        self.kl_ctl = (AdaptiveKLController(config.kl_coef, config.target, config.horizon) if config.adap_kl_ctrl
                       else FixedKLController(config.kl_coef))
        self.last_minibatch_stats = []  # per minibatch of the last step: ratio, clipfrac, … (the first: ratio 1)

    # ------------------------------------------------------------------ rollout
    def score(self, texts):
        # one score per text: any shape -> (n,)
        scores = np.asarray(self.reward_fn(list(texts)), dtype=np.float64).reshape(-1)
        if scores.shape != (len(texts),):
            raise ValueError(f"reward_fn gave {scores.shape[0]} scores for {len(texts)} texts")
        if not np.isfinite(scores).all():
            raise ValueError("reward_fn gave a non-finite score")
        return scores

    def reference_logits(self, ids, mask):
        with no_grad():
            if self.ref_model is not None:
                return self.ref_model(ids, attention_mask=mask).logits
            with self.policy.pretrained_model.disable_adapter():
                return self.policy.pretrained_model(ids, attention_mask=mask).logits

    def rollout(self, prompts, score=True):
        """Sample one response per prompt and record what PPO needs (a ``Rollout``)."""
        from ..models.generation import generate

        cfg = self.config
        query, qmask = encode_prompts(self.tokenizer, prompts)
        p = query.shape[1]
        was_training = self.policy.training
        self.policy.eval()
        try:
            ids, step_logits = generate(self.policy.pretrained_model, backend.asarray(query), cfg.response_length,
                                        attention_mask=backend.asarray(qmask), do_sample=True,
                                        temperature=cfg.temperature, eos_token_id=self.eos_token_id,
                                        pad_token_id=self.pad_token_id, output_scores=True)
            response = np.asarray(to_numpy(ids))[:, p:]  # (B, R)
            mask = response_mask(response, self.eos_token_id)
            # what the sampler saw: log softmax(step logits / T) at the drawn token, (B, R)
            z = step_logits / cfg.temperature  # (B, R, V)
            z = z - z.max(axis=-1, keepdims=True)
            lse = xp.log(xp.exp(z).sum(axis=-1))  # (B, R)
            drawn = xp.take_along_axis(z, xp.asarray(response)[:, :, None], axis=-1)[..., 0]
            sampling = np.asarray(to_numpy(drawn - lse), np.float64)
            full_mask = backend.asarray(np.concatenate([qmask, np.ones_like(response)], axis=1))
            with no_grad():
                logits, values = self.policy(ids, attention_mask=full_mask)
                logprobs = _response_logprobs(logits, ids, p, cfg.temperature)
                ref = _response_logprobs(self.reference_logits(ids, full_mask), ids, p, cfg.temperature)
        finally:
            self.policy.train(was_training)
        host = lambda t: np.asarray(to_numpy(t.data), np.float64)  # noqa: E731
        r = Rollout(query=query, query_mask=qmask, response=response, mask=mask, logprobs=host(logprobs) * mask,
                    ref_logprobs=host(ref) * mask, values=host(values[:, p - 1:-1]) * mask,
                    sampling_logprobs=sampling * mask)
        lengths = mask.sum(axis=1).astype(int)
        r.responses = [self.tokenizer.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(response, lengths)]
        r.texts = [q + s for q, s in zip(prompts, r.responses)]
        if score:
            r.scores = self.score(r.texts)
        return r

    # ------------------------------------------------------------------ advantages and the update
    def advantages(self, r, kl_coef=None):
        """(rewards, kl, advantages, returns) of a scored rollout: per-token rewards, GAE, whitening."""
        cfg = self.config
        beta = self.kl_ctl.value if kl_coef is None else kl_coef
        rewards, kl = ppo_rewards(r.scores, r.logprobs, r.ref_logprobs, r.mask, beta, cfg.kl_estimator)
        if cfg.whiten_rewards:
            rewards = whiten(rewards, r.mask, shift_mean=False)
        adv, ret = compute_gae(rewards, r.values, r.mask, gamma=cfg.gamma, lam=cfg.lam)
        if r.mask.sum() >= 2:
            adv = whiten(adv, r.mask)
        return rewards, kl, adv, ret

    def step(self, r):
        """One PPO step on a scored rollout: ``num_ppo_epochs`` × ``num_mini_batches`` updates; returns the
        step's statistics under TRL's names. Where TRL averages over padding too, these are over the response's
        own tokens: ``objective/entropy`` is the mean over responses of Σ −log π (TRL's sum takes 1 off per pad,
        its placeholder log-prob being 1), ``policy/entropy_avg``, ``val/ratio``, ``policy/approxkl_avg``."""
        from ..optim.clip import clip_grad_norm_

        cfg = self.config
        b, p = r.response.shape[0], r.query.shape[1]
        beta = self.kl_ctl.value
        rewards, kl, adv, ret = self.advantages(r)
        ids = np.concatenate([r.query, r.response], axis=1)
        full_mask = np.concatenate([r.query_mask, np.ones_like(r.response)], axis=1)
        if b % cfg.num_mini_batches:  # TRL: mini_batch_size = batch_size / num_mini_batches, exactly
            raise ValueError(f"num_mini_batches ({cfg.num_mini_batches}) must divide the batch ({b} prompts) "
                             "into minibatches of one size")
        self.policy.train()
        self.last_minibatch_stats = []
        for _ in range(cfg.num_ppo_epochs):
            order = to_numpy(backend.rng().permutation(b))  # host indices: the rollout's arrays are NumPy
            for idx in np.array_split(order, cfg.num_mini_batches):
                logits, values = self.policy(backend.asarray(ids[idx]), attention_mask=backend.asarray(full_mask[idx]))
                new_logprobs = _response_logprobs(logits, backend.asarray(ids[idx]), p, cfg.temperature)  # (b, R)
                vpred = values[:, p - 1:-1]  # (b, R): V before each response token
                m = r.mask[idx]
                pg_loss, pg = ppo_policy_loss(new_logprobs, r.logprobs[idx], adv[idx], m, cfg.cliprange)
                vf_loss = ppo_value_loss(vpred, r.values[idx], ret[idx], m, cfg.cliprange_value)
                loss = pg_loss + cfg.vf_coef * vf_loss
                self.optimizer.zero_grad()
                loss.backward()
                clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                vf_clipfrac = value_clipfrac(vpred.data, r.values[idx], ret[idx], m, cfg.cliprange_value)
                self.last_minibatch_stats.append({
                    "policy/approxkl_avg": pg["approx_kl"], "policy/clipfrac_avg": pg["clipfrac"],
                    "loss/policy_avg": float(pg_loss.data), "loss/value_avg": float(vf_loss.data),
                    "val/clipfrac_avg": vf_clipfrac, "val/ratio": pg["ratio_mean"],
                    "policy/entropy_avg": _entropy(logits.data[:, p - 1:-1] * (1.0 / cfg.temperature), m)})
        mean_kl = float(kl.sum(axis=1).mean())
        stats = {k: float(np.mean([s[k] for s in self.last_minibatch_stats])) for k in self.last_minibatch_stats[0]}
        stats["val/ratio_var"] = float(np.var([s["val/ratio"] for s in self.last_minibatch_stats]))
        non_score = float((-beta * kl).sum(axis=1).mean())
        stats.update({"objective/kl": mean_kl, "objective/entropy": float((-r.logprobs * r.mask).sum(axis=1).mean()),
                      "objective/non_score_reward": non_score, "objective/rlhf_reward": non_score + float(r.scores.mean()),
                      "objective/scores": float(r.scores.mean()),
                      "val/num_eos_tokens": int((r.response == self.eos_token_id).sum()) if self.eos_token_id is not None else 0,
                      "response_length": float(r.mask.sum(axis=1).mean()), "kl_coef": beta,
                      "lr": self.optimizer.param_groups[0]["lr"] if hasattr(self.optimizer, "param_groups") else cfg.learning_rate})
        self.kl_ctl.update(mean_kl, b)
        return stats

    def evaluate(self, prompts, seed=None, batch_size=32):
        """Mean score and mean per-sequence Σ KL(k1) to the reference of sampled responses to ``prompts``
        (the RNG seeded with ``seed`` first, so that before and after are drawn alike); and the samples."""
        if seed is not None:
            backend.seed(seed)
        scores, kls, texts = [], [], []
        for start in range(0, len(prompts), batch_size):
            r = self.rollout(prompts[start:start + batch_size])
            scores.append(r.scores)
            kls.append(((r.logprobs - r.ref_logprobs) * r.mask).sum(axis=1))
            texts += r.texts
        s, k = np.concatenate(scores), np.concatenate(kls)
        return {"score": float(s.mean()), "kl": float(k.mean()), "prompts": len(s), "samples": texts}


def _entropy(logits, mask):
    """Masked mean of the entropy −Σ_v p log p of each position's distribution (host float); PPO passes the
    logits divided by the temperature, the distribution it sampled from, as TRL. TRL's mean also runs over the
    padding after EOS; this one is over the response's own tokens."""
    z = logits.astype(xp.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))
    ent = np.asarray(to_numpy(-(xp.exp(logp) * logp).sum(axis=-1)))
    return masked_mean(ent, mask)


# ============================================================================ one rollout, token by token
def rollout_trace(rollout, tokenizer, index=0, kl_coef=None, gamma=None, lam=None, kl_estimator=None,
                  whiten_advantages=False):
    """A ``Trace`` of response ``index`` of a scored ``rollout``, one row per real response token: token,
    logprob, ref_logprob, kl, reward, value, advantage, return. The reward column sums to
    score − β Σ kl; with γ = λ = 1 and no whitening, advantage_t = Σ_{s≥t} reward_s − value_t.
    ``kl_coef``, ``gamma``, ``lam`` and ``kl_estimator`` left out are ``PPOConfig``'s defaults (one home for them);
    pass a trainer's ``kl_ctl.value`` and ``config`` values to see what its step saw."""
    kl_coef = PPOConfig.kl_coef if kl_coef is None else kl_coef  # a dataclass's class attributes are its defaults
    gamma = PPOConfig.gamma if gamma is None else gamma
    lam = PPOConfig.lam if lam is None else lam
    kl_estimator = PPOConfig.kl_estimator if kl_estimator is None else kl_estimator
    r = rollout
    if r.scores is None:
        raise ValueError("the rollout has no scores: score it first (rollout(prompts, score=True))")
    if not 0 <= index < len(r.response):
        raise ValueError(f"index {index} is out of range for a rollout of {len(r.response)} responses")
    rewards, kl = ppo_rewards(r.scores, r.logprobs, r.ref_logprobs, r.mask, kl_coef, kl_estimator)
    adv, ret = compute_gae(rewards, r.values, r.mask, gamma=gamma, lam=lam)
    if whiten_advantages:
        adv = whiten(adv, r.mask)
    n = int(r.mask[index].sum())
    tokens = [tokenizer.decode([int(t)]) for t in r.response[index, :n]]
    return Trace({"token": np.array(tokens), "logprob": r.logprobs[index, :n],
                  "ref_logprob": r.ref_logprobs[index, :n], "kl": kl[index, :n], "reward": rewards[index, :n],
                  "value": r.values[index, :n], "advantage": adv[index, :n], "return": ret[index, :n]})


# ============================================================================ reward functions for the CLI
def classifier_reward(path, max_length=64, batch_size=32, label=1):
    """``reward_fn(texts)`` of a saved sequence classifier directory: its single output when it has one
    (a reward model), else P(class ``label``) — P(positive) for a sentiment classifier."""
    from .. import tokenization
    from ..models.auto import AutoModelForSequenceClassification

    path = Path(path)
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--reward {path}: no config.json there (expected a saved sequence classifier)")
    from ..models import hf
    from ..models.auto import _saved_head

    if _saved_head(path, "TransformerForSequenceClassification") is None:  # else a fresh, random head would judge
        config = hf.read_json(path / "config.json")
        held = config.get("architecture") or config.get("architectures") or "no architecture"
        raise ValueError(f"--reward {path} holds {held}, expected a sequence classifier or reward model (e.g. "
                         "OUT/model of `minift finetune … sentiment` or of `minift align rm`)")
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    tokenizer = tokenization.from_pretrained(str(path))
    context = getattr(model.config, "max_position_embeddings", max_length)
    limit = min(max_length, context)

    def reward_fn(texts):
        out = []
        with no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=limit)
                logits = model(backend.asarray(np.asarray(enc["input_ids"])),
                               attention_mask=backend.asarray(np.asarray(enc["attention_mask"]))).logits.data
                z = np.asarray(to_numpy(logits), np.float64)  # (N, labels)
                if z.shape[1] == 1:
                    out.append(z[:, 0])
                else:
                    e = np.exp(z - z.max(axis=1, keepdims=True))
                    out.append((e / e.sum(axis=1, keepdims=True))[:, label])
        return np.concatenate(out)

    return reward_fn


def word_count_reward(word):
    """``reward_fn(texts)``: how many times ``word`` occurs in each text (whole words, case-insensitive)."""
    import re

    pattern = re.compile(r"\b" + re.escape(word.lower()) + r"\b")
    return lambda texts: np.array([len(pattern.findall(t.lower())) for t in texts], dtype=np.float64)


def make_reward_fn(spec):
    """``--reward``: ``word:WORD`` (count a word) or the directory of a saved sequence classifier."""
    if not spec:
        raise ValueError("PPO needs a reward: --reward DIR (a saved sequence classifier or reward model) or "
                         "--reward word:WORD (count a word)")
    if spec.startswith("word:"):
        if not spec[5:].strip():
            raise ValueError("--reward word:WORD needs a word, e.g. word:good")
        return word_count_reward(spec[5:].strip())
    return classifier_reward(spec)


# ============================================================================ the run: minift align ppo
METHODS = ("lora", "full")


def review_prompts(split, n_words=4, limit=None, source="sentiment"):
    """Prompts: the first ``n_words`` words of each review of ``split`` (``load_dataset(source)``)."""
    from ..data.tasks import load_dataset

    texts = load_dataset(source)[split]["text"]
    prompts = [" ".join(t.split()[:n_words]) for t in texts if len(t.split()) >= n_words]
    return prompts if limit is None else prompts[:limit]


@dataclass
class PPOConfig:
    """The options of ``minift align ppo``, with TRL's ``PPOConfig`` names (``kl_coef``, ``cliprange``,
    ``cliprange_value``, ``vf_coef``, ``gamma``, ``lam``, ``num_ppo_epochs``, ``num_mini_batches``,
    ``whiten_rewards``, ``temperature``, ``response_length``, ``kl_estimator`` — TRL's takes "k1" or "k3";
    "k2" is minift's addition; the adaptive β's ``adap_kl_ctrl``, ``target``, ``horizon`` are older TRL's)."""
    policy: str = "checkpoints/tiny-gpt"
    reward: str | None = None  # a saved sequence classifier / reward model directory, or word:WORD
    method: str = "lora"
    source: str = "sentiment"  # the reviews whose first words are the prompts
    prompt_words: int = 4
    max_steps: int = 50  # PPO steps (each one rollout batch)
    batch_size: int = 16  # prompts per rollout
    response_length: int = 16
    temperature: float = 1.0
    learning_rate: float | None = None  # default: 1e-3 with LoRA, 1e-4 for full fine-tuning
    kl_coef: float = 0.05  # β (the initial one with adap_kl_ctrl)
    kl_estimator: str = "k1"
    adap_kl_ctrl: bool = False
    target: float = 6.0
    horizon: float = 10000.0
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    num_ppo_epochs: int = 4
    num_mini_batches: int = 1
    whiten_rewards: bool = False
    max_grad_norm: float = 1.0
    lora_r: int = 8
    lora_alpha: float = 16
    target_modules: str | list = "q_proj,k_proj,v_proj,o_proj"
    train_limit: int | None = None
    eval_limit: int = 64  # held-out prompts (the test split) measured before and after
    logging_steps: int = 5
    seed: int = 0
    out: str | None = None  # default: runs/ppo-<method>

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; minift align ppo knows {list(METHODS)}")
        if self.kl_estimator not in KL_KINDS:
            raise ValueError(f"kl_estimator must be one of {list(KL_KINDS)}, got {self.kl_estimator!r}")
        for name in ("prompt_words", "max_steps", "batch_size", "response_length", "num_ppo_epochs",
                     "num_mini_batches", "lora_r", "logging_steps", "eval_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.train_limit is not None and (isinstance(self.train_limit, bool) or not isinstance(self.train_limit, int)
                                             or self.train_limit < 1):
            raise ValueError(f"train_limit must be None or an integer >= 1, got {self.train_limit!r}")
        if self.batch_size % self.num_mini_batches:
            raise ValueError(f"num_mini_batches ({self.num_mini_batches}) must divide batch_size ({self.batch_size}): "
                             "TRL's minibatches are batch_size / num_mini_batches prompts each, all the same size")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2: the advantages are whitened over the batch")
        if self.learning_rate is None:
            self.learning_rate = 1e-4 if self.method == "full" else 1e-3
        for name in ("learning_rate", "temperature", "target", "horizon", "max_grad_norm", "lora_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("kl_coef", "cliprange", "cliprange_value", "vf_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.out is None:
            self.out = str(Path("runs") / f"ppo-{self.method}")


def build_ppo(cfg: PPOConfig, reward_fn):
    """The policy (LoRA or full, + value head), its reference and a ``PPOTrainer`` for ``cfg``; returns
    (trainer, tokenizer)."""
    from ..sft import load_policy

    lm, tokenizer, _ = load_policy(cfg.policy, cfg.method, cfg.seed)
    if cfg.response_length + 8 > lm.config.max_position_embeddings:
        raise ValueError(f"response_length {cfg.response_length} leaves too little of {cfg.policy}'s context "
                         f"({lm.config.max_position_embeddings} tokens) for the prompt")
    ref_model = None
    if cfg.method == "lora":
        from ..peft import LoraConfig, get_peft_model

        lm = get_peft_model(lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
                                           task_type="CAUSAL_LM"))
    else:
        ref_model, _, _ = load_policy(cfg.policy, cfg.method, cfg.seed)
    backend.seed(cfg.seed)
    return PPOTrainer(cfg, PolicyWithValueHead(lm), tokenizer, reward_fn, ref_model=ref_model), tokenizer


def run_ppo(cfg: PPOConfig, reward_fn=None, quiet=False, train_prompts=None, eval_prompts=None):
    """PPO of ``cfg.policy`` against ``reward_fn`` (default: ``make_reward_fn(cfg.reward)``) on prompts made
    of the first words of real reviews; writes into ``cfg.out`` ``log.jsonl`` (TRL's keys, one line per
    step), ``scores.png``, ``kl.png``, ``losses.png``, ``results.json`` (held-out mean score and KL to the
    reference before and after, samples, train_seconds, train_steps, args) and the adapter or model (the
    value head is not saved: it is PPO's tool, not part of the policy)."""
    from .. import plotting
    from ..sft import _save_model, _write_json
    from ..train.trainer import check_output_dir

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)
    if reward_fn is None:
        reward_fn = make_reward_fn(cfg.reward)
    train = train_prompts if train_prompts is not None else review_prompts("train", cfg.prompt_words, cfg.train_limit,
                                                                              cfg.source)
    held_out = eval_prompts if eval_prompts is not None else review_prompts("test", cfg.prompt_words, cfg.eval_limit,
                                                                               cfg.source)
    if len(train) < cfg.batch_size or not held_out:
        raise ValueError(f"{len(train)} training prompts for a batch of {cfg.batch_size}, {len(held_out)} held out: "
                         f"prompts are the first {cfg.prompt_words} words of reviews longer than that (--prompt-words), "
                         f"from at most --train-limit {cfg.train_limit} / --eval-limit {cfg.eval_limit} of them")
    trainer, tokenizer = build_ppo(cfg, reward_fn)
    trainable = sum(int(p.data.size) for p in trainer.params)
    say(f"PPO of {cfg.policy} ({cfg.method}, β = {cfg.kl_coef}): {len(train):,} prompts, {trainable:,} trainable "
        f"parameters (value head included); measuring {len(held_out)} held-out prompts…")
    before = trainer.evaluate(held_out, seed=cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed)
    order, cursor, logs = rng.permutation(len(train)), 0, []
    log_path = out / "log.jsonl"
    log_path.write_text("")
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=cfg.max_steps, desc="ppo", disable=quiet, ncols=90, mininterval=1.0, file=sys.stderr)
    for step in range(1, cfg.max_steps + 1):
        if cursor + cfg.batch_size > len(order):
            order, cursor = rng.permutation(len(train)), 0
        batch = [train[i] for i in order[cursor:cursor + cfg.batch_size]]
        cursor += cfg.batch_size
        rollout = trainer.rollout(batch)
        stats = trainer.step(rollout)
        stats.update({"step": step, "episode": step * cfg.batch_size})
        logs.append(stats)
        with open(log_path, "a") as f:
            f.write(json.dumps(stats) + "\n")
        bar.update(1)
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            bar.set_postfix(score=f"{stats['objective/scores']:.3f}", kl=f"{stats['objective/kl']:.3f}",
                            beta=f"{stats['kl_coef']:.4f}")
    bar.close()
    train_seconds = time.perf_counter() - start
    after = trainer.evaluate(held_out, seed=cfg.seed + 1)
    plotting.plot_curves({"objective/scores": [s["objective/scores"] for s in logs],
                          "objective/rlhf_reward": [s["objective/rlhf_reward"] for s in logs]}, out / "scores.png",
                         title="PPO: the reward of the rollouts", xlabel="PPO step", ylabel="score")
    plotting.plot_curves({"objective/kl": [s["objective/kl"] for s in logs]}, out / "kl.png",
                         title="KL(π ‖ π_ref), summed over each response", xlabel="PPO step", ylabel="KL (nats)")
    plotting.plot_curves({"loss/policy_avg": [s["loss/policy_avg"] for s in logs],
                          "loss/value_avg": [s["loss/value_avg"] for s in logs]}, out / "losses.png",
                         title="PPO's losses", xlabel="PPO step", ylabel="loss")
    n_samples = 8
    results = {"policy": cfg.policy, "method": cfg.method,
               "before": {"score": before["score"], "kl": before["kl"], "prompts": before["prompts"]},
               "after": {"score": after["score"], "kl": after["kl"], "prompts": after["prompts"]},
               "samples_before": before["samples"][:n_samples], "samples_after": after["samples"][:n_samples],
               "final_kl_coef": trainer.kl_ctl.value, "train_seconds": round(train_seconds, 2),
               "train_steps": cfg.max_steps, "episodes": cfg.max_steps * cfg.batch_size,
               "trainable_parameters": trainable, "machine": backend.machine_summary(),
               "args": asdict(cfg)}
    _save_model(trainer.policy.pretrained_model, cfg.method, tokenizer, out, say)
    _write_json(out / "results.json", results)
    say(f"held-out mean score {before['score']:.3f} → {after['score']:.3f}, KL to the reference "
        f"{before['kl']:.3f} → {after['kl']:.3f}")
    return results


def add_cli_arguments(parser):
    """The options of ``minift align ppo POLICY``."""
    from ..cli import non_negative_float, non_negative_int, positive_float, positive_int, probability

    d = PPOConfig()
    parser.add_argument("policy", help="a causal LM, e.g. checkpoints/tiny-gpt")
    parser.add_argument("--reward", required=True,
                        help="DIR: a saved sequence classifier (P(positive)) or reward model (its output); "
                             "or word:WORD, the number of times WORD occurs")
    parser.add_argument("--method", choices=METHODS, default=d.method,
                        help="lora: the reference is the adapter disabled; full: a frozen copy is the reference")
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps, help="PPO steps (rollout batches)")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="prompts per rollout")
    parser.add_argument("--response-length", type=positive_int, default=d.response_length)
    parser.add_argument("--temperature", type=positive_float, default=d.temperature)
    parser.add_argument("--learning-rate", type=positive_float, default=None, help="default: 1e-3 lora, 1e-4 full")
    parser.add_argument("--kl-coef", type=non_negative_float, default=d.kl_coef, help="β of −β·KL per token")
    parser.add_argument("--kl-estimator", choices=KL_KINDS, default=d.kl_estimator)
    parser.add_argument("--adap-kl-ctrl", action="store_true", help="adapt β toward --target (Ziegler et al.)")
    parser.add_argument("--target", type=positive_float, default=d.target)
    parser.add_argument("--horizon", type=positive_float, default=d.horizon)
    parser.add_argument("--cliprange", type=non_negative_float, default=d.cliprange)
    parser.add_argument("--cliprange-value", type=non_negative_float, default=d.cliprange_value)
    parser.add_argument("--vf-coef", type=non_negative_float, default=d.vf_coef)
    parser.add_argument("--gamma", type=probability, default=d.gamma)
    parser.add_argument("--lam", type=probability, default=d.lam)
    parser.add_argument("--num-ppo-epochs", type=positive_int, default=d.num_ppo_epochs)
    parser.add_argument("--num-mini-batches", type=positive_int, default=d.num_mini_batches)
    parser.add_argument("--whiten-rewards", action="store_true")
    parser.add_argument("--max-grad-norm", type=positive_float, default=d.max_grad_norm)
    parser.add_argument("--prompt-words", type=positive_int, default=d.prompt_words,
                        help="each prompt is the first N words of a review")
    parser.add_argument("--lora-r", type=positive_int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=positive_float, default=d.lora_alpha)
    parser.add_argument("--target-modules", default=",".join(d.target_modules) if isinstance(d.target_modules, list)
                        else d.target_modules)
    parser.add_argument("--train-limit", type=positive_int, default=d.train_limit)
    parser.add_argument("--eval-limit", type=positive_int, default=d.eval_limit)
    parser.add_argument("--logging-steps", type=positive_int, default=d.logging_steps)
    parser.add_argument("--seed", type=non_negative_int, default=d.seed)
    parser.add_argument("--out", default=None, help="output directory (default: runs/ppo-METHOD)")


def run_from_args(args, quiet=False):
    """``minift align ppo``: the parsed options → ``PPOConfig`` → ``run_ppo``; returns its results."""
    from ..cli import config_from_args

    return run_ppo(config_from_args(PPOConfig, args), quiet=quiet)


__all__ = ["AdaptiveKLController", "FixedKLController", "METHODS", "PPOConfig", "PPOTrainer", "PolicyWithValueHead",
           "Rollout", "add_cli_arguments", "build_ppo", "classifier_reward", "encode_prompts", "make_reward_fn",
           "ppo_rewards", "response_mask", "review_prompts", "rollout_trace", "run_from_args", "run_ppo",
           "word_count_reward"]
