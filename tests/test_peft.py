"""LoRA (minift.peft): the layer's math against closed forms and finite differences, PEFT's matching rules,
freezing, merging, several adapters, and training through the Trainer."""
import math

import numpy as np
import pytest

import minift as mf
from minift.models import TransformerConfig, TransformerForSequenceClassification
from minift.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model, lora_scaling, name_matches

IDS = np.array([[2, 5, 7, 9, 11, 3], [2, 8, 4, 3, 0, 0]])
MASK = (IDS != 0).astype(np.int64)


def tiny_classifier(seed=0, family="bert", num_labels=3):
    mf.seed(seed)
    cfg = TransformerConfig(family=family, vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=16, pad_token_id=0)
    return TransformerForSequenceClassification(cfg, num_labels=num_labels).eval()


def logits(model):
    return model(input_ids=IDS, attention_mask=MASK).logits.data.copy()


def randomize_lora(pm, seed=1, scale=0.3):
    """Give every LoRA B a random value (it starts at 0), so that the adapters change the outputs."""
    rs = np.random.default_rng(seed)
    for _, layer in pm.lora_layers():
        for name in layer.lora_B.keys():
            w = layer.lora_B[name].weight
            w.data[...] = rs.standard_normal(w.shape) * scale


# ============================================================================ the layer
@pytest.mark.task("peft.lora_forward")
def test_lora_layer_output_is_base_plus_scaled_low_rank_product():
    mf.seed(0)
    base = mf.nn.Linear(6, 5)
    layer = LoraLinear(base)
    layer.update_layer("default", r=3, lora_alpha=6)
    rs = np.random.default_rng(0)
    layer.lora_B["default"].weight.data[...] = rs.standard_normal((5, 3))
    x = rs.standard_normal((4, 6)).astype(np.float32)
    A, B = layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data
    W, b = base.weight.data, base.bias.data
    expected = x @ W.T + b + 2.0 * (x @ A.T) @ B.T  # s = 6 / 3
    np.testing.assert_allclose(layer(mf.tensor(x)).data, expected, rtol=1e-5, atol=1e-5)
    assert "default: r=3, s=2)" in repr(layer)  # the scaling in the repr, where a missing /r would show


@pytest.mark.task("peft.lora_forward")
def test_lora_gradients_match_closed_forms_and_finite_differences():
    mf.set_default_dtype("float64")
    try:
        mf.seed(0)
        layer = LoraLinear(mf.nn.Linear(4, 3))
        layer.update_layer("default", r=2, lora_alpha=4)
        rs = np.random.default_rng(1)
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        B.data[...] = rs.standard_normal(B.shape)
        x = mf.tensor(rs.standard_normal((5, 4)), requires_grad=True)
        g = rs.standard_normal((5, 3))
        (layer(x) * mf.tensor(g)).sum().backward()
        s = 2.0
        H = x.data @ A.data.T  # (M, r)
        np.testing.assert_allclose(B.grad, s * g.T @ H, rtol=1e-10)  # ∂L/∂B = s Gᵀ H
        np.testing.assert_allclose(A.grad, s * (g @ B.data).T @ x.data, rtol=1e-10)  # ∂L/∂A = s (G B)ᵀ X
        W = layer.base_layer.weight.data
        np.testing.assert_allclose(x.grad, g @ W + s * (g @ B.data) @ A.data, rtol=1e-10)
        assert layer.base_layer.weight.grad is None and layer.base_layer.bias.grad is None  # frozen: none computed

        def lora_fn(xx, a, bb):  # the tensors gradcheck perturbs, put in the layer's place
            layer.lora_A["default"].weight = a
            layer.lora_B["default"].weight = bb
            return layer(xx)

        assert mf.gradcheck(lora_fn, (x, A, B))
    finally:
        mf.set_default_dtype("float32")


def test_base_layer_gets_no_weight_gradient_when_frozen():
    pm = get_peft_model(tiny_classifier().train(), LoraConfig(r=2, target_modules=["q_proj"]))
    pm(input_ids=IDS, attention_mask=MASK, labels=np.array([0, 1])).loss.backward()
    for name, p in pm.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert all(".lora_" in n for n, p in pm.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_scaling_is_alpha_over_r_or_over_sqrt_r(use_rslora):
    assert lora_scaling(16, 32, use_rslora) == (32 / 4 if use_rslora else 2.0)
    layer = LoraLinear(mf.nn.Linear(8, 8))
    layer.update_layer("default", r=16, lora_alpha=32, use_rslora=use_rslora)
    assert layer.scaling["default"] == pytest.approx(32 / math.sqrt(16) if use_rslora else 32 / 16)


def test_initializations():
    mf.seed(0)
    layer = LoraLinear(mf.nn.Linear(400, 300))
    layer.update_layer("kaiming", r=8, lora_alpha=8)
    layer.update_layer("gauss", r=8, lora_alpha=8, init_lora_weights="gaussian")
    layer.update_layer("random", r=8, lora_alpha=8, init_lora_weights=False)
    a = layer.lora_A["kaiming"].weight.data
    assert np.abs(a).max() <= 1 / math.sqrt(400) and np.abs(a).max() > 0.9 / math.sqrt(400)  # U(±1/√in)
    assert layer.lora_A["gauss"].weight.data.std() == pytest.approx(1 / 8, rel=0.05)  # N(0, 1/r²)
    assert not layer.lora_B["kaiming"].weight.data.any() and not layer.lora_B["gauss"].weight.data.any()
    assert layer.lora_B["random"].weight.data.any()
    assert all(layer.lora_A[n].weight.dtype == np.float32 for n in ("kaiming", "gauss", "random"))


# ============================================================================ the model
def test_fresh_adapter_leaves_the_outputs_unchanged_and_counts_match_the_formula():
    model = tiny_classifier()
    before = logits(model)
    pm = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"]))
    np.testing.assert_array_equal(logits(pm), before)  # B = 0
    trainable, total = pm.get_nb_trainable_parameters()
    lora = 2 * 2 * 4 * (16 + 16)  # 2 layers × (q, v) × r·(in + out)
    head = 16 * 3 + 3
    assert trainable == lora + head
    assert total == sum(p.size for p in model.parameters())  # the model now holds the adapters and the head's copy
    assert total == sum(p.size for p in tiny_classifier().parameters()) + lora + head


def test_print_trainable_parameters_format(capsys):
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"]))
    pm.print_trainable_parameters()
    trainable, total = pm.get_nb_trainable_parameters()
    assert capsys.readouterr().out.strip() == (f"trainable params: {trainable:,d} || all params: {total:,d} || "
                                               f"trainable%: {100 * trainable / total:.4f}")


def test_target_matching_follows_peft_rules():
    assert name_matches("model.layers.0.attn.q_proj", ["q_proj"]) == "q_proj"
    assert name_matches("model.layers.0.attn.q_proj", ["attn.q_proj"]) == "attn.q_proj"
    assert name_matches("model.layers.0.attn.q_proj", ["proj"]) is None  # a suffix must start at a dot
    assert name_matches("model.layers.0.attn.q_proj", r".*\.[qv]_proj") is not None  # regex: whole name
    assert name_matches("model.layers.0.attn.q_proj", r"q_proj") is None
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=r".*\.(q|v)_proj",
                                                      exclude_modules=["layers.1.attn.v_proj"], layers_to_transform=[1]))
    adapted = [n for n, _ in pm.lora_layers()]
    assert adapted == ["model.layers.1.attn.q_proj"]
    report = pm.targeting_report()
    assert "layer 0 is not in layers_to_transform" in report and "excluded by exclude_modules" in report


