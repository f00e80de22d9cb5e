"""Reductions: sum, mean, max, var, logsumexp.

The backward of a reduction *expands* the gradient back over the reduced axes: every input element
contributed to the output once, with the local weight of the op (1 for sum, 1/N for mean, …).
"""
from __future__ import annotations

from ..backend import xp
from .function import Function


def normalize_axes(axis, ndim):
    """``axis`` (None | int | tuple) as a sorted tuple of non-negative axes; a clear error if out of range."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
        out.append(ax % max(ndim, 1))
    return tuple(sorted(out))


def expand_reduced(g, shape, axes, keepdims):
    """Put size-1 axes back where a reduction removed them, then broadcast to ``shape``."""
    if not keepdims:
        # reduced shape -> shape with a 1 on each reduced axis
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return xp.broadcast_to(g, shape)


class Sum(Function):
    """y = Σ_axes a;  ∂y/∂a = 1 for every summed element."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = normalize_axes(axis, a.ndim)
        ctx.shape = a.shape
        ctx.keepdims = keepdims
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims).copy(),)


class Mean(Function):
    """y = (1/N) Σ_axes a;  ∂y/∂a = 1/N, N the number of elements reduced."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = normalize_axes(axis, a.ndim)
        ctx.shape = a.shape
        ctx.keepdims = keepdims
        ctx.n = 1
        for ax in ctx.axes:
            ctx.n *= a.shape[ax]
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.n,)


class Max(Function):
    """y = max_axes a;  the gradient goes to the arg-max, split evenly between ties (PyTorch's ``amax``)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        axes = normalize_axes(axis, a.ndim)
        if a.size == 0:
            raise ValueError("max() of an empty tensor")
        y = a.max(axis=axes, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axes = axes
        ctx.keepdims = keepdims
        # (…, 1 on each reduced axis, …) -> those axes dropped
        return y if keepdims else y.reshape(tuple(n for i, n in enumerate(a.shape) if i not in axes))

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        hit = (a == y).astype(g.dtype)
        hit /= hit.sum(axis=ctx.axes, keepdims=True)
        return (hit * expand_reduced(g, a.shape, ctx.axes, ctx.keepdims),)


class Var(Function):
    """y = (1/(N − ddof)) Σ (a − ā)²;  ∂y/∂a = 2(a − ā)/(N − ddof).

    ``ddof=0`` as NumPy (the biased variance layer norm uses); PyTorch's ``var`` defaults to
    ``correction=1``: pass ``ddof=1`` for that.
    Centred as in ``LayerNorm``: first subtract one element a₀ of each reduced slice, then the mean of
    what is left, a − ā = (a − a₀) − mean(a − a₀); a constant slice has variance exactly 0 (the mean of
    identical float32 values need not round back to the value, and the residue would be squared and kept).
    """

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False, ddof=0):
        axes = normalize_axes(axis, a.ndim)
        n = 1
        for ax in axes:
            n *= a.shape[ax]
        first_on_axes = tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))
        first = a[first_on_axes]  # a₀: size 1 along the reduced axes
        centered = a - first  # exactly 0 on a constant slice
        centered -= centered.mean(axis=axes, keepdims=True)  # a − ā
        ctx.save_for_backward(centered)
        ctx.axes = axes
        ctx.keepdims = keepdims
        ctx.denom = n - ddof
        return (centered * centered).sum(axis=axes, keepdims=keepdims) / (n - ddof)

    @staticmethod
    def backward(ctx, g):
        (c,) = ctx.saved_tensors
        return (2 * c / ctx.denom * expand_reduced(g, c.shape, ctx.axes, ctx.keepdims),)


class LogSumExp(Function):
    """y = log Σ eᵃ, computed as m + log Σ e^{a−m} with m = max a (no overflow);  ∂y/∂a = softmax(a).

    A slice that is all −∞ gives −∞ (m is replaced by 0 there, so no −∞ − (−∞) = NaN).
    """

    @staticmethod
    def forward(ctx, a, axis=-1, keepdims=False):
        axes = normalize_axes(axis, a.ndim)
        m = a.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        y = m + xp.log(xp.exp(a - m).sum(axis=axes, keepdims=True))
        ctx.save_for_backward(a, y)
        ctx.axes = axes
        ctx.keepdims = keepdims
        # (…, 1 on each reduced axis, …) -> those axes dropped
        return y if keepdims else y.reshape(tuple(n for i, n in enumerate(a.shape) if i not in axes))

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        return (xp.exp(a - y) * expand_reduced(g, a.shape, ctx.axes, ctx.keepdims),)
