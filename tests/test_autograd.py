"""The engine's semantics: accumulation, graph freeing, hooks, no_grad, custom Functions, dtypes, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import functional as F
from minift.autograd.ops_elementwise import unbroadcast

from .strategies import broadcastable_pair, float_arrays


def test_shared_input_gradients_add_up():
    # y = x·x + x  ⇒  dy/dx = 2x + 1 (x reaches y along two paths)
    x = mf.tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.array([1.5, -2.0]) + 1)


def test_leaf_gradients_accumulate_across_backward_calls():
    x = mf.tensor(np.array([3.0]), requires_grad=True)
    (x * 2).sum().backward()
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad, [7.0])


def test_graph_is_freed_after_backward_and_can_be_retained():
    x = mf.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.exp() * 3).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 3 * np.exp([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_needs_a_scalar_or_an_explicit_grad():
    x = mf.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar output"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad, [2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="expected the output's shape"):
        (x * 2).backward(np.ones(2))


def test_no_grad_builds_no_graph_and_detach_cuts_it():
    x = mf.tensor(np.ones(2), requires_grad=True)
    with mf.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    z = (x * 2).detach() * x
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0])  # the detached factor is a constant


def test_register_hook_sees_and_can_replace_the_gradient():
    seen = []
    x = mf.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    h.register_hook(lambda g: g * 10)
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * np.array([1.0, 2.0]))  # d(h²)/dh = 2h
    np.testing.assert_allclose(x.grad, 10 * 2 * 3 * np.array([1.0, 2.0]) * 3)


def test_retain_grad_keeps_an_intermediate_gradient():
    x = mf.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * 3 * np.array([1.0, 2.0]))


def test_deep_chains_do_not_hit_the_recursion_limit():
    x = mf.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000], rtol=1e-9)


class Cube(mf.Function):
    """y = x³, dy/dx = 3x² — a user-defined op, as lessons and coursework write them."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (3 * x * x * g,)


def test_user_defined_function_joins_the_graph_and_gradchecks():
    x = mf.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    assert mf.gradcheck(lambda t: Cube.apply(t).tanh(), (x,))
    y = Cube.apply(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * np.array([0.5, -1.0, 2.0]) ** 2)


def test_a_function_returning_a_wrongly_shaped_gradient_is_named():
    class Bad(mf.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return (g.sum(),)

    x = mf.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="Bad.backward gave a gradient of shape"):
        Bad.apply(x).sum().backward()


@pytest.mark.task("autograd.unbroadcast")
@given(pair=broadcastable_pair(), data=st.data())
def test_unbroadcast_is_the_adjoint_of_broadcasting(pair, data):
    # ⟨broadcast(a), G⟩ = ⟨a, unbroadcast(G)⟩ for every a and G: the defining property of an adjoint
    sa, sb = pair
    out = np.broadcast_shapes(sa, sb)
    a = data.draw(float_arrays(sa))
    g = data.draw(float_arrays(out))
    r = unbroadcast(g, sa)
    assert r.shape == tuple(sa)
    np.testing.assert_allclose((np.broadcast_to(a, out) * g).sum(), (a * r).sum(), atol=1e-9)


@pytest.mark.task("autograd.unbroadcast")
def test_unbroadcast_example():
    np.testing.assert_allclose(unbroadcast(np.ones((4, 2, 3)), (2, 1)), np.full((2, 1), 12.0))
    x = mf.tensor(np.ones((2, 1)), requires_grad=True)
    (x + mf.tensor(np.ones((4, 2, 3)))).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 1), 12.0))


def test_dtypes_default_float32_and_float64_is_kept():
    assert mf.tensor([1.0, 2.0]).dtype == np.float32
    assert mf.tensor(np.array([1.0])).dtype == np.float64
    assert mf.tensor(np.float64(1.0)).dtype == np.float64
    assert mf.tensor([1, 2]).dtype.kind == "i"
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    assert (x * 2.5 + 1).dtype == np.float32  # Python scalars do not promote
    mf.set_default_dtype("float64")
    assert mf.tensor([1.0]).dtype == np.float64
    assert mf.nn.Linear(2, 3).weight.dtype == np.float64


def test_cast_keeps_the_graph_and_casts_the_gradient_back():
    x = mf.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        mf.tensor([1, 2], requires_grad=True)


def test_conversions():
    x = mf.tensor(np.array([[1.0, 2.0]]))
    assert x.numpy().tolist() == [[1.0, 2.0]]
    assert x.sum().item() == 3.0
    assert x.to("cpu").device == "cpu"
    with pytest.raises(ValueError, match="one element"):
        x.item()
    with pytest.raises(ValueError, match="device must be"):
        x.to("tpu")


def test_in_place_assignment_into_a_trainable_tensor_is_refused():
    x = mf.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        x[0] = 5.0
    with mf.no_grad():
        x[0] = 5.0
    assert x.numpy()[0] == 5.0


def _ones(*shape):
    return mf.tensor(np.ones(shape))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: _ones(2, 3) @ _ones(2, 3), ValueError,
         r"matmul: shapes \(2, 3\) and \(2, 3\) do not align: the last dim of the first \(3\)"),
        (lambda: _ones(6).reshape(4, 2), ValueError, "cannot reshape a tensor of shape"),
        (lambda: F.cross_entropy(_ones(2, 3), np.array([0, 3])), IndexError,
         r"target 3 is out of range for 3 classes: expected \[0, 3\) or ignore_index=-100"),
        (lambda: F.cross_entropy(_ones(2, 3), np.array([0.0, 1.0])), TypeError, "integer class indices"),
        (lambda: F.cross_entropy(_ones(2, 3), np.array([0, 1, 2])), ValueError,
         r"need target of shape \(2,\)"),
        (lambda: F.embedding(np.array([0, 7]), _ones(5, 2)), IndexError,
         r"token id 7 is out of range for a vocabulary of 5: expected \[0, 5\)"),
        (lambda: F.linear(_ones(2, 3), _ones(4, 5)), ValueError, "input has 3 features"),
        (lambda: F.layer_norm(_ones(2, 3), 4), ValueError, "normalized_shape"),
        (lambda: F.dropout(_ones(2), 1.5), ValueError, r"dropout probability must be in \[0, 1\], got 1.5"),
        (lambda: F.gelu(_ones(2), "fast"), ValueError, "approximate must be"),
        (lambda: _ones(2, 3).sum(axis=2), ValueError, "axis 2 is out of range"),
        (lambda: _ones(2, 3).broadcast_to((4, 3, 2)), ValueError, "cannot broadcast shape"),
        (lambda: mf.stack([_ones(2), _ones(3)]), ValueError, "one shape"),
        (lambda: mf.split(_ones(5), [2, 2]), ValueError, "add up to 4"),
        (lambda: F.mse_loss(_ones(2), _ones(3)), ValueError, "target shape"),
        (lambda: mf.where(np.array([1, 0]), _ones(2), 0.0), TypeError, "cond must be boolean"),
        (lambda: _ones(3)[5], IndexError, "invalid for a tensor of shape"),
        (lambda: _ones(3).clip(), ValueError, "at least one of min and max"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_cross_entropy_all_ignored_is_nan_like_pytorch():
    with np.errstate(invalid="ignore"):
        loss = F.cross_entropy(mf.tensor(np.ones((2, 3))), np.array([-100, -100]))
    assert np.isnan(loss.item())
