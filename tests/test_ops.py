"""Every op in the registry: forward equals NumPy, backward equals central differences, float32 stays so."""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import functional as F
from minift.autograd.tensor import Tensor

from .op_specs import SPEC_NAMES, SPECS

WITH_REF = [s for s in SPECS if s.ref is not None]
GRAD = [s for s in SPECS if s.grad]

# Tensor methods that are not differentiable ops (conversion, autograd plumbing, comparisons).
NOT_OPS = {
    "backward", "register_hook", "retain_grad", "detach", "requires_grad_", "zero_grad", "numpy", "item",
    "tolist", "to", "float", "double", "astype", "argmax", "eq",
    "copy_",  # an in-place write into a leaf's array (PyTorch's copy_), outside the graph: no gradient to check
}


def _call(spec, arrays, kw, requires_grad=False, dtype=None):
    ts = [mf.tensor(a if dtype is None else a.astype(dtype), requires_grad=requires_grad) for a in arrays]
    return ts, spec.fn(*ts, **kw)


@pytest.mark.parametrize("spec", WITH_REF, ids=lambda s: s.name)
@given(data=st.data())
def test_forward_matches_numpy(spec, data):
    arrays, kw = spec.inputs(data.draw)
    _, out = _call(spec, arrays, kw)
    expected = np.asarray(spec.ref(*arrays, **kw))
    assert out.shape == expected.shape, f"{spec.name}: shape {out.shape}, NumPy gives {expected.shape}"
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=spec.atol)


def _with_task(spec):
    marks = [pytest.mark.task(spec.task)] if spec.task else []
    return pytest.param(spec, marks=marks, id=spec.name)


@pytest.mark.parametrize("spec", [_with_task(s) for s in GRAD])
@given(data=st.data())
def test_gradcheck(spec, data):
    arrays, kw = spec.inputs(data.draw)
    ts = [mf.tensor(a, requires_grad=True) for a in arrays]
    assert mf.gradcheck(lambda *xs: spec.fn(*xs, **kw), ts)


@pytest.mark.parametrize("spec", WITH_REF, ids=lambda s: s.name)
@given(data=st.data())
def test_float32_stays_float32(spec, data):
    arrays, kw = spec.inputs(data.draw)
    ts, out = _call(spec, arrays, kw, requires_grad=True, dtype=np.float32)
    assert out.dtype == np.float32, f"{spec.name} promoted float32 to {out.dtype}"
    np.testing.assert_allclose(out.numpy(), np.asarray(spec.ref(*arrays, **kw)), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    for t in ts:
        grad_dtype = getattr(t.grad, "dtype", None)
        assert t.grad is not None and grad_dtype == np.float32, f"{spec.name}: gradient dtype {grad_dtype}"


def _exported_ops():
    names = set()
    for name, obj in vars(F).items():
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == "minift.functional":
            names.add(f"F.{name}")
    for name in ("where", "concatenate", "stack", "split"):
        names.add(f"mf.{name}")
    for name, obj in vars(Tensor).items():
        if name in NOT_OPS or (name.startswith("_") and not name.startswith("__")):
            continue
        if name.startswith("__") and name not in {
            "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
            "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__matmul__", "__rmatmul__", "__getitem__",
        }:
            continue
        if callable(obj) or isinstance(obj, property) and name == "T":
            names.add(f"Tensor.{name}")
    return names


def test_every_export_has_a_spec():
    missing = sorted(_exported_ops() - SPEC_NAMES)
    assert not missing, f"exported ops without an op spec in tests/op_specs.py: {missing}"


def test_the_spec_registry_is_not_empty_and_names_are_real():
    assert len(SPECS) >= 50
    exported = _exported_ops()
    unknown = sorted(n for n in SPEC_NAMES if n not in exported)
    assert not unknown, f"specs name ops that are not exported: {unknown}"
