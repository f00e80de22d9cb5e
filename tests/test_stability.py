"""Numerical stability: the fused ops stay finite where the textbook formulas overflow."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import functional as F


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(signs=st.lists(st.sampled_from([-1.0, 1.0, 0.5]), min_size=2, max_size=6))
def test_softmax_family_is_finite_for_huge_logits(dtype, signs):
    z = mf.tensor((np.array(signs) * 1e4).astype(dtype)[None, :], requires_grad=True)
    smoothed_loss = F.cross_entropy(z, np.array([0]), label_smoothing=0.1)
    for out in (F.softmax(z), F.log_softmax(z), F.logsumexp(z), smoothed_loss):
        assert np.all(np.isfinite(out.numpy())), out
        z.grad = None
        out.sum().backward()
        assert np.all(np.isfinite(z.grad))
    p = F.softmax(z).numpy()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)


def test_cross_entropy_of_a_confident_right_answer_is_zero_not_nan():
    z = mf.tensor(np.array([[1e4, -1e4, 0.0]]))
    assert F.cross_entropy(z, np.array([0])).item() == 0.0
    np.testing.assert_allclose(F.cross_entropy(z, np.array([1])).item(), 2e4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_logsigmoid_and_bce_are_finite_at_extremes(dtype):
    x = mf.tensor(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=dtype), requires_grad=True)
    bce = F.binary_cross_entropy_with_logits(x, mf.tensor(np.ones(5, dtype=dtype)), "none")
    for out in (F.sigmoid(x), F.logsigmoid(x), bce):
        assert np.all(np.isfinite(out.numpy()))
        x.grad = None
        out.sum().backward()
        assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(F.logsigmoid(x).numpy()[0], -1e4)


def test_layer_norm_of_a_constant_row_is_zero_with_finite_gradients():
    x = mf.tensor(np.full((2, 8), 3.0), requires_grad=True)
    y = F.layer_norm(x, 8)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    (y * mf.tensor(np.arange(8.0))).sum().backward()
    assert np.all(np.isfinite(x.grad))


def test_rms_norm_of_a_zero_row_is_zero_with_finite_gradients():
    x = mf.tensor(np.zeros((2, 4)), requires_grad=True)
    y = F.rms_norm(x, 4)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    y.sum().backward()
    assert np.all(np.isfinite(x.grad))


def test_logsumexp_of_minus_infinity_rows():
    z = mf.tensor(np.array([[-np.inf, 0.0], [-np.inf, -np.inf]]))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = F.logsumexp(z, axis=1).numpy()
    assert out[0] == 0.0 and out[1] == -np.inf
