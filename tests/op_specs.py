"""The op-spec registry: one entry per exported op, driving the forward-vs-NumPy and gradcheck tests.

An ``OpSpec`` says how to draw inputs (float64 arrays + keyword arguments), how to call the op in minift,
and how to compute the same thing in plain NumPy written independently. ``test_ops.py`` turns every spec
into tests; ``test_every_export_has_a_spec`` fails when an op is exported without one.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import erf as _math_erf
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import minift as mf
from minift import functional as F

from .strategies import away_from, broadcastable_pair, distinct_arrays, float_arrays, positive_arrays, shapes


@dataclass
class OpSpec:
    name: str  # "F.exp", "Tensor.__add__", "mf.stack"
    fn: Callable  # minift: fn(*tensors, **kwargs) -> Tensor
    ref: Callable | None  # numpy: ref(*arrays, **kwargs) -> ndarray; None when checked by its own test
    inputs: Callable  # draw -> (list of float64 arrays, kwargs)
    grad: bool = True
    aliases: tuple = ()
    atol: float = 1e-10
    notes: str = ""
    task: str | None = None  # coursework task whose code this op's backward exercises


SPECS: list[OpSpec] = []


def spec(*args, **kwargs):
    SPECS.append(OpSpec(*args, **kwargs))


# ------------------------------------------------------------------ input recipes
def unary(kind="any"):
    def draw_inputs(draw):
        if kind == "positive":
            a = draw(positive_arrays(shapes()))
        elif kind == "kink0":
            a = away_from(draw(float_arrays(shapes())), (0.0,))
        else:
            a = draw(float_arrays(shapes()))
        return [a], {}

    return draw_inputs


def binary(kind="any"):
    def draw_inputs(draw):
        sa, sb = draw(broadcastable_pair())
        a = draw(float_arrays(sa))
        b = draw(positive_arrays(sb)) if kind in ("positive_b", "positive_both") else draw(float_arrays(sb))
        if kind == "positive_both":
            a = np.abs(a) + 0.2
        if kind == "distinct":  # no ties between a and b (maximum/minimum have a kink there)
            b = b + 0.0
            bb = np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape))
            aa = np.broadcast_to(a, bb.shape)
            from hypothesis import assume

            assume(np.all(np.abs(aa - bb) > 0.05))
        return [a, b], {}

    return draw_inputs


def reduction(kind="any"):
    def draw_inputs(draw):
        shape = draw(shapes(min_dims=1))
        a = draw(distinct_arrays(shape)) if kind == "distinct" else draw(float_arrays(shape))
        some_axes = st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True)
        axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1), some_axes.map(tuple)))
        kw = {"axis": axis, "keepdims": draw(st.booleans())}
        if kind == "var":
            kw["ddof"] = draw(st.sampled_from([0, 1]))
            reduced = range(len(shape)) if axis is None else [axis] if isinstance(axis, int) else axis
            n = np.prod([shape[i] for i in reduced])
            from hypothesis import assume

            assume(n - kw["ddof"] > 0)
        return [a], kw

    return draw_inputs


def last_axis(min_dims=1, kind="any"):
    def draw_inputs(draw):
        a = draw(float_arrays(shapes(min_dims=min_dims)))
        return [a], {}

    return draw_inputs


# ------------------------------------------------------------------ numpy references (written independently)
def np_softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_logsumexp(a, axis=-1, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


np_erf = np.vectorize(_math_erf)


def np_gelu(a, approximate="none"):
    if approximate == "tanh":
        return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3)))
    return a * 0.5 * (1 + np_erf(a / np.sqrt(2)))


def np_cross_entropy(z, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    logp = z - np_logsumexp(z, axis=1, keepdims=True)
    losses = []
    t = target
    for row, target in zip(logp, t):  # a plain loop: a second, independent way to compute it
        if target == ignore_index:
            losses.append(0.0)
            continue
        smooth = -row.sum() / len(row)
        losses.append((1 - label_smoothing) * -row[target] + label_smoothing * smooth)
    losses = np.array(losses)
    n_valid = int(np.sum(t != ignore_index))
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / max(n_valid, 1)}[reduction]


def np_layer_norm(x, k, w, b, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_linear(x, w, b):
    return np.einsum("...i,oi->...o", x, w) + b


# ------------------------------------------------------------------ elementwise
ELEMENTWISE_TASK = "ops.elementwise_backward"
spec("F.exp", lambda a: F.exp(a), np.exp, unary(), aliases=("Tensor.exp",), task=ELEMENTWISE_TASK)
spec("F.log", lambda a: F.log(a), np.log, unary("positive"), aliases=("Tensor.log",), task=ELEMENTWISE_TASK)
spec("F.sqrt", lambda a: F.sqrt(a), np.sqrt, unary("positive"), aliases=("Tensor.sqrt",))
spec("F.tanh", lambda a: F.tanh(a), np.tanh, unary(), aliases=("Tensor.tanh",), task=ELEMENTWISE_TASK)
spec("F.sigmoid", lambda a: F.sigmoid(a), lambda a: 1 / (1 + np.exp(-a)), unary(),
     aliases=("Tensor.sigmoid",), task=ELEMENTWISE_TASK)
spec("F.relu", lambda a: F.relu(a), lambda a: np.where(a > 0, a, 0.0), unary("kink0"),
     aliases=("Tensor.relu",))
spec("F.abs", lambda a: F.abs(a), np.abs, unary("kink0"), aliases=("Tensor.abs",))
spec("F.gelu", lambda a: F.gelu(a), np_gelu, unary(), atol=1e-9)
spec("F.gelu[tanh]", lambda a: F.gelu(a, approximate="tanh"), lambda a: np_gelu(a, "tanh"), unary())
spec("F.silu", lambda a: F.silu(a), lambda a: a / (1 + np.exp(-a)), unary())
spec("F.logsigmoid", lambda a: F.logsigmoid(a), lambda a: -np.log1p(np.exp(-a)), unary())
spec("F.clip", lambda a: F.clip(a, -1.0, 1.5), lambda a: np.minimum(np.maximum(a, -1.0), 1.5),
     lambda d: ([away_from(d(float_arrays(shapes())), (-1.0, 1.5))], {}),
     aliases=("F.clamp", "Tensor.clip", "Tensor.clamp"))
spec("Tensor.__neg__", lambda a: -a, np.negative, unary())
spec("Tensor.__add__", lambda a, b: a + b, np.add, binary(), aliases=("Tensor.__radd__",),
     task="autograd.unbroadcast")
spec("Tensor.__sub__", lambda a, b: a - b, np.subtract, binary(), aliases=("Tensor.__rsub__",))
spec("Tensor.__mul__", lambda a, b: a * b, np.multiply, binary(), aliases=("Tensor.__rmul__",),
     task=ELEMENTWISE_TASK)
spec("Tensor.__truediv__", lambda a, b: a / b, np.divide, binary("positive_b"),
     aliases=("Tensor.__rtruediv__",), task=ELEMENTWISE_TASK)
spec("Tensor.__pow__", lambda a, b: a**b, np.power, binary("positive_both"), aliases=("Tensor.__rpow__",))
spec("Tensor.__pow__[scalar]", lambda a: a**3, lambda a: a**3, unary())
spec("F.maximum", lambda a, b: F.maximum(a, b), np.maximum, binary("distinct"), aliases=("Tensor.maximum",))
spec("F.minimum", lambda a, b: F.minimum(a, b), np.minimum, binary("distinct"), aliases=("Tensor.minimum",))


def _where_inputs(draw):
    sa, sb = draw(broadcastable_pair())
    shape = np.broadcast_shapes(sa, sb)
    cond = draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    cond = np.array(cond, dtype=bool).reshape(shape)
    return [draw(float_arrays(sa)), draw(float_arrays(sb))], {"cond": cond}


spec("F.where", lambda a, b, cond: F.where(cond, a, b), lambda a, b, cond: np.where(cond, a, b),
     _where_inputs, aliases=("mf.where",))

# ------------------------------------------------------------------ reductions
spec("Tensor.sum", lambda a, **k: a.sum(**k),
     lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims), reduction(), aliases=("F.sum",))
spec("Tensor.mean", lambda a, **k: a.mean(**k),
     lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims), reduction(), aliases=("F.mean",))
spec("Tensor.max", lambda a, **k: a.max(**k),
     lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims), reduction("distinct"),
     aliases=("F.max",))
spec("Tensor.var", lambda a, **k: a.var(**k),
     lambda a, axis, keepdims, ddof: np.var(a, axis=axis, keepdims=keepdims, ddof=ddof), reduction("var"),
     aliases=("F.var",))


def _lse_inputs(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return [draw(float_arrays(shape))], {"axis": axis, "keepdims": draw(st.booleans())}


spec("F.logsumexp", lambda a, **k: F.logsumexp(a, **k), np_logsumexp, _lse_inputs,
     aliases=("Tensor.logsumexp",))

# ------------------------------------------------------------------ linear algebra


def _matmul_inputs(draw):
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcastable_pair(max_dims=2, max_side=3))
    kind = draw(st.sampled_from(["batched", "vec_left", "vec_right"]))
    sa = (k,) if kind == "vec_left" else batch_a + (m, k)
    sb = (k,) if kind == "vec_right" else batch_b + (k, n)
    return [draw(float_arrays(sa)), draw(float_arrays(sb))], {}


spec("Tensor.__matmul__", lambda a, b: a @ b, np.matmul, _matmul_inputs,
     aliases=("F.matmul", "Tensor.__rmatmul__"), task="ops.matmul_backward")


def _linear_inputs(draw):
    lead = draw(shapes(min_dims=0, max_dims=2))
    i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return [draw(float_arrays(lead + (i,))), draw(float_arrays((o, i))), draw(float_arrays((o,)))], {}


spec("F.linear", lambda x, w, b: F.linear(x, w, b), np_linear, _linear_inputs)

# ------------------------------------------------------------------ shape ops


def _reshape_inputs(draw):
    shape = draw(shapes())
    n = int(np.prod(shape))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = draw(st.sampled_from(divisors))
    target = draw(st.sampled_from([(n,), (d, n // d), (n // d, -1), (1, d, n // d)]))
    return [draw(float_arrays(shape))], {"shape": target}


spec("Tensor.reshape", lambda a, shape: a.reshape(shape), lambda a, shape: np.reshape(a, shape),
     _reshape_inputs, aliases=("F.reshape", "Tensor.view"))
spec("Tensor.flatten", lambda a: a.flatten(), lambda a: a.reshape(-1), unary())


def _perm_inputs(draw):
    shape = draw(shapes(min_dims=1))
    return [draw(float_arrays(shape))], {"axes": tuple(draw(st.permutations(range(len(shape)))))}


spec("Tensor.transpose", lambda a, axes: a.transpose(*axes), lambda a, axes: np.transpose(a, axes),
     _perm_inputs, aliases=("F.transpose", "Tensor.permute"))
spec("Tensor.T", lambda a: a.T, lambda a: a.T, unary())


def _swap_inputs(draw):
    shape = draw(shapes(min_dims=2))
    first = draw(st.integers(0, len(shape) - 1))
    second = draw(st.integers(-len(shape), -1))
    return [draw(float_arrays(shape))], {"ax": (first, second)}


spec("Tensor.swapaxes", lambda a, ax: a.swapaxes(*ax), lambda a, ax: np.swapaxes(a, *ax), _swap_inputs,
     aliases=("F.swapaxes",))


def _broadcast_inputs(draw):
    sa, sb = draw(broadcastable_pair())
    return [draw(float_arrays(sa))], {"shape": np.broadcast_shapes(sa, sb)}


spec("Tensor.broadcast_to", lambda a, shape: a.broadcast_to(shape),
     lambda a, shape: np.broadcast_to(a, shape), _broadcast_inputs, aliases=("F.broadcast_to",))


def _expand_inputs(draw):
    shape = draw(shapes(min_dims=1))
    target = tuple(draw(st.integers(1, 3)) if n == 1 else draw(st.sampled_from([n, -1])) for n in shape)
    return [draw(float_arrays(shape))], {"shape": (2,) + target}


def _np_expand(a, shape):
    return np.broadcast_to(a, tuple(a.shape[i - 1] if n == -1 else n for i, n in enumerate(shape)))


spec("Tensor.expand", lambda a, shape: a.expand(*shape), _np_expand, _expand_inputs)


def _unsqueeze_inputs(draw):
    shape = draw(shapes())
    return [draw(float_arrays(shape))], {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}


spec("Tensor.unsqueeze", lambda a, axis: a.unsqueeze(axis), lambda a, axis: np.expand_dims(a, axis),
     _unsqueeze_inputs)


def _squeeze_inputs(draw):
    shape = list(draw(shapes(max_dims=2)))
    axis = draw(st.integers(0, len(shape)))
    shape.insert(axis, 1)
    return [draw(float_arrays(tuple(shape)))], {"axis": axis}


spec("Tensor.squeeze", lambda a, axis: a.squeeze(axis), lambda a, axis: np.squeeze(a, axis), _squeeze_inputs)


def _many_inputs(same_shape):
    def draw_inputs(draw):
        base = draw(shapes(min_dims=1))
        axis = draw(st.integers(-len(base), len(base) - 1))
        k = draw(st.integers(1, 3))
        arrays = []
        for _ in range(k):
            s = list(base)
            if not same_shape:
                s[axis] = draw(st.integers(1, 3))
            arrays.append(draw(float_arrays(tuple(s))))
        return arrays, {"axis": axis}

    return draw_inputs


spec("mf.concatenate", lambda *ts, axis: mf.concatenate(ts, axis=axis),
     lambda *a, axis: np.concatenate(a, axis=axis), _many_inputs(False), aliases=("F.concatenate", "F.cat"))
spec("mf.stack", lambda *ts, axis: mf.stack(ts, axis=axis), lambda *a, axis: np.stack(a, axis=axis),
     _many_inputs(True), aliases=("F.stack",))


def _split_inputs(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(0, len(shape) - 1))
    return [draw(float_arrays(shape))], {"axis": axis, "size": draw(st.integers(1, 3))}


def _weighted_split(a, axis, size):
    """Split, scale piece i by i + 1, join again: each piece's gradient differs, so a mix-up shows."""
    pieces = mf.split(a, size, axis)
    return mf.concatenate([p * (i + 1) for i, p in enumerate(pieces)], axis)


