"""Loaders on files the tests write: HF-BERT safetensors, GGUF (quantized), minift checkpoints; bad files."""
import json

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

import minift as mf
from minift.models import CheckpointError, TransformerConfig, TransformerForCausalLM, TransformerModel
from minift.models import from_pretrained, load_bert, load_gguf, save_pretrained
from minift.models import quant
from minift.models.names import backbone_name_to


def _bert(tmp_path, drop=None, extra=None, reshape=None):
    mf.seed(0)
    c = TransformerConfig(family="bert", vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=16, hidden_dropout_prob=0.1)
    m = TransformerModel(c)
    tensors = {backbone_name_to("bert", k): v.copy() for k, v in m.state_dict().items()}
    tensors["embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    if drop:
        tensors.pop(drop)
    if extra:
        tensors[extra] = np.zeros(3, dtype=np.float32)
    if reshape:
        tensors[reshape] = np.zeros((3, 3), dtype=np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    hf = {"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 16, "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
          "hidden_act": "gelu", "pad_token_id": 0}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    return m


def test_hf_bert_directory_loads_to_the_same_model(tmp_path):
    m = _bert(tmp_path)
    loaded = load_bert(tmp_path)
    assert not loaded.training
    ids = np.array([[2, 5, 9, 3]])
    a, b = m.eval()(ids), loaded(ids)
    np.testing.assert_array_equal(a.last_hidden_state.numpy(), b.last_hidden_state.numpy())
    np.testing.assert_array_equal(a.pooler_output.numpy(), b.pooler_output.numpy())
    assert from_pretrained(tmp_path).config == loaded.config


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(drop="encoder.layer.1.output.dense.bias"), "missing tensors.*encoder.layer.1.output.dense.bias"),
        (dict(extra="cls.predictions.bias"), "no place for.*cls.predictions.bias"),
        (dict(reshape="pooler.dense.weight"), r"pooler.dense.weight has shape \(3, 3\), expected \(8, 8\)"),
    ],
)
def test_bert_loader_names_the_bad_tensor_and_file(tmp_path, kw, message):
    _bert(tmp_path, **kw)
    with pytest.raises(CheckpointError, match=message) as e:
        load_bert(tmp_path)
    assert "model.safetensors" in str(e.value)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    _bert(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="corrupt safetensors header: it claims 16 bytes of JSON, but the file has 9"):
        load_bert(tmp_path)


