"""``minift.functional`` (import as ``F``): stateless ops, layers and losses, with PyTorch's names.

This module is the single home of every named op. Each function here checks its arguments (with an
error that says what was expected and what was given) and calls a ``Function`` from ``minift.autograd``,
whose forward and hand-written backward live in the ``ops_*`` modules. The Tensor methods of the same
names delegate here (``x.exp()`` is ``F.exp(x)``, ``x.sum(1)`` is ``F.sum(x, 1)``, ``a @ b`` is
``F.matmul(a, b)``); only arithmetic operators (``+ − * / **``, indexing) call their Function from
``Tensor`` directly, having no name here.

Two rules hold for every op below:
  * indices (class targets, gathered positions, token ids) must lie in [0, n): a negative one is an
    IndexError, never NumPy's wrap-around (the losses also accept their ``ignore_index``);
  * a layer's input and its parameters share one dtype, as in PyTorch: a float64 input to float32
    weights is a TypeError saying how to cast, not a silent promotion of the whole model to float64.
"""
from __future__ import annotations

import builtins

import numpy as np  # host-side only: np.finfo for the default epsilon of rms_norm

from .autograd import ops_attention as attention_ops
from .autograd import ops_elementwise as elementwise
from .autograd import ops_fused as fused
from .autograd import ops_linalg as linalg
from .autograd import ops_reduce as reductions
from .autograd import ops_shape as shape_ops
from .autograd.ops_shape import check_index_range
from .autograd.tensor import Tensor, as_tensor
from .backend import xp


def _as_tensor_pair(a, b):
    """Two operands as Tensors; a scalar or array beside a Tensor takes that Tensor's float dtype."""
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    return a, as_tensor(b, like=a)


def _as_array(x):
    """The array inside a Tensor, or ``x`` as a backend array (for indices, masks and targets)."""
    return x.data if isinstance(x, Tensor) else xp.asarray(x)


# ------------------------------------------------------------------ elementwise
def exp(x):
    return elementwise.Exp.apply(as_tensor(x))


def log(x):
    return elementwise.Log.apply(as_tensor(x))


def sqrt(x):
    return elementwise.Sqrt.apply(as_tensor(x))


def tanh(x):
    return elementwise.Tanh.apply(as_tensor(x))


def sigmoid(x):
    return elementwise.Sigmoid.apply(as_tensor(x))


def relu(x):
    return elementwise.Relu.apply(as_tensor(x))


def abs(x):  # noqa: A001 - the op's name
    return elementwise.Abs.apply(as_tensor(x))


def gelu(x, approximate="none"):
    """GELU, exact (``"none"``, BERT) or with the tanh approximation (``"tanh"``, GPT-2)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return elementwise.Gelu.apply(as_tensor(x), approximate=approximate)


def silu(x):
    return elementwise.Silu.apply(as_tensor(x))


def clip(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    """Clamp to [min, max] (either bound may be None, not both); PyTorch's ``clamp``."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min and max")
    return elementwise.Clip.apply(as_tensor(x), min, max)


clamp = clip


def maximum(a, b):
    a, b = _as_tensor_pair(a, b)
    return elementwise.Maximum.apply(a, b)


def minimum(a, b):
    a, b = _as_tensor_pair(a, b)
    return elementwise.Minimum.apply(a, b)


def where(cond, a, b):
    """``a`` where ``cond`` else ``b``; ``cond`` is a boolean array or tensor (never differentiated)."""
    cond = _as_array(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: cond must be boolean, got dtype {cond.dtype}")
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return elementwise.Where.apply(cond, as_tensor(a, like), as_tensor(b, like))


# ------------------------------------------------------------------ reductions
def sum(x, axis=None, keepdims=False):  # noqa: A001
    return reductions.Sum.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return reductions.Mean.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return reductions.Max.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False, ddof=0):
    return reductions.Var.apply(as_tensor(x), axis=axis, keepdims=keepdims, ddof=ddof)


