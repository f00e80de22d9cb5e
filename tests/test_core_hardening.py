"""Hardening of the core (issue 6): one rule for indices, exact layer norm of constant rows, clear errors.

* Indices: every op that takes class or position indices accepts exactly [0, n) (the losses also accept
  their ``ignore_index``); anything else is an IndexError naming the bad value and the range.
* Layer norm: a constant row normalizes to exactly ``bias`` (0 without one), in float32 and float64.
* Empty inputs, misaligned matmuls and mixed float dtypes get minift's own messages.
"""
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import functional as F
from minift import nn
from minift.models import TransformerConfig, TransformerModel

from .strategies import float_arrays

# ------------------------------------------------------------------ issue 8: one rule for indices

N_CLASSES = 3


def _ops_taking_indices():
    """(name, call(bad_index)) for every op that reads an index along an axis of size N_CLASSES."""
    scores = mf.tensor(np.zeros((2, N_CLASSES)))
    log_probs = F.log_softmax(scores, axis=1)
    table = mf.tensor(np.ones((N_CLASSES, 4)))
    mf.seed(0)
    model = TransformerModel(TransformerConfig(vocab_size=N_CLASSES, hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2))
    return [
        ("F.gather", lambda bad: F.gather(scores, 1, np.array([[0], [bad]]))),
        ("F.take_along_axis", lambda bad: F.take_along_axis(scores, np.array([[bad], [0]]), 1)),
        ("Tensor.gather", lambda bad: scores.gather(1, np.array([[bad], [1]]))),
        ("F.cross_entropy", lambda bad: F.cross_entropy(scores, np.array([0, bad]))),
        ("F.nll_loss", lambda bad: F.nll_loss(log_probs, np.array([bad, 1]))),
        ("F.embedding", lambda bad: F.embedding(np.array([0, bad]), table)),
        ("TransformerModel", lambda bad: model(np.array([[0, bad]]))),
    ]


@pytest.mark.parametrize("bad", [-1, -2, N_CLASSES, N_CLASSES + 4])
@pytest.mark.parametrize("name, call", _ops_taking_indices(), ids=lambda v: v if isinstance(v, str) else "")
def test_an_index_outside_0_to_n_is_an_index_error_naming_the_value_and_the_range(name, call, bad):
    # NumPy would wrap -1 to the last class; PyTorch raises, and so does minift, in the same words everywhere
    with pytest.raises(IndexError, match=rf"(?<![\d-]){bad}\b.*\[0, {N_CLASSES}\)"):
        call(bad)


@pytest.mark.parametrize("name, call", _ops_taking_indices(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_index_in_0_to_n_is_accepted(name, call):
    for good in range(N_CLASSES):
        call(good)


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_ignore_index_is_the_one_negative_value_the_losses_accept(loss):
    scores = mf.tensor(np.array([[0.0, 1.0, 2.0], [3.0, 1.0, 0.0]]))
    inputs = scores if loss is F.cross_entropy else F.log_softmax(scores, axis=1)
    full = loss(inputs, np.array([2, 0]), reduction="none").numpy()
    np.testing.assert_allclose(loss(inputs, np.array([2, -100])).item(), full[0])
    np.testing.assert_allclose(loss(inputs, np.array([-7, 0]), ignore_index=-7).item(), full[1])
    with pytest.raises(IndexError, match=r"-100 .*\[0, 3\) or ignore_index=-7"):
        loss(inputs, np.array([-100, 0]), ignore_index=-7)


def test_nll_loss_checks_its_target_like_cross_entropy():
    log_probs = F.log_softmax(mf.tensor(np.zeros((2, 3))), axis=1)
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(log_probs, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target of shape \(2,\)"):
        F.nll_loss(log_probs, np.array([0, 1, 2]))


@given(data=st.data())
def test_gather_rejects_any_array_holding_one_bad_index(data):
    n = data.draw(st.integers(1, 5))
    rows = data.draw(st.integers(1, 4))
    index = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=rows, max_size=rows)))[:, None]
    bad = data.draw(st.one_of(st.integers(-10, -1), st.integers(n, n + 10)))
    index[data.draw(st.integers(0, rows - 1)), 0] = bad
    with pytest.raises(IndexError, match=rf"index {bad} is out of range .*\[0, {n}\)"):
        F.gather(mf.tensor(np.zeros((rows, n))), 1, index)


# ------------------------------------------------------------------ issue 12: layer norm of a constant row


