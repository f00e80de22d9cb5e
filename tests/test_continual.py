"""Continual fine-tuning: the Fisher estimators against closed forms, EWC's penalty and its gradient, online
EWC by hand, reservoir sampling's uniformity, the forgetting metrics on matrices worked out by hand, the
EWC callback inside the Trainer, and clear errors."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift.continual import (
    EWC, L2Anchor, ReplayBuffer, average_accuracy, backward_transfer, continual_summary, fisher_diagonal, forgetting,
    linear_per_example_grads,
)
from minift.train import EWCCallback, Trainer, TrainingArguments

from .test_train import classification_rows, config, pad_collator


@pytest.fixture(autouse=True)
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


class SoftmaxClassifier(mf.nn.Module):
    """logits = x Wᵀ + b over the last axis: (B, d) → (B, C) or, per token, (B, T, d) → (B, T, C)."""

    def __init__(self, d, c):
        super().__init__()
        self.lin = mf.nn.Linear(d, c)

    def forward(self, x):
        return self.lin(mf.tensor(x))


def model_and_data(seed=0, n=6, d=3, c=4, tokens=None):
    mf.seed(seed)
    model = SoftmaxClassifier(d, c)
    rng = np.random.default_rng(seed)
    shape = (n, d) if tokens is None else (n, tokens, d)
    x = rng.standard_normal(shape)
    y = rng.integers(0, c, shape[:-1])
    return model, x, y


def np_probs(model, x):
    w, b = model.lin.weight.data, model.lin.bias.data
    z = x @ w.T + b
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def score(p, x, y, c):
    """∂ log p_y / ∂(W, b) of a softmax classifier: ((e_y − p) xᵀ, e_y − p), summed over tokens if any."""
    r = np.eye(c)[y] - p  # (…, C)
    if x.ndim == 1:
        return np.outer(r, x), r
    return r.T @ x, r.sum(0)  # Σ_t r_t x_tᵀ, Σ_t r_t


# ============================================================================ Fisher
@pytest.mark.task("continual.fisher_example")
def test_empirical_fisher_is_the_mean_of_per_example_squared_gradients():
    model, x, y = model_and_data()
    fisher = fisher_diagonal(model, [{"x": x[:4], "labels": y[:4]}, {"x": x[4:], "labels": y[4:]}])
    p = np_probs(model, x)
    grads = [score(p[n], x[n], y[n], 4) for n in range(6)]
    np.testing.assert_allclose(fisher["lin.weight"], np.mean([gw**2 for gw, _ in grads], 0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fisher["lin.bias"], np.mean([gb**2 for _, gb in grads], 0), rtol=1e-12, atol=1e-14)
    batch_mean_squared = np.mean([gb for _, gb in grads], 0) ** 2  # the classic mistake: square of the mean
    assert not np.allclose(fisher["lin.bias"], batch_mean_squared)


@pytest.mark.task("continual.fisher_example")
def test_true_fisher_of_a_softmax_classifier_equals_its_closed_form():
    model, x, y = model_and_data(seed=1)
    fisher = fisher_diagonal(model, [{"x": x, "labels": y}], kind="true")
    p = np_probs(model, x)
    expected_w = np.mean([sum(p[n, c] * score(p[n], x[n], c, 4)[0] ** 2 for c in range(4)) for n in range(6)], 0)
    np.testing.assert_allclose(fisher["lin.weight"], expected_w, rtol=1e-12, atol=1e-14)
    # for the bias Σ_c p_c (δ_ck − p_k)² = p_k (1 − p_k)
    np.testing.assert_allclose(fisher["lin.bias"], (p * (1 - p)).mean(0), rtol=1e-12, atol=1e-14)
    assert fisher_diagonal(model, [{"x": x, "labels": (y + 1) % 4}], kind="true")["lin.bias"] == pytest.approx(
        fisher["lin.bias"])  # the true Fisher never looks at the labels


@pytest.mark.task("continual.fisher_example")
def test_sampled_fisher_averages_to_the_true_one():
    model, x, y = model_and_data(seed=2, n=3)
    true = fisher_diagonal(model, [{"x": x, "labels": y}], kind="true")
    sampled = fisher_diagonal(model, [{"x": x, "labels": y}], kind="sampled", num_samples=2000, seed=0)
    for name in true:  # Monte-Carlo: each entry within a tenth of the largest, the total within 5 %
        np.testing.assert_allclose(sampled[name], true[name], atol=0.1 * true[name].max())
        assert sampled[name].sum() == pytest.approx(true[name].sum(), rel=0.05)
    again = fisher_diagonal(model, [{"x": x, "labels": y}], kind="sampled", num_samples=5, seed=3)
    assert all(np.array_equal(v, fisher_diagonal(model, [{"x": x, "labels": y}], kind="sampled", num_samples=5,
                                                 seed=3)[k]) for k, v in again.items())  # seeded


@pytest.mark.task("continual.fisher_example")
def test_sequence_fisher_sums_the_labelled_tokens_and_the_true_one_equals_brute_force():
    model, x, y = model_and_data(seed=3, n=2, d=2, c=3, tokens=3)
    y[0, 1] = -100  # an unlabelled token: no term
    p = np_probs(model, x)
    fisher = fisher_diagonal(model, [{"x": x, "labels": y}], kind="empirical")
    expected = []
    for n in range(2):
        keep = y[n] != -100
        expected.append(score(p[n][keep], x[n][keep], y[n][keep], 3)[0] ** 2)
    np.testing.assert_allclose(fisher["lin.weight"], np.mean(expected, 0), rtol=1e-12, atol=1e-14)
    # true: the expectation over every labelling of the labelled tokens, enumerated (3^T terms)
    true = fisher_diagonal(model, [{"x": x, "labels": y}], kind="true")
    brute = []
    for n in range(2):
        keep = np.flatnonzero(y[n] != -100)
        total = 0
        for labels in itertools.product(range(3), repeat=len(keep)):
            prob = np.prod([p[n, t, c] for t, c in zip(keep, labels)])
            total = total + prob * score(p[n][keep], x[n][keep], np.array(labels), 3)[0] ** 2
        brute.append(total)
    np.testing.assert_allclose(true["lin.weight"], np.mean(brute, 0), rtol=1e-10, atol=1e-14)


def test_linear_per_example_gradients_are_outer_products():
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 5, 2))  # (B, T, in), (B, T, out)
    mf.seed(0)
    lin = mf.nn.Linear(3, 2)
    loop = []
    for b in range(4):
        lin.zero_grad()
        lin(mf.tensor(x[b:b + 1])).backward(g[b:b + 1])
        loop.append(lin.weight.grad.copy())
    np.testing.assert_allclose(linear_per_example_grads(x, g), np.stack(loop), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(linear_per_example_grads(x[:, 0], g[:, 0]),
                               np.einsum("bo,bi->boi", g[:, 0], x[:, 0]))


def test_linear_per_example_grads_checks_shapes_and_takes_tensors():
    x, g = np.random.default_rng(3).standard_normal((2, 3)), np.random.default_rng(4).standard_normal((2, 4))
    np.testing.assert_allclose(linear_per_example_grads(mf.tensor(x), mf.tensor(g)), linear_per_example_grads(x, g))
    for xs, gs in (((2, 3), (3, 4)), ((2, 5, 3), (2, 4)), ((3,), (4,)), ((2, 2, 5, 3), (2, 2, 5, 4))):
        with pytest.raises(ValueError, match="same leading shape"):  # einsum's messages named subscripts
            linear_per_example_grads(np.ones(xs), np.ones(gs))


def test_fisher_leaves_no_gradient_and_the_training_mode_as_it_was():
    model, x, y = model_and_data()
    model.train()
    fisher_diagonal(model, [{"x": x, "labels": y}], parameters=["lin.weight"])
    assert model.training and all(p.grad is None for p in model.parameters())


def test_fisher_errors_are_clear():
    model, x, y = model_and_data()
    with pytest.raises(ValueError, match="batches is empty"):
        fisher_diagonal(model, [])
    with pytest.raises(ValueError, match="kind must be one of"):
        fisher_diagonal(model, [{"x": x, "labels": y}], kind="exact")
    with pytest.raises(ValueError, match="needs 'labels'"):
        fisher_diagonal(model, [{"x": x}])
    with pytest.raises(KeyError, match="no parameters"):
        fisher_diagonal(model, [{"x": x, "labels": y}], parameters=["encoder.weight"])
    with pytest.raises(ValueError, match="do not match"):
        fisher_diagonal(model, [{"x": x, "labels": np.zeros((6, 2), dtype=int)}])


def test_fisher_checks_what_it_is_given():
    model, x, y = model_and_data()
    batch = {"x": x, "labels": y}
    with pytest.raises(TypeError, match=r"wrap it in a list, \[batch\]"):  # iterating a dict gives its keys
        fisher_diagonal(model, batch)
    with pytest.raises(TypeError, match="write \\['lin.weight'\\]"):  # not the names 'l', 'i', 'n', …
        fisher_diagonal(model, [batch], parameters="lin.weight")
    # −1 picked the last class, 0.5 was truncated; NaN and strings are no class either
    for labels in (np.full(6, -1), np.full(6, 4), y + 0.5, np.full(6, np.nan), np.array(list("abcdef"))):
        with pytest.raises(ValueError, match=r"class ids in \[0, 4\) or -100"):
            fisher_diagonal(model, [{"x": x, "labels": labels}])
    with pytest.raises(ValueError, match="one row per example"):
        fisher_diagonal(model, [{"x": x[:3], "labels": y}])
    model.lin.bias.requires_grad = False
    with pytest.raises(ValueError, match="do not require grad"):  # its Fisher would be 0: no spring at all
        fisher_diagonal(model, [batch], parameters=["lin.bias"])
    model.lin.bias.requires_grad = True
    want = fisher_diagonal(model, [batch])
    for labels in (mf.tensor(y), y.astype(float), y.tolist()):  # a Tensor of labels was an int() TypeError
        np.testing.assert_allclose(fisher_diagonal(model, [{"x": x, "labels": labels}])["lin.bias"], want["lin.bias"])
    binary = y % 2  # boolean labels read as 0 and 1
    np.testing.assert_allclose(fisher_diagonal(model, [{"x": x, "labels": binary.astype(bool)}])["lin.bias"],
                               fisher_diagonal(model, [{"x": x, "labels": binary}])["lin.bias"])


# ============================================================================ EWC
def perturb(model, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += scale * rng.standard_normal(p.shape)


def random_fisher(model, seed=0):
    """A made-up positive Fisher diagonal: the penalty's tests need no estimator."""
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(0.1, 2.0, p.shape) for n, p in model.named_parameters()}


