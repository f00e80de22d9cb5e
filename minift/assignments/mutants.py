"""Mutants: realistic wrong answers to each task, which the task's tests must catch ("kill").

Each mutant edits the task's solution region, replacing text ``old`` with ``new`` (one or more pairs, each
``old`` found in the region): a transpose, a missing reduction, an off-by-one, a sign, a wrong axis, a
missing scale or mask. ``minift assignments check`` applies them one at a time to a copy of the tree, runs
the task's tests there, and reports how many were killed, on the hypothesis profile the students' tools use
("assignments": ``test`` and ``grade``) and on their default ``pytest`` profile ("dev"). A mutant that
survives is a hole in the tests.
"""
from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .build import all_regions, project_files
from .grade import run_task_tests
from .markers import find_regions
from .tasks import TASK_LIST


@dataclass(frozen=True)
class Mutant:
    task: str
    name: str
    edits: tuple  # ((old, new), ...) applied inside the task's regions, each old must occur there
    bug: str  # the mistake in words


def _m(task, name, bug, *edits):
    return Mutant(task, name, tuple(edits), bug)


MUTANTS = [
    # ---------------------------------------------------------------- the engine
    _m("ops.elementwise_backward", "mul_swapped", "each input gets its own value instead of the other's",
       ("unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)", "unbroadcast(g * a, a.shape), unbroadcast(g * b, b.shape)")),
    _m("ops.elementwise_backward", "div_sign", "∂(a/b)/∂b without its minus sign", ("-g * a / (b * b)", "g * a / (b * b)")),
    _m("ops.elementwise_backward", "tanh_not_squared", "1 − y instead of 1 − y²", ("(1 - y * y)", "(1 - y)")),
    _m("ops.elementwise_backward", "sigmoid_missing_y", "σ' = 1 − σ instead of σ(1 − σ)", ("g * y * (1 - y)", "g * (1 - y)")),
    _m("ops.elementwise_backward", "log_inverted", "∂ ln a = a instead of 1/a", ("(g / a,)", "(g * a,)")),
    _m("gradcheck.central_difference", "no_half", "the difference divided by ε, not 2ε", ("/ (2 * eps)", "/ eps")),
    _m("gradcheck.central_difference", "not_restored", "the input left perturbed afterwards", ("    x[idx] = old\n    return", "    return")),
    _m("gradcheck.central_difference", "one_sided", "a forward difference divided as a central one",
       ("x[idx] = old - eps", "x[idx] = old")),
    _m("autograd.unbroadcast", "mean_not_sum", "new leading axes averaged instead of summed",
       ("grad.sum(axis=tuple(range(extra)))", "grad.mean(axis=tuple(range(extra)))")),
    _m("autograd.unbroadcast", "size1_axes_kept", "size-1 axes that were broadcast are not summed",
       ("    if axes:\n        grad = grad.sum(axis=axes, keepdims=True)\n", "")),
    _m("autograd.unbroadcast", "misaligned_axes", "size-1 axes looked up before the leading axes are summed away",
       ("grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad", "pass"),
       ("grad.sum(axis=axes, keepdims=True)", "grad.sum(axis=axes, keepdims=True).sum(axis=tuple(range(extra)))")),
    _m("ops.matmul_backward", "no_transpose", "∂L/∂A = G B instead of G Bᵀ", ("g @ xp.swapaxes(b2, -1, -2)", "g @ b2")),
    _m("ops.matmul_backward", "operands_swapped", "∂L/∂B = G Aᵀ instead of Aᵀ G", ("xp.swapaxes(a2, -1, -2) @ g", "g @ xp.swapaxes(a2, -1, -2)")),
    _m("ops.matmul_backward", "batch_not_summed", "the broadcast batch axes of B are not summed back",
       ("gb = unbroadcast(gb, b2.shape).reshape(b.shape)", "gb = gb.reshape(gb.shape[-b.ndim:]) if gb.ndim > b.ndim else gb")),
    _m("fused.softmax_backward", "unweighted_sum", "Σ g instead of Σ g·y", ("(g * y).sum(", "g.sum(")),
    _m("fused.softmax_backward", "missing_y", "the outer factor y dropped", ("return (y * (g - ", "return ((g - ")),
    _m("fused.softmax_backward", "wrong_axis", "the sum over the first axis, not the softmax's",
       ("sum(axis=ctx.axis, keepdims=True)", "sum(axis=0, keepdims=True)")),
    _m("fused.cross_entropy_backward", "smoothing_ignored", "the one-hot weighted 1, not 1 − ε", ("d[rows, t] -= 1 - ctx.eps", "d[rows, t] -= 1")),
    _m("fused.cross_entropy_backward", "ignored_rows_learn", "rows with label −100 still get a gradient",
       ("d *= (gi * valid)[:, None]", "d *= gi[:, None]")),
    _m("fused.cross_entropy_backward", "uniform_not_divided", "ε instead of ε/C for the uniform part", ("p - ctx.eps / c", "p - ctx.eps")),
    _m("fused.layer_norm_backward", "no_xhat_term", "the x̂·mean(ĝx̂) term dropped", ("gh - mean_gh - xhat * mean_gh_xhat", "gh - mean_gh")),
    _m("fused.layer_norm_backward", "weight_ignored", "ĝ = g, forgetting the scale γ", ("gh = g * w if w is not None else g", "gh = g")),
    _m("fused.layer_norm_backward", "xhat_sign", "+ x̂·mean(ĝx̂) instead of −", ("- xhat * mean_gh_xhat", "+ xhat * mean_gh_xhat")),
    _m("fused.layer_norm_backward", "no_rstd", "the 1/σ factor dropped", ("return rstd * (", "return (")),
    _m("fused.layer_norm_backward", "rms_centred", "RMS norm's gradient given layer norm's mean term",
       ("gx = r * (gh - xhat", "gx = r * (gh - gh.mean(axis=ctx.axes, keepdims=True) - xhat")),
    _m("attention.backward", "q_unscaled", "∂L/∂Q without the 1/√D scale", ("gq = (gs @ k) * s", "gq = gs @ k")),
    _m("attention.backward", "k_not_transposed", "∂L/∂K = S Q instead of Sᵀ Q", ("xp.swapaxes(gs, -1, -2) @ q", "gs @ q")),
    _m("attention.backward", "softmax_vjp_unweighted", "the softmax VJP with Σ g instead of Σ g·p", ("(gp * p).sum(", "gp.sum(")),
    _m("attention.backward", "dropout_mask_forgotten", "the dropout mask not applied to ∂L/∂P", ("        gp = gp * z\n", "        pass\n")),
    # ---------------------------------------------------------------- optimizers, files, training
    _m("optim.adamw_step", "coupled_decay", "decay by wd instead of lr·wd", ("param *= 1 - lr * weight_decay", "param *= 1 - weight_decay")),
    _m("optim.adamw_step", "no_decay", "weight decay forgotten (plain Adam)", ("param *= 1 - lr * weight_decay", "pass")),
    _m("optim.adamw_step", "no_bias_correction", "m and v used without dividing by 1 − βᵗ",
       ("bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step", "bias_correction1 = bias_correction2 = 1.0")),
    _m("optim.adamw_step", "eps_inside_sqrt", "ε added under the square root", ("xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps",
                                                                            "xp.sqrt(exp_avg_sq / bias_correction2 + eps)")),
    _m("optim.adamw_step", "l2_in_gradient", "L2 added to the gradient (Adam with L2), not decoupled",
       ("param *= 1 - lr * weight_decay", "grad = grad + weight_decay * param")),
    _m("quant.dequantize_q4_1", "scale_and_min_swapped", "d read from the minimum's bytes and m from the scale's",
       ("d = _f16(b[:, 0:2])", "d = _f16(b[:, 2:4])"), ("m = _f16(b[:, 2:4])", "m = _f16(b[:, 0:2])")),
    _m("quant.dequantize_q4_1", "q4_0_offset", "Q4_0's −8 carried over to Q4_1", ("d * _nibbles(b[:, 4:]) + m", "d * (_nibbles(b[:, 4:]) - 8) + m")),
    _m("quant.dequantize_q4_1", "min_subtracted", "x = d·q − m", ("_nibbles(b[:, 4:]) + m", "_nibbles(b[:, 4:]) - m")),
    _m("quant.dequantize_q4_1", "gguf_shortcut", "calls the gguf package's dequantizer instead of decoding",
       ("return (d * _nibbles(b[:, 4:]) + m).reshape(-1)",
        "import gguf\n    return gguf.quants.dequantize(b, gguf.GGMLQuantizationType.Q4_1).reshape(-1)")),
    _m("quant.dequantize_nf4", "nibbles_swapped", "low nibble first (the GGUF order, not NF4's)",
       ("[packed >> 4, packed & 0x0F]", "[packed & 0x0F, packed >> 4]")),
    _m("quant.dequantize_nf4", "not_scaled", "the code looked up but not scaled by absmax", ("(code[codes] * absmax)", "code[codes]")),
    _m("quant.dequantize_nf4", "even_grid", "16 evenly spaced levels instead of the NF4 table", ("code[codes] * absmax", "(codes / 7.5 - 1) * absmax")),
    _m("train.count_targets", "no_shift", "the first label counted although the loss never scores it",
       ("    if shifts_labels:\n        labels = labels[:, 1:]\n", "")),
    _m("train.count_targets", "counts_ignored", "−100 labels counted as targets", ("int((labels != -100).sum())", "int(labels.size)")),
    _m("train.count_targets", "shift_wrong_end", "the last label dropped instead of the first", ("labels[:, 1:]", "labels[:, :-1]")),
    _m("train.accumulation_weight", "equal_weights", "each micro-batch weighted 1/k whatever its targets",
       ("weight = n / total_targets", "weight = 1 / len(counts)")),
    _m("train.accumulation_weight", "inverted", "total / n instead of n / total", ("weight = n / total_targets", "weight = total_targets / n")),
    _m("train.accumulation_weight", "unweighted", "micro-batch losses summed, not averaged", ("weight = n / total_targets", "weight = 1.0")),
    _m("train.llrd", "reversed", "the embeddings get the full rate, the top the smallest", ("decay ** (n_layers - depth)", "decay ** depth")),
    _m("train.llrd", "off_by_one", "one decay step too many at every depth", ("decay ** (n_layers - depth)", "decay ** (n_layers - depth + 1)")),
    _m("train.llrd", "linear_decay", "lr·decay·(L − d) instead of lr·decay^(L − d)", ("decay ** (n_layers - depth)", "decay * (n_layers - depth)")),
    _m("data.align_labels", "specials_labelled", "[CLS]/[SEP] get label 0 instead of −100",
       ("        if word is None:  # [CLS], [SEP], padding\n            labels.append(IGNORE_INDEX)",
        "        if word is None:  # [CLS], [SEP], padding\n            labels.append(0)")),
    _m("data.align_labels", "b_kept_on_continuations", "continuation pieces keep B- instead of I-",
       ("b_to_i[word_labels[word]] if label_all_tokens", "word_labels[word] if label_all_tokens")),
    _m("data.align_labels", "previous_not_updated", "every piece treated as a word's first", ("        previous = word\n", "")),
    _m("data.align_labels", "word_zero_falsy", "`if not word`: the first word (id 0) taken for a special token",
       ("        if word is None:  # [CLS]", "        if not word:  # [CLS]")),
    _m("data.align_labels", "word_off_by_one", "the label of the word before", ("labels.append(word_labels[word])\n",
                                                                            "labels.append(word_labels[word - 1])\n")),
    _m("data.align_labels", "labels_compared", "a piece compared with the previous label, not the previous word",
       ("        previous = word\n", "        previous = None if word is None else word_labels[word]\n"),
       ("elif word != previous:", "elif word is not None and word_labels[word] != previous:")),
    _m("qa.best_span", "end_before_start", "spans that end before they start allowed", ("& (e >= s) ", "")),
    _m("qa.best_span", "length_off_by_one", "answers one token longer than max_answer_length allowed",
       ("(e - s + 1 <= max_answer_length)", "(e - s <= max_answer_length)")),
    _m("qa.best_span", "end_outside_context", "the end token not required to be in the context",
       ("is_context[s] & is_context[e]", "is_context[s]")),
    _m("qa.best_span", "product_score", "start × end logits instead of their sum", ("start_logits[s] + end_logits[e]", "start_logits[s] * end_logits[e]")),
    _m("qa.best_span", "context_ignored", "question and special tokens allowed as an answer",
       ("is_context[s] & is_context[e] & ", "")),
    _m("qa.best_span", "greedy_start", "the best start first, then the best end after it, not the best pair",
       ("start_logits[s] + end_logits[e]", "1e9 * start_logits[s] + end_logits[e]")),
    _m("qa.best_span", "every_candidate", "n_best_size ignored: every position a candidate",
       ('kind="stable")[:n_best_size]\n    top_ends', 'kind="stable")\n    top_ends'),
       ('top_ends = np.argsort(-end_logits, kind="stable")[:n_best_size]', 'top_ends = np.argsort(-end_logits, kind="stable")')),
    # ---------------------------------------------------------------- PEFT
    _m("peft.lora_forward", "unscaled", "the update not scaled by s = α/r", ("B(A(dropout(x))) * s", "B(A(dropout(x)))")),
    _m("peft.lora_forward", "replaces_base", "the update replaces the frozen output instead of adding to it",
       ("y = y + B(A(dropout(x))) * s", "y = B(A(dropout(x))) * s")),
    _m("peft.lora_forward", "divided_scale", "the update divided by s", ("B(A(dropout(x))) * s", "B(A(dropout(x))) / s")),
    _m("peft.lora_merge", "unscaled", "BA merged without s", ("(B @ A) * self.scaling[adapter_name]", "(B @ A)")),
    _m("peft.lora_merge", "transposed", "(BA)ᵀ merged", ("(B @ A) * self", "(B @ A).T[: B.shape[0], : A.shape[1]] * self")),
    _m("peft.lora_merge", "divided_scale", "BA divided by s", ("(B @ A) * self.scaling", "(B @ A) / self.scaling")),
    _m("peft.dora_norm", "wrong_axis", "column norms instead of row norms", ("sum(axis=1)", "sum(axis=0)[: weight.shape[0]]")),
    _m("peft.dora_norm", "squared", "the squared norm (no square root)", ("xp.sqrt((adapted * adapted).sum(axis=1))", "(adapted * adapted).sum(axis=1)")),
    _m("peft.dora_norm", "update_left_out", "‖W‖ instead of ‖W + sBA‖", ("weight + s * (B @ A)", "weight")),
    _m("peft.dora_norm", "scale_left_out", "‖W + BA‖ without s", ("weight + s * (B @ A)", "weight + (B @ A)")),
    _m("peft.adapter_block", "no_residual", "the adapter's output replaces h instead of adding to it", ("return h + self.up(u)", "return self.up(u)")),
    _m("peft.adapter_block", "no_activation", "the non-linearity skipped", ("self.up(u)", "self.up(z)")),
    _m("peft.adapter_block", "residual_doubled", "h added twice", ("return h + self.up(u)", "return 2 * h + self.up(u)")),
    _m("peft.ia3_forward", "additive", "the vector added instead of multiplied", ("y = y * getattr(self.ia3_l, name)", "y = y + getattr(self.ia3_l, name)")),
    _m("peft.ia3_forward", "ffn_scales_output", "feed-forward layers scaled at the output, not the input",
       ("        if self.is_feedforward:\n", "        if False:\n")),
    _m("peft.ia3_forward", "ffn_additive", "the feed-forward input shifted instead of scaled",
       ("x = x * getattr(self.ia3_l, name)", "x = x + getattr(self.ia3_l, name)")),
    _m("peft.prefix_kv", "keys_values_swapped", "each layer's values used as keys and the other way round",
       ("key = kv[2 * layer]", "key = kv[2 * layer + 1]"), ("value = kv[2 * layer + 1]", "value = kv[2 * layer]")),
    _m("peft.prefix_kv", "wrong_permute", "the positions and heads axes exchanged", (".transpose(1, 2, 0, 3)", ".transpose(1, 0, 2, 3)")),
    _m("peft.prefix_kv", "halves_not_pairs", "keys from the first L rows, values from the last L (not pairs)",
       ("key = kv[2 * layer]", "key = kv[layer]"), ("value = kv[2 * layer + 1]", "value = kv[layers + layer]")),
    # ---------------------------------------------------------------- continual learning
    _m("continual.fisher_example", "not_squared", "the gradient added, not its square", ("fisher[name] += weight * p.grad * p.grad", "fisher[name] += weight * p.grad")),
    _m("continual.fisher_example", "true_unweighted", "the true Fisher sums the classes without their probabilities",
       ("terms = [(float(probs[pos, c]), sum_selected", "terms = [(1.0, sum_selected")),
    _m("continual.fisher_example", "samples_summed", "num_samples draws added up instead of averaged",
       ("terms.append((1.0 / num_samples, ", "terms.append((1.0, ")),
    _m("continual.fisher_example", "predicted_label", "the empirical Fisher at the predicted class instead of the label",
       ("sum_selected(logprobs, [(pos, y) for pos, y in rows])",
        "sum_selected(logprobs, [(pos, int(logprobs.data.reshape(-1, logprobs.shape[-1])[pos].argmax())) for pos, _ in rows])")),
    _m("continual.ewc_penalty", "full_lambda", "λ Σ F Δ² (Avalanche's convention) where the docstring says λ/2",
       ("* (self.lambda_ / 2)", "* self.lambda_")),
    _m("continual.ewc_penalty", "not_squared", "F Δ instead of F Δ²", ("(diff * diff * fisher[name])", "(diff * fisher[name])")),
    _m("continual.ewc_penalty", "no_fisher", "every weight pulled equally (the L2 anchor, not EWC)",
       ("(diff * diff * fisher[name])", "(diff * diff)")),
    _m("continual.ewc_penalty", "no_anchor", "θ² instead of (θ − θ*)²", ("diff = named[name] - anchor", "diff = named[name]")),
    _m("continual.backward_transfer", "sign", "R[j, j] − R[T−1, j]: forgetting counted as positive",
       ("R[-1, j] - R[j, j]", "R[j, j] - R[-1, j]")),
    _m("continual.backward_transfer", "last_included", "the last task counted too (its change is 0 by definition)",
       ("for j in range(t - 1)", "for j in range(t)")),
    _m("continual.backward_transfer", "first_row", "compared with the first row instead of the diagonal",
       ("R[-1, j] - R[j, j]", "R[-1, j] - R[0, j]")),
    # ---------------------------------------------------------------- multi-task sampling
    _m("multitask.temperature_probabilities", "power_T", "n_i^T instead of n_i^(1/T): T > 1 sharpens instead of flattening",
       ("np.log(sizes) / temperature", "np.log(sizes) * temperature")),
    _m("multitask.temperature_probabilities", "not_normalized", "the weights n_i^(1/T) / max_j n_j^(1/T) returned unnormalized",
       ("return weights / weights.sum()", "return weights")),
    _m("multitask.temperature_probabilities", "sizes_over_T", "n_i / T: the temperature cancels in the normalization (always proportional)",
       ("np.log(sizes) / temperature", "np.log(sizes / temperature)")),
    _m("multitask.temperature_probabilities", "no_max_shift", "exp(log n / T) without subtracting the largest: overflow for small T",
       ("np.exp(logits - logits.max())", "np.exp(logits)")),
    # ---------------------------------------------------------------- instruction tuning (minift.sft)
    _m("sft.completion_labels", "prompt_trained", "the loss on every token, prompt and template included",
       ("labels = [-100] * n_prompt + full_ids[n_prompt:]", "labels = list(full_ids)")),
    _m("sft.completion_labels", "first_answer_token_masked", "one token too many masked: the answer's first token is never trained",
       ("[-100] * n_prompt + full_ids[n_prompt:]", "[-100] * (n_prompt + 1) + full_ids[n_prompt + 1:]")),
    _m("sft.completion_labels", "eos_masked", "the EOS / end of turn masked: the model never learns to stop",
       ("full_ids[n_prompt:]", "full_ids[n_prompt:-1] + [-100]")),
    _m("sft.completion_labels", "pre_shifted", "labels shifted by one here while the model shifts them again",
       ("[-100] * n_prompt + full_ids[n_prompt:]", "[-100] * (n_prompt - 1) + full_ids[n_prompt:] + [-100]")),
    _m("sft.completion_labels", "last_prompt_token_trained", "one token too few masked: the prompt's last token carries loss",
       ("[-100] * n_prompt + full_ids[n_prompt:]", "[-100] * (n_prompt - 1) + full_ids[n_prompt - 1:]")),
    # ---------------------------------------------------------------- alignment (minift.rlhf.losses)
    _m("rlhf.compute_gae", "no_lambda", "A_t = δ_t + γ A_{t+1}: λ forgotten", ("delta + gamma * lam * next_advantage", "delta + gamma * next_advantage")),
    _m("rlhf.compute_gae", "undiscounted_value", "δ_t = r_t + V_{t+1} − V_t: the next value not discounted by γ",
       ("r[b, t] + gamma * next_value - v[b, t]", "r[b, t] + next_value - v[b, t]")),
    _m("rlhf.compute_gae", "forwards", "the recursion run from the first position to the last", ("positions[::-1]", "positions")),
    _m("rlhf.compute_gae", "mask_ignored", "every position counted, prompt and padding too",
       ("positions = np.flatnonzero(m[b])", "positions = np.arange(r.shape[1])")),
    _m("rlhf.compute_gae", "returns_unmasked", "returns = A + V left on the masked positions", ("(advantages + v) * (m != 0)", "advantages + v")),
    _m("rlhf.ppo_policy_loss", "unclipped_only", "the clipped term dropped: plain policy gradient with importance weights",
       ("masked_mean(F.maximum(unclipped, clipped), mask)", "masked_mean(unclipped, mask)")),
    _m("rlhf.ppo_policy_loss", "min_not_max", "the min of the two losses (the max of the objectives): clipping never binds",
       ("F.maximum(unclipped, clipped)", "F.minimum(unclipped, clipped)")),
    _m("rlhf.ppo_policy_loss", "sign", "+Aρ: the loss ascends the advantage-weighted ratio", ("unclipped = -ratio * adv", "unclipped = ratio * adv")),
    _m("rlhf.ppo_policy_loss", "ratio_reversed", "ρ = π_old / π", ("log_ratio = logprobs - old", "log_ratio = old - logprobs")),
    _m("rlhf.ppo_policy_loss", "linear_ratio", "ρ ≈ 1 + (log π − log π_old): right at ρ = 1, wrong away from it",
       ("ratio = F.exp(log_ratio)", "ratio = 1.0 + log_ratio")),
    _m("rlhf.kl_penalty", "k1_sign", "k1 = log π_ref − log π", ("return logprobs - ref", "return ref - logprobs")),
    _m("rlhf.kl_penalty", "k3_no_minus_one", "k3 without the −1: biased by 1, no longer 0 at π = π_ref",
       ("F.exp(log_ratio) - 1.0 - log_ratio", "F.exp(log_ratio) - log_ratio")),
    _m("rlhf.kl_penalty", "k3_ratio_inverted", "k3 built on log(π / π_ref): an estimate of the other KL",
       ("log_ratio = ref - logprobs", "log_ratio = logprobs - ref")),
    _m("rlhf.kl_penalty", "k2_no_half", "k2 = (log π − log π_ref)² without the ½", ("0.5 * (logprobs - ref) ** 2", "(logprobs - ref) ** 2")),
    _m("rlhf.ppo_rewards", "score_on_first_token", "the score added to the first response token instead of the last real one",
       ("rewards[np.arange(len(s)), last] += s", "rewards[:, 0] += s")),
    _m("rlhf.ppo_rewards", "kl_sign", "+β·KL: the penalty rewards moving away from the reference",
       ("rewards = -kl_coef * kl", "rewards = kl_coef * kl")),
    _m("rlhf.ppo_rewards", "beta_missing", "−KL without β: the penalty's weight ignored", ("rewards = -kl_coef * kl", "rewards = -kl")),
    _m("rlhf.ppo_rewards", "score_on_pad", "the score one past the last real token, on the pad after EOS (where TRL puts it: trl#1893, trl#3750)",
       ("m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)", "np.minimum(m.sum(axis=1).astype(int), m.shape[1] - 1)")),
    _m("rlhf.ppo_rewards", "kl_unmasked", "the KL not masked: padded positions after EOS are penalized too",
       ("kl = per_token * m", "kl = per_token")),
    _m("rlhf.dpo_loss", "h_sign", "the rejected margin added instead of subtracted",
       ("h = (pc - rc) - (pr - rr)", "h = (pc - rc) + (pr - rr)")),
    _m("rlhf.dpo_loss", "no_beta", "log σ(h): β left out of the sigmoid loss",
       ("-(1 - label_smoothing) * F.logsigmoid(beta * h)", "-(1 - label_smoothing) * F.logsigmoid(h)")),
    _m("rlhf.dpo_loss", "smoothing_same_side", "label smoothing on log σ(βh) instead of log σ(−βh)",
       ("label_smoothing * F.logsigmoid(-beta * h)", "label_smoothing * F.logsigmoid(beta * h)")),
    _m("rlhf.dpo_loss", "ipo_target", "IPO's target 1/β instead of 1/(2β)", ("(h - 1.0 / (2 * beta)) ** 2", "(h - 1.0 / beta) ** 2")),
    _m("rlhf.dpo_loss", "hinge_no_margin", "hinge relu(−βh): no margin of 1", ("F.relu(1.0 - beta * h)", "F.relu(-beta * h)")),
    _m("rlhf.dpo_loss", "rewards_without_beta", "implicit rewards log π − log π_ref without β",
       ("chosen_rewards = beta * (_array(pc) - _array(rc))", "chosen_rewards = _array(pc) - _array(rc)")),
    _m("rlhf.bradley_terry_loss", "swapped", "r_rejected − r_chosen: the model learns to prefer the rejected",
       ("_tensor(chosen_rewards) - _tensor(rejected_rewards)", "_tensor(rejected_rewards) - _tensor(chosen_rewards)")),
    _m("rlhf.bradley_terry_loss", "margin_sign", "the margin added: the chosen may lose by that much",
       ("diff = diff - xp.asarray", "diff = diff + xp.asarray")),
    _m("rlhf.bradley_terry_loss", "summed", "summed over pairs instead of averaged", ("-F.logsigmoid(diff).mean()", "-F.logsigmoid(diff).sum()")),
    _m("rlhf.grpo_loss", "no_kl", "the KL term left out: nothing holds the policy near the reference",
       ("per_token = per_token + beta * (", "per_token = per_token + 0.0 * beta * (")),
    _m("rlhf.grpo_loss", "kl_sign", "the KL term subtracted: the loss rewards moving away from the reference",
       ("per_token = per_token + beta * (", "per_token = per_token - beta * (")),
    _m("rlhf.grpo_loss", "k3_inverted", "k3 built on log(π / π_ref): the estimator of the other KL",
       ("log_ratio_ref = ref - logprobs", "log_ratio_ref = logprobs - ref")),
    _m("rlhf.grpo_loss", "grpo_as_bnpo", "'grpo' normalized over all tokens at once (bnpo) instead of per completion",
       ("loss = ((per_token * m).sum(axis=1) / m.sum(axis=1)).mean()", "loss = (per_token * m).sum() / m.sum()")),
    _m("rlhf.grpo_loss", "dr_grpo_token_count", "Dr. GRPO divided by the real token count: the length bias is back",
       ("/ (b * max_len)", "/ m.sum()")),
    _m("rlhf.grpo_loss", "epsilon_high_ignored", "the upper clip bound at 1 + ε whatever ε_high says",
       ("1.0 + epsilon_high", "1.0 + epsilon")),
    _m("rlhf.grpo_loss", "max_not_min", "−max of the two terms: the pessimistic bound turned optimistic, clipping never binds",
       ("-F.minimum(unclipped, clipped)", "-F.maximum(unclipped, clipped)")),
    _m("rlhf.grpo_loss", "advantage_batch_mean", "one advantage for the whole batch (the mean) instead of each completion's on its tokens",
       ("per_token_adv = adv[:, None]", "per_token_adv = adv.mean()")),
    _m("rlhf.grpo_loss", "ratio_inverted", "ρ = π_old / π: the ratio upside down", ("F.exp(logprobs - old)", "F.exp(old - logprobs)")),
    _m("rlhf.grpo_loss", "epsilon_low_from_high", "the lower clip bound at 1 − ε_high: DAPO's clip-higher applied to both sides",
       ("1.0 - epsilon,", "1.0 - epsilon_high,")),
    _m("rlhf.grpo_loss", "grpo_mask_ignored", "'grpo' sums the padding's terms into each completion's mean",
       ("((per_token * m).sum(axis=1) / m.sum(axis=1))", "(per_token.sum(axis=1) / m.sum(axis=1))")),
    _m("rlhf.grpo_advantages", "biased_std", "NumPy's default std (ddof = 0) where TRL uses torch's unbiased one",
       ("groups.std(axis=1, ddof=ddof, keepdims=True)", "groups.std(axis=1, keepdims=True)")),
    _m("rlhf.grpo_advantages", "no_epsilon", "divided by the std alone: a group of equal rewards gives 0/0",
       ("keepdims=True) + 1e-4)", "keepdims=True))")),
    _m("rlhf.grpo_advantages", "batch_mean", "the baseline is the whole batch's mean, not the group's",
       ("groups - groups.mean(axis=1, keepdims=True)", "groups - groups.mean()")),
    _m("rlhf.grpo_advantages", "groups_interleaved", "groups read down the columns: completions of different prompts mixed",
       ("r.reshape(-1, num_generations)", "r.reshape(num_generations, -1).T")),
]


