"""Gradient checking: compare the hand-written backward with central finite differences.

Central difference:  ∂f/∂xᵢ ≈ (f(x + εeᵢ) − f(x − εeᵢ)) / 2ε,  error O(ε²) — against O(ε) for the
one-sided (f(x + εeᵢ) − f(x))/ε. In float64 with ε = 1e-6 the truncation error (~ε²) and the rounding
error (~1e-16/ε) are both around 1e-10; in float32 the rounding error alone is ~1e-1, which is why
checks run in float64.

For a function with a non-scalar output we check vector-Jacobian products: pick a random ``v`` of the
output's shape and differentiate the scalar ``⟨v, f(x)⟩``. Small inputs get the full gradient (one pair
of evaluations per element); large ones a random subset of elements (or the ones you choose) plus a few
random directions ``u``: ⟨∇, u⟩ ≈ (f(x+εu) − f(x−εu))/2ε. ``gradcheck``'s docstring says what each can miss.
"""
from __future__ import annotations

import numpy as np  # host-side only: dtypes, index arithmetic, the random directions (moved with backend.asarray)

from .. import backend
from .engine import topological_order
from .grad_mode import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree; the message names the input and the index."""


def central_difference(f, x, i, eps):
    """(f(x + εeᵢ) − f(x − εeᵢ)) / 2ε for the flat index ``i`` of array ``x`` (restored afterwards).

    ``f`` takes no arguments: it reads ``x`` in place, so we perturb one element of ``x`` itself.
    """
    idx = np.unravel_index(i, x.shape)  # works for any strides (a reshape of a transposed view would copy)
    # TASK gradcheck.central_difference: the central finite difference along one coordinate
    # BEGIN SOLUTION
    old = x[idx].item()
    x[idx] = old + eps
    f_plus = f()
    x[idx] = old - eps
    f_minus = f()
    x[idx] = old
    return (f_plus - f_minus) / (2 * eps)
    # END SOLUTION


def _scalar(fn, inputs, v):
    """⟨v, fn(*inputs)⟩ as a Python float (no graph)."""
    with no_grad():
        out = fn(*inputs)
    return float(backend.to_numpy((out.data * v).sum()))


def _element_indices(x_size, max_full, n_elements, elements, rs):
    """Which flat coordinates of one input to check one by one.

    Every one when the input is small (≤ ``max_full`` elements), the ``elements`` the caller chose, or else
    ``n_elements`` drawn at random without replacement (the first and the last always among them).
    """
    if elements is not None:
        return list(elements)
    if x_size <= max_full:
        return list(range(x_size))
    k = min(n_elements, x_size)
    if k <= 2:
        return [0, x_size - 1][:k]
    interior = rs.choice(x_size - 2, size=k - 2, replace=False) + 1  # distinct, never the first or last
    return [0, *sorted(int(j) for j in interior), x_size - 1]


def _flat_index(index, shape):
    """A flat index from an int (possibly negative) or a tuple index; a clear error when out of range."""
    size = int(np.prod(shape))
    if isinstance(index, (tuple, list)):
        if len(index) != len(shape) or any(not -n <= j < n for j, n in zip(index, shape)):
            raise IndexError(f"gradcheck: element {tuple(index)} is not an index of an input of shape {tuple(shape)}")
        return int(np.ravel_multi_index(tuple(j % n for j, n in zip(index, shape)), shape))
    if not -size <= int(index) < size:
        raise IndexError(f"gradcheck: flat element {index} is out of range for an input of {size} elements")
    return int(index) % size


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, max_full=256, n_elements=32, n_directions=6,
              elements=None, seed=0):
    """Check ``fn``'s backward against central differences; True on success, ``GradcheckError`` otherwise.

    ``inputs``: a tensor or a sequence of tensors; those with ``requires_grad=True`` are checked and
    must be float64. What is compared, per checked input ``x`` (``g`` = the analytic gradient of ⟨v, fn⟩):

    * **elements** — ``g[j]`` against the central difference along coordinate ``j``. Every element when
      ``x`` has at most ``max_full`` of them; otherwise ``n_elements`` chosen at random (the first and last
      always among them), or exactly the ones you name with ``elements``: a list of indices (ints into the
      flattened input or index tuples) for every input, or a dict {input position: list}. Catches any wrong
      element it looks at, and says which; misses a wrong element it does not look at (a random subset
      of k out of n finds a single bad element with probability k/n).
    * **directions** (inputs above ``max_full``) — ``⟨g, u⟩`` against (f(x+εu) − f(x−εu))/2ε for
      ``n_directions`` random Gaussian ``u``. Sees every element at once, so it catches errors spread
      over many elements (a wrong axis, a missing factor) — but its tolerance grows like √size, so one
      slightly wrong element among thousands can hide in it, and it cannot say which element is wrong.

    Use ``max_full=x.size`` (or ``elements=range(x.size)``) for the exhaustive check when you can afford
    two evaluations of ``fn`` per element.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 (finite differences in float32 "
                "carry rounding errors of ~1e-1 at eps=1e-6)"
            )
    if isinstance(elements, dict):
        unknown = sorted(set(elements) - set(checked))
        if unknown:
            raise ValueError(f"gradcheck: elements names inputs {unknown}, but the checked inputs are {checked}")
    rs = np.random.default_rng(seed)
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    v = backend.asarray(rs.standard_normal(out.shape))  # the random cotangent
    # backward fills .grad of every tensor the graph reaches (the inputs, and parameters fn closes over):
    # the gradients a caller had there are put back afterwards, as torch.autograd.gradcheck leaves them
    reached = [t for t in topological_order(out) if t._node is None or t._retain_grad]
    kept = [(t, t.grad) for t in reached]
    try:
        for t in reached:
            t.grad = None
        out.backward(Tensor._wrap(v.astype(out.dtype)))
        analytic = {i: inputs[i].grad if inputs[i].grad is not None else backend.xp.zeros_like(inputs[i].data)
                    for i in checked}
    finally:
        for t, grad in kept:
            t.grad = grad

    def f():
        return _scalar(fn, inputs, v)

    for i in checked:
        x = inputs[i].data
        a = backend.to_numpy(analytic[i]).reshape(-1)  # x's shape -> (x.size,), indexed by the flat j
        chosen = elements.get(i) if isinstance(elements, dict) else elements
        if chosen is not None:
            chosen = [_flat_index(j, x.shape) for j in chosen]
        for j in _element_indices(x.size, max_full, n_elements, chosen, rs):
            num = central_difference(f, x, j, eps)
            if not abs(a[j] - num) <= atol + rtol * abs(num):
                raise GradcheckError(
                    f"gradcheck failed for input {i} (shape {tuple(x.shape)}) at index "
                    f"{tuple(int(k) for k in np.unravel_index(j, x.shape))}: analytic {a[j]:.10g}, "
                    f"numerical {num:.10g}"
                )
        if x.size <= max_full:
            continue
        for k in range(n_directions):
            u = rs.standard_normal(x.shape)
            base = x.copy()
            x[...] = base + eps * backend.asarray(u)
            fp = f()
            x[...] = base - eps * backend.asarray(u)
            fm = f()
            x[...] = base
            num = (fp - fm) / (2 * eps)
            ana = float((a * u.reshape(-1)).sum())  # x's shape -> (x.size,), as a
            if not abs(ana - num) <= atol * np.sqrt(x.size) + rtol * abs(num):
                raise GradcheckError(
                    f"gradcheck failed for input {i} (shape {tuple(x.shape)}) along random direction {k}: "
                    f"analytic {ana:.10g}, numerical {num:.10g} (a direction mixes every element: check "
                    "single elements with elements=[...] to find the wrong one)"
                )
    return True
