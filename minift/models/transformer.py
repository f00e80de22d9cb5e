"""One transformer, three families (bert, gpt2, llama), chosen by ``TransformerConfig``.

    embeddings → N × Block → (final norm) → head

A Block is the same code for every family; the config decides
  * post-LN (bert):     h = LN(x + Attn(x));          out = LN(h + MLP(h))
  * pre-norm (gpt2, llama): h = x + Attn(Norm(x));    out = h + MLP(Norm(h))
  * MLP: down(act(up(x))) with GELU, or SwiGLU: down(silu(gate(x)) ⊙ up(x))
  * positions: learned (bert, gpt2; added to the token embeddings) or RoPE (llama; inside attention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, RMSNorm
from ..nn.attention import KVCache, MultiHeadAttention
from .config import TransformerConfig


def _norm(c: TransformerConfig):
    return RMSNorm(c.hidden_size, eps=c.layer_norm_eps) if c.rms_norm else LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class MLP(Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.swiglu, self.approximate = c.swiglu, c.gelu_approximate
        self.up_proj = Linear(c.hidden_size, c.intermediate_size, bias=c.bias)
        if c.swiglu:
            self.gate_proj = Linear(c.hidden_size, c.intermediate_size, bias=c.bias)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, bias=c.bias)

    def forward(self, x):
        if self.swiglu:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x), self.approximate))


class Block(Module):
    def __init__(self, c: TransformerConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = c.pre_norm
        self.attn = MultiHeadAttention(c, layer_idx)
        self.attn_norm = _norm(c)
        self.mlp = MLP(c)
        self.mlp_norm = _norm(c)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, x, key_padding_mask=None, position_ids=None, cache=None, keep_attention=False):
        kw = dict(key_padding_mask=key_padding_mask, position_ids=position_ids, cache=cache, keep_attention=keep_attention)
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.attn_norm(x), **kw))
            return x + self.dropout(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attn(x, **kw)))
        return self.mlp_norm(x + self.dropout(self.mlp(x)))


class Embeddings(Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.tokens = Embedding(c.vocab_size, c.hidden_size)
        self.learned_positions = not c.rope
        if self.learned_positions:
            self.positions = Embedding(c.max_position_embeddings, c.hidden_size)
        if c.family == "bert":
            self.token_types = Embedding(c.type_vocab_size, c.hidden_size)
            self.norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)
        self.max_positions = c.max_position_embeddings

    def forward(self, input_ids, position_ids, token_type_ids=None):
        h = self.tokens(input_ids)
        if self.learned_positions:
            if int(position_ids.max()) >= self.max_positions:
                raise ValueError(
                    f"position {int(position_ids.max())} is past max_position_embeddings={self.max_positions}"
                )
            h = h + self.positions(position_ids)
        if "token_types" in self._modules:
            tt = xp.zeros_like(input_ids) if token_type_ids is None else xp.asarray(token_type_ids)
            h = self.norm(h + self.token_types(tt))
        return self.dropout(h)


@dataclass
class ModelOutput:
    """What a forward pass returns; fields are Hugging Face's. Absent ones are None."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    logits: Tensor | None = None
    loss: Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None

    def __getitem__(self, key):
        return getattr(self, key)


def _ids(x, name):
    a = x.data if isinstance(x, Tensor) else xp.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]  # a single sequence (T,) -> (1, T)
    if a.ndim != 2:
        raise ValueError(f"{name} must be (batch, seq_len), got shape {tuple(a.shape)}")
    return a


