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

from .. import functional as F
from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, RMSNorm
from ..nn.attention import KVCache, MultiHeadAttention
from .config import TransformerConfig


def _norm(config: TransformerConfig):
    """The family's normalization layer: RMSNorm (llama) or LayerNorm (bert, gpt2)."""
    if config.rms_norm:
        return RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class MLP(Module):
    """The position-wise feed-forward network, (B, T, C) → (B, T, C) through a wider (B, T, I) middle.

    GELU (bert, gpt2):   down(gelu(up(x)))
    SwiGLU (llama):      down(silu(gate(x)) ⊙ up(x))   — a learned gate on each hidden unit
    with up, gate: C → I and down: I → C (I = ``intermediate_size``).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.swiglu = config.swiglu
        self.approximate = config.gelu_approximate
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        if config.swiglu:
            self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=config.bias)

    def forward(self, x):
        if self.swiglu:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, I) -> (B, T, C)
        return self.down_proj(F.gelu(self.up_proj(x), self.approximate))


class Block(Module):
    """One transformer layer, (B, T, C) → (B, T, C): attention, then the MLP, each in a residual branch.

    pre-norm (gpt2, llama):  h = x + Attn(Norm(x));   out = h + MLP(Norm(h))
    post-LN (bert):          h = LN(x + Attn(x));     out = LN(h + MLP(h))
    """

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.attn = MultiHeadAttention(config, layer_idx)
        self.attn_norm = _norm(config)
        self.mlp = MLP(config)
        self.mlp_norm = _norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x, key_padding_mask=None, position_ids=None, cache=None, keep_attention=False):
        def attend(h):
            return self.attn(h, key_padding_mask=key_padding_mask, position_ids=position_ids, cache=cache,
                             keep_attention=keep_attention)

        if self.pre_norm:
            x = x + self.dropout(attend(self.attn_norm(x)))  # (B, T, C)
            return x + self.dropout(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.dropout(attend(x)))
        return self.mlp_norm(x + self.dropout(self.mlp(x)))


class Embeddings(Module):
    """Token ids (B, T) → vectors (B, T, C): token embedding, plus what the family adds.

    bert:   LN(tokens + learned positions + token types)      gpt2:  tokens + learned positions
    llama:  tokens only (positions enter attention as RoPE rotations)
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.tokens = Embedding(config.vocab_size, config.hidden_size)
        self.learned_positions = not config.rope
        if self.learned_positions:
            self.positions = Embedding(config.max_position_embeddings, config.hidden_size)
        if config.family == "bert":
            self.token_types = Embedding(config.type_vocab_size, config.hidden_size)
            self.norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids, position_ids, token_type_ids=None):
        h = self.tokens(input_ids)  # (B, T, C)
        if self.learned_positions:
            if int(position_ids.max()) >= self.max_positions:
                raise ValueError(
                    f"position {int(position_ids.max())} is past max_position_embeddings={self.max_positions}"
                )
            h = h + self.positions(position_ids)
        if "token_types" in self._modules:
            types = xp.zeros_like(input_ids) if token_type_ids is None else xp.asarray(token_type_ids)
            h = self.norm(h + self.token_types(types))
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


def _id_matrix(x, name):
    """Integer ids (a Tensor, array or list) as a (batch, seq_len) array; one sequence (T,) becomes (1, T)."""
    ids = x.data if isinstance(x, Tensor) else xp.asarray(x)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None, :]  # a single sequence (T,) -> (1, T)
    if ids.ndim != 2:
        raise ValueError(f"{name} must be (batch, seq_len), got shape {tuple(ids.shape)}")
    return ids


def _input_ids(input_ids):
    """``input_ids`` as (B, T), refusing an empty batch and empty sequences.

    Each id's range, [0, vocab_size), is checked where ids are used: by the token embedding.
    """
    ids = _id_matrix(input_ids, "input_ids")
    batch, seq_len = ids.shape
    if batch == 0:
        raise ValueError(
            f"input_ids of shape {(batch, seq_len)} is an empty batch: give at least one sequence"
        )
    if seq_len == 0:
        raise ValueError(
            f"input_ids of shape {(batch, seq_len)} holds no tokens: each sequence needs at least one"
        )
    return ids