def _llama_cpp_permute(w, n_head):
    """What llama.cpp's converter does to Q/K rows (written here independently of minift's inverse)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_gguf(path, model, quantize=True, drop=None, extra=None, kind="Q8_0"):
    c = model.config
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.layer_norm_eps)
    w.add_rope_freq_base(c.rope_theta)
    w.add_vocab_size(c.vocab_size)
    expected = {}
    for k, v in model.model.state_dict().items():
        name = backbone_name_to("gguf", k)
        arr = np.asarray(v, dtype=np.float32)
        if name.endswith("attn_q.weight"):
            arr = _llama_cpp_permute(arr, c.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            arr = _llama_cpp_permute(arr, c.num_key_value_heads)
        if name == drop:
            continue
        if quantize and arr.ndim == 2:
            qtype = getattr(gguf.GGMLQuantizationType, kind)
            raw = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, raw, raw_dtype=qtype)
            expected[k] = gguf.quants.dequantize(raw, qtype).reshape(arr.shape)
        else:
            w.add_tensor(name, arr)
            expected[k] = arr
    if extra:
        w.add_tensor(extra, np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def _tiny_llama():
    mf.seed(0)
    c = TransformerConfig(family="llama", vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=96, max_position_embeddings=32)
    return TransformerForCausalLM(c)


def test_gguf_with_q8_0_blocks_and_permuted_qk_loads_to_the_dequantized_model(tmp_path):
    m = _tiny_llama()
    expected = _write_gguf(tmp_path / "m.gguf", m)
    loaded = load_gguf(tmp_path / "m.gguf")
    assert loaded.config.num_key_value_heads == 2 and loaded.config.tie_word_embeddings
    ref = _tiny_llama()
    for k, v in expected.items():  # undo the permutation on our side for the reference
        if k.endswith("attn.q_proj.weight") or k.endswith("attn.k_proj.weight"):
            heads = 4 if "q_proj" in k else 2
            v = v.reshape(heads, v.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(v.shape)
        ref.model.state_dict()[k][...] = v
    ids = np.array([[1, 7, 3, 9]])
    np.testing.assert_allclose(loaded(ids).logits.numpy(), ref.eval()(ids).logits.numpy(), atol=1e-5)
    assert not np.allclose(loaded(ids).logits.numpy(), m.eval()(ids).logits.numpy(), atol=1e-6)  # Q8_0 did round


@pytest.mark.task("quant.dequantize_q4_1")
def test_q4_1_by_hand(monkeypatch):
    # the task is to decode the blocks, not to call the gguf package's decoder
    monkeypatch.setattr(gguf.quants, "dequantize", lambda *a, **k: pytest.fail("dequantize_q4_1 called gguf's decoder"))
    # one block: d = 0.5, m = −1, values 0..15 then 15..0  →  x = 0.5·q − 1
    q = np.r_[np.arange(16), np.arange(15, -1, -1)].astype(np.uint8)
    raw = np.concatenate([np.float16(0.5).reshape(1).view(np.uint8), np.float16(-1).reshape(1).view(np.uint8),
                          q[:16] | (q[16:] << 4)])
    np.testing.assert_array_equal(quant.dequantize_q4_1(raw), 0.5 * q - 1)


def test_gguf_f32_round_trip_is_exact(tmp_path):
    m = _tiny_llama().eval()
    _write_gguf(tmp_path / "m.gguf", m, quantize=False)
    ids = np.array([[5, 6, 7]])
    np.testing.assert_allclose(load_gguf(tmp_path / "m.gguf")(ids).logits.numpy(), m(ids).logits.numpy(), atol=1e-6)


@pytest.mark.parametrize("kw, message", [(dict(drop="blk.1.ffn_up.weight"), "missing tensors.*blk.1.ffn_up.weight"),
                                         (dict(extra="blk.9.bogus.weight"), "no place for.*blk.9.bogus.weight")])
def test_gguf_loader_names_missing_and_extra_tensors(tmp_path, kw, message):
    _write_gguf(tmp_path / "m.gguf", _tiny_llama(), **kw)
    with pytest.raises(CheckpointError, match=message):
        load_gguf(tmp_path / "m.gguf")


def test_not_a_gguf_file(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        load_gguf(tmp_path / "x.gguf")


@pytest.mark.task("quant.dequantize_q4_1")
def test_block_formulas_match_the_gguf_package():
    rs = np.random.default_rng(0)
    x = rs.standard_normal((4, 64)).astype(np.float32) * 3
    for kind, q in (("Q8_0", quant.quantize_q8_0), ("Q4_1", quant.quantize_q4_1)):
        raw = q(x)
        mine = quant.dequantize(raw, kind, x.shape)
        theirs = gguf.quants.dequantize(raw.reshape(4, -1), getattr(gguf.GGMLQuantizationType, kind)).reshape(x.shape)
        np.testing.assert_array_equal(mine, theirs)
        step = np.abs(x).max() / (127 if kind == "Q8_0" else 7.5)
        assert np.abs(mine - x).max() <= step  # within one quantization step
    raw4 = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q4_0)
    np.testing.assert_array_equal(quant.dequantize(raw4, "Q4_0", x.shape),
                                  gguf.quants.dequantize(raw4, gguf.GGMLQuantizationType.Q4_0).reshape(x.shape))
    with pytest.raises(ValueError, match="not supported"):
        quant.dequantize(raw, "Q5_K", x.shape)


def test_minift_checkpoint_round_trip_stores_tied_weights_once(tmp_path):
    m = _tiny_llama().eval()
    save_pretrained(m, tmp_path / "ck")
    from safetensors.numpy import load_file

    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert "lm_head.weight" not in stored and "model.embed.tokens.weight" in stored
    back = from_pretrained(tmp_path / "ck")
    assert isinstance(back, TransformerForCausalLM) and back.lm_head.weight is back.model.embed.tokens.weight
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(back(ids).logits.numpy(), m(ids).logits.numpy())


def test_a_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    m = _tiny_llama().eval()
    save_pretrained(m, tmp_path / "ck")
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()
    import minift.models.checkpoint as ck

    def crash(state, path, metadata=None):
        open(path, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(m, tmp_path / "ck")
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary directory left behind
    from_pretrained(tmp_path / "ck")


def test_checkpoint_that_does_not_fit_the_model_names_the_file(tmp_path):
    m = _tiny_llama()
    save_pretrained(m, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model.safetensors does not fit TransformerForCausalLM"):
        from_pretrained(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="neither a zoo model"):
        from_pretrained(tmp_path / "nowhere")


def test_an_unreadable_cached_zoo_file_names_the_command_that_repairs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIFT_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "smollm2" / "model.gguf"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"GGUF\x03\x00\x00\x00truncated")
    with pytest.raises(CheckpointError, match=r"model.gguf is not a readable GGUF.*download smollm2 --force"):
        load_gguf(cached)
    cached = tmp_path / "home" / "minilm" / "model.safetensors"
    cached.parent.mkdir(parents=True)
    _bert(cached.parent)
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt safetensors header.*minilm --force"):
        load_bert(cached.parent)
    elsewhere = tmp_path / "mine.gguf"  # not a zoo file: no such advice
    elsewhere.write_bytes(b"GGUF")
    with pytest.raises(CheckpointError) as e:
        load_gguf(elsewhere)
    assert "minift download" not in str(e.value)


@pytest.mark.parametrize("edit, message", [
    ({"hidden_size": "16"}, r"config.json: hidden_size must be an integer >= 1, got '16'"),
    ({"num_hidden_layers": 1.5}, r"config.json: num_hidden_layers must be an integer >= 1, got 1.5"),
    ({"hidden_dropout_prob": 1.5}, r"config.json: hidden_dropout_prob must be a probability in \[0, 1\), got 1.5"),
    ({"family": "gpt3"}, r"config.json: family must be one of \('bert', 'gpt2', 'llama'\), got 'gpt3'"),
    ({"hiden_size": 16}, r"config.json: unknown TransformerConfig fields 'hiden_size' \(did you mean 'hidden_size'\?\)"),
    ({"tie_word_embeddings": "yes"}, r"config.json: tie_word_embeddings must be true or false, got 'yes'"),
])
def test_a_hand_edited_config_is_named_with_the_field_and_what_it_holds(tmp_path, edit, message):
    save_pretrained(_tiny_llama(), tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg.update(edit)
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message) as e:
        from_pretrained(tmp_path / "ck")
    assert str(tmp_path / "ck" / "config.json") in str(e.value)


def test_a_config_that_mismatches_every_tensor_lists_the_first_few():
    from minift.models import TransformerConfig, TransformerForCausalLM

    small, wide = (TransformerForCausalLM(TransformerConfig(family="gpt2", vocab_size=20, hidden_size=h,
                                                            num_hidden_layers=2, num_attention_heads=2))
                   for h in (8, 16))
    with pytest.raises(KeyError) as e:
        wide.load_state_dict(small.state_dict())
    lines = str(e.value.args[0]).splitlines()
    n_wrong = sum(tuple(v.shape) != tuple(wide.state_dict()[k].shape) for k, v in small.state_dict().items())
    assert len(lines) == 1 + 5 + 1 and lines[-1] == f"  … and {n_wrong - 5} more tensors of another shape"
