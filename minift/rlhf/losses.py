"""The losses and estimators of alignment — PPO, DPO, GRPO, reward models — each a few visible lines.

Names, arguments and conventions are TRL's (``trl``'s PPO, DPO, GRPO and reward trainers), so a number
computed here can be compared with one computed there. Inputs are NumPy arrays, lists or Tensors (integers
are read as floats); losses return Tensors with gradients with respect to the current model's side — the
log-probs, values or rewards being trained, when they are Tensors — while the old, reference and target
inputs (``old_logprobs``, ``reference_*``, ``advantages``, ``returns``, ``margin``) are constants even when
given as Tensors. Advantages, whitened values and statistics are plain NumPy arrays or floats.

Shapes: (B, T) per-token arrays (B sequences, T positions) with a ``mask`` (1 for a token that counts, 0 for
prompt and padding); (B,) per-sequence arrays.
"""
from __future__ import annotations

import numpy as np  # host-side: GAE, whitening, the statistics (see the module docstring); losses are xp Tensors

from .. import functional as F
from ..autograd.tensor import Tensor
from ..backend import get_default_dtype, to_numpy, xp
from ..inspect.trace import Trace

KL_KINDS = ("k1", "k2", "k3")
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")


def _tensor(x):
    """A float Tensor as it is; an array (or list) as a constant Tensor. Integers (rewards of 0/1, a list
    of ints) become floats of the default dtype: the other inputs are cast to this one's dtype, and an
    integer one would truncate them (a reference log-prob of −0.5 would become 0)."""
    if isinstance(x, Tensor) and x.dtype.kind == "f":
        return x
    data = xp.asarray(x.data if isinstance(x, Tensor) else x)
    if data.dtype.kind != "f":
        data = data.astype(get_default_dtype())
    return Tensor(data)


def _array(x):
    return np.asarray(to_numpy(x.data if isinstance(x, Tensor) else x), dtype=np.float64)


def masked_mean(values, mask):
    """Σ values·mask / Σ mask: the mean over the positions that count; ``mask`` has the shape of ``values``.

    A Tensor (with gradients) if ``values`` is one; otherwise a float computed on the host with NumPy (a
    statistic such as PPO's clipfrac), so that a host array never meets a mask on the GPU in one product.
    As in TRL, a position with mask 0 still enters the product: it must hold a finite number (0 · NaN = NaN).
    """
    _check_same_shape(values=values, mask=mask)
    m = _array(mask)
    count = float(m.sum())
    if count == 0:
        raise ValueError("the mask is all zeros: no position to average over")
    if isinstance(values, Tensor):
        return (values * xp.asarray(m).astype(values.dtype)).sum() / count
    return float((_array(values) * m).sum() / count)