def _np_weighted_split(a, axis, size):
    pieces = np.split(a, range(size, a.shape[axis], size), axis=axis)
    return np.concatenate([p * (i + 1) for i, p in enumerate(pieces)], axis=axis)


spec("mf.split", _weighted_split, _np_weighted_split, _split_inputs, aliases=("F.split", "Tensor.split"),
     notes="pieces are weighted so each one's gradient differs")


def _getitem_inputs(draw):
    shape = draw(shapes(min_dims=1))
    kind = draw(st.sampled_from(["slice", "int_array", "bool", "mixed"]))
    n0 = shape[0]
    if kind == "slice":
        idx = (slice(draw(st.integers(0, n0 - 1)), None, draw(st.integers(1, 2))),)
    elif kind == "int_array":  # repeated indices: the backward must accumulate
        idx = (np.array(draw(st.lists(st.integers(-n0, n0 - 1), min_size=1, max_size=5))),)
    elif kind == "bool":
        idx = (np.array(draw(st.lists(st.booleans(), min_size=n0, max_size=n0))),)
    else:
        idx = (Ellipsis, np.array(draw(st.lists(st.integers(0, shape[-1] - 1), min_size=1, max_size=4))))
    return [draw(float_arrays(shape))], {"idx": idx}


spec("Tensor.__getitem__", lambda a, idx: a[idx], lambda a, idx: a[idx], _getitem_inputs)


