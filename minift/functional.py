"""``minift.functional`` (import as ``F``): stateless ops, layers and losses, with PyTorch's names.

Every function here builds on a ``Function`` from ``minift.autograd`` whose backward is written by hand.
"""
from __future__ import annotations

import builtins

import numpy as np

from .autograd import ops_attention as A
from .autograd import ops_elementwise as E
from .autograd import ops_fused as U
from .autograd import ops_reduce as R
from .autograd import ops_shape as S
from .autograd.tensor import Tensor
from .backend import xp


def _t(x, like=None):
    if isinstance(x, Tensor):
        return x
    return like._other(x) if like is not None else Tensor(x)


# ------------------------------------------------------------------ elementwise
def exp(x):
    return E.Exp.apply(_t(x))


def log(x):
    return E.Log.apply(_t(x))


def sqrt(x):
    return E.Sqrt.apply(_t(x))


def tanh(x):
    return E.Tanh.apply(_t(x))


def sigmoid(x):
    return E.Sigmoid.apply(_t(x))


def relu(x):
    return E.Relu.apply(_t(x))


def abs(x):  # noqa: A001 - the op's name
    return E.Abs.apply(_t(x))


def gelu(x, approximate="none"):
    """GELU, exact (``"none"``, BERT) or with the tanh approximation (``"tanh"``, GPT-2)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return E.Gelu.apply(_t(x), approximate=approximate)


def silu(x):
    return E.Silu.apply(_t(x))


def clip(x, min=None, max=None):  # noqa: A002
    return _t(x).clip(min, max)


clamp = clip


def maximum(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return E.Maximum.apply(a, _t(b, a))


def minimum(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return E.Minimum.apply(a, _t(b, a))


def where(cond, a, b):
    """``a`` where ``cond`` else ``b``; ``cond`` is a boolean array or tensor (never differentiated)."""
    cond = cond.data if isinstance(cond, Tensor) else xp.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: cond must be boolean, got dtype {cond.dtype}")
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return E.Where.apply(cond, _t(a, like), _t(b, like))


# ------------------------------------------------------------------ reductions
def sum(x, axis=None, keepdims=False):  # noqa: A001
    return _t(x).sum(axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _t(x).mean(axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return _t(x).max(axis, keepdims)


def var(x, axis=None, keepdims=False, ddof=0):
    return _t(x).var(axis, keepdims, ddof)


def logsumexp(x, axis=-1, keepdims=False):
    return R.LogSumExp.apply(_t(x), axis=axis, keepdims=keepdims)


# ------------------------------------------------------------------ shape
def matmul(a, b):
    return _t(a) @ b


def reshape(x, shape):
    return _t(x).reshape(shape)


def transpose(x, *axes):
    return _t(x).transpose(*axes)


def swapaxes(x, a, b):
    return _t(x).swapaxes(a, b)


def broadcast_to(x, shape):
    return _t(x).broadcast_to(shape)


def concatenate(tensors, axis=0):
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    return S.Concatenate.apply(*tensors, axis=axis)


cat = concatenate


def stack(tensors, axis=0):
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {sorted(shapes)}")
    return S.Stack.apply(*tensors, axis=axis)


def split(x, split_size_or_sections, axis=0):
    """PyTorch's split: an int is the size of each chunk (the last may be smaller); a list gives each size."""
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} add up to {builtins.sum(sizes)}, but axis {axis} has size {n}")
    out, start = [], 0
    axis = axis % x.ndim
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        out.append(x[index])
        start += size
    return out


def gather(x, dim, index):
    """PyTorch's ``gather(input, dim, index)``: out[i][j] = x[i][index[i][j]] for dim=1 (``take_along_axis``)."""
    index = index.data if isinstance(index, Tensor) else xp.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be integer, got dtype {index.dtype}")
    return S.TakeAlongAxis.apply(_t(x), index, dim)


def take_along_axis(x, indices, axis):
    return gather(x, axis, indices)


def masked_fill(x, mask, value):
    return _t(x).masked_fill(mask, value)


def tril(x, k=0):
    return _t(x).tril(k)


# ------------------------------------------------------------------ layers and losses
def softmax(x, axis=-1):
    return U.Softmax.apply(_t(x), axis=axis)


