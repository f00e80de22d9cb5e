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

import contextlib
import ctypes
import numbers
import os
import sys
import threading

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
def check_seed(n, what="seed"):
    """``n`` as an int, or a ValueError naming ``what``: a seed is an integer ≥ 0 (NumPy's rule), never a
    float or a string that would be rounded or hashed into one."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {n!r}")
    return int(n)


def seed(n: int) -> None:
    """Seed minift's generator: parameter init and dropout masks become reproducible."""
    _state["seed"] = n = check_seed(n, "mf.seed's n")
    if is_cupy():
        _state["rng"] = CupyGenerator(_state["module"].random.default_rng(n))
    else:
        _state["rng"] = np.random.default_rng(n)


def rng():
    """The backend's random Generator: numpy.random.Generator, or cupy's with the methods below added."""
    if _state["rng"] is None:
        seed(np.random.SeedSequence().entropy % (2**32))
    return _state["rng"]


class CupyGenerator:
    """``cupy.random.Generator`` with the two methods of NumPy's Generator that minift calls and CuPy lacks.

        normal(loc, scale, size) = loc + scale · standard_normal(size)   (NumPy computes it this way too)
        permutation(n)           = argsort of n uniform draws             (every order equally likely)

    Everything else (``random``, ``integers``, ``uniform``, ``standard_normal``) is CuPy's own.
    """

    def __init__(self, generator):
        self._generator = generator

    def __getattr__(self, name):
        return getattr(self._generator, name)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc + scale * self._generator.standard_normal(size)

    def permutation(self, n):
        if not isinstance(n, numbers.Integral):
            raise TypeError(f"permutation takes the number of items (an int) here, got {type(n).__name__}")
        return xp.argsort(self._generator.random(int(n)))  # (n,) float64 draws: ties have probability ~2⁻⁵³


def rng_state():
    """The generator's state as JSON-able data, so that a resumed run draws what the run would have drawn;
    None on CuPy, whose state is a buffer on the device: resumed dropout masks then differ from an
    uninterrupted run's (the weights, the optimizer and the data order are restored all the same)."""
    generator = rng()
    return generator.bit_generator.state if isinstance(generator, np.random.Generator) else None


def set_rng_state(state) -> None:
    """Restore what ``rng_state`` returned (None: nothing to restore)."""
    generator = rng()
    if state is not None and isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state


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


# Coefficients of erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4], a minimax rational fit for float32 (the one Eigen and
# XLA use); beyond |x| = 4, erf(x) is ±1 to within 2e-8. P has degree 6 in x², Q degree 4, lowest first.
_ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
          -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
_ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
          -1.45660718464996e-05)


def erf(x, out=None):
    """The error function, elementwise (into ``out`` when given).

    float64 (and anything not float32): the exact one — SciPy's on the CPU, cupyx's on the GPU.
    float32: the rational approximation x·P(x²)/Q(x²) above, evaluated in float32 in cache-sized blocks on
    the worker threads (``map_blocks``) and clipped to [−1, 1]. Its largest error is 4.5e-7 (tested
    against the exact erf to 1e-6), and it is 5–7× faster than SciPy's float32 erf, which converts every
    element to float64 and back one at a time; GELU (BERT's activation) spends most of its time here.
    What it gives up: rounding in float32 makes it wiggle by a few ulp, so between neighbouring inputs
    it may decrease by up to 5e-7 where the exact erf only rises.
    """
    if getattr(x, "dtype", None) != np.float32:
        if is_cupy():  # pragma: no cover - GPU only
            from cupyx.scipy.special import erf as _erf
        else:
            from scipy.special import erf as _erf
        return _erf(x) if out is None else _erf(x, out=out)
    x = _state["module"].ascontiguousarray(x).reshape(x.shape)  # (reshape: a 0-d x stays 0-d)
    if out is None:
        out = _state["module"].empty_like(x)
    map_blocks(_erf_rational, [x], [out])
    return out


def _erf_rational(x, out):
    """out = x·P(x²)/Q(x²) with x clamped to [−4, 4]; Horner's rule, in place (two scratch arrays)."""
    m = _state["module"]
    xc = m.clip(x, -4.0, 4.0)
    x2 = xc * xc
    f32 = m.float32
    m.multiply(x2, f32(_ERF_P[6]), out=out)  # P(x²) by Horner: ((p6·x² + p5)·x² + …)·x² + p0
    for c in _ERF_P[5:0:-1]:
        out += f32(c)
        out *= x2
    out += f32(_ERF_P[0])
    out *= xc
    q = x2 * f32(_ERF_Q[4])  # Q(x²), the same way
    for c in _ERF_Q[3:0:-1]:
        q += f32(c)
        q *= x2
    q += f32(_ERF_Q[0])
    out /= q
    m.clip(out, -1.0, 1.0, out=out)  # rounding can give 1.0000002 just below |x| = 4


