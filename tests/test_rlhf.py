"""Alignment losses against their formulas written out again in NumPy, the properties the issue lists (ρ ≡ 1,
the clipped side's zero gradient, GAE as discounted sums, the KL estimators' expectations, DPO at π = π_ref),
gradient checks of every loss in float64, and clear errors."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift.rlhf import (
    bradley_terry_loss, compute_gae, dpo_loss, grpo_advantages, kl_penalty, masked_mean, ppo_policy_loss,
    ppo_value_loss, whiten,
)


@pytest.fixture(autouse=True)
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


def rand(*shape, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ============================================================================ GAE
@pytest.mark.task("rlhf.compute_gae")
@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 8), gamma=st.floats(0.5, 1.0), lam=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_gae_equals_the_discounted_sum_of_td_errors(T, gamma, lam, seed, oracles):
    r, v = rand(2, T, seed=seed), rand(2, T, seed=seed + 1)
    advantages, returns = compute_gae(r, v, gamma=gamma, lam=lam)
    for b in range(2):
        np.testing.assert_allclose(advantages[b], oracles.gae_by_sums(r[b], v[b], gamma, lam), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(returns, advantages + v)


@pytest.mark.task("rlhf.compute_gae")
def test_gae_with_gamma_and_lambda_1_is_the_return_minus_the_value():
    r, v = rand(3, 6, seed=1), rand(3, 6, seed=2)
    advantages, returns = compute_gae(r, v, gamma=1.0, lam=1.0)
    reward_to_go = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]
    np.testing.assert_allclose(advantages, reward_to_go - v, rtol=1e-12)
    np.testing.assert_allclose(returns, reward_to_go, rtol=1e-12)


@pytest.mark.task("rlhf.compute_gae")
def test_gae_by_hand_on_two_response_tokens_between_a_prompt_and_a_pad():
    # the response is r = (1, 2), V = (0.5, 0.25), γ = 0.9, λ = 0.8; nothing past its end:
    # δ₂ = 2 − 0.25 = 1.75 = A₂;  δ₁ = 1 + 0.9·0.25 − 0.5 = 0.725, A₁ = 0.725 + 0.9·0.8·1.75 = 1.985
    r, v, mask = np.array([[9.0, 1.0, 2.0, 7.0]]), np.array([[3.0, 0.5, 0.25, 5.0]]), np.array([[0, 1, 1, 0]])
    advantages, returns = compute_gae(r, v, mask, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(advantages, [[0.0, 1.985, 1.75, 0.0]], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(returns, [[0.0, 1.985 + 0.5, 1.75 + 0.25, 0.0]], rtol=1e-12, atol=1e-15)


@pytest.mark.task("rlhf.compute_gae")
def test_gae_skips_masked_positions_and_bootstraps_nothing_past_the_end(oracles):
    r, v = rand(1, 6, seed=3), rand(1, 6, seed=4)
    mask = np.array([[0, 0, 1, 1, 1, 0]])  # a prompt of two tokens, three response tokens, one pad
    advantages, returns = compute_gae(r, v, mask, gamma=0.9, lam=0.8)
    assert advantages[0, [0, 1, 5]].tolist() == [0, 0, 0] and returns[0, [0, 1, 5]].tolist() == [0, 0, 0]
    np.testing.assert_allclose(advantages[0, 2:5], oracles.gae_by_sums(r[0, 2:5], v[0, 2:5], 0.9, 0.8), rtol=1e-12)


# ============================================================================ PPO
@pytest.mark.task("rlhf.ppo_policy_loss")
def test_ppo_policy_loss_with_ratio_one_is_minus_the_mean_advantage_and_its_gradient():
    lp = rand(2, 5, seed=5)
    adv = rand(2, 5, seed=6)
    mask = np.ones((2, 5))
    mask[1, 3:] = 0
    t = mf.tensor(lp, requires_grad=True)
    loss, stats = ppo_policy_loss(t, lp, adv, mask)
    assert loss.item() == pytest.approx(-(adv * mask).sum() / mask.sum(), rel=1e-12)
    assert stats["clipfrac"] == 0.0 and stats["approx_kl"] == 0.0 and stats["ratio_mean"] == pytest.approx(1.0)
    loss.backward()
    np.testing.assert_allclose(t.grad, -adv * mask / mask.sum(), rtol=1e-12)  # ∂ρ/∂log π = ρ = 1


@pytest.mark.task("rlhf.ppo_policy_loss")
def test_outside_the_clip_range_the_clipped_side_has_zero_gradient():
    old = np.zeros((1, 4))
    lp = np.log(np.array([[1.5, 0.5, 1.5, 0.5]]))  # ρ = 1.5 or 0.5: outside [0.8, 1.2]
    adv = np.array([[1.0, -1.0, -1.0, 1.0]])
    t = mf.tensor(lp, requires_grad=True)
    loss, stats = ppo_policy_loss(t, old, adv, np.ones((1, 4)), cliprange=0.2)
    loss.backward()
    # A > 0 with ρ > 1 + ε, and A < 0 with ρ < 1 − ε: clipped, no gradient; the other two are not clipped
    assert t.grad[0, 0] == 0 and t.grad[0, 1] == 0
    np.testing.assert_allclose(t.grad[0, 2:], -adv[0, 2:] * np.exp(lp[0, 2:]) / 4)
    assert stats["clipfrac"] == 0.5
    expected = np.maximum(-adv * np.exp(lp), -adv * np.clip(np.exp(lp), 0.8, 1.2)).mean()
    assert loss.item() == pytest.approx(expected)


def test_ppo_losses_gradcheck():
    lp, old, adv = rand(2, 3, seed=7, scale=0.1), rand(2, 3, seed=8, scale=0.1), rand(2, 3, seed=9)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert mf.gradcheck(lambda x: ppo_policy_loss(x, old, adv, mask, cliprange=0.3)[0],
                        (mf.tensor(lp, requires_grad=True),))
    v, v_old, ret = rand(2, 3, seed=10), rand(2, 3, seed=11), rand(2, 3, seed=12)
    assert mf.gradcheck(lambda x: ppo_value_loss(x, v_old, ret, mask, cliprange_value=0.5), (mf.tensor(v, requires_grad=True),))


def test_value_clipfrac_counts_where_the_clipped_term_wins_as_trl_not_where_v_left_the_band():
    from minift.rlhf import value_clipfrac

    # V left V_old ± 0.2 in both, but only in the second is the clipped value the farther from the return
    assert value_clipfrac([[0.5]], [[0.0]], [[0.3]], np.ones((1, 1))) == 0.0  # (0.2 − 0.3)² < (0.5 − 0.3)²
    assert value_clipfrac([[0.5]], [[0.0]], [[0.6]], np.ones((1, 1))) == 1.0  # (0.2 − 0.6)² > (0.5 − 0.6)²
    # where the clipped term wins, the loss has no gradient in V (clip is flat there): the autograd engine agrees
    v, v_old, ret = rand(4, 6, seed=20), rand(4, 6, seed=21), rand(4, 6, seed=22)
    mask = np.ones((4, 6))
    mask[1, 4:] = 0
    x = mf.tensor(v, requires_grad=True)
    ppo_value_loss(x, v_old, ret, mask, cliprange_value=0.3).backward()
    no_gradient = (mf.backend.to_numpy(x.grad) == 0) & (mask == 1)
    assert 0 < no_gradient.sum() < mask.sum()
    assert value_clipfrac(v, v_old, ret, mask, 0.3) == pytest.approx(no_gradient.sum() / mask.sum(), rel=1e-12)


def test_ppo_value_loss_is_half_the_masked_mean_of_the_larger_squared_error():
    v, v_old, ret = rand(3, 4, seed=13), rand(3, 4, seed=14), rand(3, 4, seed=15)
    mask = (rand(3, 4, seed=16) > -0.5).astype(float)
    clipped = v_old + np.clip(v - v_old, -0.2, 0.2)
    expected = 0.5 * (np.maximum((v - ret) ** 2, (clipped - ret) ** 2) * mask).sum() / mask.sum()
    assert ppo_value_loss(v, v_old, ret, mask).item() == pytest.approx(expected, rel=1e-12)


# ============================================================================ KL
@pytest.mark.task("rlhf.kl_penalty")
def test_kl_estimators_average_to_the_kl_and_k3_is_never_negative():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))  # π and π_ref over 6 tokens
    lp, lq = np.log(p), np.log(q)
    kl = float((p * (lp - lq)).sum())
    k1 = kl_penalty(lp, lq, "k1").numpy()
    k3 = kl_penalty(lp, lq, "k3").numpy()
    assert (p * k1).sum() == pytest.approx(kl, rel=1e-12)  # the expectation under y ~ π, exactly
    assert (p * k3).sum() == pytest.approx(kl, rel=1e-12)
    assert (k3 >= 0).all() and (k1 < 0).any()  # k3 pointwise ≥ 0; k1 only on average
    np.testing.assert_allclose(kl_penalty(lp, lq, "k2").numpy(), 0.5 * (lp - lq) ** 2)
    assert mf.gradcheck(lambda x: kl_penalty(x, lq, "k3"), (mf.tensor(lp, requires_grad=True),))


# ============================================================================ DPO and Bradley–Terry
@pytest.mark.task("rlhf.dpo_loss")
def test_dpo_at_the_reference_is_log_2_and_each_loss_type_matches_its_formula():
    pc, pr, rc, rr = (rand(5, seed=s) for s in (20, 21, 22, 23))
    losses, chosen, rejected = dpo_loss(rc, rr, rc, rr, beta=0.1)
    np.testing.assert_allclose(losses.numpy(), math.log(2), rtol=1e-12)
    assert (chosen == 0).all() and (rejected == 0).all()
    h = (pc - rc) - (pr - rr)
    beta, ls = 0.3, 0.1
    expected = {"sigmoid": -(1 - ls) * np.log(sigmoid(beta * h)) - ls * np.log(sigmoid(-beta * h)),
                "hinge": np.maximum(0, 1 - beta * h), "ipo": (h - 1 / (2 * beta)) ** 2}
    for loss_type, want in expected.items():
        losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type,
                                            label_smoothing=ls if loss_type == "sigmoid" else 0.0)
        np.testing.assert_allclose(losses.numpy(), want, rtol=1e-10, err_msg=loss_type)
    np.testing.assert_allclose(chosen, beta * (pc - rc))
    np.testing.assert_allclose(rejected, beta * (pr - rr))


@pytest.mark.task("rlhf.dpo_loss")
@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_dpo_gradchecks_and_raises_the_chosen_log_prob(loss_type):
    pc, pr, rc, rr = (rand(4, seed=s, scale=0.5) for s in (30, 31, 32, 33))
    assert mf.gradcheck(lambda a, b: dpo_loss(a, b, rc, rr, beta=0.5, loss_type=loss_type)[0].mean(),
                        (mf.tensor(pc, requires_grad=True), mf.tensor(pr, requires_grad=True)))
    if loss_type != "ipo":  # descending the loss raises log π(chosen) and lowers log π(rejected)
        a, b = mf.tensor(pc, requires_grad=True), mf.tensor(pr, requires_grad=True)
        dpo_loss(a, b, rc, rr, beta=0.5, loss_type=loss_type)[0].mean().backward()
        assert (a.grad <= 0).all() and (b.grad >= 0).all()


@pytest.mark.task("rlhf.dpo_loss")
@pytest.mark.parametrize("loss_type, label_smoothing", [("sigmoid", 0.0), ("sigmoid", 0.2), ("hinge", 0.0), ("ipo", 0.0)])
def test_the_dpo_trace_gives_each_pairs_loss_rewards_and_the_gradient_autograd_computes(loss_type, label_smoothing):
    pc, pr, rc, rr = rand(6, seed=1, scale=3), rand(6, seed=2, scale=3), rand(6, seed=3, scale=3), rand(6, seed=4, scale=3)
    chosen, rejected = mf.tensor(pc, requires_grad=True), mf.tensor(pr, requires_grad=True)
    losses, cr, rjr, trace = dpo_loss(chosen, rejected, rc, rr, beta=0.5, loss_type=loss_type,
                                      label_smoothing=label_smoothing, trace=True)
    losses.sum().backward()
    assert len(trace) == 6 and trace[0]["policy_chosen"] == pc[0] and trace[5]["ref_rejected"] == rr[5]
    assert np.allclose(trace.column("h"), (pc - rc) - (pr - rr))
    assert np.allclose(trace.column("loss"), losses.data) and np.isclose(trace.column("loss").mean(), losses.data.mean())
    assert np.allclose(trace.column("reward_chosen"), cr) and np.allclose(trace.column("reward_rejected"), rjr)
    assert np.allclose(trace.column("dloss/dlogp_chosen"), chosen.grad)
    assert np.allclose(chosen.grad, -rejected.grad)
    assert "dloss/dlogp_chosen" in str(trace).splitlines()[0] and len(str(trace).splitlines()) == 7


@pytest.mark.task("rlhf.dpo_loss")
@pytest.mark.parametrize("loss_type, label_smoothing, optimum", [
    ("sigmoid", 0.1, lambda beta: math.log(0.9 / 0.1) / beta),  # σ(βh) = 1 − ls: h* = ln((1 − ls)/ls)/β
    ("ipo", 0.0, lambda beta: 1 / (2 * beta)),  # (h − 1/(2β))² is 0 at h* = 1/(2β)
])
def test_a_larger_beta_keeps_the_policy_closer_to_the_reference(loss_type, label_smoothing, optimum):
    """β is the strength of the pull back to the reference: the loss is lowest where the policy's preference
    beyond the reference's, h = (π_c − ref_c) − (π_r − ref_r), is h*(β) ∝ 1/β. Checked twice: the gradient is 0
    at the closed form, and gradient descent from the reference ends there, with |h| smaller for every larger β."""
    ref_c, ref_r = np.array([-4.0]), np.array([-5.0])
    ends = []
    for beta in (0.25, 1.0, 4.0):
        h_star = optimum(beta)
        a, b = mf.tensor(ref_c + h_star / 2, requires_grad=True), mf.tensor(ref_r - h_star / 2, requires_grad=True)
        dpo_loss(a, b, ref_c, ref_r, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing)[0].sum().backward()
        assert abs(a.grad[0]) < 1e-9 and abs(b.grad[0]) < 1e-9, beta  # stationary, and the loss is convex in h
        a, b = mf.tensor(ref_c.copy(), requires_grad=True), mf.tensor(ref_r.copy(), requires_grad=True)
        # plain gradient descent (SGD: no coursework task of its own; Adam's step is one), its rate set by the
        # curvature: 2β² · σ'(βh) ≤ β²/2 in (a, b) for the sigmoid loss, 4 for IPO's square
        opt = mf.optim.SGD([a, b], lr=1 / beta**2 if loss_type == "sigmoid" else 0.1)
        for _ in range(600):
            opt.zero_grad()
            dpo_loss(a, b, ref_c, ref_r, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing)[0].sum().backward()
            opt.step()
        h = float((a.data - ref_c)[0] - (b.data - ref_r)[0])
        assert h == pytest.approx(h_star, rel=1e-3), (beta, h, h_star)
        ends.append(h)
    assert ends[0] > ends[1] > ends[2] > 0


@pytest.mark.task("rlhf.bradley_terry_loss")
def test_bradley_terry_loss_and_gradient_by_hand():
    rc, rr, margin = rand(6, seed=40), rand(6, seed=41), np.abs(rand(6, seed=42))
    a = mf.tensor(rc, requires_grad=True)
    loss = bradley_terry_loss(a, rr, margin)
    d = rc - rr - margin
    assert loss.item() == pytest.approx(np.mean(-np.log(sigmoid(d))), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(a.grad, -sigmoid(-d) / 6, rtol=1e-12)  # ∂/∂r_c of −log σ(d)
    assert bradley_terry_loss(np.zeros(3), np.zeros(3)).item() == pytest.approx(math.log(2))


def test_integer_inputs_are_read_as_floats_not_truncated():
    """Integer rewards or values (0/1, a list of ints) must not turn the other inputs into integers."""
    mask = [[1, 1]]
    as_floats = ppo_value_loss([[0.0, 1.0]], [[0.5, 0.5]], [[0.3, 0.3]], mask).item()
    assert ppo_value_loss([[0, 1]], [[0.5, 0.5]], [[0.3, 0.3]], mask).item() == pytest.approx(as_floats)
    lp, old, adv = [[0, -1]], [[-0.5, -0.5]], [[1, 1]]
    assert ppo_policy_loss(lp, old, adv, mask)[0].item() == pytest.approx(
        ppo_policy_loss(np.array(lp, dtype=float), old, adv, mask)[0].item())
    np.testing.assert_allclose(kl_penalty([[0, -1]], [[-0.5, -0.5]], "k3").numpy(),
                               kl_penalty([[0.0, -1.0]], [[-0.5, -0.5]], "k3").numpy())
    ref = ([-1.5, -2.5], [-2.9, -3.1])
    np.testing.assert_allclose(dpo_loss([-1, -2], [-3, -3], *ref)[0].numpy(),
                               dpo_loss([-1.0, -2.0], [-3.0, -3.0], *ref)[0].numpy())
    assert bradley_terry_loss(mf.tensor([1, 2]), [0.5, 3]).item() == pytest.approx(
        bradley_terry_loss([1.0, 2.0], [0.5, 3.0]).item())


# ============================================================================ GRPO
@pytest.mark.task("rlhf.grpo_advantages")
@given(groups=st.integers(1, 4), G=st.integers(2, 6), seed=st.integers(0, 99))
def test_grpo_advantages_are_centered_per_group_and_scaled_by_the_unbiased_std(groups, G, seed):
    r = rand(groups * G, seed=seed)
    a = grpo_advantages(r, G)
    per_group = r.reshape(groups, G)
    expected = (per_group - per_group.mean(1, keepdims=True)) / (per_group.std(1, ddof=1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(a, expected.reshape(-1), rtol=1e-10)
    np.testing.assert_allclose(a.reshape(groups, G).sum(1), 0, atol=1e-9)
    np.testing.assert_allclose(grpo_advantages(r, G, scale_rewards=False).reshape(groups, G),
                               per_group - per_group.mean(1, keepdims=True), atol=1e-12)


@pytest.mark.task("rlhf.grpo_advantages")
def test_the_std_switch_divides_by_g_minus_1_or_by_g():
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 2.0])
    for groups in (rewards.reshape(2, 4),):
        centred = groups - groups.mean(1, keepdims=True)
        unbiased = np.sqrt((centred**2).sum(1, keepdims=True) / 3)
        biased = np.sqrt((centred**2).sum(1, keepdims=True) / 4)
        np.testing.assert_allclose(grpo_advantages(rewards, 4), (centred / (unbiased + 1e-4)).reshape(-1), rtol=1e-12)
        np.testing.assert_allclose(grpo_advantages(rewards, 4, std_unbiased=False),
                                   (centred / (biased + 1e-4)).reshape(-1), rtol=1e-12)
    ratio = grpo_advantages(rewards, 4, std_unbiased=False)[0] / grpo_advantages(rewards, 4)[0]
    assert ratio == pytest.approx(np.sqrt(4 / 3), rel=1e-3)


@pytest.mark.task("rlhf.grpo_advantages")
def test_a_group_with_equal_rewards_has_zero_advantage():
    assert (grpo_advantages([1.0, 1.0, 1.0, 0.0, 1.0, 0.0], 3)[:3] == 0).all()


@pytest.mark.task("rlhf.grpo_advantages")
def test_grpo_scale_rewards_takes_trls_values():
    """TRL's scale_rewards is "group" (= True), "batch" or "none" (= False): "none" must not scale."""
    r = rand(12, seed=60)
    per_group = r.reshape(3, 4)
    centered = (per_group - per_group.mean(1, keepdims=True)).reshape(-1)
    np.testing.assert_allclose(grpo_advantages(r, 4, scale_rewards="none"), centered, atol=1e-12)
    np.testing.assert_allclose(grpo_advantages(r, 4, scale_rewards="group"), grpo_advantages(r, 4, True))
    np.testing.assert_allclose(grpo_advantages(r, 4, scale_rewards="batch"), centered / (r.std(ddof=1) + 1e-4))
    np.testing.assert_allclose(grpo_advantages(r, np.int64(4)), grpo_advantages(r, 4))
    with pytest.raises(ValueError, match="scale_rewards must be"):
        grpo_advantages(r, 4, scale_rewards="std")
    with pytest.raises(ValueError, match=">= 2"):
        grpo_advantages(r[:2], True)


