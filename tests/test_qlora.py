"""QLoRA's parts: the block formats (NF4 and GGUF's), QuantizedLinear, quantize_model, LoRA on a 4-bit base."""
import gguf
import numpy as np
import pytest

import minift as mf
import minift.peft  # noqa: F401  (mf.peft)
from minift.models import dequantize_model, quant, quantize_model
from minift.models import TransformerConfig, TransformerForSequenceClassification
from minift.nn import QuantizedLinear
from minift.nn import quantized as quantized_module

from .test_loaders import _tiny_llama, _write_gguf


@pytest.fixture
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


# ----------------------------------------------------------------------------- formats
def test_nf4_levels_are_the_normal_quantiles_of_the_paper():
    np.testing.assert_allclose(quant.nf4_levels(), quant.NF4_CODE, atol=1e-6)
    code = np.asarray(quant.NF4_CODE)
    assert code[7] == 0.0 and code[0] == -1.0 and code[-1] == 1.0 and np.all(np.diff(code) > 0)


@pytest.mark.task("quant.dequantize_nf4")
def test_nf4_dequantize_matches_a_value_by_value_decoder(oracles):
    rs = np.random.default_rng(0)
    raw = rs.integers(0, 256, 36 * 5, dtype=np.uint8).reshape(5, 36)
    raw[:, :4] = rs.uniform(0.1, 3.0, (5, 1)).astype(np.float32).view(np.uint8)  # sensible absmax values
    np.testing.assert_array_equal(quant.dequantize_nf4(raw), oracles.nf4_by_loops(raw))


@pytest.mark.task("quant.dequantize_nf4")
def test_nf4_round_trip_picks_the_nearest_level_of_each_block():
    x = np.random.default_rng(1).standard_normal((6, 128)).astype(np.float32)
    y = quant.dequantize(quant.quantize(x, "NF4"), "NF4", x.shape)
    blocks, approx = x.reshape(-1, 64), y.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    levels = absmax * np.asarray(quant.NF4_CODE, dtype=np.float32)  # (n, 16): each block's 16 values
    nearest = np.take_along_axis(levels, np.abs(blocks[:, :, None] - levels[:, None, :]).argmin(-1), axis=1)
    np.testing.assert_allclose(approx, nearest, rtol=1e-6)
    np.testing.assert_allclose(np.abs(approx).max(axis=1), absmax[:, 0], rtol=1e-6)  # ±absmax is exact
    assert quant.quantize(x, "NF4").size * 8 / x.size == 4.5  # 4 bits + a float32 per 64 values


def test_nf4_spends_its_codes_more_evenly_than_an_even_grid_on_normal_weights():
    """The point of NF4: on normal weights its 16 codes are used more evenly than an evenly spaced grid's
    (Q4_0), so each 4-bit code carries more information: a higher entropy of the code histogram (4 bits at most)."""
    x = np.random.default_rng(2).standard_normal(64 * 4000).astype(np.float32)

    def entropy_bits(codes):
        p = np.bincount(codes.reshape(-1), minlength=16) / codes.size
        return -(p[p > 0] * np.log2(p[p > 0])).sum()

    nf4 = quant.quantize(x, "NF4").reshape(-1, 36)[:, 4:]
    q4_0 = quant.quantize(x, "Q4_0").reshape(-1, 18)[:, 2:]
    h_nf4 = entropy_bits(np.concatenate([nf4 >> 4, nf4 & 15]))
    h_even = entropy_bits(np.concatenate([q4_0 & 15, q4_0 >> 4]))
    assert h_nf4 > 3.85 and h_nf4 > h_even + 0.05, (h_nf4, h_even)


def test_q4_0_quantizer_matches_llama_cpp_bit_for_bit():
    x = np.random.default_rng(3).standard_normal((4, 96)).astype(np.float32)
    ours = quant.quantize(x, "Q4_0")
    np.testing.assert_array_equal(ours, gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q4_0).reshape(-1))


