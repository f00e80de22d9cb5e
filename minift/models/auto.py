"""``AutoModelFor…`` classes: a pretrained backbone with a fresh task head, as in Hugging Face.

    model = AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)

``from_pretrained`` takes what ``minift.models.from_pretrained`` takes — "minilm", "smollm2", a minift
checkpoint directory or a Hugging Face BERT directory — keeps the backbone (dropping an LM head if there
was one) and puts the task head on top, initialized N(0, 0.02²) as in HF. A directory saved from a model
that already has this head (``save_pretrained(model, dir)``) loads with its trained head.

The model comes back in train mode, ready to fine-tune (``from_pretrained`` alone returns eval mode).
"""
from __future__ import annotations

from pathlib import Path

from .heads import (
    TransformerForQuestionAnswering, TransformerForSequenceClassification, TransformerForTokenClassification,
)
from .transformer import TransformerForCausalLM, TransformerForMaskedLM, TransformerModel


def load_backbone(name_or_path, keep_quantized=False) -> TransformerModel:
    """The ``TransformerModel`` inside whatever ``from_pretrained(name_or_path)`` returns."""
    from .loaders import from_pretrained

    model = from_pretrained(name_or_path, keep_quantized=keep_quantized)
    return model if isinstance(model, TransformerModel) else model.model


def _saved_head(name_or_path, architecture):
    """(config dict) when ``name_or_path`` is a checkpoint (minift's or Hugging Face's) of ``architecture``."""
    from . import hf

    path = Path(str(name_or_path))
    if not (path / "config.json").is_file():
        return None
    config = hf.read_json(path / "config.json")
    saved = config.get("architecture") or (hf.minift_class_of(config) if hf.is_hf_config(config) else None)
    return config if saved == architecture else None


class _AutoHead:
    head_class = None

    @classmethod
    def from_pretrained(cls, name_or_path, keep_quantized=False, **head_options):
        """``keep_quantized``: a GGUF model's layer weights stay in their 4/8-bit blocks (the QLoRA base)."""
        from .loaders import from_pretrained

        if _saved_head(name_or_path, cls.head_class.__name__) is not None:
            return from_pretrained(name_or_path, keep_quantized=keep_quantized).train()
        backbone = load_backbone(name_or_path, keep_quantized)
        return cls.head_class(backbone.config, backbone=backbone, **head_options).train()

    @classmethod
    def from_config(cls, config, **head_options):
        """A randomly initialized backbone and head (for tests and from-scratch training)."""
        return cls.head_class(config, **head_options)


class AutoModelForSequenceClassification(_AutoHead):
    """``from_pretrained(name, num_labels=2)``: pooler (bert) or last real token (decoders) → classifier."""

    head_class = TransformerForSequenceClassification


class AutoModelForTokenClassification(_AutoHead):
    """``from_pretrained(name, num_labels=…)``: a label per token (NER)."""

    head_class = TransformerForTokenClassification


class AutoModelForQuestionAnswering(_AutoHead):
    """``from_pretrained(name)``: start and end logits per token (extractive QA)."""

    head_class = TransformerForQuestionAnswering


def _load_language_model(name_or_path, model_class, what, keep_quantized=False):
    from .loaders import from_pretrained

    model = from_pretrained(name_or_path, keep_quantized=keep_quantized)
    if not isinstance(model, model_class):
        raise TypeError(f"{name_or_path!r} holds a {type(model).__name__}, not {what}")
    return model.train()


class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(name_or_path, keep_quantized=False):
        return _load_language_model(name_or_path, TransformerForCausalLM,
                                    "a causal language model (gpt2 or llama family with an LM head)", keep_quantized)


class AutoModelForMaskedLM:
    @staticmethod
    def from_pretrained(name_or_path):
        return _load_language_model(name_or_path, TransformerForMaskedLM,
                                    "a masked language model (bert family with an MLM head); MiniLM ships without one")
