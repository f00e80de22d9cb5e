"""The backend switch, its errors and its shims (the CuPy side is tested in test_cupy.py on a GPU)."""
import math

import numpy as np
import pytest

import minift as mf
from minift import backend


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        mf.set_backend("jax")


@pytest.mark.skipif(backend.cupy_available(), reason="only meaningful where CuPy is missing")
def test_asking_for_cupy_without_it_says_how_to_get_it():
    with pytest.raises(RuntimeError, match=r"minift\[gpu\]|no usable GPU"):
        mf.set_backend("cupy")
    assert mf.get_backend() == "numpy"


def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(4)
    backend.scatter_add(target, np.array([1, 1, 3]), np.array([1.0, 2.0, 5.0]))
    np.testing.assert_array_equal(target, [0, 3, 0, 5])


def test_erf_matches_math_erf():
    x = np.linspace(-4, 4, 41)
    np.testing.assert_allclose(backend.erf(x), [math.erf(v) for v in x], rtol=1e-14, atol=1e-15)


def test_default_dtype_rejects_non_floats():
    with pytest.raises(ValueError, match="default dtype"):
        mf.set_default_dtype("int32")


def test_xp_forwards_to_the_active_module():
    assert backend.xp.zeros(2).__class__ is np.ndarray
    assert "numpy" in repr(backend.xp)


def test_malloc_tuning_is_applied_on_linux_and_can_be_turned_off(monkeypatch):
    import sys

    if sys.platform.startswith("linux"):
        assert backend.tune_malloc() is True
    monkeypatch.setenv("MINIFT_MALLOC_TUNING", "0")
    assert backend.tune_malloc() is False


def test_scatter_add_rows_equals_add_at():
    rs = np.random.default_rng(0)
    rows = rs.integers(0, 7, 50)
    vals = rs.standard_normal((50, 3))
    fast, slow = np.zeros((7, 3)), np.zeros((7, 3))
    backend.scatter_add_rows(fast, rows, vals)
    np.add.at(slow, rows, vals)
    np.testing.assert_allclose(fast, slow, atol=1e-12)
