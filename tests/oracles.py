"""The course's reference answers: coursework tasks computed another way (loops, sums by definition, index
arithmetic), for the tests that compare a task's code with them.

Each one is an answer a student could paste, so this file is the course's alone (``build.COURSE_ONLY``): a
student tree does not have it, the tests that use it (through the ``oracles`` fixture of ``tests/conftest.py``)
skip there with the reason, and ``minift assignments grade``, which runs the course's tests, runs them too. The
other tests of each task (hand-made cases, closed forms, properties, finite differences) run in both trees.
"""
import math

import numpy as np

from minift.models import quant


def nf4_by_loops(raw):
    """NF4 decoded one value at a time, straight from the layout: absmax, then byte j = (value 2j, value 2j+1).
    Task ``quant.dequantize_nf4``."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1, 36)
    out = []
    for block in raw:
        absmax = float(block[:4].view(np.float32)[0])
        for byte in block[4:]:
            out += [absmax * quant.NF4_CODE[byte >> 4], absmax * quant.NF4_CODE[byte & 15]]
    return np.asarray(out, dtype=np.float32)


def grpo_loss_by_hand(lp, old, ref, adv, mask, beta, eps, eps_high, loss_type, max_len):
    """GRPO's loss token by token, with Python loops. Task ``rlhf.grpo_loss``."""
    b, width = lp.shape
    terms = np.zeros_like(lp)
    for i in range(b):
        for t in range(width):
            rho = math.exp(lp[i, t] - old[i, t])
            surrogate = min(rho * adv[i], min(max(rho, 1 - eps), 1 + eps_high) * adv[i])
            k3 = math.exp(ref[i, t] - lp[i, t]) - (ref[i, t] - lp[i, t]) - 1
            terms[i, t] = -surrogate + beta * k3
    if loss_type == "grpo":
        return np.mean([sum(terms[i, t] for t in range(width) if mask[i, t]) / mask[i].sum() for i in range(b)])
    if loss_type == "bnpo":
        return (terms * mask).sum() / mask.sum()
    return (terms * mask).sum() / (b * max_len)


def grpo_loss_as_trl(torch, lp, old, ref, adv, mask, loss_type, max_len, beta=0.04, eps=0.2, eps_high=0.28):
    """TRL's ``GRPOTrainer._compute_loss`` written in torch, line for line: (loss, the log-probs' tensor, whose
    ``.grad`` the caller reads after ``loss.backward()``). Task ``rlhf.grpo_loss``."""
    t_lp = torch.tensor(lp, requires_grad=True)
    t_old, t_ref, t_adv, t_mask = (torch.tensor(a) for a in (old, ref, adv, mask))
    per_token_kl = torch.exp(t_ref - t_lp) - (t_ref - t_lp) - 1
    coef_1 = torch.exp(t_lp - t_old)
    coef_2 = torch.clamp(coef_1, 1 - eps, 1 + eps_high)
    per_token_loss = -torch.min(coef_1 * t_adv.unsqueeze(1), coef_2 * t_adv.unsqueeze(1)) + beta * per_token_kl
    if loss_type == "grpo":
        loss = ((per_token_loss * t_mask).sum(-1) / t_mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * t_mask).sum() / t_mask.sum().clamp(min=1.0)
    else:
        loss = (per_token_loss * t_mask).sum() / (per_token_loss.size(0) * max_len)
    return loss, t_lp


def adam_reference(theta, grads, lr, betas, eps, weight_decay, decoupled):
    """PyTorch's Adam (coupled L2) / AdamW (decoupled decay) in float64 NumPy: θ, m, v after each gradient.
    Task ``optim.adamw_step``."""
    b1, b2 = betas
    theta = theta.astype(np.float64)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        theta = theta - (lr / (1 - b1**t)) * m / denom
    return theta, m, v


def adamw_by_hand(theta, grads, lr, b1, b2, eps, wd):
    """AdamW's trajectory as the paper writes it: m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), θ ← θ(1 − lr·λ) − lr·m̂/(√v̂ + ε).
    Task ``optim.adamw_step``."""
    th, m, v = np.asarray(theta, float), 0.0, 0.0
    trajectory = []
    for t, g in enumerate(grads, start=1):
        th = th * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        th = th - lr * mhat / (np.sqrt(vhat) + eps)
        trajectory.append(th)
    return trajectory


def gae_by_sums(r, v, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l} with δ_t = r_t + γ V_{t+1} − V_t (V past the end = 0): the closed form, one
    sequence. Task ``rlhf.compute_gae``."""
    T = len(r)
    v_next = np.append(v[1:], 0.0)
    delta = r + gamma * v_next - v
    return np.array([sum((gamma * lam) ** l * delta[t + l] for l in range(T - t)) for t in range(T)])


def best_span_by_search(start, end, is_context, n_best_size, max_answer_length):
    """Every valid (start, end) pair among the top candidates, and the best score among them (None, [] if no
    pair is valid): a search over all the pairs. Task ``qa.best_span``."""
    top_s, top_e = np.argsort(-start)[:n_best_size], np.argsort(-end)[:n_best_size]
    pairs = [(int(s), int(e)) for s in top_s for e in top_e
             if is_context[s] and is_context[e] and s <= e < s + max_answer_length]
    return (max(start[s] + end[e] for s, e in pairs) if pairs else None), pairs


def prefix_of_layer(table, layer, which, kv_heads, head_dim):
    """PEFT's layout by index arithmetic, no reshape: P[h, i, d] = table[i, ((2ℓ + which)·H_kv + h)·D + d],
    which = 0 for the keys, 1 for the values; (H_kv, n, D). Task ``peft.prefix_kv``."""
    n = table.shape[0]
    h = np.arange(kv_heads)[:, None, None]
    i = np.arange(n)[None, :, None]
    d = np.arange(head_dim)[None, None, :]
    return table[i, ((2 * layer + which) * kv_heads + h) * head_dim + d]