# Correct answers written another way, for the targets of the property tasks: a student's property test must
# pass on each (``grade`` gives no points otherwise, and ``check`` proves each is correct by its task's own
# tests). Mutants are text edits, so a "test" that only reads the source could kill them all; it fails here.
# Each replaces its task's whole (single) solution region: ``REGION`` as the edit's ``old``.
REGION = "<the whole solution region>"
EQUIVALENTS = [
    _m("autograd.unbroadcast", "axis_by_axis", "leading axes summed one at a time, then each stretched size-1 axis",
       (REGION, """    target = tuple(shape)
    while grad.ndim > len(target):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(target):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad.reshape(target)
""")),
    _m("fused.softmax_backward", "expanded", "y·g − y·Σ(y·g), the product expanded",
       (REGION, """        weighted = xp.sum(y * g, axis=ctx.axis, keepdims=True)
        return (y * g - y * weighted,)
""")),
    _m("ops.matmul_backward", "transposes_first", "the transposes named first, xp.matmul for @",
       (REGION, """        a_t, b_t = xp.swapaxes(a2, -2, -1), xp.swapaxes(b2, -2, -1)
        grad_a, grad_b = xp.matmul(g, b_t), xp.matmul(a_t, g)
        return unbroadcast(grad_a, a2.shape).reshape(a.shape), unbroadcast(grad_b, b2.shape).reshape(b.shape)
""")),
    _m("peft.lora_merge", "scale_b_first", "the scale folded into B before the product",
       (REGION, """        scale = self.scaling[adapter_name]
        return (scale * B) @ A
""")),
    _m("continual.ewc_penalty", "halved_first", "½λ first, the Fisher between the two factors",
       (REGION, """                delta = named[name] - anchor
                term = (delta * fisher[name] * delta).sum() * (0.5 * self.lambda_)
""")),
    _m("rlhf.compute_gae", "skip_uncounted", "one backward sweep over every position, skipping those not counted",
       (REGION, """    advantages = np.zeros_like(r)
    for b in range(r.shape[0]):
        running, value_after = 0.0, 0.0
        for t in reversed(range(r.shape[1])):
            if not m[b, t]:
                continue
            running = r[b, t] + gamma * value_after - v[b, t] + gamma * lam * running
            advantages[b, t] = running
            value_after = v[b, t]
    returns = (advantages + v) * (m != 0)
""")),
]


