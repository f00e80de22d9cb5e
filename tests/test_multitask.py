"""Multi-task fine-tuning: sampler probabilities against their closed forms, round-robin order, seeded draws
and their frequencies; the shared body and per-task heads (forward, gradients, gradcheck); the
MultiTaskTrainer (one task per step, per-task losses and metrics, resume); ``minift finetune a+b --method
multitask`` and its errors."""
import json
import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift.cli import main
from minift.data.collators import DataCollatorForTokenClassification, DataCollatorWithPadding
from minift.models import TransformerConfig, TransformerModel
from minift.models.heads import TransformerForSequenceClassification, TransformerForTokenClassification
from minift.multitask import (
    MultiTaskModel, MultiTaskSampler, MultiTaskTrainer, per_task_curves, temperature_probabilities,
)
from minift.train import TrainerCallback, TrainingArguments
from .test_train import TIMINGS, untimed

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = str(ROOT / "checkpoints" / "tiny-bert")

sizes_st = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), st.integers(1, 10**9), min_size=1, max_size=6)
temperature_st = st.floats(0.05, 50.0)


# ----------------------------------------------------------------------------- the sampler
@pytest.mark.task("multitask.temperature_probabilities")
@given(sizes=sizes_st, temperature=temperature_st)
def test_temperature_probabilities_match_the_closed_form(sizes, temperature):
    n = np.array(list(sizes.values()), dtype=np.float64)
    expected = n ** (1 / temperature) / np.sum(n ** (1 / temperature))  # p_i = n_i^(1/T) / Σ n_j^(1/T)
    p = temperature_probabilities(n, temperature)
    assert p.shape == n.shape and np.all(np.isfinite(p))
    assert np.isclose(p.sum(), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-300)
    sampler = MultiTaskSampler(sizes, "temperature", temperature=temperature)
    np.testing.assert_allclose([sampler.probabilities[t] for t in sizes], expected, rtol=1e-9, atol=1e-300)


@pytest.mark.task("multitask.temperature_probabilities")
@given(sizes=sizes_st)
def test_temperature_one_is_proportional_and_a_large_one_nearly_uniform(sizes):
    proportional = MultiTaskSampler(sizes, "proportional").probabilities
    one = MultiTaskSampler(sizes, "temperature", temperature=1.0).probabilities
    n = np.array(list(sizes.values()), dtype=np.float64)
    np.testing.assert_allclose([proportional[t] for t in sizes], n / n.sum(), rtol=1e-12)
    np.testing.assert_allclose([one[t] for t in sizes], [proportional[t] for t in sizes], rtol=1e-9)
    hot = MultiTaskSampler(sizes, "temperature", temperature=1e6).probabilities  # n^(1e-6) ≈ 1: uniform
    np.testing.assert_allclose(list(hot.values()), 1 / len(sizes), rtol=1e-4)
    endless = temperature_probabilities(n, math.inf)  # T = ∞ exactly: n^0 = 1
    np.testing.assert_allclose(endless, 1 / len(sizes), rtol=1e-12)


@pytest.mark.task("multitask.temperature_probabilities")
@given(sizes=sizes_st, low=st.floats(0.1, 10.0), factor=st.floats(1.5, 10.0))
def test_a_higher_temperature_flattens_the_distribution(sizes, low, factor):
    n = np.array(list(sizes.values()), dtype=np.float64)
    cold, hot = temperature_probabilities(n, low), temperature_probabilities(n, low * factor)
    order = np.argsort(n, kind="stable")
    assert np.all(np.diff(cold[order]) >= -1e-12)  # a larger task is never less likely
    assert hot.max() <= cold.max() + 1e-12 and hot.min() >= cold.min() - 1e-12  # closer to uniform


@pytest.mark.task("multitask.temperature_probabilities")
def test_temperature_probabilities_on_a_known_case_and_without_overflow():
    np.testing.assert_allclose(temperature_probabilities([1, 4], 2.0), [1 / 3, 2 / 3], rtol=1e-12)  # √1 : √4
    np.testing.assert_allclose(temperature_probabilities([100, 10, 1], 0.5), [1e4, 1e2, 1] / np.float64(10101),
                               rtol=1e-12)
    p = temperature_probabilities([10**6, 10**5], 0.01)  # 10⁶^100 overflows a float64: log space does not
    assert np.all(np.isfinite(p)) and np.isclose(p.sum(), 1.0) and p[0] > 1 - 1e-12


