"""Gradient checking: compare the hand-written backward with central finite differences.

Central difference:  ∂f/∂xᵢ ≈ (f(x + εeᵢ) − f(x − εeᵢ)) / 2ε,  error O(ε²) — against O(ε) for the
one-sided (f(x + εeᵢ) − f(x))/ε. In float64 with ε = 1e-6 the truncation error (~ε²) and the rounding
error (~1e-16/ε) are both around 1e-10; in float32 the rounding error alone is ~1e-1, which is why
checks run in float64.

For a function with a non-scalar output we check vector-Jacobian products: pick a random ``v`` of the
output's shape and differentiate the scalar ``⟨v, f(x)⟩``. Small inputs get the full gradient (one pair
of evaluations per element); large ones a few random directions ``u``: ⟨∇, u⟩ ≈ (f(x+εu) − f(x−εu))/2ε.
"""
from __future__ import annotations

import numpy as np  # host-side only: dtypes, index arithmetic, the random directions (moved with backend.asarray)

from .. import backend
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


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, max_full=256, n_directions=6, seed=0):
    """Check ``fn``'s backward against central differences; True on success, ``GradcheckError`` otherwise.

    ``inputs``: a tensor or a sequence of tensors; those with ``requires_grad=True`` are checked and
    must be float64. Inputs with at most ``max_full`` elements are checked element by element (the full
    gradient of ⟨v, fn⟩); larger ones along ``n_directions`` random directions.
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
    rs = np.random.default_rng(seed)
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    v = backend.asarray(rs.standard_normal(out.shape))  # the random cotangent
    for i in checked:
        inputs[i].grad = None
    out.backward(Tensor._wrap(v.astype(out.dtype)))
    analytic = {i: inputs[i].grad if inputs[i].grad is not None else backend.xp.zeros_like(inputs[i].data) for i in checked}

    for i in checked:
        x = inputs[i].data
        a = backend.to_numpy(analytic[i]).reshape(-1)

        def f():
            return _scalar(fn, inputs, v)

        if x.size <= max_full:
            for j in range(x.size):
                num = central_difference(f, x, j, eps)
                if not abs(a[j] - num) <= atol + rtol * abs(num):
                    raise GradcheckError(
                        f"gradcheck failed for input {i} (shape {tuple(x.shape)}) at index "
                        f"{tuple(int(k) for k in np.unravel_index(j, x.shape))}: analytic {a[j]:.10g}, numerical {num:.10g}"
                    )
        else:
            for k in range(n_directions):
                u = rs.standard_normal(x.shape)
                base = x.copy()
                x[...] = base + eps * backend.asarray(u)
                fp = f()
                x[...] = base - eps * backend.asarray(u)
                fm = f()
                x[...] = base
                num = (fp - fm) / (2 * eps)
                ana = float((a * u.reshape(-1)).sum())
                if not abs(ana - num) <= atol * np.sqrt(x.size) + rtol * abs(num):
                    raise GradcheckError(
                        f"gradcheck failed for input {i} (shape {tuple(x.shape)}) along random direction {k}: "
                        f"analytic {ana:.10g}, numerical {num:.10g}"
                    )
    for i in checked:
        inputs[i].grad = None
    return True