def test_quantize_refuses_unknown_formats_and_partial_blocks():
    with pytest.raises(ValueError, match="quantization type must be one of"):
        quant.quantize(np.zeros(64), "Q3_K")
    with pytest.raises(ValueError, match="blocks of 64 values"):
        quant.quantize(np.zeros(100), "NF4")


# ----------------------------------------------------------------------------- QuantizedLinear
@pytest.mark.parametrize("kind", ["NF4", "Q4_1", "Q4_0", "Q8_0"])
def test_quantized_linear_equals_a_linear_with_the_dequantized_weight(kind, monkeypatch):
    mf.seed(0)
    base = mf.nn.Linear(128, 40)
    layer = QuantizedLinear.from_linear(base, kind)
    w_hat = quant.dequantize(quant.quantize(base.weight.data, kind), kind, (40, 128))
    x = np.random.default_rng(0).standard_normal((3, 5, 128)).astype(np.float32)
    expected = x @ w_hat.T + base.bias.data
    np.testing.assert_allclose(layer(mf.tensor(x)).data, expected, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(quantized_module, "ROWS_BUDGET", 128 * 7)  # ranges of 7 rows: 6 ranges, the last short
    assert len(layer.row_ranges()) == 6
    np.testing.assert_allclose(layer(mf.tensor(x)).data, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.weight.data, w_hat)
    assert 0 < np.abs(w_hat - base.weight.data).max() < np.abs(base.weight.data).max() / 4  # it did round


def test_quantized_linear_gradients_for_input_and_bias_none_for_the_weight(float64, monkeypatch):
    monkeypatch.setattr(quantized_module, "ROWS_BUDGET", 64 * 3)  # the backward sums over several row ranges
    mf.seed(0)
    layer = QuantizedLinear.from_linear(mf.nn.Linear(64, 10), "NF4")
    layer.bias.requires_grad = True
    rs = np.random.default_rng(1)
    x = mf.tensor(rs.standard_normal((4, 64)), requires_grad=True)
    g = rs.standard_normal((4, 10))
    (layer(x) * mf.tensor(g)).sum().backward()
    w_hat = layer.weight.data
    np.testing.assert_allclose(x.grad, g @ w_hat, rtol=1e-12)  # ∂L/∂x = G Ŵ
    np.testing.assert_allclose(layer.bias.grad, g.sum(0), rtol=1e-12)
    assert [n for n, _ in layer.named_parameters()] == ["bias"]  # the weight is not a parameter: nothing to train
    assert mf.gradcheck(lambda xx, bb: QuantizedLinear.forward(_with_bias(layer, bb), xx), (x, layer.bias))


def _with_bias(layer, bias):
    layer.bias = bias
    return layer


def test_quantized_linear_refuses_bad_blocks_with_clear_errors():
    with pytest.raises(ValueError, match="quant_type must be one of"):
        QuantizedLinear(np.zeros((2, 36), np.uint8), "NF5", 64, 2)
    with pytest.raises(ValueError, match="in_features = 48 is not a multiple of 64"):
        QuantizedLinear(np.zeros((2, 27), np.uint8), "NF4", 48, 2)
    with pytest.raises(ValueError, match=r"\(2, 36\) for NF4, got uint8 of shape \(2, 35\)"):
        QuantizedLinear(np.zeros((2, 35), np.uint8), "NF4", 64, 2)
    layer = QuantizedLinear(np.zeros((2, 36), np.uint8), "NF4", 64, 2)
    with pytest.raises(ValueError, match="input has 63 features"):
        layer(mf.tensor(np.zeros((1, 63), np.float32)))


# ----------------------------------------------------------------------------- whole models
def _tiny_classifier():
    mf.seed(0)
    c = TransformerConfig(family="bert", vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, max_position_embeddings=16, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    return TransformerForSequenceClassification(c, num_labels=2)


def test_quantize_model_converts_the_body_keeps_the_head_and_dequantize_model_inverts_it():
    model = _tiny_classifier().eval()
    ids = np.random.default_rng(0).integers(0, 50, (3, 9))
    before = model(ids).logits.data
    quantize_model(model, "NF4")
    kinds = {n: type(m).__name__ for n, m in model.named_modules() if isinstance(m, mf.nn.Linear)}
    assert kinds["model.layers.0.attn.q_proj"] == "QuantizedLinear" and kinds["model.layers.1.mlp.down_proj"] == "QuantizedLinear"
    assert kinds["classifier"] == "Linear" and all(v == "Linear" for k, v in kinds.items() if "pooler" in k)
    blocks, _ = quant.quantized_bytes(model)
    assert blocks == 2 * (4 * 64 * 64 + 2 * 64 * 128) * 36 // 64  # 4.5 bits per quantized weight
    after = model(ids).logits.data
    assert 0 < np.abs(after - before).max() < 0.2  # near the float model, not equal to it
    w_hat = model.model.layers[0].attn.q_proj.weight.data
    dequantize_model(model)
    assert type(model.model.layers[0].attn.q_proj) is mf.nn.Linear
    np.testing.assert_array_equal(model.model.layers[0].attn.q_proj.weight.data, w_hat)
    np.testing.assert_allclose(model(ids).logits.data, after, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no float Linear layer to quantize"):
        quantize_model(mf.nn.Sequential(mf.nn.Linear(64, 2)), "NF4", modules_to_not_convert=["0"])


def _trained_qlora(use_dora=False, steps=30):
    model = quantize_model(_tiny_classifier(), "NF4")
    pm = mf.peft.get_peft_model(model, mf.peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                          modules_to_save=["classifier"], use_dora=use_dora))
    rs = np.random.default_rng(0)
    ids, labels = rs.integers(0, 50, (16, 8)), rs.integers(0, 2, 16)
    opt = mf.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=3e-2)
    pm.train()
    losses = []
    for _ in range(steps):
        loss = pm(ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.data))
    return pm.eval(), ids, losses