def mutants_of(task_id):
    return [m for m in MUTANTS if m.task == task_id]


def equivalents_of(task_id):
    return [m for m in EQUIVALENTS if m.task == task_id]


def apply_mutant(tree, mutant: Mutant):
    """Make the mutant's edits in the files of ``tree`` (a copy of the project), inside its task's regions."""
    files = sorted({r.path for r in all_regions(Path(tree), package_only=True) if r.task == mutant.task})
    for old, new in mutant.edits:
        if old == REGION:  # a rewrite of the task's one region
            (hit,) = [(path, r) for path in files for r in find_regions(path) if r.task == mutant.task]
            path, region = hit
            lines = path.read_text().splitlines(keepends=True)
            lines[region.begin:region.end - 1] = [new]
            path.write_text("".join(lines))
            continue
        for path in files:
            text = path.read_text()
            lines = text.splitlines(keepends=True)
            hit = next((r for r in find_regions(path, text) if r.task == mutant.task
                        and old in "".join(lines[r.begin:r.end - 1])), None)
            if hit is not None:
                body = "".join(lines[hit.begin:hit.end - 1])
                lines[hit.begin:hit.end - 1] = [body.replace(old, new, 1)]
                path.write_text("".join(lines))
                break
        else:
            raise ValueError(f"mutant {mutant.task}/{mutant.name}: {old!r} is not in the task's solution")