def _gather_inputs(draw):
    shape = draw(shapes(min_dims=1))
    dim = draw(st.integers(0, len(shape) - 1))
    ishape = list(shape)
    ishape[dim] = draw(st.integers(1, 4))
    count = int(np.prod(ishape))
    idx = np.array(draw(st.lists(st.integers(0, shape[dim] - 1), min_size=count, max_size=count)))  # [0, n)
    return [draw(float_arrays(shape))], {"dim": dim, "index": idx.reshape(ishape)}


spec("F.gather", lambda a, dim, index: F.gather(a, dim, index),
     lambda a, dim, index: np.take_along_axis(a, index, axis=dim), _gather_inputs,
     aliases=("Tensor.gather", "F.take_along_axis"))


def _mask_inputs(draw):
    shape = draw(shapes(min_dims=1))
    n = int(np.prod(shape[1:]))
    mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool).reshape(shape[1:])
    return [draw(float_arrays(shape))], {"mask": mask}


spec("Tensor.masked_fill", lambda a, mask: a.masked_fill(mask, -7.0), lambda a, mask: np.where(mask, -7.0, a),
     _mask_inputs, aliases=("F.masked_fill",))


def _tril_inputs(draw):
    return [draw(float_arrays(shapes(min_dims=2)))], {"k": draw(st.integers(-2, 2))}


