"""Classic fine-tuning strategies: which parameters train, and at which learning rate.

Each is a small function over a model with a backbone at ``model.model`` (a ``TransformerModel``: embeddings,
``layers``, final norm / pooler) and a head beside it (``classifier`` or ``qa_outputs``):

* **probe** — freeze the backbone, train the head only (a linear probe on frozen features).
* **full** — train everything at one learning rate.
* **discriminative** — the head at ``head_lr``, the body at ``lr`` (typically 10–100× smaller).
* **LLRD**, layer-wise learning-rate decay (Clark et al., 2020; Sun et al., 2019): depth d gets
  lr·decay^(L − d) — embeddings at depth 0, layer i (counted from 1: ``layers.{i-1}``) at depth i, the head
  (with the final norm and pooler) at depth L beside the top layer — so the layers nearest the input, which hold
  the most general features, move least.
* **gradual unfreezing** (ULMFiT): see ``GradualUnfreezingCallback``; ``layer_groups`` gives its groups.
* **BitFit** (Ben Zaken et al., 2022): only the bias terms of the backbone train (about 0.1% of its
  parameters), with the head.

Every function returns optimizer parameter groups (``[{"params": [...], "lr": ..., "weight_decay": ...,
"name": ...}]``), each split into a decayed and a non-decayed part (biases and norm weights are never decayed).
"""
from __future__ import annotations

from ..nn import Module


def backbone_of(model) -> Module:
    body = getattr(model, "model", None)
    if body is None or not hasattr(body, "layers") or not hasattr(body, "embed"):
        raise TypeError(f"{type(model).__name__} has no transformer backbone at .model (with .embed and .layers); "
                        "these strategies work on minift's task heads")
    return body


def layer_parameter_names(model) -> list:
    """[(depth, group name, [parameter names])]: embeddings at 0, "layer i" (``layers.{i-1}``) at i, the rest
    (head) at L."""
    body = backbone_of(model)
    n_layers = len(body.layers)
    prefix = next(name for name, m in model.named_modules() if m is body)
    groups = {0: ("embeddings", [])}
    for i in range(1, n_layers + 1):
        groups[i] = (f"layer {i}", [])
    groups[n_layers + 1] = ("head", [])
    for name, _ in model.named_parameters():
        inside = name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else None
        if inside is not None and inside.startswith("embed."):
            groups[0][1].append(name)
        elif inside is not None and inside.startswith("layers."):
            groups[int(inside.split(".")[1]) + 1][1].append(name)
        else:
            groups[n_layers + 1][1].append(name)  # final norm, pooler, classifier
    return [(min(d, n_layers), label, names) for d, (label, names) in sorted(groups.items()) if names]


def decay_groups(model, name, names, lr, weight_decay):
    """The trainable parameters among ``names`` as up to two groups: decayed, and not (biases, norms)."""
    from .trainer import decay_parameter_names

    decay = decay_parameter_names(model)
    params = dict(model.named_parameters())
    out = []
    with_decay = [params[n] for n in names if n in decay and params[n].requires_grad]
    without = [params[n] for n in names if n not in decay and params[n].requires_grad]
    if with_decay:
        out.append({"params": with_decay, "lr": lr, "weight_decay": weight_decay, "name": name})
    if without:
        out.append({"params": without, "lr": lr, "weight_decay": 0.0, "name": name + " (no decay)"})
    return out


def bitfit_param_groups(model, lr, weight_decay=0.0):
    """BitFit: freeze the backbone but its biases; the head trains whole. One learning rate."""
    body = backbone_of(model)
    body.requires_grad_(False)
    for name, p in body.named_parameters():
        if name.endswith(".bias"):
            p.requires_grad = True
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return decay_groups(model, "bitfit", names, lr, weight_decay)


def freeze_backbone(model):
    """The probe: the backbone stops learning (requires_grad=False); only the head trains. Returns model."""
    backbone_of(model).requires_grad_(False)
    return model


def trainable_param_groups(model, lr, weight_decay=0.0):
    """Every parameter that requires a gradient, at one learning rate (after ``freeze_backbone``: the probe)."""
    return decay_groups(model, "trainable", [n for n, p in model.named_parameters() if p.requires_grad], lr,
                        weight_decay)


def full_param_groups(model, lr, weight_decay=0.0):
    """Full fine-tuning: everything trains, at one learning rate."""
    model.requires_grad_(True)
    return decay_groups(model, "all", [n for n, _ in model.named_parameters()], lr, weight_decay)


def discriminative_param_groups(model, lr, head_lr, weight_decay=0.0):
    """The body at ``lr``, the head (and final norm / pooler) at ``head_lr``."""
    groups = layer_parameter_names(model)
    body = [n for _, label, names in groups if label != "head" for n in names]
    head = [n for _, label, names in groups if label == "head" for n in names]
    return decay_groups(model, "body", body, lr, weight_decay) + decay_groups(model, "head", head, head_lr,
                                                                             weight_decay)


def llrd_param_groups(model, lr, decay=0.9, weight_decay=0.0):
    """Layer-wise learning-rate decay: depth d trains at lr·decay^(L − d) (module docstring)."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    n_layers = len(backbone_of(model).layers)
    out = []
    for depth, label, names in layer_parameter_names(model):
        # TASK train.llrd: the learning rate of a parameter group at a given depth
        # BEGIN SOLUTION
        group_lr = lr * decay ** (n_layers - depth)
        # END SOLUTION
        out.extend(decay_groups(model, label, names, group_lr, weight_decay))
    return out


def layer_groups(model) -> list:
    """Parameter lists from the top (head) down to the embeddings: the stages of gradual unfreezing."""
    params = dict(model.named_parameters())
    return [[params[n] for n in names] for _, _, names in reversed(layer_parameter_names(model))]
