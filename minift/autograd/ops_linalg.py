"""Matrix multiplication, batched and broadcasting like ``numpy.matmul``."""
from __future__ import annotations

from ..backend import xp
from .function import Function
from .ops_elementwise import unbroadcast


class MatMul(Function):
    """Y = A @ B over the last two axes, leading axes broadcast.

    With Y = AB and G = ∂L/∂Y:   ∂L/∂A = G Bᵀ,   ∂L/∂B = Aᵀ G,
    each summed over the leading axes along which its input was broadcast. A 1-D ``a`` is a row
    (1, n) and a 1-D ``b`` a column (n, 1), the added axis dropped again, as in NumPy.
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul needs at least 1-D inputs, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul shape mismatch: {tuple(a.shape)} @ {tuple(b.shape)} "
                f"(the last axis of a, {a.shape[-1]}, must equal the second-to-last of b)"
            )
        ctx.save_for_backward(a, b)
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
        ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb
        # END SOLUTION
