"""Reward models (``minift align rm``): the wrapper's loss against −log σ(r_c − r_r) from rewards scored one text at
a time, padding that changes no reward, strict accuracy (a tie loses), TRL's centering term by hand, a short run
on tiny-bert that learns the pairs, the saved model's round trip, ``reward_function``, clear errors and the
command line. The preference pairs come from a small stand-in for ``minift.rlhf.preference_data`` with its
signature (as in test_dpo), so the tests need no data set."""
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import minift as mf
from minift.rlhf.reward import (DataCollatorForRewardModeling, RewardConfig, RewardDataCollatorWithPadding, RewardModel,
                                load_reward_function, pairwise_accuracy, reward_function, reward_loss, reward_metrics,
                                reward_model, run_reward)

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT, TINY_GPT = ROOT / "checkpoints" / "tiny-bert", ROOT / "checkpoints" / "tiny-gpt"
GOOD = ["great", "wonderful", "superb", "brilliant", "moving", "delightful", "beautiful", "excellent", "funny",
        "charming"]
BAD = ["dull", "terrible", "awful", "boring", "stupid", "tedious", "ugly", "bad", "lame", "pointless"]
TRAIN_TEMPLATES = ["the film is {}", "a {} movie", "what a {} story", "the acting was {}"]
TEST_TEMPLATES = ["this picture is {} from start to end", "an entirely {} experience"]


def fake_preference_dataset(source="sentiment", split="train", limit=None, min_margin=1.0, seed=0, prompt=""):
    """preference_dataset's signature and rows: a positive review chosen over a negative one; held-out pairs use
    other sentences (and the last words of each list) than the training pairs."""
    if source != "sentiment":
        raise ValueError(f"unknown source {source!r}")
    templates, words = (TRAIN_TEMPLATES, range(8)) if split == "train" else (TEST_TEMPLATES, range(10))
    rows = []
    for t, template in enumerate(templates):
        for i in words:
            good, bad = GOOD[i], BAD[(i + t + 1) % len(BAD)]
            rating = 1.0 + (i % 3)  # margins 1, 2, 3
            rows.append({"prompt": prompt, "chosen": " " + template.format(good), "rejected": " " + template.format(bad),
                         "chosen_rating": rating, "rejected_rating": -rating, "margin": 2 * rating})
    rows = [r for r in rows if r["margin"] >= min_margin]
    return rows if limit is None else rows[:limit]


@pytest.fixture(autouse=True)
def preference_data(monkeypatch):
    module = types.ModuleType("minift.rlhf.preference_data")
    module.preference_dataset = fake_preference_dataset
    monkeypatch.setitem(sys.modules, "minift.rlhf.preference_data", module)


@pytest.fixture(scope="module")
def bert_tokenizer():
    return mf.tokenization.from_pretrained(str(TINY_BERT))


