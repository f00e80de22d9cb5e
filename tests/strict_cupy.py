"""A stand-in for CuPy, built on NumPy, as strict as CuPy about host and device arrays — for a machine without a GPU.

Most CuPy bugs are not wrong numbers but a host array meeting a device one, which NumPy never minds. Here
device arrays are ``DeviceArray`` (a NumPy subclass: the numbers are NumPy's), and as in CuPy:

  * a device function or ufunc given a host ``numpy.ndarray`` raises TypeError ("Unsupported type"), and
    writing one into a device array (``a[...] = host``) raises ValueError, as CuPy refuses CPU arrays there;
  * ``np.asarray`` / ``np.array`` of a device array raises TypeError (no implicit conversion to the host),
    while ``np.f(device arrays)`` runs on the device, as CuPy's ``__array_function__`` forwards it;
  * reductions give 0-d device arrays, never NumPy scalars;
  * ``cupy.asarray`` takes host data, ``.get()`` brings it back; ``cupy.random.default_rng`` has only the
    methods CuPy's Generator has, and its ``bit_generator.state`` is a method, as there;
  * every gradient an op's backward returns must be on the device.

What it cannot catch: a host array indexed by a device one (a subclass indexes silently), kernels, speed.

    python tests/strict_cupy.py <minift command line>     e.g. align ppo checkpoints/tiny-gpt --reward word:great
    python tests/strict_cupy.py --lesson lessons/10_lora.ipynb   a lesson's code cells in order (MINIFT_FAST=1)
    python tests/strict_cupy.py --selftest                 the refusals above, one line each
"""
import os
import sys
import threading
import types

import numpy as np
import scipy.special

_ctx = threading.local()


def _on_device():
    return getattr(_ctx, "depth", 0) > 0