@pytest.mark.task("continual.ewc_penalty")
def test_ewc_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta():
    model, x, y = model_and_data()
    ewc = EWC(lambda_=3.0)
    fisher = random_fisher(model)
    ewc.add_anchor(model, fisher)
    assert ewc.penalty(model).item() == 0.0
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model)
    penalty = ewc.penalty(model)
    delta = {n: p.data - anchor[n] for n, p in model.named_parameters()}
    assert penalty.item() == pytest.approx(1.5 * sum((fisher[n] * delta[n] ** 2).sum() for n in delta), rel=1e-12)
    model.zero_grad()
    penalty.backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 3.0 * fisher[n] * delta[n], rtol=1e-12, atol=1e-15)
    assert mf.gradcheck(lambda w: penalty_of_weight(ewc, model, w), (model.lin.weight,))


@pytest.mark.task("continual.ewc_penalty")
def test_the_full_penalty_scale_is_avalanches_lambda_without_the_half():
    model, _, _ = model_and_data()
    fisher = random_fisher(model)
    half, full = EWC(lambda_=3.0), EWC(lambda_=3.0, penalty_scale="full")
    for ewc in (half, full):
        ewc.add_anchor(model, fisher)
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model)
    delta = {n: p.data - anchor[n] for n, p in model.named_parameters()}
    by_hand = sum((fisher[n] * delta[n] ** 2).sum() for n in delta)  # Σ F (θ − θ*)²
    assert half.penalty(model).item() == pytest.approx(1.5 * by_hand, rel=1e-12)
    penalty = full.penalty(model)
    assert penalty.item() == pytest.approx(3.0 * by_hand, rel=1e-12)  # λ Σ F (θ − θ*)²
    model.zero_grad()
    penalty.backward()
    for n, p in model.named_parameters():  # gradient 2λ F (θ − θ*)
        np.testing.assert_allclose(p.grad, 6.0 * fisher[n] * delta[n], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="penalty_scale must be 'half'"):
        EWC(penalty_scale="lambda/2")


