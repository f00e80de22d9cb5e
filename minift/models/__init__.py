"""Transformers (bert / gpt2 / llama families), task heads, generation and loaders."""
from .checkpoint import CheckpointError, save_pretrained
from .config import TransformerConfig
from .generation import generate
from .loaders import from_pretrained, load_bert, load_gguf
from .transformer import ModelOutput, TransformerForCausalLM, TransformerForMaskedLM, TransformerModel

__all__ = [
    "CheckpointError", "ModelOutput", "TransformerConfig", "TransformerForCausalLM", "TransformerForMaskedLM",
    "TransformerModel", "from_pretrained", "generate", "load_bert", "load_gguf", "save_pretrained",
]
