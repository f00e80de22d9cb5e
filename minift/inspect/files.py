"""What is in a model file: ``minift inspect PATH`` without loading a single weight.

    report = inspect_path("checkpoints/tiny-gpt")          # a dict: kind, config, every tensor, totals
    print(format_report(report))                            # the same as text
    inspect_path("my-adapter", against="checkpoints/base")  # which base modules a PEFT adapter touches

Kinds it reads (``report["kind"]``):

* ``minift checkpoint``: ``config.json`` with ``format: minift`` + ``model.safetensors``;
* ``hf model``: ``config.json`` with ``model_type`` / ``architectures`` + ``model.safetensors``, or the shards
  that ``model.safetensors.index.json`` lists (its ``weight_map``: tensor name → shard file);
* ``peft adapter``: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's key names,
  ``base_model.model.<module>.lora_A.weight`` …; see ``minift.peft.hub``);
* ``gguf``: a llama.cpp file, read with the ``gguf`` package's reader (metadata + tensor table; the
  tensor data is memory-mapped and never touched);
* ``safetensors``: a lone ``.safetensors`` file.

Only headers are read. A safetensors file is 8 bytes (N, little-endian unsigned) then N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [start, end]}, "__metadata__": {…}}`` then the raw data; a
tensor's bytes are ``end − start``, which must equal ∏ shape × itemsize(dtype) — checked here, so a corrupt
header is reported, not trusted. A ``.bin`` / ``.pt`` / ``.pth`` / ``.ckpt`` file is a Python pickle:
unpickling runs whatever code the file names, so it is refused, never opened.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..models.checkpoint import (CheckpointError, check_output_file, read_json, read_safetensors_header,
                                write_text_atomically)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_WHY = ("it is a Python pickle, and unpickling runs whatever code the file names; minift never loads "
              "one (convert it once, where you trust it, with safetensors: model.save_pretrained(dir, "
              "safe_serialization=True))")
ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX = "adapter_config.json", "adapter_model.safetensors", "base_model.model."
# The part of a PEFT key after the module's name: what the tensor is
ADAPTER_PARTS = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector|ia3_l)"
                           r"(?:\.[^.]+)?(?:\.weight)?$")


class InspectError(ValueError):
    """The path is not something the inspector reads; the message names it and says what was expected."""


# ----------------------------------------------------------------------------- what the path is
def _refuse_pickles(d: Path, wanted: str):
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise InspectError(f"{d} has {', '.join(pickles)} but no {wanted}: {pickles[0]} is refused: {PICKLE_WHY}")


MODEL_ARTIFACTS = ("minilm", "smollm2")
BACKBONE_PREFIXES = ("bert", "roberta", "transformer", "model")  # HF's base_model_prefix of the head classes
# the heads Hugging Face's classes of each family put on the backbone (sequence, token, QA classification)
HEADS_BY_FAMILY = {"bert": ("classifier", "qa_outputs", "pooler"), "gpt2": ("score", "classifier", "qa_outputs"),
                   "llama": ("score", "classifier", "qa_outputs")}


def _base_family(base: Path):
    """The base's family (bert, gpt2, llama) from its config, or None."""
    if base.is_file() and base.suffix == ".gguf" or (base.is_dir() and any(base.glob("*.gguf"))):
        return "llama"
    config = base / "config.json" if base.is_dir() else None
    if config is None or not config.is_file():
        return None
    cfg = _read_json(config)
    return cfg.get("family") or {"bert": "bert", "gpt2": "gpt2", "llama": "llama"}.get(cfg.get("model_type"))  # zoo names that stand for a model: inspect minilm, --against smollm2


def _resolve(path) -> Path:
    """``path`` as given, or, for a zoo model's name that is not a path here, its cached directory."""
    path = Path(path)
    if not path.exists() and str(path) in MODEL_ARTIFACTS:
        from .. import zoo

        return zoo.path(str(path))
    return path