def test_no_match_and_bad_options_are_clear_errors():
    from minift.peft import AdapterConfig

    with pytest.raises(TypeError, match="needs a minift model .*got NoneType"):
        get_peft_model(None, LoraConfig())
    with pytest.raises(TypeError, match="LoraConfig, IA3Config, PromptTuningConfig or PrefixTuningConfig, got str"):
        get_peft_model(tiny_classifier(), "lora")
    with pytest.raises(TypeError, match=r"add_adapters\(model, config\)"):
        get_peft_model(tiny_classifier(), AdapterConfig())
    with pytest.raises(ValueError, match=r"matches no Linear layer.*q_proj"):
        get_peft_model(tiny_classifier(), LoraConfig(target_modules=["query"]))
    with pytest.raises(ValueError, match="modules_to_save names 'head'"):
        get_peft_model(tiny_classifier(), LoraConfig(modules_to_save=["head"]))
    with pytest.raises(NotImplementedError, match=r"fan_in_fan_out=True is for GPT-2's Conv1D.*\(out, in\)"):
        LoraConfig(fan_in_fan_out=True)
    for bad in (dict(r=0), dict(r=2.5), dict(lora_alpha=-1), dict(lora_dropout=1.0), dict(bias="some"),
                dict(init_lora_weights="uniform"), dict(target_modules=[1, 2])):
        with pytest.raises(ValueError):
            LoraConfig(**bad)


def test_bias_modes():
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"], bias="lora_only"))
    trains = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert {n for n in trains if n.endswith("bias")} == {f"base_model.model.layers.{i}.attn.q_proj.base_layer.bias"
                                                         for i in (0, 1)}
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"], bias="all"))
    biases = [p for n, p in pm.named_parameters() if n.endswith(".bias")]
    assert biases and all(p.requires_grad for p in biases)


def test_merge_equals_unmerged_and_unmerge_restores_the_weights():
    model = tiny_classifier()
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    randomize_lora(pm)
    W0 = {n: l.base_layer.weight.data.copy() for n, l in pm.lora_layers()}
    unmerged = logits(pm)
    assert not np.allclose(unmerged, logits(tiny_classifier()))  # the adapters do something
    pm.merge_adapter()
    np.testing.assert_allclose(logits(pm), unmerged, rtol=1e-5, atol=1e-5)
    for n, l in pm.lora_layers():
        np.testing.assert_allclose(l.base_layer.weight.data - W0[n], l.delta_weight("default"), rtol=1e-5, atol=1e-6)
    pm.unmerge_adapter()
    for n, l in pm.lora_layers():
        np.testing.assert_allclose(l.base_layer.weight.data, W0[n], rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits(pm), unmerged, rtol=1e-6, atol=1e-6)


@pytest.mark.task("peft.lora_merge")
def test_delta_weight_is_scaled_b_times_a():
    layer = LoraLinear(mf.nn.Linear(5, 4))
    layer.update_layer("default", r=2, lora_alpha=3)
    B = np.arange(8, dtype=np.float32).reshape(4, 2)
    layer.lora_B["default"].weight.data[...] = B
    A = layer.lora_A["default"].weight.data
    np.testing.assert_allclose(layer.delta_weight("default"), 1.5 * B @ A, rtol=1e-6)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    before = layer(mf.tensor(x)).data
    layer.merge()
    np.testing.assert_allclose(layer(mf.tensor(x)).data, before, rtol=1e-5, atol=1e-5)


def test_merge_and_unload_gives_a_plain_model_with_the_same_outputs():
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                      modules_to_save=["classifier"]))
    randomize_lora(pm)
    pm.base_model.classifier.modules_to_save["default"].weight.data[...] += 0.5
    expected = logits(pm)
    plain = pm.merge_and_unload()
    assert isinstance(plain, TransformerForSequenceClassification)
    assert not any(isinstance(m, LoraLinear) for m in plain.modules())
    assert type(plain.classifier).__name__ == "Linear"
    np.testing.assert_allclose(logits(plain), expected, rtol=1e-5, atol=1e-5)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in tiny_classifier().named_parameters()]


