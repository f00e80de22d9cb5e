"""Prefix tuning (minift.peft.prefix): one layer's prefixed attention against NumPy by hand, gradient checks,
freezing, the trainable counts, every head's output shapes, clear errors, a toy training run, and the same
outputs as Hugging Face PEFT on the HF twin of the model."""
import math

import numpy as np
import pytest

import minift as mf
from minift.models import (
    TransformerConfig, TransformerForCausalLM, TransformerForQuestionAnswering, TransformerForSequenceClassification,
    TransformerForTokenClassification,
)
from minift.peft import PrefixEncoder, PrefixTuningConfig, PrefixTuningModel, get_peft_model

IDS = np.array([[2, 5, 7, 9, 11, 3], [2, 8, 4, 3, 0, 0]])
MASK = (IDS != 0).astype(np.int64)
LABELS = np.array([0, 1])


def config(family="bert", **options):
    """A tiny model of the family; llama shares each key/value head between two query heads (GQA)."""
    base = dict(family=family, vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, pad_token_id=0, num_key_value_heads=2 if family == "llama" else None)
    return TransformerConfig(**{**base, **options})


def classifier(family="bert", num_labels=2, **options):
    mf.seed(0)
    return TransformerForSequenceClassification(config(family), num_labels=num_labels, **options).eval()


# ============================================================================ the math, by hand
def rotate(x, positions, theta):
    """RoPE by hand: each pair (x_j, x_{j+D/2}) turned by the angle position · θ^(−2j/D); x (B, H, T, D)."""
    d = x.shape[-1]
    angles = positions[:, None, :, None] * theta ** (-np.arange(0, d, 2) / d)  # (B, 1, T, D/2)
    cos, sin = np.cos(angles), np.sin(angles)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention_by_hand(attn, x, prefix_k, prefix_v, mask, positions, cfg):
    """o_proj(softmax(Q [P_K; K]ᵀ/√D + mask) [P_V; V]) in float64 NumPy; x (B, T, C), prefix (H_kv, n, D)."""
    def linear(layer, v):
        return v @ layer.weight.data.T + (0 if layer.bias is None else layer.bias.data)

    b, t, _ = x.shape
    h, hk, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    n = prefix_k.shape[1]
    q = linear(attn.q_proj, x).reshape(b, t, h, d).transpose(0, 2, 1, 3)  # (B, H, T, D)
    k = linear(attn.k_proj, x).reshape(b, t, hk, d).transpose(0, 2, 1, 3)  # (B, H_kv, T, D)
    v = linear(attn.v_proj, x).reshape(b, t, hk, d).transpose(0, 2, 1, 3)
    if cfg.rope:  # the input's queries and keys turn by their positions; the prefix keys are used as learned
        q, k = rotate(q, positions, cfg.rope_theta), rotate(k, positions, cfg.rope_theta)
    keys = np.concatenate([np.broadcast_to(prefix_k, (b, hk, n, d)), k], axis=2)  # (B, H_kv, n + T, D)
    values = np.concatenate([np.broadcast_to(prefix_v, (b, hk, n, d)), v], axis=2)
    group = np.arange(h) // (h // hk)  # the key/value head each query head reads
    keys, values = keys[:, group], values[:, group]  # (B, H, n + T, D)
    scores = q @ keys.transpose(0, 1, 3, 2) / math.sqrt(d)  # (B, H, T, n + T)
    allowed = np.ones((b, 1, t, n + t), dtype=bool)  # every query sees the whole prefix
    allowed[..., n:] &= mask.astype(bool)[:, None, None, :]
    if cfg.causal:
        allowed[..., n:] &= np.tril(np.ones((t, t), dtype=bool))
    scores = np.where(allowed, scores, -np.inf)
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    out = (p @ values).transpose(0, 2, 1, 3).reshape(b, t, h * d)  # (B, T, H·D)
    return linear(attn.o_proj, out)


@pytest.mark.task("peft.prefix_kv")
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_one_layers_prefixed_attention_equals_numpy_by_hand(family, monkeypatch, oracles):
    mf.set_default_dtype("float64")
    model = classifier(family)
    pm = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3))
    layer = 1
    attn = model.model.layers[layer].attn
    seen = {}
    original = attn.forward

    def recording(x, **kw):  # what the attention of layer 1 reads and gives in the prefixed model
        out = original(x, **kw)
        seen["x"], seen["out"] = x.data.copy(), out.data.copy()
        return out

    monkeypatch.setattr(attn, "forward", recording)
    pm(input_ids=IDS, attention_mask=MASK)
    cfg = model.config
    table = pm.prefix_encoder.embedding.weight.data  # (n, L·2·H_kv·D)
    assert table.shape == (3, 2 * 2 * cfg.num_key_value_heads * cfg.head_dim)
    pk = oracles.prefix_of_layer(table, layer, 0, cfg.num_key_value_heads, cfg.head_dim)
    pv = oracles.prefix_of_layer(table, layer, 1, cfg.num_key_value_heads, cfg.head_dim)
    positions = 3 + np.arange(IDS.shape[1])[None, :].repeat(2, axis=0)  # the real tokens sit at n, n + 1, …
    expected = attention_by_hand(attn, seen["x"], pk, pv, MASK, positions, cfg)
    real = MASK.astype(bool)  # (padding queries are never read)
    np.testing.assert_allclose(seen["out"][real], expected[real], rtol=1e-10, atol=1e-12)
    without = attention_by_hand(attn, seen["x"], pk[:, :0], pv[:, :0], MASK, positions, cfg)
    assert np.abs(without - expected)[real].max() > 1e-3  # and the prefix does change what the layer gives


@pytest.mark.task("peft.prefix_kv")
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_each_layer_reads_its_own_pair_of_the_encoders_blocks(family):
    """Spot checks of PEFT's layout with a table whose entries say where they sit, entry (i, j) = 1000·i + j: layer
    ℓ's keys at head h, position i, dim d are entry (i, (2ℓ·H_kv + h)·D + d), its values the block after."""
    mf.set_default_dtype("float64")
    model = classifier(family)
    pm = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3))
    table = pm.prefix_encoder.embedding.weight.data  # (n, L·2·H_kv·D)
    n, width = table.shape
    table[...] = 1000 * np.arange(n)[:, None] + np.arange(width)[None, :]
    hk, d = model.config.num_key_value_heads, model.config.head_dim
    pairs = pm.get_prompt(batch_size=2)
    assert len(pairs) == 2 and all(k.shape == v.shape == (2, hk, n, d) for k, v in pairs)
    for layer, (key, value) in enumerate(pairs):
        for which, kv in ((0, key), (1, value)):
            for h, i, j in ((0, 0, 0), (hk - 1, n - 1, d - 1), (1, 1, 2)):
                assert kv.data[1, h, i, j] == 1000 * i + ((2 * layer + which) * hk + h) * d + j, (layer, which, h, i, j)


@pytest.mark.task("peft.prefix_kv")
@pytest.mark.parametrize("family, projection", [("bert", False), ("llama", False), ("llama", True)])
def test_gradients_wrt_the_prefix_parameters_match_finite_differences(family, projection):
    mf.set_default_dtype("float64")
    pm = get_peft_model(classifier(family, num_labels=3), PrefixTuningConfig(
        num_virtual_tokens=2, prefix_projection=projection, encoder_hidden_size=3 if projection else None))
    params = [p for _, p in pm.prefix_encoder.named_parameters()]
    assert len(params) == (5 if projection else 1) and all(p.dtype == np.float64 for p in params)

    def logits(*perturbed):  # gradcheck perturbs these very parameters in place
        return pm(input_ids=IDS, attention_mask=MASK).logits

    assert mf.gradcheck(logits, params, max_full=300)


def test_the_encoder_is_a_table_or_a_table_through_an_mlp():
    mf.set_default_dtype("float64")
    enc = PrefixEncoder(4, num_layers=3, token_dim=6, prefix_projection=True, encoder_hidden_size=5)
    ids = np.arange(4)
    e = enc.embedding.weight.data
    w1, b1 = enc.transform[0].weight.data, enc.transform[0].bias.data
    w2, b2 = enc.transform[2].weight.data, enc.transform[2].bias.data
    np.testing.assert_allclose(enc(ids).data, np.tanh(e @ w1.T + b1) @ w2.T + b2, rtol=1e-12)  # (n, L·2·E)
    assert enc(ids).shape == (4, 3 * 2 * 6)
    plain = PrefixEncoder(4, num_layers=3, token_dim=6)
    np.testing.assert_array_equal(plain(ids).data, plain.embedding.weight.data)
    assert plain.embedding.weight.shape == (4, 36) and "transform" not in plain._modules


# ============================================================================ training only the prefix
def test_frozen_base_gets_no_gradient_and_does_not_move_the_prefix_does():
    model = classifier("bert").train()
    pm = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3, modules_to_save=["classifier"]))
    before = {n: p.data.copy() for n, p in pm.named_parameters()}
    optimizer = mf.optim.AdamW(pm.parameters(), lr=1e-2, weight_decay=0.1)  # every parameter, decay on
    pm(input_ids=IDS, attention_mask=MASK, labels=LABELS).loss.backward()
    for name, p in pm.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    optimizer.step()
    moved = {n for n, p in pm.named_parameters() if not np.array_equal(p.data, before[n])}
    assert moved == {"prefix_encoder.embedding.weight", "base_model.classifier.modules_to_save.default.weight",
                     "base_model.classifier.modules_to_save.default.bias"}
    assert pm.get_base_model() is model


