"""LoRA+ (Hayou et al., 2024): B learns ``loraplus_lr_ratio`` times faster than A.

In a LoRA layer the update is s·BA with B starting at zero. The paper shows that for wide layers one
learning rate for both is inefficient, and that η_B = λ·η_A (λ ≈ 16) trains faster at no cost. The groups
are PEFT's (``peft.optimizers.create_loraplus_optimizer``):

| group          | parameters                                               | learning rate | weight decay           |
|----------------|----------------------------------------------------------|---------------|------------------------|
| A              | every trainable matrix that is not a lora_B (lora_A, a saved head's weight) | lr | loraplus_weight_decay |
| B              | lora_B weights                                           | lr · ratio    | loraplus_weight_decay  |
| B, no decay    | trainable 1-D parameters (biases, norm weights)         | lr · ratio    | 0                      |

(PEFT puts the 1-D parameters with B, at the higher rate; so does minift, to give the same optimizer.)
"""
from __future__ import annotations


def loraplus_param_groups(model, lr, loraplus_lr_ratio, loraplus_weight_decay=0.0):
    """The three optimizer parameter groups above (empty ones left out), each with a ``name``."""
    if not loraplus_lr_ratio >= 1:
        raise ValueError(f"loraplus_lr_ratio is η_B / η_A and should be >= 1 (the paper uses 16), got {loraplus_lr_ratio!r}")
    groups = {"lora_A and other matrices": [], "lora_B": [], "1-D (no decay)": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".lora_B." in f".{name}.":
            groups["lora_B"].append(p)
        elif p.ndim == 1:
            groups["1-D (no decay)"].append(p)
        else:
            groups["lora_A and other matrices"].append(p)
    rates = {"lora_A and other matrices": (lr, loraplus_weight_decay), "lora_B": (lr * loraplus_lr_ratio, loraplus_weight_decay),
             "1-D (no decay)": (lr * loraplus_lr_ratio, 0.0)}
    return [{"params": ps, "lr": rates[n][0], "weight_decay": rates[n][1], "name": n} for n, ps in groups.items() if ps]


def create_loraplus_optimizer(model, optimizer_cls, *, lr, loraplus_lr_ratio, loraplus_weight_decay=0.0, **kwargs):
    """``optimizer_cls`` (e.g. ``mf.optim.AdamW``) over ``loraplus_param_groups``; PEFT's function and arguments."""
    groups = loraplus_param_groups(model, lr, loraplus_lr_ratio, loraplus_weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameter: call get_peft_model first")
    return optimizer_cls(groups, lr=lr, **kwargs)
