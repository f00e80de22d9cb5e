"""Running a task's tests (``minift assignments test``) and grading a student tree (``… grade``).

Grading runs the *teacher's* tests (this tree's ``tests/``) against the *student's* ``minift/``, in a fresh
copy and a clean subprocess, on the fast derandomized "assignments" hypothesis profile. Each task scores
``points × passed / total`` of its tests; a failing task's report shows its first failing assertion.

Property tasks are the other way round: the *student's* tests (``tests/test_exercises.py``) run against the
*teacher's* minift. They must pass there (else 0), and then score ``points × killed / mutants`` over the
target task's mutants.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from .tasks import TASK_BY_ID, TASK_LIST


def run_task_tests(tree: Path, report: Path, task_ids=(), timeout=None, profile="assignments", files=("tests",),
                   stop_first=False) -> list[dict]:
    """Run the task-marked tests in ``files`` of ``tree`` (only ``task_ids``' if given) against ``tree``'s own
    minift, on a hypothesis ``profile``; the plugin's report: [{"nodeid", "tasks", "outcome", "message"}]."""
    env = dict(os.environ, MINIFT_TASK_REPORT=str(report), PYTHONPATH=str(tree), HYPOTHESIS_PROFILE=profile)
    selection = [a for t in task_ids for a in ("--task", t)] + (["-x"] if stop_first else [])
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "task", "-p", "no:cacheprovider", "--no-header", *selection, *files]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    if not report.exists():
        raise RuntimeError(f"pytest wrote no task report in {tree}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def by_task(results) -> dict:
    """{task id: [(nodeid, outcome, message)]}."""
    out = defaultdict(list)
    for r in results:
        for t in r["tasks"]:
            out[t].append((r["nodeid"], r["outcome"], r.get("message", "")))
    return out


def test_task(root: Path, task_id: str) -> int:
    """``minift assignments test TASK_ID``: the task's tests in ``root``, output shown; pytest's exit code."""
    if task_id not in TASK_BY_ID:
        raise ValueError(f"unknown task {task_id!r}; `minift assignments list` shows the tasks")
    env = dict(os.environ, PYTHONPATH=str(root), HYPOTHESIS_PROFILE="assignments")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-m", "task",
           "--task", task_id, "tests"]
    return subprocess.run(cmd, cwd=root, env=env).returncode


def grade(student: Path, teacher_root: Path, task_ids=(), timeout=1800) -> dict:
    """Score ``student``'s tree with ``teacher_root``'s tests (every task, or only ``task_ids``); returns the
    report (see ``report_markdown``)."""
    unknown = [t for t in task_ids if t not in TASK_BY_ID]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; `minift assignments list` shows the tasks")
    chosen = [t for t in TASK_LIST if not task_ids or t.id in task_ids]
    code_tasks = [t.id for t in chosen if not t.is_property]
    student, teacher_root = Path(student).resolve(), Path(teacher_root).resolve()
    if not (student / "minift" / "__init__.py").is_file():
        raise FileNotFoundError(f"{student} is not a minift tree (no minift/__init__.py): give the student's "
                                "directory, the one `minift assignments build --out` wrote")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minift-grade-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(student / "minift", tree / "minift", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(teacher_root / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "checkpoints"):  # the test configuration and the small shipped models
            src = teacher_root / name
            if src.is_dir():
                shutil.copytree(src, tree / name)
            elif src.exists():
                shutil.copy2(src, tree / name)
        results = by_task(run_task_tests(tree, Path(tmp) / "report.json", code_tasks, timeout=timeout)) \
            if code_tasks else {}
    tasks, total = [], 0.0
    for t in chosen:
        if t.is_property:
            entry = _grade_property_task(t, student, teacher_root)
            tasks.append(entry)
            total += entry["score"]
            continue
        runs = results.get(t.id, [])
        passed = sum(o == "passed" for _, o, _ in runs)
        score = round(t.points * passed / len(runs), 1) if runs else 0.0
        failing = next(((n, m) for n, o, m in runs if o != "passed"), None)
        tasks.append({"task": t.id, "title": t.title, "points": t.points, "score": score, "passed": passed,
                      "tests": len(runs), "first_failure": None if failing is None else
                      {"test": failing[0], "message": failing[1]}})
        total += score
    return {"student": str(student), "score": round(total, 1), "points": sum(t.points for t in chosen),
            "seconds": round(time.perf_counter() - t0, 1), "tasks": tasks}


def _grade_property_task(task, student: Path, teacher_root: Path) -> dict:
    """A property task: the student's tests on the teacher's code (must pass), then against the target's mutants."""
    from .mutants import copy_project, mutants_of, run_mutants

    exercises = student / task.file

    def with_students_tests(tree):
        if exercises.is_file():
            shutil.copy2(exercises, tree / task.file)

    entry = {"task": task.id, "title": task.title, "points": task.points, "score": 0.0, "passed": 0, "tests": 0,
             "first_failure": None}
    with tempfile.TemporaryDirectory(prefix="minift-grade-props-") as tmp:
        tree = Path(tmp) / "tree"
        copy_project(teacher_root, tree)
        with_students_tests(tree)
        runs = by_task(run_task_tests(tree, Path(tmp) / "report.json", [task.id])).get(task.id, [])
    entry["tests"], entry["passed"] = len(runs), sum(o == "passed" for _, o, _ in runs)
    failing = next(((n, m) for n, o, m in runs if o != "passed"), None)
    if not runs or failing is not None:  # a test that fails on correct code is wrong itself: no points
        entry["first_failure"] = {"test": failing[0] if failing else task.file,
                                  "message": ("fails on the correct implementation: " + failing[1]) if failing
                                  else "no test marked with this task"}
        return entry
    mutants = mutants_of(task.target)
    results = run_mutants(teacher_root, jobs=[(m, task.id) for m in mutants], profiles=("assignments",),
                          out=lambda *a: None, tree_setup=with_students_tests)
    killed = [name for (_, _, name), r in results.items() if r["assignments"]]
    entry["score"] = round(task.points * len(killed) / len(mutants), 1)
    entry["mutants_killed"] = f"{len(killed)} / {len(mutants)}"
    survivors = [m.name for m in mutants if m.name not in killed]
    if survivors:
        entry["first_failure"] = {"test": task.file, "message": "mutants that survive your tests: " + ", ".join(survivors)}
    return entry


def report_markdown(report: dict) -> str:
    """The report as Markdown a teacher can hand back."""
    lines = [f"# Coursework report: {report['score']:g} / {report['points']} points\n",
             f"Graded with the course's tests in {report['seconds']} s.\n",
             "| task | tests passed | score | first failure |", "|---|---|---|---|"]
    for t in report["tasks"]:
        fail = t["first_failure"]
        note = "" if fail is None else f"`{fail['test'].split('::')[-1]}`: {fail['message']}".replace("|", "\\|")
        passed = f"{t['passed']} / {t['tests']}" + (f"; mutants killed {t['mutants_killed']}" if "mutants_killed" in t else "")
        lines.append(f"| `{t['task']}` | {passed} | {t['score']:g} / {t['points']} | {note} |")
    return "\n".join(lines) + "\n"