def _layer_norm_exact(x, weight, bias, eps):
    """An independent layer norm: mean and variance in exact rational arithmetic, one row at a time.

    Exact, so a constant row's centered values are exactly 0 here too (float64 NumPy's two-pass mean is
    not: the mean of identical values can round away from the value).
    """
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    out = np.empty_like(rows)
    for i, row in enumerate(rows):  # a plain loop over Python Fractions: a different way to the same numbers
        values = [Fraction(float(v)) for v in row]
        mean = sum(values) / len(values)
        centered = [v - mean for v in values]
        variance = sum(c * c for c in centered) / len(values)
        out[i] = np.array([float(c) for c in centered]) / np.sqrt(float(variance + Fraction(eps)))
    return out.reshape(x.shape) * weight.astype(np.float64) + bias.astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(value=st.floats(-1e4, 1e4, allow_nan=False, width=32), width=st.integers(1, 800), data=st.data())
def test_a_constant_row_normalizes_to_exactly_the_bias(dtype, value, width, data):
    x = mf.tensor(np.full((2, width), value, dtype=dtype))
    weight = data.draw(float_arrays((width,))).astype(dtype)
    bias = data.draw(float_arrays((width,))).astype(dtype)
    with_bias = F.layer_norm(x, width, mf.tensor(weight), mf.tensor(bias)).numpy()
    np.testing.assert_array_equal(with_bias, np.broadcast_to(bias, (2, width)))
    np.testing.assert_array_equal(F.layer_norm(x, width, mf.tensor(weight)).numpy(), 0.0)
    np.testing.assert_array_equal(F.layer_norm(x, width).numpy(), 0.0)


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 2e-5), (np.float64, 1e-12)])
@given(data=st.data())
def test_layer_norm_matches_an_exact_formula(dtype, tolerance, data):
    width = data.draw(st.integers(2, 40))
    offset = data.draw(st.sampled_from([0.0, 100.0, -3000.0]))  # a large mean: cancellation territory
    x = (data.draw(float_arrays((3, width))) + offset).astype(dtype)
    weight = data.draw(float_arrays((width,))).astype(dtype)
    bias = data.draw(float_arrays((width,))).astype(dtype)
    out = F.layer_norm(mf.tensor(x), width, mf.tensor(weight), mf.tensor(bias), eps=1e-5)
    assert out.dtype == dtype
    expected = _layer_norm_exact(x, weight, bias, 1e-5)
    atol = tolerance * (1 + np.abs(weight).max())
    np.testing.assert_allclose(out.numpy(), expected, rtol=tolerance, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gradient_at_a_constant_row_is_the_formula_with_x_hat_zero(dtype):
    # x̂ = 0 on a constant row, so ∂L/∂x = (ĝ − mean ĝ)/√ε exactly, with ĝ = g·w
    width, eps = 7, 1e-5
    x = mf.tensor(np.full((1, width), 0.1, dtype=dtype), requires_grad=True)
    weight = np.linspace(-1, 2, width).astype(dtype)
    g = np.arange(width, dtype=dtype)[None, :]
    F.layer_norm(x, width, mf.tensor(weight), eps=eps).backward(g)
    g_hat = (g * weight).astype(np.float64)
    expected = (g_hat - g_hat.mean()) / np.sqrt(eps)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(value=st.floats(-1e4, 1e4, allow_nan=False, width=32), width=st.integers(1, 800))
def test_the_variance_of_a_constant_row_is_exactly_zero(dtype, value, width):
    x = mf.tensor(np.full((2, width), value, dtype=dtype))
    np.testing.assert_array_equal(x.var(axis=1).numpy(), 0.0)


# ------------------------------------------------------------------ issue 14: empty inputs, shapes, dtypes


def _tiny_model():
    mf.seed(0)
    return TransformerModel(TransformerConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1,
                                              num_attention_heads=2))


@pytest.mark.parametrize("shape, words", [
    ((1, 0), "no tokens"), ((0, 3), "empty batch"), ((0, 0), "empty batch"),
])
def test_empty_input_ids_are_a_clear_error(shape, words):
    with pytest.raises(ValueError, match=rf"input_ids of shape {re.escape(str(shape))}.*{words}"):
        _tiny_model()(np.zeros(shape, dtype=np.int64))