def log_softmax(x, axis=-1):
    return U.LogSoftmax.apply(_t(x), axis=axis)


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy of ``logits`` against integer class ``target``, as ``torch.nn.functional.cross_entropy``.

    Shapes: logits (N, C) with target (N,); (C,) with a scalar target; or (N, C, d1, …) with
    target (N, d1, …) — the class axis is axis 1, as in PyTorch. Targets equal to ``ignore_index``
    count for nothing, and ``"mean"`` averages over the others.
    """
    logits = _t(logits)
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.ndim == 1:  # (C,) with a scalar target
        logits, t, squeeze = logits.reshape(1, -1), t.reshape(1), True
    else:
        squeeze = False
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N·d1·..., C)
        c = logits.shape[1]
        expected = (logits.shape[0],) + logits.shape[2:]
        if t.shape != expected:
            raise ValueError(f"cross_entropy: logits {logits.shape} need target of shape {expected}, got {t.shape}")
        axes = (0,) + tuple(range(2, logits.ndim)) + (1,)
        flat = logits.transpose(axes).reshape(-1, c)  # (N, d1, ..., C) -> (M, C)
        loss = cross_entropy(flat, t.reshape(-1), ignore_index, label_smoothing, reduction)
        return loss.reshape(expected) if reduction == "none" else loss
    n, c = logits.shape
    if t.shape != (n,):
        raise ValueError(f"cross_entropy: logits of shape {(n, c)} need target of shape ({n},), got {tuple(t.shape)}")
    valid = t != ignore_index
    if bool(((t[valid] < 0) | (t[valid] >= c)).any()):
        bad = int(t[valid][(t[valid] < 0) | (t[valid] >= c)][0])
        raise IndexError(f"cross_entropy: target {bad} is out of range for {c} classes (expected 0..{c - 1} or ignore_index={ignore_index})")
    loss = U.CrossEntropy.apply(logits, t, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    return loss.reshape(()) if squeeze and reduction == "none" else loss


def nll_loss(log_probs, target, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of ``log_probs`` (N, C): ``cross_entropy`` without the log-softmax."""
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    valid = t != ignore_index
    picked = gather(log_probs, 1, xp.where(valid, t, 0)[:, None])[:, 0]  # (N,)
    loss = -picked * Tensor._wrap(valid.astype(log_probs.dtype))
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / int(valid.sum())


def binary_cross_entropy_with_logits(input, target, reduction="mean"):  # noqa: A002 - PyTorch's name
    x = _t(input)
    y = _t(target, x)
    if x.shape != y.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {y.shape} must equal input shape {x.shape}")
    return U.BCEWithLogits.apply(x, y, reduction=reduction)


def logsigmoid(x):
    return U.LogSigmoid.apply(_t(x))


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    x = _t(input)
    y = _t(target, x)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: target shape {y.shape} must equal input shape {x.shape}")
    return U.MSELoss.apply(x, y, reduction=reduction)


def _normalized(x, normalized_shape, name):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"{name}: normalized_shape {shape} must match the last axes of the input {x.shape}")
    return len(shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = _t(x)
    k = _normalized(x, normalized_shape, "layer_norm")
    return U.LayerNorm.apply(x, weight, bias, k=k, eps=eps)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """RMS norm; ``eps=None`` means the dtype's machine epsilon, as in PyTorch."""
    x = _t(x)
    k = _normalized(x, normalized_shape, "rms_norm")
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    return U.RMSNorm.apply(x, weight, k=k, eps=eps)


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1 − p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = _t(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return U.Dropout.apply(x, p=p)


def embedding(input, weight, padding_idx=None):  # noqa: A002
    """Rows of ``weight`` (V, D) picked by integer ids of any shape → (..., D)."""
    ids = input.data if isinstance(input, Tensor) else xp.asarray(input)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    v = weight.shape[0]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= v):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise IndexError(f"embedding: token id {bad} is out of range for a vocabulary of {v} (expected 0..{v - 1})")
    return U.Embedding.apply(ids, weight, padding_idx=padding_idx)


def linear(x, weight, bias=None):
    """y = x Wᵀ + b with ``weight`` (out_features, in_features), as ``torch.nn.functional.linear``."""
    return U.Linear.apply(_t(x), weight, bias)



# ------------------------------------------------------------------ attention
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(Q Kᵀ/√D + mask) V over the last two axes, as ``torch.nn.functional.scaled_dot_product_attention``.

    ``attn_mask``: boolean, True where a query may attend to a key (broadcast to (..., Tq, Tk)).
    ``is_causal``: query i sees keys j ≤ i + (Tk − Tq) (the offset lets cached keys be seen).
    Query and key heads must match: repeat grouped K/V heads before calling (``repeat_kv``).
    """
    q, k, v = _t(query), _t(key), _t(value)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention shapes do not fit: q {q.shape}, k {k.shape}, v {v.shape}")
    mask = None
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else xp.asarray(attn_mask)
        if mask.dtype != bool:
            raise TypeError(f"attn_mask must be boolean (True = may attend), got dtype {mask.dtype}")
    if is_causal:
        tq, tk = q.shape[-2], k.shape[-2]
        causal = xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)
        mask = causal if mask is None else mask & causal
    return A.ScaledDotProductAttention.apply(q, k, v, mask=mask, dropout_p=dropout_p, scale=scale)


def apply_rotary(x, cos, sin):
    """Rotate pairs of features of ``x`` (..., T, D) by position-dependent angles (RoPE); see ``RoPE``."""
    x = _t(x)
    cos = cos.data if isinstance(cos, Tensor) else xp.asarray(cos)
    sin = sin.data if isinstance(sin, Tensor) else xp.asarray(sin)
    return A.RoPE.apply(x, cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False))


def repeat_kv(x, n_rep):
    """(B, H_kv, T, D) → (B, H_kv·n_rep, T, D): each key/value head serves n_rep query heads (GQA)."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x.reshape(b, h, 1, t, d).expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)
