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

from ..backend import is_cupy, parallel_for, rng, xp
from .function import Function
from .ops_elementwise import unbroadcast


class ScaledDotProductAttention(Function):
    """O = softmax(Q Kᵀ·s + M) V with q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) → (..., Tq, Dv).

    ``mask``: boolean, True where a query may attend to a key; the formulas are in the module docstring.

    Speed: every (batch element, head) is independent, so when q, k and v share their leading (batch)
    axis the work is cut along it and handed to the worker threads (``parallel_for``), a few batch
    elements at a time — small enough that the (Tq, Tk) scores of a piece stay in the cache while the
    scale, mask, softmax and dropout run over them. The dropout mask is drawn before the split, in one
    call, so a seed gives the same mask with any number of threads.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask=None, dropout_p=0.0, scale=None):
        s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        batch = xp.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2], () if mask is None else mask.shape[:-2])
        tq, tk = q.shape[-2], k.shape[-2]
        dtype = xp.result_type(q, k, v)
        blocked = ~mask if mask is not None else None  # True where a query may NOT attend
        z = None
        if dropout_p > 0.0:  # keep each probability with chance 1 − p, drawn once for the whole batch
            z = rng().random(batch + (tq, tk), dtype=xp.float32) >= dropout_p
        p = xp.empty(batch + (tq, tk), dtype=dtype)
        out = xp.empty(batch + (tq, v.shape[-1]), dtype=dtype)

        def piece(i):  # the batch elements ``i`` (a slice of the leading axis, or everything)
            p[i], out[i] = attention_forward(q[i], k[i], v[i], _rows(blocked, i, p.ndim), _rows(z, i, p.ndim),
                                             s, dropout_p)

        _over_batch(piece, batch, q, k, v)
        ctx.save_for_backward(q, k, v, p, z)
        ctx.scale, ctx.dropout_p = s, dropout_p
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, p, z = ctx.saved_tensors
        if _shares_batch(p.shape[:-2], q, k, v):
            gq, gk, gv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)

            def piece(i):
                gq[i], gk[i], gv[i] = attention_backward(q[i], k[i], v[i], p[i], _rows(z, i, p.ndim), g[i],
                                                         ctx.scale, ctx.dropout_p)

            _over_batch(piece, p.shape[:-2], q, k, v)
            return gq, gk, gv
        gq, gk, gv = attention_backward(q, k, v, p, z, g, ctx.scale, ctx.dropout_p)
        return unbroadcast(gq, q.shape), unbroadcast(gk, k.shape), unbroadcast(gv, v.shape)


def attention_forward(q, k, v, blocked, keep, s, dropout_p):
    """(P, O) for one piece: P = softmax(Q Kᵀ·s with −∞ where ``blocked``), O = (P ⊙ Z) V."""
    scores = (q * xp.asarray(s, dtype=q.dtype)) @ xp.swapaxes(k, -1, -2)  # (..., Tq, Tk); s·Q costs Tq·D, not Tq·Tk
    if blocked is not None:
        shape = xp.broadcast_shapes(scores.shape, blocked.shape)
        if shape != scores.shape:  # a mask with more batch axes than q and k: the output takes its shape
            scores = xp.broadcast_to(scores, shape).copy()
        xp.copyto(scores, -xp.inf, where=blocked)  # masked scores are −∞: e^{−∞} = 0 after the softmax
    m = scores.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # a row with every key masked: avoid inf − inf
    scores -= m  # softmax in place: the (Tq, Tk) buffer becomes e, then p
    p = xp.exp(scores, out=scores)
    denom = p.sum(axis=-1, keepdims=True)
    p /= xp.where(denom == 0, 1, denom)  # fully masked rows attend to nothing (all zeros)
    pz = p
    if keep is not None:  # dropout on the probabilities: P ⊙ Z with Z = keep / (1 − p)
        pz = p * keep
        pz *= p.dtype.type(1.0 / (1.0 - dropout_p))
    return p, pz @ v


def attention_backward(q, k, v, p, keep, g, s, dropout_p):
    """(∂L/∂Q, ∂L/∂K, ∂L/∂V) for one piece, from the saved P, the dropout mask and G = ∂L/∂O (the formulas are
    in the module docstring)."""
    z = None
    if keep is not None:
        z = keep * p.dtype.type(1.0 / (1.0 - dropout_p))  # Z: 0 or 1/(1 − p)
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
    return gq, gk, gv


def _rows(a, i, ndim):
    """The part of a mask that goes with batch elements ``i``: sliced if it has its own batch axis."""
    if a is None or isinstance(i, slice) and i == slice(None):
        return a
    return a[i] if a.ndim == ndim and a.shape[0] != 1 else a


def _shares_batch(batch, q, k, v):
    """Whether q, k, v and the output all have the same (non-empty) batch axes: then pieces can be cut."""
    return len(batch) > 0 and q.shape[:-2] == k.shape[:-2] == v.shape[:-2] == tuple(batch)


def _over_batch(piece, batch, q, k, v):
    """Run ``piece`` on slices of the shared leading axis on the worker threads, or once on everything.

    On CuPy once on everything: the GPU is parallel already, and small pieces would only add kernel launches.
    """
    if _shares_batch(batch, q, k, v) and not is_cupy():
        n = q.shape[0]
        per_row = max(1, q[0].size // q.shape[-1] * k.shape[-2])  # scores per batch element
        parallel_for(piece, n, grain=max(1, (1 << 17) // per_row))
    else:
        piece(slice(None))


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