spec("Tensor.tril", lambda a, k: a.tril(k), lambda a, k: np.tril(a, k), _tril_inputs, aliases=("F.tril",))

# ------------------------------------------------------------------ fused layers and losses


def _axis_inputs(draw):
    shape = draw(shapes(min_dims=1))
    return [draw(float_arrays(shape))], {"axis": draw(st.integers(-len(shape), len(shape) - 1))}


spec("F.softmax", lambda a, axis: F.softmax(a, axis), np_softmax, _axis_inputs, aliases=("Tensor.softmax",),
     task="fused.softmax_backward")
spec("F.log_softmax", lambda a, axis: F.log_softmax(a, axis), lambda a, axis: np.log(np_softmax(a, axis)),
     _axis_inputs, aliases=("Tensor.log_softmax",))


def _ce_inputs(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    t = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    if n > 1 and draw(st.booleans()):
        t[draw(st.integers(0, n - 1))] = -100
    kw = {"target": t, "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
          "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
    return [draw(float_arrays((n, c)))], kw


spec("F.cross_entropy", lambda z, **k: F.cross_entropy(z, **k), np_cross_entropy, _ce_inputs,
     task="fused.cross_entropy_backward")


def _ce3d_inputs(draw):
    n, c, d = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    t = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n * d, max_size=n * d))).reshape(n, d)
    return [draw(float_arrays((n, c, d)))], {"target": t}


