"""Shared hypothesis strategies: shapes, broadcastable pairs, float64 arrays (some strided), tensors."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minift as mf


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_pair(min_dims=0, max_dims=3, max_side=4):
    """Two shapes that broadcast together, e.g. ((3, 1, 4), (2, 4))."""
    pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=max_dims,
                                              max_side=max_side)
    return pairs.map(lambda r: r.input_shapes)


@st.composite
def float_arrays(draw, shape, lo=-3.0, hi=3.0, noncontiguous=None):
    """float64 arrays of ``shape``; with ndim ≥ 2, half the time a Fortran-ordered (non-C-contiguous) view."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    a = draw(hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False)))
    if noncontiguous is None:
        noncontiguous = len(shape) >= 2 and draw(st.booleans())
    if noncontiguous and a.ndim >= 2:
        a = np.asfortranarray(a)  # same values, transposed memory layout
    return a


def away_from(a, points=(0.0,), gap=0.1):
    """Move values at least ``gap`` away from kinks (for ops whose derivative jumps there)."""
    a = a.copy()
    for p in points:
        close = np.abs(a - p) < gap
        a[close] = p + np.where(a[close] >= p, gap, -gap)
    return a


@st.composite
def positive_arrays(draw, shape, lo=0.2, hi=3.0):
    return draw(float_arrays(shape, lo, hi))


@st.composite
def distinct_arrays(draw, shape, spacing=1e-2):
    """Arrays whose elements are pairwise at least ``spacing`` apart (unique maxima, no ties)."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    n = int(np.prod(shape))
    perm = draw(st.permutations(range(n)))
    scale = draw(st.floats(0.5, 2.0))
    return (np.array(perm, dtype=np.float64).reshape(shape) - n / 2) * max(spacing, scale * 0.3)


def tensors(shape=shapes(), requires_grad=True):
    return float_arrays(shape).map(lambda a: mf.tensor(a, requires_grad=requires_grad))
