"""Hugging Face interop: minift models ↔ directories that ``transformers`` reads and writes.

    save_pretrained(model, "out", tokenizer=tok, format="hf")     # then, in PyTorch:
    transformers.AutoModelForSequenceClassification.from_pretrained("out")
    from_pretrained("a-dir-saved-by-transformers")                 # and back (safetensors only)

A Hugging Face model directory is three things:

* ``config.json``: ``model_type`` (the family), ``architectures`` (the class to build, e.g.
  ``["GPT2ForSequenceClassification"]``) and the sizes under each family's own field names
  (``n_embd`` in GPT-2 is ``hidden_size`` in BERT and Llama).
* ``model.safetensors``: every tensor under the name of the PyTorch module that holds it
  (``transformer.h.0.attn.c_attn.weight``). Nothing is pickled; a ``pytorch_model.bin`` is a pickle, which
  can run arbitrary code when loaded, so minift refuses it.
* ``tokenizer.json`` (+ ``tokenizer_config.json`` with the special tokens), when a tokenizer is given.

Which minift class is which Hugging Face class (the HF class name is what ``architectures`` holds):

    TransformerModel                      →  BertModel, GPT2Model, LlamaModel
    TransformerForCausalLM                →  GPT2LMHeadModel, LlamaForCausalLM
    TransformerForMaskedLM                →  BertForMaskedLM
    TransformerForSequenceClassification  →  BertForSequenceClassification, GPT2For…, LlamaFor…
    TransformerForTokenClassification     →  BertForTokenClassification, GPT2For…, LlamaFor…
    TransformerForQuestionAnswering       →  BertForQuestionAnswering, GPT2For…, LlamaFor…

Tensor names. The backbone's names are mapped by ``minift.models.names`` (see its tables). A head class
keeps its backbone under an attribute whose name becomes a prefix: ``bert.`` (all BERT heads),
``transformer.`` (all GPT-2 heads, and LlamaForQuestionAnswering), ``model.`` (the other Llama heads); a
bare backbone (BertModel, …) has no prefix. The heads themselves:

| minift                   | Hugging Face                              | note                               |
|--------------------------|-------------------------------------------|------------------------------------|
| lm_head                  | lm_head                                   | not in the file when tied          |
| mlm_dense                | cls.predictions.transform.dense           |                                    |
| mlm_norm                 | cls.predictions.transform.LayerNorm       |                                    |
| mlm_decoder.weight       | cls.predictions.decoder.weight            | tied to the word embeddings        |
| mlm_decoder.bias         | cls.predictions.bias                      | HF ties decoder.bias to it         |
| classifier (bert)        | classifier (reads bert.pooler.dense)      |                                    |
| classifier (gpt2, llama) | score: sequence classification, no bias   | token classification: next row     |
| classifier (token cls.)  | classifier (bert, gpt2), score (llama)    | with bias                          |
| qa_outputs               | qa_outputs                                | 2 outputs: config has num_labels 2 |

Three things to notice, each a classic source of silently wrong weights:

1. GPT-2 is stored with ``Conv1D`` layers, whose weight is (in, out) — the transpose of ``nn.Linear``'s
   (out, in). Every GPT-2 matrix is transposed on the way in and on the way out.
2. GPT-2 fuses the query, key and value projections into one ``c_attn`` of width 3C: columns [0, C) are
   q, [C, 2C) k, [2C, 3C) v. minift has three Linears; the file has one matrix, split and joined here.
3. Tied weights. When the LM head (or BERT's MLM decoder) *is* the embedding matrix, the file holds it
   once, under the embedding's name, and ``tie_word_embeddings: true`` in config.json tells the loader
   to tie again — that is what Hugging Face writes. When untied (``tie_word_embeddings: false``), both
   matrices are written; minift's MLM decoder is always tied, so for an MLM saved with
   ``tie_word_embeddings: false`` the same matrix is written twice, once for each name HF looks up.

Nothing else needs converting: minift's llama uses Hugging Face's rotate-half RoPE layout (the GGUF
loader undoes llama.cpp's row permutation to get there), and its grouped-query attention shares key/value
head j among query heads j·H/H_kv … (j+1)·H/H_kv − 1, as HF's ``repeat_kv`` does.

What does not carry over: a BERT head without a pooler in HF (masked LM, token classification, QA) is
written without minift's (unused) pooler; reading such a file leaves the pooler as initialized. Dropout
probabilities map to each family's fields (``resid_pdrop``/``embd_pdrop``/``attn_pdrop`` in GPT-2,
``attention_dropout`` in Llama; Llama has no hidden dropout, so minift's is kept as an extra field).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np  # host-side only: file tensors, before they reach the device

from .. import backend
from .checkpoint import CheckpointError, missing_weights_error, read_json, read_safetensors, unique_state
from .config import TransformerConfig
from .heads import (
    TransformerForQuestionAnswering, TransformerForSequenceClassification, TransformerForTokenClassification,
)
from .names import backbone_name_to, gpt2_from_hf, gpt2_to_hf
from .transformer import TransformerForCausalLM, TransformerForMaskedLM, TransformerModel

MINIFT_CLASSES = {c.__name__: c for c in (
    TransformerModel, TransformerForCausalLM, TransformerForMaskedLM,
    TransformerForSequenceClassification, TransformerForTokenClassification, TransformerForQuestionAnswering,
)}

# minift class → {family: Hugging Face class}
HF_CLASSES = {
    "TransformerModel": {"bert": "BertModel", "gpt2": "GPT2Model", "llama": "LlamaModel"},
    "TransformerForCausalLM": {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"},
    "TransformerForMaskedLM": {"bert": "BertForMaskedLM"},
    "TransformerForSequenceClassification": {
        "bert": "BertForSequenceClassification", "gpt2": "GPT2ForSequenceClassification",
        "llama": "LlamaForSequenceClassification"},
    "TransformerForTokenClassification": {
        "bert": "BertForTokenClassification", "gpt2": "GPT2ForTokenClassification",
        "llama": "LlamaForTokenClassification"},
    "TransformerForQuestionAnswering": {
        "bert": "BertForQuestionAnswering", "gpt2": "GPT2ForQuestionAnswering",
        "llama": "LlamaForQuestionAnswering"},
}
# Hugging Face class → (family, minift class name): every architecture minift reads
SUPPORTED = {hf: (family, ours) for ours, by_family in HF_CLASSES.items() for family, hf in by_family.items()}
BASE_MODEL = {"bert": "BertModel", "gpt2": "GPT2Model", "llama": "LlamaModel"}  # model_type → bare backbone

# The attribute under which each HF head class keeps its backbone (the prefix of the backbone's names).
_BACKBONE_ATTRIBUTE = {"bert": "bert.", "gpt2": "transformer.", "llama": "model."}
# BERT heads that HF builds with add_pooling_layer=False: their files have no pooler.
_BERT_WITHOUT_POOLER = ("BertForMaskedLM", "BertForTokenClassification", "BertForQuestionAnswering")


def hf_architecture(model) -> str:
    """The Hugging Face class name for ``model``, e.g. ``GPT2ForSequenceClassification``."""
    ours, family = type(model).__name__, model.config.family
    if family not in HF_CLASSES.get(ours, {}):
        raise ValueError(f"{ours} ({family} family) has no Hugging Face counterpart; "
                         f"supported: {', '.join(sorted(SUPPORTED))}")
    return HF_CLASSES[ours][family]


def _prefix(architecture: str, family: str) -> str:
    """Where the backbone's tensors live in the file: "" for a bare backbone, else the head's attribute."""
    if architecture == BASE_MODEL[family]:
        return ""
    if architecture == "LlamaForQuestionAnswering":
        return "transformer."  # HF names Llama's QA backbone like GPT-2's, unlike the other Llama heads
    return _BACKBONE_ATTRIBUTE[family]


# heads whose Linear HF calls ``score`` rather than ``classifier``
_SCORE = ("GPT2ForSequenceClassification", "LlamaForSequenceClassification", "LlamaForTokenClassification")
_MLM = {"mlm_dense": "cls.predictions.transform.dense", "mlm_norm": "cls.predictions.transform.LayerNorm",
        "mlm_decoder": "cls.predictions.decoder"}


def _head_name(name: str, architecture: str) -> str:
    """The HF name of one of a head's own tensors, e.g. ``classifier.weight`` → ``score.weight``."""
    if name == "mlm_decoder.bias":
        return "cls.predictions.bias"  # HF's decoder.bias is tied to this one, which is what it saves
    module, _, leaf = name.rpartition(".")
    if module == "classifier" and architecture in _SCORE:
        module = "score"
    return f"{_MLM.get(module, module)}.{leaf}"


