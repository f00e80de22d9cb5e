"""Loading pretrained weights: Hugging Face BERT safetensors, GGUF (llama family), minift checkpoints.

Every tensor in a file must be used exactly once and every parameter must be set: a missing, extra or
mis-shaped tensor is an error that names the file and the tensor. When the file is a cached zoo file,
the error also gives the command that fetches a fresh copy (``minift download NAME --force``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np  # host-side only: file contents, before backend.asarray moves them to the device

from .. import backend
from . import quant
from .checkpoint import CheckpointError, load_state, read_safetensors, repair_hint, tidy_leftovers
from .config import TransformerConfig
from .names import backbone_name_to, unpermute_rope_rows
from .quant import dequantize
from .heads import (
    TransformerForQuestionAnswering, TransformerForSequenceClassification, TransformerForTokenClassification,
)
from .transformer import TransformerForCausalLM, TransformerForMaskedLM, TransformerModel


def _unreadable(file, kind: str, error) -> CheckpointError:
    return CheckpointError(f"{file} is not a readable {kind} file: {error}{repair_hint(file)}")


def _assign(model, theirs: dict, rename: dict, file, consumed_extra=()):
    """Copy ``theirs[their_name]`` into the parameter ``rename[their_name]`` of ``model``, checking coverage."""
    own = model.state_dict()
    unused = sorted(set(theirs) - set(rename) - set(consumed_extra))
    if unused:
        raise CheckpointError(f"{file}: tensors the model has no place for: {unused[:10]}{' …' if len(unused) > 10 else ''}")
    missing = sorted(k for k in rename if k not in theirs)
    if missing:
        raise CheckpointError(f"{file}: missing tensors {missing[:10]}{' …' if len(missing) > 10 else ''}")
    targets = sorted(rename.values())
    uncovered = sorted(k for k in own if k not in targets and not any(own[k] is own[t] for t in targets))
    if uncovered:
        raise CheckpointError(f"{file}: nothing in the file sets {uncovered[:10]}")
    for their_name, ours in rename.items():
        arr = theirs[their_name]
        if tuple(arr.shape) != tuple(own[ours].shape):
            raise CheckpointError(f"{file}: {their_name} has shape {tuple(arr.shape)}, expected {tuple(own[ours].shape)} for {ours}")
        own[ours][...] = backend.asarray(np.asarray(arr, dtype=own[ours].dtype))


# ----------------------------------------------------------------------------- Hugging Face BERT
def bert_config_from_hf(hf: dict) -> TransformerConfig:
    if hf.get("model_type") != "bert":
        raise CheckpointError(f"expected a BERT config (model_type 'bert'), got {hf.get('model_type')!r}")
    if hf.get("hidden_act", "gelu") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("only BERT with hidden_act 'gelu' and absolute positions is supported")
    return TransformerConfig(
        family="bert", vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
        num_attention_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), hidden_dropout_prob=hf.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=hf.get("attention_probs_dropout_prob", 0.1), pad_token_id=hf.get("pad_token_id", 0),
        initializer_range=hf.get("initializer_range", 0.02),
    )


def load_bert(directory) -> TransformerModel:
    """A Hugging Face BertModel directory (config.json + model.safetensors) → ``TransformerModel`` in eval mode."""
    d = Path(directory)
    config = bert_config_from_hf(json.loads((d / "config.json").read_text()))
    file = d / "model.safetensors"
    tensors = read_safetensors(file)
    model = TransformerModel(config)
    rename = {backbone_name_to("bert", k): k for k in model.state_dict()}
    extra = []
    if "embeddings.position_ids" in tensors:  # a buffer HF saves: it must be 0, 1, 2, … and is then used up
        pid = tensors["embeddings.position_ids"].reshape(-1)  # (1, max_positions) -> (max_positions,)
        if not np.array_equal(pid, np.arange(len(pid))):
            raise CheckpointError(f"{file}: embeddings.position_ids is not 0..{len(pid) - 1}")
        extra.append("embeddings.position_ids")
    _assign(model, tensors, rename, file, consumed_extra=extra)
    return model.eval()


# ----------------------------------------------------------------------------- GGUF
def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def gguf_config(reader) -> TransformerConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise CheckpointError(f"GGUF architecture {arch!r} is not supported (minift reads 'llama')")
    p = "llama."
    names = {t.name for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = _field(reader, p + "vocab_size") or (len(tokens.data) if tokens is not None else None)
    return TransformerConfig(
        family="llama", vocab_size=int(vocab), hidden_size=int(_field(reader, p + "embedding_length")),
        num_hidden_layers=int(_field(reader, p + "block_count")), num_attention_heads=int(_field(reader, p + "attention.head_count")),
        num_key_value_heads=int(_field(reader, p + "attention.head_count_kv", _field(reader, p + "attention.head_count"))),
        intermediate_size=int(_field(reader, p + "feed_forward_length")),
        max_position_embeddings=int(_field(reader, p + "context_length", 2048)),
        layer_norm_eps=float(_field(reader, p + "attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(_field(reader, p + "rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"), eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )


def gguf_tensors(reader, keep=()) -> dict:
    """{GGUF name: array in NumPy (row-major) order}: float32, dequantized by ``minift.models.quant``, except
    the names in ``keep``, which stay raw blocks, one row of the weight per row (uint8, (rows, bytes per row))."""
    out = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape))  # GGUF lists the fastest-varying axis first
        if t.name in keep:
            out[t.name] = np.asarray(t.data).view(np.uint8).reshape(shape[0], -1)  # (out, bytes per row)
        else:
            out[t.name] = dequantize(t.data, t.tensor_type.name, shape)
    return out


KEEPABLE = ("Q8_0", "Q4_0", "Q4_1")  # block formats a QuantizedLinear computes with


def load_gguf(path, keep_quantized=False) -> TransformerForCausalLM:
    """A llama-family GGUF file → ``TransformerForCausalLM`` (eval mode).

    Every tensor is dequantized to float32, unless ``keep_quantized``: then each layer's Linear weight stored
    in a block format (Q8_0, Q4_0, Q4_1) stays in its blocks, in a ``QuantizedLinear`` (the QLoRA base);
    the embeddings (and the tied LM head) and the norms are float32.
    """
    import gguf

    from ..nn import Linear, QuantizedLinear
    from ..nn.layers import init_empty_weights
    from .quant import _replace

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, "GGUF", e) from None
    config = gguf_config(reader)
    with init_empty_weights():  # every parameter is set from the file below (_assign checks that)
        model = TransformerForCausalLM(config)
    rename = {}
    for k in model.model.state_dict():
        rename[backbone_name_to("gguf", k)] = "model." + k
    if not config.tie_word_embeddings:
        rename["output.weight"] = "lm_head.weight"
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    keep = set()
    if keep_quantized:  # swap the float Linears for empty quantized ones, then fill their blocks below
        for name, module in list(model.named_modules()):
            if type(module) is not Linear or not name.startswith("model."):
                continue
            gguf_name = backbone_name_to("gguf", name.removeprefix("model.") + ".weight")
            if kinds.get(gguf_name) in KEEPABLE:
                kind = kinds[gguf_name]
                row_bytes = module.in_features // quant.BLOCK_VALUES[kind] * quant.BYTES_PER_BLOCK[kind]
                empty = np.zeros((module.out_features, row_bytes), dtype=np.uint8)  # (out, bytes per row)
                _replace(model, name, QuantizedLinear(empty, kind, module.in_features, module.out_features, module.bias))
                rename[gguf_name] = rename[gguf_name].removesuffix(".weight") + ".qweight"
                keep.add(gguf_name)
    tensors = gguf_tensors(reader, keep)
    h, hk = config.num_attention_heads, config.num_key_value_heads
    for name in list(tensors):  # a permutation of whole rows: the same on floats and on rows of blocks
        if name.endswith("attn_q.weight"):
            tensors[name] = unpermute_rope_rows(tensors[name], h)
        elif name.endswith("attn_k.weight"):
            tensors[name] = unpermute_rope_rows(tensors[name], hk)
    _assign(model, tensors, rename, path)
    return model.eval()


# ----------------------------------------------------------------------------- minift checkpoints
ARCHITECTURES = {c.__name__: c for c in (
    TransformerModel, TransformerForCausalLM, TransformerForMaskedLM,
    TransformerForSequenceClassification, TransformerForTokenClassification, TransformerForQuestionAnswering,
)}


def load_minift(directory):
    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    arch = cfg.get("architecture", "TransformerModel")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{d / 'config.json'}: unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch](TransformerConfig.from_dict(cfg, file=d / "config.json"))
    return load_state(model, d).eval()


def from_pretrained(name_or_path, keep_quantized=False):
    """``"minilm"`` / ``"smollm2"`` (zoo, fetched on first use), a ``.gguf`` file, or a directory: a minift
    checkpoint or a Hugging Face one (bert, gpt2 or llama with any head of ``minift.models.hf``; safetensors
    only, never a pickled ``pytorch_model.bin``).

    ``keep_quantized`` (GGUF only): the layers' Linear weights stay in their 4/8-bit blocks (``load_gguf``).

    The model comes back in eval mode, as in Hugging Face; call ``.train()`` before fine-tuning.
    """
    from .. import zoo
    from .hf import is_hf_config, load_hf, read_json

    if name_or_path == "minilm":
        return load_bert(zoo.path("minilm"))
    if name_or_path == "smollm2":
        return load_gguf(zoo.path("smollm2", "model.gguf"), keep_quantized)
    p = Path(name_or_path)
    tidy_leftovers(p)  # a save that was killed may have left temporaries, or stranded the checkpoint
    if p.suffix == ".gguf" and p.is_file():
        return load_gguf(p, keep_quantized)
    if keep_quantized:
        raise ValueError(f"keep_quantized applies to GGUF files (smollm2 or a .gguf path), not {name_or_path!r}; "
                         "quantize a float model with minift.models.quantize_model(model, 'NF4')")
    if not (p / "config.json").exists():
        raise CheckpointError(f"{name_or_path!r} is neither a zoo model (minilm, smollm2) nor a directory with config.json")
    cfg = read_json(p / "config.json")  # names the file when it is not JSON
    if cfg.get("format") == "minift":
        return load_minift(p)
    if is_hf_config(cfg):  # model_type, architectures: by transformers or save_pretrained(format="hf")
        return load_hf(p)
    raise CheckpointError(f"{p / 'config.json'}: neither a minift checkpoint (format: minift) nor a "
                          "Hugging Face config (model_type, architectures)")
