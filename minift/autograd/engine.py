"""Reverse-mode differentiation: walk the graph backwards in topological order.

For every tensor ``v`` the engine computes the adjoint ``dL/dv`` by summing, over each op ``u = f(v,…)``
that used it, the vector-Jacobian product ``f.backward(dL/du)``. Visiting tensors in reverse
topological order guarantees ``dL/du`` is complete before it is pushed to ``v``.

``backward`` is that loop and nothing else; the bookkeeping around it (checks, hooks, ``retain_grad``,
freeing the graph) lives in the small helpers below it.
"""
from __future__ import annotations

from ..backend import xp


def _needs_grad(x):
    """Whether ``x`` (a graph input: a Tensor, or a constant such as a shape) takes part in backward."""
    from .tensor import Tensor

    return isinstance(x, Tensor) and x.requires_grad


def topological_order(root):
    """Tensors reachable from ``root`` through graph nodes, parents before children (iterative DFS).

    A depth-first search emits a tensor *after* all its parents (post-order). Written recursively that
    is three lines, but Python stops at about 1000 nested calls, and a 30-layer transformer's graph is
    thousands of tensors deep. So the recursion is replaced by an explicit stack, on which every tensor
    is pushed twice: first as ``(t, False)`` "to expand" — which pushes ``(t, True)`` and then its
    parents on top — and later, once everything above it (its parents and their ancestors) has been
    emitted, it pops again as ``(t, True)`` "to emit after its parents".
    """
    order = []
    seen = set()
    stack = [(root, False)]
    while stack:
        tensor, parents_done = stack.pop()
        if parents_done:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            for parent in tensor._node.parents:
                if _needs_grad(parent) and id(parent) not in seen:
                    stack.append((parent, False))
    return order


def backward(root, grad=None, retain_graph=False):
    """Fill ``.grad`` of every leaf that ``root`` depends on with dL/d(leaf), L = ⟨grad, root⟩.

    The chain rule, in reverse topological order: each tensor's gradient is complete when its turn
    comes (every op that used it is later in the graph, so already visited); its op's ``backward``
    turns it into one gradient per input, which is added to what those inputs have received so far.
    """
    _check_root(root)
    grads = {id(root): _seed_gradient(root, grad)}  # id(tensor) → dL/d(tensor), summed over its uses
    for tensor in reversed(topological_order(root)):  # children before parents
        g = grads.pop(id(tensor), None)
        if g is None:  # no path from this tensor to root carried a gradient
            continue
        _check_not_freed(tensor)
        g = _run_hooks(tensor, g)
        node = tensor._node
        if node is None or tensor._retain_grad:  # a leaf (or a kept intermediate): store dL/d(tensor)
            _accumulate(tensor, g)
        if node is None:
            continue
        input_grads = _check_input_grads(node, node.fn.backward(node.ctx, g))  # the op's VJP
        for parent, parent_grad in zip(node.parents, input_grads):
            if _needs_grad(parent) and parent_grad is not None:
                previous = grads.get(id(parent))
                grads[id(parent)] = parent_grad if previous is None else previous + parent_grad
        if not retain_graph:
            _free(tensor)


# ------------------------------------------------------------------ the helpers of backward
def _check_root(root):
    if not root.requires_grad:
        raise RuntimeError("backward() called on a tensor that does not require grad (no graph to walk)")
    _check_not_freed(root)


def _check_not_freed(tensor):
    if tensor._freed:
        raise RuntimeError(
            "backward() through a graph a second time: its saved arrays were freed after the first "
            "backward; recompute the forward pass, or pass retain_graph=True to the first backward()"
        )


def _seed_gradient(root, grad):
    """dL/d(root): 1 for a scalar root, else the ``grad`` given (an array or Tensor of root's shape)."""
    from .tensor import Tensor

    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar output, got shape {tuple(root.shape)}; "
                "pass grad= with the output's shape"
            )
        return xp.ones_like(root.data)
    grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=root.dtype)
    if grad.shape != root.data.shape:
        raise ValueError(
            f"grad has shape {tuple(grad.shape)}, expected the output's shape {tuple(root.shape)}"
        )
    return grad


def _run_hooks(tensor, g):
    """Call the tensor's hooks in order; a hook that returns something replaces the gradient."""
    from .tensor import Tensor

    for hook in tensor._hooks:
        out = hook(Tensor._wrap(g))
        if out is not None:
            g = out.data if isinstance(out, Tensor) else out
    return g


def _accumulate(tensor, g):
    """``tensor.grad += g`` (a copy the first time, so later in-place updates never alias ``g``)."""
    tensor.grad = g.copy() if tensor.grad is None else tensor.grad + g


def _check_input_grads(node, input_grads):
    """One gradient per positional input, each of its input's shape, or a clear error naming the op.

    Trailing non-tensor inputs (shapes, axes) may be left out of the tuple a backward returns.
    """
    name = node.fn.__name__
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    unanswered = node.parents[len(input_grads):]
    if len(input_grads) > len(node.parents) or any(_needs_grad(p) for p in unanswered):
        raise RuntimeError(
            f"{name}.backward returned {len(input_grads)} gradients for {len(node.parents)} inputs"
        )
    for parent, parent_grad in zip(node.parents, input_grads):
        if _needs_grad(parent) and parent_grad is not None and parent_grad.shape != parent.data.shape:
            raise RuntimeError(
                f"{name}.backward gave a gradient of shape {tuple(parent_grad.shape)} for an input "
                f"of shape {tuple(parent.shape)}"
            )
    return input_grads


def _free(tensor):
    """Drop the node's saved arrays (the graph's memory); the tensor remembers that it had a graph."""
    tensor._node.ctx.saved_tensors = ()
    tensor._freed = True
    tensor._node = None
