"""Hugging Face interop: ``save_pretrained(format="hf")`` and reading directories that transformers wrote.

Without transformers: round trips through the HF layout are exact, the files have HF's names and fields,
bad directories give clear errors. With transformers (marked torch; skipped when it is not installed):
transformers' Auto classes load what minift writes and minift loads what transformers writes, with the
same logits (float32, within 1e-4), padding included.
"""
import json
import pickle

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import minift as mf
from minift.models import CheckpointError, TransformerConfig, from_pretrained, hf, save_pretrained

HEADS = {
    "bert": ["TransformerModel", "TransformerForMaskedLM", "TransformerForSequenceClassification",
             "TransformerForTokenClassification", "TransformerForQuestionAnswering"],
    "gpt2": ["TransformerModel", "TransformerForCausalLM", "TransformerForSequenceClassification",
             "TransformerForTokenClassification", "TransformerForQuestionAnswering"],
    "llama": ["TransformerModel", "TransformerForCausalLM", "TransformerForSequenceClassification",
              "TransformerForTokenClassification", "TransformerForQuestionAnswering"],
}
PAIRS = [(family, head) for family, heads in HEADS.items() for head in heads]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
PAD = 0
# right padding with PAD; real tokens are never PAD (HF's decoder classifiers find the last token by it)
IDS = np.array([[5, 17, 9, 30, 2, 11], [7, 3, 25, PAD, PAD, PAD], [12, 8, 6, 19, 4, PAD]])
MASK = (IDS != PAD).astype(np.int64)


def _config(family, head, **kw):
    options = dict(family=family, vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=24, max_position_embeddings=32, pad_token_id=PAD)
    if family == "llama":
        options.update(num_key_value_heads=2, rope_theta=500.0)  # grouped-query attention, a non-default θ
    if head in ("TransformerForSequenceClassification", "TransformerForTokenClassification"):
        options.update(num_labels=3, id2label=LABELS)
    return TransformerConfig(**{**options, **kw})


def _model(family, head, seed=0, **kw):
    """A minift model whose every parameter (norms and biases too) is random, so that no swap goes unseen."""
    mf.seed(seed)
    model = hf.MINIFT_CLASSES[head](_config(family, head, **kw))
    rng = np.random.default_rng(seed)
    for value in model.state_dict().values():
        value[...] = rng.normal(0.0, 0.3, value.shape)
    return model.eval()


def _outputs(out) -> dict:
    """{name: NumPy array} of what a forward pass returned (minift or transformers), logits first."""
    names = ("logits", "start_logits", "end_logits", "last_hidden_state", "pooler_output")
    found = {}
    for name in names:
        value = getattr(out, name, None)
        if value is not None:
            found[name] = value.detach().numpy() if hasattr(value, "detach") else value.numpy()
    if "logits" in found or "start_logits" in found:
        found.pop("last_hidden_state", None)
        found.pop("pooler_output", None)
    return found


def _compare(ours: dict, theirs: dict, atol) -> float:
    """Max |difference| over the outputs both have, at real (unpadded) tokens; asserts within ``atol``."""
    assert set(ours) <= set(theirs), (sorted(ours), sorted(theirs))
    worst = 0.0
    for name, a in ours.items():
        b = theirs[name]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if a.ndim >= 2 and a.shape[:2] == IDS.shape:  # one value per token: padding positions are free
            a, b = a[MASK.astype(bool)], b[MASK.astype(bool)]
        diff = float(np.max(np.abs(a - b)))
        assert diff <= atol, f"{name}: max |diff| {diff} > {atol}"
        worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------- without transformers
@pytest.mark.parametrize("family, head", PAIRS)
def test_round_trip_through_the_hf_layout_is_exact(tmp_path, family, head):
    model = _model(family, head)
    save_pretrained(model, tmp_path, format="hf")
    back = from_pretrained(tmp_path)
    assert type(back) is type(model) and not back.training
    assert back.config == model.config
    _compare(_outputs(model(IDS, attention_mask=MASK)), _outputs(back(IDS, attention_mask=MASK)), atol=0.0)


