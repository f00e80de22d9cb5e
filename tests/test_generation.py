"""Generation refuses what it cannot do right: mis-shaped masks, masked LMs, empty prompts, bad sampling options."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift.models import TransformerConfig, TransformerForCausalLM, TransformerForMaskedLM
from minift.models.generation import filter_logits, generate, generate_text


def causal_lm(family="gpt2"):
    mf.set_default_dtype("float64")
    mf.seed(0)
    config = TransformerConfig(family=family, vocab_size=23, hidden_size=12, num_hidden_layers=1,
                               num_attention_heads=3, max_position_embeddings=40)
    return TransformerForCausalLM(config)


def test_a_mis_shaped_attention_mask_is_rejected_not_reshaped():
    model = causal_lm()
    ids = np.array([[1, 2, 3], [4, 5, 6]])  # (B=2, T=3)
    transposed_mask = np.ones((3, 2), dtype=np.int64)  # same size, wrong shape: used to be reshaped silently
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 2\), expected .*\(2, 3\)"):
        generate(model, ids, 2, attention_mask=transposed_mask)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(model, ids, 2, attention_mask=np.ones(6, dtype=np.int64))
    with pytest.raises(ValueError, match="only 0 .* and 1"):
        generate(model, ids, 2, attention_mask=np.array([[1, 1, 2], [1, 1, 1]]))
    with pytest.raises(ValueError, match="prompt 1 has no real token"):
        generate(model, ids, 2, attention_mask=np.array([[1, 1, 1], [0, 0, 0]]))
    # a one-dimensional prompt with a one-dimensional mask is still one prompt
    assert generate(model, np.array([1, 2, 3]), 2, attention_mask=np.array([1, 1, 1])).shape == (1, 5)


def test_a_masked_language_model_refuses_to_generate():
    mf.set_default_dtype("float64")
    config = TransformerConfig(family="bert", vocab_size=23, hidden_size=12, num_hidden_layers=1,
                               num_attention_heads=3, max_position_embeddings=40)
    with pytest.raises(TypeError, match="masked language model .*causal model"):
        generate(TransformerForMaskedLM(config), np.array([[1, 2, 3]]), 2)


def test_empty_prompts_and_bad_lengths_are_rejected():
    model = causal_lm()
    with pytest.raises(ValueError, match="at least one token, got shape \\(1, 0\\)"):
        generate(model, np.zeros((1, 0), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, np.array([[1, 2]]), -1)

    class Tok:  # the smallest tokenizer generate_text needs before it looks at the prompt
        eos_token_id = 0

    with pytest.raises(ValueError, match="prompt is empty"):
        generate_text(model, Tok(), "   ")


def test_top_p_zero_keeps_the_most_likely_token():
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]]))
    z = filter_logits(logits, top_p=0.0)
    # row 0's best token is 1, not 0: the old code dropped everything and sampled token 0
    assert np.isfinite(z[0, 1]) and np.isinf(z[0, [0, 2]]).all()
    assert np.isfinite(z[1, 0]) and np.isinf(z[1, 1:]).all()
    model = causal_lm()
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(generate(model, ids, 4, do_sample=True, top_p=0.0), generate(model, ids, 4))


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12), st.floats(0, 1))
def test_top_p_always_keeps_at_least_the_argmax(row, top_p):
    logits = np.array([row])
    z = filter_logits(logits, top_p=top_p)
    kept = np.isfinite(z[0])
    assert kept[logits[0] == logits[0].max()].any()  # a most likely token (with ties: one of them) is kept
    p = np.exp(logits[0] - logits[0].max())
    p /= p.sum()
    if top_p > 0:  # the kept set holds at least top_p of the mass (up to rounding)
        assert p[kept].sum() >= min(top_p, 1.0) - 1e-9


@pytest.mark.parametrize("options, match", [
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=-0.1), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(top_k=-2), "top_k"),
    (dict(top_k=1.5), "top_k"),
])
def test_bad_sampling_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        filter_logits(np.zeros((1, 4)), **options)
    with pytest.raises(ValueError, match=match):
        generate(causal_lm(), np.array([[1, 2]]), 2, do_sample=True, **options)


def test_generation_past_learned_positions_is_refused_before_it_starts_and_rope_is_not_held_to_it():
    """Context 40: the prompt and every new token but the last are fed, so a 30-token prompt leaves room
    for exactly 11 new tokens (positions 0..39); 12 would need position 40, which has no embedding."""
    model = causal_lm("gpt2")
    prompt = np.arange(30) % 20 + 1  # (30,)
    out = generate(model, prompt, 11, eos_token_id=-1)  # an id never produced: no early stop
    assert out.shape == (1, 41)
    with pytest.raises(ValueError, match=r"30-token prompt leaves room for 11 new tokens .* context of 40, "
                                         r"not max_new_tokens=12"):
        generate(model, prompt, 12, eos_token_id=-1)
    with pytest.raises(ValueError, match="the prompt is 41 tokens, longer than the model's context of 40"):
        generate(model, np.arange(41) % 20 + 1, 1)
    assert generate(causal_lm("llama"), prompt, 20, eos_token_id=-1).shape == (1, 50)  # RoPE: positions computed