def _check_clip_range(name, value):
    if not (isinstance(value, (int, float, np.integer, np.floating)) and 0 <= value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0 (the ε of the clip), got {value!r}")


def _check_same_shape(**arrays):
    shapes = {name: tuple(np.shape(a.data if isinstance(a, Tensor) else a)) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("shapes differ: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))


# ============================================================================ log-probabilities of sequences
def token_logprobs(logits, input_ids):
    """log π(x_t | x_<t) for t = 1 … T−1: (B, T−1) from a causal LM's logits (B, T, V) and its input (B, T).

    Position t's logits predict token t + 1, so the logits are cut at the end and the tokens at the start.
    A Tensor with gradients through the logits.
    """
    logits = _tensor(logits)
    ids = np.asarray(to_numpy(input_ids.data if isinstance(input_ids, Tensor) else input_ids))
    if logits.ndim != 3 or ids.ndim != 2 or tuple(logits.shape[:2]) != ids.shape:
        raise ValueError(f"token_logprobs needs logits (B, T, V) and input_ids (B, T) with the same B and T, "
                         f"got logits {tuple(logits.shape)} and input_ids {ids.shape}")
    if ids.dtype.kind not in "iu" and not (ids.dtype.kind == "f" and (ids == np.round(ids)).all()):
        raise TypeError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
    ids = xp.asarray(ids.astype(np.int64))
    logprobs = F.log_softmax(logits[:, :-1], axis=-1)  # (B, T−1, V)
    picked = F.take_along_axis(logprobs, ids[:, 1:, None], axis=-1)  # (B, T−1, 1): log p of the next token
    return picked.reshape(ids.shape[0], ids.shape[1] - 1)  # (B, T−1)


def sequence_logprobs(model, input_ids, attention_mask, completion_mask, average=False):
    """Σ_t log π(x_t | x_<t) over each sequence's completion tokens: (B,) Tensor (DPO's log π(y | x)).

    ``completion_mask`` (B, T): 1 on the completion's tokens (not the prompt, not padding). ``average``:
    divide by the number of completion tokens (a length-normalized log-prob, as IPO and SimPO use; DPO
    sums).
    """
    if attention_mask is None:
        _check_same_shape(input_ids=input_ids, completion_mask=completion_mask)
    else:
        _check_same_shape(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask)
    per_token = token_logprobs(model(input_ids, attention_mask=attention_mask).logits, input_ids)  # (B, T−1)
    mask = xp.asarray(_array(completion_mask)[:, 1:])  # token t+1 is predicted at position t
    counts = mask.sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"sequences {np.flatnonzero(to_numpy(counts) == 0).tolist()} have no completion token")
    total = (per_token * mask.astype(per_token.dtype)).sum(axis=1)
    return total / counts.astype(per_token.dtype) if average else total


# ============================================================================ PPO
def compute_gae(rewards, values, mask=None, gamma=1.0, lam=0.95):
    """Generalized advantage estimation (Schulman et al., 2016) → ``(advantages, returns)``, arrays (B, T).

        δ_t = r_t + γ V_{t+1} − V_t,        A_t = δ_t + γλ A_{t+1},        returns = A + V

    over each sequence's positions with mask 1, in order: the next position is the next one with mask 1,
    and after the last there is nothing (V = 0, A = 0: no value is bootstrapped past the end). Positions
    with mask 0 get advantage and return 0. With γ = λ = 1, A_t = Σ_{s ≥ t} r_s − V_t.
    """
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    r, v = _array(rewards), _array(values)
    _check_same_shape(rewards=r, values=v)
    if r.ndim != 2:
        raise ValueError(f"rewards and values must be (batch, positions), got shape {r.shape}")
    m = np.ones_like(r) if mask is None else _array(mask)
    _check_same_shape(rewards=r, mask=m)
    # TASK rlhf.compute_gae: generalized advantage estimation, backwards over each sequence's positions
    # BEGIN SOLUTION
    advantages = np.zeros_like(r)
    for b in range(r.shape[0]):
        positions = np.flatnonzero(m[b])
        next_value, next_advantage = 0.0, 0.0  # past the last counted position: nothing
        for t in positions[::-1]:
            delta = r[b, t] + gamma * next_value - v[b, t]
            advantages[b, t] = delta + gamma * lam * next_advantage
            next_value, next_advantage = v[b, t], advantages[b, t]
    returns = (advantages + v) * (m != 0)
    # END SOLUTION
    return advantages, returns


def whiten(values, mask=None, shift_mean=True):
    """(x − mean) / √(var + 1e-8) over the positions that count (TRL's ``masked_whiten``, unbiased variance);
    positions with mask 0 are set to 0 (TRL leaves them whitened and its PPO then fills them with 0).
    ``shift_mean=False`` adds the mean back: only the scale changes (TRL's ``whiten_rewards``)."""
    x = _array(values)
    m = np.ones_like(x) if mask is None else _array(mask)
    _check_same_shape(values=x, mask=m)
    n = m.sum()
    if n < 2:
        raise ValueError("whitening needs at least two positions with mask 1")
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / (n - 1)
    out = (x - mean) / np.sqrt(var + 1e-8)
    if not shift_mean:
        out += mean
    return out * (m != 0)


def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange=0.2):
    """PPO's clipped surrogate (Schulman et al., 2017), as TRL → ``(loss, stats)``.

        ρ = exp(log π − log π_old),    loss = masked mean of max(−A ρ, −A clip(ρ, 1 − ε, 1 + ε))

    The max of the two negatives is the min of the two objectives: a step cannot gain by moving ρ past
    1 ± ε in the direction A favours (there the clipped term wins and its gradient is 0).
    ``stats``: ``clipfrac`` (share of positions where the clipped term is the larger), ``approx_kl``
    (½ masked mean of (log π − log π_old)²; TRL's PPO takes the plain mean over every position, padding
    included, so its number is smaller by the share of padding), ``ratio_mean`` (masked too: TRL's
    ``val/ratio`` counts ρ = 1 at every pad, which pulls it toward 1).
    """
    _check_clip_range("cliprange", cliprange)
    _check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    logprobs = _tensor(logprobs)
    old = xp.asarray(_array(old_logprobs)).astype(logprobs.dtype)
    adv = xp.asarray(_array(advantages)).astype(logprobs.dtype)
    # TASK rlhf.ppo_policy_loss: PPO's clipped surrogate: the max of −Aρ and −A·clip(ρ, 1 ± ε)
    # BEGIN SOLUTION
    log_ratio = logprobs - old
    ratio = F.exp(log_ratio)
    unclipped = -ratio * adv
    clipped = -F.clip(ratio, 1.0 - cliprange, 1.0 + cliprange) * adv
    loss = masked_mean(F.maximum(unclipped, clipped), mask)
    # END SOLUTION
    lr = _array(log_ratio)
    stats = {"clipfrac": float(masked_mean(_array(clipped) > _array(unclipped), mask)),
             "approx_kl": float(0.5 * masked_mean(lr**2, mask)),
             "ratio_mean": float(masked_mean(np.exp(lr), mask))}
    return loss, stats


def ppo_value_loss(values, old_values, returns, mask, cliprange_value=0.2):
    """½ · masked mean of max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²): the clipped value loss (TRL)."""
    _check_clip_range("cliprange_value", cliprange_value)
    _check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    values = _tensor(values)
    old = xp.asarray(_array(old_values)).astype(values.dtype)
    ret = xp.asarray(_array(returns)).astype(values.dtype)
    clipped_values = F.clip(values - old, -cliprange_value, cliprange_value) + old
    return 0.5 * masked_mean(F.maximum((values - ret) ** 2, (clipped_values - ret) ** 2), mask)


def value_clipfrac(values, old_values, returns, mask, cliprange_value=0.2):
    """TRL's ``val/clipfrac_avg``: the share of positions (mask 1) where ``ppo_value_loss`` takes the clipped
    term, (clip(V, V_old ± ε) − R)² > (V − R)². Not where V left V_old ± ε: a clipped V that lands nearer
    the return than V itself loses the max, and that position gets V's own gradient. A host float."""
    _check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    v, old, ret = _array(values), _array(old_values), _array(returns)  # host float64
    clipped_values = np.clip(v, old - cliprange_value, old + cliprange_value)
    return masked_mean(((clipped_values - ret) ** 2 > (v - ret) ** 2).astype(np.float64), mask)


def kl_penalty(logprobs, ref_logprobs, kind="k1"):
    """Per-token estimates of KL(π ‖ π_ref) from a token sampled from π (Schulman's k1, k2, k3).

        k1 = log π − log π_ref          (unbiased, can be negative)
        k2 = ½ (log π − log π_ref)²      (biased, ≥ 0)
        k3 = e^{log π_ref − log π} − 1 − (log π_ref − log π)   (unbiased, ≥ 0 pointwise)

    Under y ~ π, E[k1] = E[k3] = KL(π ‖ π_ref).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"kind must be one of {KL_KINDS}, got {kind!r}")
    _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    logprobs = _tensor(logprobs)
    ref = xp.asarray(_array(ref_logprobs)).astype(logprobs.dtype)
    # TASK rlhf.kl_penalty: the k1, k2, k3 estimators of KL(π ‖ π_ref) per token
    # BEGIN SOLUTION
    if kind == "k1":
        return logprobs - ref
    if kind == "k2":
        return 0.5 * (logprobs - ref) ** 2
    log_ratio = ref - logprobs  # log(π_ref / π)
    return F.exp(log_ratio) - 1.0 - log_ratio
    # END SOLUTION


# ============================================================================ DPO and reward models
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
             beta=0.1, loss_type="sigmoid", label_smoothing=0.0, trace=False):
    """Direct preference optimization (Rafailov et al., 2023) as TRL → ``(losses, chosen_rewards, rejected_rewards)``.

    With sequence log-probs (summed over completion tokens) and h = (π_c − ref_c) − (π_r − ref_r):

        sigmoid:  −(1 − ls) log σ(βh) − ls log σ(−βh)      (ls: label smoothing, "conservative DPO")
        hinge:    relu(1 − βh)                             (SLiC)
        ipo:      (h − 1/(2β))²                            (IPO, Azar et al.)

    Label smoothing belongs to the sigmoid loss only (TRL warned and ignored it for the others; here it is
    an error). That is TRL's sigmoid loss through v0.28; from v0.29 TRL's sigmoid loss has no smoothing, and
    its ``label_smoothing`` feeds other loss types (``robust``, which divides by 1 − 2ls, and ``exo_pair``).
    For IPO, TRL averages the log-probs over the completion's tokens before forming h: pass
    ``sequence_logprobs(..., average=True)`` to match it (``DPOModel`` and ``DPOTrainer`` do). ``losses``:
    per pair, a Tensor (take ``.mean()``); the implicit rewards β(π − ref) of each completion, arrays
    without gradient. At π = π_ref, h = 0 and
    the sigmoid loss is log 2.

    ``trace=True`` returns a fourth item, a ``Trace``: one row per pair with the four log-probs, h, the loss,
    both rewards and ∂loss/∂log π(chosen) (the rejected one's is its negative) — so "the loss went down but
    the chosen reward fell" or "this pair no longer gets any gradient" can be read off, pair by pair.
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to the sigmoid loss only; the {loss_type} loss has none "
                         f"(got label_smoothing={label_smoothing!r})")
    _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                      reference_chosen_logps=reference_chosen_logps, reference_rejected_logps=reference_rejected_logps)
    pc, pr = _tensor(policy_chosen_logps), _tensor(policy_rejected_logps)
    rc = xp.asarray(_array(reference_chosen_logps)).astype(pc.dtype)
    rr = xp.asarray(_array(reference_rejected_logps)).astype(pc.dtype)
    # TASK rlhf.dpo_loss: DPO's sigmoid, hinge and IPO losses and the implicit rewards
    # BEGIN SOLUTION
    h = (pc - rc) - (pr - rr)  # how much more the policy prefers chosen over rejected than the reference does
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "hinge":
        losses = F.relu(1.0 - beta * h)
    else:
        losses = (h - 1.0 / (2 * beta)) ** 2
    chosen_rewards = beta * (_array(pc) - _array(rc))
    rejected_rewards = beta * (_array(pr) - _array(rr))
    # END SOLUTION
    if not trace:
        return losses, chosen_rewards, rejected_rewards
    hv = beta * (_array(pc) - _array(rc) - _array(pr) + _array(rr))  # βh, on the host
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    if loss_type == "sigmoid":  # d/dh of −(1 − ls) log σ(βh) − ls log σ(−βh), times dh/dπ_c = 1
        grad = -beta * ((1 - label_smoothing) * sig(-hv) - label_smoothing * sig(hv))
    elif loss_type == "hinge":
        grad = np.where(1.0 - hv > 0, -beta, 0.0)
    else:
        grad = 2.0 * (hv / beta - 1.0 / (2 * beta))
    columns = {"policy_chosen": _array(pc), "policy_rejected": _array(pr), "ref_chosen": _array(rc),
               "ref_rejected": _array(rr), "h": hv / beta, "loss": _array(losses), "reward_chosen": chosen_rewards,
               "reward_rejected": rejected_rewards, "dloss/dlogp_chosen": grad}
    return losses, chosen_rewards, rejected_rewards, Trace(columns)