# ----------------------------------------------------------------------------- state: minift → HF
def to_hf_state(model, with_pooler: bool | None = None) -> dict:
    """{HF tensor name: array} for ``model`` — exactly what ``model.safetensors`` holds for its HF class.

    ``with_pooler`` (bert only) overrides whether the pooler is included; by default it is included for
    the classes whose HF counterpart has one (BertModel, BertForSequenceClassification).
    """
    family, architecture = model.config.family, hf_architecture(model)
    state, _aliases = unique_state(model)  # a tied matrix appears once, under the embedding's name
    if isinstance(model, TransformerModel):
        backbone, head = state, {}
    else:  # heads keep their backbone as .model
        backbone = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        head = {k: v for k, v in state.items() if not k.startswith("model.")}
    if with_pooler is None:
        with_pooler = architecture not in _BERT_WITHOUT_POOLER
    if not with_pooler:
        backbone = {k: v for k, v in backbone.items() if not k.startswith("pooler.")}

    if family == "gpt2":
        hf_backbone = gpt2_to_hf(backbone)  # fused c_attn, transposed Conv1D weights
    else:
        hf_backbone = {backbone_name_to(family, k): v for k, v in backbone.items()}
    prefix = _prefix(architecture, family)
    out = {prefix + k: v for k, v in hf_backbone.items()}
    for name, value in head.items():
        out[_head_name(name, architecture)] = value
    if isinstance(model, TransformerForMaskedLM) and not model.config.tie_word_embeddings:
        # config.json will say "untied", so HF looks the decoder up by its own name: write it there too
        out["cls.predictions.decoder.weight"] = out[prefix + "embeddings.word_embeddings.weight"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- state: HF → minift
def _minift_names(model, architecture: str) -> dict:
    """{HF name: minift name} for every tensor that is a plain rename (everything but GPT-2's backbone)."""
    family = model.config.family
    inner = "" if isinstance(model, TransformerModel) else "model."
    prefix = _prefix(architecture, family)
    out = {}
    for name in model.state_dict():
        if isinstance(model, TransformerModel) or name.startswith("model."):
            if family != "gpt2":  # GPT-2's backbone is not a plain rename: see load_hf_state
                out[prefix + backbone_name_to(family, name[len(inner):])] = name
        elif name != "mlm_decoder.weight":  # the tied decoder is set by setting the embeddings
            out[_head_name(name, architecture)] = name
    return out


# tensors some HF versions save that are not weights: derived buffers, checked or skipped
_BUFFERS = re.compile(r"(.*\.)?(embeddings\.position_ids"  # BERT's 0, 1, 2, …
                      r"|h\.\d+\.attn\.(masked_)?bias"  # GPT-2's causal mask (older transformers)
                      r"|(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq)")  # Llama's RoPE frequencies


def load_hf_state(model, tensors: dict, file) -> None:
    """Copy the tensors of a HF ``model.safetensors`` into ``model``, checking that each is used once.

    The file's names must be exactly those ``to_hf_state`` would write for this model, except for:
    the pooler of a BERT head that HF builds without one (optional: read if present); buffers some HF
    versions save (position ids, GPT-2's causal mask, RoPE frequencies: skipped); the tied copies
    ``lm_head.weight`` / ``cls.predictions.decoder.weight`` (skipped: tying again sets them, as in HF) and
    ``cls.predictions.decoder.bias`` (an older name of ``cls.predictions.bias``).
    """
    family, architecture = model.config.family, hf_architecture(model)
    prefix = _prefix(architecture, family)
    tensors = dict(tensors)
    for name in [k for k in tensors if _BUFFERS.fullmatch(k)]:
        if name.endswith("position_ids"):
            ids = np.asarray(tensors[name]).reshape(-1)  # (1, max_positions) -> (max_positions,)
            if not np.array_equal(ids, np.arange(len(ids))):
                raise CheckpointError(f"{file}: {name} is not 0..{len(ids) - 1}")
        del tensors[name]
    if "cls.predictions.decoder.bias" in tensors:  # HF ties decoder.bias to cls.predictions.bias
        alias = tensors.pop("cls.predictions.decoder.bias")
        kept = tensors.setdefault("cls.predictions.bias", alias)
        if not np.array_equal(kept, alias):
            raise CheckpointError(f"{file}: cls.predictions.bias and cls.predictions.decoder.bias differ")
    embeddings = prefix + {"bert": "embeddings.word_embeddings.weight", "gpt2": "wte.weight",
                           "llama": "embed_tokens.weight"}[family]
    if isinstance(model, TransformerForMaskedLM) and "cls.predictions.decoder.weight" in tensors:
        decoder = tensors.pop("cls.predictions.decoder.weight")
        if not model.config.tie_word_embeddings and embeddings in tensors and not np.array_equal(
                decoder, tensors[embeddings]):
            raise CheckpointError(f"{file}: cls.predictions.decoder.weight differs from {embeddings}; "
                                  "minift's masked-LM decoder is always tied to the word embeddings")
    if model.config.tie_word_embeddings and isinstance(model, TransformerForCausalLM):
        tensors.pop("lm_head.weight", None)  # a copy some versions write; tying sets it from the embeddings

    expected = to_hf_state(model, with_pooler=True)
    expected.pop("cls.predictions.decoder.weight", None)  # tied: set by setting the embeddings
    optional = {k for k in expected if architecture in _BERT_WITHOUT_POOLER and ".pooler." in f".{k}"}
    unused = sorted(set(tensors) - set(expected))
    if unused:
        raise CheckpointError(f"{file}: tensors the model ({architecture}) has no place for: {_few(unused)}")
    missing = sorted(set(expected) - set(tensors) - optional)
    if missing:
        raise CheckpointError(f"{file}: missing tensors for {architecture}: {_few(missing)}")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{file}: {name} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(expected[name].shape)} ({architecture})")

    ours = {}  # minift name → array
    for hf_name, name in _minift_names(model, architecture).items():
        if hf_name in tensors:
            ours[name] = tensors[hf_name]
    if family == "gpt2":  # un-fuse c_attn, transpose the Conv1D weights back
        inner = "" if isinstance(model, TransformerModel) else "model."
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        ours.update({inner + k: v for k, v in gpt2_from_hf(sub).items()})
    own = model.state_dict()
    for name, value in ours.items():
        own[name][...] = backend.asarray(np.asarray(value, dtype=own[name].dtype))


