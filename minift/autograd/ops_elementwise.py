"""Elementwise ops and their vector-Jacobian products.

For an elementwise ``y = f(a, b)`` with broadcasting, the chain rule is ``dL/da = unbroadcast(g * ∂f/∂a)``:
the local derivative times the incoming gradient ``g``, then summed back over every axis along which
``a`` was broadcast (see ``unbroadcast``).
"""
from __future__ import annotations

import math

from ..backend import erf, map_blocks, xp
from .function import Function


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of broadcasting.

    Broadcasting copies an input along (1) new leading axes and (2) axes where it had size 1. Every
    copy received part of the gradient, so the input's gradient is the *sum* over those axes.

        unbroadcast(ones((4, 2, 3)), (2, 1)) == full((2, 1), 12.)   # 4 leading copies × 3 along axis 2
    """
    # TASK autograd.unbroadcast: reduce a broadcast gradient back to the input's shape
    # BEGIN SOLUTION
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad  # (1) new leading axes
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)  # (2) size-1 axes
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)  # back to the input's shape
    # END SOLUTION


class Add(Function):
    """y = a + b;  ∂y/∂a = 1, ∂y/∂b = 1."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    """y = a − b;  ∂y/∂a = 1, ∂y/∂b = −1."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


def _kept_for(x, needed):
    """``x`` when a gradient needs it; otherwise a zero-stride view of one zero with x's shape (no memory): the
    gradient it would feed belongs to an input that needs none, and the engine drops it."""
    return x if needed else xp.broadcast_to(xp.zeros((), dtype=x.dtype), x.shape)


class Mul(Function):
    """y = a · b;  ∂y/∂a = b, ∂y/∂b = a.

    Only what a gradient needs is kept: ∂/∂a needs b, ∂/∂b needs a. So y = x · s with a constant s keeps s,
    not x — as PyTorch does; LoRA's ``B(A(x)) · scaling`` would otherwise hold a copy of B(A(x)) per layer.
    """

    @staticmethod
    def forward(ctx, a, b):
        needs_a, needs_b = ctx.needs_input_grad[:2]
        ctx.save_for_backward(_kept_for(a, needs_b), _kept_for(b, needs_a))
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)
        # END SOLUTION


class Div(Function):
    """y = a / b;  ∂y/∂a = 1/b, ∂y/∂b = −a/b²."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape)
        # END SOLUTION


class Pow(Function):
    """y = aᵇ;  ∂y/∂a = b·aᵇ⁻¹, ∂y/∂b = aᵇ·ln a (only where a > 0)."""

    @staticmethod
    def forward(ctx, a, b):
        y = a**b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        ga = unbroadcast(g * b * a ** (b - 1), a.shape)
        gb = None
        if ctx.needs_input_grad[1]:
            safe = xp.where(a > 0, a, 1)
            gb = unbroadcast(g * y * xp.log(safe) * (a > 0), b.shape)
        return ga, gb


class Neg(Function):
    """y = −a."""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class Exp(Function):
    """y = eᵃ;  ∂y/∂a = eᵃ = y (so we save the output, not the input)."""

    @staticmethod
    def forward(ctx, a):
        y = xp.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return (g * y,)
        # END SOLUTION


class Log(Function):
    """y = ln a;  ∂y/∂a = 1/a."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return (g / a,)
        # END SOLUTION


class Sqrt(Function):
    """y = √a;  ∂y/∂a = 1/(2√a)."""

    @staticmethod
    def forward(ctx, a):
        y = xp.sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g / (2 * y),)


class Tanh(Function):
    """y = tanh a;  ∂y/∂a = 1 − y²."""

    @staticmethod
    def forward(ctx, a):
        y = xp.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return (g * (1 - y * y),)
        # END SOLUTION