def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None):
    """A reward model's pairwise loss: mean of −log σ(r_chosen − r_rejected − margin) (TRL's RewardTrainer).

    P(chosen ≻ rejected) = σ(r_c − r_r) under the Bradley–Terry model; the margin (optional, per pair)
    asks the chosen reward to win by at least that much.
    """
    _check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    if np.size(chosen_rewards.data if isinstance(chosen_rewards, Tensor) else chosen_rewards) == 0:
        raise ValueError("bradley_terry_loss got no pairs: the rewards are empty")
    # TASK rlhf.bradley_terry_loss: a reward model's pairwise loss −log σ(r_c − r_r − margin)
    # BEGIN SOLUTION
    diff = _tensor(chosen_rewards) - _tensor(rejected_rewards)
    if margin is not None:
        _check_same_shape(chosen_rewards=chosen_rewards, margin=margin)
        diff = diff - xp.asarray(_array(margin)).astype(diff.dtype)
    return -F.logsigmoid(diff).mean()
    # END SOLUTION


# ============================================================================ GRPO
def grpo_advantages(rewards, num_generations, scale_rewards=True, std_unbiased=True):
    """GRPO's group-relative advantages (Shao et al., 2024), as TRL: rewards (B·G,) in groups of G completions
    of one prompt (consecutive), each reward minus its group's mean, then divided by a standard deviation:

        A_i = (r_i − mean(group of i)) / (σ + 1e-4)

    ``scale_rewards`` takes TRL's values: ``True`` or ``"group"``: σ = the group's unbiased standard
    deviation; ``"batch"``: σ = the unbiased standard deviation of all B·G rewards (PPO Lite); ``False`` or
    ``"none"``: no division (Dr. GRPO). No value model: the group is the baseline.

    ``std_unbiased``: TRL divides by ``torch.std`` — the unbiased estimate, Σ(r − r̄)² / (G − 1); ``False`` takes
    NumPy's default Σ(r − r̄)² / G, as a hand-written ``np.std`` does. For G = 4 the two differ by √(4/3):
    the same rewards give advantages 15 % larger with the biased one.
    """
    r = _array(rewards).reshape(-1)  # any shape -> (B·G,)
    if isinstance(num_generations, bool) or not (isinstance(num_generations, (int, np.integer)) and num_generations >= 2):
        raise ValueError(f"num_generations must be an integer >= 2 (a group needs a spread), got {num_generations!r}")
    num_generations = int(num_generations)
    ddof = 1 if std_unbiased else 0
    scale = {True: "group", False: "none"}[scale_rewards] if isinstance(scale_rewards, bool) else scale_rewards
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be True or 'group', 'batch', or False or 'none' (TRL's values), "
                         f"got {scale_rewards!r}")
    if r.size % num_generations:
        raise ValueError(f"{r.size} rewards do not split into groups of num_generations = {num_generations}")
    # TASK rlhf.grpo_advantages: GRPO's group-relative advantages (r − group mean) / (group std + 1e-4)
    # BEGIN SOLUTION
    groups = r.reshape(-1, num_generations)  # (prompts, G)
    advantages = groups - groups.mean(axis=1, keepdims=True)
    if scale == "group":
        advantages = advantages / (groups.std(axis=1, ddof=ddof, keepdims=True) + 1e-4)
    elif scale == "batch":
        advantages = advantages / (r.std(ddof=ddof) + 1e-4)
    # END SOLUTION
    return advantages.reshape(-1)  # (prompts, G) -> (B·G,)



__all__ = ["DPO_LOSS_TYPES", "KL_KINDS", "Trace", "bradley_terry_loss", "compute_gae", "dpo_loss", "grpo_advantages",
           "kl_penalty", "masked_mean", "ppo_policy_loss", "ppo_value_loss", "sequence_logprobs", "token_logprobs", "value_clipfrac",
           "whiten"]
