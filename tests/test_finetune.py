"""``minift finetune`` end to end on the real data with small limits: results.json, methods, clear errors."""
import json
from pathlib import Path

import pytest

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
    assert 0 < results["trainable_parameters"] <= results["total_parameters"]
    assert results["train_seconds"] > 0 and results["args"]["max_length"] == 64
    key = results["primary_metric"]
    top = 100 if task == "qa" else 1
    assert 0 <= results["test"][key] <= top
    if method == "probe":  # only the head: hidden 128 × 2 labels + 2 biases
        assert results["trainable_parameters"] == 128 * 2 + 2
    assert (out / "log.jsonl").exists() and (out / "model" / "model.safetensors").exists()
    assert key in capsys.readouterr().out  # the table


@pytest.mark.parametrize("argv, words", [
    (["finetune", "minilm", "sentimen"], ["unknown task 'sentimen'"]),
    (["finetune", "minilm", "sentiment", "--method", "lora"], ["unknown method 'lora'"]),
    (["finetune", "minilm", "sentiment", "--max-steps", "0"], ["--max-steps", ">= 1"]),
    (["finetune", "minilm", "sentiment", "--learning-rate", "nan"], ["--learning-rate"]),
    (["finetune", "minilm", "qa", "--max-length", "32", "--eval-limit", "4"], ["doc_stride (32)"]),
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
    assert main(["finetune", "no-such-model", "sentiment", "--out", str(blocker / "run")]) == 1
    assert "cannot write to the output directory" in capsys.readouterr().err


def test_config_defaults_depend_on_the_method():
    assert FinetuneConfig(method="probe").learning_rate == 1e-3
    assert FinetuneConfig(method="full").learning_rate == 5e-5
    assert FinetuneConfig(method="discriminative", learning_rate=1e-5).head_learning_rate == pytest.approx(2e-4)
    assert FinetuneConfig(task="ner", method="llrd").out == "runs/ner-llrd"
