"""Text generation: greedy, temperature, top-k and top-p (nucleus) sampling, with a KV cache.

Step t feeds only the newest token; the keys and values of the earlier ones come from the cache, so a
step costs O(T) attention instead of re-running the whole prefix (O(T²) overall instead of O(T³)).
Left padding: prompts of different lengths are padded on the left and masked; positions count real
tokens only, so a padded prompt generates exactly what it would alone.
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd.grad_mode import no_grad
from ..backend import xp


def check_sampling_options(temperature=1.0, top_k=None, top_p=None):
    """Reject sampling options that would silently do something else (Hugging Face's warpers raise too).

    temperature: a finite number > 0 (greedy decoding is ``do_sample=False``, not temperature 0);
    top_k: None or an int ≥ 0 (0 means off, as in Hugging Face); top_p: None or a number in [0, 1].
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r} "
                         "(for greedy decoding use do_sample=False)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be None or an integer >= 0 (0 = no top-k filtering), got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 <= top_p <= 1.0):
        raise ValueError(f"top_p must be None or a number in [0, 1], got {top_p!r}")


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """Scale by 1/temperature, keep the k most likely tokens and/or the smallest set with mass ≥ top_p.

    Removed entries become −∞. Follows Hugging Face's warpers: top-p keeps every token whose mass-ranked
    predecessors sum to less than p, and always the most likely one — so ``top_p=0`` is greedy, never an
    empty distribution.
    """
    check_sampling_options(temperature, top_k, top_p)
    z = logits / temperature
    if top_k and top_k < z.shape[-1]:
        kth = xp.sort(z, axis=-1)[:, -top_k][:, None]  # (B, 1): the k-th largest logit
        z = xp.where(z < kth, -xp.inf, z)
    if top_p is not None and top_p < 1.0:
        order = xp.argsort(-z, axis=-1)  # most likely first
        sorted_z = xp.take_along_axis(z, order, axis=-1)
        p = xp.exp(sorted_z - sorted_z[:, :1])
        p /= p.sum(axis=-1, keepdims=True)
        cum_before = xp.cumsum(p, axis=-1) - p  # mass of the tokens ranked above each one
        drop_sorted = cum_before >= top_p
        drop_sorted[:, 0] = False  # the most likely token always survives (top_p = 0 would drop it)
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


def check_can_generate(model):
    """Only a causal LM continues text: a masked LM (bert family) predicts masked tokens in place."""
    config = getattr(model, "config", None)
    if config is not None and not getattr(config, "causal", True):
        raise TypeError(
            f"{type(model).__name__} is a masked language model ({config.family} family): it fills in [MASK] "
            "tokens and cannot continue a prompt; generate with a causal model (gpt2 or llama family), "
            "e.g. checkpoints/tiny-gpt or smollm2"
        )


def check_fits_context(config, prompt_length, max_new_tokens):
    """A model with learned positions has a row of its position table for each of ``max_position_embeddings``
    positions and none past them. The last new token is never fed back, so the prompt and all but one new
    token must fit: T + max_new_tokens − 1 ≤ context. (RoPE computes positions: no such limit is checked.)"""
    context = getattr(config, "max_position_embeddings", None)
    if context is None or getattr(config, "rope", False):
        return
    if prompt_length > context:
        raise ValueError(f"the prompt is {prompt_length} tokens, longer than the model's context of {context} "
                         "(its learned position embeddings stop there): shorten the prompt")
    room = context - prompt_length + 1
    if max_new_tokens > room:
        raise ValueError(f"a {prompt_length}-token prompt leaves room for {room} new tokens in the model's context "
                         f"of {context}, not max_new_tokens={max_new_tokens}: ask for {room} or fewer "
                         "(--max-new-tokens), or shorten the prompt")


def prompt_mask(attention_mask, ids):
    """The (B, T) 0/1 mask of real prompt tokens: all ones by default, else checked against ``ids``.

    A mask of another shape is an error, never reshaped: reshaping a (T, B) mask into (B, T) would mask
    the wrong tokens without a word.
    """
    if attention_mask is None:
        return xp.ones(ids.shape, dtype=ids.dtype)
    mask = xp.asarray(attention_mask)
    mask = mask[None, :] if mask.ndim == 1 else mask  # one prompt's mask (T,) -> (1, T)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, expected the shape of input_ids "
                         f"{tuple(ids.shape)} (batch, prompt length)")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (a real token)")
    if not bool((mask.sum(axis=1) > 0).all()):
        empty = int(xp.argmin(mask.sum(axis=1)))
        raise ValueError(f"prompt {empty} has no real token: its attention_mask row is all zeros")
    return mask.astype(ids.dtype)


def generate(model, input_ids, max_new_tokens=32, attention_mask=None, do_sample=False, temperature=1.0, top_k=None,
             top_p=None, eos_token_id=None, pad_token_id=None, use_cache=True, output_scores=False):
    """Continue ``input_ids`` (B, T) by up to ``max_new_tokens``; returns ids (B, T + new) [and the step logits].

    Greedy unless ``do_sample``. A sequence that produced ``eos_token_id`` is padded with ``pad_token_id``
    (default: the eos id) while the others go on; generation stops when all are done.
    """
    check_can_generate(model)
    if do_sample:
        check_sampling_options(temperature, top_k, top_p)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    ids = xp.asarray(input_ids)
    ids = ids[None, :] if ids.ndim == 1 else ids  # one prompt (T,) -> a batch of one (1, T)
    if ids.ndim != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise ValueError(f"generate needs input_ids of shape (batch, prompt length) with at least one token, "
                         f"got shape {tuple(xp.asarray(input_ids).shape)}")
    check_fits_context(model.config, ids.shape[1], max_new_tokens)
    b = ids.shape[0]
    mask = prompt_mask(attention_mask, ids)
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
    if isinstance(prompt, str) and not prompt.strip():
        raise ValueError("the prompt is empty: give the model some text to continue")
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
