"""The attention core and rotary position embeddings, as fused ops with closed-form backwards.

Attention, for one head (batch and head axes broadcast in front):

    S = Q Kᵀ · s + M          s = 1/√D, M = 0 where attending is allowed and −∞ elsewhere
    P = softmax(S)            row-wise, over the keys
    O = (P ⊙ Z) V             Z = dropout mask scaled by 1/(1 − p) (all ones without dropout)

Backward, with G = ∂L/∂O and P̃ = P ⊙ Z:

    ∂L/∂V = P̃ᵀ G
    ∂L/∂P = (G Vᵀ) ⊙ Z
    ∂L/∂S = P ⊙ (∂L/∂P − rowsum(∂L/∂P ⊙ P))          (the softmax VJP)
    ∂L/∂Q = s · ∂L/∂S K,     ∂L/∂K = s · ∂L/∂Sᵀ Q

Only P (and the dropout mask) is saved: one (T, T) matrix per head, not the half-dozen a chain of
primitive ops would keep.
"""
from __future__ import annotations

import math

from ..backend import rng, xp
from .function import Function
from .ops_elementwise import unbroadcast


class ScaledDotProductAttention(Function):
    """O = softmax(Q Kᵀ·s + M) V with q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) → (..., Tq, Dv).

    ``mask``: boolean, True where a query may attend to a key; the formulas are in the module docstring.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask=None, dropout_p=0.0, scale=None):
        d = q.shape[-1]
        s = 1.0 / math.sqrt(d) if scale is None else scale
        # (..., Tq, Tk); scaling q costs Tq·D multiplications, scaling the scores Tq·Tk
        scores = (q * xp.asarray(s, dtype=q.dtype)) @ xp.swapaxes(k, -1, -2)
        if mask is not None:  # an additive 0 / −∞ bias (broadcast over batch and heads), in place if it fits
            bias = xp.where(mask, xp.asarray(0, dtype=scores.dtype), xp.asarray(-xp.inf, dtype=scores.dtype))
            if xp.broadcast_shapes(bias.shape, scores.shape) == scores.shape:
                scores += bias
            else:
                scores = scores + bias
        m = scores.max(axis=-1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # a row with every key masked: avoid inf − inf
        scores -= m  # softmax in place: the (Tq, Tk) buffer becomes e, then p
        p = xp.exp(scores, out=scores)
        denom = p.sum(axis=-1, keepdims=True)
        p /= xp.where(denom == 0, 1, denom)  # fully masked rows attend to nothing (all zeros)
        z = None
        if dropout_p > 0.0:
            z = (rng().random(p.shape) >= dropout_p).astype(p.dtype) / (1.0 - dropout_p)
            z = xp.asarray(z)
        pz = p * z if z is not None else p
        ctx.save_for_backward(q, k, v, p, z)
        ctx.scale = s
        return pz @ v

    @staticmethod
    def backward(ctx, g):
        q, k, v, p, z = ctx.saved_tensors
        s = ctx.scale
        # TASK attention.backward: gradients of softmax(Q Kᵀ s + M) V w.r.t. Q, K and V
        # BEGIN SOLUTION
        pz = p * z if z is not None else p
        gv = xp.swapaxes(pz, -1, -2) @ g  # (..., Tk, Dv)
        gp = g @ xp.swapaxes(v, -1, -2)  # (..., Tq, Tk)
        if z is not None:
            gp = gp * z
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))  # the softmax VJP, row by row
        gq = (gs @ k) * s
        gk = (xp.swapaxes(gs, -1, -2) @ q) * s
        # END SOLUTION
        return unbroadcast(gq, q.shape), unbroadcast(gk, k.shape), unbroadcast(gv, v.shape)


def rotate_half(x):
    """(x₁, x₂) → (−x₂, x₁) on the two halves of the last axis: times i in each (x₁ⱼ, x₂ⱼ) plane."""
    h = x.shape[-1] // 2
    return xp.concatenate([-x[..., h:], x[..., :h]], axis=-1)


class RoPE(Function):
    """Rotary position embedding (Su et al., 2021), "rotate-half" layout as in HF Llama.

    Each pair (xⱼ, xⱼ₊D/2) at position t is rotated by the angle t·θⱼ, θⱼ = base^(−2j/D):
        y = x ⊙ cos + rotate_half(x) ⊙ sin
    A rotation's inverse is its transpose, so the backward rotates the gradient back:
        ∂L/∂x = g ⊙ cos + rotate_halfᵀ(g ⊙ sin),   rotate_halfᵀ(u) = (u₂, −u₁)
    ``cos``/``sin`` have shape (T, D) (or broadcast to x's last two axes).
    """

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return x * cos + rotate_half(x) * sin

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        u = g * sin
        h = u.shape[-1] // 2
        return g * cos + xp.concatenate([u[..., h:], -u[..., :h]], axis=-1), None, None


def rope_tables(positions, dim, base=10000.0, dtype=None):
    """RoPE's cos and sin tables: integer ``positions`` (T,) or (B, T) → arrays (T, dim) or (B, T, dim)."""
    inv_freq = 1.0 / (base ** (xp.arange(0, dim, 2, dtype=xp.float64) / dim))  # (D/2,)
    angles = xp.asarray(positions, dtype=xp.float64)[..., None] * inv_freq  # (..., T, D/2)
    angles = xp.concatenate([angles, angles], axis=-1)  # (..., T, D): the same angle for both halves
    cos, sin = xp.cos(angles), xp.sin(angles)
    return (cos, sin) if dtype is None else (cos.astype(dtype), sin.astype(dtype))