def sigmoid_array(a):
    """σ(a) = 1/(1+e^{−a}) on a raw array, computed without overflow: e^{−|a|} never exceeds 1.

    Shared by Sigmoid, SiLU and the fused losses that need σ (BCE-with-logits, log-sigmoid).
    """
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    """y = σ(a);  ∂y/∂a = y(1 − y)."""

    @staticmethod
    def forward(ctx, a):
        y = sigmoid_array(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        # TASK ops.elementwise_backward: local derivative times the incoming gradient
        # BEGIN SOLUTION
        return (g * y * (1 - y),)
        # END SOLUTION


class Relu(Function):
    """y = max(a, 0);  ∂y/∂a = 1[a > 0] (0 at the kink, as PyTorch)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp.maximum(a, 0)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * (a > 0),)


class Abs(Function):
    """y = |a|;  ∂y/∂a = sign(a) (0 at 0, as PyTorch)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * xp.sign(a),)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Gelu(Function):
    """GELU(a) = a·Φ(a), Φ the standard normal CDF.

    exact ("none"):  Φ(a) = ½(1 + erf(a/√2)),            ∂/∂a = Φ(a) + a·φ(a),  φ(a) = e^{−a²/2}/√(2π)
    "tanh":          ½a(1 + tanh u), u = √(2/π)(a + 0.044715a³),
                     ∂/∂a = ½(1 + tanh u) + ½a(1 − tanh²u)·√(2/π)(1 + 3·0.044715a²)
    The forward saves Φ(a) (or tanh u) so the backward does not recompute the expensive part.

    Speed: each formula is a chain of elementwise steps, run by ``map_blocks`` on cache-sized blocks on the
    worker threads, in place where it can (one pass over main memory instead of one per step); in float32
    the erf is the fast rational one of ``backend.erf`` (error ≤ 5e-7). The steps are the formulas above.
    """

    @staticmethod
    def forward(ctx, a, approximate="none"):
        ctx.approximate = approximate
        a = xp.ascontiguousarray(a).reshape(a.shape)  # (reshape: a 0-d input stays 0-d)
        saved, y = xp.empty_like(a), xp.empty_like(a)  # saved: Φ(a) (exact) or tanh u (tanh)
        map_blocks(_gelu_tanh_forward if approximate == "tanh" else _gelu_erf_forward, [a], [saved, y])
        ctx.save_for_backward(a, saved)
        return y

    @staticmethod
    def backward(ctx, g):
        a, saved = ctx.saved_tensors
        # back to a's shape: ascontiguousarray makes a 0-d g (1,)
        g = xp.ascontiguousarray(g, dtype=a.dtype).reshape(a.shape)
        ga = xp.empty_like(a)
        map_blocks(_gelu_tanh_backward if ctx.approximate == "tanh" else _gelu_erf_backward, [a, saved, g], [ga])
        return (ga,)


def _gelu_erf_forward(a, cdf, y):
    """cdf = Φ(a) = ½(1 + erf(a/√2)),  y = a·Φ(a)."""
    xp.multiply(a, 1 / math.sqrt(2.0), out=y)  # y as scratch for a/√2
    erf(y, out=cdf)
    cdf += 1
    cdf *= 0.5
    xp.multiply(a, cdf, out=y)


def _gelu_erf_backward(a, cdf, g, ga):
    """ga = g·(Φ(a) + a·φ(a)),  φ(a) = e^{−a²/2}/√(2π)."""
    xp.multiply(a, a, out=ga)
    ga *= -0.5
    xp.exp(ga, out=ga)
    ga *= _INV_SQRT_2PI
    ga *= a
    ga += cdf
    ga *= g


def _gelu_tanh_forward(a, t, y):
    """t = tanh u, u = √(2/π)·a·(1 + 0.044715a²);  y = ½a(1 + t)."""
    xp.multiply(a, a, out=t)
    t *= 0.044715 * _SQRT_2_OVER_PI
    t += _SQRT_2_OVER_PI
    t *= a
    xp.tanh(t, out=t)
    xp.add(t, 1, out=y)
    y *= a
    y *= 0.5


def _gelu_tanh_backward(a, t, g, ga):
    """ga = g·(½(1 + t) + ½a(1 − t²)·√(2/π)(1 + 3·0.044715a²))."""
    xp.multiply(a, a, out=ga)
    ga *= 3 * 0.044715 * _SQRT_2_OVER_PI
    ga += _SQRT_2_OVER_PI  # √(2/π)(1 + 3·0.044715a²)
    ga *= a
    ga *= 0.5
    ga *= 1 - t * t  # ½a(1 − t²)·√(2/π)(…)
    ga += 0.5 * (1 + t)
    ga *= g


class Silu(Function):
    """SiLU(a) = a·σ(a) (a.k.a. swish);  ∂/∂a = σ(a)(1 + a(1 − σ(a)))."""

    @staticmethod
    def forward(ctx, a):
        s = sigmoid_array(a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved_tensors
        return (g * s * (1 + a * (1 - s)),)


class Clip(Function):
    """y = min(max(a, lo), hi);  ∂y/∂a = 1 inside [lo, hi], 0 outside (PyTorch's clamp)."""

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        ctx.bounds = (lo, hi)
        return xp.clip(a, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        keep = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            keep &= a >= lo
        if hi is not None:
            keep &= a <= hi
        return (g * keep,)


class Maximum(Function):
    """y = max(a, b) elementwise; the gradient goes to the larger input, half to each on ties (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        wa = ((a > b) + 0.5 * (a == b)).astype(g.dtype)
        return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)


class Minimum(Function):
    """y = min(a, b) elementwise; the gradient goes to the smaller input, split in half on ties."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        wa = ((a < b) + 0.5 * (a == b)).astype(g.dtype)
        return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)


class Where(Function):
    """y = a where cond else b;  the gradient is routed through the same mask."""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (a.shape, b.shape)
        return xp.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        zero = xp.zeros((), dtype=g.dtype)
        return None, unbroadcast(xp.where(cond, g, zero), sa), unbroadcast(xp.where(cond, zero, g), sb)


class Cast(Function):
    """y = x in another dtype (``Tensor.to(dtype=…)``, ``.float()``, ``.double()``).

    The values do not change (up to rounding), so ∂y/∂x = 1: the gradient is cast back to the input's dtype.
    """

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype), None
