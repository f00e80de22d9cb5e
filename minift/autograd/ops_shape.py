"""Shape ops: they move or copy elements without changing them, so the backward moves the gradient back.

reshape ↔ reshape back · transpose ↔ inverse permutation · broadcast ↔ sum (unbroadcast) ·
concatenate/stack ↔ slice · indexing ↔ scatter-add (repeated indices accumulate) · tril ↔ tril.
"""
from __future__ import annotations

from .. import backend
from ..backend import is_cupy, scatter_add, xp
from .function import Function
from .ops_elementwise import unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)  # a.shape -> shape (same number of elements)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {tuple(a.shape)} ({a.size} elements) into {shape}"
            ) from None

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)  # back to the input's shape


class Transpose(Function):
    """Permute axes; the backward applies the inverse permutation (argsort of ``axes``)."""

    @staticmethod
    def forward(ctx, a, axes=None):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"transpose axes {axes} are not a permutation of the {a.ndim} axes")
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return (g.transpose(inverse),)


class BroadcastTo(Function):
    """Copy along new/size-1 axes (no memory is copied); the backward sums the copies."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return xp.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"cannot broadcast shape {tuple(a.shape)} to {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return (unbroadcast(g, ctx.shape),)


class Concatenate(Function):
    """Join along ``axis``; the backward slices the gradient into the pieces' sizes."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis % arrays[0].ndim
        ctx.sizes = [a.shape[ctx.axis] for a in arrays]
        return xp.concatenate(arrays, axis=ctx.axis)

    @staticmethod
    def backward(ctx, g):
        bounds = [0]
        for n in ctx.sizes:
            bounds.append(bounds[-1] + n)
        return tuple(xp.take(g, xp.arange(lo, hi), axis=ctx.axis) for lo, hi in zip(bounds, bounds[1:]))


class Stack(Function):
    """Stack along a new ``axis``; the backward indexes the gradient along it."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis % (arrays[0].ndim + 1)
        ctx.n = len(arrays)
        return xp.stack(arrays, axis=ctx.axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(xp.take(g, i, axis=ctx.axis) for i in range(ctx.n))


def unwrap_index(index):
    """An index as NumPy understands it: Tensors inside it (alone or in a tuple) become their arrays."""
    from .tensor import Tensor

    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def check_index_range(op, what, indices, size, where, ignore_index=None):
    """Raise a clear IndexError unless every entry of ``indices`` lies in [0, size) (or is ``ignore_index``).

    One rule for every op that reads positions along an axis (gather, embedding, the losses' targets):
    NumPy would quietly wrap a negative index to the end of the axis (−1 → size − 1): so a label of −1
    or a token id of −5 would pick a wrong row and train on it. PyTorch refuses both; so does minift.
    The message names the op, the first bad value and the range:
        "gather: index -1 is out of range for dim 1 of size 3: expected [0, 3)"
    (Python-style negative indexing stays where it belongs: ``x[-1]`` and ``x[[-1, 0]]`` count from the end.)
    """
    valid = (indices >= 0) & (indices < size)
    if ignore_index is not None:
        valid |= indices == ignore_index
    if bool(valid.all()):
        return
    bad = int(indices[~valid].reshape(-1)[0])  # the first offender, in reading order
    or_ignored = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
    raise IndexError(f"{op}: {what} {bad} is out of range for {where}: expected [0, {size}){or_ignored}")


def _bool_to_int(index):
    """Boolean masks become the integer arrays of their True positions (what scatter-add understands), and
    index arrays go where the data is (a NumPy index of a CuPy array is moved to the GPU once, here)."""
    parts = index if isinstance(index, tuple) else (index,)
    out = []
    for p in parts:
        if is_cupy() and getattr(p, "ndim", 0) > 0 and backend.array_device(p) == "cpu":
            p = xp.asarray(p)
        if hasattr(p, "dtype") and p.dtype == bool:
            out.extend(p.nonzero())
        else:
            out.append(p)
    return tuple(out) if isinstance(index, tuple) or len(out) > 1 else out[0]


class GetItem(Function):
    """y = a[index] (slices, ints, None, Ellipsis, integer or boolean arrays).

    The backward writes the gradient back to the positions read: ``grad_a[index] += g``. With integer
    arrays the same position may be read twice, so the write must *accumulate*: ``scatter_add``.
    """

    @staticmethod
    def forward(ctx, a, index):
        index = _bool_to_int(index)
        ctx.shape = a.shape
        ctx.index = index
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(
                f"index {index!r} is invalid for a tensor of shape {tuple(a.shape)}: {e}"
            ) from None

    @staticmethod
    def backward(ctx, g):
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic(ctx.index):  # slices and ints read each position at most once: a plain write will do
            grad[ctx.index] = g
        else:
            scatter_add(grad, ctx.index, g)
        return grad, None


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class TakeAlongAxis(Function):
    """y[..., j, ...] = a[..., idx[..., j, ...], ...] along ``axis`` (PyTorch's ``gather``).

    Every index must lie in [0, n), n = a.shape[axis] (``check_index_range``: no NumPy-style wrapping).
    Backward: scatter-add ``g`` into a zero array at the same positions.
    """

    @staticmethod
    def forward(ctx, a, indices, axis):
        axis = axis % a.ndim
        if indices.ndim != a.ndim:
            raise ValueError(
                f"gather: index must have as many dimensions as the input ({a.ndim}), got {indices.ndim}"
            )
        size = a.shape[axis]
        check_index_range("gather", "index", indices, size, where=f"dim {axis} of size {size}")
        ctx.shape = a.shape
        ctx.indices = indices
        ctx.axis = axis
        return xp.take_along_axis(a, indices, axis=axis)

    @staticmethod
    def backward(ctx, g):
        idx = ctx.indices
        # full index tuple: open ranges on every other axis, the gathered indices on ``axis``
        full = []
        for d in range(idx.ndim):
            if d == ctx.axis:
                full.append(idx)
            else:
                shape = [1] * idx.ndim
                shape[d] = idx.shape[d]
                # (n_d,) -> 1 on every axis but d: broadcasts along the others
                full.append(xp.arange(idx.shape[d]).reshape(shape))
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        scatter_add(grad, tuple(xp.broadcast_arrays(*full)), g)
        return grad, None


class MaskedFill(Function):
    """y = value where mask else a;  ∂y/∂a = 0 where mask, 1 elsewhere."""

    @staticmethod
    def forward(ctx, a, mask, value):
        mask = xp.asarray(mask, dtype=bool)
        try:
            b = xp.broadcast_shapes(a.shape, mask.shape)
        except ValueError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(a.shape)}"
            ) from None
        if b != a.shape:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} would change the shape {tuple(a.shape)} to {b}"
            )
        ctx.save_for_backward(mask)
        return xp.where(mask, xp.asarray(value, dtype=a.dtype), a)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return xp.where(mask, xp.zeros((), dtype=g.dtype), g), None, None


class Tril(Function):
    """Lower triangle of the last two axes (entries above diagonal ``k`` set to 0); backward = tril(g)."""

    @staticmethod
    def forward(ctx, a, k=0):
        ctx.k = k
        return xp.tril(a, k)

    @staticmethod
    def backward(ctx, g):
        return (xp.tril(g, ctx.k),)
