"""Prefix tuning (Li & Liang, 2021): learn n key/value vectors per layer that every token attends to.

Prompt tuning (``prompt.py``) learns n input embeddings; prefix tuning learns, in every layer ℓ, n keys
P_K^ℓ and n values P_V^ℓ (per key/value head), put in front of the keys and values the frozen model
computes from the input. Each query of layer ℓ then attends over n + T keys:

    O^ℓ = softmax(Q [P_K^ℓ; K]ᵀ / √D + mask) [P_V^ℓ; V]          ([A; B]: concatenated along the tokens)

with Q, K, V of the real tokens as before (the prefix has no queries: nothing is computed *at* the prefix,
it is only read). Each output row is a convex mix of the n prefix values and the token values, so the
prefix steers every layer directly, where a prompt-tuning token only reaches the deeper layers through the
layers below it. Nothing of the model changes: the prefix is handed to the model as a key/value cache of
length n (``KVCache``), the mechanism generation uses for the tokens already seen. ∂L/∂P_K^ℓ and ∂L/∂P_V^ℓ
are the gradients that reach the cache's first n key and value rows (the backward of the concatenation
inside attention); the frozen weights get none.

Where the prefix comes from (``PrefixEncoder``, PEFT's names and layout), with E = H_kv·D the width of
one layer's keys (E = C, the hidden size, unless key/value heads are shared) and L the number of layers:

* ``prefix_projection=False``: ``embedding`` is the table itself, (n, L·2·E), trained directly.
  Trainable: n·L·2·E (MiniLM, n = 20: 20·6·2·384 = 92,160).
* ``prefix_projection=True``: ``embedding`` (n, E) → ``transform`` = Linear(E, h) → tanh →
  Linear(h, L·2·E), h = ``encoder_hidden_size`` (default E). Trainable:
  n·E + (E·h + h) + (h·L·2·E + L·2·E). Li & Liang report that updating the prefix directly makes the
  optimization unstable (and the results slightly worse); generating it through a small MLP trains more
  steadily. After training only its output, the (n, L·2·E) prefix, is needed: the MLP can be thrown away
  (PEFT's ``inference_mode`` keeps just that table).

The flat L·2·E axis is read as PEFT reads it: viewed as (n, L·2, H_kv, D) and permuted to
(L·2, H_kv, n, D), rows 2ℓ and 2ℓ+1 are layer ℓ's keys and values. (PEFT does the same with a batch axis
in front — view (B, n, L·2, H_kv, D), permute to (L·2, B, H_kv, n, D), split into (key, value) pairs; every
row of a batch has the same prefix, so minift adds the batch axis last, by broadcasting: the same arrays,
and a backward B times lighter, since each layer's slice sends back a gradient of the whole table's size.) Initialization as PEFT: the table ~ N(0, 1) (``nn.Embedding``'s), the Linear
layers U(±1/√in).

Positions: the model sees a cache of length n, so the real tokens sit at positions n … n + T − 1, as in
Hugging Face with a past of length n (learned position embeddings: n + T must fit in
``max_position_embeddings``; RoPE: the input's keys and queries are rotated by those positions). The
prefix keys are not rotated: they are learned as they are used, as in PEFT. With padding, minift counts a
token's position among the real tokens (the mask gets n ones in front), so right-padded rows get exactly
HF's positions and a left-padded row those of the same text unpadded.

How minift does it without touching the model: for the length of a call the backbone (``model.model``)
is wrapped so that it receives the prefix cache and the attention mask with n ones in front, while the
head keeps the inputs' own mask (so a sequence classifier pools over the real tokens). Outputs therefore
line up with the inputs: one logit row per input token, nothing to cut (unlike prompt tuning, whose
virtual tokens are positions of the sequence). That is also why question answering works here: the answer
positions are not shifted.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Embedding, Linear, Module, Sequential, Tanh
from ..nn.attention import KVCache
from .config import check_flags, check_module_lists
from .counting import TrainableCounts
from .prompt import PromptTuningModel


def _positive_int(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


@dataclass
class PrefixTuningConfig:
    num_virtual_tokens: int = 20
    prefix_projection: bool = False
    encoder_hidden_size: int | None = None  # the projection MLP's width h (default: E = H_kv·D, PEFT's token_dim)
    modules_to_save: list | None = None
    peft_type: str = "PREFIX_TUNING"

    def __post_init__(self):
        if not _positive_int(self.num_virtual_tokens):
            raise ValueError(f"num_virtual_tokens must be an integer >= 1, got {self.num_virtual_tokens!r}")
        check_flags(self, "prefix_projection")
        if self.encoder_hidden_size is not None:
            if not _positive_int(self.encoder_hidden_size):
                raise ValueError(f"encoder_hidden_size must be None or an integer >= 1, got {self.encoder_hidden_size!r}")
            if not self.prefix_projection:
                raise ValueError(f"encoder_hidden_size={self.encoder_hidden_size} is the width of the projection MLP, "
                                 "which only exists with prefix_projection=True: set that, or leave encoder_hidden_size None")
        check_module_lists(self, "modules_to_save", regex_allowed=False)
        if self.peft_type != "PREFIX_TUNING":
            raise ValueError(f"peft_type must be 'PREFIX_TUNING' for a PrefixTuningConfig, got {self.peft_type!r}")


class PrefixEncoder(Module):
    """Virtual-token ids (...) → the flat prefix (..., L·2·E): a table, or a table through an MLP
    (see the module docstring for the layout and the trainable counts)."""

    def __init__(self, num_virtual_tokens, num_layers, token_dim, prefix_projection=False, encoder_hidden_size=None):
        super().__init__()
        self.prefix_projection = prefix_projection
        out = num_layers * 2 * token_dim  # L·2·E
        if prefix_projection:
            hidden = encoder_hidden_size or token_dim
            self.embedding = Embedding(num_virtual_tokens, token_dim)  # (n, E)
            self.transform = Sequential(Linear(token_dim, hidden), Tanh(), Linear(hidden, out))
        else:
            self.embedding = Embedding(num_virtual_tokens, out)  # (n, L·2·E): the prefix itself

    def forward(self, prefix):
        h = self.embedding(prefix)  # (..., E) or (..., L·2·E)
        return self.transform(h) if self.prefix_projection else h  # (..., L·2·E)


class _PrefixedBackbone(Module):
    """The backbone, called with the prefix cache and n mask ones in front (used only during a call)."""

    def __init__(self, backbone, make_cache, n):
        super().__init__()
        self.backbone = backbone
        self.make_cache = make_cache
        self.n = n

    def forward(self, input_ids, attention_mask=None, **kw):
        ids = input_ids.data if isinstance(input_ids, Tensor) else xp.asarray(input_ids)
        ids = ids[None, :] if ids.ndim == 1 else ids  # (T,) -> (1, T)
        b, t = ids.shape
        if attention_mask is not None:
            mask = attention_mask.data if isinstance(attention_mask, Tensor) else xp.asarray(attention_mask)
            mask = mask[None, :] if mask.ndim == 1 else mask  # (T,) -> (1, T)
            if mask.shape != (b, t):
                raise ValueError(f"attention_mask must be (batch, seq_len) = {(b, t)} like input_ids, got "
                                 f"{tuple(mask.shape)} (the prefix's n mask ones are added by prefix tuning)")
            attention_mask = xp.concatenate([xp.ones((b, self.n), dtype=mask.dtype), mask], axis=1)  # (B, n + T)
        config = self.backbone.config
        if not config.rope:  # learned positions: the real tokens sit at n … n + (real tokens) − 1
            longest = self.n + (t if attention_mask is None else int((attention_mask[:, self.n:] != 0).sum(axis=1).max()))
            if longest > config.max_position_embeddings:
                raise ValueError(f"prefix tuning puts the input after {self.n} virtual tokens, at positions {self.n} on, "
                                 f"and this model has max_position_embeddings={config.max_position_embeddings}: inputs "
                                 f"of at most {config.max_position_embeddings - self.n} tokens, got {longest - self.n}")
        return self.backbone(ids, attention_mask=attention_mask, past_key_values=self.make_cache(b), **kw)


class PrefixTuningModel(TrainableCounts, Module):
    """A frozen minift model whose every attention layer also reads n learned keys and values
    (see the module docstring)."""

    def __init__(self, model, config: PrefixTuningConfig):
        super().__init__()
        from .model import ModulesToSaveWrapper, _set_child

        body = getattr(model, "model", model)
        if not hasattr(body, "layers") or not hasattr(body, "embed"):
            raise TypeError(f"prefix tuning needs a minift transformer (a TransformerModel, or a model whose .model "
                            f"is one), got {type(model).__name__}")
        if not isinstance(config, PrefixTuningConfig):
            raise TypeError(f"config must be a PrefixTuningConfig, got {type(config).__name__}")
        found = {}
        for name in config.modules_to_save or ():  # checked before anything changes: a bad name leaves the model as it was
            found[name] = [n for n, _ in model.named_modules() if n == name or n.endswith("." + name)]
            if not found[name]:
                raise ValueError(f"modules_to_save names {name!r}, but the model has no module of that name")
        cfg = body.config
        self.base_model = model
        self.config = config
        self.n = config.num_virtual_tokens
        self.num_layers = len(body.layers)
        self.num_kv_heads, self.head_dim = cfg.num_key_value_heads, cfg.head_dim
        model.requires_grad_(False)
        self.prefix_encoder = PrefixEncoder(self.n, self.num_layers, self.num_kv_heads * self.head_dim,
                                            config.prefix_projection, config.encoder_hidden_size)
        dtype = body.embed.tokens.weight.dtype
        self.prefix_encoder.to(dtype=dtype)  # the model's float type (float64 in gradient checks)
        for names in found.values():  # a trainable copy of each saved module (the head), as in prompt tuning
            for n in names:
                _set_child(model, n, ModulesToSaveWrapper(model.get_submodule(n), "default"))

    # what PromptTuningModel does, the same way
    get_base_model = PromptTuningModel.get_base_model

    @property
    def shifts_labels(self):
        """A causal LM scores position t against labels[t + 1]: the Trainer counts its targets accordingly."""
        return bool(getattr(self.base_model, "shifts_labels", False))

    def get_prompt(self, batch_size):
        """Every layer's prefix keys and values, [(P_K^ℓ, P_V^ℓ)] each (B, H_kv, n, D) — PEFT's name; how the
        encoder's flat output is split into them is in the module docstring."""
        n, layers, hk, d = self.n, self.num_layers, self.num_kv_heads, self.head_dim
        flat = self.prefix_encoder(xp.arange(n))  # (n, L·2·H_kv·D)
        pairs = []
        # TASK peft.prefix_kv: cut the prefix encoder's output into each layer's keys and values, PEFT's layout
        # BEGIN SOLUTION
        kv = flat.reshape(n, layers * 2, hk, d).transpose(1, 2, 0, 3)  # (n, L·2, H_kv, D) -> (L·2, H_kv, n, D)
        for layer in range(layers):  # rows 2ℓ, 2ℓ + 1: layer ℓ's keys and values (PEFT's split into pairs)
            key = kv[2 * layer].reshape(1, hk, n, d).broadcast_to((batch_size, hk, n, d))  # (B, H_kv, n, D)
            value = kv[2 * layer + 1].reshape(1, hk, n, d).broadcast_to((batch_size, hk, n, d))  # (B, H_kv, n, D)
            pairs.append((key, value))
        # END SOLUTION
        return pairs

    def prefix_cache(self, batch_size):
        """A fresh ``KVCache`` holding the prefix: length n, every layer filled."""
        cache = KVCache(self.num_layers)
        for layer, (key, value) in enumerate(self.get_prompt(batch_size)):
            cache.update(layer, key, value)
        return cache

    @contextmanager
    def _prefixed(self):
        """Inside the block ``base_model.model`` is the backbone behind the prefix (the head untouched)."""
        model = self.base_model
        if "model" not in model._modules:  # a bare TransformerModel: no head to keep the inputs' mask for
            yield _PrefixedBackbone(model, self.prefix_cache, self.n)
            return
        original = model._modules["model"]
        model._modules["model"] = _PrefixedBackbone(original, self.prefix_cache, self.n)
        try:
            yield model
        finally:
            model._modules["model"] = original

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kw):
        if kw.get("past_key_values") is not None:
            raise ValueError("prefix tuning fills past_key_values with the prefix itself; a cache of your own cannot "
                             "be passed as well")
        kw.pop("past_key_values", None)
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids  # the input's own: the prefix has no token types
        if labels is not None:  # (question answering takes start_positions / end_positions instead)
            kw["labels"] = labels
        with self._prefixed() as model:
            return model(input_ids, attention_mask=attention_mask, **kw)

    def generate(self, *args, **kwargs):
        raise NotImplementedError("generation with a prefix-tuned model is not supported in minift (the prefix would "
                                  "have to stay in front of the generation cache); use the model for scoring/training")
