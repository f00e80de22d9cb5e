"""``LoraConfig``: what to adapt and how, with Hugging Face PEFT's option names and defaults.

    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                     modules_to_save=["classifier"])

``target_modules`` names minift's modules (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``up_proj``,
``gate_proj``, ``down_proj``), matched as PEFT matches: a string is a regular expression that must match a
module's whole dotted name (``re.fullmatch``); a list matches a module whose name equals an entry or ends
with ``"." + entry``. The same rules for ``exclude_modules``. ``layers_to_transform`` keeps only the
modules of those layer indices (the number in ``layers.<i>.``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

BIAS_MODES = ("none", "all", "lora_only")
TASK_TYPES = ("SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "CAUSAL_LM", "FEATURE_EXTRACTION", None)


def check_flags(options, *names):
    """Each named option must be a real bool (``use_rslora="no"`` would otherwise count as True)."""
    for name in names:
        if not isinstance(getattr(options, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(options, name)!r}")


def check_module_lists(options, *names, regex_allowed=True):
    """Each named option: None, a list of module names (a set or tuple becomes a sorted list), or — where
    ``regex_allowed`` — one regular expression as a str."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, (set, tuple)):
            value = sorted(value)
            setattr(options, name, value)
        if value is None or (regex_allowed and isinstance(value, str)):
            continue
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            kind = "a regular expression (str) or a list of module names" if regex_allowed else "a list of module names"
            raise ValueError(f"{name} must be {kind}, got {value!r}")


@dataclass
class LoraConfig:
    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list | str | None = None  # None: ["q_proj", "v_proj"], PEFT's default for attention models
    exclude_modules: list | str | None = None
    layers_to_transform: list | int | None = None
    layers_pattern: str | None = None
    bias: str = "none"  # which biases train too: "none", "all" (every bias of the model), "lora_only"
    modules_to_save: list | None = None  # whole modules trained (and saved) besides the adapters, e.g. a head
    init_lora_weights: bool | str = True  # True: A kaiming-uniform, B = 0; "gaussian": A ~ N(0, 1/r²); False: B random too
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    inference_mode: bool = False
    peft_type: str = field(default="LORA", init=False)

    def __post_init__(self):
        """Every option checked now, with a message that says what was expected."""
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"r (the LoRA rank) must be a positive integer, got {self.r!r}")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)) or not (
                math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be a positive number, got {self.lora_alpha!r}")
        if isinstance(self.lora_dropout, bool) or not isinstance(self.lora_dropout, (int, float)) or not (
                0 <= self.lora_dropout < 1):
            raise ValueError(f"lora_dropout must be a probability in [0, 1), got {self.lora_dropout!r}")
        if self.bias not in BIAS_MODES:
            raise ValueError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}")
        check_flags(self, "use_rslora", "use_dora", "fan_in_fan_out", "inference_mode")
        if not (isinstance(self.init_lora_weights, bool) or self.init_lora_weights == "gaussian"):
            raise ValueError(f"init_lora_weights must be True, False or 'gaussian', got {self.init_lora_weights!r}")
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        check_module_lists(self, "target_modules", "exclude_modules")
        if self.target_modules is None:
            self.target_modules = ["q_proj", "v_proj"]
        if isinstance(self.layers_to_transform, int) and not isinstance(self.layers_to_transform, bool):
            self.layers_to_transform = [self.layers_to_transform]
        if self.layers_to_transform is not None and not (
                isinstance(self.layers_to_transform, list) and all(isinstance(i, int) for i in self.layers_to_transform)):
            raise ValueError(f"layers_to_transform must be a layer index or a list of them, got {self.layers_to_transform!r}")
        check_module_lists(self, "modules_to_save", regex_allowed=False)
        if self.fan_in_fan_out:
            raise NotImplementedError("fan_in_fan_out=True is for GPT-2's Conv1D layers; minift's Linear "
                                      "weights are always (out, in), so leave it False")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, file="adapter_config.json"):
        """A config from PEFT's ``adapter_config.json`` contents; options PEFT has and minift not are refused
        when they change the adapter (so it is never loaded wrong) and ignored when they do not."""
        d = dict(d)
        if d.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{file}: peft_type {d.get('peft_type')!r}: minift reads LORA adapters")
        d.pop("peft_type", None)
        known = {f.name for f in fields(cls) if f.init}
        changes_adapter = {"rank_pattern": {}, "alpha_pattern": {}, "use_qalora": False, "lora_bias": False,
                           "target_parameters": None, "trainable_token_indices": None, "layer_replication": None}
        for key, neutral in changes_adapter.items():
            if d.get(key, neutral) not in (neutral, None, {}, []):
                raise ValueError(f"{file}: option {key}={d[key]!r} is not supported by minift's LoRA")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (ValueError, TypeError) as e:  # a value of the wrong kind: say which file holds it
            raise ValueError(f"{file}: {e}") from None

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)


@dataclass
class IA3Config:
    """IA3's options, PEFT's names: the layers that get a vector, and which of them scale their input."""
    target_modules: list | str | None = None  # None: ["k_proj", "v_proj", "down_proj"] (PEFT's llama default;
    # for bert PEFT's default, "output.dense", also matches the attention output: set it yourself to reproduce that)
    feedforward_modules: list | str | None = None  # None: ["down_proj"]
    exclude_modules: list | str | None = None
    modules_to_save: list | None = None
    init_ia3_weights: bool = True
    fan_in_fan_out: bool = False
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    inference_mode: bool = False
    peft_type: str = field(default="IA3", init=False)
    layers_to_transform = None  # (not an IA3 option: read by the shared targeting code)
    layers_pattern = None

    def __post_init__(self):
        if self.target_modules is None:
            self.target_modules = ["k_proj", "v_proj", "down_proj"]
        if self.feedforward_modules is None:
            self.feedforward_modules = ["down_proj"]
        check_module_lists(self, "target_modules", "feedforward_modules", "exclude_modules")
        if isinstance(self.feedforward_modules, list) and isinstance(self.target_modules, list):
            missing = [f for f in self.feedforward_modules if f not in self.target_modules]
            if missing:
                raise ValueError(f"feedforward_modules {missing} are not in target_modules {self.target_modules}: "
                                 "a feed-forward layer must be a target too")
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        check_flags(self, "init_ia3_weights", "fan_in_fan_out", "inference_mode")
        check_module_lists(self, "modules_to_save", regex_allowed=False)
        if self.fan_in_fan_out:
            raise NotImplementedError("fan_in_fan_out=True is for GPT-2's Conv1D layers; leave it False in minift")

    def to_dict(self) -> dict:
        return asdict(self)
