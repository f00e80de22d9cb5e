"""``TransformerConfig``: one config, three families.

| family | norm        | placement | positions          | MLP          | attention     | bias | tied head |
|--------|-------------|-----------|--------------------|--------------|---------------|------|-----------|
| bert   | LayerNorm   | post-LN   | learned + types    | GELU (erf)   | bidirectional | yes  | (MLM) yes |
| gpt2   | LayerNorm   | pre-LN    | learned            | GELU (tanh)  | causal        | yes  | yes       |
| llama  | RMSNorm     | pre-norm  | RoPE               | SwiGLU       | causal, GQA   | no   | per config|

Field names are Hugging Face's (``hidden_size``, ``num_attention_heads``, ``num_key_value_heads``, …) so a
``config.json`` reads the way it does there.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from difflib import get_close_matches
from pathlib import Path

FAMILIES = ("bert", "gpt2", "llama")


@dataclass
class TransformerConfig:
    family: str = "gpt2"
    vocab_size: int = 1024
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None  # None: as many as query heads (no GQA)
    intermediate_size: int | None = None  # None: 4 × hidden (bert, gpt2) or 8/3 × hidden rounded (llama)
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # bert only
    layer_norm_eps: float | None = None  # None: 1e-12 (bert), 1e-5 (gpt2), 1e-6 (llama, RMS)
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    num_labels: int = 2  # task heads (classification); HF keeps it in the config too
    id2label: dict | None = None  # {class index: name}, e.g. {0: "negative", 1: "positive"}
    classifier_pooling: str | None = None  # sequence classification: None (HF's: pooler / last token) or "mean"

    def __post_init__(self):
        self._check_types()
        if self.classifier_pooling not in (None, "pooler", "last", "mean"):
            raise ValueError(f"classifier_pooling must be None, 'pooler', 'last' or 'mean', got {self.classifier_pooling!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.intermediate_size is None:
            if self.family == "llama":  # 8/3 × hidden rounded up to a multiple of 64: SwiGLU has 3 matrices
                self.intermediate_size = 64 * ((8 * self.hidden_size // 3 + 63) // 64)
            else:
                self.intermediate_size = 4 * self.hidden_size
        if self.layer_norm_eps is None:
            self.layer_norm_eps = {"bert": 1e-12, "gpt2": 1e-5, "llama": 1e-6}[self.family]
        if self.family == "llama" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {self.head_dim}")

    def _check_types(self):
        """Each number is of its kind: a hand-edited config.json with ``"hidden_size": "128"`` is named here,
        not in an arithmetic error deep inside the model."""
        def whole(name, value, low, optional=False):
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}{' or null' if optional else ''}, got {value!r}")

        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "num_labels"):
            whole(name, getattr(self, name), 1)
        whole("type_vocab_size", self.type_vocab_size, 0)
        for name in ("num_key_value_heads", "intermediate_size"):
            whole(name, getattr(self, name), 1, optional=True)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        for name in ("layer_norm_eps", "rope_theta", "initializer_range"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")

    # what the family implies
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def causal(self) -> bool:
        return self.family != "bert"

    @property
    def pre_norm(self) -> bool:
        return self.family != "bert"

    @property
    def rms_norm(self) -> bool:
        return self.family == "llama"

    @property
    def rope(self) -> bool:
        return self.family == "llama"

    @property
    def swiglu(self) -> bool:
        return self.family == "llama"

    @property
    def bias(self) -> bool:
        return self.family != "llama"

    @property
    def gelu_approximate(self) -> str:
        return "tanh" if self.family == "gpt2" else "none"

    # files
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, file=None) -> "TransformerConfig":
        """The config a ``config.json`` dict describes; with ``file``, every error names it."""
        try:
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(d) - known - {"format", "architecture"})
            if unknown:
                hints = [f"{u!r} (did you mean {close[0]!r}?)" if (close := get_close_matches(u, known, 1)) else repr(u)
                         for u in unknown]
                raise ValueError(f"unknown TransformerConfig fields {', '.join(hints)}; known fields are {sorted(known)}")
            values = {k: v for k, v in d.items() if k in known}
            if values.get("id2label"):  # JSON keys are strings; class indices are ints
                values["id2label"] = {int(k): v for k, v in values["id2label"].items()}
            return cls(**values)
        except (ValueError, TypeError) as e:
            if file is None:
                raise
            raise ValueError(f"{file}: {e}") from None

    def save(self, path) -> None:
        from .checkpoint import write_text_atomically  # whole or not at all, like every file minift saves

        write_text_atomically(path, json.dumps({"format": "minift", **self.to_dict()}, indent=1))

    @classmethod
    def load(cls, path) -> "TransformerConfig":
        return cls.from_dict(json.loads(Path(path).read_text()), file=path)