def test_lora_on_a_4bit_base_trains_only_the_adapters():
    blocks = {n: b.copy() for n, b in quantize_model(_tiny_classifier(), "NF4").named_buffers() if n.endswith("qweight")}
    pm, ids, losses = _trained_qlora()
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or "classifier" in n for n in trainable)
    n_trainable, n_all = pm.get_nb_trainable_parameters()
    assert n_trainable == 2 * 2 * 4 * (64 + 64) + (64 * 2 + 2)  # 2 layers × q, v × r(in + out); the head's copy
    float_params = sum(p.size for p in pm.parameters())
    assert n_all == float_params + 2 * (4 * 64 * 64 + 2 * 64 * 128)  # the weights held in blocks count too
    assert losses[-1] < 0.5 * losses[0]
    after = {n.replace("base_model.", "").replace(".base_layer", ""): b for n, b in pm.named_buffers()
             if n.endswith("qweight")}  # PEFT's names, back to the model's own
    assert after.keys() == blocks.keys() and all(np.array_equal(b, blocks[n]) for n, b in after.items())  # never moved
    out = pm(ids).logits.data
    dequantize_model(pm.get_base_model())  # float weights: the merge is exact again
    np.testing.assert_allclose(pm.merge_and_unload()(ids).logits.data, out, rtol=1e-4, atol=1e-5)