# ============================================================================ helpers and errors
def test_whiten_and_masked_mean():
    x = rand(2, 5, seed=50)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    w = whiten(x, mask)
    kept = w[mask == 1]
    assert kept.mean() == pytest.approx(0, abs=1e-12) and kept.std(ddof=1) == pytest.approx(1, rel=1e-6)
    assert (w[mask == 0] == 0).all()
    assert masked_mean(x, mask) == pytest.approx(x[mask == 1].mean())


def test_masked_mean_and_whiten_want_a_mask_of_the_values_shape():
    x = rand(2, 3, seed=51)
    for mask in (np.ones((2, 1)), np.ones((1, 3)), np.ones(6)):  # would broadcast: Σ mask no longer counts them
        with pytest.raises(ValueError, match="shapes differ"):
            masked_mean(x, mask)
        with pytest.raises(ValueError, match="shapes differ"):
            masked_mean(mf.tensor(x), mask)
        with pytest.raises(ValueError, match="shapes differ"):
            whiten(x, mask)


def test_statistics_of_host_arrays_never_touch_the_device_arrays(monkeypatch):
    """masked_mean of a NumPy array (PPO's clipfrac, approx_kl) is computed with NumPy: on the CuPy backend a
    NumPy array times a mask made with ``xp`` is a TypeError."""
    import minift.rlhf.losses as rlhf

    class NoDevice:
        def __getattr__(self, name):
            raise AssertionError(f"xp.{name} used for host values")

    x, mask = rand(2, 3, seed=52), np.array([[1, 1, 0], [1, 0, 1]])
    monkeypatch.setattr(rlhf, "xp", NoDevice())
    assert masked_mean(x, mask) == pytest.approx(x[mask == 1].mean())
    assert masked_mean(x > 0, mask) == pytest.approx((x > 0)[mask == 1].mean())


