"""The backend switch, its errors and its shims (the CuPy side is tested in test_cupy.py on a GPU)."""
import itertools
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


def test_the_cupy_generator_shim_adds_normal_and_permutation_the_way_numpy_draws_them():
    """CuPy's Generator has no ``normal`` and no ``permutation``; minift calls both (weight init, LoRA's A,
    PPO's minibatches). The shim builds them from ``standard_normal`` and ``random``, which CuPy has, so it
    is checked here on top of NumPy's Generator (it only calls what both have)."""
    shim = backend.CupyGenerator(np.random.default_rng(7))
    np.testing.assert_array_equal(shim.normal(0.5, 0.02, (3, 4)), np.random.default_rng(7).normal(0.5, 0.02, (3, 4)))
    assert shim.integers(0, 10, 5).shape == (5,)  # the rest is the wrapped generator's own
    counts = {}
    for _ in range(6000):
        order = tuple(int(i) for i in shim.permutation(3))
        counts[order] = counts.get(order, 0) + 1
    assert sorted(counts) == sorted(itertools.permutations(range(3)))  # only permutations, all six
    chi2 = sum((c - 1000) ** 2 / 1000 for c in counts.values())
    assert chi2 < 20.5  # χ² with 5 degrees of freedom: P(χ² > 20.5) ≈ 0.001 when every order is equally likely
    with pytest.raises(TypeError, match="number of items"):
        shim.permutation(np.arange(3))


def test_rng_state_round_trips_on_numpy():
    mf.seed(3)
    state = backend.rng_state()
    first = backend.rng().random(4)
    backend.rng().random(10)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.rng().random(4), first)
    backend.set_rng_state(None)  # what a checkpoint written on CuPy holds: nothing to restore, no error


# The methods of cupy.random.Generator (CuPy 14, cupy/random/_generator_api.pyx), and what the shim adds
CUPY_GENERATOR_METHODS = {"random", "uniform", "integers", "beta", "chisquare", "dirichlet", "exponential", "f",
                          "geometric", "hypergeometric", "logseries", "standard_exponential", "poisson", "power",
                          "standard_normal", "gamma", "standard_gamma", "binomial", "bit_generator"}


def test_every_draw_minift_makes_exists_on_cupy():
    """A static check, so that it runs without a GPU: each ``rng().method`` in minift's source is one CuPy's
    Generator has, or one ``CupyGenerator`` adds (NumPy's Generator has more: ``choice``, ``shuffle``, …)."""
    import re
    from pathlib import Path

    added = {n for n in vars(backend.CupyGenerator) if not n.startswith("_")}
    calls = {}
    for file in Path(backend.__file__).parent.rglob("*.py"):
        for name in re.findall(r"\brng\(\)\.(\w+)", file.read_text()):
            calls.setdefault(name, set()).add(file.name)
    assert {"normal", "permutation", "random", "standard_normal"} <= set(calls)  # the pattern finds the calls
    missing = {n: sorted(f) for n, f in calls.items() if n not in CUPY_GENERATOR_METHODS | added}
    assert not missing, f"CuPy's Generator has no {missing}: add it to backend.CupyGenerator or draw otherwise"
    assert added == {"normal", "permutation"}


def test_a_runs_machine_names_the_backend_and_the_threads_its_figures_depend_on():
    import os
    import platform

    before = backend.get_num_threads()
    try:
        backend.set_num_threads(1)
        assert backend.machine_summary() == f"{platform.machine()}, {os.cpu_count()} CPUs, numpy, 1 thread"
        backend.set_num_threads(2)
        assert backend.machine_summary().endswith(", numpy, 2 threads")
    finally:
        backend.set_num_threads(before)