# a profile's examples without its shrink phase (tests/conftest.py): killed or not is known before shrinking
KILL_PROFILE = {"dev": "dev-kill"}


def task_test_files(tree, task_id):
    """The test files that hold ``task_id``'s tests (those naming it, and test_ops.py for the op-spec tasks)."""
    tests = Path(tree) / "tests"
    quoted = (f'"{task_id}"', f"'{task_id}'")
    files = [p for p in sorted(tests.glob("test_*.py")) if any(q in p.read_text() for q in quoted)]
    specs = tests / "op_specs.py"
    if specs.exists() and any(q in specs.read_text() for q in quoted):  # op specs carry task=…: test_ops runs them
        files.append(tests / "test_ops.py")
    return [str(p.relative_to(tree)) for p in dict.fromkeys(files)]


def copy_project(root, tree):
    """The parts of the project a test run needs: the package, the tests, the shipped checkpoints, pyproject."""
    for src in project_files(root):
        rel = src.relative_to(root)
        if rel.parts[0] in ("minift", "tests", "checkpoints") or rel.name == "pyproject.toml":
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / rel)


def _kill(tree, mutant, profiles, scratch, test_task=None):
    """Apply ``mutant`` in ``tree``, run the tests of ``test_task`` (default: the mutant's own task) on each
    profile, undo it; {profile: killed?}."""
    package = sorted((tree / "minift").rglob("*.py"))
    before = {p: p.read_text() for p in package}
    apply_mutant(tree, mutant)
    test_task = test_task or mutant.task
    files = task_test_files(tree, test_task)
    killed = {}
    try:
        for profile in profiles:
            report = scratch / f"{test_task}.{mutant.task}.{mutant.name}.{profile}.jsonl"
            results = run_task_tests(tree, report, [test_task], timeout=900, profile=KILL_PROFILE.get(profile, profile),
                                     files=files, stop_first=True, time_limit=300)  # a mutant that loops is killed
            killed[profile] = any(r["outcome"] == "failed" for r in results)
    finally:
        for p, text in before.items():  # undo: only the files the mutant changed differ
            if p.read_text() != text:
                p.write_text(text)
    return killed