@pytest.mark.parametrize("family, head", PAIRS)
def test_files_use_hugging_face_names_and_fields(tmp_path, family, head):
    model = _model(family, head)
    save_pretrained(model, tmp_path, format="hf")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == family and cfg["architectures"] == [hf.HF_CLASSES[head][family]]
    assert "format" not in cfg and "family" not in cfg
    size = {"bert": "hidden_size", "gpt2": "n_embd", "llama": "hidden_size"}[family]
    assert cfg[size] == 16
    if head in ("TransformerForSequenceClassification", "TransformerForTokenClassification"):
        assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
        assert cfg["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    with safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}  # what transformers checks for
        names = set(f.keys())
    minift_only = ("embed.tokens", "attn_norm", "mlp_norm", ".attn.q_proj", "mlm_", "lm_head.bias")
    assert not [n for n in names if any(part in f".{n}" for part in minift_only)]
    prefix = hf._prefix(hf.HF_CLASSES[head][family], family)
    embeddings = {"bert": "embeddings.word_embeddings.weight", "gpt2": "wte.weight",
                  "llama": "embed_tokens.weight"}
    assert prefix + embeddings[family] in names


def test_gpt2_conv1d_weights_are_transposed_and_c_attn_fuses_q_k_v(tmp_path):
    model = _model("gpt2", "TransformerModel")
    save_pretrained(model, tmp_path, format="hf")
    stored = load_file(str(tmp_path / "model.safetensors"))
    attn = model.layers[1].attn
    q, k, v = (getattr(attn, f"{x}_proj") for x in "qkv")
    c_attn = stored["h.1.attn.c_attn.weight"]
    assert c_attn.shape == (16, 48)  # Conv1D: (in, out), the transpose of Linear's (out, in)
    np.testing.assert_array_equal(c_attn[:, :16], q.weight.numpy().T)
    np.testing.assert_array_equal(c_attn[:, 16:32], k.weight.numpy().T)
    np.testing.assert_array_equal(c_attn[:, 32:], v.weight.numpy().T)
    np.testing.assert_array_equal(stored["h.1.attn.c_attn.bias"][16:32], k.bias.numpy())
    np.testing.assert_array_equal(stored["h.1.mlp.c_fc.weight"], model.layers[1].mlp.up_proj.weight.numpy().T)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("tie", [True, False])
def test_a_tied_lm_head_is_written_once_an_untied_one_twice(tmp_path, family, tie):
    model = _model(family, "TransformerForCausalLM", tie_word_embeddings=tie)
    save_pretrained(model, tmp_path, format="hf")
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert ("lm_head.weight" in stored) is not tie
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is tie
    back = from_pretrained(tmp_path)
    assert (back.lm_head.weight is back.model.embed.tokens.weight) is tie
    _compare(_outputs(model(IDS)), _outputs(back(IDS)), atol=0.0)


@pytest.mark.parametrize("tie", [True, False])
def test_masked_lm_head_maps_to_cls_predictions(tmp_path, tie):
    model = _model("bert", "TransformerForMaskedLM", tie_word_embeddings=tie)
    save_pretrained(model, tmp_path, format="hf")
    stored = load_file(str(tmp_path / "model.safetensors"))
    transform = "cls.predictions.transform."
    np.testing.assert_array_equal(stored[transform + "dense.weight"], model.mlm_dense.weight.numpy())
    np.testing.assert_array_equal(stored[transform + "LayerNorm.bias"], model.mlm_norm.bias.numpy())
    np.testing.assert_array_equal(stored["cls.predictions.bias"], model.mlm_decoder.bias.numpy())
    assert not any("pooler" in k for k in stored)  # BertForMaskedLM has no pooler
    # minift's decoder is the embedding matrix: untied in config.json, HF looks it up under its own name
    assert ("cls.predictions.decoder.weight" in stored) is not tie
    if not tie:
        np.testing.assert_array_equal(stored["cls.predictions.decoder.weight"],
                                      stored["bert.embeddings.word_embeddings.weight"])
    back = from_pretrained(tmp_path)
    assert back.mlm_decoder.weight is back.model.embed.tokens.weight


def test_decoder_classifier_is_score_and_bert_keeps_its_pooler(tmp_path):
    for family, head_name in (("gpt2", "score"), ("llama", "score"), ("bert", "classifier")):
        model = _model(family, "TransformerForSequenceClassification")
        save_pretrained(model, tmp_path / family, format="hf")
        stored = load_file(str(tmp_path / family / "model.safetensors"))
        np.testing.assert_array_equal(stored[f"{head_name}.weight"], model.classifier.weight.numpy())
        assert (f"{head_name}.bias" in stored) is (family == "bert")
    assert "bert.pooler.dense.weight" in stored
    model = _model("llama", "TransformerForTokenClassification")
    save_pretrained(model, tmp_path / "tok", format="hf")
    assert {"score.weight", "score.bias"} <= set(load_file(str(tmp_path / "tok" / "model.safetensors")))


def test_decoder_sequence_classifier_without_pad_token_id_warns(tmp_path):
    model = _model("gpt2", "TransformerForSequenceClassification", pad_token_id=None)
    with pytest.warns(UserWarning, match="pad_token_id"):
        save_pretrained(model, tmp_path, format="hf")


def test_hf_save_touches_only_its_own_files_and_replaces_a_minift_checkpoint(tmp_path):
    model = _model("llama", "TransformerForCausalLM")
    save_pretrained(model, tmp_path)  # minift format first
    (tmp_path / "notes.txt").write_text("mine")
    save_pretrained(model, tmp_path, format="hf")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    _compare(_outputs(model(IDS)), _outputs(from_pretrained(tmp_path)(IDS)), atol=0.0)
    with pytest.raises(ValueError, match="format must be 'minift' or 'hf'"):
        save_pretrained(model, tmp_path, format="torch")


def test_tokenizer_is_written_with_its_special_tokens(tmp_path):
    tok = mf.tokenization.train_tokenizer(["the quick brown fox", "jumps over the lazy dog"] * 10,
                                          kind="wordpiece", vocab_size=120)
    model = _model("bert", "TransformerModel", vocab_size=tok.vocab_size)
    save_pretrained(model, tmp_path, tokenizer=tok, format="hf")
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and cfg["pad_token"] == "[PAD]"
    assert None not in cfg.values()
    back = mf.tokenization.Tokenizer.load(tmp_path)
    assert back.encode("the lazy fox") == tok.encode("the lazy fox") and back.mask_token == "[MASK]"


def test_sharded_checkpoint_is_read(tmp_path):
    model = _model("llama", "TransformerForCausalLM", tie_word_embeddings=False)
    save_pretrained(model, tmp_path, format="hf")
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({k: state[k] for k in part}, str(tmp_path / file), metadata={"format": "pt"})
    index = {"weight_map": {k: file for file, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _compare(_outputs(model(IDS)), _outputs(from_pretrained(tmp_path)(IDS)), atol=0.0)


def test_bfloat16_is_decoded_as_the_top_half_of_a_float32(tmp_path):
    values = np.array([[1.0, -2.5, 0.15625], [1.5 * 2.0**40, -0.0, 65280.0]], dtype=np.float32)  # bf16-exact
    bits = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, len(bits)]}}).encode()
    (tmp_path / "bf16.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bits)
    got = mf.models.checkpoint.read_safetensors(tmp_path / "bf16.safetensors")["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


# ----------------------------------------------------------------------------- bad input
class _Explodes:
    """Unpickling this creates a file: proof that a loader unpickled something."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("layout", ["hf", "minift"])
def test_pytorch_bin_is_refused_and_never_unpickled(tmp_path, layout):
    model_dir, marker = tmp_path / "model", tmp_path / "unpickled"
    save_pretrained(_model("bert", "TransformerModel"), model_dir, format=layout)  # either config, same message
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Explodes(marker)))
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin.*safetensors only.*never unpickles"):
        from_pretrained(model_dir)
    assert not marker.exists()


def test_unknown_architecture_is_named_with_the_supported_ones(tmp_path):
    save_pretrained(_model("bert", "TransformerModel"), tmp_path, format="hf")
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["architectures"] = ["BertForNextSentencePrediction"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"'BertForNextSentencePrediction' is not supported.*"
                                              r"BertForMaskedLM.*GPT2LMHeadModel.*LlamaForCausalLM"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    with pytest.raises(CheckpointError, match="'T5Model' is not supported"):
        from_pretrained(tmp_path)


def test_config_that_is_not_json_names_the_file(tmp_path):
    save_pretrained(_model("gpt2", "TransformerModel"), tmp_path, format="hf")
    (tmp_path / "config.json").write_text('{"model_type": "gpt2",')
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "RoPE scaling"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"attention_bias": True}, "attention_bias"),
    ({"head_dim": 8}, "head_dim 8"),
])
def test_llama_variants_minift_lacks_are_refused(tmp_path, change, message):
    save_pretrained(_model("llama", "TransformerModel"), tmp_path, format="hf")
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(tmp_path)


def test_missing_extra_and_misshaped_tensors_name_the_tensor_and_file(tmp_path):
    save_pretrained(_model("gpt2", "TransformerForTokenClassification"), tmp_path, format="hf")
    good = load_file(str(tmp_path / "model.safetensors"))
    for tensors, message in (
        ({k: v for k, v in good.items() if k != "classifier.bias"}, r"missing tensors.*classifier.bias"),
        ({**good, "score.weight": good["classifier.weight"]}, r"no place for.*score.weight"),
        ({**good, "transformer.h.0.attn.c_attn.weight": np.zeros((48, 16), np.float32)},
         r"c_attn.weight has shape \(48, 16\), expected \(16, 48\)"),
    ):
        save_file(tensors, str(tmp_path / "model.safetensors"))
        with pytest.raises(CheckpointError, match=message) as e:
            from_pretrained(tmp_path)
        assert "model.safetensors" in str(e.value)


# ----------------------------------------------------------------------------- against transformers
@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


AUTO = {"TransformerModel": "AutoModel", "TransformerForCausalLM": "AutoModelForCausalLM",
        "TransformerForMaskedLM": "AutoModelForMaskedLM",
        "TransformerForSequenceClassification": "AutoModelForSequenceClassification",
        "TransformerForTokenClassification": "AutoModelForTokenClassification",
        "TransformerForQuestionAnswering": "AutoModelForQuestionAnswering"}


def _run_hf(model, ids=IDS, mask=MASK):
    import torch

    with torch.no_grad():
        return _outputs(model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)))


@pytest.mark.torch
@pytest.mark.parametrize("family, head", PAIRS)
def test_transformers_loads_what_minift_writes(tmp_path, transformers, family, head):
    model = _model(family, head)
    save_pretrained(model, tmp_path, format="hf")
    theirs = getattr(transformers, AUTO[head]).from_pretrained(tmp_path).eval()
    assert type(theirs).__name__ == hf.HF_CLASSES[head][family]
    if head in ("TransformerForSequenceClassification", "TransformerForTokenClassification"):
        assert theirs.config.id2label == LABELS and theirs.config.num_labels == 3
    diff = _compare(_outputs(model(IDS, attention_mask=MASK)), _run_hf(theirs), atol=1e-4)
    print(f"minift → transformers {family} {head}: max |Δ| = {diff:.2e}")


def _hf_config(transformers, family, **kw):
    common = dict(vocab_size=40, pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    if family == "bert":
        return transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=24, max_position_embeddings=32, **common, **kw)
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=16, n_layer=2, n_head=4, n_inner=24, n_positions=32,
                                       **common, **kw)
    return transformers.LlamaConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                    rms_norm_eps=1e-5, rope_theta=500.0, **common, **kw)


FROM_HF = [(family, hf.HF_CLASSES[head][family], {}) for family, head in PAIRS] + [
    ("gpt2", "GPT2LMHeadModel", {"tie_word_embeddings": False}),
    ("llama", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    ("llama", "LlamaForCausalLM", {"dtype": "bfloat16"}),
]


@pytest.mark.torch
@pytest.mark.parametrize("family, architecture, kw", FROM_HF, ids=str)
def test_minift_loads_what_transformers_writes(tmp_path, transformers, family, architecture, kw):
    import torch

    torch.manual_seed(0)
    kw = dict(kw)
    dtype = kw.pop("dtype", None)
    labels = {}
    if "Classification" in architecture:
        labels = dict(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    theirs = getattr(transformers, architecture)(_hf_config(transformers, family, **labels, **kw)).eval()
    with torch.no_grad():
        for p in theirs.parameters():  # HF initializes biases to 0 and norms to 1: randomize those too
            p.normal_(0.0, 0.3)
    if dtype == "bfloat16":  # saved as bf16 (as many hub models are); compared in float32, which is exact
        theirs.to(torch.bfloat16).save_pretrained(tmp_path, safe_serialization=True)
        theirs.to(torch.float32)
    else:
        theirs.save_pretrained(tmp_path, safe_serialization=True)
    if dtype == "bfloat16":
        with safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as f:
            assert f.get_slice("lm_head.weight").get_dtype() == "BF16"
    ours = from_pretrained(tmp_path)
    assert hf.HF_CLASSES[type(ours).__name__][family] == architecture and not ours.training
    if labels:
        assert ours.config.id2label == LABELS
    diff = _compare(_outputs(ours(IDS, attention_mask=MASK)), _run_hf(theirs), atol=1e-4)
    print(f"transformers → minift {architecture} {kw or ''}{dtype or ''}: max |Δ| = {diff:.2e}")


@pytest.mark.torch
@pytest.mark.parametrize("kind, family", [("wordpiece", "bert"), ("bpe", "gpt2")])
def test_transformers_autotokenizer_reads_the_saved_tokenizer(tmp_path, transformers, kind, family):
    tok = mf.tokenization.train_tokenizer(["the quick brown fox", "jumps over the lazy dog!"] * 10,
                                          kind=kind, vocab_size=150)
    model = _model(family, "TransformerModel", vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    save_pretrained(model, tmp_path, tokenizer=tok, format="hf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["the lazy fox", "over the quick brown dog!"]
    ours = tok(texts, padding=True)
    assert theirs.pad_token == tok.pad_token and theirs.eos_token == tok.eos_token
    assert theirs(texts, padding=True)["input_ids"] == ours["input_ids"].tolist()


def test_auto_model_keeps_the_trained_head_of_an_hf_directory(tmp_path):
    model = _model("bert", "TransformerForSequenceClassification")
    save_pretrained(model, tmp_path, format="hf")
    back = mf.models.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    _compare(_outputs(model(IDS, attention_mask=MASK)), _outputs(back(IDS, attention_mask=MASK)), atol=0.0)


@pytest.mark.torch
@pytest.mark.zoo
def test_fine_tuned_minilm_loads_in_transformers(tmp_path, transformers):
    import torch

    tok = mf.tokenization.from_pretrained("minilm")
    model = mf.models.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2,
                                                                        id2label={0: "neg", 1: "pos"})
    texts = ["a wonderful, moving film", "dull and far too long"]
    batch = tok(texts, padding=True)
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=np.array([1, 0]))
    out.loss.backward()
    mf.optim.SGD(model.parameters(), lr=0.5).step()  # one fine-tuning step: backbone and head both move
    model.eval()
    save_pretrained(model, tmp_path, tokenizer=tok, format="hf")

    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    their_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    enc = their_tok(texts, padding=True, return_tensors="pt")
    np.testing.assert_array_equal(enc["input_ids"].numpy(), batch["input_ids"])
    with torch.no_grad():
        logits = theirs(**enc).logits.numpy()
    ours = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits.numpy()
    np.testing.assert_allclose(ours, logits, atol=1e-4, rtol=0)
    assert theirs.config.id2label == {0: "neg", 1: "pos"}
