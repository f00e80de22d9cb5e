"""``get_peft_model`` and ``PeftModel``: put LoRA adapters into a model, train them, save, merge, load.

    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                          modules_to_save=["classifier"]))
    pm.print_trainable_parameters()      # trainable params: … || all params: … || trainable%: …
    pm.targeting_report()                # every Linear of the model: adapted or not, and why
    ... train pm like any model (mf.train.Trainer) ...
    pm.save_pretrained("runs/lora")      # adapter_config.json + adapter_model.safetensors (PEFT's format)
    merged = pm.merge_and_unload()       # a plain model again, W ← W + s·BA

What ``get_peft_model`` does, in order: freeze every parameter of the model; replace each targeted
``Linear`` by a ``LoraLinear`` around it (same place in the module tree, so the model's code is unchanged);
unfreeze the biases that ``bias`` names; wrap each module of ``modules_to_save`` so that a trainable copy
of it is used (the original kept, frozen, for ``disable_adapter``). The wrapped model is changed in place.
"""
from __future__ import annotations

import copy
import re
import warnings
from contextlib import contextmanager

from ..nn import Linear, Module, ModuleDict
from .config import IA3Config, LoraConfig
from .counting import TrainableCounts
from .ia3 import IA3Linear
from .lora import LoraLinear

ADAPTER_LAYERS = (LoraLinear, IA3Linear)


# ----------------------------------------------------------------------------- which modules
def _layer_index(name, layers_pattern=None):
    """The layer number in a dotted module name (``model.layers.3.attn.q_proj`` → 3), or None."""
    pattern = rf"(?:^|.*\.){re.escape(layers_pattern)}\.(\d+)\." if layers_pattern else r".*?\.?[^.]*\.(\d+)\."
    m = re.match(pattern, name + ".")
    return int(m.group(1)) if m else None


def name_matches(name, targets) -> str | None:
    """PEFT's rule: the target that selects module ``name``, or None.

    A string is a regular expression that must match the whole name; a list selects a name equal to an
    entry or ending in ``"." + entry``.
    """
    if isinstance(targets, str):
        return targets if re.fullmatch(targets, name) else None
    for target in targets or ():
        if name == target or name.endswith("." + target):
            return target
    return None


def targeting(model, config: LoraConfig) -> list:
    """[(module name, Linear, adapted?, why)] for every Linear of ``model``, in the model's order."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, ADAPTER_LAYERS):
            module = module.base_layer
        elif not isinstance(module, Linear) or name.endswith(".base_layer") or ".lora_" in name:
            continue
        if _inside_saved_module(name, config):
            continue
        target = name_matches(name, config.target_modules)
        if target is None:
            rows.append((name, module, False, "no target_modules entry matches"))
            continue
        if config.exclude_modules is not None and (hit := name_matches(name, config.exclude_modules)):
            rows.append((name, module, False, f"excluded by exclude_modules ({hit!r})"))
            continue
        if getattr(config, "layers_to_transform", None) is not None:
            index = _layer_index(name, config.layers_pattern)
            if index not in config.layers_to_transform:
                rows.append((name, module, False, f"layer {index} is not in layers_to_transform"))
                continue
        rows.append((name, module, True, f"matches target {target!r}"))
    return rows


def is_feedforward(name, config: IA3Config) -> bool:
    """PEFT's rule: a regex over the whole name, or a list whose entries the name ends with."""
    ff = config.feedforward_modules
    if isinstance(ff, str):
        return re.fullmatch(ff, name) is not None
    return any(name.endswith(f) for f in ff or ())


