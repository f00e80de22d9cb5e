"""Property-based tests as exercises: here the student writes the *tests*.

Each ``props.*`` task is a hypothesis test with its body left to write: a property every correct
implementation of the target task has, and that wrong ones break. ``minift assignments grade`` runs the
student's version against the correct minift (it must pass) and against each of the target task's mutants
(kept in the course's tree): the share of mutants it kills is the score. In the course's tree the bodies
below are the reference answers, which kill every mutant; in a student tree they are yours to write.

Good properties compare the code with something computed another way: an identity (the adjoint of
broadcasting), a conservation law (softmax's gradient sums to zero along a row), finite differences, or the
same quantity reached by two routes (a merged layer and the unmerged one).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minift as mf
from minift import functional as F
from minift.autograd.ops_elementwise import unbroadcast
from minift.peft import LoraLinear

from .strategies import float_arrays


@pytest.fixture(autouse=True)
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


@pytest.mark.task("props.unbroadcast")
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3), data=st.data())
def test_unbroadcast_is_the_adjoint_of_broadcasting(shapes, data):
    """For x of shape s broadcast to S and any G of shape S: ⟨unbroadcast(G, s), x⟩ = ⟨G, broadcast(x)⟩."""
    small, big = shapes.input_shapes[0], shapes.result_shape
    # TASK props.unbroadcast: a property of unbroadcast(grad, shape) that holds for every broadcast (see the docstring)
    # BEGIN SOLUTION
    x = data.draw(float_arrays(small, noncontiguous=False))
    g = data.draw(float_arrays(big, noncontiguous=False))
    reduced = unbroadcast(g, small)
    assert reduced.shape == small
    np.testing.assert_allclose(np.sum(reduced * x), np.sum(g * np.broadcast_to(x, big)), rtol=1e-9, atol=1e-9)
    # END SOLUTION


@pytest.mark.task("props.softmax_backward")
@given(x=float_arrays(hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=5)), data=st.data())
def test_softmax_gradient_rows_sum_to_zero_and_match_finite_differences(x, data):
    """softmax(x + c) = softmax(x), so moving a whole row changes nothing: Σⱼ ∂L/∂xⱼ = 0 along the axis, for
    any upstream gradient. And the gradient is a derivative: it matches a central difference."""
    # TASK props.softmax_backward: properties of the softmax's gradient (a conservation law, a derivative)
    # BEGIN SOLUTION
    g = data.draw(float_arrays(x.shape, noncontiguous=False))
    t = mf.tensor(x, requires_grad=True)
    (F.softmax(t, axis=-1) * mf.tensor(g)).sum().backward()
    np.testing.assert_allclose(t.grad.sum(axis=-1), 0, atol=1e-9)
    assert mf.gradcheck(lambda a: F.softmax(a, axis=-1), (mf.tensor(x, requires_grad=True),))
    # END SOLUTION


@pytest.mark.task("props.matmul_backward")
@given(shapes=hnp.mutually_broadcastable_shapes(signature="(m,k),(k,n)->(m,n)", max_dims=2, max_side=3), data=st.data())
def test_matmul_gradients_are_derivatives_for_every_broadcast(shapes, data):
    """A @ B over broadcast batch axes (size-1 ones included): the gradients have the inputs' shapes and match
    finite differences."""
    # TASK props.matmul_backward: a property of the batched, broadcasting matmul's gradients
    # BEGIN SOLUTION
    a_shape, b_shape = shapes.input_shapes
    a = mf.tensor(data.draw(float_arrays(a_shape)), requires_grad=True)
    b = mf.tensor(data.draw(float_arrays(b_shape)), requires_grad=True)
    (a @ b).sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    assert mf.gradcheck(lambda p, q: p @ q, (a, b))
    # END SOLUTION


@pytest.mark.task("props.lora_merge")
@given(sizes=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 4)), alpha=st.floats(0.5, 32),
       data=st.data())
def test_a_merged_lora_layer_computes_what_the_unmerged_one_does(sizes, alpha, data):
    """Merging folds s·BA into W: the layer's outputs do not change, and unmerging gives W back."""
    fan_in, fan_out, r = sizes
    # TASK props.lora_merge: properties of merging a LoRA adapter into its layer
    # BEGIN SOLUTION
    layer = LoraLinear(mf.nn.Linear(fan_in, fan_out))
    layer.update_layer("default", r=r, lora_alpha=alpha)
    layer.lora_B["default"].weight.data[...] = data.draw(float_arrays((fan_out, r), noncontiguous=False))
    x = mf.tensor(data.draw(float_arrays((3, fan_in), noncontiguous=False)))
    w = layer.base_layer.weight.data.copy()
    before = layer(x).data
    layer.merge()
    np.testing.assert_allclose(layer(x).data, before, rtol=1e-9, atol=1e-9)
    layer.unmerge()
    np.testing.assert_allclose(layer.base_layer.weight.data, w, rtol=1e-9, atol=1e-12)
    # END SOLUTION