class DeviceArray(np.ndarray):
    def get(self):
        return np.array(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        for x in inputs + (out or ()):
            if type(x) is np.ndarray and x.ndim > 0:
                raise TypeError(f"Unsupported type {type(x)} in {ufunc.__name__}.{method} (a host array met a device one)")
        host_in = [x.view(np.ndarray) if isinstance(x, DeviceArray) else x for x in inputs]
        if out is not None:
            kw["out"] = tuple(o.view(np.ndarray) if isinstance(o, DeviceArray) else o for o in out)
        res = getattr(ufunc, method)(*host_in, **kw)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _to_device(res)

    def __array_function__(self, func, types_, args, kwargs):
        # CuPy's ndarray forwards np.f(device arrays) to cupy.f, which refuses host arrays among them
        if not _on_device():
            _check_no_host(args, kwargs, func.__name__)
        with _Device():
            return _to_device(super().__array_function__(func, types_, args, kwargs))

    def __array__(self, dtype=None, copy=None):
        if not _on_device():
            raise TypeError("Implicit conversion to a NumPy array is not allowed (np.asarray of a device array)")
        return self.view(np.ndarray) if dtype is None else self.view(np.ndarray).astype(dtype)

    def tolist(self):
        return self.get().tolist()

    def __setitem__(self, index, value):
        if type(value) is np.ndarray and value.ndim > 0:  # CuPy: "non-scalar numpy.ndarray cannot be used for fill"
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill (a host array written into a device one)")
        super().__setitem__(index, value)


def _to_device(x):
    if type(x) is np.ndarray:
        return x.view(DeviceArray)
    if isinstance(x, np.generic) and not isinstance(x, (np.str_, np.bytes_)):  # CuPy gives 0-d arrays, not scalars
        return _np_originals["asarray"](x).view(DeviceArray)
    if isinstance(x, tuple):
        return tuple(_to_device(v) for v in x)
    if isinstance(x, list):
        return [_to_device(v) for v in x]
    return x


def _check_no_host(args, kwargs, name):
    def bad(v):
        if type(v) is np.ndarray and v.ndim > 0:
            return True
        if isinstance(v, (list, tuple)):
            return any(bad(e) for e in v)
        return False
    if any(bad(a) for a in args) or any(bad(v) for v in kwargs.values()):
        raise TypeError(f"Unsupported type <class 'numpy.ndarray'>: cupy.{name} got a host array")


class _Device:
    def __enter__(self):
        _ctx.depth = getattr(_ctx, "depth", 0) + 1

    def __exit__(self, *exc):
        _ctx.depth -= 1


def _device_function(fn, name, accepts_host=False):
    def wrapper(*args, **kwargs):
        if not accepts_host:
            _check_no_host(args, kwargs, name)
        with _Device():
            return _to_device(fn(*args, **kwargs))
    wrapper.__name__ = name
    return wrapper


class _Ufunc:
    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        _check_no_host(args, kwargs, self.__name__)
        with _Device():
            return _to_device(self._uf(*args, **kwargs))

    def __getattr__(self, name):
        attr = getattr(self._uf, name)
        return _device_function(attr, f"{self.__name__}.{name}") if callable(attr) else attr


class _Generator:
    """Only what cupy.random.Generator has."""

    def __init__(self, seed):
        self._g = np.random.default_rng(seed)
        self.bit_generator = types.SimpleNamespace(state=lambda: 0)  # CuPy's is a method returning a pointer

    def _draw(name):  # noqa: N805
        def method(self, *args, **kwargs):
            with _Device():
                return _to_device(np.asarray(getattr(self._g, name)(*args, **kwargs)))
        return method

    random = _draw("random")
    uniform = _draw("uniform")
    integers = _draw("integers")
    standard_normal = _draw("standard_normal")
    beta = _draw("beta")
    gamma = _draw("gamma")
    exponential = _draw("exponential")
    poisson = _draw("poisson")
    binomial = _draw("binomial")


class _FakeCupy(types.ModuleType):
    ndarray = DeviceArray

    def __getattr__(self, name):
        attr = _orig(name)
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants, finfo/iinfo classes
        if name in ("finfo", "iinfo", "dtype", "result_type", "can_cast", "isscalar", "broadcast_shapes"):
            return _device_function(attr, name, accepts_host=True)
        return _device_function(attr, name, accepts_host=name in ("asarray", "array", "asanyarray"))


def _host_only(fn):
    def wrapper(a, *args, **kwargs):
        if isinstance(a, DeviceArray) and not _on_device():
            raise TypeError(f"Implicit conversion to a NumPy array is not allowed (np.{fn.__name__} of a device array)")
        return fn(a, *args, **kwargs)
    wrapper.__name__ = fn.__name__
    return wrapper


_np_originals = {n: getattr(np, n) for n in ("asarray", "array", "ascontiguousarray", "asanyarray")}
for _n, _f in _np_originals.items():
    setattr(np, _n, _host_only(_f))


def _orig(name):
    f = _np_originals.get(name)
    return f if f is not None else getattr(np, name)


cupy = _FakeCupy("cupy")
cupy.random = types.SimpleNamespace(default_rng=_Generator)
cupy.cuda = types.SimpleNamespace(Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None))
cupy.asnumpy = lambda a: a.get() if isinstance(a, DeviceArray) else np.asarray(a)
cupyx = types.ModuleType("cupyx")
cupyx.__path__ = []


def _scatter_add(target, index, values):
    _check_no_host((target, index, values), {}, "scatter_add")
    with _Device():
        np.add.at(target.view(np.ndarray), index.view(np.ndarray) if isinstance(index, DeviceArray) else index,
                  values.view(np.ndarray) if isinstance(values, DeviceArray) else values)


