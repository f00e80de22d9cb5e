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


@pytest.mark.task("gradcheck.central_difference")
def test_gradcheck_passes_a_right_backward_with_several_inputs():
    a = mf.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    b = mf.tensor(np.random.default_rng(1).standard_normal((4, 2)), requires_grad=True)
    c = mf.tensor(np.ones(2))  # not checked: does not require grad
    assert mf.gradcheck(lambda a, b, c: (a @ b + c).tanh(), (a, b, c))


def test_gradcheck_uses_random_directions_for_large_inputs_and_still_catches_errors():
    x = mf.tensor(np.random.default_rng(0).standard_normal(1000) * 0.5, requires_grad=True)
    assert mf.gradcheck(lambda t: t.tanh(), (x,))
    with pytest.raises(mf.GradcheckError, match="random direction"):
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