def _few(names, n=10) -> str:
    return f"{names[:n]}{' …' if len(names) > n else ''}"


# ----------------------------------------------------------------------------- config.json
def _id2label(config: TransformerConfig) -> dict:
    """minift's id2label, or HF's default names LABEL_0, LABEL_1, … when there is none."""
    names = config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)}
    return {str(i): str(names[i]) for i in sorted(names)}


def to_hf_config(model, dtype: str = "float32") -> dict:
    """``config.json`` for ``model`` under its family's Hugging Face field names."""
    c, family = model.config, model.config.family
    out = {"model_type": family, "architectures": [hf_architecture(model)], "vocab_size": c.vocab_size,
           "initializer_range": c.initializer_range, "pad_token_id": c.pad_token_id,
           "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
           "tie_word_embeddings": c.tie_word_embeddings, "dtype": dtype}
    id2label = _id2label(c)
    if isinstance(model, TransformerForQuestionAnswering):
        # BertForQuestionAnswering sizes qa_outputs by num_labels: a QA head's two "labels" are start and end
        id2label = {"0": "LABEL_0", "1": "LABEL_1"}
    out.update(id2label=id2label, label2id={name: int(i) for i, name in id2label.items()})
    if family == "bert":
        out.update(hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                   num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                   hidden_act="gelu",  # HF's "gelu" is the exact (erf) GELU, as minift's bert family
                   max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
                   layer_norm_eps=c.layer_norm_eps, position_embedding_type="absolute",
                   hidden_dropout_prob=c.hidden_dropout_prob,
                   attention_probs_dropout_prob=c.attention_probs_dropout_prob)
    elif family == "gpt2":
        out.update(n_embd=c.hidden_size, n_layer=c.num_hidden_layers, n_head=c.num_attention_heads,
                   n_inner=c.intermediate_size, n_positions=c.max_position_embeddings,
                   layer_norm_epsilon=c.layer_norm_eps,
                   activation_function="gelu_new",  # GELU's tanh approximation, as minift's gpt2 family
                   resid_pdrop=c.hidden_dropout_prob, embd_pdrop=c.hidden_dropout_prob,
                   attn_pdrop=c.attention_probs_dropout_prob)
    else:
        out.update(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                   num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                   num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, hidden_act="silu",
                   max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.layer_norm_eps,
                   # transformers ≥ 5 reads rope_parameters; older versions read rope_theta
                   rope_theta=c.rope_theta,
                   rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
                   attention_bias=False, mlp_bias=False, attention_dropout=c.attention_probs_dropout_prob,
                   hidden_dropout_prob=c.hidden_dropout_prob)  # not HF Llama's: kept for minift
    return out