class TransformerModel(Module):
    """The backbone: token ids (B, T) → hidden states (B, T, C), plus the pooler for the bert family."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.layers = ModuleList([Block(config, i) for i in range(config.num_hidden_layers)])
        if config.pre_norm:
            self.norm = _norm(config)
        if config.family == "bert":
            self.pooler = Linear(config.hidden_size, config.hidden_size)
        init_weights(self, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, past_key_values=None,
                use_cache=False, output_hidden_states=False, output_attentions=False):
        ids = _ids(input_ids, "input_ids")
        b, t = ids.shape
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise IndexError(f"token id {bad} is out of range for a vocabulary of {self.config.vocab_size}")
        cache = past_key_values if past_key_values is not None else (KVCache(len(self.layers)) if use_cache else None)
        past = len(cache) if cache is not None else 0
        mask = None
        if attention_mask is not None:
            mask = _ids(attention_mask, "attention_mask").astype(bool)  # (B, past + T): 1 = real token, 0 = padding
            if mask.shape != (b, past + t):
                raise ValueError(f"attention_mask must be (batch, past + seq_len) = {(b, past + t)}, got {tuple(mask.shape)}")
        if position_ids is None:
            if mask is not None:  # count only real tokens, so left padding does not shift positions
                position_ids = xp.maximum(xp.cumsum(mask, axis=1) - 1, 0)[:, past:]
            else:
                position_ids = xp.broadcast_to(xp.arange(past, past + t), (b, t))
        position_ids = xp.asarray(position_ids)
        h = self.embed(ids, position_ids, token_type_ids)
        hidden, attns = [h], []
        for layer in self.layers:
            h = layer(h, key_padding_mask=mask, position_ids=position_ids, cache=cache, keep_attention=output_attentions)
            hidden.append(h)
            if output_attentions:
                attns.append(layer.attn.last_attention)
        if self.config.pre_norm:
            h = self.norm(h)
        pooled = F.tanh(self.pooler(h[:, 0])) if self.config.family == "bert" else None
        return ModelOutput(
            last_hidden_state=h, pooler_output=pooled, past_key_values=cache,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attns) if output_attentions else None,
        )


def shifted_lm_loss(logits, labels, ignore_index=-100):
    """Next-token loss: position t predicts token t+1; labels equal to ``ignore_index`` are skipped (HF's rule)."""
    b, t, v = logits.shape
    labels = _ids(labels, "labels")
    pred = logits[:, :-1].reshape(b * (t - 1), v)  # (B, T-1, V) -> (B·(T-1), V)
    return F.cross_entropy(pred, labels[:, 1:].reshape(-1), ignore_index=ignore_index)


class TransformerForCausalLM(Module):
    """Backbone + language-model head (tied to the token embeddings when ``tie_word_embeddings``)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.family == "bert":
            raise ValueError("a causal LM needs the gpt2 or llama family; use TransformerForMaskedLM for bert")
        self.config = config
        self.model = TransformerModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed.tokens.weight

    def forward(self, input_ids, attention_mask=None, labels=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, **kw)
        out.logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        if labels is not None:
            out.loss = shifted_lm_loss(out.logits, labels)
        return out

    def generate(self, input_ids, max_new_tokens=32, attention_mask=None, **kw):
        from .generation import generate

        return generate(self, input_ids, max_new_tokens=max_new_tokens, attention_mask=attention_mask, **kw)


class TransformerForMaskedLM(Module):
    """BERT's masked-LM head: dense → GELU → LayerNorm → decoder tied to the embeddings (+ bias)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.family != "bert":
            raise ValueError("masked LM is for the bert family")
        self.config = config
        self.model = TransformerModel(config)
        self.mlm_dense = Linear(config.hidden_size, config.hidden_size)
        self.mlm_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlm_decoder = Linear(config.hidden_size, config.vocab_size)
        self.mlm_decoder.weight = self.model.embed.tokens.weight

    def forward(self, input_ids, attention_mask=None, labels=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, **kw)
        h = self.mlm_norm(F.gelu(self.mlm_dense(out.last_hidden_state)))
        out.logits = self.mlm_decoder(h)  # (B, T, V)
        if labels is not None:
            b, t, v = out.logits.shape
            out.loss = F.cross_entropy(out.logits.reshape(b * t, v), _ids(labels, "labels").reshape(-1))
        return out


def init_weights(module, std=0.02):
    """GPT-2/BERT initialisation: every Linear and Embedding weight ~ N(0, std²), biases 0, norms 1.

    PyTorch's layer defaults (U(±1/√in), N(0, 1)) make a tied LM head start with huge logits; transformers
    all start from this small normal instead.
    """
    from .. import backend
    from ..backend import get_default_dtype

    for m in module.modules():
        if isinstance(m, (Linear, Embedding)):
            w = backend.rng().normal(0.0, std, size=m.weight.shape).astype(get_default_dtype())
            m.weight.data = backend.asarray(w)
            if isinstance(m, Linear) and m.bias is not None:
                m.bias.data = xp.zeros_like(m.bias.data)


def count_parameters(model) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))