def test_proportional_and_round_robin_probabilities():
    s = MultiTaskSampler({"sentiment": 8452, "ner": 1836}, "proportional")
    assert s.probabilities == pytest.approx({"sentiment": 8452 / 10288, "ner": 1836 / 10288}, rel=1e-12)
    r = MultiTaskSampler({"a": 5, "b": 1, "c": 7}, "round_robin")
    assert r.probabilities == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert "round_robin" in repr(r) and "0.333" in repr(r)


@given(k=st.integers(1, 6), start=st.integers(0, 20), n=st.integers(0, 40))
def test_round_robin_cycles_through_the_tasks_in_order(k, start, n):
    tasks = [f"t{i}" for i in range(k)]
    s = MultiTaskSampler({t: 10 + i for i, t in enumerate(tasks)}, "round_robin", seed=3)
    s.sample(start)
    assert s.sample(n) == [tasks[(start + i) % k] for i in range(n)]


@pytest.mark.parametrize("strategy", ["round_robin", "proportional", "temperature"])
def test_draws_are_seeded_and_do_not_depend_on_how_they_are_asked(strategy):
    sizes = {"a": 300, "b": 50, "c": 7}
    first = MultiTaskSampler(sizes, strategy, temperature=3, seed=11)
    drawn = first.sample(200)
    again = MultiTaskSampler(sizes, strategy, temperature=3, seed=11)
    assert [next(again) for _ in range(50)] + again.sample(150) == drawn  # one at a time or at once
    first.reset()
    assert first.sample(200) == drawn  # reset: the same sequence
    if strategy != "round_robin":
        assert MultiTaskSampler(sizes, strategy, temperature=3, seed=12).sample(200) != drawn


@pytest.mark.parametrize("strategy, temperature", [("proportional", 1.0), ("round_robin", 1.0)])
def test_draw_frequencies_match_the_probabilities(strategy, temperature):
    sizes, n = {"sentiment": 8452, "ner": 1836, "tiny": 120}, 20_000
    s = MultiTaskSampler(sizes, strategy, temperature=temperature, seed=0)
    counts = {t: 0 for t in sizes}
    for t in s.sample(n):
        counts[t] += 1
    for t, p in s.probabilities.items():  # within 4 standard deviations of a binomial share
        assert abs(counts[t] / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12, (t, counts[t] / n, p)


@pytest.mark.task("multitask.temperature_probabilities")
def test_temperature_draw_frequencies_match_the_probabilities():
    sizes, n = {"sentiment": 8452, "ner": 1836, "tiny": 120}, 20_000
    s = MultiTaskSampler(sizes, "temperature", temperature=2.0, seed=0)
    draws = s.sample(n)
    for t, p in s.probabilities.items():
        share = draws.count(t) / n
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / n), (t, share, p)
    assert s.probabilities["tiny"] == pytest.approx(math.sqrt(120) / sum(math.sqrt(v) for v in sizes.values()))


@pytest.mark.parametrize("kwargs, words", [
    (dict(sizes={}), ["non-empty dict"]),
    (dict(sizes=[3, 4]), ["non-empty dict"]),
    (dict(sizes={"a": 3, "b": 0}), ["'b'", "> 0", "0"]),
    (dict(sizes={"a": 3, "b": -2}), ["'b'", "-2"]),
    (dict(sizes={"a": float("nan")}), ["'a'", "nan"]),
    (dict(sizes={"a": True}), ["'a'"]),
    (dict(sizes={"a": 3}, temperature=0), ["temperature", "> 0", "got 0"]),
    (dict(sizes={"a": 3}, strategy="temperature", temperature=-1.5), ["temperature", "-1.5"]),
    (dict(sizes={"a": 3}, temperature=float("nan")), ["temperature"]),
    (dict(sizes={"a": 3}, strategy="uniform"), ["unknown sampling strategy 'uniform'", "round_robin"]),
    (dict(sizes={"a": 3}, seed=-1), ["seed"]),
])
def test_bad_sampler_arguments_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError) as e:
        MultiTaskSampler(**kwargs)
    for w in words:
        assert w in str(e.value)