def _np_cross_entropy_class_axis_1(z, target):
    class_last = np.moveaxis(z, 1, -1).reshape(-1, z.shape[1])  # (N, C, d) -> (N·d, C)
    return np_cross_entropy(class_last, target.reshape(-1))


spec("F.cross_entropy[N,C,d]", lambda z, target: F.cross_entropy(z, target), _np_cross_entropy_class_axis_1,
     _ce3d_inputs)


def _nll_inputs(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    t = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    if n > 1 and draw(st.booleans()):
        t[draw(st.integers(0, n - 1))] = -100  # ignored
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return [draw(float_arrays((n, c)))], {"target": t, "reduction": reduction}


def np_nll_loss(log_probs, target, reduction):
    losses = np.array([0.0 if t == -100 else -row[t] for row, t in zip(log_probs, target)])
    kept = max(int(np.sum(target != -100)), 1)
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / kept}[reduction]


spec("F.nll_loss", lambda z, **k: F.nll_loss(z, **k), np_nll_loss, _nll_inputs)


def _pair_same(draw, y_kind="any"):
    shape = draw(shapes())
    y = draw(float_arrays(shape, 0.0, 1.0)) if y_kind == "prob" else draw(float_arrays(shape))
    return [draw(float_arrays(shape)), y], {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def _np_reduce(x, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](x)


def np_bce_with_logits(x, y, reduction):
    p = 1 / (1 + np.exp(-x))  # the textbook formula: fine for the moderate logits drawn here
    return _np_reduce(-(y * np.log(p) + (1 - y) * np.log(1 - p)), reduction)


spec("F.binary_cross_entropy_with_logits",
     lambda x, y, reduction: F.binary_cross_entropy_with_logits(x, y, reduction), np_bce_with_logits,
     lambda d: _pair_same(d, "prob"), atol=1e-9)
spec("F.mse_loss", lambda x, y, reduction: F.mse_loss(x, y, reduction),
     lambda x, y, reduction: _np_reduce((x - y) ** 2, reduction), _pair_same)


def _norm_inputs(draw):
    shape = draw(shapes(min_dims=1))
    k = draw(st.integers(1, len(shape)))
    ns = shape[len(shape) - k:]
    x = draw(float_arrays(shape))
    return [x, draw(float_arrays(ns)), draw(float_arrays(ns))], {"k": k}


def np_rms_norm(x, k, w, eps):
    mean_square = (x**2).mean(axis=tuple(range(x.ndim - k, x.ndim)), keepdims=True)
    return x / np.sqrt(mean_square + eps) * w


spec("F.layer_norm", lambda x, w, b, k: F.layer_norm(x, w.shape, w, b, eps=1e-5),
     lambda x, w, b, k: np_layer_norm(x, k, w, b, 1e-5), _norm_inputs, atol=1e-8,
     task="fused.layer_norm_backward")
spec("F.rms_norm", lambda x, w, b, k: F.rms_norm(x, w.shape, w, eps=1e-6) + b,
     lambda x, w, b, k: np_rms_norm(x, k, w, 1e-6) + b, _norm_inputs, atol=1e-8, task="fused.layer_norm_backward")


def _dropout_call(a, p):
    mf.seed(123)  # the same mask on every call, so finite differences see a fixed function
    return F.dropout(a, p)


def _dropout_inputs(draw):
    return [draw(float_arrays(shapes()))], {"p": draw(st.sampled_from([0.2, 0.5]))}


spec("F.dropout", _dropout_call, None, _dropout_inputs,
     notes="forward checked by test_dropout_* (a random mask has no NumPy twin)")


def _embedding_inputs(draw):
    v, dim = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    ids_shape = draw(shapes(min_dims=1, max_dims=2))
    count = int(np.prod(ids_shape))
    ids = np.array(draw(st.lists(st.integers(0, v - 1), min_size=count, max_size=count)))  # [0, V)
    return [draw(float_arrays((v, dim)))], {"ids": ids.reshape(ids_shape)}


spec("F.embedding", lambda w, ids: F.embedding(ids, w), lambda w, ids: w[ids], _embedding_inputs)


# ------------------------------------------------------------------ attention


def np_attention(q, k, v, mask=None, causal=False):
    s = np.einsum("...qd,...kd->...qk", q, k) / np.sqrt(q.shape[-1])
    allowed = np.ones(s.shape, dtype=bool)
    if mask is not None:
        allowed &= mask
    if causal:
        tq, tk = s.shape[-2:]
        allowed &= np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
    s = np.where(allowed, s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)
    return np.einsum("...qk,...kd->...qd", p, v)


def _attn_inputs(draw):
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    tq = draw(st.integers(1, 4))
    tk = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    dv = draw(st.integers(1, 3))
    causal = draw(st.booleans())
    if causal:
        tk = max(tk, tq)
    mask = np.array(draw(st.lists(st.booleans(), min_size=b * tk, max_size=b * tk))).reshape(b, 1, 1, tk)
    mask[..., 0] = True  # every query keeps at least the first key (causal always allows it)
    q = draw(float_arrays((b, h, tq, d)))
    k = draw(float_arrays((b, h, tk, d)))
    v = draw(float_arrays((b, h, tk, dv)))
    return [q, k, v], {"mask": mask, "causal": causal}


spec("F.scaled_dot_product_attention",
     lambda q, k, v, mask, causal: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal),
     np_attention, _attn_inputs, task="attention.backward")