def mutant_jobs(task_ids=()):
    """(mutant, the task whose tests must kill it): each mutant by its own task's tests, and each property
    task's target mutants by the property task's tests."""
    jobs = [(m, m.task) for m in MUTANTS if not task_ids or m.task in task_ids]
    for t in TASK_LIST:
        if t.is_property and (not task_ids or t.id in task_ids):
            jobs += [(m, t.id) for m in mutants_of(t.target)]
    return jobs


def run_mutants(root, task_ids=(), profiles=("assignments", "dev"), out=print, workers=2, jobs=None, tree_setup=None):
    """Apply each mutant to a copy of ``root`` and run the tests that must kill it (``mutant_jobs(task_ids)``, or
    ``jobs``) under each hypothesis profile, ``workers`` at a time, each worker on its own copy
    (``tree_setup(tree)`` may change a copy first). Returns {(test task, mutant task, mutant name): {profile:
    killed?}} in the jobs' order."""
    root = Path(root).resolve()
    jobs = mutant_jobs(task_ids) if jobs is None else jobs
    results, lock, todo = {}, threading.Lock(), queue.Queue()
    for job in jobs:
        todo.put(job)
    with tempfile.TemporaryDirectory(prefix="minift-mutants-") as tmp:
        def worker(k):
            tree = Path(tmp) / f"tree{k}"
            copy_project(root, tree)
            if tree_setup is not None:
                tree_setup(tree)
            while True:
                try:
                    m, test_task = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    killed = _kill(tree, m, profiles, Path(tmp), test_task)
                except Exception as e:  # noqa: BLE001 - a mutant that cannot be applied or run is a problem, not a crash
                    out(f"  {m.task}/{m.name}: could not be run: {e}")
                    killed = {p: False for p in profiles}
                verdict = ", ".join(f"{p}: {'killed' if v else 'SURVIVED'}" for p, v in killed.items())
                with lock:
                    results[(test_task, m.task, m.name)] = killed
                    by = "" if test_task == m.task else f" (by {test_task})"
                    out(f"  {m.task:36} {m.name + by:24} {verdict}")

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(max(1, min(workers, len(jobs))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {(tt, m.task, m.name): results[(tt, m.task, m.name)] for m, tt in jobs}
