"""The speed-ups of the performance pass, each checked against an independent computation.

The float32 rational ``backend.erf`` against the exact erf (SciPy/``math`` in float64); GELU run in blocks on
worker threads against the float64 formula; ``parallel_for``/``map_blocks`` against plain loops; the blocked
in-place AdamW/Adam against a float64 NumPy copy of PyTorch's formulas (and PyTorch itself when installed);
``clip_grad_norm_`` by ``vdot`` against ``np.linalg.norm``; boolean dropout masks against their definition;
``mf.profile`` against the calls the test makes. Arrays above one block (1 << 17 elements) take the
multi-block, multi-thread path.
"""
import gc
import math
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erf as exact_erf

import minift as mf
from minift import backend, optim
from minift.autograd import ops_fused
from minift.autograd.function import Function
from minift.optim.adamw import for_each_block
from minift.profiler import _all_functions

from .op_specs import np_gelu
from .strategies import float_arrays, shapes

F = mf.functional
BLOCK = 1 << 17  # map_blocks' default block: sizes above it run as several blocks
BIG, ODD = 300_000, 2 * BLOCK + 1  # three blocks with a short last one; two blocks and a single element


@pytest.fixture(autouse=True)
def _restore_threads():
    """Put the worker-thread count back as it was: tests here change it."""
    before = backend.get_num_threads()
    yield
    backend.set_num_threads(before)


@contextmanager
def num_threads(n):
    before = backend.get_num_threads()
    backend.set_num_threads(n)
    try:
        yield
    finally:
        backend.set_num_threads(before)


# ============================================================================ erf
ERF_GRID = np.linspace(-8, 8, 1_600_001).astype(np.float32)  # spacing 1e-5, and ±4 (the clamp) on the grid


def test_float32_erf_is_within_1e6_of_the_exact_erf_on_a_dense_grid():
    got = backend.erf(ERF_GRID)
    assert got.dtype == np.float32 and got.shape == ERF_GRID.shape
    err = np.abs(got.astype(np.float64) - exact_erf(ERF_GRID.astype(np.float64)))
    assert err.max() <= 1e-6, f"largest error {err.max():.3g} at x = {ERF_GRID[err.argmax()]}"
    coarse = ERF_GRID[::800]  # and against math.erf, which shares no code with SciPy
    np.testing.assert_allclose(backend.erf(coarse), [math.erf(v) for v in coarse.tolist()], rtol=0, atol=1e-6)


def test_float32_erf_at_edge_values():
    x = np.array([0.0, -0.0, 4.0, -4.0, 3.9999998, 4.0000005, np.inf, -np.inf, 1e-30, -1e-30, 1e-45,
                  np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.5, -2.5], dtype=np.float32)
    got = backend.erf(x)
    want = np.array([math.erf(v) for v in x.tolist()])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert got[0] == 0.0 and not np.signbit(got[0])
    assert got[1] == 0.0 and np.signbit(got[1])  # erf(−0) = −0, as math.erf
    assert got[6] == 1.0 and got[7] == -1.0
    nan = backend.erf(np.array([np.nan, 1.0, np.nan], dtype=np.float32))
    assert np.isnan(nan[[0, 2]]).all() and abs(nan[1] - math.erf(1.0)) < 1e-6


def test_float32_erf_is_odd():
    np.testing.assert_array_equal(backend.erf(-ERF_GRID), -backend.erf(ERF_GRID))


def test_float32_erf_rises_but_for_wiggles_of_a_few_ulp():
    # the exact erf only rises; the float32 rational one wiggles by rounding (documented in backend.erf)
    steps = np.diff(backend.erf(ERF_GRID).astype(np.float64))
    assert steps.min() >= -5e-7
    assert backend.erf(ERF_GRID)[-1] - backend.erf(ERF_GRID)[0] == 2.0


def test_float32_erf_stays_within_minus_one_and_one():
    assert np.abs(backend.erf(ERF_GRID)).max() <= 1.0


def test_float64_erf_is_the_exact_one():
    x = np.linspace(-8, 8, 4001)
    got = backend.erf(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [math.erf(v) for v in x.tolist()], rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, BIG])
def test_erf_writes_into_out(dtype, n):
    x = np.random.default_rng(n).uniform(-5, 5, n).astype(dtype)
    out = np.full(n, 7.0, dtype=dtype)
    assert backend.erf(x, out=out) is out
    np.testing.assert_allclose(out, exact_erf(x.astype(np.float64)), rtol=0, atol=1e-6 if dtype == np.float32 else 1e-15)


