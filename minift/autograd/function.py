"""``Function``: one differentiable op = a forward and a hand-written backward, sharing a ``ctx``.

    class Square(mf.Function):
        @staticmethod
        def forward(ctx, x):              # x is a raw array (NumPy/CuPy), not a Tensor
            ctx.save_for_backward(x)
            return x * x
        @staticmethod
        def backward(ctx, grad):          # grad = dL/d(output), same shape as the output
            (x,) = ctx.saved_tensors
            return 2 * x * grad           # dL/dx, one gradient per positional input

    y = Square.apply(t)                   # a Tensor wired into the graph

``forward`` receives the positional Tensor arguments as arrays (other arguments as they are) and
returns an array; ``backward`` returns one gradient (array or None) per positional argument.
"""
from __future__ import annotations

from .grad_mode import is_grad_enabled


# An instrument may watch the graph being built (``minift.inspect.memory_report``): when set, it is called with
# every Node as it is made. None in normal use: the cost is one comparison per op.
node_observer = None


class Context:
    """Scratch space shared by a Function's forward and backward."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Node:
    """An edge of the graph: which Function made a tensor, its ctx, and its parent tensors."""

    __slots__ = ("fn", "ctx", "parents")

    def __init__(self, fn, ctx, parents):
        self.fn = fn
        self.ctx = ctx
        self.parents = parents  # tuple: the positional inputs (Tensor or other) of forward


class Function:
    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from .tensor import Tensor

        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        track = is_grad_enabled() and any(needs)
        ctx = Context(needs)
        out = cls.forward(ctx, *arrays, **kwargs)
        result = Tensor._wrap(out, requires_grad=track)
        if track:
            result._node = Node(cls, ctx, args)
            if node_observer is not None:
                node_observer(result._node)
        return result