@pytest.mark.parametrize("family, projection, hidden", [("bert", False, None), ("bert", True, None),
                                                        ("llama", False, None), ("llama", True, 7)])
def test_trainable_count_follows_the_formula(family, projection, hidden, capsys):
    model = classifier(family)
    total_base = model.num_parameters()
    n, layers = 5, 2
    pm = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=n, prefix_projection=projection,
                                                  encoder_hidden_size=hidden, modules_to_save=["classifier"]))
    e = model.config.num_key_value_heads * model.config.head_dim  # one layer's keys: H_kv·D (16 bert, 8 llama)
    h = hidden or e
    prefix = n * e + (e * h + h) + (h * layers * 2 * e + layers * 2 * e) if projection else n * layers * 2 * e
    head = 16 * 2 + (2 if family == "bert" else 0)  # the trained copy of the classifier (decoders: no bias)
    trainable, total = pm.get_nb_trainable_parameters()
    assert (trainable, total) == (prefix + head, total_base + prefix + head)
    pm.print_trainable_parameters()
    assert capsys.readouterr().out.strip() == (f"trainable params: {trainable:,d} || all params: {total:,d} || "
                                               f"trainable%: {100 * trainable / total:.4f}")


# ============================================================================ every head
def test_outputs_keep_the_inputs_shape_for_every_head():
    n = 3
    for family in ("gpt2", "llama"):  # causal LM: one logit row per input token, the loss HF's shifted one
        mf.seed(0)
        lm = get_peft_model(TransformerForCausalLM(config(family)), PrefixTuningConfig(num_virtual_tokens=n))
        assert lm.shifts_labels
        labels = np.where(MASK == 1, IDS, -100)
        out = lm(input_ids=IDS, attention_mask=MASK, labels=labels)
        assert out.logits.shape == (2, 6, 32)
        z = out.logits.data.astype(np.float64)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        target, keep = labels[:, 1:], labels[:, 1:] != -100
        expected = -logp[:, :-1][keep, target[keep]].mean()
        assert out.loss.item() == pytest.approx(expected, rel=1e-5)
        assert len(out.past_key_values) == n + 6  # the cache: the prefix, then the input's keys

    for family, pooling in (("bert", None), ("llama", None), ("bert", "mean")):  # one row per sequence
        pm = get_peft_model(classifier(family, num_labels=3, pooling=pooling), PrefixTuningConfig(num_virtual_tokens=n))
        out = pm(input_ids=IDS, attention_mask=MASK, labels=LABELS)
        assert out.logits.shape == (2, 3) and np.isfinite(out.loss.item())
        # the head pools with the input's own mask: more padding on the right changes nothing
        wider = np.concatenate([IDS, np.zeros((2, 2), dtype=IDS.dtype)], axis=1)
        again = pm(input_ids=wider, attention_mask=(wider != 0).astype(np.int64)).logits.data
        np.testing.assert_allclose(again, out.logits.data, rtol=1e-5, atol=1e-6)

    mf.seed(0)
    tagger = get_peft_model(TransformerForTokenClassification(config("bert"), num_labels=4),
                            PrefixTuningConfig(num_virtual_tokens=n))
    labels = np.array([[-100, 1, 2, 0, 3, -100], [-100, 2, 1, -100, -100, -100]])
    out = tagger(input_ids=IDS, attention_mask=MASK, labels=labels)
    assert out.logits.shape == (2, 6, 4)  # nothing to cut: the prefix is not a position of the sequence
    logp = out.logits.data - np.log(np.exp(out.logits.data).sum(-1, keepdims=True))
    keep = labels != -100
    assert out.loss.item() == pytest.approx(-logp[keep, labels[keep]].mean(), rel=1e-5)

    for family in ("bert", "llama"):  # question answering: the answer positions are the input's own
        mf.seed(0)
        qa = get_peft_model(TransformerForQuestionAnswering(config(family)), PrefixTuningConfig(num_virtual_tokens=n))
        out = qa(input_ids=IDS, attention_mask=MASK, start_positions=np.array([1, 2]), end_positions=np.array([3, 2]))
        assert out.start_logits.shape == out.end_logits.shape == (2, 6) and np.isfinite(out.loss.item())

    mf.seed(0)
    body = get_peft_model(mf.models.TransformerModel(config("llama")), PrefixTuningConfig(num_virtual_tokens=n))
    assert body(input_ids=IDS, attention_mask=MASK).last_hidden_state.shape == (2, 6, 16)


