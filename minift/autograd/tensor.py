"""``Tensor``: an array plus what autograd needs — ``grad``, ``requires_grad`` and the node that made it.

Where each op lives (one entry point per op):
  * A named op (``exp``, ``sum``, ``reshape``, ``softmax``, ``matmul``, …) lives in ``minift.functional``
    (``F``): ``F.exp(x)`` checks its arguments and calls the op's ``Function``. The Tensor method of the
    same name is a shorthand that delegates to it: ``x.exp()`` is ``F.exp(x)``; ``a @ b`` is ``F.matmul``.
  * Arithmetic operators with no F name (``+ − * / **``, unary ``−``, indexing ``x[i]``) and the few
    methods with no F twin (``expand``, ``unsqueeze``, ``squeeze``) call their ``Function`` right here.
The forward and the hand-written backward of every op live in the ``ops_*`` modules.
"""
from __future__ import annotations

import numpy as np  # host-side only: dtypes, Python data, printing (arrays go through backend.asarray)

from .. import backend
from ..backend import get_default_dtype, xp
from . import ops_elementwise as elementwise
from . import ops_shape as shape_ops
from .engine import backward as run_backward
from .grad_mode import is_grad_enabled


def _to_array(data, dtype=None):
    """Any array-like → backend array. Python floats get the default float dtype; arrays keep theirs."""
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


def as_tensor(x, like=None):
    """``x`` as a Tensor: a Tensor as it is; anything else as a constant (no gradient).

    With ``like`` (a float Tensor), scalars and arrays take its dtype: ``x * 2.5`` and ``x + np.ones(3)``
    keep float32 rather than being promoted to float64. Without it, ``mf.tensor``'s rules apply.
    """
    if isinstance(x, Tensor):
        return x
    if like is None:
        return Tensor(x)
    dtype = like.dtype if like.dtype.kind == "f" else None
    return Tensor._wrap(_to_array(x, dtype))