def _padding_mask(attention_mask, batch, seq_len, past):
    """``attention_mask`` as booleans; None stays None. Two forms:

    * (B, past + T): 1 = real token, 0 = padding (Hugging Face's usual mask);
    * (B, T, past + T): 1 where query t may attend to key s — for packed sequences, a block per example,
      so that no example sees another (the causal mask is still applied on top).
    """
    if attention_mask is None:
        return None
    mask = xp.asarray(attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask)
    if mask.ndim == 3:
        if mask.shape != (batch, seq_len, past + seq_len):
            raise ValueError(f"a 3-D attention_mask must be (batch, seq_len, past + seq_len) = "
                             f"{(batch, seq_len, past + seq_len)}, got {tuple(mask.shape)}")
        return mask.astype(bool)
    mask = _id_matrix(attention_mask, "attention_mask").astype(bool)
    if mask.shape != (batch, past + seq_len):
        raise ValueError(
            f"attention_mask must be (batch, past + seq_len) = {(batch, past + seq_len)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask


def _default_position_ids(mask, batch, seq_len, past):
    """Positions (B, T) of the new tokens: past, past + 1, …

    With a padding mask, a token's position is the number of real tokens before it, so that left
    padding does not shift a prompt's positions (a padded prompt is then embedded as the unpadded one).
    """
    if mask is None or mask.ndim == 3:  # a 3-D (packing) mask comes with its own position_ids
        return xp.broadcast_to(xp.arange(past, past + seq_len), (batch, seq_len))
    real_before = xp.cumsum(mask, axis=1) - 1  # (B, past + T): index among the real tokens
    return xp.maximum(real_before, 0)[:, past:]  # (B, T); padding gets position 0


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

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                past_key_values=None, use_cache=False, output_hidden_states=False, output_attentions=False):
        ids = _input_ids(input_ids)  # (B, T)
        batch, seq_len = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache(len(self.layers))
        past = len(cache) if cache is not None else 0  # positions already in the cache
        mask = _padding_mask(attention_mask, batch, seq_len, past)  # (B, past + T) or None
        if position_ids is None:
            position_ids = _default_position_ids(mask, batch, seq_len, past)
        position_ids = xp.asarray(position_ids)  # (B, T)

        h = self.embed(ids, position_ids, token_type_ids)  # (B, T, C)
        hidden = [h]
        attentions = []
        for layer in self.layers:
            h = layer(h, key_padding_mask=mask, position_ids=position_ids, cache=cache,
                      keep_attention=output_attentions)  # (B, T, C)
            hidden.append(h)
            if output_attentions:
                attentions.append(layer.attn.last_attention)  # (B, H, T, past + T)
        if self.config.pre_norm:
            h = self.norm(h)
        pooled = F.tanh(self.pooler(h[:, 0])) if self.config.family == "bert" else None  # (B, C): [CLS]
        return ModelOutput(
            last_hidden_state=h,
            pooler_output=pooled,
            past_key_values=cache,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


def shifted_lm_loss(logits, labels, ignore_index=-100):
    """Next-token loss, as Hugging Face's: position t predicts token t+1, skipping ``ignore_index`` labels."""
    b, t, v = logits.shape
    labels = _id_matrix(labels, "labels")
    # Shift the labels left rather than cut the logits: the last position gets ``ignore_index`` (there
    # is no token after it), so the loss is the same, and the (B, T, V) logits are used as they are —
    # no copy of the biggest array of the step forward, no zero-filled gradient for its cut-off row back.
    next_tokens = xp.full((b, t), ignore_index, dtype=labels.dtype)  # (B, T)
    next_tokens[:, :-1] = labels[:, 1:]
    return F.cross_entropy(logits.reshape(b * t, v), next_tokens.reshape(-1),  # (B·T, V) against (B·T,)
                           ignore_index=ignore_index)


class TransformerForCausalLM(Module):
    """Backbone + language-model head (tied to the token embeddings when ``tie_word_embeddings``)."""

    shifts_labels = True  # position t is scored against labels[t + 1]: the Trainer counts targets from 1 on

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.family == "bert":
            raise ValueError(
                "a causal LM needs the gpt2 or llama family; use TransformerForMaskedLM for bert"
            )
        self.config = config
        self.model = TransformerModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed.tokens.weight
        else:  # an untied head starts as HF's does, N(0, std²): a fresh model's loss is then ln V
            init_weights(self.lm_head, config.initializer_range)

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
        # the decoder's bias starts at 0, as HF's (the Linear default would add a random U(±1/√C) offset to each
        # logit). The transform keeps the Linear default where HF draws N(0, std²): the LayerNorm after it undoes
        # its scale (measured: a fresh loss within 0.01 of ln V either way), and loading a bert checkpoint builds
        # this head before overwriting it, so a draw here would shift every seeded stream that follows a load
        self.mlm_decoder.bias.data = xp.zeros_like(self.mlm_decoder.bias.data)

    def forward(self, input_ids, attention_mask=None, labels=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, **kw)
        h = self.mlm_norm(F.gelu(self.mlm_dense(out.last_hidden_state)))
        out.logits = self.mlm_decoder(h)  # (B, T, V)
        if labels is not None:
            b, t, v = out.logits.shape
            labels = _id_matrix(labels, "labels").reshape(-1)  # (B·T,)
            out.loss = F.cross_entropy(out.logits.reshape(b * t, v), labels)  # (B·T, V) against (B·T,)
        return out


def init_weights(module, std=0.02):
    """GPT-2/BERT initialisation: every Linear and Embedding weight ~ N(0, std²), biases 0, norms 1.

    PyTorch's layer defaults (U(±1/√in), N(0, 1)) make a tied LM head start with huge logits; transformers
    all start from this small normal instead.
    """
    from .. import backend
    from ..backend import get_default_dtype
    from ..nn.layers import skip_init

    if skip_init():  # a loader is about to overwrite every weight
        return
    for m in module.modules():
        if isinstance(m, (Linear, Embedding)):
            w = backend.rng().normal(0.0, std, size=m.weight.shape).astype(get_default_dtype())
            m.weight.data = backend.asarray(w)
            if isinstance(m, Linear) and m.bias is not None:
                m.bias.data = xp.zeros_like(m.bias.data)