def test_positions_start_after_the_prefix():
    mf.seed(0)
    lm = get_peft_model(TransformerForCausalLM(config("gpt2")), PrefixTuningConfig(num_virtual_tokens=4))
    ids = IDS[:1, :4]
    # learned positions: the real tokens use the embedding rows n … n + T − 1
    shown = lm(input_ids=ids).logits.data
    table = lm.base_model.model.embed.positions.weight
    saved = table.data.copy()
    table.data[:4] = 100.0  # rows the input does not use (positions 0 … n − 1): no effect
    np.testing.assert_array_equal(lm(input_ids=ids).logits.data, shown)
    table.data[:] = saved
    table.data[4] += 1.0  # the first real token's position: n
    assert not np.allclose(lm(input_ids=ids).logits.data, shown)
    table.data[:] = saved
    # a left-padded row reads the positions of the same text unpadded
    padded = np.concatenate([np.zeros((1, 2), dtype=ids.dtype), ids], axis=1)
    mask = (padded != 0).astype(np.int64)
    np.testing.assert_allclose(lm(input_ids=padded, attention_mask=mask).logits.data[:, 2:], shown, rtol=1e-5, atol=1e-6)
    # and the input must fit after the prefix: 16 positions − 4 = 12 tokens at most
    assert lm(input_ids=np.ones((1, 12), dtype=np.int64)).logits.shape == (1, 12, 32)
    with pytest.raises(ValueError, match="max_position_embeddings=16: inputs of at most 12 tokens, got 13"):
        lm(input_ids=np.ones((1, 13), dtype=np.int64))


# ============================================================================ clear errors
@pytest.mark.parametrize("options, words", [
    (dict(num_virtual_tokens=0), "num_virtual_tokens must be an integer >= 1, got 0"),
    (dict(num_virtual_tokens=True), "num_virtual_tokens must be an integer >= 1, got True"),
    (dict(num_virtual_tokens="20"), "num_virtual_tokens must be an integer >= 1, got '20'"),
    (dict(prefix_projection="yes"), "prefix_projection must be True or False, got 'yes'"),
    (dict(encoder_hidden_size=64), "encoder_hidden_size=64 is the width of the projection MLP"),
    (dict(prefix_projection=True, encoder_hidden_size=0), "encoder_hidden_size must be None or an integer >= 1, got 0"),
    (dict(modules_to_save="classifier"), "modules_to_save must be a list of module names, got 'classifier'"),
    (dict(peft_type="LORA"), "peft_type must be 'PREFIX_TUNING'"),
])
def test_bad_configs_are_clear_errors(options, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        PrefixTuningConfig(**options)


def test_bad_uses_are_clear_errors():
    assert PrefixTuningConfig(prefix_projection=True).encoder_hidden_size is None  # E, the key width, when built
    with pytest.raises(TypeError, match="needs a minift transformer"):
        PrefixTuningModel(mf.nn.Linear(2, 2), PrefixTuningConfig())
    with pytest.raises(TypeError, match="config must be a PrefixTuningConfig"):
        PrefixTuningModel(classifier(), {"num_virtual_tokens": 3})
    model = classifier()
    with pytest.raises(ValueError, match="modules_to_save names 'head'"):
        get_peft_model(model, PrefixTuningConfig(modules_to_save=["classifier", "head"]))
    assert all(p.requires_grad for p in model.parameters())  # refused before anything changed
    assert type(model.classifier).__name__ == "Linear"
    pm = get_peft_model(classifier(), PrefixTuningConfig(num_virtual_tokens=3))
    with pytest.raises(ValueError, match="cannot be passed as well"):
        pm(input_ids=IDS, past_key_values=mf.nn.attention.KVCache(2))
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, seq_len\) = \(2, 6\)"):
        pm(input_ids=IDS, attention_mask=MASK[:, :4])
    with pytest.raises(NotImplementedError, match="generation"):
        pm.generate(IDS)
    assert pm.base_model.model.__class__.__name__ == "TransformerModel"  # a failed call leaves the model as it was


