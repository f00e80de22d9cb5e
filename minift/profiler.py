"""Where does a training step spend its time?  ``mf.profile`` times every op's forward and backward.

    with mf.profile() as prof:
        loss = model(**batch).loss
        loss.backward()
        with prof.region("clip_grad_norm_"):
            mf.optim.clip_grad_norm_(model.parameters(), 1.0)
        with prof.region("AdamW.step"):
            opt.step()
    print(prof.table())

Every op in minift is a ``Function`` subclass with a ``forward`` and a ``backward``; while the profile is
open, each of them is swapped for a timed version (and put back on exit), so nothing in the engine
knows about profiling. Times are *exclusive*: an op whose forward calls another op does not count the
inner one twice. What no op and no region accounts for — the engine's bookkeeping, summing gradients
that reach a tensor twice, Python between the ops — is the ``(untimed)`` row: wall time minus the rest.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from .autograd.function import Function


def _all_functions():
    """Every Function subclass defined so far (ops are subclasses of subclasses too)."""
    seen, todo = [], list(Function.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


class Profile:
    """Per-op call counts and exclusive seconds in forward and backward; named regions for the rest."""

    def __init__(self):
        self.calls = defaultdict(int)  # (name, "forward" | "backward" | "region") -> calls
        self.seconds = defaultdict(float)  # same key -> exclusive seconds
        self._child_time = [0.0]  # a stack: time spent in nested timed calls, to subtract from the caller
        self._saved = {}
        self._start = self.wall = None

    # ------------------------------------------------------------------ timing
    def _timed(self, key, fn, *args, **kwargs):
        self._child_time.append(0.0)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - t0
            inner = self._child_time.pop()
            self._child_time[-1] += elapsed
            self.calls[key] += 1
            self.seconds[key] += elapsed - inner

    @contextmanager
    def region(self, name):
        """Time a block that is not an op (an optimizer step, clipping, data loading) under ``name``."""
        self._child_time.append(0.0)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            inner = self._child_time.pop()
            self._child_time[-1] += elapsed
            self.calls[(name, "region")] += 1
            self.seconds[(name, "region")] += elapsed - inner

    def __enter__(self):
        try:
            for cls in _all_functions():
                fwd, bwd = cls.__dict__.get("forward"), cls.__dict__.get("backward")
                self._saved[cls] = (fwd, bwd)
                name = cls.__name__
                if fwd is not None:  # a staticmethod (the usual way) or a plain function defined in the class
                    cls.forward = staticmethod(self._wrap(name, "forward", getattr(fwd, "__func__", fwd)))
                if bwd is not None:
                    cls.backward = staticmethod(self._wrap(name, "backward", getattr(bwd, "__func__", bwd)))
        except BaseException:
            self.__exit__()  # put back what was already swapped
            raise
        self._start = time.perf_counter()
        return self

    def _wrap(self, name, phase, fn):
        def timed(*args, **kwargs):
            return self._timed((name, phase), fn, *args, **kwargs)

        return timed

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._start if self._start is not None else 0.0
        for cls, (fwd, bwd) in self._saved.items():
            if fwd is not None:
                cls.forward = fwd
            if bwd is not None:
                cls.backward = bwd
        self._saved.clear()
        return False

    # ------------------------------------------------------------------ report
    def rows(self):
        """[(name, calls, forward s, backward s, region s)] sorted by total time, largest first."""
        names = {name for name, _ in self.calls}
        rows = []
        for name in names:
            f, b, r = (self.seconds.get((name, phase), 0.0) for phase in ("forward", "backward", "region"))
            calls = self.calls.get((name, "forward"), 0) + self.calls.get((name, "region"), 0)
            rows.append((name, calls, f, b, r))
        return sorted(rows, key=lambda row: -(row[2] + row[3] + row[4]))

    def table(self, per=1, top=20):
        """The profile as text: ms per op (divided by ``per``, e.g. the number of steps profiled)."""
        rows = self.rows()
        total = self.wall if self.wall is not None else time.perf_counter() - self._start
        accounted = sum(f + b + r for _, _, f, b, r in rows)
        lines = [f"{'op / region':28} {'calls':>6} {'forward ms':>11} {'backward ms':>12} {'total ms':>9} {'share':>6}"]
        shown = rows[:top]
        rest = rows[top:]
        for name, calls, f, b, r in shown:
            t = f + b + r
            fwd = f"{1000 * f / per:11.1f}" if r == 0 else f"{'':>11}"
            bwd = f"{1000 * b / per:12.1f}" if r == 0 else f"{'':>12}"
            lines.append(f"{name:28} {calls / per:6.0f} {fwd} {bwd} {1000 * t / per:9.1f} {t / total:6.1%}")
        if rest:
            t = sum(f + b + r for _, _, f, b, r in rest)
            lines.append(f"{f'({len(rest)} other ops)':28} {'':6} {'':11} {'':12} {1000 * t / per:9.1f} {t / total:6.1%}")
        untimed = total - accounted
        lines.append(f"{'(untimed: engine, Python)':28} {'':6} {'':11} {'':12} {1000 * untimed / per:9.1f} {untimed / total:6.1%}")
        lines.append(f"{'wall':28} {'':6} {'':11} {'':12} {1000 * total / per:9.1f} {1:6.0%}")
        return "\n".join(lines)


def profile():
    """A ``Profile`` to use as a context manager: ``with mf.profile() as prof: ...; print(prof.table())``."""
    return Profile()
