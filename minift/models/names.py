"""Maps between minift's parameter names and Hugging Face's (and GGUF's), per family.

minift uses one set of names for all families (``layers.3.attn.q_proj.weight``, ``layers.3.mlp.up_proj``…).
Hugging Face names differ by model:

| minift (backbone)             | bert (BertModel)                               | llama (LlamaModel)                   | GGUF (llama)          |
|-------------------------------|------------------------------------------------|--------------------------------------|-----------------------|
| embed.tokens                  | embeddings.word_embeddings                     | embed_tokens                         | token_embd            |
| embed.positions               | embeddings.position_embeddings                 | —                                    | —                     |
| embed.token_types             | embeddings.token_type_embeddings               | —                                    | —                     |
| embed.norm                    | embeddings.LayerNorm                           | —                                    | —                     |
| layers.i.attn.q_proj / k / v  | encoder.layer.i.attention.self.query/key/value | layers.i.self_attn.q_proj/k_proj/v_proj | blk.i.attn_q/k/v   |
| layers.i.attn.o_proj          | encoder.layer.i.attention.output.dense         | layers.i.self_attn.o_proj            | blk.i.attn_output     |
| layers.i.attn_norm            | encoder.layer.i.attention.output.LayerNorm     | layers.i.input_layernorm             | blk.i.attn_norm       |
| layers.i.mlp.up_proj          | encoder.layer.i.intermediate.dense             | layers.i.mlp.up_proj                 | blk.i.ffn_up          |
| layers.i.mlp.gate_proj        | —                                              | layers.i.mlp.gate_proj               | blk.i.ffn_gate        |
| layers.i.mlp.down_proj        | encoder.layer.i.output.dense                   | layers.i.mlp.down_proj               | blk.i.ffn_down        |
| layers.i.mlp_norm             | encoder.layer.i.output.LayerNorm               | layers.i.post_attention_layernorm    | blk.i.ffn_norm        |
| norm                          | —                                              | norm                                 | output_norm           |
| pooler                        | pooler.dense                                   | —                                    | —                     |

GPT-2 stores q, k, v as one ``attn.c_attn`` matrix, transposed (Conv1D, (in, out)); ``to_hf`` / ``from_hf``
split, join and transpose as needed:

| minift                 | gpt2                                       |
|------------------------|--------------------------------------------|
| embed.tokens/positions | wte / wpe                                  |
| layers.i.attn_norm     | h.i.ln_1                                   |
| layers.i.attn.{q,k,v}  | h.i.attn.c_attn (weight (C, 3C), transposed)|
| layers.i.attn.o_proj   | h.i.attn.c_proj (transposed)               |
| layers.i.mlp_norm      | h.i.ln_2                                   |
| layers.i.mlp.up/down   | h.i.mlp.c_fc / c_proj (transposed)         |
| norm                   | ln_f                                       |

Heads: a causal LM wraps the backbone as ``model.`` and adds ``lm_head`` (as HF Llama); BERT's MLM head
``mlm_dense / mlm_norm / mlm_decoder.bias`` is ``cls.predictions.transform.dense / .LayerNorm / cls.predictions.bias``.
"""
from __future__ import annotations

import re

import numpy as np  # host-side only: converting state dicts and file tensors, before they reach the device

_LAYER = {
    "bert": {
        "attn.q_proj": "attention.self.query", "attn.k_proj": "attention.self.key", "attn.v_proj": "attention.self.value",
        "attn.o_proj": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
        "mlp.up_proj": "intermediate.dense", "mlp.down_proj": "output.dense", "mlp_norm": "output.LayerNorm",
    },
    "llama": {
        "attn.q_proj": "self_attn.q_proj", "attn.k_proj": "self_attn.k_proj", "attn.v_proj": "self_attn.v_proj",
        "attn.o_proj": "self_attn.o_proj", "attn_norm": "input_layernorm", "mlp.up_proj": "mlp.up_proj",
        "mlp.gate_proj": "mlp.gate_proj", "mlp.down_proj": "mlp.down_proj", "mlp_norm": "post_attention_layernorm",
    },
    "gguf": {
        "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v", "attn.o_proj": "attn_output",
        "attn_norm": "attn_norm", "mlp.up_proj": "ffn_up", "mlp.gate_proj": "ffn_gate", "mlp.down_proj": "ffn_down",
        "mlp_norm": "ffn_norm",
    },
}
_TOP = {
    "bert": {
        "embed.tokens": "embeddings.word_embeddings", "embed.positions": "embeddings.position_embeddings",
        "embed.token_types": "embeddings.token_type_embeddings", "embed.norm": "embeddings.LayerNorm",
        "pooler": "pooler.dense",
    },
    "llama": {"embed.tokens": "embed_tokens", "norm": "norm"},
    "gguf": {"embed.tokens": "token_embd", "norm": "output_norm"},
}
_LAYER_PREFIX = {"bert": "encoder.layer.", "llama": "layers.", "gguf": "blk."}


