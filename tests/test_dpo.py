"""DPO as a run: ``minift align dpo`` on tiny-gpt (LoRA, the reference being the adapter disabled; full fine-tuning
with a frozen copy), the held-out statistics at π = π_ref (loss ln 2, every reward 0) and against rewards computed
pair by pair, TRL's log keys, and clear errors. The preference pairs come from a small stand-in for
``minift.rlhf.preference_data`` with its signature, so the tests need no data set."""
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import minift as mf
from minift.rlhf.dpo import DataCollatorForPreference, DPOConfig, DPOModel, preference_metrics, run_dpo
from minift.rlhf.losses import sequence_logprobs
from .test_train import untimed

TINY_GPT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"
GOOD = ["a great film, I loved it", "wonderful acting and a moving story", "the best movie this year",
        "funny, warm and beautifully shot", "a delight from start to end", "superb, see it"]
BAD = ["a dull film, I hated it", "terrible acting and a boring story", "the worst movie this year",
       "flat, cold and badly shot", "a chore from start to end", "awful, skip it"]


def fake_preference_dataset(source="sentiment", split="train", limit=None, min_margin=1.0, seed=0, prompt=""):
    """preference_dataset's signature and rows: four training pairs, two held out."""
    if source != "sentiment":
        raise ValueError(f"unknown source {source!r}")
    rows = [{"prompt": prompt, "chosen": " " + GOOD[i], "rejected": " " + BAD[(i + 1) % 6], "chosen_rating": 9.0,
             "rejected_rating": 2.0, "margin": 7.0} for i in (range(4) if split == "train" else range(4, 6))]
    rows = [r for r in rows if r["margin"] >= min_margin]
    return rows if limit is None else rows[:limit]


@pytest.fixture(autouse=True)
def preference_data(monkeypatch):
    module = types.ModuleType("minift.rlhf.preference_data")
    module.preference_dataset = fake_preference_dataset
    monkeypatch.setitem(sys.modules, "minift.rlhf.preference_data", module)


def config(tmp_path, **kw):
    options = dict(policy=str(TINY_GPT), method="lora", beta=0.1, max_steps=30, per_device_train_batch_size=4,
                   learning_rate=3e-3, logging_steps=5, out=str(tmp_path / "run"))
    options.update(kw)
    return DPOConfig(**options)