def _check_targets(model, config):
    """Raise ValueError (naming the cause) unless ``config`` adapts at least one Linear layer, its saved modules
    exist, and no chosen layer already holds another kind of adapter."""
    if isinstance(config.target_modules, str):
        try:
            re.compile(config.target_modules)
        except re.error as e:
            raise ValueError(f"target_modules {config.target_modules!r} is not a valid regular expression: {e}") from None
    rows = targeting(model, config)
    chosen = [(n, m) for n, m, adapted, _ in rows if adapted]
    if not chosen:
        matched = [why for _, _, adapted, why in rows if not adapted and why != "no target_modules entry matches"]
        if matched:
            raise ValueError(f"target_modules={config.target_modules!r} matches layers, but every one of them is "
                             f"left out ({matched[0]}, …): check exclude_modules / layers_to_transform")
        linear = sorted({n.rpartition(".")[2] for n, _, _, _ in rows})
        raise ValueError(f"target_modules={config.target_modules!r} matches no Linear layer of the model; "
                         f"its Linear layers are called {linear} (see PeftModel.targeting_report())")
    kind = IA3Linear if isinstance(config, IA3Config) else LoraLinear
    for name, _ in chosen:
        current = model.get_submodule(name)
        if isinstance(current, ADAPTER_LAYERS) and not isinstance(current, kind):
            raise ValueError(f"{name} already has a {type(current).__name__} adapter; LoRA and IA3 cannot share a layer")
    for entry in config.modules_to_save or ():
        if not any(n == entry or n.endswith("." + entry) for n, _ in model.named_modules()):
            raise ValueError(f"modules_to_save names {entry!r}, but the model has no module of that name; "
                             f"its top-level modules: {[n for n, _ in model.named_children()]}")


def _inside_saved_module(name, config):
    return any(name == m or name.startswith(m + ".") or name.endswith("." + m) or f".{m}." in f".{name}."
               for m in config.modules_to_save or ())