def backbone_name_to(family: str, name: str) -> str:
    """minift backbone name (``layers.0.attn.q_proj.weight``) → the ``family``'s name ("bert", "llama", "gguf")."""
    stem, _, leaf = name.rpartition(".")
    if m := re.fullmatch(r"layers\.(\d+)\.(.+)", stem):
        i, part = m.groups()
        if part in _LAYER[family]:
            return f"{_LAYER_PREFIX[family]}{i}.{_LAYER[family][part]}.{leaf}"
    elif stem in _TOP[family]:
        return f"{_TOP[family][stem]}.{leaf}"
    raise KeyError(f"{name!r} has no {family} counterpart")


def backbone_names_from(family: str, names) -> dict:
    """{their name: minift name} for the given minift backbone names."""
    return {backbone_name_to(family, n): n for n in names}


# ----------------------------------------------------------------------------- GPT-2's fused, transposed layout
def gpt2_to_hf(state: dict) -> dict:
    """minift gpt2 backbone state → HF GPT2Model state (c_attn fused, Conv1D weights stored (in, out))."""
    out = {"wte.weight": state["embed.tokens.weight"], "wpe.weight": state["embed.positions.weight"],
           "ln_f.weight": state["norm.weight"], "ln_f.bias": state["norm.bias"]}
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    for i in range(n):
        p, h = f"layers.{i}.", f"h.{i}."
        out[h + "ln_1.weight"], out[h + "ln_1.bias"] = state[p + "attn_norm.weight"], state[p + "attn_norm.bias"]
        out[h + "ln_2.weight"], out[h + "ln_2.bias"] = state[p + "mlp_norm.weight"], state[p + "mlp_norm.bias"]
        qkv_w = [state[f"{p}attn.{x}_proj.weight"] for x in "qkv"]
        out[h + "attn.c_attn.weight"] = np.concatenate(qkv_w, axis=0).T  # (3C, C) -> (C, 3C)
        out[h + "attn.c_attn.bias"] = np.concatenate([state[f"{p}attn.{x}_proj.bias"] for x in "qkv"])
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"), ("mlp.down_proj", "mlp.c_proj")):
            out[h + theirs + ".weight"] = state[p + ours + ".weight"].T
            out[h + theirs + ".bias"] = state[p + ours + ".bias"]
    return out


def gpt2_from_hf(state: dict) -> dict:
    """HF GPT2Model state → minift gpt2 backbone state (the inverse of ``gpt2_to_hf``)."""
    out = {"embed.tokens.weight": state["wte.weight"], "embed.positions.weight": state["wpe.weight"],
           "norm.weight": state["ln_f.weight"], "norm.bias": state["ln_f.bias"]}
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("h."))
    for i in range(n):
        p, h = f"layers.{i}.", f"h.{i}."
        out[p + "attn_norm.weight"], out[p + "attn_norm.bias"] = state[h + "ln_1.weight"], state[h + "ln_1.bias"]
        out[p + "mlp_norm.weight"], out[p + "mlp_norm.bias"] = state[h + "ln_2.weight"], state[h + "ln_2.bias"]
        w, b = state[h + "attn.c_attn.weight"].T, state[h + "attn.c_attn.bias"]  # (3C, C), (3C,)
        for x, wx, bx in zip("qkv", np.split(w, 3, axis=0), np.split(b, 3)):
            out[f"{p}attn.{x}_proj.weight"], out[f"{p}attn.{x}_proj.bias"] = wx, bx
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"), ("mlp.down_proj", "mlp.c_proj")):
            out[p + ours + ".weight"] = state[h + theirs + ".weight"].T
            out[p + ours + ".bias"] = state[h + theirs + ".bias"]
    return out


def unpermute_rope_rows(w, n_heads):
    """Undo the row order GGUF converters give Q and K for RoPE.

    llama.cpp rotates *adjacent* pairs (x₀, x₁), (x₂, x₃)…; Hugging Face rotates the two *halves*
    (xⱼ, xⱼ₊D/2). The converter reorders each head's rows from halves to interleaved:
        w.reshape(H, 2, D/2, in).swapaxes(1, 2)   (row 2j ← j, row 2j+1 ← j + D/2)
    and we apply the inverse permutation to get back the halves layout our RoPE uses.
    """
    out_dim = w.shape[0]
    # (out, …) -> (H, D/2, 2, …) -> swapaxes (H, 2, D/2, …) -> (out, …); out = H·D
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