def scores_one_by_one(model, tokenizer, texts):
    """Each text alone (no padding at all): the classifier's single logit."""
    out = []
    with mf.no_grad():
        for text in texts:
            enc = tokenizer([text])
            out.append(float(model(enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()[0, 0]))
    return np.array(out)


def log1p_exp(x):
    return np.logaddexp(0.0, x)  # log(1 + e^x); −log σ(d) = log(1 + e^{−d})


@pytest.mark.parametrize("stacked", [True, False])
def test_the_loss_is_minus_log_sigmoid_of_the_difference_of_rewards_scored_one_text_at_a_time(bert_tokenizer, stacked):
    model = reward_model(str(TINY_BERT)).eval()
    pairs = fake_preference_dataset(split="test")[:5]
    collator = (DataCollatorForRewardModeling if stacked else RewardDataCollatorWithPadding)(bert_tokenizer, use_margin=True)
    batch = collator(pairs)
    assert ("input_ids" in batch) == stacked and batch["margin"].tolist() == [p["margin"] for p in pairs]
    c = scores_one_by_one(model, bert_tokenizer, [p["chosen"].strip() for p in pairs])
    r = scores_one_by_one(model, bert_tokenizer, [p["rejected"].strip() for p in pairs])
    m = np.array([p["margin"] for p in pairs])
    rm = RewardModel(model)
    out = rm(**batch)
    np.testing.assert_allclose(out.rewards_chosen.numpy(), c, atol=1e-5)
    np.testing.assert_allclose(out.rewards_rejected.numpy(), r, atol=1e-5)
    assert out.loss.item() == pytest.approx(log1p_exp(-(c - r - m)).mean(), abs=1e-5)  # with TRL's margin
    batch.pop("margin")
    assert rm(**batch).loss.item() == pytest.approx(log1p_exp(-(c - r)).mean(), abs=1e-5)
    assert rm.last_metrics["accuracy"] == np.mean(c > r)
    assert rm.last_metrics["margin"] == pytest.approx((c - r).mean(), abs=1e-5)
    got = reward_metrics(rm, collator, pairs, batch_size=2)  # batches of 2, 2 and 1
    assert got["loss"] == pytest.approx(log1p_exp(-(c - r)).mean(), abs=1e-5) and got["pairs"] == 5
    assert got["rewards/chosen"] == pytest.approx(c.mean(), abs=1e-5)


def test_the_collator_cuts_each_text_to_max_length_and_pads_both_sides_to_one_width(bert_tokenizer):
    long = " ".join(["wonderful"] * 200)
    rows = [{"prompt": "", "chosen": " " + long, "rejected": " dull"}, {"prompt": "Review:", "chosen": " fine", "rejected": " bad"}]
    batch = RewardDataCollatorWithPadding(bert_tokenizer, max_length=8)(rows)
    assert batch["input_ids_chosen"].shape == batch["input_ids_rejected"].shape == (2, 8)
    assert batch["input_ids_chosen"][0, -1] == bert_tokenizer.token_to_id("[SEP]")  # cut, the closing token kept
    assert batch["attention_mask_rejected"].sum(axis=1).tolist() == [3, 5]  # [CLS] dull [SEP]; [CLS] review : bad [SEP]
    alone = bert_tokenizer(["Review: fine"])["input_ids"][0].tolist()  # prompt + completion, one text
    assert batch["input_ids_chosen"][1, :len(alone)].tolist() == alone
    stacked = DataCollatorForRewardModeling(bert_tokenizer, max_length=8)(rows)
    np.testing.assert_array_equal(stacked["input_ids"], np.concatenate([batch["input_ids_chosen"], batch["input_ids_rejected"]]))


def test_a_decoders_texts_end_with_its_eos_as_trls_reward_trainer_appends_it():
    """A decoder's tokenizer closes nothing, so the head that reads the last token would read the last word;
    TRL (≥ 0.24) appends EOS to each text. BERT's [SEP] is its EOS already: nothing is added there."""
    tok = mf.tokenization.from_pretrained(str(TINY_GPT))
    rows = [{"prompt": "", "chosen": " a fine film", "rejected": " dull"},
            {"prompt": "", "chosen": " " + " ".join(["wonderful"] * 50), "rejected": " bad"}]
    batch = RewardDataCollatorWithPadding(tok, max_length=8)(rows)
    words = tok.encode("a fine film", add_special_tokens=False)
    assert batch["input_ids_chosen"][0, :len(words) + 1].tolist() == words + [tok.eos_token_id]
    assert batch["attention_mask_chosen"].sum(1).tolist() == [len(words) + 1, 8]
    assert batch["input_ids_chosen"][1, -1] == tok.eos_token_id  # cut at 8 tokens, the EOS kept in the last place
    assert (batch["input_ids_chosen"][0, len(words) + 1:] == tok.pad_token_id).all()
    bert = mf.tokenization.from_pretrained(str(TINY_BERT))
    plain = bert(["a fine film"])["input_ids"][0].tolist()
    assert RewardDataCollatorWithPadding(bert)([{"prompt": "", "chosen": " a fine film", "rejected": " x"}])[
        "input_ids_chosen"][0, :len(plain)].tolist() == plain  # [CLS] … [SEP], no second EOS
    smol = mf.tokenization.from_pretrained("smollm2")  # its pad is its EOS: HF's exported head reads the last non-pad
    assert smol.pad_token_id == smol.eos_token_id
    words = smol.encode("a fine film", add_special_tokens=False)
    assert RewardDataCollatorWithPadding(smol)([{"prompt": "", "chosen": " a fine film", "rejected": " dull bad"}])[
        "input_ids_chosen"][0].tolist() == words  # no EOS: the last real token is what both heads read


def test_the_pair_loss_puts_no_gradient_on_a_shift_of_every_reward_and_the_centering_term_does(bert_tokenizer):
    """r → r + b cancels in r_c − r_r: ∂L/∂(head bias) = Σ(−σ(−d) + σ(−d))/B = 0; with TRL's centering term
    c·mean((r_c + r_r)²) the bias gets 4c·mean(r_c + r_r)."""
    model = reward_model(str(TINY_BERT))
    model.eval()
    batch = DataCollatorForRewardModeling(bert_tokenizer)(fake_preference_dataset(split="train")[:6])
    out = RewardModel(model)(**batch)
    out.loss.backward()
    assert abs(float(model.classifier.bias.grad[0])) < 1e-6
    assert np.abs(model.classifier.weight.grad).max() > 1e-4  # the pair loss does move the head
    model.zero_grad()
    coef = 0.3
    out = RewardModel(model, center_rewards_coefficient=coef)(**batch)
    out.loss.backward()
    c, r = out.rewards_chosen.numpy().astype(np.float64), out.rewards_rejected.numpy().astype(np.float64)
    assert out.loss.item() == pytest.approx(log1p_exp(-(c - r)).mean() + coef * np.mean((c + r) ** 2), abs=1e-5)
    assert float(model.classifier.bias.grad[0]) == pytest.approx(4 * coef * np.mean(c + r), abs=1e-5)


def test_reward_loss_with_the_centering_term_and_its_gradient_by_hand():
    mf.set_default_dtype("float64")
    rng = np.random.default_rng(3)
    c, r, m = rng.normal(size=7), rng.normal(size=7), np.abs(rng.normal(size=7))
    a, b = mf.tensor(c, requires_grad=True), mf.tensor(r, requires_grad=True)
    coef = 0.05
    loss = reward_loss(a, b, m, center_rewards_coefficient=coef)
    d = c - r - m
    assert loss.item() == pytest.approx(log1p_exp(-d).mean() + coef * np.mean((c + r) ** 2), rel=1e-12)
    loss.backward()
    sig = 1 / (1 + np.exp(d))  # σ(−d)
    np.testing.assert_allclose(a.grad, (-sig + 2 * coef * (c + r)) / 7, rtol=1e-10)
    np.testing.assert_allclose(b.grad, (sig + 2 * coef * (c + r)) / 7, rtol=1e-10)
    assert reward_loss(c, r, None, 0.0).item() == pytest.approx(log1p_exp(-(c - r)).mean(), rel=1e-12)
    assert reward_loss(c + 5.0, r + 5.0).item() == pytest.approx(reward_loss(c, r).item(), rel=1e-12)  # shift-free
    assert reward_loss(c + 5.0, r + 5.0, None, coef).item() > reward_loss(c, r, None, coef).item()


@pytest.mark.parametrize("model_dir, pooling, side", [(TINY_BERT, None, "right"), (TINY_BERT, "mean", "right"),
                                                      (TINY_GPT, None, "right"), (TINY_GPT, None, "left")])
def test_padding_does_not_change_a_texts_reward(model_dir, pooling, side):
    model = reward_model(str(model_dir), pooling=pooling)
    tokenizer = mf.tokenization.from_pretrained(str(model_dir))
    tokenizer.padding_side = side
    score = reward_function(model, tokenizer)
    short, long = "a great film", "a long and rather winding story that goes on and on about very little at all"
    alone = score([short])
    padded = score([long, short, long])  # the short text padded to the long one's length
    assert model.training  # reward_function switched to eval mode and back
    np.testing.assert_allclose(padded[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(padded[0], padded[2], atol=1e-6)


def test_accuracy_is_strict_a_tie_loses(bert_tokenizer):
    assert pairwise_accuracy([1.0, 2.0, 3.0], [0.0, 2.0, 4.0]) == pytest.approx(1 / 3)  # win, tie, loss
    assert pairwise_accuracy(np.zeros(4), np.zeros(4)) == 0.0
    model = reward_model(str(TINY_BERT))
    model.classifier.weight.data[...] = 0.0
    model.classifier.bias.data[...] = 0.7  # every text gets the reward 0.7
    got = reward_metrics(model, DataCollatorForRewardModeling(bert_tokenizer), fake_preference_dataset(split="test"))
    assert got["accuracy"] == 0.0 and got["ties"] == got["pairs"] == 20
    assert got["loss"] == pytest.approx(math.log(2), abs=1e-7) and got["margin"] == 0.0
    assert got["mean_reward"] == pytest.approx(0.7, abs=1e-6)


def test_reward_function_scores_in_batches_as_one_by_one_and_checks_its_input(bert_tokenizer):
    model = reward_model(str(TINY_BERT), pooling="mean").eval()
    texts = ["a great film", "dull", "the acting was superb and the story moving", "awful", "fine"]
    score = reward_function(RewardModel(model), bert_tokenizer, batch_size=2)
    got = score(texts)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (5,)
    np.testing.assert_allclose(got, scores_one_by_one(model, bert_tokenizer, texts), atol=1e-5)
    assert not model.training and score([]).shape == (0,)
    long = " ".join(["great"] * 500)  # far past the context: cut to max_length tokens, not an error
    assert np.isfinite(reward_function(model, bert_tokenizer, max_length=16)([long])).all()
    with pytest.raises(TypeError, match="list of texts"):
        score("a great film")
    with pytest.raises(TypeError, match="item 1 is a int"):
        score(["ok", 3])


def config(tmp_path, **kw):
    options = dict(model=str(TINY_BERT), method="full", pooling="mean", learning_rate=2e-3, max_steps=25,
                   per_device_train_batch_size=8, logging_steps=5, out=str(tmp_path / "run"))
    options.update(kw)
    return RewardConfig(**options)


def test_a_short_run_learns_the_pairs_writes_its_files_and_the_saved_model_gives_the_same_scores(tmp_path):
    results = run_reward(config(tmp_path), quiet=True)
    out = tmp_path / "run"
    before, after = results["before"], results["after"]
    assert before["pairs"] == after["pairs"] == 20 and results["train_steps"] == 25
    assert after["accuracy"] >= 0.85 and after["accuracy"] > before["accuracy"]  # held-out sentences
    assert after["loss"] < before["loss"]
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logs = [r for r in logs if "loss" in r]
    assert {"accuracy", "margin", "mean_reward"} <= set(logs[-1])
    assert logs[-1]["accuracy"] == 1.0 and logs[-1]["loss"] < 0.3 < math.log(2) - 0.3 < logs[0]["loss"]
    assert {"results.json", "log.jsonl", "loss.png", "accuracy.png", "model"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "results.json").read_text())
    assert saved["after"] == after and saved["args"]["learning_rate"] == 2e-3
    assert saved["machine"] == mf.backend.machine_summary()
    assert saved["trainable_parameters"] == saved["total_parameters"] > 0 and saved["train_seconds"] > 0
    reloaded = reward_model(str(out / "model"))  # the trained head and its mean pooling come back
    assert reloaded.config.num_labels == 1 and reloaded.config.classifier_pooling == "mean"
    tokenizer = mf.tokenization.from_pretrained(str(out / "model"))
    again = reward_metrics(reloaded, DataCollatorForRewardModeling(tokenizer, max_length=64),
                           fake_preference_dataset(split="test"))
    for key in ("accuracy", "margin", "loss", "rewards/chosen", "rewards/rejected"):
        assert again[key] == pytest.approx(after[key], abs=1e-5), key
    score = load_reward_function(out)
    chosen = score([p["chosen"].strip() for p in fake_preference_dataset(split="test")])
    assert chosen.mean() == pytest.approx(after["rewards/chosen"], abs=1e-5)


def test_lora_with_trls_margin_saves_the_adapter_and_the_merged_model(tmp_path):
    results = run_reward(config(tmp_path, method="lora", pooling=None, learning_rate=1e-2, max_steps=20,
                                use_margin=True), quiet=True)
    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "model" / "model.safetensors").exists()
    assert 0 < results["trainable_parameters"] < results["total_parameters"]
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    saved = adapter["modules_to_save"]  # PEFT's (Hugging Face's) names
    assert "classifier" in saved and "bert.pooler.dense" in saved and adapter["task_type"] == "SEQ_CLS"
    after = results["after"]
    assert after["accuracy"] >= 0.85 and after["margin"] > 2.0  # the margins (2, 4, 6) ask for a wide gap
    again = reward_metrics(reward_model(str(out / "model")),
                           DataCollatorForRewardModeling(mf.tokenization.from_pretrained(str(out / "model"))),
                           fake_preference_dataset(split="test"))
    assert again["margin"] == pytest.approx(after["margin"], abs=1e-4)  # merged = the trained model


def test_bad_inputs_and_options_are_clear_errors(tmp_path, bert_tokenizer):
    model = reward_model(str(TINY_BERT))
    collate = DataCollatorForRewardModeling(bert_tokenizer)
    with pytest.raises(ValueError, match="no preference pairs to score"):
        reward_metrics(model, collate, [])
    with pytest.raises(ValueError, match="at least one preference row"):
        collate([])
    with pytest.raises(KeyError, match=r"row 0 lacks \['rejected'\]"):
        collate([{"prompt": "", "chosen": "good"}])
    with pytest.raises(KeyError, match=r"lacks \['margin'\]"):
        DataCollatorForRewardModeling(bert_tokenizer, use_margin=True)([{"prompt": "", "chosen": "a", "rejected": "b"}])
    with pytest.raises(ValueError, match="an even number, got 3"):
        RewardModel(model)(input_ids=np.ones((3, 4), np.int64), attention_mask=np.ones((3, 4), np.int64))
    with pytest.raises(ValueError, match="needs input_ids"):
        RewardModel(model)(input_ids_chosen=np.ones((2, 4), np.int64))
    two = mf.models.AutoModelForSequenceClassification.from_pretrained(str(TINY_BERT), num_labels=2)
    with pytest.raises(ValueError, match=r"one output per text, \(N, 1\); this model gives \(2, 2\)"):
        reward_function(two, bert_tokenizer)(["a", "b"])
    mf.models.save_pretrained(reward_model(str(TINY_BERT), pooling="mean"), tmp_path / "saved")
    with pytest.raises(ValueError, match="reads pooling='mean'; it cannot be loaded with pooling='pooler'"):
        reward_model(str(tmp_path / "saved"), pooling="pooler")  # a saved head keeps the pooling it was trained on
    with pytest.raises(ValueError, match="pairwise_accuracy needs"):
        pairwise_accuracy([], [])
    with pytest.raises(ValueError, match="center_rewards_coefficient must be None or a finite number >= 0"):
        RewardModel(model, center_rewards_coefficient=-1.0)
    for bad, message in ((dict(method="qlora"), "unknown method 'qlora'"),
                         (dict(center_rewards_coefficient=float("nan")), "center_rewards_coefficient"),
                         (dict(max_length=1), "max_length must be an integer >= 2"),
                         (dict(pooling="max"), "pooling must be one of"),
                         (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
                         (dict(max_steps=0), "max_steps must be an integer >= 1"),
                         (dict(min_margin=-1.0), "min_margin must be a finite number >= 0"),
                         (dict(method="lora", target_modules=""), "needs target_modules")):
        with pytest.raises(ValueError, match=message):
            config(tmp_path, **bad)
    assert RewardConfig(method="lora").learning_rate == 5e-4 and RewardConfig().out.endswith("rm-full")
    with pytest.raises(ValueError, match="lower --min-margin"):
        run_reward(config(tmp_path, min_margin=7.0), quiet=True)  # the stand-in's margins are 2, 4 and 6
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="as the output directory: .* is a file"):
        run_reward(config(tmp_path, out=str(tmp_path / "afile")), quiet=True)


def test_the_command_line_reaches_the_config_and_a_bad_option_is_one_line(tmp_path, capsys):
    from minift.cli import ArgumentParser, main
    from minift.rlhf.reward import add_cli_arguments, run_from_args

    parser = ArgumentParser(prog="minift align rm")
    add_cli_arguments(parser)
    args = parser.parse_args([str(TINY_BERT), "--center-rewards-coefficient", "0.01", "--batch-size", "4",
                              "--max-steps", "2", "--use-margin", "--pooling", "mean", "--out", str(tmp_path / "cli")])
    results = run_from_args(args, quiet=True)
    assert results["args"]["center_rewards_coefficient"] == 0.01 and results["args"]["use_margin"] is True
    assert results["args"]["per_device_train_batch_size"] == 4 and results["train_steps"] == 2
    assert args.out == str(tmp_path / "cli")
    assert main(["align", "rm", str(TINY_BERT), "--method", "qlora"]) == 2
    assert main(["align", "rm", str(TINY_BERT), "--max-length", "1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "invalid choice: 'qlora'" in err[0] and "max_length must be an integer >= 2" in err[1]
    help_text = subprocess.run([sys.executable, "-m", "minift.cli", "align", "rm", "--help"], capture_output=True,
                               text=True, cwd=ROOT, timeout=120)
    assert help_text.returncode == 0 and "--center-rewards-coefficient" in help_text.stdout


def test_the_reward_trainer_in_trls_form_learns_the_pairs_and_logs_its_metrics(bert_tokenizer, tmp_path):
    from minift.rlhf import RewardTrainer
    from minift.rlhf.reward import reward_model
    from minift.train import TrainingArguments

    train, held_out = fake_preference_dataset(split="train"), fake_preference_dataset(split="test")
    args = TrainingArguments(output_dir=str(tmp_path / "rm"), learning_rate=2e-3, max_steps=40,
                             per_device_train_batch_size=8, logging_steps=10, save_strategy="no", disable_tqdm=True,
                             plot=False)
    trainer = RewardTrainer(reward_model(str(TINY_BERT)), args=args, train_dataset=train, processing_class=bert_tokenizer)
    before = trainer.metrics(held_out)
    trainer.train()
    state = trainer.state
    after = trainer.metrics(held_out)
    assert after["loss"] < before["loss"] and after["accuracy"] > max(before["accuracy"], 0.7)
    assert trainer.evaluate(held_out)["eval_loss"] == pytest.approx(after["loss"], rel=1e-5)  # the Trainer's loss
    assert args.remove_unused_columns  # the caller's arguments are not changed; the trainer keeps the text columns
    logged = [r for r in state.log_history if "loss" in r]
    assert {"accuracy", "margin"} <= set(logged[-1])
    with pytest.raises(ValueError, match="processing_class"):
        RewardTrainer(reward_model(str(TINY_BERT)), args=args, train_dataset=train)
