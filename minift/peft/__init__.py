"""Parameter-efficient fine-tuning with Hugging Face PEFT's names (``LoraConfig``, ``IA3Config``,
``get_peft_model``, ``PeftModel``), built from minift's own layers: LoRA (and rsLoRA, DoRA, LoRA+), IA3,
prompt tuning and prefix tuning."""
from .adapters import AdapterConfig, Bottleneck, LinearWithAdapter, add_adapters
from .config import IA3Config, LoraConfig
from .prefix import PrefixEncoder, PrefixTuningConfig, PrefixTuningModel
from .prompt import PromptTuningConfig, PromptTuningModel
from .ia3 import IA3Linear
from .lora import LoraLinear, lora_scaling
from .loraplus import create_loraplus_optimizer, loraplus_param_groups
from .model import ModulesToSaveWrapper, PeftModel, get_peft_model, name_matches, targeting

__all__ = ["PrefixEncoder", "PrefixTuningConfig", "PrefixTuningModel", "PromptTuningConfig", "PromptTuningModel", "AdapterConfig", "Bottleneck", "LinearWithAdapter", "add_adapters", "IA3Config", "IA3Linear", "LoraConfig", "LoraLinear", "ModulesToSaveWrapper", "PeftModel", "create_loraplus_optimizer",
           "get_peft_model", "lora_scaling", "loraplus_param_groups", "name_matches", "targeting"]