# ============================================================================ training
def test_a_short_run_on_a_toy_task_lowers_the_loss():
    """A tiny llama learns to continue one fixed pattern through the prefix alone (nothing else trains). Its
    random weights are drawn 10× larger than GPT-2's initialization, so that its frozen layers carry what the
    prefix values put in (at std 0.02 they pass almost nothing on, and no prefix can move the loss much)."""
    mf.seed(0)
    lm = TransformerForCausalLM(config("llama", vocab_size=16, max_position_embeddings=32, initializer_range=0.2))
    pm = get_peft_model(lm, PrefixTuningConfig(num_virtual_tokens=4))
    pattern = np.array([[1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12]] * 4)
    optimizer = mf.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-2, weight_decay=0.0)
    losses = []
    for _ in range(30):
        loss = pm(input_ids=pattern, labels=pattern).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ============================================================================ Hugging Face PEFT
@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 renames past_key_values to cache (PEFT 0.21 still passes the old name)
@pytest.mark.parametrize("family, task", [("gpt2", "CAUSAL_LM"), ("llama", "CAUSAL_LM"), ("bert", "SEQ_CLS")])
@pytest.mark.parametrize("projection", [False, True])
def test_hf_peft_prefix_tuning_gives_our_outputs(tmp_path, family, task, projection):
    """The HF twin of the model (minift's HF-format save) under HF PEFT's prefix tuning, with our prefix
    weights copied in, gives our outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    mf.seed(0)
    if task == "CAUSAL_LM":
        model = TransformerForCausalLM(config(family)).eval()
        auto = transformers.AutoModelForCausalLM
    else:
        model = classifier(family)
        model.classifier.weight.data[...] *= 50  # logits far from 0, so that a difference shows
        auto = transformers.AutoModelForSequenceClassification
    mf.models.save_pretrained(model, tmp_path / "hf", format="hf")
    pm = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=projection))
    ours = pm(input_ids=IDS, attention_mask=MASK).logits.data
    hf = auto.from_pretrained(tmp_path / "hf").eval()
    hf_peft = peft.get_peft_model(hf, peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=3,
                                                              prefix_projection=projection)).eval()
    encoder = hf_peft.prompt_encoder["default"]
    ours_state = {k: torch.tensor(np.asarray(v)) for k, v in pm.prefix_encoder.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == {k: tuple(v.shape) for k, v in ours_state.items()}
    encoder.load_state_dict(ours_state)
    ids, mask = torch.tensor(IDS), torch.tensor(MASK)
    with torch.no_grad():
        if task == "CAUSAL_LM":
            theirs = hf_peft(input_ids=ids, attention_mask=mask).logits.numpy()
        else:
            # PEFT 0.21's sequence-classification wrapper looks for a `past_key_values` argument, which
            # transformers 5 renamed `cache`: build PEFT's cache with its own get_prompt and hand it to the model
            cache = hf_peft.get_prompt(batch_size=2)
            theirs = hf(input_ids=ids, attention_mask=torch.cat([torch.ones(2, 3, dtype=mask.dtype), mask], 1),
                        past_key_values=cache).logits.numpy()
    real = MASK.astype(bool) if theirs.ndim == 3 else slice(None)
    np.testing.assert_allclose(theirs[real], ours[real], rtol=1e-4, atol=1e-4)
    assert np.abs(ours - model(input_ids=IDS, attention_mask=MASK).logits.data)[real].max() > 1e-2  # the prefix matters


# ============================================================================ minift finetune --method prefix
def test_finetune_refuses_bad_prefix_requests_in_one_line(capsys):
    from minift.cli import main

    assert main(["finetune", "minilm", "sentiment", "--method", "prefix", "--num-virtual-tokens", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--num-virtual-tokens" in err[0] and ">= 1" in err[0]


@pytest.mark.zoo
def test_finetune_prefix_on_question_answering(tmp_path, capsys):
    """QA works with prefix tuning (not with prompt tuning); a context too long for the prefix is one line."""
    import json
    from pathlib import Path

    from minift.cli import main

    tiny_bert = str(Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-bert")
    quick = ["--max-steps", "3", "--batch-size", "4", "--eval-steps", "2", "--train-limit", "24", "--eval-limit", "16"]
    out = tmp_path / "run"
    assert main(["finetune", tiny_bert, "qa", "--method", "prefix", "--num-virtual-tokens", "4", "--max-length", "48",
                 *quick, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    layers, hidden = 4, 128
    assert results["trainable_parameters"] == 4 * layers * 2 * hidden + hidden * 2 + 2  # the prefix + qa_outputs
    assert results["args"]["num_virtual_tokens"] == 4 and 0 <= results["test"]["f1"] <= 100
    capsys.readouterr()
    assert main(["finetune", tiny_bert, "sentiment", "--method", "prefix", *quick, "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prefix tuning puts 20 virtual tokens" in err[0] and "--max-length 44" in err[0]
