"""LoRA adapters in Hugging Face PEFT's files, both ways.

A saved adapter is a directory with
- ``adapter_config.json``: PEFT's LoraConfig as JSON (``peft_type: "LORA"``, ``r``, ``lora_alpha``,
  ``target_modules``, ``modules_to_save``, …). minift writes ``target_modules`` as the full Hugging Face
  names of the adapted modules, which PEFT matches exactly, so the file says precisely where the adapter goes;
- ``adapter_model.safetensors``: ``base_model.model.<HF module>.lora_A.weight`` (r, in) and ``.lora_B.weight``
  (out, r) per adapted module (and DoRA's ``.lora_magnitude_vector`` (out,)), ``base_model.model.<HF module>.weight`` (and ``.bias``) for each saved module
  (a head), the trained biases under ``bias="lora_only"`` / ``"all"``; header metadata ``{"format": "pt"}``.

Module names are Hugging Face's for the family (``models/names.py``): minift's ``model.layers.0.attn.q_proj``
is ``bert.encoder.layer.0.attention.self.query`` in a BertForSequenceClassification and
``model.layers.0.self_attn.q_proj`` in a LlamaForCausalLM. So HF PEFT loads a minift adapter onto the HF model
with the same weights, and minift loads PEFT's. GPT-2 keeps q, k and v in one ``c_attn`` matrix, which
minift's separate q/k/v adapters cannot be written as: saving one is a clear error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np  # host-side only: tensors on their way to and from the file

from .. import backend
from ..models import hf as hf_names
from ..models.checkpoint import CheckpointError, atomic_files, read_json, read_safetensors, tidy_leftovers
from ..nn import Linear
from .config import IA3Config, LoraConfig
from .ia3 import IA3Linear
from .lora import LoraLinear
from .model import ADAPTER_LAYERS, ModulesToSaveWrapper, PeftModel, _layer_index

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
_TASK = {"TransformerForSequenceClassification": "SEQ_CLS", "TransformerForTokenClassification": "TOKEN_CLS",
         "TransformerForQuestionAnswering": "QUESTION_ANS", "TransformerForCausalLM": "CAUSAL_LM",
         "TransformerModel": "FEATURE_EXTRACTION"}


def hf_module_names(model) -> dict:
    """{minift module name: Hugging Face module name} for every module that holds a weight (bert, llama)."""
    family = model.config.family
    if family == "gpt2":
        raise ValueError("GPT-2 keeps q, k and v in one c_attn matrix in Hugging Face, so an adapter on minift's "
                         "separate projections has no PEFT equivalent; adapters of bert and llama models can be "
                         "saved in PEFT's format")
    architecture = hf_names.hf_architecture(model)
    prefix = hf_names._prefix(architecture, family)
    inner = "" if type(model).__name__ == "TransformerModel" else "model."
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (*ADAPTER_LAYERS, ModulesToSaveWrapper)) or re.search(r"(^|\.)(lora_|ia3_l)", name):
            continue
        clean = re.sub(r"\.(base_layer|original_module|modules_to_save\.[^.]+)(?=\.|$)", "", name)
        if clean in out or "weight" not in module._parameters and "qweight" not in module._buffers:  # (4-bit: blocks)
            continue
        if inner and clean.startswith(inner) or not inner:
            stem = clean[len(inner):]
            hf = prefix + hf_names.backbone_name_to(family, stem + ".weight")[: -len(".weight")]
        else:
            hf = hf_names._head_name(clean + ".weight", architecture)[: -len(".weight")]
        out[clean] = hf
    return out


def _inner_model(pm):
    return pm.base_model


# ----------------------------------------------------------------------------- saving
def save_adapter(pm: PeftModel, directory, adapter_name=None):
    """Write the adapter ``adapter_name`` (the active one by default) of ``pm`` into ``directory`` (PEFT's files)."""
    adapter_name = adapter_name or pm.active_adapter
    config = pm.peft_config[adapter_name]
    model = _inner_model(pm)
    names = hf_module_names(model)
    tensors, targets, saved_modules, feedforward = {}, [], [], []
    for name, module in model.named_modules():
        if isinstance(module, IA3Linear) and adapter_name in module.adapters():
            hf = names[name]
            targets.append(hf)
            if module.is_feedforward:
                feedforward.append(hf)
            tensors[f"{PREFIX}{hf}.ia3_l"] = getattr(module.ia3_l, adapter_name).data  # PEFT: no ".weight"
        elif isinstance(module, LoraLinear) and adapter_name in module.lora_A:
            hf = names[name]
            targets.append(hf)
            tensors[f"{PREFIX}{hf}.lora_A.weight"] = module.lora_A[adapter_name].weight.data
            tensors[f"{PREFIX}{hf}.lora_B.weight"] = module.lora_B[adapter_name].weight.data
            if adapter_name in module.lora_magnitude_vector:  # DoRA's m: no ".weight" in PEFT's key
                tensors[f"{PREFIX}{hf}.lora_magnitude_vector"] = module.lora_magnitude_vector[adapter_name].weight.data
            if config.bias == "lora_only" and module.base_layer.bias is not None:
                tensors[f"{PREFIX}{hf}.base_layer.bias"] = module.base_layer.bias.data
        elif isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            hf = names[name]
            saved_modules.append(hf)
            for leaf, p in module.modules_to_save[adapter_name].named_parameters():
                tensors[f"{PREFIX}{hf}.{leaf}"] = p.data
    if isinstance(config, IA3Config):
        written = {
            "peft_type": "IA3", "task_type": config.task_type or _TASK.get(type(model).__name__),
            "target_modules": sorted(targets), "feedforward_modules": sorted(feedforward), "exclude_modules": None,
            "modules_to_save": sorted(set(saved_modules)) or None, "init_ia3_weights": config.init_ia3_weights,
            "fan_in_fan_out": False, "inference_mode": True, "base_model_name_or_path": config.base_model_name_or_path,
            "revision": None,
        }
        return _write(directory, tensors, written)
    if config.bias == "all":  # every bias of the model trained: Linear and norm layers alike (PEFT saves them all)
        for name, module in model.named_modules():
            bias = module._parameters.get("bias")
            if bias is None or isinstance(module, ADAPTER_LAYERS) or re.search(
                    r"(^|\.)(lora_[AB]|lora_magnitude_vector|original_module|modules_to_save)(\.|$)", name):
                continue
            clean = re.sub(r"\.base_layer$", "", name)
            suffix = ".base_layer.bias" if name.endswith(".base_layer") else ".bias"
            tensors.setdefault(f"{PREFIX}{names[clean]}{suffix}", bias.data)
    written = {
        "peft_type": "LORA", "task_type": config.task_type or _TASK.get(type(model).__name__),
        "r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
        "target_modules": sorted(targets), "exclude_modules": None, "layers_to_transform": None,
        "layers_pattern": None, "modules_to_save": sorted(set(saved_modules)) or None, "bias": config.bias,
        "init_lora_weights": config.init_lora_weights, "use_rslora": config.use_rslora, "use_dora": config.use_dora,
        "fan_in_fan_out": False, "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
        "base_model_name_or_path": config.base_model_name_or_path, "revision": None,
    }
    return _write(directory, tensors, written)


def _write(directory, tensors, config: dict):
    """The two files, written atomically (a crash leaves the previous ones); other files are left alone."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    tidy_leftovers(directory)
    with atomic_files(directory) as staging:
        save_file({k: np.ascontiguousarray(backend.to_numpy(v)) for k, v in tensors.items()},
                  str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


# ----------------------------------------------------------------------------- loading
def _peft_targets(hf_name, config: dict):
    """Whether PEFT would put an adapter on module ``hf_name`` under ``config`` (its rules, its order)."""
    exclude = config.get("exclude_modules")
    if exclude is not None:
        if isinstance(exclude, str) and re.fullmatch(exclude, hf_name):
            return False
        if not isinstance(exclude, str) and (hf_name in exclude or any(hf_name.endswith("." + e) for e in exclude)):
            return False
    if any(re.match(rf"(^|.*\.){m}($|\..*)", hf_name) for m in config.get("modules_to_save") or ()):
        return False
    targets = config.get("target_modules")
    if isinstance(targets, str):
        return re.fullmatch(targets, hf_name) is not None
    targets = list(targets or ())
    if hf_name in targets:
        return True  # an exact full name: no layer filter
    if not any(hf_name.endswith("." + t) for t in targets):
        return False
    layers = config.get("layers_to_transform")
    if layers is None or layers == []:
        return True
    layers = [layers] if isinstance(layers, int) else layers
    patterns = config.get("layers_pattern")
    patterns = [patterns] if isinstance(patterns, str) else (patterns or [None])
    for p in patterns:
        index = _layer_index(hf_name, p)
        if index is not None:
            return index in layers
    return False


def load_adapter(model, directory, adapter_name="default", is_trainable=False) -> PeftModel:
    """``model`` with the LoRA adapter in ``directory`` (PEFT's files, written by PEFT or by minift)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: a PEFT adapter directory holds {CONFIG_FILE} and "
                                    f"{WEIGHTS_FILE} (adapter_model.bin is a pickle and is never read)")
    raw = read_json(config_path)
    if raw.get("peft_type") not in ("LORA", "IA3"):
        raise CheckpointError(f"{config_path}: peft_type is {raw.get('peft_type')!r}; minift reads LoRA and IA3 "
                              "adapters (peft_type 'LORA' or 'IA3')")
    if raw.get("fan_in_fan_out"):
        raise CheckpointError(f"{config_path}: fan_in_fan_out is true (GPT-2's Conv1D layers), which minift's "
                              "separate q/k/v projections cannot take")
    if model.config.family == "gpt2":  # before hf_module_names' general refusal: say which adapter met which model
        made_for = f" (made for {raw['base_model_name_or_path']})" if raw.get("base_model_name_or_path") else ""
        raise CheckpointError(f"{config_path}: this adapter{made_for}, on {raw.get('target_modules')!r}, cannot go "
                              "onto the gpt2 model given: PEFT adapters load onto bert and llama models (GPT-2's "
                              "q, k, v are one c_attn matrix in Hugging Face, minift's are three)")
    names = hf_module_names(model)  # minift → HF
    linear = {names[n]: n for n, m in model.named_modules() if isinstance(m, Linear) and n in names}
    chosen = [minift for hf, minift in linear.items() if _peft_targets(hf, raw)]
    if not chosen:
        raise CheckpointError(f"{config_path}: target_modules {raw.get('target_modules')!r} match no Linear layer of "
                              f"this {hf_names.hf_architecture(model)} (its layers: {sorted(linear)[:6]} …): "
                              "the adapter was made for a different model")
    hf_to_minift = {hf: n for n, hf in names.items()}
    # PEFT's rule for modules_to_save: a module whose name ends with the entry (for SEQ_CLS its files list
    # both "classifier" and "score", whichever the model has)
    saved = {hf_to_minift[hf] for entry in raw.get("modules_to_save") or () for hf in hf_to_minift if hf.endswith(entry)}
    if raw["peft_type"] == "IA3":
        ff = raw.get("feedforward_modules") or []
        feedforward = [linear[hf] for hf in linear if linear[hf] in chosen and (
            re.fullmatch(ff, hf) if isinstance(ff, str) else any(hf.endswith(f) for f in ff))]
        config = IA3Config(target_modules=chosen, feedforward_modules=feedforward,
                           modules_to_save=sorted(set(saved)) or None, init_ia3_weights=raw.get("init_ia3_weights", True),
                           task_type=raw.get("task_type"), inference_mode=not is_trainable)
    else:
        ours = {k: v for k, v in raw.items() if k not in ("target_modules", "modules_to_save", "exclude_modules",
                                                           "layers_to_transform", "layers_pattern")}
        config = LoraConfig.from_dict({**ours, "target_modules": chosen, "modules_to_save": sorted(set(saved)) or None,
                                       "inference_mode": not is_trainable}, file=config_path)
    tensors = read_safetensors(weights_path)
    flags = {id(p): p.requires_grad for p in model.parameters()}
    pm = PeftModel(model, config, adapter_name)
    try:
        _fill(pm, tensors, names, chosen, config, adapter_name, weights_path)
    except Exception:
        pm.unload()  # the model as it came in: no adapter layers, its own trainable flags
        for p in model.parameters():
            p.requires_grad = flags.get(id(p), p.requires_grad)
        raise
    if not is_trainable:
        pm.requires_grad_(False)
        pm.eval()
    return pm


def _fill(pm, tensors, names, chosen, config, adapter_name, weights_path):
    """Copy the file's tensors into the adapter's parameters, checking names and shapes first."""
    inner = pm.base_model
    params = dict(inner.named_parameters())
    wanted = {}  # file key -> minift parameter name
    for n in chosen if isinstance(config, IA3Config) else ():
        wanted[f"{PREFIX}{names[n]}.ia3_l"] = f"{n}.ia3_l.{adapter_name}"
    for n in chosen if isinstance(config, LoraConfig) else ():
        hf = names[n]
        wanted[f"{PREFIX}{hf}.lora_A.weight"] = f"{n}.lora_A.{adapter_name}.weight"
        wanted[f"{PREFIX}{hf}.lora_B.weight"] = f"{n}.lora_B.{adapter_name}.weight"
        if config.use_dora:
            wanted[f"{PREFIX}{hf}.lora_magnitude_vector"] = f"{n}.lora_magnitude_vector.{adapter_name}.weight"
    for n in config.modules_to_save or ():
        for leaf, _ in inner.get_submodule(n).modules_to_save[adapter_name].named_parameters():
            wanted[f"{PREFIX}{names[n]}.{leaf}"] = f"{n}.modules_to_save.{adapter_name}.{leaf}"
    optional = {}
    for n, hf in names.items() if isinstance(config, LoraConfig) else ():  # trained biases (bias="lora_only" / "all")
        for suffix in (".bias", ".base_layer.bias"):
            target = f"{n}{'.base_layer' if isinstance(inner.get_submodule(n), LoraLinear) else ''}.bias"
            if target in params:
                optional[f"{PREFIX}{hf}{suffix}"] = target
    unknown = sorted(set(tensors) - set(wanted) - set(optional) - {
        k for k in tensors if re.search(r"\.(original_module|modules_to_save)\.", k)})
    if unknown:
        raise CheckpointError(f"{weights_path}: tensors this model has no place for: {unknown[:5]}"
                              f"{' …' if len(unknown) > 5 else ''} (an adapter for a different model?)")
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise CheckpointError(f"{weights_path}: missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}")
    for key, name in {**wanted, **{k: v for k, v in optional.items() if k in tensors}}.items():
        value, p = tensors[key], params[name]
        if tuple(value.shape) != tuple(p.shape):
            raise CheckpointError(f"{weights_path}: {key} has shape {tuple(value.shape)}, but this model's "
                                  f"{name} has shape {tuple(p.shape)}: the adapter was made for a different model "
                                  "(or another rank)")
        p.data[...] = backend.asarray(value.astype(p.dtype))