def test_squared_minibatch_is_avalanches_square_of_each_batch_mean_gradient():
    model, x, y = model_and_data(n=8)
    batches = [{"x": x[:4], "labels": y[:4]}, {"x": x[4:], "labels": y[4:]}]
    got = fisher_diagonal(model, batches, kind="squared_minibatch")
    p = np_probs(model, x)
    expected_w, expected_b = 0, 0
    for k in (slice(0, 4), slice(4, 8)):  # the mean loss's gradient is minus the mean score
        gw = -np.mean([score(p[n], x[n], y[n], 4)[0] for n in range(8)[k]], 0)
        gb = -np.mean([score(p[n], x[n], y[n], 4)[1] for n in range(8)[k]], 0)
        expected_w, expected_b = expected_w + gw**2 / 2, expected_b + gb**2 / 2
    np.testing.assert_allclose(got["lin.weight"], expected_w, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got["lin.bias"], expected_b, rtol=1e-10, atol=1e-14)
    # with batches of one example each it IS the empirical Fisher; with larger batches it is not
    ones = [{"x": x[n:n + 1], "labels": y[n:n + 1]} for n in range(8)]
    empirical = fisher_diagonal(model, batches, kind="empirical")
    np.testing.assert_allclose(fisher_diagonal(model, ones, kind="squared_minibatch")["lin.weight"],
                               empirical["lin.weight"], rtol=1e-10, atol=1e-14)
    assert got["lin.weight"].sum() < 0.7 * empirical["lin.weight"].sum()
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="batches is empty"):
        fisher_diagonal(model, [], kind="squared_minibatch")


