"""``no_grad``: switch graph building off (evaluation, optimizer updates, generation)."""
import contextlib

_enabled = [True]


def is_grad_enabled() -> bool:
    return _enabled[0]


class no_grad(contextlib.ContextDecorator):
    """``with mf.no_grad(): ...`` or ``@mf.no_grad()``: ops inside record no graph."""

    def __enter__(self):
        self._prev = _enabled[0]
        _enabled[0] = False

    def __exit__(self, *exc):
        _enabled[0] = self._prev
        return False


class enable_grad(no_grad):
    def __enter__(self):
        self._prev = _enabled[0]
        _enabled[0] = True


def set_grad_enabled(flag: bool):
    _enabled[0] = bool(flag)
