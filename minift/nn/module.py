"""``Module`` and ``Parameter``: the bookkeeping that turns tensors into a model.

Assigning a ``Parameter``, a ``Module`` or (via ``register_buffer``) an array to an attribute registers
it, so ``named_parameters()`` / ``state_dict()`` find everything by walking attribute names, giving the
dotted names PyTorch uses (``"encoder.layer.0.attention.self.query.weight"``).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np  # host-side only: dtype names and the shapes of checkpoint arrays

from .. import backend
from ..autograd.tensor import Tensor, is_dtype


class Parameter(Tensor):
    """A tensor that is part of a model's state: a leaf that requires grad by default."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: subclass it, assign submodules/parameters, write ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name!r}"
            )
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_modules", "_buffers"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._modules, self._buffers):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array, persistent=True):
        """A non-trained array that belongs to the state (e.g. RoPE tables); ``persistent`` ones are saved."""
        self._buffers[name] = array.data if isinstance(array, Tensor) else array
        if not persistent:
            self._non_persistent.add(name)

    def register_parameter(self, name, param):
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
            return
        setattr(self, name, param)

    def add_module(self, name, module):
        self._modules[name] = module

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        """Every module in the tree with its dotted name, this one first (as ``""``); each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            children = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items() if c is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target):
        """The submodule at dotted name ``target`` (``""`` is this module), as PyTorch's."""
        module = self
        for part in target.split(".") if target else ():
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} (looking for {target!r})")
            module = module._modules[part]
        return module

    def named_children(self):
        yield from ((k, m) for k, m in self._modules.items() if m is not None)

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", remove_duplicate=True):
        """(dotted name, Parameter) pairs; a shared parameter (tied weights) is listed once by default."""
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self, trainable_only=False):
        """Number of scalar parameters (shared ones counted once); ``trainable_only``: requires_grad ones."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter of this module."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def apply(self, fn):
        for m in list(self.modules())[::-1]:
            fn(m)
        return self

    def to(self, device=None, dtype=None):
        """Move and/or cast every parameter and float buffer in place (the Parameter objects stay the same).

        As in PyTorch, ``model.to(np.float64)`` (a dtype first) casts, ``model.to("cuda")`` moves.
        A layer takes inputs of its parameters' dtype only, so cast a model and its inputs together.
        """
        if dtype is None and is_dtype(device):
            dtype = device
            device = None
        for p in self.parameters():
            p.data = _move(p.data, device, dtype)
            if p.grad is not None:
                p.grad = _move(p.grad, device, dtype)
        for m in self.modules():
            for k, b in m._buffers.items():
                m._buffers[k] = _move(b, device, dtype if b.dtype.kind == "f" else None)
        return self

    def double(self):
        """Cast every floating-point parameter and buffer to float64 (``model.to(np.float64)``)."""
        return self.to(dtype=np.float64)

    def float(self):
        """Cast every floating-point parameter and buffer to float32 (``model.to(np.float32)``)."""
        return self.to(dtype=np.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Ordered {dotted name: array} of every parameter and persistent buffer (the live arrays)."""
        out = OrderedDict()
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is not None:
                    out[f"{mname}.{pname}" if mname else pname] = p.data
            for bname, b in m._buffers.items():
                if bname not in m._non_persistent:
                    out[f"{mname}.{bname}" if mname else bname] = b
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters/buffers in place; returns (missing_keys, unexpected_keys).

        Shapes must match exactly. With ``strict=True`` a missing or unexpected key is an error too.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for k, v in state_dict.items():
            if k in own:
                shape = tuple(getattr(v, "shape", np.shape(v)))
                if shape != tuple(own[k].shape):
                    expected = tuple(own[k].shape)
                    problems.append(f"  {k}: checkpoint has shape {shape}, the model expects {expected}")
        if len(problems) > 5:  # a wrong config mismatches every tensor: the first few say what is wrong
            problems = problems[:5] + [f"  … and {len(problems) - 5} more tensors of another shape"]

        def some(keys):
            return ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")

        if strict and (missing or unexpected):
            if missing:
                problems.append("  missing keys (in the model, not in the state dict): " + some(missing))
            if unexpected:
                problems.append("  unexpected keys (in the state dict, not in the model): " + some(unexpected))
        if problems:
            raise KeyError(f"load_state_dict into {type(self).__name__} failed:\n" + "\n".join(problems))
        for k, v in state_dict.items():
            if k in own:
                arr = v.data if isinstance(v, Tensor) else v
                host_or_device = backend.to_numpy(arr) if backend.is_cupy() else arr
                own[k][...] = backend.asarray(host_or_device, dtype=own[k].dtype)
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


def _move(a, device, dtype):
    if dtype is not None and a.dtype.kind == "f":
        a = a.astype(np.dtype(dtype))
    if device == "cuda":
        a = backend._import_cupy().asarray(a)
    elif device == "cpu":
        a = backend.to_numpy(a)
    elif device is not None:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return a
