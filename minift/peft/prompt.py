"""Prompt tuning (Lester et al., 2021): learn n "virtual token" embeddings put in front of every input.

The model stays frozen; the input embeddings become [P; E(x)] with P (n, C) trained:

    h₀ = [p₁, …, p_n, e(x₁), …, e(x_T)]        (then positions, token types, the layers as usual)

and the attention mask gets n ones in front, so every real token can attend to the prompt. ∂L/∂P is the
gradient that reaches the first n rows of the embedding output (the concatenation's backward). n·C numbers
train (20 × 384 = 7,680 for MiniLM), plus a new head if there is one.

How minift does it without touching the model: the wrapper prepends n placeholder ids (and n mask ones,
n zero token types, n labels −100 for per-token labels), and for the length of the call swaps the token
embedding for one that writes P over the placeholders' rows. Positions then count the virtual tokens too,
as in PEFT (the real tokens sit at positions n … n + T − 1). Per-token outputs (token classification,
causal LM logits) come back without the n virtual positions, so they line up with the inputs (PEFT returns
them with). Initialization: "RANDOM" draws N(0, 1) like PEFT's ``nn.Embedding``; "SAMPLE_VOCAB" copies the
embeddings of random vocabulary tokens; "TEXT" copies those of ``prompt_tuning_init_text``'s tokens,
repeated to n.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np  # host-side only: building the placeholder ids and the initial prompt on the CPU

from .. import functional as F
from ..autograd.grad_mode import no_grad
from ..backend import asarray, rng, to_numpy, xp
from ..nn import Module
from ..nn.module import Parameter
from .counting import TrainableCounts

INITS = ("RANDOM", "SAMPLE_VOCAB", "TEXT")


@dataclass
class PromptTuningConfig:
    num_virtual_tokens: int = 20
    prompt_tuning_init: str = "RANDOM"
    prompt_tuning_init_text: str | None = None
    tokenizer: object = None  # a minift Tokenizer (for "TEXT")
    modules_to_save: list | None = None
    peft_type: str = "PROMPT_TUNING"

    def __post_init__(self):
        if isinstance(self.num_virtual_tokens, bool) or not isinstance(self.num_virtual_tokens, int) or self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be an integer >= 1, got {self.num_virtual_tokens!r}")
        if self.prompt_tuning_init not in INITS:
            raise ValueError(f"prompt_tuning_init must be one of {INITS}, got {self.prompt_tuning_init!r}")
        if self.prompt_tuning_init == "TEXT" and (not self.prompt_tuning_init_text or self.tokenizer is None):
            raise ValueError("prompt_tuning_init='TEXT' needs prompt_tuning_init_text and a tokenizer")


class PromptEmbedding(Module):
    """The token embedding with the prompt written over the first n rows of its output."""

    def __init__(self, tokens, prompt):
        super().__init__()
        self.tokens, self.prompt = tokens, prompt

    def forward(self, ids):
        h = self.tokens(ids)  # (B, n + T, C): the first n rows are placeholders
        n, c = self.prompt.shape
        virtual = self.prompt.reshape(1, n, c).broadcast_to((h.shape[0], n, c))  # (n, C) -> (B, n, C)
        return F.concatenate([virtual, h[:, n:]], axis=1)  # (B, n + T, C)


class PromptTuningModel(TrainableCounts, Module):
    """A frozen model that reads n learned virtual tokens before each input (see the module docstring)."""

    def __init__(self, model, config: PromptTuningConfig):
        super().__init__()
        from .model import ModulesToSaveWrapper, _set_child

        body = getattr(model, "model", model)
        if not hasattr(body, "embed") or not hasattr(body.embed, "tokens"):
            raise TypeError(f"prompt tuning needs a minift transformer (a .model.embed.tokens), got {type(model).__name__}")
        if type(model).__name__ == "TransformerForQuestionAnswering":
            raise NotImplementedError("prompt tuning of a question-answering head is not supported (the answer "
                                      "positions would shift by the virtual tokens)")
        self.base_model = model
        self.config = config
        model.requires_grad_(False)
        tokens = body.embed.tokens
        self.prompt_embeddings = Parameter(self._initial_prompt(tokens, config))
        self.n = config.num_virtual_tokens
        for name in config.modules_to_save or ():
            found = [n for n, _ in model.named_modules() if n == name or n.endswith("." + name)]
            if not found:
                raise ValueError(f"modules_to_save names {name!r}, but the model has no module of that name")
            for n in found:
                _set_child(model, n, ModulesToSaveWrapper(model.get_submodule(n), "default"))

    @staticmethod
    def _initial_prompt(tokens, config):
        n, (vocab, c) = config.num_virtual_tokens, tokens.weight.shape
        table = to_numpy(tokens.weight.data)
        if config.prompt_tuning_init == "RANDOM":
            values = to_numpy(rng().standard_normal((n, c)))
        elif config.prompt_tuning_init == "SAMPLE_VOCAB":
            values = table[to_numpy(rng().integers(0, vocab, n))]
        else:
            ids = list(config.tokenizer([config.prompt_tuning_init_text], add_special_tokens=False)["input_ids"][0])
            ids = (ids * (n // max(1, len(ids)) + 1))[:n]  # repeated, then cut to n (as PEFT)
            values = table[np.asarray(ids)]
        return asarray(np.asarray(values, dtype=table.dtype))

    def get_base_model(self):
        return self.base_model

    @contextmanager
    def _prompted(self):
        embed = getattr(self.base_model, "model", self.base_model).embed
        original = embed._modules["tokens"]
        embed._modules["tokens"] = PromptEmbedding(original, self.prompt_embeddings)
        try:
            yield
        finally:
            embed._modules["tokens"] = original

    @property
    def shifts_labels(self):
        """False even for a causal LM: the n virtual tokens come first with labels −100, so the first real
        label *is* a target (the last virtual token predicts it). The Trainer counts every label ≠ −100."""
        return False

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kw):
        ids = xp.asarray(input_ids)
        ids = ids[None, :] if ids.ndim == 1 else ids
        b, n = ids.shape[0], self.n
        ids = xp.concatenate([xp.zeros((b, n), dtype=ids.dtype), ids], axis=1)  # placeholders: overwritten by P
        mask = xp.ones(ids.shape, dtype=xp.int64) if attention_mask is None else xp.concatenate(
            [xp.ones((b, n), dtype=xp.asarray(attention_mask).dtype), xp.asarray(attention_mask)], axis=1)
        if token_type_ids is not None:
            token_type_ids = xp.concatenate([xp.zeros((b, n), dtype=xp.asarray(token_type_ids).dtype),
                                             xp.asarray(token_type_ids)], axis=1)
        if labels is not None and xp.asarray(labels).ndim == 2:  # per-token labels: none on the virtual tokens
            labels = xp.asarray(labels)
            labels = xp.concatenate([xp.full((b, n), -100, dtype=labels.dtype), labels], axis=1)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        with self._prompted():
            out = self.base_model(ids, attention_mask=mask, labels=labels, **extra, **kw)
        if out.logits is not None and out.logits.ndim == 3:  # per-token outputs line up with the inputs again
            out.logits = out.logits[:, n:]
        return out

    @no_grad()
    def nearest_tokens(self, tokenizer, k=1):
        """For each virtual token, the ``k`` vocabulary tokens whose embeddings are closest (cosine): what the
        learned prompt 'says', if anything."""
        table = to_numpy(getattr(self.base_model, "model", self.base_model).embed.tokens.weight.data)
        prompt = to_numpy(self.prompt_embeddings.data)
        cos = (prompt / np.linalg.norm(prompt, axis=1, keepdims=True)) @ (
            table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)).T  # (n, V)
        best = np.argsort(-cos, axis=1)[:, :k]
        return [[tokenizer.decode([int(i)]) for i in row] for row in best]