# ----------------------------------------------------------------------------- the model
def config(**kw):
    base = dict(family="bert", vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return TransformerConfig(**base)


def tiny_model(seed=0):
    mf.seed(seed)
    cfg = config()
    body = TransformerModel(cfg)
    heads = {"sentiment": TransformerForSequenceClassification(cfg, num_labels=2, backbone=body),
             "ner": partial(TransformerForTokenClassification, num_labels=3)}  # a callable (config, backbone=)
    return MultiTaskModel(body, heads)


def batch(seed=0, b=3, t=6, task="sentiment"):
    rs = np.random.default_rng(seed)
    ids = rs.integers(1, 30, (b, t))
    mask = np.ones_like(ids)
    mask[1, t - 2:] = 0
    ids[mask == 0] = 0
    if task == "sentiment":
        labels = rs.integers(0, 2, b)
    else:
        labels = rs.integers(0, 3, (b, t))
        labels[:, 0] = -100
        labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_each_task_forward_is_the_body_then_that_head():
    mf.set_default_dtype("float64")
    model = tiny_model().eval()
    body = model.model
    s, n = batch(0, task="sentiment"), batch(1, task="ner")
    out_s = model(task="sentiment", **s)
    hidden = body(s["input_ids"], attention_mask=s["attention_mask"])
    head = model.heads["sentiment"].classifier
    logits = hidden.pooler_output.numpy() @ head.weight.numpy().T + head.bias.numpy()  # (B, 2)
    np.testing.assert_allclose(out_s.logits.numpy(), logits, rtol=1e-12, atol=1e-14)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert out_s.loss.item() == pytest.approx(-log_p[np.arange(3), s["labels"]].mean(), rel=1e-12)

    out_n = model(task="ner", **n)
    hidden = body(n["input_ids"], attention_mask=n["attention_mask"]).last_hidden_state.numpy()  # (B, T, C)
    head = model.heads["ner"].classifier
    logits = hidden @ head.weight.numpy().T + head.bias.numpy()  # (B, T, 3)
    np.testing.assert_allclose(out_n.logits.numpy(), logits, rtol=1e-12, atol=1e-14)
    keep = n["labels"] != -100
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, np.where(keep, n["labels"], 0)[..., None], -1)[..., 0][keep].mean()
    assert out_n.loss.item() == pytest.approx(expected, rel=1e-12)
    assert model.tasks == ["sentiment", "ner"]


def test_the_body_is_shared_and_its_parameters_listed_once():
    model = tiny_model()
    body = model.model
    assert model.heads["sentiment"].model is body and model.heads["ner"].model is body
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names)) == len({id(p) for p in model.parameters()})
    own = {"heads.sentiment.classifier.weight", "heads.sentiment.classifier.bias", "heads.ner.classifier.weight",
           "heads.ner.classifier.bias"}
    assert set(names) - {"model." + n for n, _ in body.named_parameters()} == own
    assert model.num_parameters() == body.num_parameters() + (8 * 2 + 2) + (8 * 3 + 3)
    assert set(model.state_dict()) == set(names)
    assert "model=<shared>" in repr(model)


def test_gradients_reach_the_body_from_both_tasks_and_only_the_active_head():
    mf.set_default_dtype("float64")
    model = tiny_model().eval()
    params = dict(model.named_parameters())
    grads = {}
    for task, seed in (("sentiment", 0), ("ner", 1)):
        model.zero_grad()
        model(task=task, **batch(seed, task=task)).loss.backward()
        grads[task] = {n: None if p.grad is None else p.grad.copy() for n, p in params.items()}
        other = "ner" if task == "sentiment" else "sentiment"
        for name in ("model.embed.tokens.weight", "model.layers.0.attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"):
            assert grads[task][name] is not None and np.abs(grads[task][name]).max() > 0, (task, name)
        assert np.abs(grads[task][f"heads.{task}.classifier.weight"]).max() > 0
        assert grads[task][f"heads.{other}.classifier.weight"] is None  # the other head takes no part
        assert grads[task][f"heads.{other}.classifier.bias"] is None
    assert grads["ner"]["model.pooler.weight"] is None  # the token head reads the tokens, not the pooler
    model.zero_grad()  # both losses at once: the body's gradient is the sum of the two
    (model(task="sentiment", **batch(0, task="sentiment")).loss + model(task="ner", **batch(1, task="ner")).loss).backward()
    for name in ("model.embed.tokens.weight", "model.layers.0.attn.q_proj.weight"):
        np.testing.assert_allclose(params[name].grad, grads["sentiment"][name] + grads["ner"][name], rtol=1e-10,
                                   atol=1e-14)


