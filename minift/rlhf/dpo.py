"""DPO with the Trainer: the policy and its reference in one module, preference batches, TRL's logged rewards.

The loss itself is ``losses.dpo_loss``; this file wires it to a model and to data.
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import no_grad
from ..nn.attention import MultiHeadAttention
from ..nn.layers import Dropout
from ..nn.module import Module
from ..train.callbacks import TrainerCallback
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
    summed over those tokens (``sequence_logprobs``). The reference: ``ref_model`` if given (frozen, never
    trained, not part of this module's parameters); otherwise the policy itself with its PEFT adapter
    disabled (``with policy.disable_adapter()``) — no second copy of the model. Dropout is switched off
    (TRL's ``disable_dropout``) unless ``dropout=True``. ``last_metrics`` holds TRL's logged numbers for
    the last batch: rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins.
    """

    def __init__(self, policy, ref_model=None, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, dropout=False):
        super().__init__()
        if ref_model is None and not hasattr(policy, "disable_adapter"):
            raise ValueError("DPO needs a reference: pass ref_model=, or give the policy a PEFT adapter "
                             "(mf.peft.get_peft_model) so that the reference is the policy with it disabled")
        self.policy = policy
        object.__setattr__(self, "ref_model", ref_model)  # not a submodule: never trained, never saved with us
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.last_metrics = {}
        if not dropout:
            disable_dropout(policy)
            if ref_model is not None:
                disable_dropout(ref_model)
        dpo_loss(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), beta=beta, loss_type=loss_type,
                 label_smoothing=label_smoothing)  # check the options now, not at the first step

    def reference_logps(self, input_ids, attention_mask, completion_mask):
        """log π_ref(completion | prompt) of every sequence, without gradient."""
        with no_grad():
            if self.ref_model is not None:
                return sequence_logprobs(self.ref_model, input_ids, attention_mask, completion_mask)
            with self.policy.disable_adapter():
                return sequence_logprobs(self.policy, input_ids, attention_mask, completion_mask)

    def forward(self, input_ids, attention_mask, completion_mask):
        from ..models.transformer import ModelOutput

        n = len(input_ids)
        if n % 2:
            raise ValueError(f"a DPO batch holds chosen then rejected sequences: an even number, got {n}")
        b = n // 2
        policy = sequence_logprobs(self.policy, input_ids, attention_mask, completion_mask)  # (2B,)
        reference = self.reference_logps(input_ids, attention_mask, completion_mask).data
        losses, chosen, rejected = dpo_loss(policy[:b], policy[b:], reference[:b], reference[b:], beta=self.beta,
                                            loss_type=self.loss_type, label_smoothing=self.label_smoothing)
        self.last_metrics = {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
                             "rewards/accuracies": float((chosen > rejected).mean()),
                             "rewards/margins": float((chosen - rejected).mean())}
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
        examples = [sft_example(self.tokenizer, r["prompt"], r[side], self.max_length, self.chat)
                    for side in ("chosen", "rejected") for r in rows]
        batch = DataCollatorForSFT(self.tokenizer)(examples)  # padded ids, (B, T) mask, labels −100 off the completion
        completion = (batch["labels"] != -100).astype(np.int64)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "completion_mask": completion}


class DPOMetricsCallback(TrainerCallback):
    """Adds the DPO model's ``last_metrics``, averaged over the steps since the previous log, to each log record."""

    def __init__(self, dpo_model):
        self.dpo_model = dpo_model
        self.seen = []

    def on_step_end(self, args, state, control, **kw):
        self.seen.append(dict(self.dpo_model.last_metrics))

    def on_log(self, args, state, control, logs=None, **kw):
        if self.seen and logs is not None and "loss" in logs:
            for key in self.seen[0]:
                logs[key] = float(np.mean([m[key] for m in self.seen]))
            self.seen = []


__all__ = ["DPOMetricsCallback", "DPOModel", "DataCollatorForPreference", "disable_dropout"]
