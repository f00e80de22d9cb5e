"""Parameter-efficient fine-tuning: LoRA adapters with Hugging Face PEFT's names (``LoraConfig``,
``get_peft_model``, ``PeftModel``), built from minift's own layers."""
from .config import LoraConfig
from .lora import LoraLinear, lora_scaling
from .model import ModulesToSaveWrapper, PeftModel, get_peft_model, name_matches, targeting

__all__ = ["LoraConfig", "LoraLinear", "ModulesToSaveWrapper", "PeftModel", "get_peft_model", "lora_scaling",
           "name_matches", "targeting"]