def test_gradcheck_of_a_tiny_multitask_model():
    mf.set_default_dtype("float64")
    model = tiny_model().eval()
    s, n = batch(0, b=2, t=4, task="sentiment"), batch(1, b=2, t=4, task="ner")

    def loss(_param):  # the sum of both tasks' losses: the shared body sees both
        return model(task="sentiment", **s).loss + model(task="ner", **n).loss

    params = dict(model.named_parameters())
    for name in ("heads.sentiment.classifier.weight", "heads.ner.classifier.bias", "model.layers.1.attn.v_proj.weight",
                 "model.pooler.weight"):
        assert mf.gradcheck(loss, (params[name],)), name


def test_bad_models_are_clear_errors():
    cfg = config()
    body, other = TransformerModel(cfg), TransformerModel(cfg)
    with pytest.raises(ValueError, match="runs its own backbone"):
        MultiTaskModel(body, {"a": TransformerForSequenceClassification(cfg, num_labels=2, backbone=other)})
    with pytest.raises(ValueError, match="non-empty dict"):
        MultiTaskModel(body, {})
    with pytest.raises(ValueError, match="without '.'"):
        MultiTaskModel(body, {"a.b": TransformerForSequenceClassification})
    with pytest.raises(TypeError, match="callable"):
        MultiTaskModel(body, {"a": 3})
    model = MultiTaskModel(body, {"a": partial(TransformerForSequenceClassification, num_labels=2)})
    with pytest.raises(KeyError, match=r"unknown task 'b'.*\['a'\]"):
        model(task="b", input_ids=np.ones((1, 3), dtype=np.int64))


# ----------------------------------------------------------------------------- the trainer
TOKENIZER = SimpleNamespace(pad_token_id=0, padding_side="right")


def rows(task, n, seed):
    rs = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rs.integers(3, 8))
        ids = rs.integers(1, 30, t).tolist()
        if task == "sentiment":
            out.append({"input_ids": ids, "label": int(ids[0] > 15)})  # learnable: the first token decides
        else:
            out.append({"input_ids": ids, "labels": [1 if i > 20 else 0 for i in ids]})
    return out


def make_trainer(tmp_path, sampler=None, callbacks=None, **overrides):
    model = tiny_model()
    kw = dict(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4, per_device_eval_batch_size=8,
              learning_rate=1e-2, logging_steps=2, eval_strategy="steps", eval_steps=4, save_strategy="no",
              disable_tqdm=True, plot=False, seed=0)
    kw.update(overrides)
    return MultiTaskTrainer(
        model, TrainingArguments(**kw), train_dataset={"sentiment": rows("sentiment", 24, 0), "ner": rows("ner", 12, 1)},
        eval_dataset={"sentiment": rows("sentiment", 8, 2), "ner": rows("ner", 6, 3)},
        data_collator={"sentiment": DataCollatorWithPadding(TOKENIZER), "ner": DataCollatorForTokenClassification(TOKENIZER)},
        compute_metrics={"sentiment": mf.metrics.classification_metrics,
                         "ner": mf.metrics.token_classification_metrics(["O", "B-x"])},
        primary_metrics={"sentiment": "accuracy", "ner": "f1"}, sampler=sampler, callbacks=callbacks)


class Penalty(TrainerCallback):
    """A loss_term callback (a regularizer): the MultiTaskTrainer must keep adding and logging it."""

    loss_term_name = "loss_l2"

    def loss_term(self, model):
        w = model.heads["ner"].classifier.weight
        return (w * w).sum() * 1e-3


