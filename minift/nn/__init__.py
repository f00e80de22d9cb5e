"""Layers and models: ``Module``, ``Parameter``, the basic layers and the containers."""
from .containers import ModuleDict, ModuleList, Sequential
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, RMSNorm, SiLU, Tanh
from .module import Module, Parameter
from .quantized import QuantizedLinear

__all__ = [
    "GELU", "Dropout", "Embedding", "LayerNorm", "Linear", "Module", "ModuleDict", "ModuleList", "Parameter",
    "QuantizedLinear", "RMSNorm", "ReLU", "Sequential", "SiLU", "Tanh",
]