@pytest.mark.cupy
@pytest.mark.skipif(not mf.backend.cupy_available(), reason="CuPy with a GPU is not available on this machine")
def test_ppo_policy_loss_and_its_statistics_run_on_cupy():
    lp, old, adv = rand(2, 3, seed=53, scale=0.3), rand(2, 3, seed=54, scale=0.3), rand(2, 3, seed=55)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    want_loss, want_stats = ppo_policy_loss(mf.tensor(lp), old, adv, mask)
    mf.set_backend("cupy")
    try:
        loss, stats = ppo_policy_loss(mf.tensor(mf.backend.asarray(lp)), old, adv, mask)
    finally:
        mf.set_backend("numpy")
    assert loss.item() == pytest.approx(want_loss.item()) and stats == pytest.approx(want_stats)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="shapes differ"):
        compute_gae(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="all zeros"):
        ppo_policy_loss(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="kind must be"):
        kl_penalty(np.zeros(2), np.zeros(2), "k4")
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*(np.zeros(2),) * 4, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*(np.zeros(2),) * 4, beta=0)
    with pytest.raises(ValueError, match="groups of num_generations"):
        grpo_advantages(np.zeros(5), 2)
    with pytest.raises(ValueError, match=">= 2"):
        grpo_advantages(np.zeros(4), 1)


