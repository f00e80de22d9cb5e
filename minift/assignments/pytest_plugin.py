"""pytest plugin for coursework: the ``task`` marker, ``--task ID`` selection and a JSON report of outcomes.

* ``pytest --task optim.adamw_step`` runs only that task's tests (repeat ``--task`` for several); each
  marked test also answers to its task id in ``-k`` (``-k matmul_backward``).
* With ``MINIFT_TASK_REPORT=path.json`` every test marked ``@pytest.mark.task("id")`` is recorded as
  ``{"nodeid", "tasks", "outcome": "passed"|"failed"|"skipped", "message"}`` (``message``: the first line
  of the failure). ``minift assignments check`` and ``grade`` read it.
"""
import json
import os

import pytest

_results = []


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
    """The failure in one line: the exception's first lines (NumPy's messages start on the second)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    text = text.split("Failing test case:")[0]  # hypothesis's example follows; the report keeps the error
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:300]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    tasks = _tasks(item)
    if not tasks or not os.environ.get("MINIFT_TASK_REPORT"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        message = _first_line(report) if report.outcome == "failed" else ""
        _results.append({"nodeid": item.nodeid, "tasks": tasks, "outcome": report.outcome, "message": message})


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MINIFT_TASK_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_results, f, indent=1)
