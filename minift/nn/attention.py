"""Multi-head attention with grouped-query heads, causal and padding masks, RoPE and a KV cache.

Shapes: x (B, T, C) with C = H·D; queries use H heads, keys/values H_kv heads (H_kv divides H; H_kv = 1 is
multi-query attention, H_kv = H plain multi-head). Each key/value head serves H/H_kv query heads.
"""
from __future__ import annotations

import math

from .. import functional as F
from ..autograd.grad_mode import no_grad
from ..autograd.ops_attention import rope_tables
from ..backend import xp
from .layers import Linear
from .module import Module


class KVCache:
    """Keys and values of the tokens seen so far, per layer: generation feeds one new token at a time."""

    def __init__(self, num_layers):
        self.keys = [None] * num_layers
        self.values = [None] * num_layers

    def __len__(self):
        """How many positions are cached."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def update(self, layer, k, v):
        """Append this step's (B, H_kv, T_new, D) keys/values and return the full ones."""
        if self.keys[layer] is not None:
            k = F.concatenate([self.keys[layer], k], axis=2)
            v = F.concatenate([self.values[layer], v], axis=2)
        self.keys[layer] = k
        self.values[layer] = v
        return k, v


class MultiHeadAttention(Module):
    """Self-attention over a sequence, (B, T, C) → (B, T, C).

    Project x to queries (H heads), keys and values (H_kv heads each) of size D; rotate q and k by their
    positions (RoPE, llama); append k and v to the cache (generation); let each query head attend,
        O_h = softmax(Q_h K_hᵀ/√D + mask) V_h       (causal and/or padding mask)
    then concatenate the heads and project back: o_proj(concat_h O_h).
    """

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.layer_idx = layer_idx  # which slot of a KVCache is ours
        self.causal = config.causal
        self.rope = config.rope
        self.rope_theta = config.rope_theta
        self.dropout_p = config.attention_probs_dropout_prob
        hidden = config.hidden_size
        self.q_proj = Linear(hidden, self.num_heads * self.head_dim, bias=config.bias)
        self.k_proj = Linear(hidden, self.num_kv_heads * self.head_dim, bias=config.bias)
        self.v_proj = Linear(hidden, self.num_kv_heads * self.head_dim, bias=config.bias)
        self.o_proj = Linear(self.num_heads * self.head_dim, hidden, bias=config.bias)
        self.last_attention = None  # (B, H, T, T_k) probabilities of the last call, for attention maps

    def forward(self, x, key_padding_mask=None, position_ids=None, cache=None, keep_attention=False):
        """``key_padding_mask``: (B, T_k) bool, True for real tokens — or (B, T, T_k), True where query t may
        attend to key s (packed sequences); ``position_ids``: (B, T) ints (RoPE)."""
        b, t, _ = x.shape
        h = self.num_heads
        hk = self.num_kv_heads
        d = self.head_dim
        q = self.q_proj(x).reshape(b, t, h, d).transpose(0, 2, 1, 3)  # (B, T, H·D) -> (B, H, T, D)
        k = self.k_proj(x).reshape(b, t, hk, d).transpose(0, 2, 1, 3)  # (B, H_kv, T, D)
        v = self.v_proj(x).reshape(b, t, hk, d).transpose(0, 2, 1, 3)  # (B, H_kv, T, D)
        if self.rope:
            if position_ids is None:
                start = len(cache) if cache is not None else 0
                position_ids = xp.arange(start, start + t)[None, :]  # (1, T)
            cos, sin = rope_tables(position_ids, d, self.rope_theta, dtype=x.dtype)  # (B|1, T, D)
            cos = cos[:, None]  # (B|1, 1, T, D): the same angles for every head
            sin = sin[:, None]
            q = F.apply_rotary(q, cos, sin)
            k = F.apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        k = F.repeat_kv(k, h // hk)  # (B, H_kv, T_k, D) -> (B, H, T_k, D)
        v = F.repeat_kv(v, h // hk)
        mask = None
        if key_padding_mask is not None and key_padding_mask.ndim == 3:  # packed sequences: (B, T, T_k)
            mask = xp.asarray(key_padding_mask, dtype=bool)[:, None, :, :]  # (B, 1, T, T_k): the same for every head
        elif key_padding_mask is not None:
            mask = xp.asarray(key_padding_mask, dtype=bool)[:, None, None, :]  # (B, 1, 1, T_k)
        dropout_p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                             dropout_p=dropout_p)  # (B, H, T, D)
        if keep_attention:  # recomputed from q and k, only when asked (lessons draw attention maps)
            self.last_attention = attention_probs(q, k, mask, self.causal)
        out = out.transpose(0, 2, 1, 3).reshape(b, t, h * d)  # (B, H, T, D) -> (B, T, H·D)
        return self.o_proj(out)


def attention_probs(q, k, mask=None, causal=False):
    """softmax(Q Kᵀ/√D) with the same masking as the fused op, as a plain array (B, H, T_q, T_k)."""
    with no_grad():
        scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T_q, T_k)
        allowed = xp.ones(scores.shape, dtype=bool)
        if mask is not None:
            allowed = allowed & mask
        if causal:
            tq = scores.shape[-2]
            tk = scores.shape[-1]
            allowed = allowed & xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)
        return F.softmax(scores.masked_fill(~allowed, -xp.inf), axis=-1).data