def penalty_of_weight(ewc, model, w):
    """The penalty as a function of the weight matrix alone (for gradcheck)."""
    model.lin.weight = w
    return ewc.penalty(model)


@settings(max_examples=25, deadline=None)
@given(lam=st.floats(0, 10), gamma=st.floats(0.05, 1.0), seed=st.integers(0, 50))
def test_online_ewc_keeps_one_anchor_and_the_recursion_gamma_f_plus_f_new(lam, gamma, seed):
    model, x, y = model_and_data(seed=seed)
    ewc = EWC(lambda_=lam, mode="online", gamma=gamma)
    f1 = ewc.consolidate(model, [{"x": x, "labels": y}])
    perturb(model, seed)
    f2 = ewc.consolidate(model, [{"x": x[:3], "labels": y[:3]}])
    assert len(ewc.anchors) == 1
    for n in f1:
        np.testing.assert_allclose(ewc.fisher[n], gamma * f1[n] + f2[n], rtol=1e-12)
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}  # the latest weights
    perturb(model, seed + 1)
    expected = lam / 2 * sum(((gamma * f1[n] + f2[n]) * (p.data - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    assert ewc.penalty(model).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.task("continual.ewc_penalty")
def test_separate_ewc_has_one_penalty_per_task():
    model, x, y = model_and_data()
    ewc = EWC(lambda_=2.0)
    f1, f2 = random_fisher(model, 1), random_fisher(model, 2)
    ewc.add_anchor(model, f1)
    a1 = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model, 1)
    ewc.add_anchor(model, f2)
    a2 = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model, 2)
    theta = {n: p.data for n, p in model.named_parameters()}
    expected = sum((f1[n] * (theta[n] - a1[n]) ** 2).sum() + (f2[n] * (theta[n] - a2[n]) ** 2).sum() for n in theta)
    assert ewc.penalty(model).item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(ewc.fisher["lin.bias"], f1["lin.bias"] + f2["lin.bias"])


@pytest.mark.task("continual.ewc_penalty")
def test_l2_anchor_is_ewc_with_a_unit_fisher():
    model, x, y = model_and_data()
    l2 = L2Anchor(lambda_=0.5)
    l2.consolidate(model)
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model)
    expected = 0.25 * sum(((p.data - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    assert l2.penalty(model).item() == pytest.approx(expected, rel=1e-12)


def test_ewc_errors_are_clear():
    model, x, y = model_and_data()
    with pytest.raises(RuntimeError, match="before any consolidate"):
        EWC().penalty(model)
    with pytest.raises(RuntimeError, match="no Fisher yet"):
        EWC().fisher
    ewc = EWC()
    ewc.consolidate(model, [{"x": x, "labels": y}])
    other, _, _ = model_and_data(d=5)
    with pytest.raises(ValueError, match="has shape"):
        ewc.penalty(other)
    renamed = mf.nn.Sequential(mf.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="is it the model that was consolidated"):
        ewc.penalty(renamed)
    for bad in (dict(lambda_=-1), dict(mode="offline"), dict(gamma=0), dict(gamma=1.5)):
        with pytest.raises(ValueError):
            EWC(**bad)
    with pytest.raises(TypeError, match="penalty"):
        EWCCallback(object())


def test_add_anchor_takes_array_likes_and_rejects_what_is_no_fisher():
    model, x, y = model_and_data()
    ones = {n: np.ones(p.shape) for n, p in model.named_parameters()}
    as_lists = EWC(2.0)
    as_lists.add_anchor(model, {n: f.tolist() for n, f in ones.items()})  # was: 'list' object has no attribute 'shape'
    as_arrays = EWC(2.0)
    as_arrays.add_anchor(model, ones)
    perturb(model)
    assert as_lists.penalty(model).item() == pytest.approx(as_arrays.penalty(model).item())
    with pytest.raises(ValueError, match="fisher is empty"):  # the penalty was None, not a Tensor
        EWC().add_anchor(model, {})
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and >= 0"):
            EWC().add_anchor(model, {n: np.full(f.shape, bad) for n, f in ones.items()})


def test_the_ewc_callback_adds_the_penalty_gradient_to_each_trainer_step(tmp_path):
    mf.seed(0)
    model = mf.models.TransformerForSequenceClassification(config(), num_labels=2)
    rows = classification_rows(8)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), disable_tqdm=True, logging_steps=1, save_strategy="no",
                             plot=False, per_device_train_batch_size=8, max_steps=2, seed=0)
    trainer = Trainer(model, args, train_dataset=rows, data_collator=pad_collator)
    batch = trainer._batch(rows, range(8))
    ewc = EWC(lambda_=5.0)
    fisher = ewc.consolidate(model, [batch])
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}
    perturb(model, scale=0.05)
    model.zero_grad()
    data_loss = model(**batch).loss
    data_loss.backward()
    data_grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    trainer.callbacks = [EWCCallback(ewc)]
    trainer.create_optimizer()
    trainer.create_scheduler(2)
    total = trainer.training_step([batch])
    penalty = 2.5 * sum((fisher[n] * (p.data - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    assert total == pytest.approx(data_loss.item() + penalty, rel=1e-10)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, data_grads[n] + 5.0 * fisher[n] * (p.data - anchor[n]), rtol=1e-9, atol=1e-12)
    model.zero_grad()
    trainer._loss_terms = {}
    trainer.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["ewc_penalty"] > 0 for r in log if "loss" in r] == [True, True]


# ============================================================================ replay
def test_reservoir_keeps_every_item_with_the_same_probability():
    counts = np.zeros(50)
    for seed in range(2000):
        buffer = ReplayBuffer(10, seed=seed)
        buffer.extend(range(50))
        assert len(buffer) == 10 and buffer.seen == 50 and len(set(buffer.items)) == 10
        counts[buffer.items] += 1
    freq = counts / 2000  # each item: 10/50 = 0.2; binomial sd √(0.2·0.8/2000) ≈ 0.009
    assert np.abs(freq - 0.2).max() < 0.04
    assert abs(freq[:10].mean() - freq[40:].mean()) < 0.02  # the first ones are not favoured


def test_replay_mixes_the_asked_fraction_and_checks_its_input():
    buffer = ReplayBuffer(100, seed=0)
    buffer.extend([{"old": i} for i in range(100)])
    mixed = buffer.mixed_with([{"new": i} for i in range(60)], replay_fraction=0.25)
    assert len(mixed) == 80 and sum("old" in r for r in mixed) == 20
    assert buffer.mixed_with([{"new": 0}], 0.0) == [{"new": 0}]
    with pytest.raises(ValueError, match="replay_fraction"):
        buffer.mixed_with([], 1.0)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)


