"""The same op registry on the CuPy backend: forward and gradients equal NumPy's. Skipped without a GPU."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift import backend

from .op_specs import SPECS

pytestmark = [
    pytest.mark.cupy,
    pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine"),
]


def _run(spec, arrays, kw, name):
    mf.set_backend(name)
    if name == "cupy":
        import cupy

        kw = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    ts = [mf.tensor(backend.asarray(a), requires_grad=spec.grad) for a in arrays]
    out = spec.fn(*ts, **kw)
    if spec.grad:
        out.backward(backend.asarray(np.linspace(-1, 1, out.size).reshape(out.shape)))
    return out.numpy(), [backend.to_numpy(t.grad) if t.grad is not None else None for t in ts]


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "F.dropout"], ids=lambda s: s.name)
@settings(max_examples=10)
@given(data=st.data())
def test_cupy_matches_numpy(spec, data):
    arrays, kw = spec.inputs(data.draw)
    try:
        out_np, g_np = _run(spec, arrays, kw, "numpy")
        out_cp, g_cp = _run(spec, arrays, kw, "cupy")
    finally:
        mf.set_backend("numpy")
    np.testing.assert_allclose(out_cp, out_np, rtol=1e-9, atol=1e-10)
    for a, b in zip(g_cp, g_np):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_tensor_moves_between_devices():
    x = mf.tensor(np.arange(3.0)).to("cuda")
    assert x.device == "cuda"
    np.testing.assert_array_equal(x.to("cpu").numpy(), np.arange(3.0))