# ----------------------------------------------------------------------------- threads
# NumPy runs one elementwise op on one core, and a big array makes every op a trip to main memory.
# ``map_blocks`` fixes both for a chain of elementwise ops (erf, GELU, Adam's update): it cuts the arrays
# into blocks small enough to stay in the core's cache while the whole chain runs over them, and hands
# the blocks to a few worker threads (NumPy releases the GIL inside its loops, so the threads really run
# at once). On CuPy the GPU is already parallel: the kernel runs once on the whole arrays.
_threads = {"n": None, "pool": None}
_local = threading.local()


def _default_threads() -> int:
    for var in ("MINIFT_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS that NumPy loaded, via ctypes; None if there is none.

    NumPy's wheels bundle OpenBLAS under a prefixed name (``scipy_openblas_set_num_threads64_``); a system
    OpenBLAS has the plain one. Other BLAS libraries (MKL, Accelerate) are left alone.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", "")):
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return None


# One pool of threads. OpenBLAS keeps threads of its own, and after each product they do not sleep: they
# spin for about 2^28 cycles (~0.1 s) waiting for the next one. On a two-core machine that spinning thread
# sits on the core that minift's worker needs for the GELU or softmax that follows: a 1024×256×1024
# product followed by a GELU took 8.3 ms where the two alone take 2.8 + 2.3. So minift runs OpenBLAS on
# one thread and splits the large matrix products itself (``matmul``), on the same workers as everything
# else: one kind of thread, never two fighting. (NumPy's ``@`` in your own code then runs on one thread
# while minift is imported; minift's ops go through ``matmul``.) Another BLAS (MKL, Accelerate) is left
# alone, and so are its threads.
_openblas = _find_openblas()
if _openblas is not None:
    _openblas[0](1)


def get_num_threads() -> int:
    """Worker threads for ``map_blocks``/``parallel_for``: MINIFT_NUM_THREADS, else OMP/OPENBLAS_NUM_THREADS, else the cores."""
    if _threads["n"] is None:
        _threads["n"] = _default_threads()
    return _threads["n"]


def machine_summary() -> str:
    """What a run's ``results.json`` records as its ``machine``, e.g. "x86_64, 2 CPUs, numpy, 2 threads": its
    figures are reproducible on the same machine with the same backend and threads (a matrix product split
    over another number of threads adds in another order, and a sampled token can then differ)."""
    import platform

    where = f"{platform.machine()}, {os.cpu_count()} CPUs, {get_backend()}"
    n = get_num_threads()
    return where if is_cupy() else f"{where}, {n} thread{'s' if n != 1 else ''}"


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for minift's work: its workers split elementwise chains and matrix products.

    OpenBLAS itself stays on one thread (see "One pool of threads" above). Set it once, before training;
    ``MINIFT_NUM_THREADS`` (or ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``) in the environment does the
    same when set before minift is imported.
    """
    if not (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"the number of threads must be an integer >= 1, got {n!r}")
    if _threads["pool"] is not None:
        _threads["pool"].shutdown(wait=True)
    _threads["n"], _threads["pool"] = int(n), None
    if _openblas is not None:
        _openblas[0](1)


def parallel_for(body, n: int, grain: int = 1) -> None:
    """Call ``body(slice)`` on consecutive pieces of ``range(n)`` of ``grain`` items, on the worker threads.

    The calling thread works too. Each thread takes the next piece not yet taken until none is left, so
    a thread that got quick pieces takes more. Run inside a worker (nested), or with one thread, or with a
    single piece, it loops in the calling thread. ``body`` must only write its own slice.
    """
    pieces = [slice(i, min(i + grain, n)) for i in range(0, n, grain)]
    workers = min(get_num_threads(), len(pieces))
    if workers <= 1 or getattr(_local, "inside", False):
        for piece in pieces:
            body(piece)
        return
    if _threads["pool"] is None:
        from concurrent.futures import ThreadPoolExecutor

        _threads["pool"] = ThreadPoolExecutor(get_num_threads() - 1 or 1, thread_name_prefix="minift")
    queue = iter(pieces)
    lock = threading.Lock()

    def run():
        _local.inside = True
        try:
            while True:
                with lock:
                    piece = next(queue, None)
                if piece is None:
                    return
                body(piece)
        finally:
            _local.inside = False

    # While our workers run, OpenBLAS must not start threads of its own inside each of them: two workers
    # each asking it for two threads on a two-core machine made a matrix product 4× slower.
    blas_threads = _openblas[1]() if _openblas is not None else None
    if blas_threads not in (None, 1):
        _openblas[0](1)
    futures, error = [], None
    try:
        futures = [_threads["pool"].submit(run) for _ in range(workers - 1)]
        try:
            run()  # the calling thread is one of the workers
        except BaseException as e:  # noqa: BLE001 - re-raised below, once every worker has stopped
            error = e
        for f in futures:
            f.exception()  # wait for every worker, even after one failed: none may still be writing
    finally:
        if blas_threads not in (None, 1):
            _openblas[0](blas_threads)
    if error is not None:
        raise error
    for f in futures:
        f.result()  # re-raise a worker's exception here


@contextlib.contextmanager
def openblas_threads(n: int):
    """Let OpenBLAS use ``n`` threads of its own inside the block, then hold it to one again.

    For experiments only (lesson 20 times the two kinds of threads against each other); minift's own
    work should run with the default. Does nothing where NumPy does not use OpenBLAS.
    """
    if _openblas is not None:
        _openblas[0](int(n))
    try:
        yield
    finally:
        if _openblas is not None:
            _openblas[0](1)


_SPLIT_FLOPS = 1 << 22  # a product under ~4 MFLOP (~40 µs on one core) is not worth a hand-off


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (M, K) @ (K, N), cut into one piece per worker thread.

    Each piece is an ordinary single-threaded BLAS product: rows of ``a`` (out[rows] = a[rows] @ b) when
    M is large, otherwise columns of ``b`` (out[:, cols] = a @ b[:, cols]: a matrix-vector product in
    generation has M = 1). Every output element is the same dot product either way. Small products, a
    worker thread (nested), one thread, another BLAS than OpenBLAS, and CuPy: plain ``a @ b``.
    """
    m, k = a.shape
    n = b.shape[1]
    workers = get_num_threads()
    if (is_cupy() or _openblas is None or workers == 1 or 2 * m * k * n < _SPLIT_FLOPS
            or getattr(_local, "inside", False)):
        return xp.matmul(a, b, out=out)
    if out is None:
        out = xp.empty((m, n), dtype=xp.result_type(a, b))
    if m >= 32 * workers:
        parallel_for(lambda rows: xp.matmul(a[rows], b, out=out[rows]), m, grain=-(-m // workers))
    else:
        parallel_for(lambda cols: xp.matmul(a, b[:, cols], out=out[:, cols]), n, grain=-(-n // workers))
    return out


def parallel_rows(body, rows: int, width: int) -> None:
    """``parallel_for`` over the rows of a (rows, width) array, in blocks of about 128K elements (see map_blocks).

    On CuPy: one call with every row (``body(slice(None))``).
    """
    if is_cupy():  # pragma: no cover - GPU only
        body(slice(None))
        return
    parallel_for(body, rows, grain=max(1, (1 << 17) // max(1, width)))


def map_blocks(kernel, inputs, outputs, block: int = 1 << 17) -> None:
    """``kernel(*input_blocks, *output_blocks)`` over matching blocks of equally sized contiguous arrays.

    The kernel writes its results into the output blocks (``out=`` or in place). Blocks of 128K elements
    (512 KiB in float32) keep a kernel's temporaries in the core's cache; much smaller blocks lose to
    Python's per-call cost and to the GIL, taken between NumPy calls. On CuPy: one call, whole arrays.
    """
    if is_cupy():  # pragma: no cover - GPU only
        kernel(*inputs, *outputs)
        return
    flat_in = [a.reshape(-1) for a in inputs]  # views: the caller passes contiguous arrays
    if not all(o.flags.c_contiguous for o in outputs):  # reshape would copy, and the results be lost
        raise ValueError("map_blocks needs C-contiguous output arrays (their blocks are written in place)")
    flat_out = [o.reshape(-1) for o in outputs]  # views, as flat_in: any shape -> (n,)
    parallel_for(lambda s: kernel(*(a[s] for a in flat_in), *(o[s] for o in flat_out)), flat_in[0].size, block)


def synchronize() -> None:
    """Wait until the GPU has finished the work queued so far (CuPy runs asynchronously); nothing on NumPy.

    Time GPU code only after this: otherwise a timer measures how fast kernels are queued, not run.
    """
    if is_cupy():  # pragma: no cover - GPU only
        _state["module"].cuda.Device().synchronize()


def to_numpy(a):
    """Bring an array to host memory as a NumPy array (no copy when already NumPy)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy.ndarray
        return a.get()
    return np.asarray(a)


def array_module(a):
    """The module an array belongs to: ``numpy`` for NumPy arrays (and memory maps), else the backend's (CuPy).

    For code that must work on whichever side its input lives, e.g. decoding quantized blocks that sit in
    a memory-mapped file (NumPy) or on the GPU (CuPy).
    """
    return np if isinstance(a, np.ndarray) else _state["module"]


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
