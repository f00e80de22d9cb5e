"""Text generation: greedy, temperature, top-k and top-p (nucleus) sampling, with a KV cache.

Step t feeds only the newest token; the keys and values of the earlier ones come from the cache, so a
step costs O(T) attention instead of re-running the whole prefix (O(T²) overall instead of O(T³)).
Left padding: prompts of different lengths are padded on the left and masked; positions count real
tokens only, so a padded prompt generates exactly what it would alone.
"""
from __future__ import annotations

from .. import backend
from ..autograd.grad_mode import no_grad
from ..backend import xp


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """Scale by 1/temperature, keep the k most likely tokens and/or the smallest set with mass ≥ top_p.

    Removed entries become −∞. Follows Hugging Face's warpers: top-p keeps the first token whose
    cumulative probability crosses p (so at least one token survives).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use do_sample=False for greedy)")
    z = logits / temperature
    if top_k is not None and 0 < top_k < z.shape[-1]:
        kth = xp.sort(z, axis=-1)[:, -top_k][:, None]  # (B, 1): the k-th largest logit
        z = xp.where(z < kth, -xp.inf, z)
    if top_p is not None and top_p < 1.0:
        order = xp.argsort(-z, axis=-1)  # most likely first
        sorted_z = xp.take_along_axis(z, order, axis=-1)
        p = xp.exp(sorted_z - sorted_z[:, :1])
        p /= p.sum(axis=-1, keepdims=True)
        cum_before = xp.cumsum(p, axis=-1) - p  # mass of the tokens ranked above each one
        drop_sorted = cum_before >= top_p
        drop = xp.zeros_like(drop_sorted)
        xp.put_along_axis(drop, order, drop_sorted, axis=-1)
        z = xp.where(drop, -xp.inf, z)
    return z


def sample(z):
    """One token per row from softmax(z) by inverting the CDF with a uniform draw (minift's seeded generator)."""
    p = xp.exp(z - z.max(axis=-1, keepdims=True))
    cdf = xp.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    u = backend.asarray(backend.rng().random((z.shape[0], 1)))
    return xp.minimum((cdf < u).sum(axis=-1), z.shape[-1] - 1)


def generate(model, input_ids, max_new_tokens=32, attention_mask=None, do_sample=False, temperature=1.0, top_k=None,
             top_p=None, eos_token_id=None, pad_token_id=None, use_cache=True, output_scores=False):
    """Continue ``input_ids`` (B, T) by up to ``max_new_tokens``; returns ids (B, T + new) [and the step logits].

    Greedy unless ``do_sample``. A sequence that produced ``eos_token_id`` is padded with ``pad_token_id``
    (default: the eos id) while the others go on; generation stops when all are done.
    """
    ids = xp.asarray(input_ids)
    ids = ids[None, :] if ids.ndim == 1 else ids
    b = ids.shape[0]
    mask = xp.ones(ids.shape, dtype=ids.dtype) if attention_mask is None else xp.asarray(attention_mask).reshape(ids.shape)
    eos = eos_token_id if eos_token_id is not None else model.config.eos_token_id
    pad = pad_token_id if pad_token_id is not None else (eos if eos is not None else 0)
    done = xp.zeros(b, dtype=bool)
    scores = []
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            cache, step_ids = None, ids
            for _ in range(max_new_tokens):
                if use_cache:
                    out = model(step_ids, attention_mask=mask, past_key_values=cache, use_cache=True)
                    cache = out.past_key_values
                else:
                    out = model(ids, attention_mask=mask)
                logits = out.logits.data[:, -1, :].astype(xp.float64)  # (B, V)
                scores.append(logits)
                if do_sample:
                    nxt = sample(filter_logits(logits, temperature, top_k, top_p))
                else:
                    nxt = logits.argmax(axis=-1)
                nxt = xp.where(done, pad, nxt).astype(ids.dtype)
                ids = xp.concatenate([ids, nxt[:, None]], axis=1)
                mask = xp.concatenate([mask, xp.ones((b, 1), dtype=mask.dtype)], axis=1)
                step_ids = nxt[:, None]
                if eos is not None:
                    done = done | (nxt == eos)
                    if bool(done.all()):
                        break
    finally:
        model.train(was_training)
    if output_scores:
        return ids, xp.stack(scores, axis=1)  # (B, new, V)
    return ids


def generate_text(model, tokenizer, prompt, max_new_tokens=64, chat=False, **kw):
    """Convenience: a string (or a chat) in, the generated continuation out."""
    if chat:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    else:
        text = prompt
    enc = tokenizer([text], add_special_tokens=not chat)
    ids = generate(model, enc["input_ids"], max_new_tokens=max_new_tokens, attention_mask=enc["attention_mask"],
                   eos_token_id=kw.pop("eos_token_id", tokenizer.eos_token_id), **kw)
    new = backend.to_numpy(ids)[0, enc["input_ids"].shape[1]:]
    return tokenizer.decode(new.tolist(), skip_special_tokens=True)