def _set_child(model, name, new):
    """Put ``new`` at dotted ``name`` in the module tree, keeping the child's place among its siblings."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if child not in parent._modules:
        raise KeyError(f"{name}: not a submodule")
    parent._modules[child] = new  # (setattr would move it to the end of the parent's children)


class ModulesToSaveWrapper(Module):
    """A module trained whole beside the adapters (a task head): a trainable copy is used, the original kept.

    PEFT's layout: ``original_module`` (frozen) and ``modules_to_save.<adapter>`` (the copy that trains).
    With the adapters disabled the original is used, so the base model is exactly the one before.
    """

    def __init__(self, module, adapter_name):
        super().__init__()
        self.original_module = module
        self.modules_to_save = ModuleDict()
        self.active_adapter = adapter_name
        self.disable_adapters = False
        self.add(adapter_name)

    def add(self, adapter_name):
        twin = copy.deepcopy(self.original_module)
        twin.requires_grad_(True)
        self.modules_to_save[adapter_name] = twin

    def forward(self, *args, **kwargs):
        if self.disable_adapters or self.active_adapter not in self.modules_to_save:
            return self.original_module(*args, **kwargs)
        return self.modules_to_save[self.active_adapter](*args, **kwargs)


# ----------------------------------------------------------------------------- the model
class PeftModel(TrainableCounts, Module):
    """A model with adapters: calls go to the wrapped model (``base_model``), attributes too."""

    def __init__(self, model, config: LoraConfig, adapter_name="default"):
        super().__init__()
        if isinstance(model, PeftModel):
            raise TypeError("this model already has adapters; use .add_adapter(name, config) for another one")
        if not isinstance(config, (LoraConfig, IA3Config)):
            raise TypeError(f"config must be a LoraConfig or an IA3Config, got {type(config).__name__}")
        if any(isinstance(m, (*ADAPTER_LAYERS, ModulesToSaveWrapper)) for m in model.modules()):
            raise ValueError("this model already has adapters (from an earlier get_peft_model): add another with "
                             "that PeftModel's add_adapter(name, config), or start from a freshly loaded model")
        _check_targets(model, config)  # before anything changes: a bad config leaves the model as it was
        self.base_model = model
        self.peft_config = {}
        self.active_adapter = adapter_name
        self._unloaded = False
        model.requires_grad_(False)
        self._inject(config, adapter_name)

    # -------------------------------------------------------------- building
    def _inject(self, config: LoraConfig, adapter_name):
        model = self.base_model
        _check_targets(model, config)
        for name in config.modules_to_save or ():
            found = [n for n, m in model.named_modules()
                     if (n == name or n.endswith("." + name)) and not isinstance(m, ModulesToSaveWrapper)
                     and ".modules_to_save." not in f".{n}." and ".original_module" not in f"{n}."]
            existing = [n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)
                        and (n == name or n.endswith("." + name))]
            if existing:
                for n in existing:
                    model.get_submodule(n).add(adapter_name)
                continue
            if not found:
                raise ValueError(f"modules_to_save names {name!r}, but the model has no module of that name; "
                                 f"its top-level modules: {[n for n, _ in model.named_children()]}")
            for n in found:
                _set_child(model, n, ModulesToSaveWrapper(model.get_submodule(n), adapter_name))
        chosen = [(name, module) for name, module, adapted, _ in targeting(model, config) if adapted]
        for name, linear in chosen:
            current = model.get_submodule(name)
            if isinstance(config, IA3Config):
                if isinstance(current, LoraLinear):
                    raise ValueError(f"{name} already has a LoRA adapter; IA3 and LoRA cannot share a layer here")
                layer = current if isinstance(current, IA3Linear) else IA3Linear(linear, is_feedforward(name, config))
                layer.update_layer(adapter_name, config.init_ia3_weights)
            else:
                if isinstance(current, IA3Linear):
                    raise ValueError(f"{name} already has an IA3 adapter; IA3 and LoRA cannot share a layer here")
                layer = current if isinstance(current, LoraLinear) else LoraLinear(linear)
                layer.update_layer(adapter_name, config.r, config.lora_alpha, config.lora_dropout,
                                   config.init_lora_weights, config.use_rslora, config.use_dora)
            if layer is not current:
                _set_child(model, name, layer)
        for name, p in model.named_parameters() if isinstance(config, LoraConfig) else ():
            is_bias = name.endswith(".bias") and ".original_module." not in f".{name}"
            if config.bias == "all" and is_bias:
                p.requires_grad = True
            elif config.bias == "lora_only" and is_bias and name.endswith(".base_layer.bias"):
                p.requires_grad = True
        self.peft_config[adapter_name] = config
        self.set_adapter(self.active_adapter if len(self.peft_config) > 1 else adapter_name)

    def add_adapter(self, adapter_name, config: LoraConfig):
        """A second (third, …) adapter beside the first, frozen; ``set_adapter(name)`` makes it the one that
        runs and trains (as in PEFT, adding does not switch)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"there is already an adapter named {adapter_name!r}")
        self._check_usable()
        self._inject(config, adapter_name)

    def set_adapter(self, adapter_name):
        """Make ``adapter_name`` the one that runs and trains; the others are kept, frozen."""
        self._check_adapter(adapter_name)
        if any(layer.merged_adapters for _, layer in self.adapter_layers()):
            warnings.warn("set_adapter on a merged model: the merged adapter is unmerged first", stacklevel=2)
            self.unmerge_adapter()
        self.active_adapter = adapter_name
        for module in self.base_model.modules():
            if isinstance(module, LoraLinear):
                module.active_adapters = [adapter_name] if adapter_name in module.lora_A else []
                for name in module.lora_A.keys():
                    module.lora_A[name].requires_grad_(name == adapter_name)
                    module.lora_B[name].requires_grad_(name == adapter_name)
                    if name in module.lora_magnitude_vector:
                        module.lora_magnitude_vector[name].requires_grad_(name == adapter_name)
            elif isinstance(module, IA3Linear):
                module.active_adapters = [adapter_name] if adapter_name in module.adapters() else []
                for name, p in module.ia3_l._parameters.items():
                    p.requires_grad = name == adapter_name
            elif isinstance(module, ModulesToSaveWrapper):
                module.active_adapter = adapter_name
                for name, twin in module.modules_to_save.items():
                    twin.requires_grad_(name == adapter_name)

    def _check_adapter(self, adapter_name):
        if adapter_name not in self.peft_config:
            raise ValueError(f"no adapter named {adapter_name!r}; adapters: {list(self.peft_config)}")

    def _check_usable(self):
        if self.__dict__.get("_unloaded"):
            raise RuntimeError("this PeftModel was merged and unloaded: use the model merge_and_unload()/unload() "
                               "returned, or build a new PeftModel")

    # -------------------------------------------------------------- using
    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def get_base_model(self):
        """The wrapped model (with its LoRA layers in place)."""
        return self.base_model

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["base_model"], name)

    @contextmanager
    def disable_adapter(self):
        """Inside the block the model is the base model: no LoRA update, the original saved modules."""
        wrapped = [m for m in self.base_model.modules() if isinstance(m, (*ADAPTER_LAYERS, ModulesToSaveWrapper))]
        for m in wrapped:
            m.disable_adapters = True
        try:
            yield
        finally:
            for m in wrapped:
                m.disable_adapters = False

    def lora_layers(self):
        """[(name, LoraLinear)] in the model's order."""
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, LoraLinear)]

    def adapter_layers(self):
        """[(name, LoraLinear or IA3Linear)] in the model's order."""
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, ADAPTER_LAYERS)]

    def merge_adapter(self, safe_merge=False):
        """Fold the active adapter into the weights (LoRA: W ← W + s·BA; IA3: the scaling); the adapter layers
        stay, inactive while merged."""
        self._check_usable()
        if safe_merge:  # look at every layer first, so that a broken adapter leaves every weight untouched
            for name, layer in self.adapter_layers():
                if self.active_adapter in layer.merged_adapters:
                    continue
                if not layer.update_is_finite(self.active_adapter):
                    raise ValueError(f"merging adapter {self.active_adapter!r} gives non-finite weights in {name}: "
                                     "the adapter is broken (NaN/inf in its parameters); nothing was merged")
        done = []
        try:
            for _, layer in self.adapter_layers():
                if self.active_adapter in layer.merged_adapters:  # merged before this call: not ours to undo
                    continue
                blocks = getattr(layer.base_layer, "qweight", None)  # a 4-bit base: unmerging would round again
                blocks = None if blocks is None else blocks.copy()
                layer.merge([self.active_adapter], safe_merge=safe_merge)
                done.append((layer, blocks))
        except ValueError:
            for layer, blocks in done:  # all or nothing: the layers merged before the broken one go back
                if blocks is None:
                    layer.unmerge()
                else:
                    layer.base_layer.qweight[...] = blocks
                    layer.merged_adapters.remove(self.active_adapter)
                    getattr(layer, "_dora_norms", {}).pop(self.active_adapter, None)
            raise

    def unmerge_adapter(self):
        for _, layer in self.adapter_layers():
            layer.unmerge()

    def merge_and_unload(self, safe_merge=False):
        """The plain model: each LoRA layer replaced by its base Linear with the active adapter merged in,
        each saved module by its trained copy. The PeftModel must not be used afterwards."""
        model = self.base_model
        self.merge_adapter(safe_merge=safe_merge)  # every layer first (all or nothing), then the swap
        for name, layer in self.adapter_layers():
            _set_child(model, name, layer.base_layer)
        for name, module in [(n, m) for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]:
            _set_child(model, name, module.modules_to_save[self.active_adapter])
        self._unloaded = True
        return model

    def unload(self):
        """The plain model without any adapter merged in (the LoRA layers removed, the original saved modules back)."""
        model = self.base_model
        for name, layer in self.adapter_layers():
            layer.unmerge()
            _set_child(model, name, layer.base_layer)
        for name, module in [(n, m) for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]:
            _set_child(model, name, module.original_module)
        self._unloaded = True
        return model

    # -------------------------------------------------------------- files
    def save_pretrained(self, directory, adapter_name=None):
        """Write the adapter in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``
        (Hugging Face's module names; see ``minift.peft.hub``). Other files in ``directory`` are left alone."""
        from .hub import save_adapter

        self._check_usable()
        self._check_adapter(adapter_name or self.active_adapter)
        return save_adapter(self, directory, adapter_name)

    @classmethod
    def from_pretrained(cls, model, directory, adapter_name="default", is_trainable=False):
        """``model`` with the adapter saved in ``directory`` (by minift or by HF PEFT); frozen and in eval
        mode unless ``is_trainable``."""
        from .hub import load_adapter

        if isinstance(model, PeftModel):
            raise TypeError("PeftModel.from_pretrained takes the base model (without adapters), got a PeftModel")
        return load_adapter(model, directory, adapter_name, is_trainable)

    # -------------------------------------------------------------- counting and reporting
    def targeting_report(self, adapter_name=None) -> str:
        """Every Linear of the model, one line each: adapted or not, and why (for ``adapter_name``: the active one)."""
        self._check_adapter(adapter_name or self.active_adapter)
        config = self.peft_config[adapter_name or self.active_adapter]
        rows = targeting(self.base_model, config)
        width = max(len(n) for n, *_ in rows)
        lines = [f"{'module':{width}}  {'shape (out, in)':>16}  adapted  why"]
        for name, linear, adapted, why in rows:
            shape = f"({linear.out_features}, {linear.in_features})"
            lines.append(f"{name:{width}}  {shape:>16}  {'yes' if adapted else 'no':7}  {why}")
        n = sum(1 for r in rows if r[2])
        if isinstance(config, IA3Config):
            size = sum(m.in_features if is_feedforward(name, config) else m.out_features for name, m, a, _ in rows if a)
            lines.append(f"{n} of {len(rows)} Linear layers adapted by IA3: {size:,} scaling parameters")
        else:
            lines.append(f"{n} of {len(rows)} Linear layers adapted with r={config.r}: "
                         f"{sum(config.r * (m.in_features + m.out_features) for _, m, a, _ in rows if a):,} LoRA parameters")
        return "\n".join(lines)