def test_matmul_names_the_dims_that_do_not_align():
    message = ("matmul: shapes (2, 3, 4) and (2, 5, 6) do not align: the last dim of the first (4) "
               "must equal the second-to-last of the second (5)")
    with pytest.raises(ValueError, match=re.escape(message)):
        mf.tensor(np.ones((2, 3, 4))) @ mf.tensor(np.ones((2, 5, 6)))
    with pytest.raises(ValueError, match=re.escape("the last dim of the first (3) must equal the only dim")):
        mf.tensor(np.ones((2, 3))) @ mf.tensor(np.ones(4))


def test_matmul_names_batch_dims_that_do_not_broadcast():
    message = ("matmul: batch dims (2,) and (3,) of shapes (2, 3, 4) and (3, 4, 5) do not broadcast "
               "(each pair of sizes must be equal or one of them 1)")
    with pytest.raises(ValueError, match=re.escape(message)):
        mf.tensor(np.ones((2, 3, 4))) @ mf.tensor(np.ones((3, 4, 5)))


@pytest.mark.parametrize("make_layer, op", [
    (lambda: nn.Linear(4, 2), "linear"),
    (lambda: nn.LayerNorm(4), "layer_norm"),
    (lambda: nn.RMSNorm(4), "rms_norm"),
])
def test_a_float64_input_to_a_float32_layer_says_how_to_fix_it(make_layer, op):
    # PyTorch refuses too ("mat1 and mat2 must have the same dtype"); promoting would make the model float64
    layer = make_layer()
    x = mf.tensor(np.ones((3, 4)))  # float64
    expected = rf"{op} got a float64 input but its weight is float32: .*model.double\(\).*x.float\(\)"
    with pytest.raises(TypeError, match=expected):
        layer(x)
    assert layer(x.float()).dtype == np.float32
    assert layer.double()(x).dtype == np.float64
    with pytest.raises(TypeError, match=rf"{op} got a float32 input but its weight is float64"):
        layer(x.float())
    assert layer.float()(x.float()).dtype == np.float32


def test_functional_layers_refuse_mixed_dtypes_too():
    x = mf.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="linear got a float64 input but its bias is float32"):
        F.linear(x, mf.tensor(np.ones((4, 3))), mf.tensor(np.ones(4, dtype=np.float32)))
    with pytest.raises(TypeError, match="linear got a int64 input"):
        F.linear(mf.tensor(np.ones((2, 3), dtype=np.int64)), mf.tensor(np.ones((4, 3))))


def test_module_to_accepts_a_dtype_like_pytorch():
    layer = nn.Linear(2, 2)
    assert layer.to(np.float64) is layer and layer.weight.dtype == np.float64
    assert layer.to("float32").weight.dtype == np.float32
    assert layer.to(dtype="float64").bias.dtype == np.float64
    with pytest.raises(ValueError, match="device must be"):
        layer.to("tpu")


def test_attention_with_float32_weights_refuses_a_float64_input():
    from minift.nn.attention import MultiHeadAttention

    attention = MultiHeadAttention(TransformerConfig(vocab_size=5, hidden_size=8, num_attention_heads=2))
    with pytest.raises(TypeError, match="got a float64 input but its weight is float32"):
        attention(mf.tensor(np.ones((1, 3, 8))))


def test_a_gradient_set_by_hand_must_have_the_tensors_shape():
    p = mf.nn.Parameter(np.zeros((2, 3)))
    p.grad = np.ones((2, 3))
    assert p.grad.shape == (2, 3)
    p.grad = [[1, 2, 3], [4, 5, 6]]  # any array-like, as the tensor's dtype
    assert p.grad.dtype == p.data.dtype and p.grad[1, 2] == 6
    with pytest.raises(ValueError, match=r"a gradient of shape \(3, 2\) for a tensor of shape \(2, 3\)"):
        p.grad = np.ones((3, 2))
    p.grad = None
    assert p.grad is None


def test_copy_writes_in_place_keeps_the_dtype_and_broadcasts_as_pytorch():
    p = mf.nn.Parameter(np.zeros((2, 3), dtype=np.float32))
    before = p.data
    assert p.copy_(np.arange(6.0).reshape(2, 3)) is p
    assert p.data is before and p.dtype == np.float32 and p.data[1, 2] == 5  # the same array, written into
    p.copy_(mf.tensor(np.ones(3)))  # a Tensor, broadcast over the rows
    np.testing.assert_array_equal(p.numpy(), np.ones((2, 3)))
    with pytest.raises(ValueError):
        p.copy_(np.ones(4))  # does not broadcast to (2, 3)