def _kind(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (give a directory or file, or a zoo model: "
                                f"{', '.join(MODEL_ARTIFACTS)})")
    if path.is_file():
        if path.suffix == ".gguf":
            return "gguf"
        if path.suffix == ".safetensors":
            return "safetensors"
        if path.suffix in PICKLE_SUFFIXES:
            raise InspectError(f"{path} is refused: {PICKLE_WHY}")
        if path.name == "config.json" or path.name == ADAPTER_CONFIG:
            return _kind(path.parent)
        raise InspectError(f"{path}: expected a .safetensors or .gguf file, or a model/adapter directory")
    if (path / ADAPTER_CONFIG).is_file():
        if not (path / ADAPTER_WEIGHTS).is_file():
            _refuse_pickles(path, ADAPTER_WEIGHTS)
            raise InspectError(f"{path} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}")
        return "peft adapter"
    if (path / "config.json").is_file():
        cfg = _read_json(path / "config.json")
        if cfg.get("format") == "minift":
            return "minift checkpoint"
        if "model_type" in cfg or "architectures" in cfg:
            return "hf model"
        raise InspectError(f"{path / 'config.json'}: neither a minift checkpoint (format: minift) nor a Hugging "
                           "Face config (model_type, architectures)")
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return "gguf"
    _refuse_pickles(path, "safetensors file")
    raise InspectError(f"{path} is none of the directories minift inspects: expected config.json + "
                       f"model.safetensors (a minift or Hugging Face model, possibly sharded with "
                       f"model.safetensors.index.json), or {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS} (a PEFT adapter); "
                       f"it has {sorted(p.name for p in path.iterdir())[:8]}")


def _read_json(file: Path) -> dict:
    """``read_json``'s dict, its error (naming the file) an ``InspectError``."""
    try:
        return read_json(file)
    except CheckpointError as e:
        raise InspectError(str(e)) from None


def _model_files(d: Path) -> list[Path]:
    """model.safetensors, or every shard the index lists (checked to hold what the index says)."""
    single, index = d / "model.safetensors", d / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InspectError(f"{index}: expected a non-empty weight_map {{tensor name: shard file}}")
        shards = [d / name for name in sorted(set(weight_map.values()))]
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise InspectError(f"{index} lists shards that are not in {d}: {missing}")
        return shards
    _refuse_pickles(d, "model.safetensors")
    raise InspectError(f"{d} has config.json but no model.safetensors (nor model.safetensors.index.json for shards)")


def _tensor_table(files: list[Path]) -> tuple[list[dict], dict]:
    rows, metadata = [], {}
    for file in files:
        tensors, meta = read_safetensors_header(file)
        rows += tensors.values()
        metadata.update(meta)
    return rows, metadata


SUMMARY_FIELDS = {  # what a learner wants first, under each family's own field names (HF) or minift's
    "architecture": ("architecture", "architectures"), "family": ("family", "model_type"),
    "layers": ("num_hidden_layers", "n_layer"), "hidden size": ("hidden_size", "n_embd"),
    "heads": ("num_attention_heads", "n_head"), "key/value heads": ("num_key_value_heads",),
    "intermediate size": ("intermediate_size", "n_inner"), "vocabulary": ("vocab_size",),
    "context": ("max_position_embeddings", "n_positions"), "tied embeddings": ("tie_word_embeddings",),
    "dtype": ("torch_dtype", "dtype"),
}


def _summary(cfg: dict) -> dict:
    out = {}
    for label, keys in SUMMARY_FIELDS.items():
        for k in keys:
            if cfg.get(k) is not None:
                out[label] = cfg[k]
                break
    return out


# ----------------------------------------------------------------------------- each kind
def _inspect_model_dir(d: Path, kind: str) -> dict:
    cfg = _read_json(d / "config.json")
    files = _model_files(d)
    rows, metadata = _tensor_table(files)
    notes = []
    index = d / "model.safetensors.index.json"
    if len(files) > 1 or not (d / "model.safetensors").is_file():
        listed = set(_read_json(index)["weight_map"])
        found = {r["name"] for r in rows}
        if listed != found:
            raise InspectError(f"{index} and its shards disagree: listed but absent {sorted(listed - found)[:5]}, "
                               f"present but unlisted {sorted(found - listed)[:5]}")
        notes.append(f"sharded: {len(files)} files listed in {index.name}")
    tied = json.loads(metadata.get("tied", "{}")) if kind == "minift checkpoint" else {}
    for alias, kept in tied.items():
        notes.append(f"{alias} is tied to {kept}: stored once")
    if kind == "hf model" and cfg.get("tie_word_embeddings", True) and cfg.get("model_type") in ("gpt2", "llama", "bert"):
        notes.append("tie_word_embeddings: the LM head (if any) is the embedding matrix, stored once")
    if (d / "tokenizer.json").is_file():  # read as the loaders read it: a damaged one is found here, not mid-run
        from ..tokenization import Tokenizer

        try:
            tok = Tokenizer.load(d)
        except CheckpointError as e:
            raise InspectError(str(e)) from None
        notes.append(f"tokenizer.json: {tok.vocab_size:,} tokens; pad {tok.pad_token!r}, eos {tok.eos_token!r}")
    return {"kind": kind, "config": cfg, "summary": _summary(cfg), "metadata": metadata, "tensors": rows,
            "files": [p.name for p in files], "notes": notes}


def _inspect_safetensors(file: Path) -> dict:
    rows, metadata = _tensor_table([file])
    return {"kind": "safetensors", "config": {}, "summary": {}, "metadata": metadata, "tensors": rows,
            "files": [file.name], "notes": []}


def adapter_scaling(cfg: dict, file=ADAPTER_CONFIG) -> float | None:
    """LoRA's scaling s in W₀x + s·BAx: lora_alpha / r, or lora_alpha / √r with use_rslora (rsLoRA)."""
    r, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if not r or alpha is None:
        return None
    for name, value in (("r", r), ("lora_alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InspectError(f"{file}: {name} must be a number > 0, got {value!r}")
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _adapter_modules(rows: list[dict]) -> dict:
    """{module name (PEFT prefix removed): {part: shape}}, from the keys: lora_A, lora_B, ia3_l, a saved weight…"""
    modules = {}
    for row in rows:
        name = row["name"].removeprefix(PEFT_PREFIX)
        m = ADAPTER_PARTS.search(name)
        if m:
            module, part = name[:m.start()], m.group(1)
        else:  # a module saved whole (modules_to_save) or a trained bias: module.leaf
            module, _, part = name.rpartition(".")
            module = re.sub(r"\.base_layer$", "", module)
        modules.setdefault(module, {})[part] = row["shape"]
    return modules


def _inspect_adapter(d: Path) -> dict:
    cfg = _read_json(d / ADAPTER_CONFIG)
    rows, metadata = _tensor_table([d / ADAPTER_WEIGHTS])
    modules = _adapter_modules(rows)
    adapted = {m: parts for m, parts in modules.items() if any(p in parts for p in ("lora_A", "ia3_l",
                                                                                  "lora_embedding_A"))}
    saved = sorted(m for m in modules if m not in adapted and "weight" in modules[m])
    ranks = sorted({parts["lora_A"][0] for parts in adapted.values() if "lora_A" in parts})
    notes = []
    if cfg.get("r") is not None and ranks and ranks != [cfg["r"]] and not cfg.get("rank_pattern"):
        notes.append(f"warning: r is {cfg['r']} in {ADAPTER_CONFIG} but lora_A has rank {ranks} in the file")
    if not adapted and cfg.get("peft_type") in ("LORA", "IA3"):
        notes.append("warning: no adapter tensor (lora_A / ia3_l) in the file: this adapter changes nothing")
    scaling = adapter_scaling(cfg, d / ADAPTER_CONFIG)
    adapter = {
        "peft_type": cfg.get("peft_type"), "task_type": cfg.get("task_type"), "r": cfg.get("r"),
        "lora_alpha": cfg.get("lora_alpha"), "use_rslora": bool(cfg.get("use_rslora")),
        "use_dora": bool(cfg.get("use_dora")), "scaling": scaling,
        "scaling_formula": (None if scaling is None else
                            f"lora_alpha / √r = {cfg['lora_alpha']} / √{cfg['r']}" if cfg.get("use_rslora")
                            else f"lora_alpha / r = {cfg['lora_alpha']} / {cfg['r']}"),
        "target_modules": cfg.get("target_modules"), "modules_to_save": cfg.get("modules_to_save"),
        "ranks_in_file": ranks, "adapted_modules": sorted(adapted), "saved_modules": saved,
        "by_suffix": _by_suffix(adapted),
    }
    summary = {k: adapter[k] for k in ("peft_type", "task_type", "r", "lora_alpha") if adapter[k] is not None}
    return {"kind": "peft adapter", "config": cfg, "summary": summary, "metadata": metadata, "tensors": rows,
            "files": [ADAPTER_WEIGHTS], "adapter": adapter, "notes": notes}


def _by_suffix(modules) -> dict:
    """{last name component: count}, e.g. {"query": 6, "value": 6}: what was adapted, at a glance."""
    out = {}
    for m in modules:
        leaf = m.rpartition(".")[2]
        out[leaf] = out.get(leaf, 0) + 1
    return dict(sorted(out.items()))


GGUF_SUMMARY = {"block_count": "layers", "embedding_length": "hidden size", "feed_forward_length":
                "intermediate size", "attention.head_count": "heads", "attention.head_count_kv": "key/value heads",
                "context_length": "context", "vocab_size": "vocabulary", "rope.freq_base": "rope theta"}


def _gguf_value(field):
    """A metadata value; a long array (the vocabulary, the merges) as a one-line description."""
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY and len(field.data) > 16:
        return f"[{len(field.data)} × {field.types[-1].name.lower()}]"
    return field.contents()


def _inspect_gguf(file: Path) -> dict:
    import gguf

    try:
        reader = gguf.GGUFReader(str(file))
    except Exception as e:  # noqa: BLE001 - any unreadable file: one line naming it
        raise InspectError(f"{file}: not a readable GGUF file: {type(e).__name__}: {e}") from None
    metadata = {k: _gguf_value(f) for k, f in reader.fields.items()}
    arch = metadata.get("general.architecture")
    summary = {"architecture": arch, "name": metadata.get("general.name")}
    for key, label in GGUF_SUMMARY.items():
        if f"{arch}.{key}" in metadata:
            summary[label] = metadata[f"{arch}.{key}"]
    file_type = metadata.get("general.file_type")
    if isinstance(file_type, int):
        try:
            summary["file type"] = gguf.LlamaFileType(file_type).name  # e.g. MOSTLY_Q4_1: most matrices Q4_1
        except ValueError:
            summary["file type"] = file_type
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if "vocabulary" not in summary and tokens is not None:
        summary["vocabulary"] = len(tokens.data)
    rows = []
    for t in reader.tensors:
        kind = t.tensor_type.name
        rows.append({"name": t.name, "shape": [int(s) for s in reversed(t.shape)],  # row-major (PyTorch) order
                     "dtype": kind, "bytes": int(t.n_bytes), "elements": int(t.n_elements),
                     "quantized": kind not in ("F32", "F16", "BF16", "F64"), "file": file.name})
    counts = {}
    for r in rows:
        counts[r["dtype"]] = counts.get(r["dtype"], 0) + 1
    notes = [f"tensor types: {', '.join(f'{k} ×{v}' for k, v in sorted(counts.items()))}",
             "shapes in row-major (PyTorch) order: GGUF lists the fastest-varying axis first"]
    return {"kind": "gguf", "config": {}, "summary": summary, "metadata": metadata, "tensors": rows,
            "files": [file.name], "notes": notes}


# ----------------------------------------------------------------------------- --against BASE
def _base_modules(base: Path) -> dict:
    """{module name as a PEFT adapter names it (Hugging Face's): weight shape (out, in)} of a base model."""
    kind = _kind(base)
    if kind == "peft adapter":
        raise InspectError(f"--against {base}: that is an adapter; expected the base model it was made for")
    if kind in ("hf model", "safetensors"):
        rows = _inspect_safetensors(base)["tensors"] if kind == "safetensors" else _inspect_model_dir(base, kind)["tensors"]
        out = {}
        for r in rows:
            module, _, leaf = r["name"].rpartition(".")
            if leaf == "weight" or module not in out:
                out[module] = r["shape"] if leaf == "weight" else None
        return out
    model = _empty_model(base, kind)  # minift names → HF names need the model's structure, not its weights
    from ..peft.hub import hf_module_names

    try:
        names = hf_module_names(model)
    except ValueError:  # gpt2: no PEFT names for minift's q/k/v; compare in minift's own names
        names = {n: n for n, m in model.named_modules() if "weight" in m._parameters}
    return {hf: list(model.get_submodule(n).weight.shape) for n, hf in names.items()}


def _empty_model(base: Path, kind: str):
    from ..models.config import TransformerConfig
    from ..models.loaders import ARCHITECTURES, gguf_config
    from ..models.transformer import TransformerForCausalLM
    from ..nn.layers import init_empty_weights

    with init_empty_weights():
        if kind == "gguf":
            import gguf

            file = base if base.is_file() else sorted(base.glob("*.gguf"))[0]
            return TransformerForCausalLM(gguf_config(gguf.GGUFReader(str(file))))
        cfg = _read_json(base / "config.json")
        return ARCHITECTURES[cfg.get("architecture", "TransformerModel")](TransformerConfig.from_dict(cfg))


def compare_with_base(report: dict, base) -> dict:
    """Which base modules the adapter touches, and what in it matches nothing there.

    PEFT's rule (``minift.peft.hub._peft_targets``): a target ``t`` selects module ``m`` when ``m == t`` or
    ``m`` ends with ``"." + t``; a string is a regular expression matched against the whole name. A target
    that selects nothing is the silent bug (peft#40): training runs and nothing is adapted.
    """
    base = _resolve(base)
    modules = _base_modules(base)
    adapter = report["adapter"]
    by_module = _adapter_modules(report["tensors"])
    # A bare backbone (HF's BertModel: "encoder.layer.0…") under an adapter made for a model with a head
    # ("bert.encoder.layer.0…"): Hugging Face loads it under the head class's base_model_prefix, so read it so.
    firsts = {m.split(".")[0] for m in adapter["adapted_modules"]}
    backbone_prefix = None
    if len(firsts) == 1 and (first := firsts.pop()) in BACKBONE_PREFIXES \
            and not any(m.startswith(first + ".") for m in modules) \
            and any(m.removeprefix(first + ".") in modules for m in adapter["adapted_modules"]):
        backbone_prefix = first  # only when the prefix makes the adapted modules land (a llama base stays a mismatch)
        modules = {f"{first}.{m}": shape for m, shape in modules.items()}
    heads = set(adapter["modules_to_save"] or []) | set(adapter.get("saved_modules") or [])

    def selects(t, m):
        return m == t or m.endswith("." + t)

    targets = adapter["target_modules"]
    if isinstance(targets, str):
        selected = sorted(m for m in modules if re.fullmatch(targets, m))
        unmatched_targets = [] if selected else [targets]
    else:
        targets = list(targets or [])
        selected = sorted(m for m in modules if any(selects(t, m) for t in targets))
        unmatched_targets = [t for t in targets if not any(selects(t, m) for m in modules)]
    unmatched_saved = [s for s in adapter["modules_to_save"] or [] if not any(selects(s, m) for m in modules)]
    touched = sorted(m for m in by_module if m in modules)
    absent = sorted(m for m in by_module if m not in modules)
    # A head the base does not have, saved whole by the adapter, is made fresh by the head class when Hugging Face
    # loads the base under it (a classifier adapter on a masked-LM or bare checkpoint): expected, not a problem —
    # if it is a head this family's classes have (``classifier`` on a bert base, not ``score``).
    family_heads = set(HEADS_BY_FAMILY.get(_base_family(base), ()))
    fresh = set()
    if any(m in modules for m in adapter["adapted_modules"]):  # only for the base the adapter was made on
        fresh = {h for h in heads if h.split(".")[-1] in family_heads and not any(selects(h, m) for m in modules)}
        if backbone_prefix:  # a bare backbone has no head at all
            fresh |= {h for h in heads if not any(selects(h, m) for m in modules)}
    unmatched_saved = [s for s in unmatched_saved if s not in fresh]
    absent = [m for m in absent if not any(m == h or m.endswith("." + h) for h in fresh)]
    adapted = set(adapter["adapted_modules"])
    without_tensors = [m for m in selected if m not in adapted]  # PEFT would leave these at their start: B = 0
    mismatched = []
    for m in touched:
        parts, shape = by_module[m], modules[m]
        if shape is None or len(shape) != 2:
            continue
        out_features, in_features = shape
        if "lora_A" in parts and parts["lora_A"][-1] != in_features:
            mismatched.append(f"{m}.lora_A is {parts['lora_A']}, but the base weight is {shape}: in = {in_features}")
        if "lora_B" in parts and parts["lora_B"][0] != out_features:
            mismatched.append(f"{m}.lora_B is {parts['lora_B']}, but the base weight is {shape}: out = {out_features}")
    problems = ([f"target_modules entry {t!r} matches no module of the base" for t in unmatched_targets]
                + [f"modules_to_save entry {s!r} matches no module of the base" for s in unmatched_saved]
                + [f"the adapter has tensors for {m}, which the base does not have" for m in absent] + mismatched
                + ([f"target_modules select {len(without_tensors)} base modules the file has no tensors for: "
                    f"{', '.join(without_tensors[:4])}{' …' if len(without_tensors) > 4 else ''}"] if without_tensors
                   else []))
    return {"base": str(base), "base_modules": len(modules), "selected_by_targets": selected, "touched": touched,
            "unmatched_targets": unmatched_targets, "unmatched_modules_to_save": unmatched_saved,
            "absent_from_base": absent, "selected_without_tensors": without_tensors, "shape_mismatches": mismatched,
            "backbone_prefix": backbone_prefix, "fresh_heads": sorted(fresh), "problems": problems}


# ----------------------------------------------------------------------------- entry points
def inspect_path(path, against=None) -> dict:
    """A report on ``path`` (see the module docstring for the kinds), without loading any weight.

    Keys: path, kind, files, config, summary, metadata, tensors (each: name, shape, dtype, bytes, file),
    num_tensors, total_elements (Σ ∏ shape), total_bytes (Σ bytes), notes; for an adapter ``adapter``
    (peft_type, r, lora_alpha, scaling, target_modules, modules_to_save, adapted_modules, saved_modules), and
    with ``against`` (a base model's path) ``against`` (see ``compare_with_base``).
    """
    path = _resolve(path)
    kind = _kind(path)
    if path.is_file() and path.name in ("config.json", ADAPTER_CONFIG):
        path = path.parent
    if kind == "gguf":
        report = _inspect_gguf(path if path.is_file() else sorted(path.glob("*.gguf"))[0])
    elif kind == "safetensors":
        report = _inspect_safetensors(path)
    elif kind == "peft adapter":
        report = _inspect_adapter(path)
    else:
        report = _inspect_model_dir(path, kind)
    report = {"path": str(path), **report}
    report["num_tensors"] = len(report["tensors"])
    report["total_elements"] = sum(math.prod(r["shape"]) for r in report["tensors"])
    report["total_bytes"] = sum(r["bytes"] for r in report["tensors"])
    if against is not None:
        if kind != "peft adapter":
            raise InspectError(f"--against compares a PEFT adapter with its base model; {path} is a {kind}")
        report["against"] = compare_with_base(report, against)
    return report


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB' (powers of 1024, as memory is counted)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_report(report: dict, max_tensors: int | None = None) -> str:
    """The report as text: what it is, its config summary, the adapter, every tensor, the totals."""
    lines = [f"{report['path']}: {report['kind']} ({', '.join(report['files'])})"]
    for k, v in report["summary"].items():
        lines.append(f"  {k}: {v}")
    a = report.get("adapter")
    if a:
        if a["scaling_formula"]:
            lines.append(f"  scaling: {a['scaling_formula']} = {a['scaling']:g}")
        targets = a["target_modules"]
        if isinstance(targets, list) and len(targets) > 8:  # full module names, one per adapted layer: a sample
            lines.append(f"  target_modules ({len(targets)} names): {targets[:4]} … {targets[-2:]}")
        else:
            lines.append(f"  target_modules: {targets}")
        lines.append(f"  modules_to_save: {a['modules_to_save']}")
        lines.append(f"  adapted modules ({len(a['adapted_modules'])}): "
                     + ", ".join(f"{k} ×{v}" for k, v in a["by_suffix"].items()))
        if a["saved_modules"]:
            lines.append(f"  saved whole: {', '.join(a['saved_modules'])}")
    if report["metadata"] and report["kind"] != "gguf":  # GGUF's metadata is the summary (and a chat template)
        lines.append(f"  safetensors metadata: {json.dumps(report['metadata'])}")
    for note in report["notes"]:
        lines.append(f"  {note}")
    c = report.get("against")
    if c:
        lines.append(f"against {c['base']} ({c['base_modules']} modules):")
        if c.get("fresh_heads"):
            lines.append(f"  {', '.join(c['fresh_heads'])}: a head the base does not have, made fresh by the head "
                         "class and saved whole in the adapter")
        if c.get("backbone_prefix"):
            lines.append(f"  the base is a bare backbone: its modules read as {c['backbone_prefix']}.…, as the head "
                         "class loads it; the head itself is made fresh and saved whole in the adapter")
        lines.append(f"  touches {len(c['touched'])}: {', '.join(c['touched'][:8])}"
                     f"{' …' if len(c['touched']) > 8 else ''}")
        lines += [f"  ERROR: {p}" for p in c["problems"]] or ["  every target and saved module matches the base"]
    rows = report["tensors"]
    shown = rows if max_tensors is None else rows[:max_tensors]
    width = max([len(r["name"]) for r in shown] + [4])
    lines.append(f"{'name':<{width}}  {'shape':<18} {'dtype':<7} {'bytes':>12}")
    for r in shown:
        lines.append(f"{r['name']:<{width}}  {str(tuple(r['shape'])):<18} {r['dtype']:<7} {r['bytes']:>12,}")
    if len(shown) < len(rows):
        more = len(rows) - len(shown)
        lines.append(f"… {more} more tensor{'s' if more != 1 else ''}")
    lines.append(f"{report['num_tensors']} tensors, {report['total_elements']:,} values, "
                 f"{report['total_bytes']:,} bytes ({human_bytes(report['total_bytes'])})")
    return "\n".join(lines)


def add_cli_arguments(parser):
    """``minift inspect PATH [--against BASE] [--json FILE] [--max-tensors N]``."""
    parser.add_argument("path", help="a model or adapter directory, a .safetensors file or a .gguf file")
    parser.add_argument("--against", metavar="BASE", default=None,
                        help="for an adapter: the base model; lists the modules it touches and what matches nothing")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    from ..cli import non_negative_int

    parser.add_argument("--max-tensors", type=non_negative_int, default=None, metavar="N",
                        help="list only the first N tensors (default: every one)")


REPORT_KEYS = {"path", "kind", "summary", "tensors"}  # what every report of inspect_path holds


def _check_may_replace_report(out: Path, inspected: Path):
    """``--json`` may replace a report inspect wrote before, nothing else: never a file of the inspected
    checkpoint (its config.json, say), never a file of some other kind."""
    resolved = out.resolve()
    if inspected.exists() and (resolved == inspected.resolve() or inspected.resolve() in resolved.parents):
        raise InspectError(f"--json {out} is inside {inspected}, the path being inspected: write the report "
                           "elsewhere (a report never replaces a checkpoint's files)")
    try:
        previous = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        previous = None
    if not (isinstance(previous, dict) and REPORT_KEYS <= set(previous)):
        raise InspectError(f"--json {out} exists and is not a report of minift inspect: give a new file name "
                           "(minift replaces only files it wrote)")


def run_from_args(args) -> int:
    """Print the report; 1 when ``--against`` found a problem (a target matching nothing, a wrong shape)."""
    out = Path(args.json) if args.json else None
    if out is not None:  # checked before any work, as every long job checks its output
        try:
            check_output_file(out, "--json")
        except ValueError as e:
            raise InspectError(str(e)) from None
    if out is not None and out.exists():
        _check_may_replace_report(out, Path(args.path))
    report = inspect_path(args.path, against=args.against)
    print(format_report(report, max_tensors=args.max_tensors))
    if out is not None:
        write_text_atomically(out, json.dumps(report, indent=1, default=str))
    return 1 if report.get("against", {}).get("problems") else 0
