"""Alignment: the losses of PPO, DPO, GRPO and reward models (``losses``), and what trains with them.

    losses.py   TRL's formulas, each a few visible lines: GAE, PPO's clipped policy and value losses, the KL
                estimators, DPO's losses, Bradley–Terry, GRPO's group advantages; sequence log-probs
    dpo.py      DPOModel (policy + reference) and its preference collator, for the Trainer; minift align dpo
    ppo.py      PPO: a value head, rollouts, per-token rewards, adaptive KL, PPOTrainer, rollout traces; minift align ppo
    grpo.py     GRPO: grpo_loss (grpo/bnpo/dr_grpo), verifiable rewards, groups of sampled completions; minift align grpo
    reward.py   reward models: a one-output classifier trained with Bradley–Terry; reward_function for PPO/GRPO
    preference_data.py   preference pairs derived from the reviews' human ratings
"""
from .dpo import DataCollatorForPreference, DPOMetricsCallback, DPOModel, DPOTrainer, disable_dropout
from .grpo import GRPOConfig, GRPOTrainer, grpo_loss, run_grpo
from .ppo import AdaptiveKLController, PolicyWithValueHead, PPOConfig, PPOTrainer, ppo_rewards, rollout_trace, run_ppo
from .reward import (DataCollatorForRewardModeling, RewardDataCollatorWithPadding, RewardModel, RewardTrainer,
                     pairwise_accuracy,
                     reward_function, reward_model)
from .losses import (DPO_LOSS_TYPES, KL_KINDS, Trace, bradley_terry_loss, compute_gae, dpo_loss, grpo_advantages, kl_penalty,
                     masked_mean, ppo_policy_loss, ppo_value_loss, sequence_logprobs, token_logprobs, value_clipfrac,
                     whiten)

__all__ = ["AdaptiveKLController", "GRPOConfig", "GRPOTrainer", "PPOConfig", "PPOTrainer", "PolicyWithValueHead", "grpo_loss",
           "ppo_rewards", "rollout_trace", "run_grpo", "run_ppo", "DataCollatorForRewardModeling", "RewardDataCollatorWithPadding", "RewardModel", "pairwise_accuracy",
           "reward_function", "reward_model", "DPOMetricsCallback", "DPOModel", "DPOTrainer", "RewardTrainer", "DPO_LOSS_TYPES", "DataCollatorForPreference", "KL_KINDS", "Trace",
           "bradley_terry_loss", "compute_gae", "disable_dropout", "dpo_loss", "grpo_advantages", "kl_penalty",
           "masked_mean", "ppo_policy_loss", "ppo_value_loss", "sequence_logprobs", "token_logprobs", "value_clipfrac", "whiten"]