def test_float32_erf_into_a_strided_out_is_refused_or_right():
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    out = np.zeros(22, dtype=np.float32)[::2]
    try:
        backend.erf(x, out=out)
    except ValueError:
        return  # refusing a non-contiguous out is fine; writing to a copy and losing the result is not
    np.testing.assert_allclose(out, exact_erf(x.astype(np.float64)), atol=1e-6)


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), lo=-6, hi=6),
       dtype=st.sampled_from([np.float32, np.float64]), step=st.sampled_from([1, 2]))
def test_erf_keeps_the_shape_of_any_input_contiguous_or_not(a, dtype, step):
    x = a.astype(dtype, order="K")[..., ::step]  # Fortran-ordered half the time (strategy), strided with step 2
    got = backend.erf(x)
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_allclose(got, exact_erf(x.astype(np.float64)), rtol=0, atol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("x", [np.array(0.5, dtype=np.float32), np.float32(0.5)], ids=["0-d", "scalar"])
def test_float32_erf_of_a_0d_input_is_0d(x):
    got = backend.erf(x)
    assert np.shape(got) == () and abs(float(got) - math.erf(0.5)) < 1e-6


# ============================================================================ GELU
def gelu_and_derivative_f64(a, approximate):
    """GELU and dGELU/da in float64, from the formulas (not minift's code)."""
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        th = np.tanh(k * (a + 0.044715 * a**3))
        return np_gelu(a, "tanh"), 0.5 * (1 + th) + 0.5 * a * (1 - th**2) * k * (1 + 3 * 0.044715 * a**2)
    cdf = 0.5 * (1 + exact_erf(a / math.sqrt(2)))
    return a * cdf, cdf + a * np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


def gelu_fwd_bwd(a, w, approximate):
    """minift's GELU of ``a`` and the gradient of ⟨w, GELU(a)⟩, as arrays."""
    x = mf.tensor(a, requires_grad=True)
    y = F.gelu(x, approximate=approximate)
    y.backward(w)
    return y.numpy(), x.grad


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", [BIG, ODD])
def test_float32_gelu_on_many_blocks_matches_the_float64_formula(approximate, n):
    rs = np.random.default_rng(n)
    a = rs.uniform(-9, 9, n).astype(np.float32)
    a[:6] = [0.0, -0.0, 4 * math.sqrt(2), -4 * math.sqrt(2), 30.0, -30.0]  # 0, the erf clamp, far tails
    w = rs.standard_normal(n).astype(np.float32)
    a64 = a.astype(np.float64)
    want_y, want_d = gelu_and_derivative_f64(a64, approximate)
    with num_threads(2):
        y, g = gelu_fwd_bwd(a, w, approximate)
    assert y.dtype == g.dtype == np.float32
    scale = np.maximum(1.0, np.abs(a64))
    assert (np.abs(y - want_y) / scale).max() <= 1e-6
    assert np.abs(g - w.astype(np.float64) * want_d).max() <= 5e-6 * np.abs(w).max()
    # the float64 path of the same op agrees with the formula to rounding
    y64, g64 = gelu_fwd_bwd(a64, w.astype(np.float64), approximate)
    np.testing.assert_allclose(y64, want_y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g64, w * want_d, rtol=1e-12, atol=1e-14)  # atol: ∂GELU cancels to ≈ 0 near a ≈ −0.75
    assert np.abs(g - g64).max() <= 5e-6 * np.abs(w).max()  # float32 gradient vs float64 gradient


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_gives_identical_results_on_one_and_two_threads(approximate, dtype):
    rs = np.random.default_rng(3)
    a = rs.uniform(-6, 6, (3, BIG // 3 + 7)).astype(dtype)
    w = rs.standard_normal(a.shape).astype(dtype)
    with num_threads(1):
        y1, g1 = gelu_fwd_bwd(a, w, approximate)
    with num_threads(2):
        y2, g2 = gelu_fwd_bwd(a, w, approximate)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(a=float_arrays(shapes(min_dims=0, max_dims=3), lo=-5, hi=5))
def test_gelu_gradchecks_in_float64(approximate, a):
    x = mf.tensor(a, requires_grad=True)
    assert mf.gradcheck(lambda t: F.gelu(t, approximate=approximate), (x,))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(a=float_arrays(shapes(min_dims=0, max_dims=3), lo=-6, hi=6))
def test_float32_gelu_of_any_shape_and_layout_matches_the_formula(approximate, a):
    a32 = a.astype(np.float32, order="K")  # 0-d, and Fortran-ordered views half the time
    w = np.linspace(-1, 1, a.size).reshape(a.shape).astype(np.float32)
    y, g = gelu_fwd_bwd(a32, w, approximate)
    want_y, want_d = gelu_and_derivative_f64(a32.astype(np.float64), approximate)
    assert y.shape == g.shape == a.shape
    np.testing.assert_allclose(y, want_y, rtol=0, atol=1e-6 * max(1.0, float(np.abs(a).max(initial=0))))
    np.testing.assert_allclose(g, w * want_d, rtol=0, atol=5e-6)


# ============================================================================ parallel_for / map_blocks
@given(n=st.integers(0, 3000), grain=st.integers(1, 4000), threads=st.sampled_from([1, 2, 3]))
def test_parallel_for_visits_every_index_once_in_grain_sized_pieces(n, grain, threads):
    visits = np.zeros(n, dtype=np.int64)
    pieces = []

    def body(s):
        visits[s] += 1  # each body writes only its own slice
        pieces.append((s.start, s.stop))

    with num_threads(threads):
        backend.parallel_for(body, n, grain)
    np.testing.assert_array_equal(visits, 1)
    assert sorted(pieces) == [(i, min(i + grain, n)) for i in range(0, n, grain)]


@pytest.mark.parametrize("threads", [1, 2])
def test_an_exception_in_a_worker_reaches_the_caller(threads):
    def body(s):
        if s.start == 40:
            raise KeyError(f"bad piece {s.start}")

    with num_threads(threads), pytest.raises(KeyError, match="bad piece 40"):
        backend.parallel_for(body, 100, 10)
    backend.parallel_for(lambda s: None, 100, 10)  # the pool still works afterwards


def test_when_parallel_for_raises_no_worker_is_still_running():
    finished = []

    def body(s):
        if s.start == 0:
            raise RuntimeError("first piece fails at once")
        time.sleep(0.3)
        finished.append(s.start)

    with num_threads(2):
        with pytest.raises(RuntimeError):
            backend.parallel_for(body, 2, 1)
        still_running = not finished
        time.sleep(0.4)  # let the other worker end before the pool is shut down
    assert not still_running


def test_nested_parallel_for_runs_inline_instead_of_deadlocking():
    seen = []

    def outer(s):
        backend.parallel_for(lambda t: seen.append((s.start, t.start)), 6, 1)  # inside a worker: runs serially

    with num_threads(2):
        caller = threading.Thread(target=backend.parallel_for, args=(outer, 6, 1), daemon=True)
        caller.start()
        caller.join(timeout=30)
        assert not caller.is_alive(), "nested parallel_for deadlocked"
    assert sorted(seen) == [(i, j) for i in range(6) for j in range(6)]


def _kernel(a, b, out_sum, out_prod):
    """A chain of elementwise steps, writing into its output blocks."""
    np.add(a, b, out=out_sum)
    out_sum *= np.sin(a)
    np.multiply(a, b, out=out_prod)
    np.exp(out_prod, out=out_prod)


@pytest.mark.parametrize("n, block, threads", [(BIG, BLOCK, 2), (ODD, BLOCK, 1), (10_001, 999, 2), (0, 8, 2), (1, 8, 2)])
def test_map_blocks_matches_the_kernel_on_whole_arrays(n, block, threads):
    rs = np.random.default_rng(n)
    a, b = rs.standard_normal((2, n))
    a = a.reshape(-1, 1) if n % 2 else a  # a 2-D input of the same size
    want_sum, want_prod = np.empty(n), np.empty(n)
    _kernel(a.reshape(-1), b, want_sum, want_prod)
    got_sum, got_prod = np.empty(n), np.empty_like(a)
    with num_threads(threads):
        backend.map_blocks(_kernel, [a, b], [got_sum, got_prod], block=block)
    np.testing.assert_array_equal(got_sum, want_sum)
    np.testing.assert_array_equal(got_prod.reshape(-1), want_prod)


@pytest.mark.parametrize("out", [np.zeros(20)[::2], np.zeros((5, 2), order="F")], ids=["strided", "fortran"])
def test_map_blocks_refuses_an_output_it_cannot_write_in_place(out):
    with pytest.raises(ValueError, match="C-contiguous"):
        backend.map_blocks(lambda a, o: np.copyto(o, a), [np.ones(10)], [out])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_num_threads_rejects_what_is_not_a_positive_integer(bad):
    before = backend.get_num_threads()
    with pytest.raises(ValueError, match="integer >= 1"):
        backend.set_num_threads(bad)
    assert backend.get_num_threads() == before


def test_set_num_threads_takes_effect():
    backend.set_num_threads(3)
    assert backend.get_num_threads() == 3
    names = set()
    backend.parallel_for(lambda s: names.add(threading.current_thread().name), 30, 1)
    assert names and all(name.startswith("minift") for name in names)  # the work ran on the pool
    backend.set_num_threads(1)
    names.clear()
    backend.parallel_for(lambda s: names.add(threading.current_thread().name), 30, 1)
    assert names == {threading.current_thread().name}  # one thread: the caller runs it


# ============================================================================ matmul on the worker pool
@pytest.mark.parametrize("m, k, n", [(1024, 256, 256), (1, 576, 4000), (3, 700, 2001), (65, 128, 513), (5, 4, 3)])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_split_over_the_workers_equals_numpy(m, k, n, transposed):
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((k, m)).T if transposed else rng.standard_normal((m, k))  # a transposed view, or not
    b = rng.standard_normal((k, n))
    with num_threads(2):
        out = backend.matmul(a, b)
    expected = np.einsum("mk,kn->mn", a, b)  # not BLAS: an independent sum
    assert out.shape == (m, n)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-11)


def test_large_products_run_on_the_pool_by_rows_or_by_columns(monkeypatch):
    seen = []
    real = np.matmul

    def spy(a, b, out=None):
        seen.append((threading.current_thread().name, a.shape, b.shape))
        return real(a, b, out=out)

    monkeypatch.setattr(backend.xp, "matmul", spy)
    rng = np.random.default_rng(0)
    with num_threads(2):
        backend.matmul(rng.standard_normal((512, 256)), rng.standard_normal((256, 256)))  # rows
        assert sorted(shape for _, shape, _ in seen) == [(256, 256), (256, 256)]
        assert any(name.startswith("minift") for name, _, _ in seen)  # one piece ran on a worker
        seen.clear()
        backend.matmul(rng.standard_normal((1, 4096)), rng.standard_normal((4096, 1024)))  # M = 1: columns
        assert sorted(b_shape for _, _, b_shape in seen) == [(4096, 512), (4096, 512)]
        seen.clear()
        backend.matmul(rng.standard_normal((8, 8)), rng.standard_normal((8, 8)))  # small: one call, here
        assert seen == [(threading.current_thread().name, (8, 8), (8, 8))]


@pytest.mark.skipif(backend._openblas is None, reason="NumPy here does not use OpenBLAS")
def test_openblas_is_held_to_one_thread_whatever_the_worker_count():
    for n in (2, 1, 3):
        backend.set_num_threads(n)
        assert backend._openblas[1]() == 1


def test_linear_gradients_with_split_products_match_the_formulas():
    rng = np.random.default_rng(2)
    x, w, b, g = rng.standard_normal((4, 300, 64)), rng.standard_normal((96, 64)), rng.standard_normal(96), rng.standard_normal((4, 300, 96))
    with num_threads(2):
        xt, wt, bt = (mf.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.linear(xt, wt, bt)
        y.backward(g)
    np.testing.assert_allclose(y.numpy(), np.einsum("btk,nk->btn", x, w) + b, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(xt.grad, np.einsum("btn,nk->btk", g, w), rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(wt.grad, np.einsum("btn,btk->nk", g, x), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(bt.grad, g.sum((0, 1)), rtol=1e-12, atol=1e-11)


# ============================================================================ AdamW / Adam
OPTS = {"AdamW": (optim.AdamW, True), "Adam": (optim.Adam, False)}
HYPER = dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)


def steps_of(opt_cls, theta0, grads, data=None, threads=2):
    p = mf.nn.Parameter(theta0.copy())
    if data is not None:
        p.data = data  # e.g. a strided view: the update must write through it
    opt = opt_cls([p], **HYPER)
    with num_threads(threads):
        for g in grads:
            p.grad = g.copy()
            opt.step()
    return p, opt


@pytest.mark.parametrize("name", ["AdamW", "Adam"])
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float32, 1e-5, 1e-7), (np.float64, 1e-12, 1e-15)])
def test_blocked_adam_update_of_a_large_parameter_matches_the_float64_formulas(name, dtype, rtol, atol, oracles):
    opt_cls, decoupled = OPTS[name]
    rs = np.random.default_rng(7)
    theta0 = rs.standard_normal((3, BIG // 3 + 11)).astype(dtype)  # > 2 blocks
    grads = [rs.standard_normal(theta0.shape).astype(dtype) * s for s in (1.0, 0.1, 3.0)]
    p, opt = steps_of(opt_cls, theta0, grads)
    want, m, v = oracles.adam_reference(theta0, grads, decoupled=decoupled, **HYPER)
    assert p.data.dtype == dtype
    np.testing.assert_allclose(p.data, want, rtol=rtol, atol=atol)
    state = opt.state[id(p)]
    assert state["step"] == 3
    np.testing.assert_allclose(state["exp_avg"], m, rtol=rtol, atol=atol)
    np.testing.assert_allclose(state["exp_avg_sq"], v, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["AdamW", "Adam"])
def test_adam_on_a_strided_parameter_view_matches_the_contiguous_update(name, oracles):
    opt_cls, decoupled = OPTS[name]
    rs = np.random.default_rng(8)
    n = BLOCK + 5
    theta0 = rs.standard_normal(n)
    grads = [rs.standard_normal(n) for _ in range(3)]
    base = np.full((n, 2), 5.0)
    base[:, 0] = theta0
    view = base[:, 0]  # not contiguous: for_each_block updates it whole
    p, _ = steps_of(opt_cls, theta0, grads, data=view)
    contiguous, _ = steps_of(opt_cls, theta0, grads)
    assert p.data is view
    np.testing.assert_array_equal(base[:, 0], contiguous.data)  # written through the view
    np.testing.assert_array_equal(base[:, 1], 5.0)  # and nowhere else
    np.testing.assert_allclose(base[:, 0], oracles.adam_reference(theta0, grads, decoupled=decoupled, **HYPER)[0],
                               rtol=1e-12, atol=1e-15)


def test_for_each_block_updates_strided_arrays_in_place():
    rs = np.random.default_rng(9)
    p, g = rs.standard_normal((2, 2 * BLOCK + 3))
    pv, gv = p[::2].copy(), g[::2]

    def update(theta, grad, acc):
        acc += grad
        theta -= 0.5 * acc

    acc = np.ones((pv.size, 2))[:, 0]  # a strided state array: the whole-array fallback
    for_each_block(update, pv, gv, acc)
    np.testing.assert_array_equal(acc, 1 + g[::2])
    np.testing.assert_array_equal(pv, p[::2] - 0.5 * (1 + g[::2]))
    acc, pv = np.ones(pv.size), p[::2].copy()  # contiguous: in blocks, same numbers
    with num_threads(2):
        for_each_block(update, pv, gv, acc)
    np.testing.assert_array_equal(pv, p[::2] - 0.5 * (1 + g[::2]))


@pytest.mark.parametrize("name", ["AdamW", "Adam"])
def test_adam_state_dict_round_trip_resumes_exactly(name, oracles):
    opt_cls, _ = OPTS[name]
    rs = np.random.default_rng(10)
    theta0 = rs.standard_normal(BLOCK + 9).astype(np.float32)
    grads = [rs.standard_normal(theta0.shape).astype(np.float32) for _ in range(3)]
    p, opt = steps_of(opt_cls, theta0, grads[:2])
    saved = opt.state_dict()
    saved_m = saved["state"][0]["exp_avg"].copy()
    q = mf.nn.Parameter(p.data.copy())
    resumed = opt_cls([q], **HYPER)
    resumed.load_state_dict(saved)
    with num_threads(2):
        for param, o in ((p, opt), (q, resumed)):
            param.grad = grads[2].copy()
            o.step()
    np.testing.assert_array_equal(q.data, p.data)
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], saved_m)  # in-place steps leave the dict alone
    np.testing.assert_allclose(p.data, oracles.adam_reference(theta0, grads, decoupled=OPTS[name][1], **HYPER)[0],
                               rtol=1e-5, atol=1e-7)


def test_stepping_a_loaded_optimizer_leaves_the_state_dict_alone_for_a_0d_parameter():
    p = mf.nn.Parameter(np.array(1.0))
    opt = optim.AdamW([p], lr=0.1)
    p.grad = np.array(0.5)
    opt.step()
    saved = opt.state_dict()
    m = float(saved["state"][0]["exp_avg"])
    q = mf.nn.Parameter(np.array(1.0))
    resumed = optim.AdamW([q], lr=0.1)
    resumed.load_state_dict(saved)
    q.grad = np.array(0.5)
    resumed.step()
    assert float(saved["state"][0]["exp_avg"]) == m


@pytest.mark.torch
def test_adamw_matches_torch_on_a_large_parameter(oracles):
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(11)
    theta0 = rs.standard_normal(BIG + 1).astype(np.float32)
    grads = [rs.standard_normal(theta0.shape).astype(np.float32) for _ in range(3)]
    t = torch.tensor(theta0, requires_grad=True)
    topt = torch.optim.AdamW([t], **HYPER)
    for g in grads:
        t.grad = torch.tensor(g)
        topt.step()
    p, _ = steps_of(optim.AdamW, theta0, grads)
    np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.data, oracles.adam_reference(theta0, grads, decoupled=True, **HYPER)[0], rtol=1e-5, atol=1e-7)


# ============================================================================ clip_grad_norm_
@given(shape_list=st.lists(shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), min_size=1, max_size=5),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), dtype=st.sampled_from([np.float32, np.float64]),
       max_norm=st.sampled_from([0.5, 1e9]), seed=st.integers(0, 2**16))