def logsumexp(x, axis=-1, keepdims=False):
    return reductions.LogSumExp.apply(as_tensor(x), axis=axis, keepdims=keepdims)


# ------------------------------------------------------------------ linear algebra and shape
def matmul(a, b):
    """a @ b over the last two axes, leading (batch) axes broadcast, as ``numpy.matmul``."""
    a, b = _as_tensor_pair(a, b)
    return linalg.MatMul.apply(a, b)


def reshape(x, shape):
    return shape_ops.Reshape.apply(as_tensor(x), shape)


def transpose(x, *axes):
    """Permute the axes (``transpose(x, 1, 0)`` or ``transpose(x, (1, 0))``); none given: reverse them."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return shape_ops.Transpose.apply(as_tensor(x), axes or None)


def swapaxes(x, a, b):
    x = as_tensor(x)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return shape_ops.Transpose.apply(x, tuple(axes))


def broadcast_to(x, shape):
    return shape_ops.BroadcastTo.apply(as_tensor(x), tuple(shape))


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    return shape_ops.Concatenate.apply(*tensors, axis=axis)


cat = concatenate


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {sorted(shapes)}")
    return shape_ops.Stack.apply(*tensors, axis=axis)


def split(x, split_size_or_sections, axis=0):
    """PyTorch's split: an int is the size of each chunk (the last may be smaller); a list gives each size."""
    x = as_tensor(x)
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split size must be positive, got {size}")
        sizes = [size] * (n // size)
        if n % size:
            sizes.append(n % size)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(
                f"split sizes {sizes} add up to {builtins.sum(sizes)}, but axis {axis} has size {n}"
            )
    pieces = []
    start = 0
    axis = axis % x.ndim
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(x[index])
        start += size
    return pieces


def gather(x, dim, index):
    """PyTorch's ``gather(input, dim, index)``: for dim=1, out[i][j] = x[i][index[i][j]].

    Every index must lie in [0, x.shape[dim]); a negative one is an IndexError (NumPy would wrap it).
    """
    index = _as_array(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be integer, got dtype {index.dtype}")
    return shape_ops.TakeAlongAxis.apply(as_tensor(x), index, dim)


def take_along_axis(x, indices, axis):
    return gather(x, axis, indices)


def masked_fill(x, mask, value):
    """``value`` where ``mask`` (boolean, broadcast to x's shape) is True, else x."""
    return shape_ops.MaskedFill.apply(as_tensor(x), _as_array(mask), value)


def tril(x, k=0):
    return shape_ops.Tril.apply(as_tensor(x), k)


# ------------------------------------------------------------------ softmax and losses
def softmax(x, axis=-1):
    return fused.Softmax.apply(as_tensor(x), axis=axis)


def log_softmax(x, axis=-1):
    return fused.LogSoftmax.apply(as_tensor(x), axis=axis)


def _class_targets(op, target):
    """``target`` as an integer array, or a TypeError: class indices, not probabilities or floats."""
    t = _as_array(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    return t


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy of ``logits`` against integer class ``target``, as PyTorch's ``F.cross_entropy``.

    Shapes: logits (N, C) with target (N,); (C,) with a scalar target; or (N, C, d1, …) with
    target (N, d1, …) — the class axis is axis 1, as in PyTorch. Targets equal to ``ignore_index``
    count for nothing, and ``"mean"`` averages over the others. Any other target must be in [0, C).
    """
    logits = as_tensor(logits)
    t = _class_targets("cross_entropy", target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    squeeze = logits.ndim == 1
    if squeeze:  # (C,) with a scalar target -> (1, C) with (1,)
        logits = logits.reshape(1, -1)  # (C,) -> (1, C)
        t = t.reshape(1)  # () -> (1,)
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N·d1·..., C)
        num_classes = logits.shape[1]
        expected = (logits.shape[0],) + logits.shape[2:]
        if t.shape != expected:
            raise ValueError(
                f"cross_entropy: logits {logits.shape} need target of shape {expected}, got {t.shape}"
            )
        class_last = (0,) + tuple(range(2, logits.ndim)) + (1,)
        flat = logits.transpose(class_last).reshape(-1, num_classes)  # (N, d1, ..., C) -> (M, C)
        loss = cross_entropy(flat, t.reshape(-1), ignore_index, label_smoothing, reduction)  # target (N, d1, …) -> (M,)
        return loss.reshape(expected) if reduction == "none" else loss  # (M,) -> (N, d1, …)
    n, num_classes = logits.shape
    if t.shape != (n,):
        raise ValueError(
            f"cross_entropy: logits of shape {(n, num_classes)} need target of shape ({n},), "
            f"got {tuple(t.shape)}"
        )
    loss = fused.CrossEntropy.apply(  # checks every target is in [0, C) or ignore_index
        logits, t, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )
    # (1,) -> (): the loss of the one scalar target
    return loss.reshape(()) if squeeze and reduction == "none" else loss


def nll_loss(log_probs, target, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood: ``cross_entropy`` without the log-softmax, as PyTorch's ``F.nll_loss``.

    ``log_probs`` (N, C), ``target`` (N,) integers in [0, C) or ``ignore_index``:
        loss_i = −log_probs[i, target_i]   (0 where target_i = ignore_index)
    ``"mean"`` divides the sum by the number of targets that are not ignored.
    """
    log_probs = as_tensor(log_probs)
    t = _class_targets("nll_loss", target)
    if log_probs.ndim != 2:
        raise ValueError(f"nll_loss: log_probs must be (N, C), got shape {log_probs.shape}")
    n, num_classes = log_probs.shape
    if t.shape != (n,):
        raise ValueError(
            f"nll_loss: log_probs of shape {(n, num_classes)} need target of shape ({n},), "
            f"got {tuple(t.shape)}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    check_index_range("nll_loss", "target", t, num_classes, where=f"{num_classes} classes",
                      ignore_index=ignore_index)
    valid = t != ignore_index
    picked = gather(log_probs, 1, xp.where(valid, t, 0)[:, None])[:, 0]  # (N,): log p of each target
    loss = -picked * Tensor._wrap(valid.astype(log_probs.dtype))  # ignored rows count 0
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / int(valid.sum())


def binary_cross_entropy_with_logits(input, target, reduction="mean"):  # noqa: A002 - PyTorch's name
    x = as_tensor(input)
    y = as_tensor(target, like=x)
    if x.shape != y.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: target shape {y.shape} must equal input shape {x.shape}"
        )
    return fused.BCEWithLogits.apply(x, y, reduction=reduction)


def logsigmoid(x):
    return fused.LogSigmoid.apply(as_tensor(x))


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    x = as_tensor(input)
    y = as_tensor(target, like=x)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: target shape {y.shape} must equal input shape {x.shape}")
    return fused.MSELoss.apply(x, y, reduction=reduction)


# ------------------------------------------------------------------ layers
_CAST_MODEL = {"float64": "model.double()", "float32": "model.float()"}
_CAST_INPUT = {"float64": "x.double()", "float32": "x.float()"}


def _check_param_dtypes(op, x, **params):
    """PyTorch's rule: a layer's input and parameters share one dtype (no silent promotion to float64).

    A float64 input meeting float32 weights would quietly turn every later activation, gradient and
    optimizer state of the model into float64 (twice the memory, and a model no longer float32).
    """
    for name, param in params.items():
        if param is None or param.dtype == x.dtype:
            continue
        to_model = _CAST_MODEL.get(str(x.dtype), f"model.to({x.dtype})")
        to_input = _CAST_INPUT.get(str(param.dtype), f"x.to({param.dtype})")
        raise TypeError(
            f"{op} got a {x.dtype} input but its {name} is {param.dtype}: cast the model to the input's "
            f"dtype ({to_model}) or the input to the model's ({to_input})"
        )


def _normalized(x, normalized_shape, name):
    """How many trailing axes ``normalized_shape`` covers, checking that they match x's last axes."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"{name}: normalized_shape {shape} must match the last axes of the input {x.shape}")
    return len(shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x − μ)/√(σ² + ε)·weight + bias over the trailing axes ``normalized_shape`` (see ``LayerNorm``)."""
    x = as_tensor(x)
    k = _normalized(x, normalized_shape, "layer_norm")
    _check_param_dtypes("layer_norm", x, weight=weight, bias=bias)
    return fused.LayerNorm.apply(x, weight, bias, k=k, eps=eps)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x/√(mean(x²) + ε)·weight; ``eps=None`` means the dtype's machine epsilon, as in PyTorch."""
    x = as_tensor(x)
    k = _normalized(x, normalized_shape, "rms_norm")
    _check_param_dtypes("rms_norm", x, weight=weight)
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    return fused.RMSNorm.apply(x, weight, k=k, eps=eps)


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1 − p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return fused.Dropout.apply(x, p=p)


def embedding(input, weight, padding_idx=None):  # noqa: A002
    """Rows of ``weight`` (V, D) picked by integer ids of any shape → (..., D); every id in [0, V)."""
    ids = _as_array(input)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    return fused.Embedding.apply(ids, weight, padding_idx=padding_idx)


def linear(x, weight, bias=None):
    """y = x Wᵀ + b with ``weight`` (out_features, in_features), as ``torch.nn.functional.linear``."""
    x = as_tensor(x)
    _check_param_dtypes("linear", x, weight=weight, bias=bias)
    return fused.Linear.apply(x, weight, bias)


# ------------------------------------------------------------------ attention
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None):
    """softmax(Q Kᵀ/√D + mask) V over the last two axes, as PyTorch's ``F.scaled_dot_product_attention``.

    ``attn_mask``: boolean, True where a query may attend to a key (broadcast to (..., Tq, Tk)).
    ``is_causal``: query i sees keys j ≤ i + (Tk − Tq) (the offset lets cached keys be seen).
    Query and key heads must match: repeat grouped K/V heads before calling (``repeat_kv``).

    Two differences from PyTorch's, both for the KV cache: with Tq < Tk the causal mask is aligned bottom-right
    as above (PyTorch's ``is_causal`` aligns it top-left, j ≤ i; its ``torch.nn.attention.bias.causal_lower_right``
    is ours), and ``attn_mask`` with ``is_causal`` means both at once (PyTorch raises; pass it ``causal & mask``).
    """
    q = as_tensor(query)
    k = as_tensor(key)
    v = as_tensor(value)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention shapes do not fit: q {q.shape}, k {k.shape}, v {v.shape}")
    mask = None
    if attn_mask is not None:
        mask = _as_array(attn_mask)
        if mask.dtype != bool:
            raise TypeError(f"attn_mask must be boolean (True = may attend), got dtype {mask.dtype}")
    if is_causal:
        tq = q.shape[-2]
        tk = k.shape[-2]
        causal = xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)  # (Tq, Tk)
        mask = causal if mask is None else mask & causal
    return attention_ops.ScaledDotProductAttention.apply(q, k, v, mask=mask, dropout_p=dropout_p, scale=scale)


def apply_rotary(x, cos, sin):
    """Rotate pairs of features of ``x`` (..., T, D) by position-dependent angles (RoPE); see ``RoPE``."""
    x = as_tensor(x)
    cos = _as_array(cos).astype(x.dtype, copy=False)
    sin = _as_array(sin).astype(x.dtype, copy=False)
    return attention_ops.RoPE.apply(x, cos, sin)


def repeat_kv(x, n_rep):
    """(B, H_kv, T, D) → (B, H_kv·n_rep, T, D): each key/value head serves n_rep query heads (GQA)."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    # (B, H_kv, T, D) -> (B, H_kv, 1, T, D) -> a view (B, H_kv, n_rep, T, D) -> (B, H_kv·n_rep, T, D):
    # the copies of head h are neighbours, so query head j reads key/value head j // n_rep
    return x.reshape(b, h, 1, t, d).expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)
