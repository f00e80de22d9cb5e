"""gradcheck itself: exact on polynomials, and it catches wrong backwards, naming the input and index."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift.autograd.gradcheck import central_difference


@pytest.mark.task("gradcheck.central_difference")
@given(a=st.floats(-3, 3), b=st.floats(-3, 3), x0=st.floats(-2, 2))
def test_central_difference_is_exact_for_quadratics(a, b, x0):
    # (f(x+ε) − f(x−ε))/2ε = 2a·x + b exactly for f = a·x² + b·x: the error term is f'''·ε²/6 = 0
    x = np.array([x0, 7.0])
    got = central_difference(lambda: a * x[0] ** 2 + b * x[0], x, 0, 1e-3)
    np.testing.assert_allclose(got, 2 * a * x0 + b, atol=1e-9)
    assert x[0] == x0 and x[1] == 7.0  # the input is restored


@pytest.mark.task("gradcheck.central_difference")
def test_central_difference_beats_forward_difference_on_a_cubic():
    x = np.array([1.0])
    eps = 1e-3
    central = central_difference(lambda: x[0] ** 3, x, 0, eps)
    forward = ((1.0 + eps) ** 3 - 1.0) / eps
    assert abs(central - 3.0) < 1e-5 < abs(forward - 3.0)


@pytest.mark.task("gradcheck.central_difference")
def test_central_difference_works_on_non_contiguous_arrays():
    base = np.arange(6.0).reshape(2, 3)
    x = base.T  # a view with transposed strides
    got = central_difference(lambda: float((x**2).sum()), x, 1, 1e-4)  # x.flat[1] = x[0, 1] = 3
    np.testing.assert_allclose(got, 6.0, atol=1e-6)


class WrongTanh(mf.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * (1 - np.tanh(x)),)  # forgot the square


@pytest.mark.task("gradcheck.central_difference")
def test_gradcheck_catches_a_wrong_backward_and_names_the_spot():
    x = mf.tensor(np.array([0.3, -0.7, 1.1]), requires_grad=True)
    with pytest.raises(mf.GradcheckError, match=r"input 0 \(shape \(3,\)\) at index \(0,\): analytic .*numerical"):
        mf.gradcheck(WrongTanh.apply, (x,))


class TanhOfProduct(mf.Function):
    """tanh(A B + c) with its backward written here in NumPy, so this test needs no other task's code."""

    @staticmethod
    def forward(ctx, a, b, c):
        y = np.tanh(a @ b + c)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        gz = g * (1 - y * y)
        return gz @ b.T, a.T @ gz, None


@pytest.mark.task("gradcheck.central_difference")
def test_gradcheck_passes_a_right_backward_with_several_inputs():
    a = mf.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    b = mf.tensor(np.random.default_rng(1).standard_normal((4, 2)), requires_grad=True)
    c = mf.tensor(np.ones(2))  # not checked: does not require grad
    assert mf.gradcheck(TanhOfProduct.apply, (a, b, c))


def test_gradcheck_leaves_the_gradients_a_caller_computed_where_they_were():
    """README's engine snippet calls loss.backward() and then gradcheck: w.grad must still be d loss / d w, and
    a parameter the checked function closes over keeps its .grad too, when the check passes and when it fails."""
    rs = np.random.default_rng(0)
    w = mf.tensor(rs.standard_normal((3, 2)), requires_grad=True)
    bias = mf.tensor(rs.standard_normal(2), requires_grad=True)  # reached by fn, not an input of gradcheck
    x = mf.tensor(rs.standard_normal((4, 3)))
    ((x @ w + bias).tanh() ** 2).sum().backward()
    w_grad, bias_grad = w.grad.copy(), bias.grad.copy()
    expected = x.numpy().T @ (2 * np.tanh(x.numpy() @ w.numpy() + bias.numpy())
                              * (1 - np.tanh(x.numpy() @ w.numpy() + bias.numpy()) ** 2))
    np.testing.assert_allclose(w_grad, expected, rtol=1e-12)  # the gradient being kept is the right one
    assert mf.gradcheck(lambda t: (x @ t + bias).tanh(), (w,))
    np.testing.assert_array_equal(w.grad, w_grad)
    np.testing.assert_array_equal(bias.grad, bias_grad)
    with pytest.raises(mf.GradcheckError):
        mf.gradcheck(lambda t: WrongTanh.apply(x @ t + bias), (w,))
    np.testing.assert_array_equal(w.grad, w_grad)
    np.testing.assert_array_equal(bias.grad, bias_grad)
    fresh = mf.tensor(rs.standard_normal(3), requires_grad=True)
    assert mf.gradcheck(lambda t: t.tanh(), (fresh,)) and fresh.grad is None  # none before, none after


