"""The array backend: one namespace, ``xp``, for NumPy on the CPU and CuPy on a GPU.

Every piece of array code in minift says ``xp.exp(...)``, ``xp.zeros(...)``, never ``np.``: ``xp`` is a
small proxy that forwards each attribute to the backend chosen now, so the same source runs on both.

    mf.set_backend("cupy")          # or MINIFT_BACKEND=cupy in the environment
    mf.set_default_dtype("float64") # float32 is the default, float64 works everywhere
    mf.seed(0)                      # makes parameter init and dropout reproducible

The few things NumPy and CuPy spell differently live here as shims: ``scatter_add`` (``np.add.at`` vs
``cupyx.scatter_add``), ``erf``, ``to_numpy`` and the random generator.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

_BACKENDS = ("numpy", "cupy")
_state = {"name": "numpy", "module": np, "dtype": np.dtype(np.float32), "rng": None, "seed": None}


class _XP:
    """Forwards ``xp.anything`` to the active array module (numpy or cupy)."""

    def __getattr__(self, name):
        return getattr(_state["module"], name)

    def __repr__(self):
        return f"<minift xp -> {_state['name']}>"


xp = _XP()


def _import_cupy():
    try:
        import cupy  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy' was requested but CuPy is not installed: "
            "install it with `pip install 'minift[gpu]'` on a machine with an NVIDIA GPU"
        ) from e
    try:
        cupy.zeros(1)
    except Exception as e:  # pragma: no cover
        raise RuntimeError(f"backend 'cupy' was requested but no usable GPU was found: {e}") from e
    return cupy


def set_backend(name: str) -> None:
    """Choose the array backend: ``"numpy"`` (CPU) or ``"cupy"`` (GPU)."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    _state["module"] = np if name == "numpy" else _import_cupy()
    _state["name"] = name
    if _state["seed"] is not None:
        seed(_state["seed"])


def get_backend() -> str:
    return _state["name"]


def is_cupy() -> bool:
    return _state["name"] == "cupy"


def cupy_available() -> bool:
    """True when CuPy imports and sees a GPU (used by tests to skip cleanly)."""
    try:
        _import_cupy()
        return True
    except RuntimeError:
        return False


# ----------------------------------------------------------------------------- dtypes
def set_default_dtype(dtype) -> None:
    """Default floating dtype for new tensors and parameters (float32 unless you say otherwise)."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)):
        raise ValueError(f"default dtype must be float16, float32 or float64, got {dt}")
    _state["dtype"] = dt


def get_default_dtype():
    return _state["dtype"]


# ----------------------------------------------------------------------------- random
def seed(n: int) -> None:
    """Seed minift's generator: parameter init and dropout masks become reproducible."""
    _state["seed"] = int(n)
    _state["rng"] = _state["module"].random.default_rng(int(n)) if is_cupy() else np.random.default_rng(int(n))


def rng():
    """The backend's random Generator (numpy.random.Generator or cupy's)."""
    if _state["rng"] is None:
        seed(np.random.SeedSequence().entropy % (2**32))
    return _state["rng"]


# ----------------------------------------------------------------------------- shims
def scatter_add(target, index, values) -> None:
    """In place ``target[index] += values`` that *accumulates* repeated indices.

    Plain ``target[idx] += v`` keeps only one write per repeated index; the backward of indexing
    and of embeddings needs every contribution summed. NumPy calls this ``np.add.at``, CuPy
    ``cupyx.scatter_add``.
    """
    if is_cupy():  # pragma: no cover - GPU only
        import cupyx

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


def scatter_add_rows(target, rows, values) -> None:
    """``target[rows[i]] += values[i]`` for a 1-D integer ``rows`` and 2-D ``target``/``values``, accumulating repeats.

    The embedding backward does this for every token of a batch. ``np.add.at`` handles it one element at
    a time and is slow; sorting the rows and summing each run with ``np.add.reduceat`` is vectorized.
    On CuPy, ``cupyx.scatter_add`` is already fast (atomic adds on the GPU).
    """
    if is_cupy() or len(rows) == 0:  # pragma: no cover - GPU path
        scatter_add(target, rows, values)
        return
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])  # first index of each run
    target[sorted_rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


def erf(x):
    """The error function, elementwise (SciPy's on the CPU, cupyx's on the GPU)."""
    if is_cupy():  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf as _erf
    else:
        from scipy.special import erf as _erf
    return _erf(x)


def to_numpy(a):
    """Bring an array to host memory as a NumPy array (no copy when already NumPy)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy.ndarray
        return a.get()
    return np.asarray(a)


def asarray(a, dtype=None):
    """An array on the active backend (moves NumPy data to the GPU when the backend is CuPy)."""
    return _state["module"].asarray(a, dtype=dtype)


def array_device(a) -> str:
    return "cpu" if isinstance(a, np.ndarray) or np.isscalar(a) else "cuda"


def tune_malloc() -> bool:
    """Keep freed activation buffers in the process instead of handing them back to the OS (Linux, glibc).

    glibc serves large allocations (≥ 128 KiB by default) with mmap and unmaps them on free, so every
    training step's fresh activations page-fault and get zeroed by the kernel again — a third of a small
    transformer's step time on a CPU. Raising the mmap and trim thresholds makes the allocator reuse that
    memory. Costs some resident memory; set ``MINIFT_MALLOC_TUNING=0`` to keep glibc's defaults.
    """
    if os.environ.get("MINIFT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, …): nothing to tune
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 32 << 20)  # 32 MiB, glibc's maximum on 64-bit
    ok &= libc.mallopt(m_trim_threshold, 1 << 30)
    ok &= libc.mallopt(m_top_pad, 64 << 20)
    return bool(ok)


tune_malloc()

_env = os.environ.get("MINIFT_BACKEND")
if _env:
    set_backend(_env)
