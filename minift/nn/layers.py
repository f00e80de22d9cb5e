"""The basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout — each a Parameter holder around F.*.

Initialisation follows PyTorch, so a model built here starts where the same model would there:
Linear weight and bias ~ U(−1/√in, 1/√in) (what ``kaiming_uniform_(a=√5)`` reduces to),
Embedding ~ N(0, 1), norms start as the identity (weight 1, bias 0).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

from .. import backend
from .. import functional as F
from ..backend import get_default_dtype, xp
from .module import Module, Parameter


_init = {"empty": False}


@contextmanager
def init_empty_weights():
    """Inside it, new layers get uninitialized weights (``xp.empty``): no random draws, and no memory touched
    until the weights are written. For loaders that overwrite every parameter right after building the model
    (accelerate's name for the same idea); the loader must check that it did."""
    before = _init["empty"]
    _init["empty"] = True
    try:
        yield
    finally:
        _init["empty"] = before


def skip_init():
    """True inside ``init_empty_weights()``."""
    return _init["empty"]


def _uniform(shape, bound):
    if skip_init():
        return Parameter(xp.empty(shape, dtype=get_default_dtype()))
    data = backend.rng().uniform(-bound, bound, size=shape).astype(get_default_dtype())
    return Parameter(backend.asarray(data))


def _as_shape(normalized_shape):
    """An int n means (n,): the last axis; a tuple names several trailing axes."""
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


class Linear(Module):
    """y = x Wᵀ + b, ``weight`` of shape (out_features, in_features): (..., in) → (..., out).

    The input must have the parameters' dtype (a float64 input to a float32 layer is a TypeError that
    says how to cast, as in PyTorch: see ``Module.double()`` / ``Module.float()``).
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        has_bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={has_bias}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``: ids (...) → (..., dim).

    Ids must lie in [0, num_embeddings). ``padding_idx`` (negative counts from the end, as in PyTorch)
    names a row that starts at 0 and gets no gradient.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise IndexError(
                    f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} embeddings: "
                    f"expected [-{num_embeddings}, {num_embeddings})"
                )
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        if skip_init():
            self.weight = Parameter(xp.empty((num_embeddings, embedding_dim), dtype=get_default_dtype()))
            return
        data = backend.rng().standard_normal((num_embeddings, embedding_dim)).astype(get_default_dtype())
        if padding_idx is not None:
            data[padding_idx] = 0
        self.weight = Parameter(backend.asarray(data))

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """(x − μ)/√(σ² + ε)·weight + bias over the trailing axes ``normalized_shape`` (see ``F.layer_norm``)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        dtype = get_default_dtype()
        self.weight = None
        self.bias = None
        if elementwise_affine:
            self.weight = Parameter(xp.ones(self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(xp.zeros(self.normalized_shape, dtype=dtype))

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class RMSNorm(Module):
    """x/√(mean(x²) + ε)·weight over the trailing axes ``normalized_shape`` (see ``F.rms_norm``)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.weight = None
        if elementwise_affine:
            self.weight = Parameter(xp.ones(self.normalized_shape, dtype=get_default_dtype()))

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class SiLU(Module):
    def forward(self, x):
        return F.silu(x)
