"""The transformer: gradient checks per family, masks, RoPE, the KV cache, left padding, generation, names."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift import functional as F
from minift.autograd.ops_attention import rope_tables
from minift.models import TransformerConfig, TransformerForCausalLM, TransformerForMaskedLM, TransformerModel
from minift.models.generation import filter_logits, generate
from minift.models.names import backbone_name_to, gpt2_from_hf, gpt2_to_hf
from minift.nn.attention import MultiHeadAttention


def tiny(family, **kw):
    base = dict(family=family, vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                max_position_embeddings=40)
    if family == "llama":
        base.update(num_attention_heads=4, hidden_size=16, num_key_value_heads=2)
    base.update(kw)
    return TransformerConfig(**base)


def build(family, **kw):
    mf.set_default_dtype("float64")
    mf.seed(0)
    c = tiny(family, **kw)
    return TransformerForMaskedLM(c) if family == "bert" else TransformerForCausalLM(c)


configs = st.sampled_from(["gpt2", "llama"])


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_whole_model_gradcheck(family):
    m = build(family)
    ids = np.array([[1, 5, 7, 2, 9], [3, 3, 4, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = np.where(mask == 1, ids, -100)
    params = dict(m.named_parameters())
    for name in ["model.layers.0.attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                 "model.layers.0.attn_norm.weight", "model.embed.tokens.weight"]:
        for p in m.parameters():
            p.requires_grad = False
        p = params[name]
        p.requires_grad = True
        def loss(_p):
            return m(ids, attention_mask=mask, labels=labels).loss

        assert mf.gradcheck(loss, (p,), max_full=64), name


@pytest.mark.task("attention.backward")
@pytest.mark.parametrize("rope, kv_heads", [(False, 4), (True, 2), (True, 1)])
def test_attention_module_gradcheck_wrt_input(rope, kv_heads):
    mf.set_default_dtype("float64")
    config = TransformerConfig(family="llama" if rope else "gpt2", vocab_size=5, hidden_size=8,
                               num_attention_heads=4, num_key_value_heads=kv_heads)
    attn = MultiHeadAttention(config)
    x = mf.tensor(np.random.default_rng(0).standard_normal((2, 3, 8)), requires_grad=True)
    pad = np.array([[True, True, True], [True, True, False]])
    assert mf.gradcheck(lambda x: attn(x, key_padding_mask=pad), (x,))


@pytest.mark.task("attention.backward")
def test_attention_gradients_with_dropout_on_the_probabilities():
    mf.set_default_dtype("float64")
    rs = np.random.default_rng(0)
    q, k, v = (mf.tensor(rs.standard_normal((2, 2, 4, 3)), requires_grad=True) for _ in range(3))

    def attention(q, k, v, dropout_p=0.4):
        mf.seed(5)  # the same dropout mask on every call, so finite differences see one function
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)

    assert not np.allclose(attention(q, k, v).data, attention(q, k, v, 0.0).data)  # the mask is on
    assert mf.gradcheck(attention, (q, k, v))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causal_models_do_not_look_ahead(family):
    m = build(family).eval()
    a = m(np.array([[1, 2, 3, 4, 5]])).logits.numpy()
    b = m(np.array([[1, 2, 3, 9, 9]])).logits.numpy()
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-12)
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_bert_is_bidirectional_and_ignores_padding():
    m = build("bert").eval()
    a = m(np.array([[1, 2, 3, 4]])).logits.numpy()
    b = m(np.array([[1, 2, 3, 9]])).logits.numpy()
    assert not np.allclose(a[:, 0], b[:, 0])  # the first token sees the last
    padded = m(np.array([[1, 2, 3, 7, 8]]), attention_mask=np.array([[1, 1, 1, 0, 0]])).logits.numpy()
    short = m(np.array([[1, 2, 3]])).logits.numpy()
    np.testing.assert_allclose(padded[:, :3], short, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(family=configs, prompt=st.integers(1, 6), new=st.integers(1, 6), seed=st.integers(0, 10))
def test_kv_cache_gives_the_same_logits_as_recomputing(family, prompt, new, seed):
    m = build(family)
    ids = np.random.default_rng(seed).integers(0, 23, (2, prompt))
    with_cache, s1 = generate(m, ids, new, output_scores=True)
    without, s2 = generate(m, ids, new, use_cache=False, output_scores=True)
    np.testing.assert_array_equal(with_cache, without)
    np.testing.assert_allclose(s1, s2, atol=1e-10)


@settings(max_examples=8, deadline=None)
@given(family=configs, lengths=st.lists(st.integers(1, 5), min_size=2, max_size=3), seed=st.integers(0, 10))
def test_batched_left_padded_generation_equals_one_by_one(family, lengths, seed):
    m = build(family)
    rs = np.random.default_rng(seed)
    prompts = [rs.integers(1, 23, n) for n in lengths]
    width = max(lengths)
    ids = np.zeros((len(prompts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    batched, sb = generate(m, ids, 4, attention_mask=mask, output_scores=True)
    for i, p in enumerate(prompts):
        alone, sa = generate(m, p[None, :], 4, output_scores=True)
        np.testing.assert_array_equal(batched[i, width:], alone[0, len(p):])
        np.testing.assert_allclose(sb[i], sa[0], atol=1e-10)


def test_rope_scores_depend_only_on_relative_position():
    rs = np.random.default_rng(0)
    q, k = rs.standard_normal(8), rs.standard_normal(8)
    cos, sin = rope_tables(np.arange(20), 8)

    def rot(x, t):
        return F.apply_rotary(mf.tensor(x[None]), cos[t:t + 1], sin[t:t + 1]).numpy()[0]

    assert rot(q, 7) @ rot(k, 3) == pytest.approx(rot(q, 14) @ rot(k, 10), rel=1e-10)
    assert np.linalg.norm(rot(q, 5)) == pytest.approx(np.linalg.norm(q))  # a rotation keeps lengths


def test_sampling_filters():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    z = filter_logits(logits, top_k=2)
    assert np.isinf(z[0, 2:]).all() and np.isfinite(z[0, :2]).all()
    z = filter_logits(logits, top_p=0.7)  # 0.5 < 0.7, 0.5 + 0.3 ≥ 0.7: keep two
    assert np.isfinite(z[0, :2]).all() and np.isinf(z[0, 2:]).all()
    z = filter_logits(logits, top_p=0.01)
    assert np.isfinite(z[0, 0]) and np.isinf(z[0, 1:]).all()
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0)


def test_sampling_with_top_k_1_is_greedy_and_eos_pads():
    m = build("gpt2")
    ids = np.array([[1, 2, 3]])
    greedy = generate(m, ids, 5)
    np.testing.assert_array_equal(generate(m, ids, 5, do_sample=True, top_k=1), greedy)
    first = int(greedy[0, 3])
    stopped = generate(m, np.array([[1, 2, 3], [1, 2, 3]]), 5, eos_token_id=first, pad_token_id=0)
    assert stopped.shape == (2, 4) and (stopped[:, 3] == first).all()


def test_sampling_is_reproducible_with_a_seed():
    m = build("llama")
    mf.seed(3)
    a = generate(m, np.array([[1, 2]]), 6, do_sample=True, temperature=1.5)
    mf.seed(3)
    b = generate(m, np.array([[1, 2]]), 6, do_sample=True, temperature=1.5)
    np.testing.assert_array_equal(a, b)


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="family must be"):
        TransformerConfig(family="t5")
    with pytest.raises(ValueError, match="not divisible"):
        TransformerConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="not a multiple"):
        TransformerConfig(family="llama", hidden_size=12, num_attention_heads=3, num_key_value_heads=2)
    c = tiny("llama")
    c.save(tmp_path / "c.json")
    assert TransformerConfig.load(tmp_path / "c.json") == c
    with pytest.raises(ValueError, match="unknown TransformerConfig fields"):
        TransformerConfig.from_dict({"family": "gpt2", "n_embd": 3})


def test_bad_token_ids_and_positions_are_clear_errors():
    m = build("gpt2")
    with pytest.raises(IndexError, match="token id 23 is out of range for a vocabulary of 23"):
        m(np.array([[1, 23]]))
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        m(np.zeros((1, 41), dtype=np.int64))
    with pytest.raises(ValueError, match="attention_mask must be"):
        m(np.array([[1, 2]]), attention_mask=np.array([[1, 1, 1]]))
    with pytest.raises(ValueError, match="gpt2 or llama"):
        TransformerForCausalLM(tiny("bert"))


def test_tied_head_shares_the_embedding_and_is_counted_once():
    m = build("gpt2")
    assert m.lm_head.weight is m.model.embed.tokens.weight
    names = [n for n, _ in m.named_parameters()]
    assert "lm_head.weight" not in names


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_hf_name_map_is_one_to_one(family):
    mf.seed(0)
    m = TransformerModel(tiny(family))
    theirs = [backbone_name_to(family, n) for n in m.state_dict()]
    assert len(set(theirs)) == len(theirs)
    if family == "bert":
        assert "encoder.layer.1.attention.self.query.weight" in theirs and "pooler.dense.bias" in theirs
    else:
        assert "layers.1.self_attn.k_proj.weight" in theirs
        assert "layers.0.post_attention_layernorm.weight" in theirs


def test_gpt2_hf_layout_round_trips():
    mf.seed(0)
    m = TransformerModel(tiny("gpt2"))
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    hf = gpt2_to_hf(sd)
    assert hf["h.0.attn.c_attn.weight"].shape == (12, 36)  # Conv1D: (in, 3·out)
    back = gpt2_from_hf(hf)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


def test_attention_maps_are_probabilities():
    m = build("gpt2").eval()
    out = m.model(np.array([[1, 2, 3, 4]]), output_attentions=True, output_hidden_states=True)
    a = out.attentions[0]
    assert a.shape == (1, 3, 4, 4) and len(out.hidden_states) == 3
    np.testing.assert_allclose(a.sum(-1), 1.0)
    assert np.all(np.triu(a[0, 0], 1) == 0)  # causal: nothing above the diagonal


def test_causal_attention_with_fewer_queries_than_keys_is_pytorchs_lower_right_mask():
    """minift's ``is_causal`` aligns the mask bottom-right (a KV cache's queries are the last positions): that is
    PyTorch's ``causal_lower_right``, not its top-left ``is_causal``, and the two differ when Tq < Tk."""
    torch = pytest.importorskip("torch")
    from torch.nn.attention.bias import causal_lower_right

    rs = np.random.default_rng(3)
    q, k, v = rs.standard_normal((2, 2, 8)), rs.standard_normal((2, 5, 8)), rs.standard_normal((2, 5, 8))
    ours = F.scaled_dot_product_attention(mf.tensor(q), mf.tensor(k), mf.tensor(v), is_causal=True).numpy()
    tq, tk, tv = (torch.tensor(a) for a in (q, k, v))
    lower_right = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=causal_lower_right(2, 5))
    top_left = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    np.testing.assert_allclose(ours, lower_right.numpy(), atol=1e-12)
    assert np.abs(ours - top_left.numpy()).max() > 0.1


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("tied", [True, False])
def test_a_fresh_language_model_starts_at_loss_ln_v(family, tied):
    """Every weight starts at N(0, 0.02²), untied heads too (HF's ``_init_weights``): the logits start near 0, the
    prediction near uniform, so the loss on any tokens is ln V. PyTorch's Linear default on an untied head starts
    above it (0.14 to 0.17 measured; the test asks for more than 0.1)."""
    mf.seed(0)
    config = TransformerConfig(family=family, vocab_size=512, hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=64, tie_word_embeddings=tied)
    ids = np.random.default_rng(1).integers(0, 512, (8, 32))
    model = TransformerForCausalLM(config).eval()
    loss = model(ids, labels=ids).loss.item()
    assert abs(loss - np.log(512)) < 0.05, (loss, np.log(512))
    if not tied:  # the check has teeth: the untied head at PyTorch's Linear default starts well above ln V
        model.lm_head.weight.data = mf.nn.Linear(64, 512, bias=False).weight.data
        assert model(ids, labels=ids).loss.item() > np.log(512) + 0.1


def test_a_fresh_masked_lm_starts_at_loss_ln_v():
    """The decoder's bias starts at 0 (HF's); its transform keeps the Linear default, which the LayerNorm after it
    makes harmless (see TransformerForMaskedLM)."""
    mf.seed(0)
    config = TransformerConfig(family="bert", vocab_size=512, hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=64)
    ids = np.random.default_rng(1).integers(0, 512, (8, 32))
    model = TransformerForMaskedLM(config).eval()
    assert abs(model(ids, labels=ids).loss.item() - np.log(512)) < 0.05
    np.testing.assert_array_equal(model.mlm_decoder.bias.numpy(), 0.0)