def test_gradcheck_uses_random_directions_for_large_inputs_and_still_catches_errors():
    x = mf.tensor(np.random.default_rng(0).standard_normal(1000) * 0.5, requires_grad=True)
    assert mf.gradcheck(lambda t: t.tanh(), (x,))
    with pytest.raises(mf.GradcheckError, match="random direction"):
        mf.gradcheck(WrongTanh.apply, (x,), n_elements=0)  # directions only
    with pytest.raises(mf.GradcheckError, match=r"at index \(0,\)"):  # the sampled elements catch it first
        mf.gradcheck(WrongTanh.apply, (x,))


def test_gradcheck_refuses_float32_and_nothing_to_check():
    with pytest.raises(TypeError, match="float64"):
        mf.gradcheck(lambda t: t * 2, (mf.tensor([1.0], requires_grad=True),))
    with pytest.raises(ValueError, match="requires_grad"):
        mf.gradcheck(lambda t: t * 2, (mf.tensor(np.array([1.0])),))


def test_gradcheck_at_a_kink_is_misleading_as_the_lesson_says():
    # |x| at 0: the backward says sign(0) = 0, central differences say (ε − ε)/2ε = 0 too — agreeing on a
    # point where no derivative exists. One-sided differences would give ±1.
    x = mf.tensor(np.array([0.0]), requires_grad=True)
    assert mf.gradcheck(lambda t: t.abs(), (x,))
    # relu at 0: backward gives 0, the central difference gives 1/2 — gradcheck fails on a true kink
    with pytest.raises(mf.GradcheckError):
        mf.gradcheck(lambda t: t.relu(), (x,))


class TanhWrongAtOneElement(mf.Function):
    """tanh whose backward is off by 0.002 at flat element 537 only: the bug a random direction can hide."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        dx = g * (1 - np.tanh(x) ** 2)
        dx.reshape(-1)[537] += 0.002
        return (dx,)


def test_a_single_wrong_element_hides_from_directions_but_not_from_element_checks():
    x = mf.tensor(np.random.default_rng(0).standard_normal(1000) * 0.5, requires_grad=True)
    # directions alone (no element checks) pass: the tolerance of a 1000-element dot product is too wide
    assert mf.gradcheck(TanhWrongAtOneElement.apply, (x,), n_elements=0)
    # naming the element finds it, and the error says where
    with pytest.raises(mf.GradcheckError, match=r"at index \(537,\)"):
        mf.gradcheck(TanhWrongAtOneElement.apply, (x,), elements=[537])
    with pytest.raises(mf.GradcheckError, match=r"at index \(537,\)"):
        mf.gradcheck(TanhWrongAtOneElement.apply, (x,), elements={0: [(537,)]})
    # checking every element finds it too
    with pytest.raises(mf.GradcheckError, match=r"at index \(537,\)"):
        mf.gradcheck(TanhWrongAtOneElement.apply, (x,), max_full=1000)
    # elements it does not look at cannot catch it: a random subset is a sample, not a proof
    assert mf.gradcheck(TanhWrongAtOneElement.apply, (x,), elements=[0, 1, 999])


def test_default_large_input_check_samples_elements_at_random():
    from minift.autograd.gradcheck import _element_indices

    rs = np.random.default_rng(0)
    picks = [_element_indices(1000, 256, 32, None, rs) for _ in range(50)]
    for p in picks:  # 32 distinct coordinates, in range, the first and the last always among them
        assert len(p) == len(set(p)) == 32 and 0 in p and 999 in p and all(0 <= j < 1000 for j in p)
    covered = set().union(*picks)
    assert len(covered) > 600  # different draws look at different elements
    assert _element_indices(100, 256, 32, None, rs) == list(range(100))  # small inputs: every element
    assert _element_indices(1000, 256, 0, None, rs) == []  # n_elements=0: directions only
    # half the elements sampled: the bad element is found by about half of the seeds, and named each time
    x = mf.tensor(np.random.default_rng(0).standard_normal(1000) * 0.5, requires_grad=True)
    named = 0
    for seed in range(20):
        try:
            mf.gradcheck(TanhWrongAtOneElement.apply, (x,), n_elements=500, n_directions=0, seed=seed)
        except mf.GradcheckError as e:
            assert "(537,)" in str(e)
            named += 1
    assert 3 <= named <= 17


def test_gradcheck_element_choice_is_validated():
    x = mf.tensor(np.zeros((3, 4)), requires_grad=True)
    with pytest.raises(IndexError, match=r"element \(3, 0\) is not an index of an input of shape \(3, 4\)"):
        mf.gradcheck(lambda t: t * 2, (x,), elements=[(3, 0)])
    with pytest.raises(IndexError, match="flat element 12 is out of range"):
        mf.gradcheck(lambda t: t * 2, (x,), elements=[12])
    with pytest.raises(ValueError, match=r"elements names inputs \[1\]"):
        mf.gradcheck(lambda t: t * 2, (x,), elements={1: [0]})
