"""Task heads and the Trainer: losses against their formulas, accumulation equal to one big batch, resume
determinism, decay exclusions, layer-wise learning rates, unfreezing, early stopping, clear errors."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import optim
from minift.models import TransformerConfig
from minift.models.heads import (
    TransformerForQuestionAnswering, TransformerForSequenceClassification, TransformerForTokenClassification,
    last_token_index,
)
from minift.train import (
    EarlyStoppingCallback, GradualUnfreezingCallback, Trainer, TrainingArguments, TrainOutput, count_targets,
    decay_parameter_names, layer_groups, llrd_param_groups,
)


def config(family="bert", **kw):
    base = dict(family=family, vocab_size=30, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                max_position_embeddings=32, pad_token_id=0)
    if family == "llama":
        base.update(hidden_size=16, num_attention_heads=4, num_key_value_heads=2)
    base.update(kw)
    return TransformerConfig(**base)


def f64(seed=0):
    mf.set_default_dtype("float64")
    mf.seed(seed)


def token_rows(n=8, seed=0, max_len=9):
    """Rows of uneven length for token classification (labels −100 on the first token, like [CLS])."""
    rs = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        t = int(rs.integers(3, max_len))
        ids = rs.integers(1, 30, t)
        labels = rs.integers(0, 3, t)
        labels[0] = -100
        rows.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    return rows


def pad_collator(rows):
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": np.zeros((len(rows), width), dtype=np.int64),
             "attention_mask": np.zeros((len(rows), width), dtype=np.int64)}
    if "labels" in rows[0]:  # token labels, padded with -100
        batch["labels"] = np.full((len(rows), width), -100, dtype=np.int64)
    if "label" in rows[0]:  # one label per sequence
        batch["label"] = np.array([r["label"] for r in rows])
    for i, r in enumerate(rows):
        t = len(r["input_ids"])
        batch["input_ids"][i, :t] = r["input_ids"]
        batch["attention_mask"][i, :t] = 1
        if "labels" in batch:
            batch["labels"][i, :t] = r["labels"]
    return batch


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), disable_tqdm=True, logging_steps=1, save_strategy="no",
                plot=False, learning_rate=0.05, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


# ----------------------------------------------------------------------------- heads
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_head_gradchecks(family):
    f64()
    ids = np.array([[1, 5, 7, 2], [3, 4, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    seq = TransformerForSequenceClassification(config(family), num_labels=3)
    tok = TransformerForTokenClassification(config(family), num_labels=3)
    qa = TransformerForQuestionAnswering(config(family))
    checks = [
        (seq, lambda: seq(ids, attention_mask=mask, labels=np.array([2, 0])).loss, seq.classifier.weight),
        (tok, lambda: tok(ids, attention_mask=mask, labels=np.where(mask == 1, ids % 3, -100)).loss,
         tok.classifier.weight),
        (qa, lambda: qa(ids, attention_mask=mask, start_positions=np.array([1, 0]),
                        end_positions=np.array([2, 1])).loss, qa.qa_outputs.weight),
    ]
    for model, loss, head in checks:
        body = model.model.layers[0].attn.q_proj.weight
        for p in (head, body):
            assert mf.gradcheck(lambda _p: loss(), (p,), max_full=64)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@given(extra=st.integers(1, 4), left=st.booleans())
def test_decoder_classifier_reads_the_last_real_token_so_padding_changes_nothing(family, extra, left):
    f64()
    model = TransformerForSequenceClassification(config(family), num_labels=2).eval()
    ids = np.array([[4, 9, 2, 7, 5]])
    alone = model(ids).logits.numpy()
    pad = np.zeros((1, extra), dtype=np.int64)
    padded = np.concatenate([pad, ids] if left else [ids, pad], axis=1)
    mask = np.concatenate([pad, np.ones_like(ids)] if left else [np.ones_like(ids), pad], axis=1)
    np.testing.assert_allclose(model(padded, attention_mask=mask).logits.numpy(), alone, atol=1e-10)


def test_last_token_index_by_mask_by_pad_id_and_by_default():
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(last_token_index(mask, np.ones((3, 4), int)), [1, 3, 2])
    ids = np.array([[5, 6, 0, 0], [5, 0, 0, 0]])
    np.testing.assert_array_equal(last_token_index(None, ids, pad_token_id=0), [1, 0])
    np.testing.assert_array_equal(last_token_index(None, ids), [3, 3])


def test_sequence_classification_losses_follow_hf_problem_types():
    f64()
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    reg = TransformerForSequenceClassification(config(), num_labels=1)
    out = reg(ids, labels=np.array([0.5, -1.0]))
    assert out.loss.item() == pytest.approx(np.mean((out.logits.numpy().ravel() - [0.5, -1.0]) ** 2))
    multi = TransformerForSequenceClassification(config(), num_labels=3)
    y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = multi(ids, labels=y)
    z = out.logits.numpy()
    bce = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    assert out.loss.item() == pytest.approx(bce)
    out = multi(ids, labels=np.array([2, 0]))
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert out.loss.item() == pytest.approx(-(logp[0, 2] + logp[1, 0]) / 2)
    with pytest.raises(ValueError, match="multi-label targets of shape"):
        multi(ids, labels=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_labels"):
        TransformerForSequenceClassification(config(), num_labels=0)


def test_qa_loss_is_the_mean_of_start_and_end_cross_entropies_ignoring_outside_positions():
    f64()
    model = TransformerForQuestionAnswering(config())
    ids = np.array([[1, 2, 3, 4], [4, 5, 6, 7]])
    out = model(ids, start_positions=np.array([1, 9]), end_positions=np.array([2, 3]))
    s, e = out.start_logits.numpy(), out.end_logits.numpy()

    def ce(z, k):
        return -(z[k] - np.log(np.exp(z).sum()))

    start = ce(s[0], 1)  # row 1's start (9) is outside the 4 tokens: ignored
    end = (ce(e[0], 2) + ce(e[1], 3)) / 2
    assert out.loss.item() == pytest.approx((start + end) / 2)


# ----------------------------------------------------------------------------- accumulation
@pytest.mark.task("train.count_targets")
def test_count_targets():
    labels = np.array([[-100, 1, 2, -100], [-100, -100, 0, 1]])
    assert count_targets({"labels": labels}) == 4
    assert count_targets({"labels": labels}, shifts_labels=True) == 4  # position 0 is -100 in both rows
    labels[0, 0] = 5  # a label at position 0 is never a target of a causal LM
    assert count_targets({"labels": labels}) == 5 and count_targets({"labels": labels}, shifts_labels=True) == 4
    assert count_targets({"labels": np.array([0, 1, 1])}) == 3
    assert count_targets({"input_ids": np.zeros((2, 5)), "start_positions": np.array([1, 2])}) == 2


def _train_token_model(tmp_path, batch_size, accumulation, rows):
    f64(1)
    model = TransformerForTokenClassification(config(), num_labels=3)
    opt = optim.SGD(model.parameters(), lr=0.5)
    a = args(tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
             max_steps=1, max_grad_norm=0.0, lr_scheduler_type="constant")
    trainer = Trainer(model, a, train_dataset=rows, data_collator=pad_collator, optimizers=(opt, None))
    trainer.train()
    return model, trainer


@pytest.mark.task("train.accumulation_weight")
def test_accumulation_equals_one_big_batch_with_uneven_lengths(tmp_path):
    rows = token_rows(4)
    assert len({len(r["input_ids"]) for r in rows}) > 1
    big, t1 = _train_token_model(tmp_path / "a", 4, 1, rows)
    small, t4 = _train_token_model(tmp_path / "b", 1, 4, rows)
    for (name, p), q in zip(big.named_parameters(), small.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), atol=1e-10, err_msg=name)
    assert t1.state.log_history[0]["loss"] == pytest.approx(t4.state.log_history[0]["loss"], abs=1e-12)


def test_a_micro_batch_without_targets_adds_nothing_and_a_step_without_any_is_an_error(tmp_path):
    """A micro-batch whose labels are all −100 has no term in the mean over the step's targets (its own mean
    would be 0/0), so accumulating it equals one big batch that holds it; a step with no target at all has
    nothing to learn from and says so."""
    rows = token_rows(4)
    rows[1] = {**rows[1], "labels": [-100] * len(rows[1]["labels"])}
    big, t1 = _train_token_model(tmp_path / "a", 4, 1, rows)
    small, t4 = _train_token_model(tmp_path / "b", 1, 4, rows)
    for (name, p), q in zip(big.named_parameters(), small.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), atol=1e-10, err_msg=name)
    assert t1.state.log_history[0]["loss"] == pytest.approx(t4.state.log_history[0]["loss"], abs=1e-12)
    nothing = [{**r, "labels": [-100] * len(r["labels"])} for r in rows]
    with pytest.raises(ValueError, match=r"step 1: no target in the batch \(every label is -100\)"):
        _train_token_model(tmp_path / "c", 2, 2, nothing)


@pytest.mark.task("train.accumulation_weight")
def test_the_mean_of_micro_batch_means_is_not_the_big_batch_loss(tmp_path):
    # the trap this normalization avoids (transformers#34191): with uneven target counts the two differ
    rows = token_rows(4)
    f64(1)
    model = TransformerForTokenClassification(config(), num_labels=3).eval()
    singles = [model(**pad_collator([r])).loss.item() for r in rows]
    counts = [count_targets(pad_collator([r])) for r in rows]
    big = model(**pad_collator(rows)).loss.item()
    assert big == pytest.approx(np.dot(singles, counts) / sum(counts), abs=1e-12)
    assert abs(big - np.mean(singles)) > 1e-4
    _, trainer = _train_token_model(tmp_path, 1, 4, rows)
    assert trainer.state.log_history[0]["loss"] == pytest.approx(big, abs=1e-12)


def test_the_mean_normalization_switch_reproduces_the_mean_of_micro_batch_means(tmp_path):
    rows = token_rows(4)
    f64(1)
    model = TransformerForTokenClassification(config(), num_labels=3)
    start = {n: p.data.copy() for n, p in model.named_parameters()}
    grads = []  # each row's own mean-loss gradient, one by one
    for r in rows:
        model.zero_grad()
        model(**pad_collator([r])).loss.backward()
        grads.append({n: np.zeros_like(p.data) if p.grad is None else p.grad.copy() for n, p in model.named_parameters()})
    singles = [model(**pad_collator([r])).loss.item() for r in rows]  # the last row's gradient is left in .grad:
    a = args(tmp_path, per_device_train_batch_size=1, gradient_accumulation_steps=4, max_steps=1, max_grad_norm=0.0,
             lr_scheduler_type="constant", accumulation_normalization="mean")  # train() must start from zero
    trainer = Trainer(model, a, train_dataset=rows, data_collator=pad_collator,
                      optimizers=(optim.SGD(model.parameters(), lr=0.5), None))
    trainer.train()
    for n, p in model.named_parameters():  # one SGD step along the mean of the four gradients
        np.testing.assert_allclose(p.data, start[n] - 0.5 * np.mean([g[n] for g in grads], 0), atol=1e-10, err_msg=n)
    assert trainer.state.log_history[0]["loss"] == pytest.approx(np.mean(singles), abs=1e-12)
    with pytest.raises(ValueError, match="accumulation_normalization must be 'tokens'"):
        args(tmp_path, accumulation_normalization="sum")


def test_the_first_step_trace_shows_each_micro_batch_and_sums_to_the_logged_loss(tmp_path):
    rows = token_rows(4)
    f64(1)
    model = TransformerForTokenClassification(config(), num_labels=3)
    a = args(tmp_path, per_device_train_batch_size=1, gradient_accumulation_steps=4, max_steps=2, max_grad_norm=0.5,
             lr_scheduler_type="constant", trace_first_step=True)
    trainer = Trainer(model, a, train_dataset=rows, data_collator=pad_collator)
    trainer.train()
    trace = trainer.first_step_trace
    counts = trace.column("targets")
    assert len(trace) == 4 and sorted(counts.tolist()) == sorted(count_targets(pad_collator([r])) for r in rows)
    np.testing.assert_allclose(trace.column("weight"), counts / counts.sum(), rtol=1e-12)
    np.testing.assert_allclose(trace.column("weighted_loss"), trace.column("mean_loss") * trace.column("weight"))
    assert trace.column("weighted_loss").sum() == pytest.approx(trainer.state.log_history[0]["loss"], abs=1e-12)
    first = trainer.first_step
    assert first["grad_norm"] == pytest.approx(trainer.state.log_history[0]["grad_norm"], rel=1e-9)  # before clipping
    assert first["max_grad_norm"] == 0.5 and first["learning_rate"] == 0.05
    assert "micro-batch 3" in str(trace)
    untraced = Trainer(TransformerForTokenClassification(config(), num_labels=3), args(tmp_path / "b", max_steps=1),
                       train_dataset=rows, data_collator=pad_collator)
    untraced.train()
    assert untraced.first_step_trace is None


# ----------------------------------------------------------------------------- the loop
def classification_rows(n=24, seed=0):
    rs = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rs.integers(0, 2))
        ids = rs.integers(1, 15, 6) + 15 * label  # the label is written in the token ids: learnable
        rows.append({"input_ids": ids.tolist(), "label": label, "text": "unused column"})
    return rows


TIMINGS = ("runtime", "samples_per_second", "steps_per_second")  # HF's speed_metrics, differing run to run
assert TIMINGS == mf.train.trainer.SPEED_METRICS


def untimed(metrics):
    """``metrics`` without the timings ``evaluate`` and ``predict`` add, for comparing two runs."""
    return {k: v for k, v in metrics.items() if not k.endswith(TIMINGS)}


def accuracy(eval_pred):
    return {"accuracy": float((eval_pred.predictions.argmax(-1) == eval_pred.label_ids).mean())}


def test_trainer_learns_logs_and_evaluates(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(), num_labels=2)
    rows = classification_rows()
    a = args(tmp_path, per_device_train_batch_size=8, num_train_epochs=6, eval_strategy="epoch",
             lr_scheduler_type="linear", warmup_ratio=0.1, plot=True, logging_steps=3)
    trainer = Trainer(model, a, train_dataset=rows, eval_dataset=rows, data_collator=pad_collator,
                      compute_metrics=accuracy)
    output = trainer.train()
    state = trainer.state
    assert state.global_step == 18 and state.epoch == 6.0
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] == 1.0 and metrics["eval_loss"] < 0.3
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_logs = [r for r in log if "loss" in r]
    # HF's TrainOutput: each log record is the mean of 3 step losses, so their mean is that of all 18 steps
    assert isinstance(output, TrainOutput) and output.global_step == 18
    assert output.training_loss == pytest.approx(np.mean([r["loss"] for r in train_logs]), rel=1e-12)
    runtime = output.metrics["train_runtime"]
    assert output.metrics == {"train_runtime": runtime, "train_samples_per_second": pytest.approx(18 * 8 / runtime, rel=1e-2),
                              "train_steps_per_second": pytest.approx(18 / runtime, rel=1e-2),
                              "train_loss": output.training_loss, "epoch": 6.0}
    assert state.train_seconds <= runtime  # the steps' own time, without evaluation and logging
    # HF's PredictionOutput: the metrics evaluate gives, prefixed test_; it unpacks as a triple
    predictions, label_ids, test_metrics = trainer.predict(rows)
    assert untimed(test_metrics) == {k.replace("eval_", "test_"): v for k, v in untimed(metrics).items()}
    for m, prefix in ((metrics, "eval"), (test_metrics, "test")):  # 24 rows in 3 batches of 8 (eval batch size)
        runtime = m[f"{prefix}_runtime"]
        assert runtime > 0 and m[f"{prefix}_samples_per_second"] == pytest.approx(24 / runtime, rel=2e-2)
        assert m[f"{prefix}_steps_per_second"] == pytest.approx(3 / runtime, rel=2e-2)
    assert predictions.shape == (len(rows), 2) and label_ids.tolist() == [r["label"] for r in rows]
    assert trainer.predict(rows, metric_key_prefix="held_out").metrics.keys() == {
        "held_out_loss", "held_out_accuracy", "held_out_runtime", "held_out_samples_per_second",
        "held_out_steps_per_second"}
    # HF's parameters in HF's order: ignore_keys second (naming outputs this model does not return changes nothing)
    ignored = trainer.predict(rows, ["past_key_values", "hidden_states"], "held_out")
    np.testing.assert_array_equal(ignored.predictions, predictions)
    assert untimed(ignored.metrics) == {k.replace("test_", "held_out_"): v for k, v in untimed(test_metrics).items()}
    assert untimed(trainer.evaluate(rows, None, "again")) == {k.replace("eval_", "again_"): v
                                                            for k, v in untimed(metrics).items()}
    with pytest.raises(TypeError, match="ignore_keys must be a list of output names.*got 'held_out'"):
        trainer.evaluate(rows, "held_out")  # a prefix given where HF's ignore_keys goes
    with pytest.raises(TypeError, match="ignore_keys must be a list of output names.*got 5"):
        trainer.predict(rows, 5)
    with pytest.raises(ValueError, match=r"ignore_keys names \['logits'\].*nothing to predict"):
        trainer.predict(rows, ignore_keys=["logits"])
    assert [r["step"] for r in train_logs] == [3, 6, 9, 12, 15, 18]
    assert len([r for r in log if "eval_accuracy" in r]) == 6
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]
    assert train_logs[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-12)  # linear decay to 0
    for png in ("loss.png", "learning_rate.png", "eval.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"
    assert 0 < state.train_seconds


def test_resume_continues_with_exactly_the_same_losses(tmp_path):
    def run(resume=None, max_steps=6, out="run"):
        f64()
        model = TransformerForSequenceClassification(config(hidden_dropout_prob=0.2), num_labels=2)
        a = args(tmp_path, output_dir=str(tmp_path / out), per_device_train_batch_size=4, max_steps=max_steps,
                 save_strategy="steps", save_steps=3, weight_decay=0.1, warmup_steps=2)
        trainer = Trainer(model, a, train_dataset=classification_rows(10), data_collator=pad_collator)
        trainer.train(resume_from_checkpoint=resume)
        return [r["loss"] for r in trainer.state.log_history], model

    straight, m1 = run(out="straight")
    run(max_steps=6, out="interrupted")  # writes checkpoint-3 and checkpoint-6
    resumed, m2 = run(resume=str(tmp_path / "interrupted" / "checkpoint-3"), out="interrupted")
    assert resumed == straight  # the history of steps 1-3 comes from the checkpoint, 4-6 are recomputed
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    names = sorted(p.name for p in (tmp_path / "interrupted" / "checkpoint-3").iterdir())
    assert names == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "rng_state.json",
                     "scheduler.json", "trainer_state.json"]


def test_save_total_limit_rotates_this_runs_checkpoints_and_never_another_runs(tmp_path):
    """HF keeps the newest save_total_limit checkpoints. Here only those this run wrote (and, resumed, those of
    the run it continues) rotate: an earlier run's checkpoint-6 in the same output_dir is not this run's to delete."""
    def run(max_steps, limit=None, resume=None, folder="run"):
        f64()
        model = TransformerForSequenceClassification(config(), num_labels=2)
        a = args(tmp_path, output_dir=str(tmp_path / folder), per_device_train_batch_size=4, max_steps=max_steps,
                 save_strategy="steps", save_steps=2, save_total_limit=limit)
        Trainer(model, a, train_dataset=classification_rows(10), data_collator=pad_collator).train(
            resume_from_checkpoint=resume)
        return sorted(int(p.name.split("-")[1]) for p in (tmp_path / folder).glob("checkpoint-*"))

    assert run(6) == [2, 4, 6]
    before = (tmp_path / "run" / "checkpoint-4" / "model.safetensors").read_bytes()
    assert run(2, limit=1) == [2, 4, 6]  # its own 2 (written over the earlier one); the earlier run's 4, 6 kept
    assert (tmp_path / "run" / "checkpoint-4" / "model.safetensors").read_bytes() == before
    assert run(4, limit=1) == [4, 6]  # its own 2 rotated away, its own 4 kept; the earlier run's 6 untouched
    assert run(6, limit=2, resume=str(tmp_path / "run" / "checkpoint-4")) == [4, 6]  # resumed: 6 is its own now
    assert run(10, limit=2, resume=True) == [8, 10]  # the run it continues rotates with its own
    assert run(2, folder="other") == [2]
    # resumed from another folder's checkpoint: output_dir's 8 and 10 belong to no run this one continues
    assert run(4, limit=1, resume=str(tmp_path / "other" / "checkpoint-2")) == [4, 8, 10]


def test_a_nan_loss_stops_training_and_names_the_step(tmp_path):
    f64()

    class Exploding(TransformerForSequenceClassification):
        calls = 0

        def forward(self, *a, **kw):
            out = super().forward(*a, **kw)
            Exploding.calls += 1
            if Exploding.calls == 3:
                out.loss = out.loss * float("nan")
            return out

    trainer = Trainer(Exploding(config(), num_labels=2), args(tmp_path, max_steps=5, per_device_train_batch_size=4),
                      train_dataset=classification_rows(8), data_collator=pad_collator)
    with pytest.raises(FloatingPointError, match="step 3: the loss is nan"):
        trainer.train()


def test_early_stopping_and_load_best_model_at_end(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(), num_labels=2)
    rows = classification_rows()
    a = args(tmp_path, per_device_train_batch_size=8, max_steps=60, eval_strategy="steps", eval_steps=3,
             learning_rate=0.3, load_best_model_at_end=True, metric_for_best_model="loss")
    stopper = EarlyStoppingCallback(early_stopping_patience=2)
    trainer = Trainer(model, a, train_dataset=rows, eval_dataset=rows[:8], data_collator=pad_collator,
                      callbacks=[stopper])
    trainer.train()
    state = trainer.state
    evals = [r for r in state.log_history if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])
    assert state.best_metric == best["eval_loss"] and state.best_step == best["step"]
    if state.global_step < 60:  # stopped early: the last two evaluations did not improve on the best
        assert all(r["eval_loss"] >= best["eval_loss"] for r in evals[-2:])
    assert trainer.evaluate()["eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-12)


# ----------------------------------------------------------------------------- strategies
def test_weight_decay_skips_biases_and_norm_weights():
    f64()
    model = TransformerForSequenceClassification(config(), num_labels=2)
    decay = decay_parameter_names(model)
    for name, _ in model.named_parameters():
        excluded = name.endswith("bias") or "norm" in name
        assert (name not in decay) == excluded, name
    assert "classifier.weight" in decay and "model.layers.0.attn.q_proj.weight" in decay


@pytest.mark.task("train.llrd")
def test_llrd_learning_rates_by_depth():
    f64()
    model = TransformerForSequenceClassification(config(num_hidden_layers=3), num_labels=2)
    groups = llrd_param_groups(model, lr=1e-3, decay=0.5, weight_decay=0.01)
    lr_by_name = {}
    for g in groups:
        for p in g["params"]:
            lr_by_name[next(n for n, q in model.named_parameters() if q is p)] = (g["lr"], g["weight_decay"])
    assert lr_by_name["model.embed.tokens.weight"] == (1e-3 * 0.5**3, 0.01)
    assert lr_by_name["model.layers.0.attn.q_proj.weight"] == (1e-3 * 0.5**2, 0.01)
    assert lr_by_name["model.layers.2.mlp.up_proj.weight"] == (1e-3, 0.01)
    assert lr_by_name["classifier.weight"] == (1e-3, 0.01)
    assert lr_by_name["model.layers.1.attn_norm.weight"] == (1e-3 * 0.5, 0.0)
    assert len(lr_by_name) == len(list(model.parameters()))  # every parameter in exactly one group
    optim.AdamW(groups)  # the groups are valid optimizer groups


def test_gradual_unfreezing_one_more_group_per_epoch(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(num_hidden_layers=2), num_labels=2)
    groups = layer_groups(model)  # head, layer 2, layer 1, embeddings
    assert len(groups) == 4
    seen = []

    class Watch(mf.train.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            seen.append(sum(p.requires_grad for p in model.parameters()))

    unfreeze = GradualUnfreezingCallback(groups)
    trainer = Trainer(model, args(tmp_path, per_device_train_batch_size=8, num_train_epochs=4,
                                  lr_scheduler_type="stlr"),
                      train_dataset=classification_rows(16), data_collator=pad_collator,
                      callbacks=[unfreeze, Watch()])
    before = {id(p): p.numpy().copy() for p in model.parameters()}
    trainer.train()
    sizes = np.cumsum([len(g) for g in groups])
    # 2 steps per epoch: after steps 1, 3, 5, 7 (mid-epoch) the stage is that epoch's; the callback runs first
    assert seen == [sizes[0], sizes[1], sizes[1], sizes[2], sizes[2], sizes[3], sizes[3], sizes[3]]
    assert all(not np.array_equal(before[id(p)], p.numpy()) for p in model.parameters())


def test_training_arguments_reject_bad_values(tmp_path):
    for bad, match in [(dict(learning_rate=float("nan")), "learning_rate"),
                       (dict(per_device_train_batch_size=0), "per_device_train_batch_size"),
                       (dict(lr_scheduler_type="cosine_restarts"), "lr_scheduler_type"),
                       (dict(eval_strategy="sometimes"), "eval_strategy"),
                       (dict(warmup_ratio=1.5), "warmup_ratio"),
                       (dict(load_best_model_at_end=True), "needs evaluations"),
                       (dict(max_steps=0), "max_steps")]:
        with pytest.raises(ValueError, match=match):
            TrainingArguments(output_dir=str(tmp_path), **bad)


def test_trainer_errors_are_clear(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(), num_labels=2)
    with pytest.raises(ValueError, match="non-empty train_dataset"):
        Trainer(model, args(tmp_path), train_dataset=[]).train()
    with pytest.raises(KeyError, match="no input_ids column .*tokenize"):
        Trainer(model, args(tmp_path, max_steps=1), train_dataset=[{"text": "hi", "label": 1}]).train()
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError, match="as the output directory: .* is a file"):
        Trainer(model, args(tmp_path, output_dir=str(blocked / "run"), max_steps=1),
                train_dataset=classification_rows(4), data_collator=pad_collator).train()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        Trainer(model, args(tmp_path, max_steps=1), train_dataset=classification_rows(4),
                data_collator=pad_collator).train()
    with pytest.raises(TypeError, match="Trainer needs a minift model .*got NoneType"):
        Trainer(None, args(tmp_path))
    with pytest.raises(TypeError, match=r"args must be a TrainingArguments \(TrainingArguments\(\*\*options\).*got dict"):
        Trainer(model, {"output_dir": str(tmp_path)})


def test_a_trainer_without_args_takes_hfs_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(TransformerForSequenceClassification(config(), num_labels=2))
    assert trainer.args == TrainingArguments(output_dir="tmp_trainer")  # HF's: the defaults, into tmp_trainer/
    assert trainer.output_dir == Path("tmp_trainer") and not (tmp_path / "tmp_trainer").exists()  # not yet written


def test_labels_out_of_range_name_the_label(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(), num_labels=2)
    rows = classification_rows(4)
    rows[2]["label"] = 7
    trainer = Trainer(model, args(tmp_path, max_steps=1, per_device_train_batch_size=4), train_dataset=rows,
                      data_collator=pad_collator)
    with pytest.raises(IndexError, match="target 7 is out of range for 2 classes"):
        trainer.train()
    assert math.isfinite(model.classifier.weight.numpy().sum())


def test_a_saved_head_loads_back_with_its_labels(tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(), id2label={0: "neg", 1: "neutral", 2: "pos"}).eval()
    assert model.num_labels == 3 and model.config.num_labels == 3
    mf.models.save_pretrained(model, tmp_path / "clf")
    again = mf.models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    assert type(again) is TransformerForSequenceClassification and again.config.id2label[2] == "pos"
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(again(ids).logits.numpy(), model(ids).logits.numpy())
    tagger = mf.models.AutoModelForTokenClassification.from_pretrained(tmp_path / "clf", num_labels=5)
    assert type(tagger) is TransformerForTokenClassification and tagger.num_labels == 5  # a new head
    with pytest.raises(ValueError, match=r"id2label must name the classes 0..1"):
        TransformerForSequenceClassification(config(), num_labels=2, id2label={0: "a", 2: "b"})


def test_causal_lm_fine_tuning_counts_targets_after_the_shift(tmp_path):
    f64()
    model = mf.models.TransformerForCausalLM(config("gpt2"))
    rows = [{"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5]},
            {"input_ids": [6, 7, 8], "labels": [-100, 7, 8]}]
    trainer = Trainer(model, args(tmp_path, max_steps=1, per_device_train_batch_size=1,
                                  gradient_accumulation_steps=2, max_grad_norm=0.0),
                      train_dataset=rows, data_collator=pad_collator)
    trainer.train()
    losses = []
    model.eval()
    f64()
    fresh = mf.models.TransformerForCausalLM(config("gpt2"))
    for r in rows:
        losses.append(fresh(**pad_collator([r])).loss.item())
    # row 0 has 4 shifted targets, row 1 has 2: the logged loss is their target-weighted mean
    assert trainer.state.log_history[0]["loss"] == pytest.approx((4 * losses[0] + 2 * losses[1]) / 6, abs=1e-12)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_mean_pooling_reads_the_mean_of_the_real_tokens(family, tmp_path):
    f64()
    model = TransformerForSequenceClassification(config(family), num_labels=2, pooling="mean").eval()
    ids = np.array([[4, 9, 2, 7, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 0, 0]])
    h = model.model(ids, attention_mask=mask).last_hidden_state.numpy()[0, :4].mean(0)
    expected = h @ model.classifier.weight.numpy().T + (model.classifier.bias.numpy() if family == "bert" else 0)
    np.testing.assert_allclose(model(ids, attention_mask=mask).logits.numpy()[0], expected, atol=1e-12)
    np.testing.assert_allclose(model(ids[:, :4]).logits.numpy(), model(ids, attention_mask=mask).logits.numpy(),
                               atol=1e-10)  # padding changes nothing
    mf.models.save_pretrained(model, tmp_path / "m")  # minift's format keeps the choice
    back = mf.models.from_pretrained(tmp_path / "m").eval()
    assert back.config.classifier_pooling == "mean"
    np.testing.assert_allclose(back(ids, attention_mask=mask).logits.numpy(),
                               model(ids, attention_mask=mask).logits.numpy(), atol=1e-12)
    with pytest.raises(mf.models.CheckpointError, match="pooling='mean'.*format='minift'"):
        mf.models.save_pretrained(model, tmp_path / "hf", format="hf")
    with pytest.raises(ValueError, match="classifier_pooling must be"):
        TransformerForSequenceClassification(config(family), pooling="max")