cupyx.scatter_add = _scatter_add
scipy_mod = types.ModuleType("cupyx.scipy")
scipy_mod.__path__ = []
special = types.ModuleType("cupyx.scipy.special")
special.erf = _device_function(scipy.special.erf, "erf")
scipy_mod.special = special
sys.modules.update({"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy_mod, "cupyx.scipy.special": special})

os.environ["MINIFT_BACKEND"] = "cupy"
from minift import backend  # noqa: E402

_orig_to_numpy = backend.to_numpy


def _to_numpy(a):
    if isinstance(a, DeviceArray):
        return a.get()
    return _orig_to_numpy(a)


_patches = {"to_numpy": _to_numpy,
            "array_module": lambda a: np if type(a) is np.ndarray or isinstance(a, np.memmap) else cupy,
            "array_device": lambda a: "cuda" if isinstance(a, DeviceArray) else "cpu"}
_originals = {name: getattr(backend, name) for name in _patches}


def _patch_modules():
    """Every minift module that did ``from ..backend import to_numpy`` (etc.) gets the patched function."""
    for mod in list(sys.modules.values()):
        if not getattr(mod, "__name__", "").startswith("minift"):
            continue
        for name, fn in _patches.items():
            if getattr(mod, name, None) is _originals[name]:
                setattr(mod, name, fn)


_patch_modules()
assert backend.is_cupy()

from minift.autograd import engine as _engine  # noqa: E402

_orig_check = _engine._check_input_grads


def _check_grads_on_device(node, input_grads):
    grads = input_grads if isinstance(input_grads, tuple) else (input_grads,)
    for i, g in enumerate(grads if backend.is_cupy() else ()):  # (a lesson may switch to NumPy on purpose)
        if type(g) is np.ndarray and g.ndim > 0:
            raise TypeError(f"{node.fn.__name__}.backward returned a host array for input {i}")
    return _orig_check(node, input_grads)


_engine._check_input_grads = _check_grads_on_device



def selftest():
    """Each line: what CuPy does with the expression, and what the stand-in did."""
    xp = backend.xp
    cases = [("xp.zeros(3) + np.ones(3)", "raises"), ("np.ones(3) * xp.zeros(3)", "raises"),
             ("np.asarray(xp.zeros(3))", "raises"), ("xp.concatenate([xp.zeros(2), np.ones(2)])", "raises"),
             ("backend.rng()._generator.normal", "raises"), ("backend.rng().normal", "method"), ("np.exp(xp.zeros(3))", "DeviceArray"),
             ("xp.zeros(3).sum()", "DeviceArray"), ("float(xp.ones(3).sum())", "float"),
             ("backend.to_numpy(xp.ones(2))", "ndarray"), ("xp.asarray(np.ones(2))", "DeviceArray"),
             ("xp.zeros(2).__setitem__(Ellipsis, np.ones(2))", "raises")]
    ok = True
    for expr, want in cases:
        try:
            got = type(eval(expr, {"xp": xp, "np": np, "backend": backend})).__name__
        except (TypeError, ValueError, AttributeError):
            got = "raises"
        ok &= got == want
        print(f"{'ok' if got == want else 'WRONG'}  {expr}: CuPy {want}, stand-in {got}")
    return 0 if ok else 1


def run_lesson(path):
    """Execute a lesson notebook's code cells in order, in its folder, as a script (no kernel, no outputs):
    0 if every cell ran, else 1 after naming the first cell that failed and the lines it failed in."""
    import json
    import traceback

    os.environ.setdefault("MINIFT_FAST", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    path = os.path.abspath(path)
    cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
    os.chdir(os.path.dirname(path))
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(cells):
        name = f"{os.path.basename(path)}[cell {i}]"
        try:
            exec(compile("".join(cell["source"]), name, "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - reported, with where it happened
            where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(e.__traceback__)
                     if "minift" in f.filename or "[cell" in f.filename][-4:]
            print(f"FAILED {name}: {type(e).__name__}: {e}\n  at {' <- '.join(reversed(where))}")
            return 1
    print(f"ok {os.path.basename(path)}: {len(cells)} cells")
    return 0


if __name__ == "__main__" and sys.argv[1:]:
    import minift.cli  # noqa: F401 - every module imported, then the patched helpers put into each
    import minift.continual  # noqa: F401
    import minift.pretrain  # noqa: F401
    import minift.rlhf  # noqa: F401
    _patch_modules()
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(selftest())
    if sys.argv[1:2] == ["--lesson"]:
        sys.exit(run_lesson(sys.argv[2]))
    sys.exit(minift.cli.main(sys.argv[1:]))
