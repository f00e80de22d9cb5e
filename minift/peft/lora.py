"""LoRA: a frozen Linear plus a trainable low-rank update, ``LoraLinear`` (Hu et al., 2021).

For a frozen weight W (out, in), LoRA learns A (r, in) and B (out, r) with r ≪ min(in, out):

    y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ          s = lora_alpha / r   (rsLoRA: lora_alpha / √r)

so the layer acts as if its weight were W + s·BA, while only r·(in + out) numbers train. B starts at zero,
so at initialization y is exactly the frozen layer's output; A starts like a Linear's weight
(kaiming-uniform, bound 1/√in) or, with ``init_lora_weights="gaussian"``, as N(0, 1/r²).

Gradients, with G = ∂L/∂y flattened to (M, out), X = dropout(x) to (M, in) and H = X Aᵀ (M, r):

    ∂L/∂B = s · Gᵀ H                 (out, r)
    ∂L/∂A = s · (G B)ᵀ X             (r, in)
    ∂L/∂x = G W + s · (G B) A        (through the dropout's mask when it is on)

and none for W and b: they are frozen, and the Linear op skips the weight-gradient product for them.
They come from composing two ``Linear`` ops (and the tests check them against finite differences).

Merging folds the update into the weight, W ← W + s·BA, so inference costs nothing extra; unmerging
subtracts it again (exact up to float32 rounding). Names follow PEFT: ``base_layer``, ``lora_A.<adapter>``,
``lora_B.<adapter>``, ``lora_dropout.<adapter>``, ``scaling[<adapter>]``.

DoRA (Liu et al., 2024; ``use_dora=True``) splits the adapted weight into a direction and a length per
output row, and learns the length m (out,) separately:

    W' = m ⊙ (W + s·BA) / n,     n = ‖W + s·BA‖ over each row (the input axis), **detached**

so y = (m/n) ⊙ (W x + s·BAx) + b. m starts at n (so W' = W). n is treated as a constant in the backward,
as in the paper and PEFT (it saves memory, and the gradient is nearly the same): ∂L/∂m = Σ_batch G ⊙ (W x
+ s·BAx)/n. With dropout on, PEFT computes W·dropout(x) for the rescaled part, so the identity holds on
the dropped-out input: y = Wx + b + (m/n − 1) ⊙ W·drop(x) + (m/n) ⊙ s·BA·drop(x). Merging: W ← (m/n)(W + s·BA).
"""
from __future__ import annotations

import math

from .. import functional as F
from ..autograd.grad_mode import no_grad
from ..backend import rng, xp
from ..nn import Dropout, Linear, Module, ModuleDict
from ..nn.module import Parameter
from ..nn.quantized import QuantizedLinear, warn_requantized_merge


class Identity(Module):
    """y = x (the 'dropout' of an adapter with lora_dropout = 0)."""

    def forward(self, x):
        return x


class Magnitude(Module):
    """DoRA's learned length of each output row, ``weight`` (out,) — PEFT's ``lora_magnitude_vector.<adapter>``."""

    def __init__(self, norms):
        super().__init__()
        self.weight = Parameter(norms)

    def forward(self, x):  # pragma: no cover - a holder, read by LoraLinear
        return self.weight


def dora_weight_norm(weight, A, B, s):
    """n = ‖W + s·BA‖ of each output row (W (out, in), A (r, in), B (out, r)): an array, outside the graph."""
    # TASK peft.dora_norm: the row norms of the adapted weight, over the input axis
    # BEGIN SOLUTION
    adapted = weight + s * (B @ A)  # (out, in)
    return xp.sqrt((adapted * adapted).sum(axis=1))  # (out,)
    # END SOLUTION


def lora_scaling(r, lora_alpha, use_rslora=False):
    """s = α / r, or α / √r with rsLoRA (Kalajdzievski, 2023: keeps the update's size steady as r grows)."""
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