def test_trainer_one_task_per_step_per_task_losses_and_metrics(tmp_path):
    sampler = MultiTaskSampler({"sentiment": 24, "ner": 12}, "proportional", seed=5)
    trainer = make_trainer(tmp_path, sampler=sampler, callbacks=[Penalty()], gradient_accumulation_steps=2)
    seen = []
    step = trainer.training_step

    def spy(micro_batches, shifts_labels=False):
        seen.append([b["task"] for b in micro_batches])
        return step(micro_batches, shifts_labels)

    trainer.training_step = spy
    trainer.train()
    state = trainer.state
    expected = MultiTaskSampler({"sentiment": 24, "ner": 12}, "proportional", seed=5).sample(8)
    assert [s[0] for s in seen] == expected and all(len(set(s)) == 1 and len(s) == 2 for s in seen)
    logs = [r for r in state.log_history if "loss" in r]
    assert len(logs) == 4
    for k, r in enumerate(logs):  # each record: the mean loss of each task's steps in its window of 2 steps
        window = expected[2 * k: 2 * k + 2]
        for t in ("sentiment", "ner"):
            assert (f"loss_{t}" in r) == (t in window)
            assert r[f"steps_{t}"] == expected[: 2 * k + 2].count(t)
        assert "loss_l2" in r  # the callback's term is still added and logged
        losses = [r[f"loss_{t}"] * window.count(t) for t in ("sentiment", "ner") if t in window]
        assert r["loss"] == pytest.approx(sum(losses) / 2, rel=1e-9)
    assert trainer.task_steps == {t: expected.count(t) for t in ("sentiment", "ner")}
    curves = per_task_curves(state.log_history, ["sentiment", "ner"])
    assert len(curves["sentiment"][0]) == sum("loss_sentiment" in r for r in logs)
    evals = [r for r in state.log_history if "eval_score" in r]
    assert [r["step"] for r in evals] == [4, 8]
    m = evals[-1]
    for key in ("eval_sentiment_loss", "eval_sentiment_accuracy", "eval_ner_f1", "eval_ner_loss"):
        assert key in m
    assert m["eval_loss"] == pytest.approx((m["eval_sentiment_loss"] + m["eval_ner_loss"]) / 2)
    assert m["eval_accuracy"] == pytest.approx((m["eval_sentiment_accuracy"] + m["eval_ner_accuracy"]) / 2)
    assert m["eval_score"] == pytest.approx((m["eval_sentiment_accuracy"] + m["eval_ner_f1"]) / 2)
    one = trainer.evaluate(rows("ner", 6, 3), task="ner")  # one task: the plain keys
    assert one["eval_f1"] == pytest.approx(m["eval_ner_f1"]) and "eval_score" not in one
    predictions, label_ids, metrics = trainer.predict(rows("ner", 6, 3), task="ner")  # HF's PredictionOutput, test_ keys
    assert untimed(metrics) == {k.replace("eval_", "test_"): v for k, v in untimed(one).items()}
    assert not any(k.endswith(TIMINGS) for k in untimed(m)) and m["eval_runtime"] > 0  # one timing for all tasks
    assert predictions.shape[:2] == label_ids.shape and predictions.shape[-1] == 3  # (N, T, labels), the ner head's
    assert trainer.predict(rows("ner", 6, 3), task="ner", metric_key_prefix="x").metrics.keys() == {
        k.replace("eval_", "x_") for k in one}
    # the Trainer's parameters in HF's order (ignore_keys second), task by keyword only
    same = trainer.predict(rows("ner", 6, 3), ["past_key_values"], "test", task="ner")
    np.testing.assert_array_equal(same.predictions, predictions)
    with pytest.raises(TypeError):
        trainer.predict(rows("ner", 6, 3), None, "test", "ner")
    written = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any("loss_ner" in r for r in written)


