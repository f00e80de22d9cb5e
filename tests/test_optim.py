"""Optimizers, schedules and clipping: values against hand computation, and against PyTorch when installed."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import optim

try:
    import torch
except ImportError:  # torch is an optional reference, never a dependency
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (optional reference)")


def param(values):
    return mf.nn.Parameter(np.array(values, dtype=np.float64))


def run(opt_cls, grads, theta0, **kw):
    """Apply ``opt_cls`` to one parameter for the given sequence of gradients; return the trajectory."""
    p = param(theta0)
    opt = opt_cls([p], **kw)
    out = []
    for g in grads:
        p.grad = np.array(g, dtype=np.float64)
        opt.step()
        out.append(p.numpy().copy())
    return out


def test_sgd_plain_momentum_nesterov_and_weight_decay_by_hand():
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    th0 = np.array([1.0, 1.0])
    lr, mu, wd = 0.1, 0.9, 0.01
    # plain
    np.testing.assert_allclose(run(optim.SGD, [g1], th0, lr=lr)[0], th0 - lr * g1)
    # momentum with weight decay: b1 = g1 + wd·θ0; θ1 = θ0 − lr·b1; b2 = μ·b1 + (g2 + wd·θ1); θ2 = θ1 − lr·b2
    b1 = g1 + wd * th0
    th1 = th0 - lr * b1
    b2 = mu * b1 + (g2 + wd * th1)
    th2 = th1 - lr * b2
    traj = run(optim.SGD, [g1, g2], th0, lr=lr, momentum=mu, weight_decay=wd)
    np.testing.assert_allclose(traj[1], th2)
    # nesterov: step with g + μ·b
    b1 = g1
    th1 = th0 - lr * (g1 + mu * b1)
    b2 = mu * b1 + g2
    th2 = th1 - lr * (g2 + mu * b2)
    np.testing.assert_allclose(run(optim.SGD, [g1, g2], th0, lr=lr, momentum=mu, nesterov=True)[1], th2)


@pytest.mark.task("optim.adamw_step")
def test_adamw_two_steps_by_hand(oracles):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
    grads = [np.array([0.2, -0.4]), np.array([-0.1, 0.3])]
    expected = oracles.adamw_by_hand([0.5, -1.0], grads, lr, b1, b2, eps, wd)
    traj = run(optim.AdamW, grads, [0.5, -1.0], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    np.testing.assert_allclose(traj, expected, rtol=1e-12)


@pytest.mark.task("optim.adamw_step")
def test_adamw_first_step_decays_the_weight_then_moves_it_by_lr():
    # step 1: m̂ = g and v̂ = g², so θ₁ = θ₀(1 − lr·λ) − lr·g/(|g| + ε): the decay apart from the gradient's step
    traj = run(optim.AdamW, [[0.2, -0.4]], [0.5, -1.0], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    expected = [0.5 * (1 - 0.01 * 0.1) - 0.01 * 0.2 / (0.2 + 1e-8), -1.0 * (1 - 0.01 * 0.1) + 0.01 * 0.4 / (0.4 + 1e-8)]
    np.testing.assert_allclose(traj[0], expected, rtol=1e-12)


@pytest.mark.task("optim.adamw_step")
def test_adamw_first_step_moves_each_coordinate_by_about_lr():
    # with bias correction, step 1 is lr·g/(|g| + ε) = ±lr whatever the gradient's scale
    traj = run(optim.AdamW, [[1e-3, -50.0]], [0.0, 0.0], lr=0.01, weight_decay=0.0)
    np.testing.assert_allclose(traj[0], [-0.01, 0.01], rtol=1e-4)


@pytest.mark.task("optim.adamw_step")
def test_adamw_weight_decay_is_decoupled_from_the_moments():
    # zero gradient: Adam's moments stay 0, so only the decay moves θ: θ ← θ(1 − lr·wd)
    p = param([2.0])
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = np.zeros(1)
    opt.step()
    np.testing.assert_allclose(p.numpy(), [2.0 * (1 - 0.05)])


def test_adam_folds_l2_into_the_gradient():
    # coupled decay goes through the normaliser: the first step is −lr·sign(g + wd·θ)
    traj = run(optim.Adam, [[0.0]], [2.0], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(traj[0], [2.0 - 0.1], rtol=1e-6)


def test_param_groups_have_their_own_options():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad = b.grad = np.ones(1)
    opt.step()
    np.testing.assert_allclose([a.item(), b.item()], [0.9, 0.5])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.AdamW([], lr=0.1)


def test_parameters_without_gradients_are_skipped_and_zero_grad_clears():
    a = param([1.0])
    opt = optim.AdamW([a], lr=0.1)
    opt.step()
    assert a.item() == 1.0
    a.grad = np.ones(1)
    opt.zero_grad()
    assert a.grad is None


@pytest.mark.parametrize("make", [lambda ps: optim.AdamW(ps, lr=0.05), lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9)])
def test_optimizer_and_schedule_state_dicts_resume_exactly(make):
    rs = np.random.default_rng(0)
    grads = [rs.standard_normal(3) for _ in range(6)]

    def train(resume_at=None):
        p = param([0.0, 0.0, 0.0])
        opt = make([p])
        sch = optim.get_linear_schedule_with_warmup(opt, 2, 6)
        for i, g in enumerate(grads):
            if i == resume_at:  # rebuild everything from state dicts, as a restart would
                state, sstate, value = opt.state_dict(), sch.state_dict(), p.numpy().copy()
                p = param(value)
                opt = make([p])
                opt.load_state_dict(state)
                sch = optim.get_linear_schedule_with_warmup(opt, 2, 6)
                sch.load_state_dict(sstate)
            p.grad = g
            opt.step()
            sch.step()
        return p.numpy()

    np.testing.assert_array_equal(train(), train(resume_at=3))


# ------------------------------------------------------------------ schedules
def lrs(sched_fn, n, base=1.0):
    opt = optim.SGD([param([0.0])], lr=base)
    sch = sched_fn(opt)
    out = []
    for _ in range(n):
        out.append(sch.get_last_lr()[0])
        sch.step()
    return out


def test_linear_warmup_then_linear_decay():
    got = lrs(lambda o: optim.get_linear_schedule_with_warmup(o, 2, 6), 7)
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_cosine_with_warmup():
    got = lrs(lambda o: optim.get_cosine_schedule_with_warmup(o, 2, 6), 7)
    expected = [0.0, 0.5] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_constant_and_constant_with_warmup():
    np.testing.assert_allclose(lrs(optim.get_constant_schedule, 3, 0.3), [0.3] * 3)
    np.testing.assert_allclose(lrs(lambda o: optim.get_constant_schedule_with_warmup(o, 4), 6), [0, 0.25, 0.5, 0.75, 1, 1])


def test_slanted_triangular_matches_ulmfit_formula():
    T, cut_frac, ratio = 100, 0.1, 32
    got = lrs(lambda o: optim.get_slanted_triangular_schedule(o, T, cut_frac, ratio), T)
    cut = 10
    for t in (0, 5, 10, 55, 99):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        assert got[t] == pytest.approx((1 + p * (ratio - 1)) / ratio)
    assert got[0] == pytest.approx(1 / 32) and max(got) == pytest.approx(1.0) and got[10] == max(got)


def test_get_scheduler_by_name_and_bad_names():
    opt = optim.SGD([param([0.0])], lr=1.0)
    assert isinstance(optim.get_scheduler("cosine", opt, 1, 10), optim.LambdaLR)
    with pytest.raises(ValueError, match="unknown schedule 'triangle'"):
        optim.get_scheduler("triangle", opt)


# ------------------------------------------------------------------ clipping
@given(scale=st.floats(0.01, 100.0), max_norm=st.floats(0.1, 10.0))
def test_clip_grad_norm_returns_the_norm_and_caps_it(scale, max_norm):
    a, b = param([0.0, 0.0]), param([0.0])
    a.grad, b.grad = np.array([3.0, 0.0]) * scale, np.array([4.0]) * scale
    total = optim.clip_grad_norm_([a, b], max_norm)
    assert total == pytest.approx(5.0 * scale)
    new = math.sqrt((a.grad**2).sum() + (b.grad**2).sum())
    assert new == pytest.approx(min(5.0 * scale, max_norm), rel=1e-5)


# ------------------------------------------------------------------ PyTorch as a reference
@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize(
    "ours, theirs, kw",
    [
        ("SGD", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
        ("SGD", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("SGD", "SGD", dict(lr=0.1, momentum=0.5, dampening=0.3)),
        ("AdamW", "AdamW", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
        ("Adam", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ],
)
def test_optimizers_match_pytorch(ours, theirs, kw):
    rs = np.random.default_rng(0)
    theta0 = rs.standard_normal(5)
    grads = [rs.standard_normal(5) for _ in range(8)]
    t = torch.tensor(theta0, requires_grad=True)
    topt = getattr(torch.optim, theirs)([t], **kw)
    for g in grads:
        t.grad = torch.tensor(g)
        topt.step()
    mine = run(getattr(optim, ours), grads, theta0, **kw)[-1]
    np.testing.assert_allclose(mine, t.detach().numpy(), rtol=1e-12, atol=1e-14)


@needs_torch
@pytest.mark.torch
def test_clip_grad_norm_matches_pytorch():
    rs = np.random.default_rng(1)
    gs = [rs.standard_normal((3, 4)), rs.standard_normal(7)]
    ps = [param(np.zeros_like(g)) for g in gs]
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in gs]
    for p, t, g in zip(ps, ts, gs):
        p.grad, t.grad = g.copy(), torch.tensor(g)
    ours = optim.clip_grad_norm_(ps, 1.0)
    theirs = torch.nn.utils.clip_grad_norm_(ts, 1.0)
    assert ours == pytest.approx(theirs.item())
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


@needs_torch
@pytest.mark.torch
def test_losses_and_norms_match_pytorch():
    import torch.nn.functional as TF

    from minift import functional as F

    rs = np.random.default_rng(2)
    z = rs.standard_normal((6, 5))
    t = np.array([0, 4, -100, 2, 2, 1])
    for ls in (0.0, 0.2):
        ours = F.cross_entropy(mf.tensor(z), t, label_smoothing=ls).item()
        theirs = TF.cross_entropy(torch.tensor(z), torch.tensor(t), label_smoothing=ls).item()
        assert ours == pytest.approx(theirs, rel=1e-12)
    x = rs.standard_normal((3, 8))
    w, b = rs.standard_normal(8), rs.standard_normal(8)
    np.testing.assert_allclose(
        F.layer_norm(mf.tensor(x), 8, mf.tensor(w), mf.tensor(b)).numpy(),
        TF.layer_norm(torch.tensor(x), (8,), torch.tensor(w), torch.tensor(b)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(F.rms_norm(mf.tensor(x), 8, mf.tensor(w)).numpy(),
                               TF.rms_norm(torch.tensor(x), (8,), torch.tensor(w)).numpy(), rtol=1e-10)
    for approx in ("none", "tanh"):
        np.testing.assert_allclose(F.gelu(mf.tensor(x), approx).numpy(),
                                   TF.gelu(torch.tensor(x), approximate=approx).numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- validation: bad options never pass silently
@pytest.mark.parametrize("make", [
    lambda p, v: optim.SGD([p], lr=v),
    lambda p, v: optim.Adam([p], lr=v),
    lambda p, v: optim.AdamW([p], lr=v),
    lambda p, v: optim.AdamW([p], weight_decay=v),
    lambda p, v: optim.AdamW([p], eps=v),
    lambda p, v: optim.SGD([p], momentum=v),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-3])
def test_non_finite_or_negative_options_are_rejected(make, bad):
    with pytest.raises(ValueError, match="must be a finite number >= 0.0, got"):
        make(param([1.0]), bad)


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_a_group_s_own_options_are_checked_too(opt_cls):
    body, head = param([1.0]), param([2.0])
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0.0, got nan"):
        opt_cls([{"params": [body]}, {"params": [head], "lr": float("nan")}], lr=1e-3)
    opt = opt_cls([{"params": [body]}], lr=1e-3)
    with pytest.raises(ValueError, match="weight_decay"):
        opt.add_param_group({"params": [head], "weight_decay": -0.1})
    with pytest.raises(ValueError, match=r"no option\(s\) \['learning_rate'\]"):
        opt.add_param_group({"params": [head], "learning_rate": 0.1})  # a typo must not be ignored


def test_adam_betas_are_checked_per_group():
    p = param([1.0])
    with pytest.raises(ValueError, match=r"betas\[1\] must be a finite number >= 0.0 and < 1.0, got 1.0"):
        optim.AdamW([{"params": [p], "betas": (0.9, 1.0)}])
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.AdamW([p], betas=(0.9,))


def test_the_same_parameter_twice_is_an_error_as_in_pytorch():
    p, q = param([1.0]), param([2.0])
    with pytest.raises(ValueError, match="same parameter twice"):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [q, p]}], lr=0.1)


def test_clip_grad_norm_with_nan_or_inf_gradients():
    p, q = param([3.0, 4.0]), param([1.0, 1.0])
    p.grad, q.grad = np.array([3.0, 4.0]), np.array([np.nan, 1.0])
    with pytest.raises(RuntimeError, match=r"parameter 1 \(shape \(2,\)\) has a NaN or infinite gradient"):
        optim.clip_grad_norm_([p, q], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])  # nothing was touched before the error
    total = optim.clip_grad_norm_([p, q], 1.0)  # PyTorch's default: scale by nan, every gradient is NaN now
    assert math.isnan(total) and np.isnan(p.grad).all() and np.isnan(q.grad).all()
    p.grad, q.grad = np.array([3.0, 4.0]), np.array([np.inf, 1.0])
    assert optim.clip_grad_norm_([p, q], 1.0) == math.inf  # coefficient 0: finite entries 0, inf·0 = NaN
    np.testing.assert_array_equal(p.grad, [0.0, 0.0])
    assert np.isnan(q.grad[0]) and q.grad[1] == 0.0
    p.grad, q.grad = np.array([1.0, 2.0]), np.array([np.nan, 1.0])  # the max-norm sees a NaN in any position
    assert math.isnan(optim.clip_grad_norm_([p, q], 1.0, norm_type=math.inf))


@pytest.mark.parametrize("norm_type", [0, -1, float("nan"), "fro"])
def test_clip_grad_norm_rejects_norm_types_that_are_not_norms(norm_type):
    p = param([3.0, 4.0])
    p.grad = np.array([3.0, 4.0])
    with pytest.raises(ValueError, match="norm_type must be a number > 0"):
        optim.clip_grad_norm_([p], 1.0, norm_type=norm_type)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm_([p], float("nan"))


@needs_torch
def test_clip_grad_norm_matches_pytorch_on_non_finite_gradients():
    for bad in (np.nan, np.inf):
        g = np.array([3.0, bad, 4.0])
        p = param([0.0, 0.0, 0.0])
        p.grad = g.copy()
        t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g)
        ours = optim.clip_grad_norm_([p], 1.0)
        theirs = torch.nn.utils.clip_grad_norm_([t], 1.0).item()
        np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(t.grad.numpy()))
        np.testing.assert_allclose(np.nan_to_num(p.grad), np.nan_to_num(t.grad.numpy()))
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == theirs