def test_bad_options_and_inputs_are_clear_errors():
    z = np.zeros((1, 3))
    for bad in (-0.2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cliprange must be a finite number >= 0"):
            ppo_policy_loss(z, z, z, np.ones((1, 3)), cliprange=bad)
        with pytest.raises(ValueError, match="cliprange_value must be a finite number >= 0"):
            ppo_value_loss(z, z, z, np.ones((1, 3)), cliprange_value=bad)
    for bad in (dict(gamma=1.5), dict(lam=-0.1), dict(gamma=float("nan"))):
        with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
            compute_gae(z, z, **bad)
    for loss_type in ("hinge", "ipo"):  # a silently ignored option: the loss would not be the one asked for
        with pytest.raises(ValueError, match="sigmoid loss only"):
            dpo_loss(*(np.zeros(2),) * 4, loss_type=loss_type, label_smoothing=0.1)
    with pytest.raises(ValueError, match="no pairs"):
        bradley_terry_loss([], [])
    from minift.rlhf import token_logprobs

    logits = np.zeros((2, 4, 5))
    for ids in (np.zeros((2, 3), dtype=int), np.zeros((3, 4), dtype=int), np.zeros(4, dtype=int)):
        with pytest.raises(ValueError, match=r"logits \(B, T, V\) and input_ids \(B, T\)"):
            token_logprobs(logits, ids)
    with pytest.raises(TypeError, match="integer token ids"):
        token_logprobs(logits, np.full((2, 4), 1.5))
    np.testing.assert_allclose(token_logprobs(logits, np.ones((2, 4))).numpy(), np.log(0.2))  # 1.0 is an id


# ============================================================================ sequence log-probs
def test_sequence_logprobs_sum_the_completion_tokens_given_their_prefix():
    from minift.rlhf import sequence_logprobs, token_logprobs

    mf.seed(0)
    cfg = mf.models.TransformerConfig(family="llama", vocab_size=17, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)
    model = mf.models.TransformerForCausalLM(cfg)
    ids = np.random.default_rng(0).integers(0, 17, (2, 7))
    attention = np.ones((2, 7), dtype=np.int64)
    attention[1, 5:] = 0  # the second sequence is padded after 5 tokens
    completion = np.zeros((2, 7), dtype=np.int64)
    completion[0, 3:] = 1  # a prompt of 3 tokens, then 4 completion tokens
    completion[1, 2:5] = 1
    total = sequence_logprobs(model, ids, attention, completion)
    expected = []
    for b in range(2):  # each completion token scored by a forward pass over its prefix alone
        s = 0.0
        for t in np.flatnonzero(completion[b]):
            logits = model(ids[b:b + 1, :t]).logits.numpy()[0, -1]
            s += logits[ids[b, t]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        expected.append(s)
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(sequence_logprobs(model, ids, attention, completion, average=True).numpy(),
                               np.array(expected) / completion.sum(1), rtol=1e-10)
    logits = mf.tensor(np.random.default_rng(1).standard_normal((2, 4, 5)), requires_grad=True)
    assert mf.gradcheck(lambda z: token_logprobs(z, ids[:, :4] % 5), (logits,))
    with pytest.raises(ValueError, match="no completion token"):
        sequence_logprobs(model, ids, attention, np.zeros((2, 7)))
    for bad in (np.ones((1, 7)), np.ones((2, 6))):  # (1, 7) broadcast over the batch; (2, 6) a NumPy error
        with pytest.raises(ValueError, match="shapes differ"):
            sequence_logprobs(model, ids, attention, bad)


# ============================================================================ DPO training
@pytest.fixture(scope="module")
def smol_tokenizer():
    return mf.tokenization.from_pretrained("smollm2")


@pytest.fixture(scope="module")
def tiny_tokenizer():  # tiny-gpt's 4096-token BPE: fast, no chat template (chat=False)
    from pathlib import Path

    return mf.tokenization.from_pretrained(str(Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"))


def tiny_policy(vocab):
    mf.set_default_dtype("float64")
    mf.seed(0)
    cfg = mf.models.TransformerConfig(family="llama", vocab_size=vocab, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return mf.models.TransformerForCausalLM(cfg)


PAIRS = [{"prompt": "Is it good?", "chosen": " yes", "rejected": " no"},
         {"prompt": "Is it bad?", "chosen": " no", "rejected": " yes"}]


def test_dpo_starts_at_log_2_with_the_adapter_as_the_only_difference_and_learns(tiny_tokenizer, tmp_path):
    from minift.peft import LoraConfig, get_peft_model
    from minift.rlhf import DataCollatorForPreference, DPOMetricsCallback, DPOModel, sequence_logprobs

    tok = tiny_tokenizer
    policy = get_peft_model(tiny_policy(tok.vocab_size), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]))
    dpo = DPOModel(policy, beta=0.5)
    collate = DataCollatorForPreference(tok, chat=False)
    batch = collate(PAIRS)
    assert batch["input_ids"].shape[0] == 4 and (batch["completion_mask"].sum(1) > 0).all()
    loss = dpo(**batch).loss
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)  # B = 0 at the start: the policy is the reference
    with policy.disable_adapter():  # the reference is the base model
        base = sequence_logprobs(policy, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).numpy()
    np.testing.assert_allclose(dpo.reference_logps(**batch).numpy(), base)
    trainable = {n for n, p in dpo.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)

    args = mf.train.TrainingArguments(output_dir=str(tmp_path / "dpo"), max_steps=30, learning_rate=0.1,
                                      per_device_train_batch_size=2, logging_steps=10, save_strategy="no",
                                      remove_unused_columns=False, disable_tqdm=True, plot=False, seed=0)
    trainer = mf.train.Trainer(dpo, args, train_dataset=PAIRS, data_collator=collate,
                               callbacks=[DPOMetricsCallback(dpo)])
    trainer.train()
    logs = [r for r in trainer.state.log_history if "loss" in r]
    assert logs[-1]["loss"] < logs[0]["loss"] < math.log(2) and logs[-1]["rewards/accuracies"] == 1.0
    assert logs[-1]["rewards/margins"] > logs[0]["rewards/margins"] > 0
    assert logs[-1]["rewards/rejected"] < 0  # (the chosen reward may fall too, only less: DPO moves the margin)


def test_ipo_in_the_dpo_model_averages_the_log_probs_over_each_completion_as_trl(smol_tokenizer):
    """TRL divides each sequence's log-prob by its completion length before IPO's (h − 1/(2β))², so that the
    target 1/(2β) is per token; DPO's sigmoid loss sums. Checked against log-probs gathered by hand (NumPy)."""
    from minift.rlhf import DataCollatorForPreference, DPOModel

    tok = smol_tokenizer
    policy, reference = tiny_policy(tok.vocab_size), tiny_policy(tok.vocab_size)
    mf.seed(1)
    for p in policy.parameters():  # the policy moved away from the reference
        p.data += 0.3 * mf.backend.rng().standard_normal(p.shape)
    batch = DataCollatorForPreference(tok)(PAIRS + [{"prompt": "Well?", "chosen": " a fine film", "rejected": " no"}])

    def by_hand(model, average):  # (2B,) log π(completion | prompt), summed or averaged over its tokens
        ids = np.asarray(batch["input_ids"])
        z = model(ids, attention_mask=batch["attention_mask"]).logits.numpy()[:, :-1]     # (2B, T−1, V)
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        taken = np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]                 # (2B, T−1)
        mask = np.asarray(batch["completion_mask"])[:, 1:]
        return (taken * mask).sum(1) / (mask.sum(1) if average else 1)

    beta, b = 0.1, 3
    for loss_type, average in (("ipo", True), ("sigmoid", False)):
        pi, ref = by_hand(policy, average), by_hand(reference, average)
        h = (pi[:b] - ref[:b]) - (pi[b:] - ref[b:])
        want = ((h - 1 / (2 * beta)) ** 2 if loss_type == "ipo" else np.logaddexp(0, -beta * h)).mean()
        got = DPOModel(policy, ref_model=reference, beta=beta, loss_type=loss_type)(**batch).loss.item()
        assert got == pytest.approx(want, rel=1e-10), loss_type
    lengths = np.asarray(batch["completion_mask"])[:, 1:].sum(1)
    assert len(set(lengths.tolist())) > 1  # completions of different lengths: summing would give another h


def test_the_logged_dpo_metrics_of_an_accumulated_step_cover_every_micro_batch(smol_tokenizer, tmp_path):
    """Step 1 of two micro-batches of one pair logs what one batch of both pairs logs (the parameters are the same
    for both micro-batches): every micro-batch counts, as TRL's stored metrics, not only the last one."""
    from minift.rlhf import DataCollatorForPreference, DPOMetricsCallback, DPOModel

    logged = {}
    for accumulation in (1, 2):
        policy, reference = tiny_policy(smol_tokenizer.vocab_size), tiny_policy(smol_tokenizer.vocab_size)
        mf.seed(1)
        for p in policy.parameters():  # away from the reference, so that the two pairs' rewards differ
            p.data += 0.3 * mf.backend.rng().standard_normal(p.shape)
        dpo = DPOModel(policy, ref_model=reference, beta=0.1)
        args = mf.train.TrainingArguments(output_dir=str(tmp_path / str(accumulation)), max_steps=1, learning_rate=1e-3,
                                          per_device_train_batch_size=2 // accumulation,
                                          gradient_accumulation_steps=accumulation, logging_steps=1, save_strategy="no",
                                          remove_unused_columns=False, disable_tqdm=True, plot=False, seed=0)
        trainer = mf.train.Trainer(dpo, args, train_dataset=PAIRS, data_collator=DataCollatorForPreference(smol_tokenizer),
                                   callbacks=[DPOMetricsCallback(dpo)])
        trainer.train()
        logged[accumulation] = next(r for r in trainer.state.log_history if "rewards/chosen" in r)
        assert dpo.step_metrics == []  # taken by the callback at the step's end
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert logged[2][key] == pytest.approx(logged[1][key], rel=1e-9, abs=1e-12), key
    assert logged[1]["rewards/chosen"] != 0


def test_dpo_with_an_explicit_reference_keeps_it_out_of_the_parameters(smol_tokenizer):
    from minift.rlhf import DataCollatorForPreference, DPOModel

    tok = smol_tokenizer  # the chat template: prompt and answer as a user and an assistant turn
    policy, reference = tiny_policy(tok.vocab_size), tiny_policy(tok.vocab_size)
    dpo = DPOModel(policy, ref_model=reference, beta=0.1, loss_type="ipo")
    assert len(list(dpo.parameters())) == len(list(policy.parameters()))
    batch = DataCollatorForPreference(tok)(PAIRS)
    expected = (0 - 1 / (2 * 0.1)) ** 2  # h = 0: the two models are built from the same seed
    assert dpo(**batch).loss.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="needs a reference"):
        DPOModel(tiny_policy(tok.vocab_size))
    with pytest.raises(ValueError, match="loss_type"):
        DPOModel(policy, ref_model=reference, loss_type="kto")
    with pytest.raises(KeyError, match="lacks"):
        DataCollatorForPreference(tok)([{"prompt": "x", "chosen": "y"}])
