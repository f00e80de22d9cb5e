"""Fused ops: layers and losses with a closed-form backward.

Written as chains of primitives these would be correct but slow and memory hungry (every intermediate
saved) and, for softmax-like ops, numerically fragile. Each one here computes its forward in the stable
way and its backward from the formula derived once, by hand, in the docstring.
"""
from __future__ import annotations

import math

from ..backend import matmul, parallel_rows, rng, scatter_add_rows, xp
from .function import Function
from .ops_elementwise import sigmoid_array
from .ops_shape import check_index_range


class Softmax(Function):
    """y = softmax(x) = e^{x − max x} / Σ e^{x − max x} along ``axis``.

    Jacobian ∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ), so the VJP is   ∂L/∂x = y ⊙ (g − Σⱼ gⱼ yⱼ).
    """

    @staticmethod
    def forward(ctx, x, axis=-1):
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        # TASK fused.softmax_backward: the softmax vector-Jacobian product
        # BEGIN SOLUTION
        return (y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)),)
        # END SOLUTION


class LogSoftmax(Function):
    """y = x − logsumexp(x) along ``axis``;   ∂L/∂x = g − softmax(x) · Σⱼ gⱼ."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        m = x.max(axis=axis, keepdims=True)
        y = x - m - xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True),)


def _reduce(loss, reduction, count=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / (loss.size if count is None else count)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce_grad(g, shape, reduction, count, dtype):
    """The incoming gradient per element, for each reduction: g, g broadcast, or g / count."""
    if reduction == "none":
        return g
    scale = g if reduction == "sum" else g / count
    return xp.broadcast_to(xp.asarray(scale, dtype=dtype), shape)


class CrossEntropy(Function):
    """Cross-entropy of logits ``z`` (N, C) against class indices ``t`` (N,), as PyTorch's.

    With p = softmax(z), label smoothing ε and C classes, each row's loss is
        ℓ = −(1 − ε) log p_t − (ε/C) Σ_c log p_c
    Rows whose target is ``ignore_index`` contribute 0; ``mean`` divides by the number of the others.
    Every other target must lie in [0, C) (``check_index_range``: no NumPy-style wrapping).
    Gradient of a row:   ∂ℓ/∂z = p − (1 − ε)·onehot(t) − ε/C.
    """

    @staticmethod
    def forward(ctx, z, t, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
        n, c = z.shape
        check_index_range("cross_entropy", "target", t, c, where=f"{c} classes", ignore_index=ignore_index)
        valid = t != ignore_index
        safe_t = xp.where(valid, t, 0)
        p = xp.empty_like(z)  # (N, C): the shifted logits, then e^{shifted}, then the softmax, in place
        nll = xp.empty(n, dtype=z.dtype)  # −log p_t = log Σ e^{shifted} − shifted_t
        mean_logp = xp.empty(n, dtype=z.dtype) if label_smoothing else None  # (1/C) Σ_c log p_c

        def rows(i):  # rows i of the batch (a block of rows stays in the cache through every step)
            pi = p[i]
            xp.subtract(z[i], z[i].max(axis=1, keepdims=True), out=pi)  # the largest logit of each row is 0
            shifted_t = xp.take_along_axis(pi, safe_t[i][:, None], axis=1)[:, 0]
            shifted_mean = pi.mean(axis=1) if label_smoothing else None
            xp.exp(pi, out=pi)  # unnormalised for now
            sums = pi.sum(axis=1, keepdims=True)  # (rows, 1)
            lse = xp.log(sums[:, 0])  # log Σ e^{shifted}
            pi /= sums  # softmax: the backward needs p, so we keep p rather than log p
            nll[i] = lse - shifted_t
            if label_smoothing:
                mean_logp[i] = shifted_mean - lse

        parallel_rows(rows, n, c)
        if label_smoothing:
            loss = (1 - label_smoothing) * nll - label_smoothing * mean_logp
        else:
            loss = nll
        loss = xp.where(valid, loss, 0).astype(z.dtype)
        count = int(valid.sum())
        ctx.save_for_backward(p, safe_t, valid)
        ctx.eps = label_smoothing
        ctx.reduction = reduction
        ctx.count = count
        return _reduce(loss, reduction, count)

    @staticmethod
    def backward(ctx, g):
        p, t, valid = ctx.saved_tensors
        n, c = p.shape
        gi = _reduce_grad(g, (n,), ctx.reduction, ctx.count, p.dtype)  # (N,) upstream per row
        # TASK fused.cross_entropy_backward: gradient of cross-entropy w.r.t. the logits
        # BEGIN SOLUTION
        d = p - ctx.eps / c  # p − ε/C (a new array: p itself stays as saved)
        rows = xp.arange(n)
        d[rows, t] -= 1 - ctx.eps  # − (1 − ε)·onehot(t)
        d *= (gi * valid)[:, None]  # ignored rows get no gradient
        # END SOLUTION
        return d, None


class BCEWithLogits(Function):
    """ℓ = −[y log σ(x) + (1 − y) log(1 − σ(x))] = max(x, 0) − x·y + log(1 + e^{−|x|})  (stable form).

    ∂ℓ/∂x = σ(x) − y,   ∂ℓ/∂y = −x.
    """

    @staticmethod
    def forward(ctx, x, y, reduction="mean"):
        loss = xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))
        ctx.save_for_backward(x, y)
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        gi = _reduce_grad(g, x.shape, ctx.reduction, x.size, x.dtype)
        gy = -x * gi if ctx.needs_input_grad[1] else None
        return (sigmoid_array(x) - y) * gi, gy


class LogSigmoid(Function):
    """log σ(x) = min(x, 0) − log(1 + e^{−|x|});   ∂/∂x = 1 − σ(x) = σ(−x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (g * sigmoid_array(-x),)


class MSELoss(Function):
    """ℓ = (x − y)², reduced;   ∂ℓ/∂x = 2(x − y), ∂ℓ/∂y = −2(x − y)."""

    @staticmethod
    def forward(ctx, x, y, reduction="mean"):
        d = x - y
        ctx.save_for_backward(d)
        ctx.reduction = reduction
        return _reduce(d * d, reduction)

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        gd = 2 * d * _reduce_grad(g, d.shape, ctx.reduction, d.size, d.dtype)
        return gd, -gd


class LayerNorm(Function):
    """y = x̂·w + b,  x̂ = (x − μ)/√(σ² + ε), μ and σ² over the last ``k`` axes (biased variance).

    With N normalized elements, ĝ = g·w:
        ∂L/∂x = (1/√(σ²+ε)) · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))
        ∂L/∂w = Σ_batch g ⊙ x̂,   ∂L/∂b = Σ_batch g

    Centring, carefully. The mean of N identical float32 values need not round back to that value, and
    x − μ would keep the rounding (~1e-7·|x|), which the division by √(σ² + ε) ≈ √ε then blows up: a
    constant row of 7.77 came out as 3e-4·w instead of 0. So we first subtract the row's first element
    x₀ — exactly 0 on a constant row, whose mean is then exactly 0 too — and centre what is left:
        x − μ = (x − x₀) − mean(x − x₀)
    (the "shifted data" algorithm; it also keeps precision when |μ| ≫ σ). A constant row gives x̂ = 0 and
    y = b exactly, as in PyTorch. The backward needs no extra care: it reads the saved x̂ and 1/√(σ²+ε).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, k=1, eps=1e-5):
        axes = tuple(range(x.ndim - k, x.ndim))
        ctx.axes = axes
        rows, width = x.size // max(1, math.prod(x.shape[x.ndim - k:])), math.prod(x.shape[x.ndim - k:])
        x2 = x.reshape(rows, width)  # (…, normalized…) -> (rows, N): one row per normalized group
        xhat, y = xp.empty(x2.shape, dtype=x.dtype), xp.empty(x2.shape, dtype=x.dtype)
        rstd = xp.empty((rows, 1), dtype=x.dtype)
        w = None if weight is None else weight.reshape(-1)  # normalized shape -> (N,)
        b = None if bias is None else bias.reshape(-1)  # normalized shape -> (N,)

        def block(i):  # rows i, on a worker thread: every step below stays in the cache
            xc = x2[i] - x2[i, :1]  # x − x₀: exactly 0 on a constant row
            xc -= xc.mean(axis=1, keepdims=True)  # x − μ
            rstd[i] = 1.0 / xp.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)  # 1/√(σ² + ε)
            xp.multiply(xc, rstd[i], out=xhat[i])
            yi = y[i]
            yi[...] = xhat[i]
            if w is not None:
                yi *= w
            if b is not None:
                yi += b

        parallel_rows(block, rows, width)
        ctx.save_for_backward(xhat, rstd, w)
        ctx.shape = x.shape
        return y.reshape(x.shape)  # (rows, N) -> x's shape

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, w = ctx.saved_tensors
        g2 = g.reshape(xhat.shape)  # (rows, N)
        # (N,) -> the normalized shape (x's last k axes)
        gw = (g2 * xhat).sum(axis=0).reshape(ctx.shape[len(ctx.shape) - len(ctx.axes):]) if ctx.needs_input_grad[1] else None
        # likewise: (N,) -> the normalized shape
        gb = g2.sum(axis=0).reshape(ctx.shape[len(ctx.shape) - len(ctx.axes):]) if ctx.needs_input_grad[2] else None
        gx = xp.empty(xhat.shape, dtype=xhat.dtype)

        def block(i):
            gx[i] = layer_norm_input_grad(g2[i], xhat[i], rstd[i], w)

        parallel_rows(block, xhat.shape[0], xhat.shape[1])
        return gx.reshape(ctx.shape), gw, gb  # (rows, N) -> x's shape


def layer_norm_input_grad(g, xhat, rstd, w):
    """∂L/∂x of layer norm for rows of N normalized elements: g, x̂ (rows, N), 1/√(σ²+ε) (rows, 1), w (N,); the
    formula: see ``LayerNorm``."""
    # TASK fused.layer_norm_backward: closed-form gradient of layer norm w.r.t. its input
    # BEGIN SOLUTION
    gh = g * w if w is not None else g  # ĝ = ∂L/∂x̂
    mean_gh = gh.mean(axis=1, keepdims=True)  # mean(ĝ)
    mean_gh_xhat = (gh * xhat).mean(axis=1, keepdims=True)  # mean(ĝ ⊙ x̂)
    return rstd * (gh - mean_gh - xhat * mean_gh_xhat)
    # END SOLUTION


class RMSNorm(Function):
    """y = x̂·w,  x̂ = x/√(mean(x²) + ε) over the last ``k`` axes (no centring, no bias).

    With ĝ = g·w and r = 1/√(mean(x²)+ε):
        ∂L/∂x = r · (ĝ − x̂ · mean(ĝ ⊙ x̂)),   ∂L/∂w = Σ_batch g ⊙ x̂.
    Nothing is subtracted, so there is no mean whose rounding could survive: a zero row gives exactly 0
    (and a constant row c gives c/√(c² + ε), as it should).
    """

    @staticmethod
    def forward(ctx, x, weight, k=1, eps=1e-6):
        axes = tuple(range(x.ndim - k, x.ndim))
        r = 1.0 / xp.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
        xhat = x * r
        ctx.save_for_backward(xhat, r, weight)
        ctx.axes = axes
        return xhat * weight if weight is not None else xhat

    @staticmethod
    def backward(ctx, g):
        xhat, r, w = ctx.saved_tensors
        batch = tuple(range(xhat.ndim - len(ctx.axes)))
        gw = (g * xhat).sum(axis=batch) if ctx.needs_input_grad[1] else None
        # TASK fused.layer_norm_backward: closed-form gradient of RMS norm w.r.t. its input (see the docstring)
        # BEGIN SOLUTION
        gh = g * w if w is not None else g  # ĝ = ∂L/∂x̂
        gx = r * (gh - xhat * (gh * xhat).mean(axis=ctx.axes, keepdims=True))
        # END SOLUTION
        return gx, gw


class Dropout(Function):
    """y = x · m / (1 − p), m ~ Bernoulli(1 − p) per element ("inverted" dropout: E[y] = x).

    ∂y/∂x = m/(1 − p): the same mask, the same scale.
    """

    @staticmethod
    def forward(ctx, x, p=0.5):
        # float32 uniforms are enough to draw a Bernoulli(1 − p) and cost half of float64 ones; the mask
        # is kept as booleans (1 byte per element, not 4) and the scale as one number
        keep = rng().random(x.shape, dtype=xp.float32) >= p
        ctx.scale = x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(keep)
        y = x * keep
        y *= ctx.scale
        return y

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        gx = g * keep
        gx *= ctx.scale
        return (gx,)


class Embedding(Function):
    """y[..., :] = W[ids[...], :];  ∂L/∂W[v] = Σ over positions with id v of g (scatter-add).

    Every id must lie in [0, V) (``check_index_range``: no NumPy-style wrapping of negative ids).
    Row ``padding_idx`` (if given) gets no gradient, as in PyTorch.
    """

    @staticmethod
    def forward(ctx, ids, weight, padding_idx=None):
        vocab_size = weight.shape[0]
        check_index_range("embedding", "token id", ids, vocab_size, where=f"a vocabulary of {vocab_size}")
        ctx.save_for_backward(ids)
        ctx.shape = weight.shape
        ctx.padding_idx = padding_idx
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:  # a frozen table (probe, LoRA): no (V, D) gradient to build
            return None, None
        d = ctx.shape[1]
        gw = xp.zeros(ctx.shape, dtype=g.dtype)
        scatter_add_rows(gw, ids.reshape(-1), g.reshape(-1, d))  # (B·T,) rows, (B·T, D) values
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return None, gw


class Linear(Function):
    """y = x Wᵀ + b, W of shape (out, in) as in PyTorch.

    With G = ∂L/∂y flattened to (M, out) and X to (M, in):
        ∂L/∂x = G W,   ∂L/∂W = Gᵀ X,   ∂L/∂b = Σ_rows G.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input has {x.shape[-1]} features in its last axis, weight expects "
                f"{weight.shape[1]} (weight shape {tuple(weight.shape)} = (out_features, in_features))"
            )
        # keep x only for the weight's gradient: a frozen layer (LoRA's base, a probe's body) passes the gradient
        # down with W alone, ∂L/∂x = G W, and need not hold its input (PyTorch keeps it only when W needs it too)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        ctx.x_shape = x.shape
        # one (M, in) @ (in, out) GEMM, split over the worker threads (backend.matmul); NumPy would loop
        # over the leading axes of a 3-D x instead
        # (…, in) -> (M, in); the (M, out) product -> (…, out)
        y = matmul(x.reshape(-1, x.shape[-1]), weight.T).reshape(*x.shape[:-1], weight.shape[0])
        if bias is not None:
            y += bias  # in place: y is a fresh array (no second (M, out) buffer)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])  # (M, out)
        gx = matmul(g2, w).reshape(ctx.x_shape) if ctx.needs_input_grad[0] else None  # (M, in) -> (…, in), x's shape
        gw = matmul(g2.T, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None  # (out, in)
        gb = g2.sum(axis=0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb
