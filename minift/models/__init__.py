"""Transformers (bert / gpt2 / llama families), task heads, generation and loaders."""
from .auto import (
    AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from .checkpoint import CheckpointError, save_pretrained
from .config import TransformerConfig
from .generation import generate
from .heads import (
    QuestionAnsweringOutput, TransformerForQuestionAnswering, TransformerForSequenceClassification,
    TransformerForTokenClassification,
)
from .loaders import from_pretrained, load_bert, load_gguf
from .quant import dequantize_model, quantize_model
from .transformer import ModelOutput, TransformerForCausalLM, TransformerForMaskedLM, TransformerModel

__all__ = [
    "AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification", "AutoModelForTokenClassification", "CheckpointError", "ModelOutput",
    "QuestionAnsweringOutput", "TransformerConfig", "TransformerForCausalLM", "TransformerForMaskedLM",
    "TransformerForQuestionAnswering", "TransformerForSequenceClassification", "TransformerForTokenClassification",
    "TransformerModel", "dequantize_model", "from_pretrained", "generate", "load_bert", "load_gguf", "quantize_model",
    "save_pretrained",
]
