"""``minift finetune`` end to end on the real data with small limits: results.json, methods, clear errors."""
import json
from pathlib import Path

import pytest

from minift import backend
from minift.cli import main
from minift.finetune import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT, TINY_GPT = str(ROOT / "checkpoints" / "tiny-bert"), str(ROOT / "checkpoints" / "tiny-gpt")
QUICK = ["--max-steps", "3", "--batch-size", "4", "--eval-steps", "2", "--train-limit", "24", "--eval-limit", "16"]


@pytest.mark.zoo
@pytest.mark.parametrize("model, task, method", [
    (TINY_BERT, "sentiment", "probe"),
    (TINY_GPT, "sentiment-tweets", "llrd"),
    (TINY_GPT, "ner", "discriminative"),
    (TINY_BERT, "qa", "unfreeze"),
    (TINY_BERT, "ner", "full"),
])
def test_finetune_writes_results_for_every_task_and_method(tmp_path, capsys, model, task, method):
    out = tmp_path / "run"
    assert main(["finetune", model, task, "--method", method, *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["train_steps"] == 3 and results["method"] == method and results["task"] == task
    assert results["machine"] == backend.machine_summary()
    assert 0 < results["trainable_parameters"] <= results["total_parameters"]
    assert results["train_seconds"] > 0 and results["args"]["max_length"] == 64
    key = results["primary_metric"]
    top = 100 if task == "qa" else 1
    assert 0 <= results["test"][key] <= top
    # HF's timings of the test loop, for QA too (of its prediction loop, before the spans are mapped back)
    assert results["test"]["runtime"] > 0 and {"samples_per_second", "steps_per_second"} <= results["test"].keys()
    if method == "probe":  # only the head: hidden 128 × 2 labels + 2 biases
        assert results["trainable_parameters"] == 128 * 2 + 2
    assert (out / "log.jsonl").exists() and (out / "model" / "model.safetensors").exists()
    assert key in capsys.readouterr().out  # the table


@pytest.mark.parametrize("argv, words", [
    (["finetune", "minilm", "sentimen"], ["unknown task 'sentimen'"]),
    (["finetune", "minilm", "sentiment", "--method", "lorra"], ["unknown method 'lorra'"]),
    (["finetune", "minilm", "sentiment", "--max-steps", "0"], ["--max-steps", ">= 1"]),
    (["finetune", "minilm", "sentiment", "--learning-rate", "nan"], ["--learning-rate"]),
    (["finetune", "minilm", "qa", "--max-length", "32", "--doc-stride", "32", "--eval-limit", "4"],
     ["doc_stride 32 (--doc-stride) must be smaller than max_length 32 (--max-length)"]),
])
def test_bad_finetune_requests_fail_before_any_work(capsys, argv, words):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for w in words:
        assert w in err[0]


def test_an_unwritable_output_is_refused_before_loading_anything(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["finetune", "no-such-model", "sentiment", "--out", str(blocker / "run")]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "cannot be a directory" in err and "is a file" in err and "no-such-model" not in err


@pytest.mark.zoo
def test_finetune_lora_saves_the_adapter_and_the_merged_model(tmp_path):
    import numpy as np

    import minift as mf
    from minift.peft import PeftModel

    out = tmp_path / "run"
    assert main(["finetune", TINY_BERT, "sentiment", "--method", "lora", "--lora-r", "4", *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    layers, hidden, labels = 4, 128, 2
    pooler = hidden * hidden + hidden  # BERT's classifier reads the pooler: it trains beside the head
    assert results["trainable_parameters"] == layers * 2 * 4 * (hidden + hidden) + pooler + hidden * labels + labels
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 16
    assert config["modules_to_save"] == ["bert.pooler.dense", "classifier"]
    ids = np.array([[2, 40, 41, 42, 3]])
    merged = mf.models.AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    base = mf.models.AutoModelForSequenceClassification.from_pretrained(TINY_BERT, num_labels=2)
    adapted = PeftModel.from_pretrained(base, out / "adapter")
    np.testing.assert_allclose(merged(ids).logits.data, adapted(ids).logits.data, rtol=1e-5, atol=1e-5)


def test_bitfit_trains_the_biases_and_the_head_only():
    import numpy as np

    import minift as mf

    mf.seed(0)
    model = mf.models.TransformerForSequenceClassification(mf.models.TransformerConfig(
        family="bert", vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16), num_labels=2)
    groups = mf.train.bitfit_param_groups(model, 1e-3, 0.01)
    chosen = {id(p) for g in groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in chosen}
    assert names == {n for n, p in model.named_parameters() if n.endswith(".bias") or n.startswith("classifier.")}
    assert all(p.requires_grad == (n in names) for n, p in model.named_parameters())
    biases = sum(p.size for n, p in model.model.named_parameters() if n.endswith(".bias"))
    assert sum(p.size for g in groups for p in g["params"]) == biases + 16 * 2 + 2
    model(np.array([[1, 2, 3]]), labels=np.array([1])).loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())


def test_config_defaults_depend_on_the_method():
    assert FinetuneConfig(method="lora").learning_rate == 5e-4
    assert FinetuneConfig(method="lora", target_modules="q_proj, k_proj").target_modules == ["q_proj", "k_proj"]
    assert FinetuneConfig(method="probe").learning_rate == 1e-3
    assert FinetuneConfig(method="full").learning_rate == 5e-5
    assert FinetuneConfig(method="discriminative", learning_rate=1e-5).head_learning_rate == pytest.approx(2e-4)
    assert FinetuneConfig(task="ner", method="llrd").out == "runs/ner-llrd"


@pytest.mark.zoo
def test_finetune_qlora_trains_lora_on_an_nf4_base_and_saves_only_the_adapter(tmp_path, capsys):
    import numpy as np

    import minift as mf
    from minift.peft import PeftModel

    out = tmp_path / "run"
    assert main(["finetune", TINY_BERT, "sentiment", "--method", "qlora", "--lora-r", "4", *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    layers, hidden, labels = 4, 128, 2
    pooler = hidden * hidden + hidden
    assert results["trainable_parameters"] == layers * 2 * 4 * (hidden + hidden) + pooler + hidden * labels + labels
    assert (out / "adapter" / "adapter_model.safetensors").exists() and not (out / "model").exists()
    assert "the adapter is saved, the model is not" in capsys.readouterr().err
    float_model = mf.models.AutoModelForSequenceClassification.from_pretrained(TINY_BERT, num_labels=2)
    assert results["total_parameters"] == float_model.num_parameters()  # the weights in NF4 blocks counted too
    base = mf.models.quantize_model(mf.models.AutoModelForSequenceClassification.from_pretrained(TINY_BERT, num_labels=2), "NF4")
    assert type(base.model.layers[0].attn.q_proj).__name__ == "QuantizedLinear"
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    assert np.isfinite(adapted(np.array([[2, 40, 41, 42, 3]])).logits.data).all()