def _unsupported(file, what: str) -> CheckpointError:
    return CheckpointError(f"{file}: {what} is not supported by minift's implementation of this family")


def from_hf_config(hf: dict, file="config.json") -> TransformerConfig:
    """A HF ``config.json`` (bert, gpt2 or llama) → ``TransformerConfig``; refuses variants minift lacks.

    Missing fields take the value HF's config class would give them. Every error names ``file``.
    """
    try:
        return _from_hf_config(hf, file)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError) as e:  # a field of the wrong kind, or a required one missing
        what = f"it has no {e.args[0]!r} field" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"{file}: {what}") from None


def _from_hf_config(hf: dict, file) -> TransformerConfig:
    family = hf.get("model_type")
    if family not in BASE_MODEL:
        raise CheckpointError(f"{file}: model_type {family!r} is not supported; minift reads "
                              f"{', '.join(sorted(BASE_MODEL))}")
    if hf.get("add_cross_attention") or hf.get("is_encoder_decoder"):
        raise _unsupported(file, "cross-attention (an encoder-decoder)")
    if family == "bert" and hf.get("is_decoder"):
        raise _unsupported(file, "a causal BERT (is_decoder=true)")
    id2label = {int(k): v for k, v in hf["id2label"].items()} if hf.get("id2label") else None
    num_labels = len(id2label) if id2label else int(hf.get("num_labels", 2))
    if id2label == {i: f"LABEL_{i}" for i in range(num_labels)}:
        id2label = None  # HF's default names: minift's "no names"
    common = dict(family=family, vocab_size=hf["vocab_size"], num_labels=num_labels, id2label=id2label,
                  initializer_range=hf.get("initializer_range", 0.02))
    if family == "bert":
        if hf.get("hidden_act", "gelu") != "gelu":
            raise _unsupported(file, f"hidden_act {hf['hidden_act']!r} (minift's bert uses 'gelu')")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise _unsupported(file, f"position_embedding_type {hf['position_embedding_type']!r}")
        return TransformerConfig(
            **common, hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
            num_attention_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_dropout_prob=hf.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=hf.get("attention_probs_dropout_prob", 0.1),
            pad_token_id=hf.get("pad_token_id", 0), bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"), tie_word_embeddings=hf.get("tie_word_embeddings", True))
    if family == "gpt2":
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise _unsupported(file, f"activation_function {hf['activation_function']!r} "
                                     "(minift's gpt2 uses GELU's tanh approximation, 'gelu_new')")
        if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
            raise _unsupported(file, "attention scaling other than 1/√head_dim")
        n_embd = hf.get("n_embd", 768)
        return TransformerConfig(
            **common, hidden_size=n_embd, num_hidden_layers=hf.get("n_layer", 12),
            num_attention_heads=hf.get("n_head", 12), intermediate_size=hf.get("n_inner") or 4 * n_embd,
            max_position_embeddings=hf.get("n_positions", 1024),
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), hidden_dropout_prob=hf.get("resid_pdrop", 0.1),
            attention_probs_dropout_prob=hf.get("attn_pdrop", 0.1), pad_token_id=hf.get("pad_token_id"),
            bos_token_id=hf.get("bos_token_id", 50256), eos_token_id=hf.get("eos_token_id", 50256),
            tie_word_embeddings=hf.get("tie_word_embeddings", True))
    # llama
    if hf.get("hidden_act", "silu") != "silu":
        raise _unsupported(file, f"hidden_act {hf['hidden_act']!r} (minift's llama uses SwiGLU, 'silu')")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise _unsupported(file, "attention_bias / mlp_bias (minift's llama has no biases)")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise _unsupported(file, f"RoPE scaling {rope!r} (minift implements plain RoPE)")
    heads = hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, hf["hidden_size"] // heads):
        raise _unsupported(file, f"head_dim {hf['head_dim']} ≠ hidden_size / num_attention_heads")
    return TransformerConfig(
        **common, hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
        num_attention_heads=heads, num_key_value_heads=hf.get("num_key_value_heads") or heads,
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        layer_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        hidden_dropout_prob=hf.get("hidden_dropout_prob", 0.0),
        attention_probs_dropout_prob=hf.get("attention_dropout", 0.0),
        pad_token_id=hf.get("pad_token_id"), bos_token_id=hf.get("bos_token_id", 1),
        eos_token_id=hf.get("eos_token_id", 2), tie_word_embeddings=hf.get("tie_word_embeddings", False))