def test_safe_merge_refuses_non_finite_weights_and_changes_nothing():
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"]))
    name, layer = pm.lora_layers()[0]
    layer.lora_B["default"].weight.data[0, 0] = np.nan
    before = layer.base_layer.weight.data.copy()
    with pytest.raises(ValueError, match="non-finite"):
        layer.merge(safe_merge=True)
    np.testing.assert_array_equal(layer.base_layer.weight.data, before)
    assert layer.merged_adapters == []


def test_disable_adapter_gives_the_base_model_back():
    base_out = logits(tiny_classifier())
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                      modules_to_save=["classifier"]))
    randomize_lora(pm)
    pm.base_model.classifier.modules_to_save["default"].bias.data[...] += 1.0
    adapted = logits(pm)
    with pm.disable_adapter():
        np.testing.assert_allclose(logits(pm), base_out, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(logits(pm), adapted)


def test_several_adapters_and_set_adapter():
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"]), adapter_name="first")
    pm.add_adapter("second", LoraConfig(r=3, target_modules=["q_proj", "v_proj"]))
    randomize_lora(pm, seed=5)
    pm.set_adapter("first")
    out_first = logits(pm)
    assert {n for n, p in pm.named_parameters() if p.requires_grad} == {
        f"base_model.model.layers.{i}.attn.q_proj.lora_{ab}.first.weight" for i in (0, 1) for ab in "AB"}
    pm.set_adapter("second")
    out_second = logits(pm)
    assert not np.allclose(out_first, out_second)
    pm.set_adapter("first")
    np.testing.assert_array_equal(logits(pm), out_first)
    with pytest.raises(ValueError, match="no adapter named 'third'"):
        pm.set_adapter("third")
    with pytest.raises(ValueError, match="already an adapter named 'first'"):
        pm.add_adapter("first", LoraConfig())


def test_trainer_trains_only_the_adapter_and_the_saved_head(tmp_path):
    model = tiny_classifier(num_labels=2).train()
    frozen = {n: p.data.copy() for n, p in model.named_parameters()}
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          modules_to_save=["classifier"]))
    rows = [{"input_ids": list(IDS[i % 2][:6 - 2 * (i % 2)]), "label": i % 2, "text": "x"} for i in range(16)]
    data = mf.data.Dataset.from_list(rows)
    args = mf.train.TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                                      learning_rate=1e-2, logging_steps=100, save_strategy="no", disable_tqdm=True,
                                      plot=False)

    class Pad:  # a stand-in tokenizer: the collator only asks for the pad id
        pad_token_id = 0

    trainer = mf.train.Trainer(pm, args, train_dataset=data, data_collator=mf.data.DataCollatorWithPadding(Pad()))
    trainer.train()
    for name, p in pm.named_parameters():
        inner = name[len("base_model."):]
        if inner in frozen:  # every original parameter is frozen and unchanged
            np.testing.assert_array_equal(p.data, frozen[inner], err_msg=name)
    moved = [n for n, p in pm.named_parameters() if ".lora_B." in n and np.abs(p.data).max() > 0]
    assert moved, "LoRA B never moved away from 0"
    state_ids = set(trainer.optimizer.state)
    assert state_ids == {id(p) for p in pm.parameters() if p.requires_grad}  # optimizer state: trainable only


# ============================================================================ PEFT's files
def _adapted(family="bert", seed=0, **options):
    model = tiny_classifier(family=family, num_labels=2)
    cfg = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"]) | options
    pm = get_peft_model(model, LoraConfig(**cfg))
    randomize_lora(pm, seed=seed)
    pm.base_model.classifier.modules_to_save["default"].weight.data[...] += 0.2  # (llama's head has no bias)
    return pm


def test_adapter_files_have_peft_keys_and_hf_module_names(tmp_path):
    import json

    from safetensors.numpy import load_file

    pm = _adapted()
    pm.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["task_type"] == "SEQ_CLS" and config["modules_to_save"] == ["classifier"]
    layers = [f"bert.encoder.layer.{i}.attention.self.{p}" for i in (0, 1) for p in ("query", "value")]
    assert config["target_modules"] == layers
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    expected = {f"base_model.model.{m}.lora_{ab}.weight" for m in layers for ab in "AB"} | {
        "base_model.model.classifier.weight", "base_model.model.classifier.bias"}
    assert set(tensors) == expected
    q = pm.base_model.model.layers[0].attn.q_proj
    np.testing.assert_array_equal(tensors[f"base_model.model.{layers[0]}.lora_B.weight"], q.lora_B["default"].weight.data)
    assert tensors[f"base_model.model.{layers[0]}.lora_A.weight"].shape == (4, 16)  # (r, in)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_save_and_load_round_trip(tmp_path, family):
    pm = _adapted(family)
    expected = logits(pm)
    pm.save_pretrained(tmp_path / "lora")
    fresh = tiny_classifier(family=family, num_labels=2)  # the same base (seed 0), no adapter
    again = PeftModel.from_pretrained(fresh, tmp_path / "lora")
    np.testing.assert_array_equal(logits(again), expected)
    assert not any(p.requires_grad for p in again.parameters())  # inference unless is_trainable
    trainable = PeftModel.from_pretrained(tiny_classifier(family=family, num_labels=2), tmp_path / "lora",
                                          is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] == pm.get_nb_trainable_parameters()[0]