def get_peft_model(model, config, adapter_name="default"):
    """Wrap ``model`` with an adapter named ``adapter_name`` — ``LoraConfig`` or ``IA3Config`` (a ``PeftModel``,
    see the module docstring), ``PromptTuningConfig`` (a ``PromptTuningModel``) or ``PrefixTuningConfig`` (a
    ``PrefixTuningModel``). Changes ``model``."""
    from ..nn import Module
    from .adapters import AdapterConfig
    from .prefix import PrefixTuningConfig, PrefixTuningModel
    from .prompt import PromptTuningConfig, PromptTuningModel

    if not isinstance(model, Module):
        raise TypeError(f"get_peft_model needs a minift model (a Module, e.g. from AutoModelFor….from_pretrained), "
                        f"got {type(model).__name__}")
    if isinstance(config, AdapterConfig):  # bottleneck adapters change the model in place: their own entry point
        raise TypeError("an AdapterConfig is applied with minift.peft.add_adapters(model, config), not get_peft_model")
    if not isinstance(config, (LoraConfig, IA3Config, PromptTuningConfig, PrefixTuningConfig)):
        raise TypeError("get_peft_model's config must be a LoraConfig, IA3Config, PromptTuningConfig or "
                        f"PrefixTuningConfig, got {type(config).__name__} {str(config)[:40]}")
    if isinstance(config, PromptTuningConfig):
        return PromptTuningModel(model, config)
    if isinstance(config, PrefixTuningConfig):
        return PrefixTuningModel(model, config)
    return PeftModel(model, config, adapter_name)
