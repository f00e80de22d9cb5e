"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): a small residual MLP after a sublayer.

An adapter maps the sublayer's output h (…, C) through a bottleneck of size C / reduction_factor and adds
the result back:

    adapter(h) = h + W_up · act(W_down · h + b_down) + b_up

W_up and b_up start at zero, so a fresh adapter is the identity ("near-identity initialization": the
pretrained model is untouched at the start). Houlsby places one after the attention block's output
projection and one after the feed-forward block's down projection (before each residual sum); Pfeiffer only
after the feed-forward block. Per adapter 2·C·(C/f) + C/f + C parameters train.

Gradients (G = ∂L/∂out, Z = W_down·h + b_down, U = act(Z)): ∂L/∂W_up = Gᵀ U, ∂L/∂b_up = Σ G,
∂L/∂W_down = ((G W_up) ⊙ act'(Z))ᵀ h, ∂L/∂h = G + ((G W_up) ⊙ act'(Z)) W_down — from the Linear and
activation ops. This is not a PEFT method (it lives in the ``adapters`` library), so it has no PEFT file;
its parameters save with the model.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import functional as F
from ..backend import xp
from ..nn import Linear, Module
from ..nn.module import Parameter
from .config import check_flags, check_module_lists

PLACEMENTS = {"houlsby": ("attn.o_proj", "mlp.down_proj"), "pfeiffer": ("mlp.down_proj",)}


@dataclass
class AdapterConfig:
    reduction_factor: int = 16
    placement: str = "houlsby"  # or "pfeiffer"
    non_linearity: str = "relu"  # or "gelu"
    train_layer_norms: bool = True  # Houlsby also trains the layer norms
    modules_to_save: list | None = None

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {sorted(PLACEMENTS)}, got {self.placement!r}")
        if self.non_linearity not in ("relu", "gelu"):
            raise ValueError(f"non_linearity must be 'relu' or 'gelu', got {self.non_linearity!r}")
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) or self.reduction_factor < 1:
            raise ValueError(f"reduction_factor must be an integer >= 1, got {self.reduction_factor!r}")
        check_flags(self, "train_layer_norms")
        check_module_lists(self, "modules_to_save", regex_allowed=False)


class Bottleneck(Module):
    """h + up(act(down(h))), up initialized to zero."""

    def __init__(self, hidden, reduction_factor, non_linearity="relu"):
        super().__init__()
        size = max(1, hidden // reduction_factor)
        self.down = Linear(hidden, size)
        self.up = Linear(size, hidden)
        self.up.weight = Parameter(xp.zeros((hidden, size), dtype=self.up.weight.dtype))
        self.up.bias = Parameter(xp.zeros(hidden, dtype=self.up.weight.dtype))
        self.non_linearity = non_linearity

    def forward(self, h):
        # TASK peft.adapter_block: the residual bottleneck h + up(act(down(h)))
        # BEGIN SOLUTION
        z = self.down(h)  # (…, C) -> (…, C/f)
        u = F.relu(z) if self.non_linearity == "relu" else F.gelu(z)
        return h + self.up(u)  # (…, C/f) -> (…, C), added to the input
        # END SOLUTION


class LinearWithAdapter(Module):
    """A frozen sublayer output projection followed by a bottleneck adapter: adapter(base(x))."""

    def __init__(self, base_layer: Linear, config: AdapterConfig):
        super().__init__()
        base_layer.requires_grad_(False)
        self.base_layer = base_layer
        self.adapter = Bottleneck(base_layer.out_features, config.reduction_factor, config.non_linearity)

    def forward(self, x):
        return self.adapter(self.base_layer(x))


def add_adapters(model, config: AdapterConfig):
    """Freeze ``model``, put a bottleneck adapter after each sublayer ``config.placement`` names, unfreeze
    the layer norms (``train_layer_norms``) and the ``modules_to_save``; returns ``model`` (changed in place)."""
    from ..nn import LayerNorm, RMSNorm
    from .model import ADAPTER_LAYERS, ModulesToSaveWrapper, _set_child

    if any(isinstance(m, (LinearWithAdapter, *ADAPTER_LAYERS, ModulesToSaveWrapper)) for m in model.modules()):
        raise ValueError("this model already has adapters: add bottleneck adapters to a freshly loaded model")
    if not any(isinstance(m, Linear) and any(n == p or n.endswith("." + p) for p in PLACEMENTS[config.placement])
               for n, m in model.named_modules()):
        raise ValueError(f"no {PLACEMENTS[config.placement]} layer found: adapters go into minift's transformer blocks")
    for name in config.modules_to_save or ():
        if not any(n == name or n.endswith("." + name) for n, _ in model.named_modules()):
            raise ValueError(f"modules_to_save names {name!r}, but the model has no module of that name")
    model.requires_grad_(False)
    placed = []
    for name, module in list(model.named_modules()):
        if isinstance(module, Linear) and any(name == p or name.endswith("." + p) for p in PLACEMENTS[config.placement]):
            _set_child(model, name, LinearWithAdapter(module, config))
            placed.append(name)
    if not placed:
        raise ValueError(f"no {PLACEMENTS[config.placement]} layer found: adapters go into minift's transformer blocks")
    if config.train_layer_norms:
        for module in model.modules():
            if isinstance(module, (LayerNorm, RMSNorm)):
                module.requires_grad_(True)
    for name in config.modules_to_save or ():
        found = [m for n, m in model.named_modules() if n == name or n.endswith("." + name)]
        if not found:
            raise ValueError(f"modules_to_save names {name!r}, but the model has no module of that name")
        for m in found:
            m.requires_grad_(True)
    return model
