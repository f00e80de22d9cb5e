"""Parameter-efficient fine-tuning: LoRA adapters with Hugging Face PEFT's names (``LoraConfig``,
``get_peft_model``, ``PeftModel``), built from minift's own layers."""
from .config import LoraConfig
from .lora import LoraLinear, lora_scaling
from .loraplus import create_loraplus_optimizer, loraplus_param_groups
from .model import ModulesToSaveWrapper, PeftModel, get_peft_model, name_matches, targeting

__all__ = ["LoraConfig", "LoraLinear", "ModulesToSaveWrapper", "PeftModel", "create_loraplus_optimizer",
           "get_peft_model", "lora_scaling", "loraplus_param_groups", "name_matches", "targeting"]
