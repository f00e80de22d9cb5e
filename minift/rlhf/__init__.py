"""Alignment: the losses of PPO, DPO, GRPO and reward models (``losses``), and what trains with them.

    losses.py   TRL's formulas, each a few visible lines: GAE, PPO's clipped policy and value losses, the KL
                estimators, DPO's losses, Bradley–Terry, GRPO's group advantages; sequence log-probs
    dpo.py      DPOModel (policy + reference) and its preference collator, for the Trainer; minift align dpo
    reward.py   reward models: a one-output classifier trained with Bradley–Terry; reward_function for PPO/GRPO
    preference_data.py   preference pairs derived from the reviews' human ratings
"""
from .dpo import DataCollatorForPreference, DPOMetricsCallback, DPOModel, disable_dropout
from .reward import (DataCollatorForRewardModeling, RewardDataCollatorWithPadding, RewardModel, pairwise_accuracy,
                     reward_function, reward_model)
from .losses import (DPO_LOSS_TYPES, KL_KINDS, Trace, bradley_terry_loss, compute_gae, dpo_loss, grpo_advantages, kl_penalty,
                     masked_mean, ppo_policy_loss, ppo_value_loss, sequence_logprobs, token_logprobs, whiten)

__all__ = ["DataCollatorForRewardModeling", "RewardDataCollatorWithPadding", "RewardModel", "pairwise_accuracy",
           "reward_function", "reward_model", "DPOMetricsCallback", "DPOModel", "DPO_LOSS_TYPES", "DataCollatorForPreference", "KL_KINDS", "Trace",
           "bradley_terry_loss", "compute_gae", "disable_dropout", "dpo_loss", "grpo_advantages", "kl_penalty",
           "masked_mean", "ppo_policy_loss", "ppo_value_loss", "sequence_logprobs", "token_logprobs", "whiten"]