def test_clip_grad_norm_is_the_2_norm_of_all_gradients(shape_list, scale, dtype, max_norm, seed):
    rs = np.random.default_rng(seed)
    grads = [(rs.standard_normal(s) * scale).astype(dtype) for s in shape_list]
    params = [mf.nn.Parameter(np.zeros(s, dtype=dtype)) for s in shape_list]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    want = float(np.linalg.norm(np.concatenate([g.astype(np.float64).reshape(-1) for g in grads])))
    total = optim.clip_grad_norm_(params, max_norm)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(want, rel=rtol, abs=1e-300)
    coef = min(1.0, max_norm / (want + 1e-6))
    for p, g in zip(params, grads):
        assert p.grad.dtype == dtype and p.grad.shape == g.shape
        np.testing.assert_allclose(p.grad, g.astype(np.float64) * coef, rtol=rtol * 10, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_of_large_gradients_and_of_empty_and_scalar_ones(dtype):
    rs = np.random.default_rng(12)
    grads = [rs.standard_normal(BIG).astype(dtype), rs.standard_normal((ODD // 9, 9)).astype(dtype)[:, ::2],
             np.array(3.0, dtype=dtype), np.zeros((0, 4), dtype=dtype)]
    params = [mf.nn.Parameter(np.zeros(g.shape, dtype=dtype)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    params[1].grad = grads[1]  # a strided gradient (a view)
    want = float(np.linalg.norm(np.concatenate([g.astype(np.float64).reshape(-1) for g in grads])))
    total = optim.clip_grad_norm_(params, 1.0)
    assert total == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-12)
    after = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    assert optim.clip_grad_norm_([mf.nn.Parameter(np.zeros(0, dtype=dtype))], 1.0) == 0.0  # only an empty one


@pytest.mark.parametrize("dtype, value", [(np.float16, 300.0), (np.float32, 1e20)])
def test_clip_grad_norm_of_a_representable_norm_is_finite(dtype, value):
    p = mf.nn.Parameter(np.zeros(2, dtype=dtype))
    p.grad = np.array([value, -value], dtype=dtype)
    total = optim.clip_grad_norm_([p], 1e30)
    assert total == pytest.approx(value * math.sqrt(2), rel=1e-3)  # finite in dtype: 424 < 65504, 1.4e20 < 3.4e38
    np.testing.assert_array_equal(p.grad, np.array([value, -value], dtype=dtype))  # below max_norm: untouched


# ============================================================================ dropout
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_zeroes_or_scales_each_element_and_keeps_1_minus_p(p, dtype):
    n = 1_000_000
    rs = np.random.default_rng(13)
    a = (rs.uniform(0.5, 2.0, (1000, n // 1000)) * rs.choice([-1, 1], (1000, n // 1000))).astype(dtype)
    x = mf.tensor(a, requires_grad=True)
    y = F.dropout(x, p)
    out = y.numpy()
    assert out.dtype == dtype and out.shape == a.shape
    kept = out != 0
    scaled = a.astype(np.float64) / (1 - p)
    rtol = 2 * np.finfo(dtype).eps
    np.testing.assert_allclose(out[kept], scaled[kept], rtol=rtol)  # the kept ones are x/(1 − p) ...
    assert (out[~kept] == 0).all()  # ... and the rest exactly 0
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    w = rs.standard_normal(a.shape).astype(dtype)
    y.backward(w)  # the same mask in backward: ∂⟨w, y⟩/∂x = w · y/x
    assert x.grad.dtype == dtype
    np.testing.assert_allclose(x.grad, w * (out.astype(np.float64) / a), rtol=rtol * 4, atol=0)


def test_dropout_gradient_of_the_sum_is_y_over_x():
    a = np.random.default_rng(14).uniform(-2, 2, 5000).astype(np.float32)
    a[a == 0] = 1.0
    x = mf.tensor(a, requires_grad=True)
    y = F.dropout(x, 0.3)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.numpy() / a, rtol=1e-6)
    assert set(np.unique(np.round(x.grad.astype(np.float64), 5)).tolist()) == {0.0, round(1 / 0.7, 5)}


@pytest.mark.parametrize("p, training", [(0.0, True), (0.5, False)])
def test_dropout_with_p_0_or_in_eval_mode_is_the_identity(p, training):
    a = np.random.default_rng(15).standard_normal((4, 5)).astype(np.float32)
    x = mf.tensor(a, requires_grad=True)
    y = F.dropout(x, p, training=training)
    np.testing.assert_array_equal(y.numpy(), a)
    (y * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, 2.0)


# ============================================================================ profiler
class Sleepy(Function):
    """An op that takes a known time: y = x, after 0.1 s."""

    @staticmethod
    def forward(ctx, x):
        time.sleep(0.1)
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return (g,)


class CallsSleepy(Function):
    """An op whose forward runs another op: y = x, after 0.02 s of its own and Sleepy's 0.1 s."""

    @staticmethod
    def forward(ctx, x):
        time.sleep(0.02)
        return Sleepy.apply(x).data

    @staticmethod
    def backward(ctx, g):
        return (g,)


def originals():
    return {cls: (cls.__dict__.get("forward"), cls.__dict__.get("backward")) for cls in _all_functions()}


def assert_restored(before):
    for cls, (fwd, bwd) in before.items():
        assert cls.__dict__.get("forward") is fwd and cls.__dict__.get("backward") is bwd, cls.__name__


def small_mlp():
    mf.seed(0)
    return mf.nn.Sequential(mf.nn.Linear(4, 8), mf.nn.GELU(), mf.nn.Linear(8, 3))


def test_profile_counts_each_op_call_and_times_are_exclusive():
    model, steps = small_mlp(), 3
    x, target = mf.tensor(np.ones((5, 4), dtype=np.float32)), np.array([0, 1, 2, 1, 0])
    before = originals()
    with mf.profile() as prof:
        assert ops_fused.Linear.__dict__["forward"] is not before[ops_fused.Linear][0]  # wrapped while open
        for _ in range(steps):
            F.cross_entropy(model(x), target).backward()
        with prof.region("optimizer"):
            time.sleep(0.01)
    assert_restored(before)
    calls = prof.calls
    assert calls[("Linear", "forward")] == calls[("Linear", "backward")] == 2 * steps  # two layers
    assert calls[("Gelu", "forward")] == calls[("Gelu", "backward")] == steps
    assert calls[("CrossEntropy", "forward")] == calls[("CrossEntropy", "backward")] == steps
    assert calls[("optimizer", "region")] == 1
    rows = {name: (n, f, b, r) for name, n, f, b, r in prof.rows()}
    assert rows["Linear"][0] == 2 * steps and rows["optimizer"][0] == 1
    assert rows["optimizer"][3] >= 0.01
    assert all(s >= 0 for s in prof.seconds.values())
    assert sum(prof.seconds.values()) <= prof.wall
    table = prof.table(per=steps)
    assert isinstance(table, str) and "wall" in table and "Linear" in table and "optimizer" in table


def test_profile_times_are_exclusive_of_nested_ops():
    x = mf.tensor(np.ones(3))
    with mf.profile() as prof:
        with prof.region("outer"):
            time.sleep(0.01)
            CallsSleepy.apply(x)
    inner = prof.seconds[("Sleepy", "forward")]
    caller = prof.seconds[("CallsSleepy", "forward")]
    region = prof.seconds[("outer", "region")]
    assert inner >= 0.1
    assert 0.02 <= caller < 0.1  # its own time, without Sleepy's
    assert 0.01 <= region < 0.1  # the region's own time, without the ops inside it
    assert inner + caller + region <= prof.wall


def test_profile_restores_the_ops_when_the_block_raises():
    before = originals()
    model = small_mlp()
    with pytest.raises(ZeroDivisionError):
        with mf.profile():
            model(mf.tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
            1 / 0
    assert_restored(before)
    y = model(mf.tensor(np.ones((2, 4), dtype=np.float32)))  # and the model still runs
    assert y.shape == (2, 3)


def test_profile_handles_an_op_without_staticmethod_and_restores_everything():
    before = originals()  # taken before the two classes below exist, so that nothing here keeps them alive

    class Plain(Function):  # no @staticmethod: Function.apply calls it through the class all the same
        def forward(ctx, x):
            return 2 * x

        def backward(ctx, g):
            return (2 * g,)

    class Late(Function):  # defined after Plain, so the profiler meets it first
        @staticmethod
        def forward(ctx, x):
            return x + 1

        @staticmethod
        def backward(ctx, g):
            return (g,)

    late_forward = Late.__dict__["forward"]
    x = mf.tensor(np.ones(2))
    assert Late.apply(Plain.apply(x)).numpy().tolist() == [3.0, 3.0]
    try:
        with mf.profile():
            assert Late.apply(Plain.apply(x)).numpy().tolist() == [3.0, 3.0]
        error = None
    except AttributeError as e:
        error = repr(e)
    restored = Late.__dict__["forward"] is late_forward and all(
        cls.__dict__.get("forward") is fwd and cls.__dict__.get("backward") is bwd for cls, (fwd, bwd) in before.items())
    for cls, (fwd, bwd) in before.items():  # undo whatever the profiler left behind, for the other tests
        if fwd is not None:
            cls.forward = fwd
        if bwd is not None:
            cls.backward = bwd
    del Plain, Late
    gc.collect()  # drop the two classes from Function.__subclasses__(): later profiles must not meet them
    assert error is None and restored, error


# ============================================================================ CuPy (skipped without a GPU)
@pytest.mark.cupy
@pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine")
def test_performance_pieces_on_cupy(oracles):
    import cupy

    rs = np.random.default_rng(16)
    a = rs.uniform(-9, 9, BIG).astype(np.float32)
    w = rs.standard_normal(BIG).astype(np.float32)
    theta0, grads = rs.standard_normal(BIG).astype(np.float32), [rs.standard_normal(BIG).astype(np.float32)] * 3
    cpu = {approx: gelu_fwd_bwd(a, w, approx) for approx in ("none", "tanh")}
    mf.set_backend("cupy")
    try:
        e = backend.erf(cupy.asarray(a))
        assert e.dtype == cupy.float32
        assert np.abs(cupy.asnumpy(e) - exact_erf(a.astype(np.float64))).max() <= 1e-6
        for approx, (y_cpu, g_cpu) in cpu.items():
            y, g = gelu_fwd_bwd(cupy.asarray(a), cupy.asarray(w), approx)
            np.testing.assert_allclose(cupy.asnumpy(y), y_cpu, rtol=0, atol=1e-5)
            np.testing.assert_allclose(cupy.asnumpy(g), g_cpu, rtol=0, atol=1e-5)
        p = mf.nn.Parameter(cupy.asarray(theta0))
        opt = optim.AdamW([p], **HYPER)
        for g in grads:
            p.grad = cupy.asarray(g)
            opt.step()
        np.testing.assert_allclose(cupy.asnumpy(p.data), oracles.adam_reference(theta0, grads, decoupled=True, **HYPER)[0],
                                   rtol=1e-5, atol=1e-7)
        total = optim.clip_grad_norm_([p], 1.0)
        assert total == pytest.approx(float(np.linalg.norm(grads[0].astype(np.float64))), rel=1e-5)
        x = mf.tensor(cupy.asarray(np.abs(a) + 0.5), requires_grad=True)
        y = F.dropout(x, 0.1)
        y.sum().backward()
        out, xa = cupy.asnumpy(y.data), np.abs(a) + 0.5
        kept = out != 0
        np.testing.assert_allclose(out[kept], xa[kept] / 0.9, rtol=1e-6)
        assert abs(kept.mean() - 0.9) < 5 * math.sqrt(0.09 / BIG)
        np.testing.assert_allclose(cupy.asnumpy(x.grad), out / xa, rtol=1e-6)
    finally:
        mf.set_backend("numpy")