def test_loading_a_wrong_adapter_is_a_clear_error(tmp_path):
    import json

    from safetensors.numpy import load_file, save_file

    from minift.models.checkpoint import CheckpointError

    _adapted().save_pretrained(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        PeftModel.from_pretrained(tiny_classifier(num_labels=2), tmp_path / "nothing")
    mf.seed(0)
    wider = TransformerForSequenceClassification(TransformerConfig(
        family="bert", vocab_size=32, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16), num_labels=2)
    with pytest.raises(CheckpointError, match=r"has shape \(4, 16\).*different model"):
        PeftModel.from_pretrained(wider, tmp_path / "ok")
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((tmp_path / "ok" / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(config | {"peft_type": "PREFIX_TUNING"}))
    (bad / "adapter_model.safetensors").write_bytes((tmp_path / "ok" / "adapter_model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="peft_type is .PREFIX_TUNING.*LoRA and IA3"):
        PeftModel.from_pretrained(tiny_classifier(num_labels=2), bad)
    # PEFT's flag for GPT-2's Conv1D, whose weight is (in, out): minift's Linear is (out, in), so a true one
    # would be read transposed; refused, naming the file
    (bad / "adapter_config.json").write_text(json.dumps(config | {"fan_in_fan_out": True}))
    with pytest.raises(CheckpointError, match=r"adapter_config.json: fan_in_fan_out is true \(GPT-2's Conv1D"):
        PeftModel.from_pretrained(tiny_classifier(num_labels=2), bad)
    (bad / "adapter_config.json").write_text(json.dumps(config))
    tensors = load_file(tmp_path / "ok" / "adapter_model.safetensors")
    save_file(tensors | {"base_model.model.bert.pooler.dense.lora_A.weight": np.zeros((4, 16), np.float32)},
              bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="no place for.*pooler"):
        PeftModel.from_pretrained(tiny_classifier(num_labels=2), bad)
    del tensors["base_model.model.classifier.weight"]
    save_file(tensors, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="missing tensors.*classifier.weight"):
        PeftModel.from_pretrained(tiny_classifier(num_labels=2), bad)
    with pytest.raises(ValueError, match="c_attn"):
        _adapted("gpt2").save_pretrained(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match=r"adapter_config.json: this adapter, on \['bert.encoder.*query.* cannot go "
                                              r"onto the gpt2 model given"):  # a bert adapter, the wrong base
        PeftModel.from_pretrained(tiny_classifier(family="gpt2", num_labels=2), tmp_path / "ok")


def _both_ways_with_hf_peft(tmp_path, family, pm):
    """HF PEFT loads pm's adapter onto the HF twin of the base model with pm's outputs; minift loads the file HF
    PEFT writes back (its key order, its "classifier"/"score") with the same outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    mf.models.save_pretrained(tiny_classifier(family=family, num_labels=2), tmp_path / "hf", format="hf")
    expected = logits(pm)
    pm.save_pretrained(tmp_path / "ours")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    hf_peft = peft.PeftModel.from_pretrained(hf, tmp_path / "ours").eval()
    with torch.no_grad():
        theirs = hf_peft(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
    np.testing.assert_allclose(theirs, expected, rtol=1e-4, atol=1e-4)
    hf_peft.save_pretrained(tmp_path / "theirs")
    again = PeftModel.from_pretrained(tiny_classifier(family=family, num_labels=2), tmp_path / "theirs")
    np.testing.assert_allclose(logits(again), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("family, saved", [("bert", ["classifier"]), ("llama", ["classifier"]),
                                           ("bert", ["classifier", "pooler"])])
def test_hf_peft_reads_our_adapter_and_we_read_theirs(tmp_path, family, saved):
    pm = _adapted(family, modules_to_save=saved)
    if "pooler" in saved:  # a trained pooler, as minift finetune --method lora leaves it
        pm.base_model.model.pooler.modules_to_save["default"].bias.data[...] += 0.3
    _both_ways_with_hf_peft(tmp_path, family, pm)


# ============================================================================ LoRA+
def test_loraplus_gives_b_ratio_times_the_learning_rate_and_steps_accordingly():
    from minift.peft import create_loraplus_optimizer

    pm = get_peft_model(tiny_classifier(num_labels=2), LoraConfig(r=2, target_modules=["q_proj"],
                                                                  modules_to_save=["classifier"]))
    opt = create_loraplus_optimizer(pm, mf.optim.SGD, lr=0.01, loraplus_lr_ratio=16)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["lora_B"]["lr"] == pytest.approx(0.16) and by_name["lora_A and other matrices"]["lr"] == 0.01
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in pm.parameters() if p.requires_grad}  # every trainable parameter, once
    names = {id(p): n for n, p in pm.named_parameters()}
    assert all(".lora_B." in names[id(p)] for p in by_name["lora_B"]["params"])
    assert all(p.ndim == 1 for p in by_name["1-D (no decay)"]["params"]) and by_name["1-D (no decay)"]["weight_decay"] == 0
    # plain SGD: each parameter moves by its group's lr × its gradient
    for p in pm.parameters():
        p.grad = np.ones(p.shape, dtype=p.dtype) if p.requires_grad else None
    before = {id(p): p.data.copy() for p in pm.parameters()}
    opt.step()
    for g in opt.param_groups:
        for p in g["params"]:
            np.testing.assert_allclose(before[id(p)] - p.data, g["lr"], rtol=1e-5)
    with pytest.raises(ValueError, match="loraplus_lr_ratio"):
        create_loraplus_optimizer(pm, mf.optim.AdamW, lr=0.01, loraplus_lr_ratio=0.5)


# ============================================================================ DoRA
def _dora_layer(seed=0, dtype="float32", dropout=0.0):
    mf.seed(seed)
    layer = LoraLinear(mf.nn.Linear(6, 5))
    layer.update_layer("default", r=2, lora_alpha=4, lora_dropout=dropout, use_dora=True)
    rs = np.random.default_rng(seed)
    layer.lora_B["default"].weight.data[...] = rs.standard_normal((5, 2))
    layer.lora_magnitude_vector["default"].weight.data[...] *= 1 + 0.3 * rs.standard_normal(5)
    return layer


def test_dora_starts_as_the_base_layer_and_follows_its_formula():
    mf.seed(0)
    base = mf.nn.Linear(6, 5)
    layer = LoraLinear(base)
    layer.update_layer("default", r=2, lora_alpha=4, use_dora=True)
    m = layer.lora_magnitude_vector["default"].weight.data
    np.testing.assert_allclose(m, np.linalg.norm(base.weight.data, axis=1), rtol=1e-6)  # m = ‖W‖ rows: W' = W
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(layer(mf.tensor(x)).data, base(mf.tensor(x)).data, rtol=1e-5, atol=1e-6)
    layer = _dora_layer()
    W, b = layer.base_layer.weight.data, layer.base_layer.bias.data
    A, B = layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data
    m = layer.lora_magnitude_vector["default"].weight.data
    adapted = W + 2.0 * B @ A
    expected = x @ (m[:, None] * adapted / np.linalg.norm(adapted, axis=1)[:, None]).T + b
    np.testing.assert_allclose(layer(mf.tensor(x)).data, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.task("peft.dora_norm")
def test_dora_norm_is_over_the_input_axis():
    from minift.peft.lora import dora_weight_norm

    W = np.arange(12, dtype=np.float64).reshape(3, 4)
    A, B = np.ones((2, 4)), np.full((3, 2), 0.5)
    np.testing.assert_allclose(dora_weight_norm(W, A, B, 2.0), np.linalg.norm(W + 2.0 * B @ A, axis=1))


def test_dora_gradients_treat_the_norm_as_a_constant():
    mf.set_default_dtype("float64")
    try:
        layer = _dora_layer()
        x = mf.randn(4, 6, requires_grad=True)
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        m = layer.lora_magnitude_vector["default"].weight
        g = np.random.default_rng(3).standard_normal((4, 5))
        (layer(x) * mf.tensor(g)).sum().backward()
        W = layer.base_layer.weight.data
        n = np.linalg.norm(W + 2.0 * B.data @ A.data, axis=1)
        direction_out = x.data @ (W + 2.0 * B.data @ A.data).T  # (M, out)
        np.testing.assert_allclose(m.grad, (g * direction_out / n).sum(axis=0), rtol=1e-10)  # ∂L/∂m
        # y = (m / n) ⊙ x (W + s·BA)ᵀ + b with n a constant: h = g ⊙ m/n, ∂L/∂B = s·hᵀ(x Aᵀ), ∂L/∂A = s·(h B)ᵀ x.
        # A norm left in the graph adds its own terms (here it moves all 10 elements of B's gradient, by up to 2.1),
        # so this is where detaching shows.
        h = g * (m.data / n)  # (M, out)
        np.testing.assert_allclose(B.grad, 2.0 * h.T @ (x.data @ A.data.T), rtol=1e-10)  # (out, r)
        np.testing.assert_allclose(A.grad, 2.0 * (h @ B.data).T @ x.data, rtol=1e-10)  # (r, in)

        # the detached norm is a constant of the backward, so check the gradient of x and m, where it is exact
        n_const = n.copy()

        def dora_fixed_n(xx, mm):
            scale = mm / n_const
            return (xx @ mf.tensor((W + 2.0 * B.data @ A.data).T)) * scale + mf.tensor(layer.base_layer.bias.data)

        np.testing.assert_allclose(dora_fixed_n(x, m).data, layer(x).data, rtol=1e-12)
        assert mf.gradcheck(dora_fixed_n, (x, m))
    finally:
        mf.set_default_dtype("float32")


def test_dora_merge_and_unmerge():
    layer = _dora_layer().eval()
    x = mf.tensor(np.random.default_rng(4).standard_normal((3, 6)).astype(np.float32))
    W0, expected = layer.base_layer.weight.data.copy(), layer(x).data
    layer.merge()
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    np.testing.assert_allclose(layer.base_layer.weight.data, W0, rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_hf_peft_reads_our_dora_adapter_and_we_read_theirs(tmp_path):
    pm = _adapted(use_dora=True)
    for _, layer in pm.lora_layers():
        layer.lora_magnitude_vector["default"].weight.data[...] *= 1.2
    _both_ways_with_hf_peft(tmp_path, "bert", pm)


# ============================================================================ IA3
def _ia3(family="bert", seed=0):
    from minift.peft import IA3Config

    pm = get_peft_model(tiny_classifier(family=family, num_labels=2),
                        IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                                  modules_to_save=["classifier"]))
    rs = np.random.default_rng(seed)
    for _, layer in pm.adapter_layers():
        p = layer.ia3_l.default
        p.data[...] = 1 + 0.5 * rs.standard_normal(p.shape)
    return pm


@pytest.mark.task("peft.ia3_forward")
def test_ia3_scales_outputs_or_feedforward_inputs_and_starts_as_the_base():
    from minift.peft import IA3Config, IA3Linear

    before = logits(tiny_classifier(num_labels=2))
    pm = get_peft_model(tiny_classifier(num_labels=2), IA3Config())
    np.testing.assert_array_equal(logits(pm), before)  # vectors of ones
    kinds = {n.split(".")[-1]: (m.is_feedforward, m.ia3_l.default.shape) for n, m in pm.adapter_layers()}
    assert kinds == {"k_proj": (False, (16, 1)), "v_proj": (False, (16, 1)), "down_proj": (True, (1, 16 * 4))}
    trainable, _ = pm.get_nb_trainable_parameters()
    assert trainable == 2 * (16 + 16 + 64)  # per layer: out of k and v, in of down_proj
    mf.seed(0)
    out_layer, ff_layer = IA3Linear(mf.nn.Linear(4, 3), False), IA3Linear(mf.nn.Linear(4, 3), True)
    for layer in (out_layer, ff_layer):
        layer.update_layer("default")
        layer.ia3_l.default.data[...] = np.arange(1, layer.ia3_l.default.size + 1).reshape(layer.ia3_l.default.shape)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    W, b = out_layer.base_layer.weight.data, out_layer.base_layer.bias.data
    np.testing.assert_allclose(out_layer(mf.tensor(x)).data, (x @ W.T + b) * np.array([1, 2, 3]), rtol=1e-6)
    W, b = ff_layer.base_layer.weight.data, ff_layer.base_layer.bias.data
    np.testing.assert_allclose(ff_layer(mf.tensor(x)).data, (x * np.array([1, 2, 3, 4])) @ W.T + b, rtol=1e-6)


def test_ia3_gradients_and_merge():
    from minift.peft import IA3Linear

    mf.set_default_dtype("float64")
    try:
        for feedforward in (False, True):
            mf.seed(1)
            layer = IA3Linear(mf.nn.Linear(5, 3), feedforward)
            layer.update_layer("default")
            layer.ia3_l.default.data[...] += np.random.default_rng(2).standard_normal(layer.ia3_l.default.shape) * 0.3
            x = mf.randn(4, 5, requires_grad=True)

            def ia3_fn(xx, vec):
                setattr(layer.ia3_l, "default", vec)
                return layer(xx)

            assert mf.gradcheck(ia3_fn, (x, layer.ia3_l.default))
            expected = layer(x).data
            layer.merge()
            np.testing.assert_allclose(layer(x).data, expected, rtol=1e-12)
            layer.unmerge()
            np.testing.assert_allclose(layer(x).data, expected, rtol=1e-7)
    finally:
        mf.set_default_dtype("float32")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_ia3_files_round_trip(tmp_path, family):
    import json

    from safetensors.numpy import load_file

    pm = _ia3(family)
    expected = logits(pm)
    pm.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and len(config["feedforward_modules"]) == 2
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert all(k.endswith(".ia3_l") or ".classifier." in k or k.endswith(("score.weight", "classifier.weight"))
               for k in keys)
    again = PeftModel.from_pretrained(tiny_classifier(family=family, num_labels=2), tmp_path)
    np.testing.assert_array_equal(logits(again), expected)
    merged = _ia3(family).merge_and_unload()
    np.testing.assert_allclose(logits(merged), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_hf_peft_reads_our_ia3_adapter_and_we_read_theirs(tmp_path, family):
    _both_ways_with_hf_peft(tmp_path, family, _ia3(family))


# ============================================================================ bottleneck adapters
@pytest.mark.task("peft.adapter_block")
def test_bottleneck_adapter_is_identity_at_first_and_follows_its_formula():
    from minift.peft import AdapterConfig, Bottleneck, add_adapters

    before = logits(tiny_classifier())
    model = add_adapters(tiny_classifier(), AdapterConfig(reduction_factor=4, modules_to_save=["classifier"]))
    np.testing.assert_allclose(logits(model), before, rtol=1e-6, atol=1e-6)  # up = 0: the identity
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    per_adapter = 2 * 16 * 4 + 4 + 16
    adapters = sum(p.size for n, p in model.named_parameters() if ".adapter." in n)
    assert adapters == 2 * 2 * per_adapter  # houlsby: 2 per layer, 2 layers
    assert all(".adapter." in n or "norm" in n or n.startswith("classifier.") for n in trains)
    mf.seed(0)
    block = Bottleneck(6, 2, "relu")
    rs = np.random.default_rng(0)
    block.up.weight.data[...] = rs.standard_normal((6, 3))
    h = rs.standard_normal((4, 6)).astype(np.float32)
    Wd, bd, Wu, bu = block.down.weight.data, block.down.bias.data, block.up.weight.data, block.up.bias.data
    np.testing.assert_allclose(block(mf.tensor(h)).data, h + np.maximum(h @ Wd.T + bd, 0) @ Wu.T + bu, rtol=1e-5, atol=1e-6)
    pfeiffer = add_adapters(tiny_classifier(), AdapterConfig(placement="pfeiffer"))
    assert sum(1 for n, _ in pfeiffer.named_modules() if n.endswith(".adapter")) == 2


def test_bottleneck_adapter_gradients():
    from minift.peft import Bottleneck

    mf.set_default_dtype("float64")
    try:
        mf.seed(0)
        block = Bottleneck(6, 2, "gelu")
        block.up.weight.data[...] = np.random.default_rng(1).standard_normal((6, 3))
        h = mf.randn(3, 6, requires_grad=True)

        def fn(hh, wd, wu):
            block.down.weight, block.up.weight = wd, wu
            return block(hh)

        assert mf.gradcheck(fn, (h, block.down.weight, block.up.weight))
    finally:
        mf.set_default_dtype("float32")


# ============================================================================ prompt tuning
def test_prompt_tuning_prepends_learned_embeddings_and_only_they_train():
    from minift.peft import PromptTuningConfig

    mf.seed(0)
    model = tiny_classifier(num_labels=2)
    pt = get_peft_model(model, PromptTuningConfig(num_virtual_tokens=3, prompt_tuning_init="SAMPLE_VOCAB",
                                                  modules_to_save=["classifier"]))
    trainable, _ = pt.get_nb_trainable_parameters()
    assert trainable == 3 * 16 + 16 * 2 + 2
    # the same as feeding the embeddings by hand: [P; E(x)] with n more mask ones, positions over n + T
    P = pt.prompt_embeddings.data
    body = model.model
    ids = IDS
    placeholder = np.concatenate([np.zeros((2, 3), dtype=ids.dtype), ids], axis=1)
    mask = np.concatenate([np.ones((2, 3), dtype=np.int64), MASK], axis=1)
    tokens = body.embed.tokens
    saved = tokens.weight.data.copy()
    out = pt(input_ids=IDS, attention_mask=MASK, labels=np.array([0, 1]))
    out.loss.backward()
    assert pt.prompt_embeddings.grad is not None and np.abs(pt.prompt_embeddings.grad).max() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    # reference: the input embeddings built by hand, [P; E(x)], run through the backbone, pooled, classified
    with mf.no_grad():
        emb = tokens.weight.data[placeholder]
        emb[:, :3] = P
        hidden = _run_with_embeddings(model, emb, mask)
        h_ref = model.classifier.modules_to_save["default"](_pool(model, hidden))
    np.testing.assert_allclose(out.logits.data, h_ref.data, rtol=1e-5, atol=1e-5)
    assert (tokens.weight.data == saved).all()  # the token table itself is untouched


def _run_with_embeddings(model, emb, mask):
    """The backbone on given input embeddings (positions 0..n+T-1, token types 0), by a temporary table."""
    body = model.model
    b, t, c = emb.shape
    fake_ids = np.arange(b * t).reshape(b, t) % t
    original = body.embed.tokens.weight.data.copy()
    table = np.zeros((max(t, original.shape[0]), c), dtype=original.dtype)
    out_rows = []
    for i in range(b):  # one sequence at a time: its rows become the table's first t rows
        table[:t] = emb[i]
        body.embed.tokens.weight.data = table[: original.shape[0]] if t <= original.shape[0] else table
        out_rows.append(body(fake_ids[i:i + 1], attention_mask=mask[i:i + 1]).last_hidden_state.data)
    body.embed.tokens.weight.data = original
    return mf.tensor(np.concatenate(out_rows))


def _pool(model, hidden):
    """The sequence classifier's features: the pooler on the first position (bert), as the head reads them."""
    return mf.tensor(np.tanh(hidden.data[:, 0] @ model.model.pooler.weight.data.T + model.model.pooler.bias.data))


def test_prompt_tuning_token_outputs_line_up_and_text_init(tmp_path):
    from minift.peft import PromptTuningConfig

    mf.seed(0)
    cfg = TransformerConfig(family="bert", vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=16)
    model = mf.models.TransformerForTokenClassification(cfg, num_labels=3)
    pt = get_peft_model(model, PromptTuningConfig(num_virtual_tokens=2, modules_to_save=["classifier"]))
    labels = np.array([[-100, 1, 2, 0, 1, -100], [-100, 2, 1, -100, -100, -100]])
    out = pt(input_ids=IDS, attention_mask=MASK, labels=labels)
    assert out.logits.shape == (2, 6, 3)  # the virtual positions are dropped from per-token outputs
    logp = out.logits.data - np.log(np.exp(out.logits.data).sum(-1, keepdims=True))
    valid = labels != -100
    expected = -logp[valid, labels[valid]].mean()  # virtual tokens carry no label
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)

    class Tok:  # a stand-in tokenizer for TEXT init: ids of the words
        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [[5, 6, 7]]}

    text = get_peft_model(tiny_classifier(), PromptTuningConfig(num_virtual_tokens=5, prompt_tuning_init="TEXT",
                                                                prompt_tuning_init_text="x", tokenizer=Tok()))
    table = text.base_model.model.embed.tokens.weight.data
    np.testing.assert_array_equal(text.prompt_embeddings.data, table[[5, 6, 7, 5, 6]])
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PromptTuningConfig(num_virtual_tokens=0)
    with pytest.raises(ValueError, match="TEXT"):
        PromptTuningConfig(prompt_tuning_init="TEXT")


# ============================================================================ found by review: each failed before its fix
def test_bias_all_saves_every_trained_bias_norms_included(tmp_path):
    pm = get_peft_model(tiny_classifier(num_labels=2), LoraConfig(r=2, target_modules=["q_proj"], bias="all"))
    for name, p in pm.named_parameters():
        if name.endswith(".bias") and p.requires_grad:
            p.data[...] += 0.1
    expected = logits(pm)
    pm.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(tiny_classifier(num_labels=2), tmp_path)
    np.testing.assert_allclose(logits(again), expected, rtol=1e-6, atol=1e-6)


def test_failed_calls_leave_the_model_as_it_was(tmp_path):
    model = tiny_classifier(num_labels=2)
    names = [n for n, _ in model.named_parameters()]
    with pytest.raises(ValueError, match="matches no Linear"):
        get_peft_model(model, LoraConfig(target_modules=["q_prj"], modules_to_save=["classifier"]))
    assert [n for n, _ in model.named_parameters()] == names and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="left out.*exclude_modules"):
        get_peft_model(model, LoraConfig(target_modules=["q_proj"], exclude_modules=["q_proj"]))
    with pytest.raises(ValueError, match="layers_to_transform"):
        get_peft_model(model, LoraConfig(target_modules=["q_proj"], layers_to_transform=[5]))
    with pytest.raises(ValueError, match="not a valid regular expression"):
        get_peft_model(model, LoraConfig(target_modules="("))
    pm = _adapted()
    pm.save_pretrained(tmp_path / "ok")
    mf.seed(0)
    wider = TransformerForSequenceClassification(TransformerConfig(
        family="bert", vocab_size=32, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16), num_labels=2)
    wider_names = [n for n, _ in wider.named_parameters()]
    with pytest.raises(Exception, match="shape"):
        PeftModel.from_pretrained(wider, tmp_path / "ok")
    assert [n for n, _ in wider.named_parameters()] == wider_names and all(p.requires_grad for p in wider.parameters())
    with pytest.raises(ValueError, match="already has adapters"):
        get_peft_model(pm.base_model, LoraConfig())


def test_safe_merge_is_all_or_nothing_and_set_adapter_unmerges_first():
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"]))
    randomize_lora(pm)
    before = [layer.base_layer.weight.data.copy() for _, layer in pm.lora_layers()]
    pm.lora_layers()[-1][1].lora_B["default"].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        pm.merge_adapter(safe_merge=True)
    for (_, layer), w in zip(pm.lora_layers(), before):
        np.testing.assert_array_equal(layer.base_layer.weight.data, w)
        assert layer.merged_adapters == []
    pm = get_peft_model(tiny_classifier(), LoraConfig(r=2, target_modules=["q_proj"]), adapter_name="a")
    pm.add_adapter("b", LoraConfig(r=2, target_modules=["q_proj"]))
    assert pm.active_adapter == "a"  # adding does not switch, as in PEFT
    randomize_lora(pm)
    pm.set_adapter("b")
    only_b = logits(pm)
    pm.set_adapter("a")
    pm.merge_adapter()
    with pytest.warns(UserWarning, match="unmerged first"):
        pm.set_adapter("b")
    np.testing.assert_allclose(logits(pm), only_b, rtol=1e-5, atol=1e-6)


def test_unloaded_peft_model_refuses_to_save_and_bad_types_are_refused(tmp_path):
    from minift.peft import AdapterConfig, IA3Config

    pm = _adapted()
    pm.merge_and_unload()
    with pytest.raises(RuntimeError, match="merged and unloaded"):
        pm.save_pretrained(tmp_path)
    for bad in (dict(use_rslora="no"), dict(use_dora="yes"), dict(init_lora_weights=1)):
        with pytest.raises(ValueError):
            LoraConfig(**bad)
    with pytest.raises(ValueError, match="modules_to_save"):
        IA3Config(modules_to_save="classifier")
    with pytest.raises(ValueError, match="modules_to_save"):
        AdapterConfig(modules_to_save="classifier")
    with pytest.raises(ValueError, match="init_ia3_weights"):
        IA3Config(init_ia3_weights="x")
    with pytest.raises(ValueError, match="no adapter named 'zzz'"):
        _adapted().save_pretrained(tmp_path / "z", adapter_name="zzz")


def test_prompt_tuned_causal_lm_counts_every_label_as_a_target():
    """With n virtual tokens in front (labels −100), the last virtual token predicts the first real label:
    the loss averages over every label ≠ −100, and the Trainer's count (shifts_labels False) says the same."""
    from minift.peft import PromptTuningConfig
    from minift.train import count_targets

    mf.set_default_dtype("float64")
    try:
        mf.seed(0)
        cfg = mf.models.TransformerConfig(family="llama", vocab_size=19, hidden_size=8, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
        lm = mf.models.TransformerForCausalLM(cfg)
        pt = get_peft_model(lm, PromptTuningConfig(num_virtual_tokens=3))
        ids = np.random.default_rng(0).integers(0, 19, (2, 5))
        labels = ids.copy()
        labels[1, 3:] = -100
        batch = {"input_ids": ids, "labels": labels}
        n = count_targets(batch, pt.shifts_labels)
        assert n == int((labels != -100).sum()) == 8
        total = pt(**batch).loss.item() * n  # the mean loss times the count: the summed NLL over the targets
        first_only = np.full_like(labels, -100)
        first_only[:, 0] = labels[:, 0]  # the first real tokens alone: targets, predicted by the last virtual one
        assert count_targets({"input_ids": ids, "labels": first_only}, pt.shifts_labels) == 2
        first_nll = pt(input_ids=ids, labels=first_only).loss.item() * 2
        logits = pt(input_ids=ids).logits.numpy()  # (2, 5, V): the real positions (the virtual ones are cut)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        rest = -sum(logp[b, t - 1, labels[b, t]] for b in range(2) for t in range(1, 5) if labels[b, t] != -100)
        assert np.isfinite(first_nll) and first_nll > 0
        assert total == pytest.approx(first_nll + rest, rel=1e-10)
    finally:
        mf.set_default_dtype("float32")


def test_lora_runs_more_linear_ops_than_full_fine_tuning_not_fewer():
    """LoRA trains fewer weights, not fewer ops (peft#2196, #664): a frozen Linear still runs its backward for
    ∂L/∂x = G·W whenever a gradient flows through it, and each adapter adds two Linears of its own (A, then B),
    forward and backward. So on a small model, where an op's cost is mostly its fixed overhead, a LoRA step can
    be slower than a full one; only ∂L/∂W of the frozen weights is saved. Counted with mf.profile on tiny-gpt
    (4 layers, q, k, v, o and two feed-forward Linears each, and the head: 25 Linears)."""
    from pathlib import Path

    from minift.models.auto import AutoModelForCausalLM

    tiny_gpt = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"
    ids = np.random.default_rng(0).integers(0, 4096, size=(2, 16))

    def linear_calls(model):
        with mf.profile() as prof:
            model(input_ids=ids, labels=ids).loss.backward()
        return prof.calls[("Linear", "forward")], prof.calls[("Linear", "backward")]

    full = linear_calls(AutoModelForCausalLM.from_pretrained(tiny_gpt))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    lora = linear_calls(model)
    layers, adapters = 4, 2 * 4  # q and v in each layer, each an A and a B
    assert full == (6 * layers + 1, 6 * layers + 1)
    # forward: every base Linear and every adapter Linear; backward: every adapter Linear, and every base Linear
    # but layer 0's q, k and v, which read the frozen embeddings (no gradient reaches or leaves them)
    assert lora == (full[0] + 2 * adapters, full[1] - 3 + 2 * adapters)
    assert lora[0] > full[0] and lora[1] > full[1]