@pytest.mark.task("props.ewc_penalty")
@given(lam=st.floats(0.1, 100), scale=st.floats(0.1, 3), data=st.data())
def test_the_ewc_penalty_is_a_fisher_weighted_half_square_distance(lam, scale, data):
    """EWC's penalty (λ/2) Σ F (θ − θ*)² is 0 at the anchor, grows as the square of the distance (×t² when the
    move is t times longer), ignores weights whose F is 0, and for F = 1 is (λ/2)‖θ − θ*‖² computed by hand."""
    from minift.continual import EWC

    # TASK props.ewc_penalty: properties of EWC's penalty (see the docstring)
    # BEGIN SOLUTION
    model = mf.nn.Linear(3, 2)
    fisher = {n: np.abs(data.draw(float_arrays(p.shape, noncontiguous=False))) for n, p in model.named_parameters()}
    move = {n: data.draw(float_arrays(p.shape, noncontiguous=False)) for n, p in model.named_parameters()}
    anchor = {n: p.data.copy() for n, p in model.named_parameters()}

    def penalty_after(step, f):
        ewc = EWC(lambda_=lam)
        for n, p in model.named_parameters():
            p.data[...] = anchor[n]
        ewc.add_anchor(model, f)
        for n, p in model.named_parameters():
            p.data[...] = anchor[n] + step * move[n]
        return ewc.penalty(model).item()

    assert penalty_after(0.0, fisher) == 0.0
    np.testing.assert_allclose(penalty_after(scale, fisher), scale**2 * penalty_after(1.0, fisher), rtol=1e-9, atol=1e-12)
    assert penalty_after(1.0, {n: np.zeros_like(f) for n, f in fisher.items()}) == 0.0
    ones = {n: np.ones_like(f) for n, f in fisher.items()}
    by_hand = lam / 2 * sum(float((m**2).sum()) for m in move.values())
    np.testing.assert_allclose(penalty_after(1.0, ones), by_hand, rtol=1e-9, atol=1e-12)
    # END SOLUTION


@pytest.mark.task("props.compute_gae")
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 7)), gamma=st.floats(0.1, 1.0), lam=st.floats(0.0, 1.0),
       data=st.data())
def test_gae_satisfies_its_recursion_on_the_counted_positions(shape, gamma, lam, data):
    """GAE (``rlhf.compute_gae``): on the positions with mask 1, taken in order, A_t = δ_t + γλ A_next with
    δ_t = r_t + γ V_next − V_t (nothing after the last); returns = A + V there; every masked position gets 0;
    with γ = λ = 1, A is the reward-to-go minus the value."""
    from minift.rlhf import compute_gae

    # TASK props.compute_gae: properties of generalized advantage estimation (see the docstring)
    # BEGIN SOLUTION
    rewards = data.draw(float_arrays(shape, noncontiguous=False))
    values = data.draw(float_arrays(shape, noncontiguous=False))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])),
                    dtype=float).reshape(shape)
    advantages, returns = compute_gae(rewards, values, mask, gamma=gamma, lam=lam)
    assert (advantages[mask == 0] == 0).all() and (returns[mask == 0] == 0).all()
    for b in range(shape[0]):
        counted = np.flatnonzero(mask[b])
        for k, t in enumerate(counted):
            nxt = counted[k + 1] if k + 1 < len(counted) else None
            v_next = values[b, nxt] if nxt is not None else 0.0
            a_next = advantages[b, nxt] if nxt is not None else 0.0
            delta = rewards[b, t] + gamma * v_next - values[b, t]
            np.testing.assert_allclose(advantages[b, t], delta + gamma * lam * a_next, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(returns[b, t], advantages[b, t] + values[b, t], rtol=1e-9, atol=1e-9)
    undiscounted, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = np.cumsum((rewards * mask)[:, ::-1], axis=1)[:, ::-1]  # Σ_{s ≥ t} r_s over counted s
    np.testing.assert_allclose(undiscounted[mask == 1], (to_go - values)[mask == 1], rtol=1e-9, atol=1e-9)
    # END SOLUTION