def test_counts_and_coefficients_accept_numpy_numbers_and_reject_the_rest():
    buffer = ReplayBuffer(np.int64(3))
    buffer.extend(range(10))
    assert buffer.capacity == 3 and len(buffer.sample(np.int64(2))) == 2
    for bad in (-1, 2.5, True):  # sample(-1) returned all but one item
        with pytest.raises(ValueError, match="n must be an integer >= 0"):
            buffer.sample(bad)
    with pytest.raises(ValueError, match="capacity must be an integer"):
        ReplayBuffer(True)
    assert EWC(np.float32(2.0), mode="online", gamma=np.float64(0.5)).lambda_ == 2.0
    for bad in (float("inf"), float("nan"), True, "1"):  # λ = ∞ makes the penalty ∞ · 0 = NaN at the anchor
        with pytest.raises(ValueError, match="lambda_ must be a finite number"):
            EWC(bad)
    model, x, y = model_and_data()
    f = fisher_diagonal(model, [{"x": x, "labels": y}], kind="sampled", num_samples=np.int64(2))
    assert f["lin.bias"].shape == (4,)


# ============================================================================ forgetting metrics
@pytest.mark.task("continual.backward_transfer")
def test_forgetting_metrics_on_a_matrix_worked_out_by_hand():
    R = [[0.9, 0.2, 0.1],
         [0.6, 0.8, 0.3],
         [0.5, 0.7, 0.9]]
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert forgetting(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert continual_summary([[0.7]]) == {"average_accuracy": 0.7, "backward_transfer": 0.0, "forgetting": 0.0}
    # negative forgetting without every task ending at its best: task 0 gains 0.4, task 1 loses 0.1
    assert forgetting([[0.5, 0.0, 0.0], [0.5, 0.9, 0.0], [0.9, 0.8, 0.5]]) == pytest.approx((-0.4 + 0.1) / 2)


@pytest.mark.task("continual.backward_transfer")
@given(st.integers(1, 6).flatmap(lambda t: st.lists(st.floats(0, 1), min_size=t * t, max_size=t * t)))
def test_no_change_after_training_means_no_transfer_and_no_forgetting(values):
    t = int(round(len(values) ** 0.5))
    diag = np.array(values).reshape(t, t)
    R = np.tril(np.repeat(np.diag(diag)[None, :], t, 0)) + np.triu(diag, 1)  # each column frozen once trained
    assert backward_transfer(R) == pytest.approx(0.0, abs=1e-12)
    assert forgetting(R) >= -1e-12
    worse = R.copy()
    worse[-1, :-1] -= 0.1  # every earlier task loses 0.1 at the end
    if t > 1:
        assert backward_transfer(worse) == pytest.approx(-0.1)


def test_forgetting_metrics_reject_a_matrix_that_is_not_square():
    for bad in ([[0.5, 0.5]], [], [0.5]):
        with pytest.raises(ValueError, match="square"):
            average_accuracy(bad)


# ============================================================================ the scenario and its plots
TINY_BERT = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-bert")


def tiny_scenario(tmp_path, method, tasks="sentiment,sentiment-tweets", **kw):
    from minift.continual_scenario import ContinualConfig, run_continual

    mf.set_default_dtype("float32")
    cfg = ContinualConfig(model=TINY_BERT, tasks=tasks, method=method, steps_per_task=3,
                          batch_size=8, train_limit=48, eval_limit=40, fisher_examples=8, out=str(tmp_path / method), **kw)
    return run_continual(cfg, quiet=True)


def test_lora_per_task_cannot_forget_and_the_summary_reads_r(tmp_path):
    r = tiny_scenario(tmp_path, "lora")
    R = np.array(r["R"])
    assert R.shape == (2, 2)
    assert R[1, 0] == R[0, 0]  # task 0 is evaluated with its own adapter, which task 1 never touched
    assert r["backward_transfer"] == pytest.approx(R[1, 0] - R[0, 0]) and r["forgetting"] == pytest.approx(0.0)
    saved = json.loads((tmp_path / "lora" / "results.json").read_text())
    assert saved["R"] == r["R"] and saved["method"] == "lora"
    assert saved["machine"] == mf.backend.machine_summary()


@pytest.mark.parametrize("method", ["ewc", "replay"])
def test_scenario_methods_run_and_report_what_they_did(tmp_path, method):
    r = tiny_scenario(tmp_path, method)
    assert np.array(r["R"]).shape == (2, 2) and 0 <= r["average_accuracy"] <= 1
    assert (r["fisher_seconds"] > 0) == (method == "ewc")


@pytest.mark.parametrize("method", ["ewc", "lora"])
def test_task_shift_keeps_each_task_its_own_head_on_one_encoder(tmp_path, method):
    r = tiny_scenario(tmp_path, method, tasks="sentiment,ner")
    R = np.array(r["R"])
    assert R.shape == (2, 2) and r["metric"] == {"sentiment": "accuracy", "ner": "f1"}
    assert 0 <= R.min() and R.max() <= 1
    if method == "lora":
        assert R[1, 0] == R[0, 0]  # the sentiment adapter and head were not touched by the NER task


def test_scenario_config_errors_are_clear(tmp_path):
    from minift.continual_scenario import ContinualConfig

    with pytest.raises(ValueError, match="two or more"):
        ContinualConfig(tasks="sentiment")
    with pytest.raises(ValueError, match="two or more"):
        ContinualConfig(tasks="sentiment,qa")
    with pytest.raises(ValueError, match="two or more"):
        ContinualConfig(tasks="sentiment,sentiment")
    with pytest.raises(ValueError, match="domain-shift"):
        ContinualConfig(tasks="sentiment,ner", method="replay")
    with pytest.raises(ValueError, match="unknown method"):
        ContinualConfig(method="ewc2")
    with pytest.raises(ValueError, match="replay_fraction"):
        ContinualConfig(replay_fraction=1.0)
    with pytest.raises(ValueError, match="steps_per_task"):
        ContinualConfig(steps_per_task=0)
    for bad in (0, 1.5, float("nan")):  # was EWC's "gamma must be in (0, 1]", after the data and model loaded
        with pytest.raises(ValueError, match="online_gamma must be in"):
            ContinualConfig(method="online-ewc", online_gamma=bad)
    with pytest.raises(ValueError, match="replay_fraction"):
        ContinualConfig(replay_fraction="0.25")


def test_the_fisher_is_estimated_on_the_rows_the_task_trained_on(tmp_path, monkeypatch):
    """--train-limit 8 means the first 8 training rows, for the Fisher too (fisher_examples=100 read 100)."""
    seen = []
    consolidate = EWC.consolidate

    def counting(self, model, batches, **kw):
        seen.append(sum(len(b["labels"]) for b in batches))
        return consolidate(self, model, batches, **kw)

    monkeypatch.setattr(EWC, "consolidate", counting)
    from minift.continual_scenario import ContinualConfig, run_continual

    mf.set_default_dtype("float32")
    run_continual(ContinualConfig(model=TINY_BERT, tasks="sentiment,sentiment-tweets", method="ewc", steps_per_task=2,
                                  batch_size=8, train_limit=8, eval_limit=8, fisher_examples=100,
                                  out=str(tmp_path / "ewc")), quiet=True)
    assert seen == [8]


def test_accuracy_matrix_and_forgetting_plots_are_real_pngs(tmp_path):
    from minift.plotting import plot_accuracy_matrix, plot_forgetting

    R = [[0.9, 0.6], [0.7, 0.85]]
    plot_accuracy_matrix(R, ["movie", "tweets"], path=tmp_path / "R.png")
    plot_forgetting({"naive": R, "ewc": [[0.9, 0.6], [0.85, 0.8]]}, ["movie", "tweets"], path=tmp_path / "f.png")
    for name in ("R.png", "f.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the λ = 1e300 run overflows on purpose
def test_cli_runs_several_methods_into_one_table_and_errors_in_one_line(tmp_path, capsys):
    from minift.cli import main

    mf.set_default_dtype("float32")
    out = tmp_path / "cl"
    rc = main(["continual", TINY_BERT, "sentiment,sentiment-tweets", "--method", "naive,l2", "--steps-per-task", "2",
               "--train-limit", "24", "--eval-limit", "16", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "| naive |" in printed and "| l2 |" in printed
    assert (out / "table.md").read_text().count("\n") == 4  # header, rule, two methods
    for method in ("naive", "l2"):
        assert json.loads((out / method / "results.json").read_text())["method"] == method
    assert main(["continual", TINY_BERT, "sentiment,qa"]) == 2  # options the config refuses: a usage error
    err = capsys.readouterr().err
    assert err.startswith("minift: tasks must be two or more") and err.count("\n") == 1
    for bad in ("", "naive,naive"):
        assert main(["continual", TINY_BERT, "sentiment,sentiment-tweets", "--method", bad]) == 2
        assert "--method needs one or more different methods" in capsys.readouterr().err
    rc = main(["continual", TINY_BERT, "sentiment,sentiment-tweets", "--method", "ewc", "--ewc-lambda", "1e300",
               "--steps-per-task", "2", "--train-limit", "16", "--eval-limit", "8", "--fisher-examples", "8",
               "--out", str(tmp_path / "nan")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("minift: step") and "internal error" not in err[-1]  # the loss became inf