def minift_class_of(hf: dict, file="config.json") -> str:
    """The minift class name that a HF ``config.json`` asks for: from ``architectures``, else the backbone."""
    architectures = hf.get("architectures") or [BASE_MODEL.get(hf.get("model_type"), "?")]
    architecture = architectures[0]
    if architecture not in SUPPORTED:
        raise CheckpointError(f"{file}: architecture {architecture!r} is not supported; minift reads "
                              f"{', '.join(sorted(SUPPORTED))}")
    family, ours = SUPPORTED[architecture]
    if hf.get("model_type") not in (None, family):
        raise CheckpointError(f"{file}: architecture {architecture!r} does not match model_type "
                              f"{hf.get('model_type')!r}")
    return ours


def is_hf_config(cfg: dict) -> bool:
    """Whether a parsed config.json is Hugging Face's (``model_type``, ``architectures``), not minift's."""
    return cfg.get("format") != "minift" and ("model_type" in cfg or "architectures" in cfg)


# ----------------------------------------------------------------------------- files
def read_hf_tensors(directory) -> tuple[dict, Path]:
    """All tensors of a HF directory: ``model.safetensors``, or the shards its ``….index.json`` lists."""
    d = Path(directory)
    single, index = d / "model.safetensors", d / "model.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        weight_map = read_json(index).get("weight_map", {})
        files = [d / name for name in sorted(set(weight_map.values()))]
    else:
        raise missing_weights_error(d, single)
    tensors = {}
    for file in files:
        tensors.update(read_safetensors(file))
    return tensors, files[0] if len(files) == 1 else index


