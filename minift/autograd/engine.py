"""Reverse-mode differentiation: walk the graph backwards in topological order.

For every tensor ``v`` the engine computes the adjoint ``dL/dv`` by summing, over each op ``u = f(v,…)``
that used it, the vector-Jacobian product ``f.backward(dL/du)``. Visiting tensors in reverse
topological order guarantees ``dL/du`` is complete before it is pushed to ``v``.
"""
from __future__ import annotations

from ..backend import xp


def topological_order(root):
    """Tensors reachable from ``root`` through graph nodes, parents before children (iterative DFS)."""
    from .tensor import Tensor

    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for p in t._node.parents:
                if isinstance(p, Tensor) and p.requires_grad and id(p) not in seen:
                    stack.append((p, False))
    return order


def backward(root, grad=None, retain_graph=False):
    from .tensor import Tensor

    if not root.requires_grad:
        raise RuntimeError("backward() called on a tensor that does not require grad (no graph to walk)")
    if root._freed:
        raise RuntimeError(
            "backward() through a graph a second time: its saved arrays were freed after the first "
            "backward; recompute the forward pass"
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar output, got shape {tuple(root.shape)}; "
                "pass grad= with the output's shape"
            )
        grad = xp.ones_like(root.data)
    else:
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=root.dtype)
        if grad.shape != root.data.shape:
            raise ValueError(f"grad has shape {tuple(grad.shape)}, expected the output's shape {tuple(root.shape)}")

    grads = {id(root): grad}
    for t in reversed(topological_order(root)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        for hook in t._hooks:
            out = hook(Tensor._wrap(g))
            if out is not None:
                g = out.data if isinstance(out, Tensor) else out
        if t._freed:
            raise RuntimeError("backward() through a graph a second time: its saved arrays were freed")
        node = t._node
        if node is None:  # a leaf: accumulate into .grad
            t.grad = g.copy() if t.grad is None else t.grad + g
            continue
        if t._retain_grad:
            t.grad = g.copy() if t.grad is None else t.grad + g
        in_grads = node.fn.backward(node.ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        # one gradient per positional input; trailing non-tensor inputs (shapes, axes) may be left out
        if len(in_grads) > len(node.parents) or any(
            isinstance(p, Tensor) and p.requires_grad for p in node.parents[len(in_grads):]
        ):
            raise RuntimeError(
                f"{node.fn.__name__}.backward returned {len(in_grads)} gradients for {len(node.parents)} inputs"
            )
        for p, pg in zip(node.parents, in_grads):
            if not (isinstance(p, Tensor) and p.requires_grad) or pg is None:
                continue
            if pg.shape != p.data.shape:
                raise RuntimeError(
                    f"{node.fn.__name__}.backward gave a gradient of shape {tuple(pg.shape)} for an input "
                    f"of shape {tuple(p.shape)}"
                )
            grads[id(p)] = pg if id(p) not in grads else grads[id(p)] + pg
        if not retain_graph:  # free the graph: saved arrays go, the tensor remembers it had one
            node.ctx.saved_tensors = ()
            t._freed = True
            t._node = None
