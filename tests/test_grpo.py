"""GRPO: the loss against the formula written out again token by token in NumPy for each of TRL's three
normalizations, its gradient against finite differences and the closed form at ρ = 1, the clip bounds, the
trace, the verifiable rewards by hand, sampling's masks and log-probs, a short run on tiny-gpt that raises the
reward, and clear errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minift as mf
from minift.rlhf.grpo import (GRPOConfig, arithmetic_reward, completion_logprobs, grpo_loss, positive_word_reward,
                              run_grpo, sample_completions)
from minift.rlhf.losses import grpo_advantages

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT = ROOT / "checkpoints" / "tiny-gpt"


@pytest.fixture
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


def case(seed=0, b=4, width=5, spread=0.3):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-2, 1, size=(b, width))
    old = lp + rng.normal(0, spread, size=(b, width))
    ref = lp + rng.normal(0, spread, size=(b, width))
    adv = rng.normal(0, 1, size=b)
    lengths = rng.integers(1, width + 1, size=b)
    lengths[0] = width
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(float)
    return lp, old, ref, adv, mask


@pytest.mark.task("rlhf.grpo_loss")
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grpo_loss_equals_the_formula_token_by_token(float64, loss_type, seed, oracles):
    lp, old, ref, adv, mask = case(seed, spread=0.4)
    for beta, eps, eps_high in ((0.04, 0.2, 0.2), (0.1, 0.1, 0.28), (0.0, 0.2, 0.2)):
        loss, stats = grpo_loss(lp, old, ref, adv, mask, beta=beta, epsilon=eps, epsilon_high=eps_high,
                                loss_type=loss_type, max_completion_length=8)
        assert loss.item() == pytest.approx(
            oracles.grpo_loss_by_hand(lp, old, ref, adv, mask, beta, eps, eps_high, loss_type, 8), rel=1e-10)
    k3 = np.exp(ref - lp) - (ref - lp) - 1
    assert stats["kl"] == pytest.approx((k3 * mask).sum() / mask.sum(), rel=1e-12)


@pytest.mark.task("rlhf.grpo_loss")
def test_loss_and_gradient_match_trls_formula_in_torch(float64, oracles):
    torch = pytest.importorskip("torch")
    lp, old, ref, adv, mask = case(7, spread=0.4)
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        want, t_lp = oracles.grpo_loss_as_trl(torch, lp, old, ref, adv, mask, loss_type, 9)  # TRL's, in torch
        want.backward()
        x = mf.tensor(lp, requires_grad=True)
        loss, _ = grpo_loss(x, old, ref, adv, mask, beta=0.04, epsilon=0.2, epsilon_high=0.28, loss_type=loss_type,
                            max_completion_length=9)
        loss.backward()
        assert loss.item() == pytest.approx(want.item(), rel=1e-12)
        np.testing.assert_allclose(x.grad, t_lp.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.task("rlhf.grpo_loss")
def test_at_the_start_the_loss_is_minus_the_mean_advantage_but_the_gradient_is_minus_a(float64):
    # π = π_old = π_ref: ρ = 1, k3 = 0; each completion's tokens weigh 1/(B |o_i|) in "grpo"
    lp = np.random.default_rng(0).normal(-2, 1, size=(4, 3))
    rewards = np.array([1.0, 0.0, 0.0, 1.0])  # one prompt, G = 4
    adv = grpo_advantages(rewards, 4)
    mask = np.ones((4, 3))
    logprobs = mf.tensor(lp, requires_grad=True)
    loss, stats = grpo_loss(logprobs, lp, lp, adv, mask, beta=0.04)
    assert abs(loss.item()) < 1e-12 and stats["kl"] == 0 and stats["clip_ratio"] == 0  # equal lengths: −mean A = 0
    loss.backward()
    np.testing.assert_allclose(logprobs.grad, -adv[:, None] / (4 * 3) * np.ones((4, 3)), rtol=1e-10)
    assert np.abs(logprobs.grad).max() > 0.05  # "the loss is 0 but the gradient is not"
    short = mask.copy()
    short[1, 1:] = 0  # a short completion (length 1, the others 3)
    unequal, _ = grpo_loss(lp, lp, lp, adv, short, beta=0.04)
    assert unequal.item() == pytest.approx(-np.mean(adv), abs=1e-12)  # each completion's mean is −A_i …
    assert abs(unequal.item()) < 1e-12  # … so "grpo" is still 0: a group's advantages sum to 0
    lengths = short.sum(axis=1)
    for loss_type, n in (("bnpo", short.sum()), ("dr_grpo", 4 * 3)):  # these weigh completion i by its length
        value = grpo_loss(lp, lp, lp, adv, short, beta=0.04, loss_type=loss_type)[0].item()
        assert value == pytest.approx(-(lengths * adv).sum() / n, rel=1e-10) and abs(value) > 0.05


@pytest.mark.task("rlhf.grpo_loss")
def test_the_gradient_matches_finite_differences_for_every_normalization(float64):
    lp, old, ref, adv, mask = case(3, spread=0.05)  # small ratios: inside the clip, a smooth function
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        assert mf.gradcheck(lambda x: grpo_loss(x, old, ref, adv, mask, beta=0.1, loss_type=loss_type,
                                                max_completion_length=7)[0], [mf.tensor(lp, requires_grad=True)])


@pytest.mark.task("rlhf.grpo_loss")
def test_the_clip_bounds_epsilon_and_epsilon_high(float64):
    # one token, A > 0, ρ = 1.25: clipped at 1 + ε = 1.2 (no gradient from the surrogate), not at 1 + ε_high = 1.28
    old = np.array([[0.0]])
    lp = np.log(np.array([[1.25]]))
    for eps_high, clipped in ((None, True), (0.28, False)):
        x = mf.tensor(lp, requires_grad=True)
        loss, stats = grpo_loss(x, old, lp, np.array([1.0]), np.ones((1, 1)), beta=0.0, epsilon=0.2, epsilon_high=eps_high)
        loss.backward()
        assert stats["clip_ratio"] == (1.0 if clipped else 0.0)
        assert loss.item() == pytest.approx(-1.2 if clipped else -1.25, rel=1e-12)
        assert x.grad[0, 0] == pytest.approx(0.0 if clipped else -1.25, abs=1e-12)  # ∂(−ρA)/∂log π = −ρA
    # A < 0, ρ = 0.7: clipped at 1 − ε = 0.8 (the min picks the clipped −0.8 < −0.7)
    lp = np.log(np.array([[0.7]]))
    loss, stats = grpo_loss(lp, old, lp, np.array([-1.0]), np.ones((1, 1)), beta=0.0, epsilon=0.2)
    assert loss.item() == pytest.approx(0.8, rel=1e-12) and stats["clip_ratio"] == 1.0
    # DAPO's clip-higher moves the upper bound only: with ε_high = 0.28 the lower one stays 1 − ε = 0.8, not 0.72
    loss, _ = grpo_loss(lp, old, lp, np.array([-1.0]), np.ones((1, 1)), beta=0.0, epsilon=0.2, epsilon_high=0.28)
    assert loss.item() == pytest.approx(0.8, rel=1e-12)


@pytest.mark.task("rlhf.grpo_loss")
def test_dr_grpo_has_no_length_bias_and_grpo_does(float64):
    # two completions with the same negative advantage, lengths 1 and 4: per-token weight of each
    lp = np.zeros((2, 4))
    mask = np.array([[1.0, 0, 0, 0], [1, 1, 1, 1]])
    adv = np.array([-1.0, -1.0])
    grads = {}
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        x = mf.tensor(lp, requires_grad=True)
        grpo_loss(x, lp, lp, adv, mask, beta=0.0, loss_type=loss_type, max_completion_length=4)[0].backward()
        grads[loss_type] = x.grad[:, 0]
    assert grads["grpo"].tolist() == pytest.approx([1 / 2, 1 / 8])  # a long wrong answer is pushed down less per token
    assert grads["bnpo"].tolist() == pytest.approx([1 / 5, 1 / 5])
    assert grads["dr_grpo"].tolist() == pytest.approx([1 / 8, 1 / 8])


@pytest.mark.task("rlhf.grpo_loss")
def test_the_trace_reproduces_the_loss(float64):
    lp, old, ref, adv, mask = case(5, spread=0.4)
    for loss_type in ("grpo", "bnpo", "dr_grpo"):
        loss, stats, trace = grpo_loss(lp, old, ref, adv, mask, beta=0.05, loss_type=loss_type, trace=True)
        assert len(trace) == int(mask.sum())
        assert (trace.column("weight") * trace.column("term")).sum() == pytest.approx(loss.item(), rel=1e-10)
        assert trace.column("clipped").mean() == pytest.approx(stats["clip_ratio"])
        np.testing.assert_allclose(trace.column("ratio"), np.exp(lp - old)[mask > 0])
        np.testing.assert_allclose(trace.column("advantage"), adv[np.nonzero(mask)[0]])
    assert "advantage" in str(trace).splitlines()[0]


def test_grpo_loss_checks_its_inputs(float64):
    lp, old, ref, adv, mask = case()
    with pytest.raises(ValueError, match="loss_type must be one of"):
        grpo_loss(lp, old, ref, adv, mask, loss_type="dapo")
    with pytest.raises(ValueError, match="one number per completion"):
        grpo_loss(lp, old, ref, adv[:2], mask)
    with pytest.raises(ValueError, match="shapes differ"):
        grpo_loss(lp, old[:, :2], ref, adv, mask)
    empty = mask.copy()
    empty[2] = 0
    with pytest.raises(ValueError, match=r"completions \[2\] have no token"):
        grpo_loss(lp, old, ref, adv, empty)
    with pytest.raises(ValueError, match="max_completion_length must be"):
        grpo_loss(lp, old, ref, adv, mask, loss_type="dr_grpo", max_completion_length=2)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        grpo_loss(lp, old, ref, adv, mask, beta=-0.1)


def test_the_verifiable_rewards_by_hand():
    assert positive_word_reward(" a great film") == 1.0
    assert positive_word_reward(" great acting, but a boring plot") == 0.0  # a negative word spoils it
    assert positive_word_reward(" the plot") == 0.0 and positive_word_reward(" GREAT!") == 1.0
    assert arithmetic_reward("It is 12.", "What is 5 + 7?") == 1.0
    assert arithmetic_reward("To add 5 and 7: 5 + 7 = 12", "What is 5 + 7?") == 1.0  # the last integer is the answer
    assert arithmetic_reward("12? No, 13", "What is 5 + 7?") == 0.0
    assert arithmetic_reward("13", "What is 5 + 7?") == 0.0 and arithmetic_reward("no idea", "What is 5 + 7?") == 0.0
    assert arithmetic_reward("-2", "What is 5 - 7?") == 1.0 and arithmetic_reward("35", "What is 5 * 7?") == 1.0
    with pytest.raises(ValueError, match="needs a prompt with"):
        arithmetic_reward("3", "How are you?")


def test_sampling_masks_after_the_first_eos_and_the_logprobs_are_the_models():
    model = mf.models.auto.AutoModelForCausalLM.from_pretrained(TINY_GPT).eval()
    tok = mf.tokenization.from_pretrained(TINY_GPT)
    prompts = np.array([tok.encode("the movie was", add_special_tokens=False)] * 2)
    mf.seed(0)
    ids, mask = sample_completions(model, prompts, 3, 12, 1.5, tok.eos_token_id, tok.eos_token_id)
    assert ids.shape[0] == 6 and mask.shape == (6, ids.shape[1] - prompts.shape[1])
    completion = ids[:, prompts.shape[1]:]
    for row, m in zip(completion, mask):
        eos = np.flatnonzero(row == tok.eos_token_id)
        n = int(m.sum())
        assert n == (eos[0] + 1 if len(eos) else len(row)) and (m[:n] == 1).all() and (m[n:] == 0).all()
    assert (ids[:, :prompts.shape[1]] == prompts[0]).all()
    with mf.no_grad():
        got = completion_logprobs(model, ids, prompts.shape[1]).data
        sampled = completion_logprobs(model, ids, prompts.shape[1], temperature=1.5).data  # what drew them
        logits = model(ids).logits.data
    for i in (0, 4):  # each token's log-prob from the full forward pass, read off by hand
        for t in range(mask.shape[1]):
            for values, temperature in ((got, 1.0), (sampled, 1.5)):
                z = logits[i, prompts.shape[1] - 1 + t].astype(np.float64) / temperature
                logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
                assert values[i, t] == pytest.approx(logp[completion[i, t]], abs=1e-4)
    assert np.abs(sampled - got).max() > 0.1


def test_a_short_run_on_tiny_gpt_raises_the_reward(tmp_path):
    results = run_grpo(GRPOConfig(policy=str(TINY_GPT), max_steps=30, out=str(tmp_path / "run")), quiet=True)
    out = tmp_path / "run"
    assert results["after"]["mean_reward"] > results["before"]["mean_reward"] + 0.1
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 30 and {"reward", "reward_std", "kl", "clip_ratio", "completion_length", "loss"} <= set(logs[0])
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-6) and logs[-1]["kl"] > 0  # π = π_ref at step 1, then it moves
    assert logs[0]["clip_ratio"] == 0.0  # one pass per batch: ρ = 1 always
    assert (out / "reward.png").stat().st_size > 0 and (out / "results.json").exists() and (out / "model").is_dir()


def test_num_iterations_reuses_a_batch_and_the_clip_binds(tmp_path):
    # TRL's μ: a batch is sampled every 3 steps; its first step has ρ = 1, the next two compare with the sampler
    run_grpo(GRPOConfig(policy=str(TINY_GPT), max_steps=6, num_iterations=3, learning_rate=2e-2,
                        out=str(tmp_path / "mu")), quiet=True)
    logs = [json.loads(line) for line in (tmp_path / "mu" / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 6
    for first in (0, 3):
        assert logs[first]["ratio_mean"] == pytest.approx(1.0) and logs[first]["clip_ratio"] == 0.0
        assert logs[first + 1]["reward"] == logs[first]["reward"] == logs[first + 2]["reward"]  # the same batch
        assert logs[first + 1]["ratio_mean"] != pytest.approx(1.0, abs=1e-6)
    assert max(r["clip_ratio"] for r in logs) > 0  # moved past 1 ± ε on the reused batch
    with pytest.raises(ValueError, match="num_iterations must be an integer >= 1"):
        GRPOConfig(num_iterations=0)


def test_options_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="num_generations must be an integer >= 2"):
        GRPOConfig(num_generations=1)
    with pytest.raises(ValueError, match="unknown task"):
        GRPOConfig(task="chess")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        GRPOConfig(loss_type="ppo")
    with pytest.raises(ValueError, match="unknown method"):
        GRPOConfig(method="qlora")
    with pytest.raises(ValueError, match="epsilon_high must be a finite number >= 0"):
        GRPOConfig(epsilon_high=-0.1)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        GRPOConfig(beta=float("nan"))
    with pytest.raises(ValueError, match="exceed the model's context"):
        run_grpo(GRPOConfig(policy=str(TINY_GPT), max_completion_length=62, out=str(tmp_path / "long")), quiet=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="as the output directory: .* is a file"):
        run_grpo(GRPOConfig(policy=str(TINY_GPT), out=str(tmp_path / "afile")), quiet=True)


def test_the_command_line(tmp_path):
    from minift.cli import ArgumentParser, CommandLineError
    from minift.rlhf.grpo import add_cli_arguments, run_from_args

    parser = ArgumentParser(prog="minift align grpo")
    add_cli_arguments(parser)
    args = parser.parse_args([str(TINY_GPT), "--num-generations", "4", "--max-steps", "2", "--loss-type", "dr_grpo",
                              "--no-scale-rewards", "--out", str(tmp_path / "cli")])
    results = run_from_args(args, quiet=True)
    assert results["args"]["num_generations"] == 4 and results["args"]["loss_type"] == "dr_grpo"
    assert results["args"]["scale_rewards"] is False and results["train_steps"] == 2
    assert results["machine"] == mf.backend.machine_summary()
    with pytest.raises(CommandLineError, match="invalid choice"):
        parser.parse_args([str(TINY_GPT), "--loss-type", "ppo"])
    helped = subprocess.run([sys.executable, "-m", "minift.cli", "align", "grpo", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert helped.returncode == 0 and "--num-generations" in helped.stdout and "--loss-type" in helped.stdout
    bad = subprocess.run([sys.executable, "-m", "minift.cli", "align", "grpo", str(TINY_GPT), "--num-generations", "1",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "--num-generations: expected an integer >= 2" in bad.stderr


def test_the_grpo_trainer_in_trls_form_sums_its_reward_functions_and_checks_its_inputs():
    from minift.models.auto import AutoModelForCausalLM
    from minift.peft import LoraConfig, get_peft_model
    from minift.rlhf.grpo import GRPOTrainer, prompts_for

    tok = mf.tokenization.from_pretrained(TINY_GPT)
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY_GPT), LoraConfig(r=4, target_modules=["q_proj"]))
    cfg = GRPOConfig(num_generations=4, prompts_per_step=2, max_steps=3)
    data = prompts_for("positive_words", tok, "train", 6, 4, chat=False)
    always_one = lambda completion, prompt: 1.0  # noqa: E731
    trainer = GRPOTrainer(policy, [positive_word_reward, always_one], cfg, data, tok)
    mf.seed(0)
    batch = trainer.sample_batch(0)
    assert np.allclose(batch["rewards"], [positive_word_reward(t) + 1.0 for t in batch["texts"]])
    output = trainer.train()
    history = trainer.state.log_history
    assert [r["step"] for r in history] == [1, 2, 3] and history[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert output.global_step == 3 and output.training_loss == pytest.approx(np.mean([r["loss"] for r in history]))
    runtime = output.metrics["train_runtime"]  # a sample is a completion: 3 steps × 2 prompts × 4 completions
    assert output.metrics["train_samples_per_second"] == pytest.approx(24 / runtime, rel=2e-2)
    assert output.metrics["epoch"] == trainer.state.epoch == 1.0  # 3 batches of 2 of the 6 prompts
    # at a temperature ≠ 1, π_old and π_ref are log-probs under softmax(logits / T), the sampling distribution
    hot = GRPOTrainer(policy, always_one, GRPOConfig(num_generations=4, prompts_per_step=2, max_steps=3,
                                                     num_iterations=3, temperature=0.7), data, tok)
    batch = hot.sample_batch(0)
    with mf.no_grad():
        old = completion_logprobs(policy, batch["ids"], batch["prompt_length"], temperature=0.7).data
        with policy.disable_adapter():
            ref = completion_logprobs(policy, batch["ids"], batch["prompt_length"], temperature=0.7).data
    assert np.allclose(batch["old_logps"], old, atol=1e-6) and np.allclose(batch["ref_logps"], ref, atol=1e-6)
    assert hot.step(batch, 1)["ratio_mean"] == pytest.approx(1.0, abs=1e-5)  # π = π_old at its first step
    with pytest.raises(ValueError, match="GRPO with beta = 0.04 needs a reference.*or set beta=0"):
        GRPOTrainer(AutoModelForCausalLM.from_pretrained(TINY_GPT), always_one, cfg, data, tok)
    # β = 0 (TRL's default): no reference at all, as in TRL — no reference pass, no kl in the records
    plain = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    free = GRPOTrainer(plain, positive_word_reward, GRPOConfig(num_generations=4, prompts_per_step=2, max_steps=2,
                                                               beta=0.0, num_iterations=2), data, tok)
    mf.seed(0)
    batch = free.sample_batch(0)
    assert batch["ref_logps"] is None and batch["old_logps"] is not None
    with mf.no_grad():
        logps = completion_logprobs(plain, batch["ids"], batch["prompt_length"])
    want, _ = grpo_loss(logps, batch["old_logps"], logps.data + 5.0, batch["advantages"], batch["mask"], beta=0.0)
    record = free.step(batch, 1)  # any reference gives the same loss at β = 0
    assert "kl" not in record and record["loss"] == pytest.approx(want.item(), abs=1e-6)
    with pytest.raises(ValueError, match="need 6 prompts; train_dataset has 4"):
        GRPOTrainer(policy, always_one, cfg, (data[0][:4], data[1][:4]), tok)
    with pytest.raises(TypeError, match="reward_funcs must be a function"):
        GRPOTrainer(policy, "positive_words", cfg, data, tok)