def load_hf(directory):
    """A Hugging Face directory (bert, gpt2 or llama; safetensors) → the matching minift model, eval mode."""
    d = Path(directory)
    hf = read_json(d / "config.json")
    ours = minift_class_of(hf, d / "config.json")
    config = from_hf_config(hf, d / "config.json")
    model = MINIFT_CLASSES[ours](config)
    tensors, file = read_hf_tensors(d)
    load_hf_state(model, tensors, file)
    return model.eval()


def hf_checkpoint(model) -> tuple[dict, dict, dict]:
    """(tensors, config.json dict, safetensors metadata) of ``model`` in Hugging Face's layout."""
    if getattr(model.config, "classifier_pooling", None) not in (None, "pooler" if model.config.family == "bert"
                                                                  else "last"):
        raise CheckpointError(f"this classifier reads pooling={model.config.classifier_pooling!r}; Hugging Face's "
                              f"{model.config.family} heads read the "
                              f"{'pooler' if model.config.family == 'bert' else 'last token'} only, so it would "
                              "load there with other outputs: save it with format='minift'")
    state = to_hf_state(model)
    dtypes = {str(v.dtype) for v in state.values()}
    config = to_hf_config(model, dtype=dtypes.pop() if len(dtypes) == 1 else "float32")
    if model.config.family != "bert" and isinstance(model, TransformerForSequenceClassification) \
            and model.config.pad_token_id is None:
        import warnings

        warnings.warn("a gpt2/llama sequence classifier saved without pad_token_id: transformers finds "
                      "each row's last token through pad_token_id and refuses batches of more than one "
                      "without it; set model.config.pad_token_id first", stacklevel=3)
    return state, config, {"format": "pt"}  # transformers checks that the metadata says "pt"


def write_hf_tokenizer_config(directory) -> None:
    """Make minift's ``tokenizer_config.json`` one that ``transformers.AutoTokenizer`` reads.

    minift's Tokenizer writes the special tokens under HF's own keys (``pad_token``, ``eos_token``, …).
    Two additions: ``tokenizer_class: PreTrainedTokenizerFast`` — the generic class that wraps any
    ``tokenizer.json`` as it is, rather than the family's class, which may rebuild the post-processor —
    and dropping keys whose value is null, so that HF uses its own default for them.
    """
    file = Path(directory) / "tokenizer_config.json"
    cfg = read_json(file) if file.exists() else {}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    file.write_text(json.dumps(cfg, indent=1))