def _np_rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + np.concatenate([-x[..., h:], x[..., :h]], axis=-1) * sin


def _rope_inputs(draw):
    t, d = draw(st.integers(1, 5)), 2 * draw(st.integers(1, 3))
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=2))
    ang = np.outer(np.arange(t), 10000.0 ** (-np.arange(0, d, 2) / d))
    ang = np.concatenate([ang, ang], axis=1)
    return [draw(float_arrays(lead + (t, d)))], {"cos": np.cos(ang), "sin": np.sin(ang)}


spec("F.apply_rotary", lambda x, cos, sin: F.apply_rotary(x, cos, sin), _np_rope, _rope_inputs)


def _repeat_inputs(draw):
    batch = draw(st.integers(1, 2))
    kv_heads, seq_len, head_dim = (draw(st.integers(1, 3)) for _ in range(3))
    shape = (batch, kv_heads, seq_len, head_dim)
    return [draw(float_arrays(shape))], {"n": draw(st.integers(1, 3))}


spec("F.repeat_kv", lambda x, n: F.repeat_kv(x, n), lambda x, n: np.repeat(x, n, axis=1), _repeat_inputs)


SPEC_NAMES = {s.name.split("[")[0] for s in SPECS} | {a for s in SPECS for a in s.aliases}
