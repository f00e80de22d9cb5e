"""PPO (``minift.rlhf.ppo``): the per-token rewards by hand and as a property, the adaptive β by hand, the value
head's gradient against finite differences, rollouts (recorded log-probs = a fresh forward = what the sampler saw;
the mask after EOS; π_ref = π at step 0, so KL = 0), the first PPO epoch's ratio of exactly 1, the trace's
columns, a short run on tiny-gpt that raises the score, and clear errors. Rollout tests use a tiny random gpt2
model with tiny-gpt's tokenizer; the run uses tiny-gpt itself with a word-counting reward and given prompts."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift.peft import LoraConfig, get_peft_model
from minift.rlhf.losses import token_logprobs
from minift.rlhf.ppo import (AdaptiveKLController, FixedKLController, PolicyWithValueHead, PPOConfig, PPOTrainer,
                             encode_prompts, ppo_rewards, response_mask, rollout_trace, run_ppo, word_count_reward)

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT = ROOT / "checkpoints" / "tiny-gpt"
PROMPTS = ["the film was", "a story about", "this movie is", "I thought the", "one of the", "it is a",
           "the acting was", "a funny and"]


# ============================================================================ ppo_rewards
@pytest.mark.task("rlhf.ppo_rewards")
def test_ppo_rewards_by_hand():
    logprobs = np.array([[-1.0, -2.0, -0.5, -3.0], [-0.2, -1.5, -1.0, -2.0]])
    ref = np.array([[-1.5, -1.0, -0.5, -1.0], [-0.4, -1.0, -1.0, -9.0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])  # row 0: 3 real tokens; row 1: 2 (then padding after EOS)
    scores = np.array([2.0, -1.0])
    rewards, kl = ppo_rewards(scores, logprobs, ref, mask, kl_coef=0.1)
    # k1 = log π − log π_ref on the mask, 0 on the padding (row 1's −2 − (−9) = 7 is not counted)
    np.testing.assert_allclose(kl, [[0.5, -1.0, 0.0, 0.0], [0.2, -0.5, 0.0, 0.0]], atol=1e-12)
    # −0.1·kl everywhere, + the score on the last real token (index 2 and index 1), nothing on the padding
    np.testing.assert_allclose(rewards, [[-0.05, 0.1, 2.0, 0.0], [-0.02, 0.05 - 1.0, 0.0, 0.0]], atol=1e-12)


@pytest.mark.task("rlhf.ppo_rewards")
def test_ppo_rewards_with_k3_and_a_row_without_padding():
    logprobs, ref = np.array([[-1.0, -2.0]]), np.array([[-2.0, -2.0]])
    rewards, kl = ppo_rewards(np.array([0.5]), logprobs, ref, np.ones((1, 2)), kl_coef=0.2, kl_estimator="k3")
    k3 = np.exp(-1.0) - 1 + 1.0  # e^{log π_ref − log π} − 1 − (log π_ref − log π) with log ratio −1
    np.testing.assert_allclose(kl, [[k3, 0.0]], atol=1e-12)
    np.testing.assert_allclose(rewards, [[-0.2 * k3, 0.5]], atol=1e-12)  # all real: the score on the very last


@pytest.mark.task("rlhf.ppo_rewards")
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 7), st.floats(0.0, 2.0), st.integers(0, 10**6))
def test_ppo_rewards_sum_to_the_score_minus_beta_kl(batch, length, beta, seed):
    rng = np.random.default_rng(seed)
    logprobs, ref = -rng.exponential(size=(batch, length)), -rng.exponential(size=(batch, length))
    mask = (rng.random((batch, length)) < 0.6).astype(float)
    mask[np.arange(batch), rng.integers(0, length, batch)] = 1  # at least one real token per row
    scores = rng.normal(size=batch) * 3
    rewards, kl = ppo_rewards(scores, logprobs, ref, mask, kl_coef=beta)
    np.testing.assert_allclose(kl, (logprobs - ref) * mask, atol=1e-12)
    np.testing.assert_allclose(rewards.sum(axis=1), scores - beta * ((logprobs - ref) * mask).sum(axis=1), atol=1e-9)
    assert (rewards[mask == 0] == 0).all()  # nothing on a padded position
    last = [np.flatnonzero(row)[-1] for row in mask]  # each row's last real token
    bonus = rewards + beta * kl  # the score alone: on each row's last real token, nowhere else
    expected = np.zeros_like(bonus)
    expected[np.arange(batch), last] = scores
    np.testing.assert_allclose(bonus, expected, atol=1e-9)


def test_ppo_rewards_refuses_bad_inputs():
    lp = np.zeros((2, 3))
    with pytest.raises(ValueError, match="one number per sequence"):
        ppo_rewards(np.zeros(3), lp, lp, np.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match="no response token"):
        ppo_rewards(np.zeros(2), lp, lp, np.array([[1, 1, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        ppo_rewards(np.zeros(2), lp, lp, np.ones((2, 3)), -0.1)
    with pytest.raises(ValueError, match="one shape"):
        ppo_rewards(np.zeros(2), lp, np.zeros((2, 4)), np.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match="kl_estimator"):
        ppo_rewards(np.zeros(2), lp, lp, np.ones((2, 3)), 0.1, kl_estimator="k4")


# ============================================================================ β
def test_the_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=100)
    assert ctl.update(9.0, 10) == pytest.approx(0.2 * (1 + 0.2 * 10 / 100))  # 9/6 − 1 = 0.5, clipped to 0.2
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=100)
    assert ctl.update(5.4, 10) == pytest.approx(0.2 * (1 - 0.1 * 10 / 100))  # 5.4/6 − 1 = −0.1, not clipped
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=100)
    assert ctl.update(0.0, 50) == pytest.approx(0.2 * (1 - 0.2 * 50 / 100))  # −1 clipped to −0.2
    assert FixedKLController(0.05).update(100.0, 10) == 0.05
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(0.1, 6.0, 0)


# ============================================================================ models for the rollout tests
def tiny_policy(seed=0, dtype="float32"):
    tok = mf.tokenization.from_pretrained(str(TINY_GPT))
    mf.seed(seed)
    cfg = mf.models.TransformerConfig(family="gpt2", vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return mf.models.TransformerForCausalLM(cfg), tok


def lora_trainer(seed=0, reward=None, **kw):
    lm, tok = tiny_policy(seed)
    lm = get_peft_model(lm, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    options = dict(reward="word:the", batch_size=8, response_length=10, out="unused", learning_rate=1e-2)
    options.update(kw)
    return PPOTrainer(PPOConfig(**options), PolicyWithValueHead(lm), tok, reward or word_count_reward("the")), tok


def test_the_value_head_gradient_matches_finite_differences():
    mf.set_default_dtype("float64")
    try:
        lm, _ = tiny_policy(1)
        model = PolicyWithValueHead(lm)
        ids = np.array([[5, 70, 300, 9, 12], [400, 8, 33, 1, 1]])
        mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        target = np.random.default_rng(0).normal(size=(2, 5))

        def loss():
            _, values = model(ids, attention_mask=mask)
            return (((values - target) ** 2) * mask).sum()

        model.zero_grad()
        loss().backward()
        for p, index in ((model.v_head.weight, (0, 3)), (model.v_head.bias, (0,)),
                         (lm.model.layers[0].mlp.up_proj.weight, (2, 5))):
            old = float(p.data[index])
            p.data[index] = old + 1e-6
            up = float(loss().data)
            p.data[index] = old - 1e-6
            down = float(loss().data)
            p.data[index] = old
            assert float(p.grad[index]) == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-8)
    finally:
        mf.set_default_dtype("float32")


# ============================================================================ rollouts
def test_rollout_logprobs_equal_a_fresh_forward_and_the_reference_equals_the_policy_at_step_0():
    trainer, tok = lora_trainer()
    r = trainer.rollout(PROMPTS)
    b, p = r.query.shape
    assert r.response.shape[0] == b == len(PROMPTS) and r.response.shape[1] <= 10
    assert (r.query_mask[:, -1] == 1).all() and (r.query[r.query_mask == 0] == tok.pad_token_id).all()  # left-padded
    ids = np.concatenate([r.query, r.response], axis=1)
    mask = np.concatenate([r.query_mask, np.ones_like(r.response)], axis=1)
    logits = trainer.policy.pretrained_model(ids, attention_mask=mask).logits
    fresh = np.asarray(token_logprobs(logits, ids).data)[:, p - 1:]  # temperature 1
    np.testing.assert_allclose(r.logprobs, fresh * r.mask, atol=1e-5)
    np.testing.assert_allclose(r.sampling_logprobs, r.logprobs, atol=1e-4)  # what the KV-cached sampler saw
    # predict, then run: LoRA's B starts at 0, so the adapter disabled is the same network → KL exactly 0
    np.testing.assert_array_equal(r.ref_logprobs, r.logprobs)
    assert len(r.texts) == b and all(t.startswith(q) for t, q in zip(r.texts, PROMPTS))
    np.testing.assert_array_equal(r.scores, word_count_reward("the")(r.texts))
    # one prompt alone, left padding removed, gives the same log-probs as inside the batch (same sample replayed)
    q = encode_prompts(tok, PROMPTS[:1])[0]
    alone = np.concatenate([q, r.response[:1]], axis=1)
    lp = np.asarray(token_logprobs(trainer.policy.pretrained_model(alone).logits, alone).data)[:, q.shape[1] - 1:]
    np.testing.assert_allclose(lp * r.mask[:1], r.logprobs[:1], atol=1e-5)


def test_the_response_mask_stops_after_the_first_eos():
    np.testing.assert_array_equal(response_mask(np.array([[5, 0, 1, 1], [5, 6, 7, 8], [0, 0, 3, 1]]), 0),
                                  [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])


def test_a_rollout_masks_what_follows_eos():
    trainer, tok = lora_trainer(seed=3, response_length=16)
    lm = trainer.policy.pretrained_model
    # make EOS likely: the final norm's output becomes almost constant and the tied embedding of EOS points along it
    norm = lm.model.norm
    norm.weight.data[...] = 0.01
    norm.bias.data[...] = 1.0
    lm.model.embed.tokens.weight.data[tok.eos_token_id] = 0.45  # logit ≈ 16 · 0.45 = 7.2: P(EOS) ≈ 1/4
    r = trainer.rollout(PROMPTS * 2)
    is_eos = r.response == tok.eos_token_id
    stopped = is_eos.any(axis=1)
    assert stopped.sum() >= 4, "the test needs responses that end early"
    for row, m, e in zip(r.response, r.mask, is_eos):
        if e.any():
            first = int(np.argmax(e))
            assert (m[:first + 1] == 1).all() and (m[first + 1:] == 0).all()  # EOS counts, what follows does not
            assert (row[first + 1:] == tok.pad_token_id).all()
        else:
            assert (m == 1).all()
    assert (r.logprobs[r.mask == 0] == 0).all() and (r.values[r.mask == 0] == 0).all()
    rewards, _ = ppo_rewards(r.scores, r.logprobs, r.ref_logprobs, r.mask, 0.1)
    lengths = r.mask.sum(axis=1).astype(int)
    np.testing.assert_allclose(rewards[np.arange(len(lengths)), lengths - 1], r.scores)  # on EOS itself


def test_the_first_ppo_epoch_has_ratio_exactly_1_and_no_clipping():
    trainer, _ = lora_trainer(num_ppo_epochs=3, num_mini_batches=1)
    r = trainer.rollout(PROMPTS)
    stats = trainer.step(r)
    first = trainer.last_minibatch_stats[0]
    assert first["val/ratio"] == pytest.approx(1.0, abs=1e-6)
    assert first["policy/clipfrac_avg"] == 0.0 and first["policy/approxkl_avg"] < 1e-10
    later = trainer.last_minibatch_stats[-1]
    assert later["policy/approxkl_avg"] > first["policy/approxkl_avg"]  # the updates moved π away from π_old
    assert len(trainer.last_minibatch_stats) == 3 and stats["objective/kl"] == pytest.approx(0.0, abs=1e-12)
    for key in ("objective/kl", "objective/entropy", "objective/scores", "objective/rlhf_reward",
                "objective/non_score_reward", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg",
                "loss/value_avg", "val/ratio", "policy/entropy_avg", "kl_coef"):
        assert np.isfinite(stats[key]), key
    assert stats["objective/scores"] == pytest.approx(r.scores.mean())
    r2 = trainer.rollout(PROMPTS)  # after the update the reference (adapter off) and the policy differ
    assert np.abs(r2.logprobs - r2.ref_logprobs).max() > 1e-4


def test_full_fine_tuning_uses_a_frozen_copy_as_the_reference():
    lm, tok = tiny_policy(2)
    ref, _ = tiny_policy(2)
    trainer = PPOTrainer(PPOConfig(method="full", batch_size=4, response_length=6, out="unused"),
                         PolicyWithValueHead(lm), tok, word_count_reward("the"), ref_model=ref)
    r = trainer.rollout(PROMPTS[:4])
    np.testing.assert_allclose(r.ref_logprobs, r.logprobs, atol=1e-6)
    trainer.step(r)
    assert not any(p.requires_grad for p in ref.parameters())
    with pytest.raises(ValueError, match="needs a reference"):
        PPOTrainer(PPOConfig(method="full", out="unused"), PolicyWithValueHead(tiny_policy(2)[0]), tok,
                   word_count_reward("the"))


def test_the_trace_columns_are_consistent():
    trainer, tok = lora_trainer()
    r = trainer.rollout(PROMPTS)
    r.logprobs = r.logprobs + 0.1 * r.mask  # a policy slightly off its reference, so that the KL column is not 0
    beta = 0.3
    trace = rollout_trace(r, tok, index=2, kl_coef=beta, gamma=1.0, lam=1.0)
    n = int(r.mask[2].sum())
    assert len(trace) == n and trace.names == ["token", "logprob", "ref_logprob", "kl", "reward", "value",
                                               "advantage", "return"]
    kl, reward = trace.column("kl"), trace.column("reward")
    np.testing.assert_allclose(kl, trace.column("logprob") - trace.column("ref_logprob"), atol=1e-12)
    assert reward.sum() == pytest.approx(r.scores[2] - beta * kl.sum())
    np.testing.assert_allclose(trace.column("return"), trace.column("advantage") + trace.column("value"), atol=1e-12)
    togo = np.cumsum(reward[::-1])[::-1]  # γ = λ = 1: A_t = Σ_{s ≥ t} r_s − V_t
    np.testing.assert_allclose(trace.column("advantage"), togo - trace.column("value"), atol=1e-9)
    assert "".join(trace.column("token")) == tok.decode(r.response[2, :n].tolist())
    assert "advantage" in str(trace).splitlines()[0]
    with pytest.raises(ValueError, match="out of range"):
        rollout_trace(r, tok, index=99)
    d = PPOConfig(out="unused")  # left out, β, γ, λ and the KL estimator are PPOConfig's defaults
    default, explicit = rollout_trace(r, tok, index=2), rollout_trace(r, tok, index=2, kl_coef=d.kl_coef,
                                                                      gamma=d.gamma, lam=d.lam, kl_estimator=d.kl_estimator)
    for name in ("reward", "advantage", "return"):
        np.testing.assert_array_equal(default.column(name), explicit.column(name))
    assert not np.allclose(default.column("advantage"), trace.column("advantage"))  # λ = 0.95, β = 0.05 differ


# ============================================================================ a run
def test_a_short_run_on_tiny_gpt_raises_the_score(tmp_path):
    train = [" ".join(p.split()[:2]) + " " + w for p in PROMPTS for w in ("and", "but", "so", "it")]
    cfg = PPOConfig(policy=str(TINY_GPT), reward="word:the", batch_size=16, response_length=12, max_steps=25,
                    learning_rate=3e-3, kl_coef=0.02, logging_steps=5, out=str(tmp_path / "run"))
    results = run_ppo(cfg, reward_fn=word_count_reward("the"), quiet=True, train_prompts=train,
                      eval_prompts=PROMPTS * 4)
    before, after = results["before"], results["after"]
    assert before["kl"] == 0.0  # π = π_ref before training
    assert after["score"] > before["score"] + 0.5, (before, after)
    assert after["kl"] > 0
    out = tmp_path / "run"
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 25 == results["train_steps"] and logs[0]["objective/kl"] == pytest.approx(0.0, abs=1e-9)
    assert {"objective/kl", "objective/entropy", "objective/scores", "policy/approxkl_avg", "policy/clipfrac_avg",
            "loss/policy_avg", "loss/value_avg", "val/ratio"} <= set(logs[0])
    for name in ("scores.png", "kl.png", "losses.png", "results.json"):
        assert (out / name).is_file(), name
    assert (out / "model" / "config.json").is_file()  # gpt2's merged LoRA, saved whole (HF has no q_proj to name)
    saved = json.loads((out / "results.json").read_text())
    assert saved["args"]["kl_coef"] == 0.02 and len(saved["samples_after"]) == 8 and saved["train_seconds"] > 0
    assert saved["machine"] == mf.backend.machine_summary()


# ============================================================================ errors and the command line
@pytest.mark.parametrize("options, message", [
    (dict(method="qlora"), "unknown method"),
    (dict(num_mini_batches=9, batch_size=8), "must divide batch_size"),
    (dict(num_mini_batches=3, batch_size=8), r"must divide batch_size \(8\)"),
    (dict(kl_coef=-0.1), "kl_coef must be"),
    (dict(gamma=1.5), "gamma must be in"),
    (dict(temperature=0), "temperature must be"),
    (dict(response_length=0), "response_length must be"),
    (dict(batch_size=1), "batch_size must be >= 2"),
    (dict(kl_estimator="k9"), "kl_estimator must be one of"),
])
def test_bad_options_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**options)


def test_a_missing_or_bad_reward_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="PPO needs a reward"):
        run_ppo(PPOConfig(out=str(tmp_path / "a")), quiet=True, train_prompts=PROMPTS * 2, eval_prompts=PROMPTS)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        run_ppo(PPOConfig(reward=str(tmp_path / "nothing"), out=str(tmp_path / "b")), quiet=True)
    trainer, _ = lora_trainer(reward=lambda texts: np.zeros(len(texts) + 1))
    with pytest.raises(ValueError, match="reward_fn gave 9 scores for 8 texts"):
        trainer.rollout(PROMPTS)


def test_the_command_line():
    help_text = subprocess.run([sys.executable, "-m", "minift.cli", "align", "ppo", "--help"], capture_output=True,
                               text=True, cwd=ROOT, timeout=60)
    assert help_text.returncode == 0 and "--kl-coef" in help_text.stdout and "--num-ppo-epochs" in help_text.stdout
    bad = subprocess.run([sys.executable, "-m", "minift.cli", "align", "ppo", str(TINY_GPT), "--reward", "word:good",
                          "--kl-coef", "-1"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "kl-coef" in bad.stderr
    from minift.cli import ArgumentParser
    from minift.rlhf.ppo import add_cli_arguments

    parser = ArgumentParser(prog="minift align ppo")
    add_cli_arguments(parser)
    args = parser.parse_args([str(TINY_GPT), "--reward", "word:good", "--kl-coef", "0.2", "--num-mini-batches", "2",
                              "--adap-kl-ctrl", "--whiten-rewards"])
    from dataclasses import fields

    cfg = PPOConfig(**{k: v for k, v in vars(args).items() if k in {f.name for f in fields(PPOConfig)}})
    assert cfg.kl_coef == 0.2 and cfg.num_mini_batches == 2 and cfg.adap_kl_ctrl and cfg.whiten_rewards
    assert cfg.learning_rate == 1e-3 and cfg.out.endswith("ppo-lora")


def test_the_reward_must_be_a_classifier_not_a_fresh_head_on_another_model():
    from minift.rlhf.ppo import classifier_reward

    for path, held in ((TINY_GPT, "TransformerForCausalLM"), (TINY_GPT.parent / "tiny-bert", "TransformerForMaskedLM")):
        with pytest.raises(ValueError, match=f"holds {held}, expected a sequence classifier"):
            classifier_reward(path)


def test_a_rollout_whose_batch_the_minibatches_do_not_divide_is_refused_before_any_update():
    trainer, _ = lora_trainer(batch_size=8, num_mini_batches=4, num_ppo_epochs=1)
    r = trainer.rollout(PROMPTS[:6])  # 6 prompts: 4 minibatches would hold 2, 2, 1 and 1
    before = [p.data.copy() for p in trainer.params]
    with pytest.raises(ValueError, match=r"num_mini_batches \(4\) must divide the batch \(6 prompts\)"):
        trainer.step(r)
    assert all((p.data == b).all() for p, b in zip(trainer.params, before))  # nothing was updated
    trainer.config.num_mini_batches = 3  # 6 / 3 = 2 prompts per minibatch: the same rollout now steps
    trainer.step(r)
    assert len(trainer.last_minibatch_stats) == 3
    assert any((p.data != b).any() for p, b in zip(trainer.params, before))
