"""Independent forward passes in plain NumPy, written from the papers / HF semantics, for checking minift.

They read the original files with other code (safetensors' HF names; the ``gguf`` package's own
dequantizer) and use the layouts those files use (GGUF's interleaved RoPE pairs), so agreement with minift
checks minift's loaders, name maps, Q/K row order and forward pass at once.
"""
import math

import numpy as np

erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def bert_forward(t, cfg, ids, mask):
    """HF BertModel: returns (last_hidden_state, pooler_output) in float64."""
    t = {k: v.astype(np.float64) for k, v in t.items() if v.dtype.kind == "f"}
    b, n = ids.shape
    h, d = cfg["num_attention_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(n)]
    x = x + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    bias = np.where(mask[:, None, None, :] == 1, 0.0, -1e9)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ t[p + name + ".weight"].T + t[p + name + ".bias"]  # noqa: E731
        split = lambda v: v.reshape(b, n, h, d).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(lin(x, f"attention.self.{w}")) for w in ("query", "key", "value"))
        a = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias) @ v
        a = a.transpose(0, 2, 1, 3).reshape(b, n, h * d)
        x = layer_norm(x + lin(a, "attention.output.dense"), t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"], eps)
        u = lin(x, "intermediate.dense")
        u = 0.5 * u * (1 + erf(u / math.sqrt(2)))
        x = layer_norm(x + lin(u, "output.dense"), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    pooled = np.tanh(x[:, 0] @ t["pooler.dense.weight"].T + t["pooler.dense.bias"])
    return x, pooled


def llama_gguf_forward(reader, ids):
    """Llama forward straight from a GGUF file (float64), RoPE on adjacent pairs as llama.cpp stores Q/K."""
    import gguf

    f = {k: reader.fields[k].contents() for k in reader.fields if k.startswith("llama.")}
    w = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape))
        w[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(shape)
    H, HK = f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    C = f["llama.embedding_length"]
    D = C // H
    eps, base = f["llama.attention.layer_norm_rms_epsilon"], f["llama.rope.freq_base"]
    n = len(ids)
    pos = np.arange(n)[:, None]
    theta = base ** (-np.arange(0, D, 2) / D)  # (D/2,)
    cos, sin = np.cos(pos * theta), np.sin(pos * theta)  # (n, D/2)

    def rope_adjacent(x):  # x (heads, n, D): rotate (x0, x1), (x2, x3), …
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    x = w["token_embd.weight"][ids]  # (n, C)
    causal = np.tril(np.ones((n, n), dtype=bool))
    for i in range(f["llama.block_count"]):
        p = f"blk.{i}."
        y = rms(x, w[p + "attn_norm.weight"])
        q = (y @ w[p + "attn_q.weight"].T).reshape(n, H, D).transpose(1, 0, 2)
        k = (y @ w[p + "attn_k.weight"].T).reshape(n, HK, D).transpose(1, 0, 2)
        v = (y @ w[p + "attn_v.weight"].T).reshape(n, HK, D).transpose(1, 0, 2)
        q, k = rope_adjacent(q), rope_adjacent(k)
        k, v = np.repeat(k, H // HK, axis=0), np.repeat(v, H // HK, axis=0)
        s = np.where(causal, q @ k.transpose(0, 2, 1) / math.sqrt(D), -np.inf)
        a = (softmax(s) @ v).transpose(1, 0, 2).reshape(n, C)
        x = x + a @ w[p + "attn_output.weight"].T
        y = rms(x, w[p + "ffn_norm.weight"])
        g = y @ w[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (y @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    x = rms(x, w["output_norm.weight"])
    out = w.get("output.weight", w["token_embd.weight"])
    return x @ out.T  # (n, V)
