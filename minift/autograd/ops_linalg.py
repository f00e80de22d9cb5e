"""Matrix multiplication, batched and broadcasting like ``numpy.matmul``."""
from __future__ import annotations

from ..backend import matmul, xp
from .function import Function
from .ops_elementwise import unbroadcast


def check_matmul_shapes(shape_a, shape_b):
    """A clear ValueError unless ``a @ b`` is defined: inner dims equal, batch (leading) dims broadcast.

        (2, 3, 4) @ (2, 5, 6): "the last dim of the first (4) must equal the second-to-last of the second (5)"
        (2, 3, 4) @ (3, 4, 5): "batch dims (2,) and (3,) ... do not broadcast"
    """
    shape_a = tuple(shape_a)
    shape_b = tuple(shape_b)
    if len(shape_a) == 0 or len(shape_b) == 0:
        raise ValueError(f"matmul: needs at least 1-D inputs, got shapes {shape_a} and {shape_b}")
    inner_b = shape_b[-2] if len(shape_b) > 1 else shape_b[0]
    if shape_a[-1] != inner_b:
        which = "the second-to-last of the second" if len(shape_b) > 1 else "the only dim of the second"
        raise ValueError(
            f"matmul: shapes {shape_a} and {shape_b} do not align: the last dim of the first ({shape_a[-1]}) "
            f"must equal {which} ({inner_b})"
        )
    batch_a = shape_a[:-2]
    batch_b = shape_b[:-2]
    try:
        xp.broadcast_shapes(batch_a, batch_b)
    except ValueError:
        raise ValueError(
            f"matmul: batch dims {batch_a} and {batch_b} of shapes {shape_a} and {shape_b} do not broadcast "
            "(each pair of sizes must be equal or one of them 1)"
        ) from None


class MatMul(Function):
    """Y = A @ B over the last two axes, leading axes broadcast.

    With Y = AB and G = ∂L/∂Y:   ∂L/∂A = G Bᵀ,   ∂L/∂B = Aᵀ G,
    each summed over the leading axes along which its input was broadcast. A 1-D ``a`` is a row
    (1, n) and a 1-D ``b`` a column (n, 1), the added axis dropped again, as in NumPy.
    """

    @staticmethod
    def forward(ctx, a, b):
        check_matmul_shapes(a.shape, b.shape)
        ctx.save_for_backward(a, b)
        if a.ndim == 2 and b.ndim == 2:
            return matmul(a, b)  # split over the worker threads (backend.matmul)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a  # (n,) -> (1, n)
        b2 = b[:, None] if b.ndim == 1 else b  # (n,) -> (n, 1)
        if a.ndim == 1:
            g = xp.expand_dims(g, -2)  # put back the row axis of a
        if b.ndim == 1:
            g = xp.expand_dims(g, -1)  # put back the column axis of b
        # TASK ops.matmul_backward: gradients of a batched, broadcasting matmul
        # BEGIN SOLUTION
        ga = g @ xp.swapaxes(b2, -1, -2)  # (..., m, k) = (..., m, n) @ (..., n, k)
        gb = xp.swapaxes(a2, -1, -2) @ g  # (..., k, n) = (..., k, m) @ (..., m, n)
        ga = unbroadcast(ga, a2.shape).reshape(a.shape)  # a2's shape -> a's: (1, n) -> (n,) for a 1-D a
        gb = unbroadcast(gb, b2.shape).reshape(b.shape)  # b2's shape -> b's: (n, 1) -> (n,) for a 1-D b
        return ga, gb
        # END SOLUTION
