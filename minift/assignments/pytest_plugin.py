"""pytest plugin for coursework: the ``task`` marker, ``--task ID`` selection, a per-test time limit and a
report of outcomes that survives a crash.

* ``pytest --task optim.adamw_step`` runs only that task's tests (repeat ``--task`` for several); each
  marked test also answers to its task id in ``-k`` (``-k matmul_backward``).
* With ``MINIFT_TASK_REPORT=path.jsonl`` the plugin appends one JSON line per event and flushes it at once,
  so that a run that dies (``os._exit`` in a student's code, a segfault, a killed process) still leaves what
  happened before it died (``grade.run_task_tests`` reads it):

  - ``{"started": nodeid, "tasks"}`` when a test starts;
  - ``{"nodeid", "tasks", "outcome": "passed"|"failed"|"skipped", "message"}`` for every test marked
    ``@pytest.mark.task("id")`` (``message``: the first lines of the failure);
  - ``{"collect_error": path, "message"}`` for a test file that could not be imported;
  - ``{"finished": true}`` at the end of the session.
* With ``MINIFT_TEST_TIME_LIMIT=seconds`` a test that runs longer fails with ``TimeLimitExceeded`` (an endless
  loop in a student's code costs that test, not the whole grading run). The limit is a ``SIGALRM`` timer: it
  interrupts Python code, not a single long NumPy call, which the grader's own timeout catches.
"""
import json
import os
import signal
import threading

import pytest


class TimeLimitExceeded(BaseException):
    """A test ran past ``MINIFT_TEST_TIME_LIMIT``. A ``BaseException``, so that neither the code under test nor
    hypothesis (which would rerun the example to shrink it, and loop again) can catch it as an error."""


def pytest_addoption(parser):
    parser.addoption("--task", action="append", default=[], metavar="ID",
                     help="run only the tests of coursework task ID (may be repeated)")


def pytest_configure(config):
    config.addinivalue_line("markers", "task(id): the test checks coursework task `id` (minift assignments list)")


def _tasks(item):
    return [m.args[0] for m in item.iter_markers("task") if m.args]


def pytest_collection_modifyitems(config, items):
    for item in items:
        for task in _tasks(item):
            item.extra_keyword_matches.add(task)  # so that -k finds a task's tests by its id
    wanted = set(config.getoption("task"))
    if wanted:
        keep = [i for i in items if wanted & set(_tasks(i))]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def _first_line(report):
    """The failure on one line, for a student: the exception's first lines (NumPy's comparison keeps its
    tolerance, the mismatch and ACTUAL / DESIRED); for a file that could not be imported, pytest's ``E`` lines
    (the ImportError or SyntaxError and where), not its preamble."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    text = text.split("Failing test case:")[0]  # hypothesis's example follows; the report keeps the error
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Use -v to get more diff" not in line]
    errors = [line[1:].strip() for line in str(report.longrepr or "").splitlines() if line.startswith("E ")]
    if crash is None and errors:  # a collection error: its E lines say what failed to import
        lines = errors[-4:]
    return " ".join(lines[:8])[:600]


def _skip_reason(report):
    """Why a test was skipped (pytest keeps (file, line, reason) for a skip)."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return reason.removeprefix("Skipped: ")[:300]


def _record(event):
    """Append one event to the report, flushed now: a crash a moment later loses nothing already written."""
    path = os.environ.get("MINIFT_TASK_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def pytest_collectreport(report):
    if report.failed:
        _record({"collect_error": report.nodeid, "message": _first_line(report)})


class _time_limit:
    """The ``MINIFT_TEST_TIME_LIMIT`` timer around one phase of a test (setup or call)."""

    def __enter__(self):
        limit = float(os.environ.get("MINIFT_TEST_TIME_LIMIT") or 0)
        self.timed = limit > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        if self.timed:
            def stop(signum, frame):
                raise TimeLimitExceeded(f"the test ran past its time limit of {limit:g} s: an endless loop, or code "
                                        "far slower than it should be (a Python loop over elements?)")
            self.previous = signal.signal(signal.SIGALRM, stop)
            signal.setitimer(signal.ITIMER_REAL, limit)

    def __exit__(self, *exc):
        if self.timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _record({"started": item.nodeid, "tasks": _tasks(item)})
    with _time_limit():  # fixtures run student code too
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _time_limit():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    tasks = _tasks(item)
    if not tasks:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        message = _first_line(report) if report.outcome == "failed" else \
            _skip_reason(report) if report.outcome == "skipped" else ""
        _record({"nodeid": item.nodeid, "tasks": tasks, "outcome": report.outcome, "message": message})


def pytest_sessionfinish(session, exitstatus):
    _record({"finished": True})