def _nf4_rounding_bound(x):
    """Per value, the most rounding to the nearest NF4 level can move it: half the widest gap × its block's absmax."""
    half_gap = np.diff(np.asarray(quant.NF4_CODE)).max() / 2
    absmax = np.abs(x.reshape(-1, 64)).max(axis=1, keepdims=True)
    return np.broadcast_to(half_gap * absmax, (x.size // 64, 64)).reshape(x.shape)


def _assert_same_nf4(raw, expected, exact=True):
    """The same blocks; with ``exact=False`` (DoRA: our row norms and minift's may differ in the last float32 bit)
    the same values within that."""
    if exact:
        np.testing.assert_array_equal(raw, expected)
    else:
        shape = (raw.shape[0], raw.shape[1] // 36 * 64)
        np.testing.assert_allclose(quant.dequantize(raw, "NF4", shape), quant.dequantize(expected, "NF4", shape),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("use_dora", [False, True])
def test_merging_lora_into_a_4bit_base_quantizes_the_sum_again_as_peft_does(use_dora):
    pm, ids, _ = _trained_qlora(use_dora)
    out = pm(ids).logits.data
    layer = pm.get_base_model().model.layers[0].attn.q_proj
    base = layer.base_layer
    w_hat, delta = base.weight.data.copy(), layer.delta_weight("default")
    assert np.array_equal(quant.quantize(w_hat, "NF4").reshape(64, -1), base.qweight)  # Q(Ŵ) = the blocks: idempotent
    target = w_hat + delta
    if use_dora:  # DoRA's merged weight (m/n)(Ŵ + s·BA), n the row norms of Ŵ + s·BA
        target = layer.lora_magnitude_vector["default"].weight.data[:, None] / np.linalg.norm(target, axis=1,
                                                                                             keepdims=True) * target
    with pytest.warns(UserWarning, match="quantizes the weight again"):
        pm.merge_adapter()
    _assert_same_nf4(base.qweight, quant.quantize(target, "NF4").reshape(64, -1), exact=not use_dora)  # closed form
    moved = np.abs(base.weight.data - target)
    assert np.all(moved <= _nf4_rounding_bound(target) * (1 + 1e-6)) and moved.max() > 0  # rounded, to the nearest
    merged_weight = base.weight.data.copy()
    with pytest.warns(UserWarning, match="unmerging"):
        pm.unmerge_adapter()
    back = merged_weight - delta
    if use_dora:
        back = merged_weight / (target / (w_hat + delta))[:, :1] - delta  # W'/(m/n) − s·BA
    _assert_same_nf4(base.qweight, quant.quantize(back, "NF4").reshape(64, -1), exact=not use_dora)
    assert not np.array_equal(base.weight.data, w_hat)  # rounded twice: near the original blocks, not equal
    with pytest.warns(UserWarning):
        merged = pm.merge_and_unload()
    assert isinstance(merged.model.layers[0].attn.q_proj, QuantizedLinear)  # still a 4-bit model
    # the rounding changes the outputs, where the float merge keeps them (the test above, to 1e-4)
    assert not np.allclose(merged(ids).logits.data, out, rtol=1e-4, atol=1e-5)


def test_a_safe_merge_into_a_4bit_base_refuses_a_broken_adapter_and_leaves_the_blocks():
    pm, _, _ = _trained_qlora(steps=1)
    layer = pm.get_base_model().model.layers[0].attn.q_proj
    blocks = layer.base_layer.qweight.copy()
    layer.lora_B["default"].weight.data[0, 0] = np.nan
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="non-finite"):
        layer.merge(safe_merge=True)
    assert np.array_equal(layer.base_layer.qweight, blocks) and layer.merged_adapters == []


def test_a_failed_merge_of_a_4bit_model_puts_every_block_back_exactly():
    """All or nothing: the layers merged before the one that overflows get their blocks back, not re-rounded."""
    pm, _, _ = _trained_qlora(steps=1)
    blocks = {n: b.copy() for n, b in pm.named_buffers() if n.endswith("qweight")}
    last = pm.get_base_model().model.layers[-1].attn.v_proj  # merged last: every other layer before it
    last.lora_A["default"].weight.data[...] = 1e20
    last.lora_B["default"].weight.data[...] = 1e20  # finite, but s·BA (4·1e40) overflows float32
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="non-finite"), np.errstate(over="ignore"):
        pm.merge_adapter(safe_merge=True)  # the overflow is the point: NumPy's RuntimeWarning about it is not
    assert all(np.array_equal(b, blocks[n]) for n, b in pm.named_buffers() if n.endswith("qweight"))
    assert all(not layer.merged_adapters for _, layer in pm.adapter_layers())


def test_ia3_on_a_4bit_base_refuses_to_merge_as_peft_does():
    model = quantize_model(_tiny_classifier(), "NF4")
    pm = mf.peft.get_peft_model(model, mf.peft.IA3Config(target_modules=["k_proj", "v_proj", "fc2"],
                                                         feedforward_modules=["fc2"]))
    with pytest.raises(ValueError, match="PEFT refuses it on 4-bit models too"):
        pm.merge_and_unload()


@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0"])
def test_gguf_kept_quantized_gives_the_dequantized_model_outputs(tmp_path, kind):
    m = _tiny_llama()
    _write_gguf(tmp_path / "m.gguf", m, kind=kind)
    floats = mf.models.load_gguf(tmp_path / "m.gguf")
    kept = mf.models.load_gguf(tmp_path / "m.gguf", keep_quantized=True)
    layer = kept.model.layers[0].attn.q_proj
    assert isinstance(layer, QuantizedLinear) and layer.quant_type == kind and layer.qweight.dtype == np.uint8
    np.testing.assert_array_equal(layer.weight.data, floats.model.layers[0].attn.q_proj.weight.data)  # rows unpermuted too
    ids = np.array([[1, 7, 3, 9, 2]])
    np.testing.assert_allclose(kept(ids).logits.data, floats(ids).logits.data, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="keep_quantized applies to GGUF files"):
        mf.models.from_pretrained(str(tmp_path), keep_quantized=True)


@pytest.mark.zoo
def test_smollm2_kept_in_its_q4_1_blocks_matches_the_float_model_in_a_sixth_of_the_memory():
    kept = mf.models.from_pretrained("smollm2", keep_quantized=True)
    blocks, floats = quant.quantized_bytes(kept)
    assert blocks == 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 576 * 1536) * 20 // 32  # Q4_1: 5 bits a weight
    assert floats < 120e6  # the embedding table (49,152 × 576 float32) and the norms
    floats_model = mf.models.from_pretrained("smollm2")
    ids = np.array([[1, 504, 3458, 314, 4649, 314]])
    a, b = kept(ids).logits.data, floats_model(ids).logits.data
    np.testing.assert_allclose(a, b, atol=2e-3 * np.abs(b).max())


def test_an_adapter_trained_on_a_4bit_base_saves_with_hf_names_and_loads_back(tmp_path):
    config = mf.peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"])
    floats = mf.peft.get_peft_model(_tiny_llama(), config)
    with pytest.raises(ValueError, match=r"model.layers.0.mlp.down_proj \(in_features 96\)"):
        quantize_model(_tiny_llama(), "NF4")  # blocks of 64 do not fit rows of 96
    kept = mf.peft.get_peft_model(quantize_model(_tiny_llama(), "Q4_1"), config)
    for (_, a), (_, b) in zip(floats.lora_layers(), kept.lora_layers()):  # the same (non-zero) adapter on both
        b.lora_A["default"].weight.data[...] = a.lora_A["default"].weight.data
        a.lora_B["default"].weight.data[...] = 0.1
        b.lora_B["default"].weight.data[...] = 0.1
    floats.save_pretrained(tmp_path / "f")
    kept.save_pretrained(tmp_path / "q")
    from safetensors.numpy import load_file

    saved_f, saved_q = load_file(str(tmp_path / "f" / "adapter_model.safetensors")), load_file(str(tmp_path / "q" / "adapter_model.safetensors"))
    assert sorted(saved_q) == sorted(saved_f) and any("model.layers.0.self_attn.q_proj.lora_A" in k for k in saved_q)
    again = mf.peft.PeftModel.from_pretrained(quantize_model(_tiny_llama(), "Q4_1"), tmp_path / "q")
    ids = np.array([[3, 9, 27, 4]])
    np.testing.assert_allclose(again.eval()(ids).logits.data, kept.eval()(ids).logits.data, rtol=1e-6, atol=1e-6)
