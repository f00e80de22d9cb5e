"""``Tensor``: an array plus what autograd needs — ``grad``, ``requires_grad`` and the node that made it.

Operators and methods are thin: each one calls a ``Function`` from the ops modules, which is where
the forward and the hand-written backward live.
"""
from __future__ import annotations

import numpy as np  # host-side only: dtypes, converting Python data, printing (arrays go through backend.asarray)

from .. import backend
from ..backend import get_default_dtype, xp
from . import ops_elementwise as E
from . import ops_linalg as L
from . import ops_reduce as R
from . import ops_shape as S
from .engine import backward as _backward
from .function import Function
from .grad_mode import is_grad_enabled

def _to_array(data, dtype=None):
    """Any array-like → backend array. Python floats/lists become the default float dtype; arrays keep theirs."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return backend.asarray(data, dtype=np.dtype(dtype))
    if isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__"):
        return backend.asarray(data)
    arr = np.asarray(data)
    if arr.dtype.kind == "f" or arr.dtype == object:
        arr = arr.astype(get_default_dtype())
    return backend.asarray(arr)


class Tensor:
    """A node of the computation graph.

    ``data``  the array (NumPy or CuPy), ``grad`` the accumulated gradient (an array of ``data``'s shape
    or None), ``requires_grad`` whether gradients flow to it.
    """

    __array_priority__ = 1000  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self._hooks = []
        self._freed = False
        self._retain_grad = False

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        t = cls.__new__(cls)
        t.data, t.requires_grad, t.grad = array, requires_grad, None
        t._node, t._hooks, t._freed, t._retain_grad = None, [], False, False
        return t

    # ------------------------------------------------------------------ properties
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return backend.array_device(self.data)

    @property
    def is_leaf(self):
        return self._node is None and not self._freed

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        g = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(backend.to_numpy(self.data), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{g})"

    # ------------------------------------------------------------------ autograd
    def backward(self, grad=None, retain_graph=False):
        """Fill ``.grad`` of every leaf this tensor depends on with ∂self/∂leaf (times ``grad``)."""
        _backward(self, grad, retain_graph=retain_graph)

    def register_hook(self, fn):
        """Call ``fn(grad_tensor)`` when this tensor's gradient is computed; a returned value replaces it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        self._hooks.append(fn)
        return fn

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor too (leaves always keep it)."""
        self._retain_grad = True
        return self

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """The data as a NumPy array (copied to the host from a GPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device=None, dtype=None):
        """A copy on ``"cpu"`` / ``"cuda"`` and/or with another dtype (stays in the graph for dtype casts)."""
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = Cast.apply(out, np.dtype(dtype))
        if device is not None:
            if device not in ("cpu", "cuda"):
                raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
            if device == "cuda":
                cupy = backend._import_cupy()
                data = cupy.asarray(out.data)
            else:
                data = backend.to_numpy(out.data)
            moved = Tensor._wrap(data, requires_grad=out.requires_grad)
            return moved
        return out

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def astype(self, dtype):
        return self.to(dtype=dtype)

    # ------------------------------------------------------------------ operators
    def _other(self, x):
        """Scalars and arrays join the graph as constants with this tensor's dtype (no float64 promotion)."""
        if isinstance(x, Tensor):
            return x
        dt = self.dtype if self.dtype.kind == "f" else None
        return Tensor._wrap(_to_array(x, dt))

    def __add__(self, o):
        return E.Add.apply(self, self._other(o))

    def __radd__(self, o):
        return E.Add.apply(self._other(o), self)

    def __sub__(self, o):
        return E.Sub.apply(self, self._other(o))

    def __rsub__(self, o):
        return E.Sub.apply(self._other(o), self)

    def __mul__(self, o):
        return E.Mul.apply(self, self._other(o))

    def __rmul__(self, o):
        return E.Mul.apply(self._other(o), self)

    def __truediv__(self, o):
        return E.Div.apply(self, self._other(o))

    def __rtruediv__(self, o):
        return E.Div.apply(self._other(o), self)

    def __pow__(self, o):
        return E.Pow.apply(self, self._other(o))

    def __rpow__(self, o):
        return E.Pow.apply(self._other(o), self)

    def __neg__(self):
        return E.Neg.apply(self)

    def __matmul__(self, o):
        return L.MatMul.apply(self, self._other(o))

    def __rmatmul__(self, o):
        return L.MatMul.apply(self._other(o), self)

    # comparisons give plain (non-differentiable) boolean tensors
    def _cmp(self, o, op):
        other = o.data if isinstance(o, Tensor) else o
        return Tensor._wrap(op(self.data, other))

    def __lt__(self, o):
        return self._cmp(o, lambda a, b: a < b)

    def __le__(self, o):
        return self._cmp(o, lambda a, b: a <= b)

    def __gt__(self, o):
        return self._cmp(o, lambda a, b: a > b)

    def __ge__(self, o):
        return self._cmp(o, lambda a, b: a >= b)

    def eq(self, o):
        return self._cmp(o, lambda a, b: a == b)

    def __getitem__(self, index):
        return S.GetItem.apply(self, S._unwrap_index(index))

    def __setitem__(self, index, value):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError("in-place assignment into a tensor that requires grad; wrap it in mf.no_grad()")
        self.data[S._unwrap_index(index)] = value.data if isinstance(value, Tensor) else value

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ elementwise
    def exp(self):
        return E.Exp.apply(self)

    def log(self):
        return E.Log.apply(self)

    def sqrt(self):
        return E.Sqrt.apply(self)

    def tanh(self):
        return E.Tanh.apply(self)

    def sigmoid(self):
        return E.Sigmoid.apply(self)

    def relu(self):
        return E.Relu.apply(self)

    def abs(self):
        return E.Abs.apply(self)

    def clip(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        if min is None and max is None:
            raise ValueError("clip needs at least one of min and max")
        return E.Clip.apply(self, min, max)

    clamp = clip

    def maximum(self, o):
        return E.Maximum.apply(self, self._other(o))

    def minimum(self, o):
        return E.Minimum.apply(self, self._other(o))

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False):
        return R.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return R.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return R.Max.apply(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return R.Var.apply(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def logsumexp(self, axis=-1, keepdims=False):
        return R.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return Tensor._wrap(self.data.argmax(axis=axis))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return S.Reshape.apply(self, shape)

    view = reshape

    def flatten(self):
        return self.reshape(-1)

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return S.Transpose.apply(self, axes or None)

    def permute(self, *axes):
        return self.transpose(*axes)

    def swapaxes(self, a, b):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return S.Transpose.apply(self, tuple(axes))

    @property
    def T(self):  # noqa: N802 - NumPy's name
        return S.Transpose.apply(self, None)

    def broadcast_to(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return S.BroadcastTo.apply(self, shape)

    def expand(self, *shape):
        """PyTorch's expand: like broadcast_to, where -1 keeps an axis's size."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        lead = len(shape) - self.ndim
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        return S.BroadcastTo.apply(self, full)

    def unsqueeze(self, axis):
        shape = list(self.shape)
        shape.insert(axis % (self.ndim + 1), 1)
        return self.reshape(tuple(shape))

    def squeeze(self, axis):
        if self.shape[axis] != 1:
            raise ValueError(f"cannot squeeze axis {axis} of size {self.shape[axis]}")
        shape = list(self.shape)
        shape.pop(axis)
        return self.reshape(tuple(shape))

    def masked_fill(self, mask, value):
        mask = mask.data if isinstance(mask, Tensor) else mask
        return S.MaskedFill.apply(self, mask, value)

    def tril(self, k=0):
        return S.Tril.apply(self, k)

    def split(self, split_size_or_sections, axis=0):
        from .. import functional as F

        return F.split(self, split_size_or_sections, axis)

    def gather(self, dim, index):
        from .. import functional as F

        return F.gather(self, dim, index)

    def softmax(self, axis=-1):
        from .. import functional as F

        return F.softmax(self, axis)

    def log_softmax(self, axis=-1):
        from .. import functional as F

        return F.log_softmax(self, axis)


class Cast(Function):
    """y = x in another dtype; the gradient is cast back to the input's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype), None


def tensor(data, requires_grad=False, dtype=None):
    """Make a leaf tensor. Floats default to ``mf.get_default_dtype()`` (float32); NumPy arrays keep their dtype."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=None, requires_grad=False):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor._wrap(xp.zeros(shape, dtype=dtype or get_default_dtype()), requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor._wrap(xp.ones(shape, dtype=dtype or get_default_dtype()), requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal samples from minift's seeded generator."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    data = backend.rng().standard_normal(shape).astype(dtype or get_default_dtype())
    return Tensor._wrap(backend.asarray(data), requires_grad)


def arange(*args, dtype=None):
    return Tensor._wrap(xp.arange(*args, dtype=dtype))
