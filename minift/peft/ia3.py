"""IA3 (Liu et al., 2022, "Few-shot parameter-efficient fine-tuning is better and cheaper than in-context
learning"): learned vectors that rescale activations, one number per feature.

For a frozen Linear y = xWᵀ + b, IA3 learns a vector l, initialized to ones (so the model starts unchanged):

    attention projections (k, v):   y = (xWᵀ + b) ⊙ l        l: (out,)   — scales the output
    feed-forward (down_proj):       y = (x ⊙ l)Wᵀ + b        l: (in,)    — scales the input

Gradients, with G = ∂L/∂y flattened to (M, out):
    output scaling:  ∂L/∂l = Σ_rows G ⊙ (xWᵀ + b),   ∂L/∂x = (G ⊙ l) W
    input scaling:   ∂L/∂l = Σ_rows (G W) ⊙ x,       ∂L/∂x = (G W) ⊙ l
(from the elementwise product and the Linear ops; checked by finite differences in the tests.)

Merging: output scaling is W ← diag(l)·W and b ← l ⊙ b; input scaling is W ← W·diag(l). PEFT's names:
``ia3_l.<adapter>`` shaped (out, 1) or (1, in), saved as ``<module>.ia3_l``.
"""
from __future__ import annotations

from ..autograd.grad_mode import no_grad
from ..backend import rng, xp
from ..nn import Linear, Module
from ..nn.module import Parameter
from ..nn.quantized import refuse_quantized_merge


class IA3Linear(Module):
    """A frozen ``Linear`` whose output (or, for a feed-forward layer, input) is scaled by a learned vector (the
    formulas, their gradients and merging are in the module docstring)."""

    def __init__(self, base_layer: Linear, is_feedforward: bool):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"IA3 wraps a Linear layer, got {type(base_layer).__name__}")
        base_layer.requires_grad_(False)
        self.base_layer = base_layer
        self.is_feedforward = is_feedforward
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.ia3_l = Module()  # adapter name -> Parameter (PEFT's ParameterDict)
        self.active_adapters = []
        self.merged_adapters = []
        self.disable_adapters = False

    def update_layer(self, adapter_name, init_ia3_weights=True):
        shape = (1, self.in_features) if self.is_feedforward else (self.out_features, 1)
        dtype = self.base_layer.weight.dtype
        values = xp.ones(shape, dtype=dtype) if init_ia3_weights else xp.asarray(rng().standard_normal(shape), dtype=dtype)
        setattr(self.ia3_l, adapter_name, Parameter(values))
        if adapter_name not in self.active_adapters:
            self.active_adapters.append(adapter_name)

    def adapters(self):
        return list(self.ia3_l._parameters)

    def forward(self, x):
        if self.disable_adapters:
            if self.merged_adapters:
                raise RuntimeError("adapters are merged into the weights: unmerge() before disabling them")
            return self.base_layer(x)
        active = [n for n in self.active_adapters if n not in self.merged_adapters]
        # TASK peft.ia3_forward: scale the input (feed-forward layers) or the output by the learned vector
        # BEGIN SOLUTION
        if self.is_feedforward:
            for name in active:
                x = x * getattr(self.ia3_l, name).reshape(-1)  # (…, in) ⊙ (in,)
            return self.base_layer(x)
        y = self.base_layer(x)
        for name in active:
            y = y * getattr(self.ia3_l, name).reshape(-1)  # (…, out) ⊙ (out,)
        return y
        # END SOLUTION

    def update_is_finite(self, adapter_name):
        return bool(xp.isfinite(getattr(self.ia3_l, adapter_name).data).all())

    @no_grad()
    def merge(self, adapter_names=None, safe_merge=False):
        """Fold each vector into the weights: W·diag(l) (feed-forward) or diag(l)·W and l ⊙ b."""
        refuse_quantized_merge(self.base_layer, "IA3")
        w, b = self.base_layer.weight, self.base_layer.bias
        for name in adapter_names if adapter_names is not None else list(self.active_adapters):
            if name in self.merged_adapters:
                continue
            l = getattr(self.ia3_l, name).data  # (1, in) or (out, 1): broadcasts over W's columns or rows
            new_w = w.data * l
            if safe_merge and not bool(xp.isfinite(new_w).all()):
                raise ValueError(f"merging IA3 adapter {name!r} gives non-finite weights; nothing was merged")
            w.data[...] = new_w
            if b is not None and not self.is_feedforward:
                b.data *= l.reshape(-1)  # (out, 1) -> (out,), as the bias
            self.merged_adapters.append(name)

    @no_grad()
    def unmerge(self):
        """Divide the vectors back out (PEFT adds 1e-8 to l to avoid dividing by zero)."""
        w, b = self.base_layer.weight, self.base_layer.bias
        while self.merged_adapters:
            l = getattr(self.ia3_l, self.merged_adapters.pop()).data + 1e-8
            w.data /= l
            if b is not None and not self.is_feedforward:
                b.data /= l.reshape(-1)  # (out, 1) -> (out,), as the bias

    def extra_repr(self):
        side = "input" if self.is_feedforward else "output"
        return f"in_features={self.in_features}, out_features={self.out_features}, scales the {side}, adapters={self.adapters()}"