def test_the_lora_run_starts_at_the_reference_learns_the_pairs_and_logs_trls_keys(tmp_path):
    results = run_dpo(config(tmp_path), quiet=True)
    out = tmp_path / "run"
    before, after = results["before"], results["after"]
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-6)  # π = π_ref: h = 0 on every pair
    assert before["rewards/chosen"] == before["rewards/rejected"] == before["rewards/margins"] == 0.0
    assert before["rewards/accuracies"] == 0.0  # TRL's strict r_c > r_r: a tie is not a win
    assert after["loss"] != before["loss"] and before["pairs"] == after["pairs"] == 2
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logs = [r for r in logs if "loss" in r]
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(logs[0])
    assert logs[-1]["loss"] < 0.1 < math.log(2) and logs[-1]["rewards/accuracies"] == 1.0  # the training pairs
    assert logs[-1]["rewards/margins"] > logs[0]["rewards/margins"] > 0
    assert {"results.json", "rewards.png", "accuracies.png", "loss.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "results.json").read_text())
    assert saved["before"] == before and saved["args"]["beta"] == 0.1 and saved["train_steps"] == 30
    assert saved["machine"] == mf.backend.machine_summary()  # with the threads its figures depend on
    assert 0 < results["trainable_parameters"] < results["total_parameters"]


def test_full_fine_tuning_uses_a_frozen_copy_as_the_reference(tmp_path):
    results = run_dpo(config(tmp_path, method="full", learning_rate=1e-3, max_steps=5), quiet=True)
    assert results["trainable_parameters"] == results["total_parameters"]
    assert results["before"]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the copy equals the policy at step 0
    assert results["after"]["rewards/margins"] != 0.0


def tiny_lm(vocab, seed):
    mf.seed(seed)
    cfg = mf.models.TransformerConfig(family="llama", vocab_size=vocab, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return mf.models.TransformerForCausalLM(cfg).eval()


def test_preference_metrics_equal_rewards_computed_one_pair_at_a_time():
    mf.set_default_dtype("float64")
    try:
        tok = mf.tokenization.from_pretrained(str(TINY_GPT))
        policy, reference = tiny_lm(tok.vocab_size, 0), tiny_lm(tok.vocab_size, 1)
        beta = 0.3
        dpo = DPOModel(policy, ref_model=reference, beta=beta)
        collate = DataCollatorForPreference(tok, chat=False)
        pairs = fake_preference_dataset(split="train") + fake_preference_dataset(split="test")
        got = preference_metrics(dpo, collate, pairs, batch_size=4)  # batches of 4 and 2: padding in between
        chosen, rejected = [], []
        for pair in pairs:  # one pair, no padding: log π(y|x) of each model, then β·(π − ref)
            batch = collate([pair])
            logp = sequence_logprobs(policy, **batch).numpy()
            ref = sequence_logprobs(reference, **batch).numpy()
            chosen.append(beta * (logp[0] - ref[0]))
            rejected.append(beta * (logp[1] - ref[1]))
        chosen, rejected = np.array(chosen), np.array(rejected)
        assert got["rewards/chosen"] == pytest.approx(chosen.mean(), rel=1e-9)
        assert got["rewards/rejected"] == pytest.approx(rejected.mean(), rel=1e-9)
        assert got["rewards/margins"] == pytest.approx((chosen - rejected).mean(), rel=1e-9)
        assert got["rewards/accuracies"] == np.mean(chosen > rejected)
        losses = -np.log(1 / (1 + np.exp(-(chosen - rejected))))  # −log σ(r_c − r_r)
        assert got["loss"] == pytest.approx(losses.mean(), rel=1e-9) and got["pairs"] == 6
    finally:
        mf.set_default_dtype("float32")


def test_dpo_options_and_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'qlora'"):
        config(tmp_path, method="qlora")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        config(tmp_path, loss_type="kto")
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        config(tmp_path, beta=0.0)
    with pytest.raises(ValueError, match="sigmoid loss only"):
        config(tmp_path, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        config(tmp_path, label_smoothing=0.5)
    with pytest.raises(ValueError, match="lower --min-margin"):
        run_dpo(config(tmp_path, min_margin=8.0), quiet=True)  # every stand-in pair has margin 7
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="as the output directory: .*afile is a file"):
        run_dpo(config(tmp_path, out=str(tmp_path / "afile")), quiet=True)
    busy = tmp_path / "busy"  # an existing, non-empty folder is written into (check_output_dir's rule)
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    run_dpo(config(tmp_path, out=str(busy), max_steps=1), quiet=True)
    assert (busy / "notes.txt").read_text() == "mine" and (busy / "results.json").exists()


def test_the_command_line_options_reach_the_config(tmp_path):
    from minift.cli import ArgumentParser, CommandLineError
    from minift.rlhf.dpo import add_cli_arguments, run_from_args

    parser = ArgumentParser(prog="minift align dpo")
    add_cli_arguments(parser)
    args = parser.parse_args([str(TINY_GPT), "--beta", "0.5", "--loss-type", "hinge", "--batch-size", "2",
                              "--max-steps", "2", "--out", str(tmp_path / "cli")])
    results = run_from_args(args, quiet=True)
    assert results["args"]["beta"] == 0.5 and results["args"]["loss_type"] == "hinge"
    assert results["args"]["per_device_train_batch_size"] == 2 and results["train_steps"] == 2
    assert results["before"]["loss"] == pytest.approx(1.0)  # hinge at h = 0: relu(1 − 0)
    assert DPOConfig(method="full").learning_rate == 5e-5 and DPOConfig().out.endswith("dpo-lora")
    with pytest.raises(CommandLineError, match="expected a finite number > 0"):
        parser.parse_args([str(TINY_GPT), "--beta", "0"])
    with pytest.raises(CommandLineError, match="invalid choice"):
        parser.parse_args([str(TINY_GPT), "--loss-type", "kto"])


def test_the_dpo_trainer_in_trls_form_starts_at_ln_2_and_learns_the_pairs(tmp_path):
    from minift.models.auto import AutoModelForCausalLM
    from minift.peft import LoraConfig, get_peft_model
    from minift.rlhf import DPOTrainer
    from minift.train import TrainingArguments

    tok = mf.tokenization.from_pretrained(TINY_GPT)
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY_GPT),
                            LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    train = fake_preference_dataset(split="train")
    args = TrainingArguments(output_dir=str(tmp_path / "dpo"), learning_rate=3e-3, max_steps=30,
                             per_device_train_batch_size=4, logging_steps=5, save_strategy="no", disable_tqdm=True,
                             plot=False)
    trainer = DPOTrainer(policy, args=args, train_dataset=train, processing_class=tok, beta=0.1)
    before = trainer.metrics(train)
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-6) and before["rewards/accuracies"] == 0.0
    assert untimed(trainer.evaluate(train)) == {"eval_loss": pytest.approx(before["loss"], rel=1e-6)}  # the Trainer's
    trainer.train()
    state = trainer.state
    after = trainer.metrics(train)
    assert after["loss"] < 0.2 and after["rewards/accuracies"] == 1.0
    assert trainer.evaluate(train)["eval_loss"] == pytest.approx(after["loss"], rel=1e-5)
    assert {"rewards/chosen", "rewards/margins"} <= set([r for r in state.log_history if "loss" in r][-1])
    with pytest.raises(ValueError, match="DPO needs a reference"):
        DPOTrainer(AutoModelForCausalLM.from_pretrained(TINY_GPT), args=args, train_dataset=train, processing_class=tok)
    with pytest.raises(ValueError, match="args is required"):
        DPOTrainer(policy, train_dataset=train, processing_class=tok)