def _shape_arg(shape):
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


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
        self._grad = None
        self._node = None  # the Node (Function, ctx, parents) that made this tensor; None for a leaf
        self._hooks = []
        self._freed = False  # True once backward has freed the node that made it
        self._retain_grad = False

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        """A Tensor around an existing backend array, without copying or converting it."""
        t = cls.__new__(cls)
        t.data = array
        t.requires_grad = requires_grad
        t._grad = None
        t._node = None
        t._hooks = []
        t._freed = False
        t._retain_grad = False
        return t

    # ------------------------------------------------------------------ properties
    @property
    def grad(self):
        """dL/d(this tensor) summed by ``backward``: an array of ``data``'s shape, or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        """Set by hand too (``p.grad = g``, as in PyTorch): ``g`` must have ``data``'s shape, and a NumPy array
        is moved to the GPU when the backend is CuPy (PyTorch refuses a gradient on another device)."""
        if value is not None:
            value = value.data if isinstance(value, Tensor) else value
            if not hasattr(value, "shape"):
                value = np.asarray(value, dtype=self.data.dtype)
            if isinstance(value, np.ndarray) and backend.array_device(self.data) == "cuda":
                value = backend.asarray(value)  # to the GPU, where the tensor is
            if value.shape != self.data.shape:
                raise ValueError(f"a gradient of shape {tuple(value.shape)} for a tensor of shape "
                                 f"{tuple(self.data.shape)}: a tensor's grad has its shape")
        self._grad = value

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
        run_backward(self, grad, retain_graph=retain_graph)

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

    def copy_(self, src):
        """Write ``src`` (a Tensor or anything array-like that broadcasts to this shape) into this tensor's array,
        in place, keeping its dtype: PyTorch's ``copy_``, e.g. ``lora_B.weight.copy_(np.random…)`` to pretend an
        adapter was trained. A NumPy ``src`` is copied to the GPU when the tensor lives there (CuPy refuses to
        write a host array into a device one). Not recorded by autograd: use it on leaves such as parameters."""
        src = src.data if isinstance(src, Tensor) else src
        if backend.array_device(self.data) == "cuda":
            src = backend.asarray(src, dtype=self.data.dtype)
        self.data[...] = src
        return self

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """The data as a NumPy array (copied to the host from a GPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()  # one element, any shape -> (): a 0-d array

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device=None, dtype=None):
        """A copy on ``"cpu"`` / ``"cuda"`` and/or with another dtype (stays in the graph for dtype casts).

        As in PyTorch, a dtype may come first: ``x.to(np.float64)`` is ``x.to(dtype=np.float64)``.
        """
        if dtype is None and is_dtype(device):
            dtype = device
            device = None
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = elementwise.Cast.apply(out, np.dtype(dtype))
        if device is None:
            return out
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        data = backend._import_cupy().asarray(out.data) if device == "cuda" else backend.to_numpy(out.data)
        return Tensor._wrap(data, requires_grad=out.requires_grad)

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def astype(self, dtype):
        return self.to(dtype=dtype)

    # ------------------------------------------------------------------ arithmetic operators
    # Scalars and arrays join the graph as constants with this tensor's dtype (``as_tensor(o, like=self)``).
    def __add__(self, o):
        return elementwise.Add.apply(self, as_tensor(o, like=self))

    def __radd__(self, o):
        return elementwise.Add.apply(as_tensor(o, like=self), self)

    def __sub__(self, o):
        return elementwise.Sub.apply(self, as_tensor(o, like=self))

    def __rsub__(self, o):
        return elementwise.Sub.apply(as_tensor(o, like=self), self)

    def __mul__(self, o):
        return elementwise.Mul.apply(self, as_tensor(o, like=self))

    def __rmul__(self, o):
        return elementwise.Mul.apply(as_tensor(o, like=self), self)

    def __truediv__(self, o):
        return elementwise.Div.apply(self, as_tensor(o, like=self))

    def __rtruediv__(self, o):
        return elementwise.Div.apply(as_tensor(o, like=self), self)

    def __pow__(self, o):
        return elementwise.Pow.apply(self, as_tensor(o, like=self))

    def __rpow__(self, o):
        return elementwise.Pow.apply(as_tensor(o, like=self), self)

    def __neg__(self):
        return elementwise.Neg.apply(self)

    def __matmul__(self, o):
        return F.matmul(self, o)

    def __rmatmul__(self, o):
        return F.matmul(o, self)

    # comparisons give plain (non-differentiable) boolean tensors
    def _compare(self, o, op):
        other = o.data if isinstance(o, Tensor) else o
        return Tensor._wrap(op(self.data, other))

    def __lt__(self, o):
        return self._compare(o, lambda a, b: a < b)

    def __le__(self, o):
        return self._compare(o, lambda a, b: a <= b)

    def __gt__(self, o):
        return self._compare(o, lambda a, b: a > b)

    def __ge__(self, o):
        return self._compare(o, lambda a, b: a >= b)

    def eq(self, o):
        return self._compare(o, lambda a, b: a == b)

    def __getitem__(self, index):
        return shape_ops.GetItem.apply(self, shape_ops.unwrap_index(index))

    def __setitem__(self, index, value):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                "in-place assignment into a tensor that requires grad; wrap it in mf.no_grad()"
            )
        self.data[shape_ops.unwrap_index(index)] = value.data if isinstance(value, Tensor) else value

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ elementwise (F is their home)
    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def tanh(self):
        return F.tanh(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def relu(self):
        return F.relu(self)

    def abs(self):
        return F.abs(self)

    def clip(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return F.clip(self, min, max)

    clamp = clip

    def maximum(self, o):
        return F.maximum(self, o)

    def minimum(self, o):
        return F.minimum(self, o)

    # ------------------------------------------------------------------ reductions (F is their home)
    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return F.var(self, axis, keepdims, ddof)

    def logsumexp(self, axis=-1, keepdims=False):
        return F.logsumexp(self, axis, keepdims)

    def argmax(self, axis=None):
        """Indices of the largest entries (not differentiable: an integer tensor)."""
        return Tensor._wrap(self.data.argmax(axis=axis))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        return F.reshape(self, _shape_arg(shape))  # any shape -> shape (same number of elements)

    view = reshape

    def flatten(self):
        return F.reshape(self, (-1,))  # any shape -> (n,)

    def transpose(self, *axes):
        return F.transpose(self, *axes)

    def permute(self, *axes):
        return F.transpose(self, *axes)

    def swapaxes(self, a, b):
        return F.swapaxes(self, a, b)

    @property
    def T(self):  # noqa: N802 - NumPy's name
        return F.transpose(self)

    def broadcast_to(self, *shape):
        return F.broadcast_to(self, _shape_arg(shape))

    def expand(self, *shape):
        """PyTorch's expand: like broadcast_to, where -1 keeps an axis's size."""
        shape = _shape_arg(shape)
        lead = len(shape) - self.ndim  # new leading axes
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        return shape_ops.BroadcastTo.apply(self, full)

    def unsqueeze(self, axis):
        shape = list(self.shape)
        shape.insert(axis % (self.ndim + 1), 1)
        return F.reshape(self, tuple(shape))  # (…) -> (…, 1, …): a size-1 axis inserted at axis

    def squeeze(self, axis):
        if self.shape[axis] != 1:
            raise ValueError(f"cannot squeeze axis {axis} of size {self.shape[axis]}")
        shape = list(self.shape)
        shape.pop(axis)
        return F.reshape(self, tuple(shape))  # (…, 1, …) -> (…): the size-1 axis dropped

    def masked_fill(self, mask, value):
        return F.masked_fill(self, mask, value)

    def tril(self, k=0):
        return F.tril(self, k)

    def split(self, split_size_or_sections, axis=0):
        return F.split(self, split_size_or_sections, axis)

    def gather(self, dim, index):
        return F.gather(self, dim, index)

    # ------------------------------------------------------------------ fused (F is their home)
    def softmax(self, axis=-1):
        return F.softmax(self, axis)

    def log_softmax(self, axis=-1):
        return F.log_softmax(self, axis)


def is_dtype(x):
    """Whether ``x`` names a dtype (np.float64, "float32", …) rather than a device."""
    if x is None or x in ("cpu", "cuda"):
        return False
    try:
        np.dtype(x)
    except TypeError:
        return False
    return True


def tensor(data, requires_grad=False, dtype=None):
    """A leaf tensor. Python floats get ``mf.get_default_dtype()`` (float32); arrays keep their dtype."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=None, requires_grad=False):
    return Tensor._wrap(xp.zeros(_shape_arg(shape), dtype=dtype or get_default_dtype()), requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return Tensor._wrap(xp.ones(_shape_arg(shape), dtype=dtype or get_default_dtype()), requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal samples from minift's seeded generator."""
    data = backend.rng().standard_normal(_shape_arg(shape)).astype(dtype or get_default_dtype())
    return Tensor._wrap(backend.asarray(data), requires_grad)


def arange(*args, dtype=None):
    return Tensor._wrap(xp.arange(*args, dtype=dtype))


# functional builds on Tensor and Tensor's named methods delegate to functional: importing it last lets
# either module be imported first (the methods look ``F`` up only when called).
from .. import functional as F  # noqa: E402