class LoraLinear(Module):
    """A frozen ``Linear`` (``base_layer``) with one or more LoRA adapters beside it; see the module docstring."""

    def __init__(self, base_layer: Linear):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"LoRA wraps a Linear layer, got {type(base_layer).__name__}")
        base_layer.requires_grad_(False)  # frozen: only the adapters train (get_peft_model may free a bias)
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = ModuleDict()
        self.lora_B = ModuleDict()
        self.lora_dropout = ModuleDict()
        self.lora_magnitude_vector = ModuleDict()  # DoRA adapters only
        self.scaling = {}  # adapter name -> s
        self.r = {}
        self.active_adapters = []
        self.merged_adapters = []
        self._dora_norms = {}  # n of each merged DoRA adapter (to unmerge exactly)
        self.disable_adapters = False  # True inside PeftModel.disable_adapter(): the base layer alone

    def update_layer(self, adapter_name, r, lora_alpha, lora_dropout=0.0, init_lora_weights=True, use_rslora=False,
                     use_dora=False):
        """Add adapter ``adapter_name``: A (r, in), B (out, r), its dropout and its scale (and DoRA's m)."""
        if not (isinstance(r, int) and r > 0):
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
        dtype = self.base_layer.weight.dtype
        self.lora_A[adapter_name] = Linear(self.in_features, r, bias=False)  # kaiming-uniform, bound 1/√in
        self.lora_B[adapter_name] = Linear(r, self.out_features, bias=False)
        self.lora_dropout[adapter_name] = Dropout(lora_dropout) if lora_dropout > 0 else Identity()
        self.scaling[adapter_name] = lora_scaling(r, lora_alpha, use_rslora)
        self.r[adapter_name] = r
        a, b = self.lora_A[adapter_name], self.lora_B[adapter_name]
        if init_lora_weights == "gaussian":
            a.weight = Parameter(xp.asarray(rng().normal(0.0, 1.0 / r, (r, self.in_features))))
        if init_lora_weights is not False:  # True or "gaussian": B = 0, so the update starts at zero
            b.weight = Parameter(xp.zeros((self.out_features, r)))
        a.weight.data = a.weight.data.astype(dtype)
        b.weight.data = b.weight.data.astype(dtype)
        if use_dora:  # m starts at n, so the layer starts as the pretrained one
            norms = dora_weight_norm(self.base_layer.weight.data, a.weight.data, b.weight.data, self.scaling[adapter_name])
            self.lora_magnitude_vector[adapter_name] = Magnitude(norms.astype(dtype))
        if adapter_name not in self.active_adapters:
            self.active_adapters.append(adapter_name)

    def forward(self, x):
        """y = base(x) + Σ over active, unmerged adapters of s · B(A(dropout(x)))."""
        if self.disable_adapters:
            if self.merged_adapters:
                raise RuntimeError("adapters are merged into the weights: unmerge() before disabling them")
            return self.base_layer(x)
        y = self.base_layer(x)
        for name in self.active_adapters:
            if name in self.merged_adapters:  # already inside base_layer.weight
                continue
            A, B = self.lora_A[name], self.lora_B[name]
            dropout, s = self.lora_dropout[name], self.scaling[name]
            if name in self.lora_magnitude_vector:
                y = self._dora(y, x, name)
                continue
            # TASK peft.lora_forward: add the scaled low-rank update to the frozen layer's output
            # BEGIN SOLUTION
            y = y + B(A(dropout(x))) * s  # (…, in) -> (…, r) -> (…, out)
            # END SOLUTION
        return y

    def _dora(self, y, x, name):
        """y + (m/n − 1) ⊙ W·drop(x) + (m/n) ⊙ s·B(A(drop(x))), n detached (see the module docstring)."""
        A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
        dropout, W, bias = self.lora_dropout[name], self.base_layer.weight, self.base_layer.bias
        n = dora_weight_norm(W.data, A.weight.data, B.weight.data, s)  # (out,), a constant for the backward
        scale = self.lora_magnitude_vector[name].weight / n  # m / n, (out,)
        x_dropped = dropout(x)
        if isinstance(dropout, Identity) or not self.training:
            base_result = y - bias if bias is not None else y  # W x, already computed
        else:
            base_result = F.linear(x_dropped, W)  # W·drop(x), no bias
        return y + (scale - 1) * base_result + scale * (B(A(x_dropped)) * s)

    def delta_weight(self, adapter_name):
        """The update this adapter adds to the weight, s·BA, shape (out, in) — an array, outside the graph."""
        A = self.lora_A[adapter_name].weight.data  # (r, in)
        B = self.lora_B[adapter_name].weight.data  # (out, r)
        # TASK peft.lora_merge: the weight update s·BA of a LoRA adapter
        # BEGIN SOLUTION
        return (B @ A) * self.scaling[adapter_name]
        # END SOLUTION

    def update_is_finite(self, adapter_name):
        """Whether the adapter's parameters (and so its weight update) are all finite numbers."""
        arrays = [self.lora_A[adapter_name].weight.data, self.lora_B[adapter_name].weight.data]
        if adapter_name in self.lora_magnitude_vector:
            arrays.append(self.lora_magnitude_vector[adapter_name].weight.data)
        return all(bool(xp.isfinite(a).all()) for a in arrays)

    @no_grad()
    def merge(self, adapter_names=None, safe_merge=False):
        """W ← W + s·BA for each named (default: active) adapter not merged yet.

        ``safe_merge`` computes the new weight on a copy first and refuses (ValueError) a non-finite one,
        leaving the layer as it was.

        On a 4-bit base (``QuantizedLinear``) the weight is a dequantized copy Ŵ, and the sum is quantized
        again, W ← Q(Ŵ + s·BA), one adapter at a time with a warning, as PEFT's bitsandbytes layers do: each
        value snaps to its block's grid, so much of a small update is rounded away.
        """
        quantized = isinstance(self.base_layer, QuantizedLinear)
        weight = self.base_layer.weight  # on a 4-bit base: a float copy of Ŵ, stored back by requantize
        for name in adapter_names if adapter_names is not None else list(self.active_adapters):
            if name in self.merged_adapters:
                continue
            if name not in self.lora_A:
                raise KeyError(f"no adapter named {name!r} here; adapters: {list(self.lora_A.keys())}")
            if quantized:
                warn_requantized_merge(self.base_layer, "merging")
            delta = self.delta_weight(name).astype(weight.dtype)
            if name in self.lora_magnitude_vector:  # DoRA: W ← (m/n)(W + s·BA); n kept to unmerge
                n = dora_weight_norm(weight.data, self.lora_A[name].weight.data, self.lora_B[name].weight.data,
                                     self.scaling[name])
                self._dora_norms[name] = n
                ratio = (self.lora_magnitude_vector[name].weight.data / n)[:, None]
                delta = ratio * (weight.data + delta) - weight.data
            if safe_merge:
                merged = weight.data + delta
                if not bool(xp.isfinite(merged).all()):
                    raise ValueError(f"merging adapter {name!r} gives non-finite weights: the adapter is broken "
                                     "(look for NaN/inf in its lora_A / lora_B); nothing was merged")
                weight.data[...] = merged
            else:
                weight.data += delta
            if quantized:
                self.base_layer.requantize(weight.data)
                weight = self.base_layer.weight  # the next adapter adds to Q(Ŵ + s·BA), as in PEFT
            self.merged_adapters.append(name)

    @no_grad()
    def unmerge(self):
        """W ← W − s·BA for every merged adapter, last merged first (on a 4-bit base, quantized again: the
        weights come back within a grid step of the original, not equal to it)."""
        quantized = isinstance(self.base_layer, QuantizedLinear)
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if quantized:
                warn_requantized_merge(self.base_layer, "unmerging")
            weight = self.base_layer.weight.data
            if name in self.lora_magnitude_vector:  # W = W'/(m/n) − s·BA
                ratio = (self.lora_magnitude_vector[name].weight.data / self._dora_norms.pop(name))[:, None]
                weight[...] = weight / ratio
            weight -= self.delta_weight(name).astype(weight.dtype)
            if quantized:
                self.base_layer.requantize(weight)

    def extra_repr(self):
        ranks = ", ".join(f"{n}: r={self.r[n]}, s={self.scaling[n]:g}" for n in self.r)
        return f"in_features={self.in_features}, out_features={self.out_features}, adapters=({ranks})"