def test_trainer_defaults_to_round_robin_and_resumes_where_it_stopped(tmp_path):
    full = make_trainer(tmp_path / "full", eval_strategy="no", max_steps=6)
    full.train()
    assert full.task_steps == {"sentiment": 3, "ner": 3} and full.sampler.strategy == "round_robin"
    a = make_trainer(tmp_path / "resumed", eval_strategy="no", max_steps=6, save_strategy="steps", save_steps=3)
    a.train()
    b = make_trainer(tmp_path / "resumed", eval_strategy="no", max_steps=6, save_strategy="steps", save_steps=3)
    b.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-3"))
    for (name, p), q in zip(full.model.named_parameters(), b.model.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-6, atol=1e-7, err_msg=name)


def test_trainer_refuses_what_does_not_match_the_model(tmp_path):
    model = tiny_model()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    with pytest.raises(ValueError, match=r"\['qa'\] that the model has no head for"):
        MultiTaskTrainer(model, args, train_dataset={"qa": rows("ner", 4, 0)})
    with pytest.raises(TypeError, match="dict"):
        MultiTaskTrainer(model, args, train_dataset=rows("ner", 4, 0))
    with pytest.raises(ValueError, match="empty"):
        MultiTaskTrainer(model, args, train_dataset={"ner": []})
    with pytest.raises(ValueError, match="sampler draws"):
        MultiTaskTrainer(model, args, train_dataset={"ner": rows("ner", 4, 0)},
                         sampler=MultiTaskSampler({"ner": 4, "sentiment": 4}))
    with pytest.raises(TypeError, match="MultiTaskModel"):
        MultiTaskTrainer(model.heads["ner"], args, train_dataset={"ner": rows("ner", 4, 0)})


# ----------------------------------------------------------------------------- the command line
@pytest.mark.zoo
def test_finetune_multitask_writes_results_per_task(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["finetune", TINY_BERT, "sentiment+ner", "--method", "multitask", "--task-sampling", "temperature",
            "--sampling-temperature", "3", "--max-steps", "4", "--batch-size", "4", "--eval-steps", "2",
            "--train-limit", "24", "--eval-limit", "16", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "multitask sentiment" in printed and "multitask ner" in printed
    summary = json.loads((out / "results.json").read_text())
    assert summary["method"] == "multitask" and list(summary["tasks"]) == ["sentiment", "ner"]
    p = summary["sampling"]["probabilities"]
    assert p["sentiment"] == pytest.approx(0.5) and summary["sampling"]["strategy"] == "temperature"  # 24 and 24 rows
    for task, key in (("sentiment", "accuracy"), ("ner", "f1")):
        r = json.loads((out / task / "results.json").read_text())
        assert r["task"] == task and r["method"] == "multitask" and r["primary_metric"] == key
        assert 0 <= r["test"][key] <= 1 and r["train_steps"] == 4
        assert 0 < r["trainable_parameters"] == r["total_parameters"]
    steps = [json.loads((out / t / "results.json").read_text())["task_steps"] for t in ("sentiment", "ner")]
    assert sum(steps) == 4
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss_sentiment" in r or "loss_ner" in r for r in log) and any("eval_score" in r for r in log)
    # each task's model is a plain single-task model: it loads back with its head
    ner = mf.models.AutoModelForTokenClassification.from_pretrained(str(out / "ner" / "model"))
    assert ner.num_labels == 21


@pytest.mark.parametrize("argv, words", [
    (["finetune", "minilm", "sentiment+nre", "--method", "multitask"], ["unknown task 'nre'", "sentiment+ner"]),
    (["finetune", "minilm", "sentiment+ner"], ["--method multitask"]),
    (["finetune", "minilm", "sentiment", "--method", "multitask"], ["two or more tasks"]),
    (["finetune", "minilm", "ner+ner", "--method", "multitask"], ["twice"]),
    (["finetune", "minilm", "sentiment+qa", "--method", "multitask"], ["'qa' is not one of them"]),
    (["finetune", "minilm", "sentiment+ner", "--method", "multitask", "--task-sampling", "uniform"], ["--task-sampling"]),
    (["finetune", "minilm", "sentiment+ner", "--method", "multitask", "--sampling-temperature", "0"],
     ["--sampling-temperature", "> 0"]),
])
def test_bad_multitask_requests_fail_in_one_line_before_any_work(capsys, argv, words):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for w in words:
        assert w in err[0]
