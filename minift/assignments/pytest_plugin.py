"""pytest plugin for coursework: the ``task`` marker and, on request, a JSON report of task outcomes.

With ``MINIFT_TASK_REPORT=path.json`` every test marked ``@pytest.mark.task("id")`` is recorded as
``{"nodeid": ..., "tasks": [...], "outcome": "passed"|"failed"|"skipped"}``; ``minift assignments check``
reads it to prove that each task's tests fail in the student tree and pass in the solution tree.
"""
import json
import os

import pytest

_results = []


def pytest_configure(config):
    config.addinivalue_line("markers", "task(id): the test checks coursework task `id` (minift assignments list)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    tasks = [m.args[0] for m in item.iter_markers("task") if m.args]
    if not tasks or not os.environ.get("MINIFT_TASK_REPORT"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _results.append({"nodeid": item.nodeid, "tasks": tasks, "outcome": report.outcome})


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MINIFT_TASK_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_results, f, indent=1)
