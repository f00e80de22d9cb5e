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
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from .markers import find_regions, strip_solutions
from .tasks import TASK_BY_ID, TASK_LIST


class TestsDidNotStart(RuntimeError):
    """pytest stopped before any test ran, and said why: most often the package does not import."""


def run_task_tests(tree: Path, report: Path, task_ids=(), timeout=None, profile="assignments", files=("tests",),
                   stop_first=False, time_limit=None) -> list[dict]:
    """Run the task-marked tests in ``files`` of ``tree`` (only ``task_ids``' if given) against ``tree``'s own
    minift, on a hypothesis ``profile``; one entry per test: {"nodeid", "tasks", "outcome", "message"}.

    Student code can do worse than fail, so a run is made robust three ways:

    * ``time_limit`` seconds per test (the plugin's ``MINIFT_TEST_TIME_LIMIT``): a test stuck in a loop fails
      with the reason, and the run goes on;
    * a test that ends pytest's process (``os._exit``, a segfault, the kernel's out-of-memory killer) or runs
      past ``timeout`` seconds is recorded as failed with the reason, and pytest starts again without the
      tests already done, so that one crash costs one test (the report is written line by line for this);
    * a test file that cannot be collected gives one failed entry for each task it names.

    Raises ``TestsDidNotStart`` when pytest ran no test at all, with pytest's own reason (a ``SyntaxError`` in
    the package, a missing name).
    """
    tree, report = Path(tree), Path(report)
    env = dict(os.environ, MINIFT_TASK_REPORT=str(report), PYTHONPATH=str(tree), HYPOTHESIS_PROFILE=profile,
               MINIFT_TEST_TIME_LIMIT=str(time_limit or ""))
    selection = [a for t in task_ids for a in ("--task", t)] + (["-x"] if stop_first else [])
    results = []
    while True:
        done = [a for r in results for a in ("--deselect", r["nodeid"])]
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "task", "-p", "no:cacheprovider", "--no-header",
               "--continue-on-collection-errors", *selection, *done, *files]
        report.unlink(missing_ok=True)
        try:
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            output = proc.stdout + proc.stderr
            why = (f"the test process ended during this test (exit status {proc.returncode}): os._exit in the code, "
                   "a crash, or out of memory")
        except subprocess.TimeoutExpired as e:  # subprocess.run has killed pytest
            output = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o or "" for o in (e.stdout, e.stderr))
            why = f"the test did not finish within the grader's limit of {timeout:g} s"
        events = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
        recorded = {r["nodeid"] for r in results}
        for e in events:
            if "outcome" in e:
                results.append(e)
            elif "collect_error" in e and e["collect_error"] not in recorded:  # the same file fails again on a restart
                results.append({"nodeid": e["collect_error"], "tasks": tasks_named_in(tree / e["collect_error"]),
                                "outcome": "failed",
                                "message": "the test file could not be imported: " + _relative(e["message"], tree)})
        if any(e.get("finished") for e in events):
            return results
        recorded = {r["nodeid"] for r in results}
        culprit = next((e for e in reversed(events) if e.get("started") and e["started"] not in recorded), None)
        if culprit is None:
            raise TestsDidNotStart(_pytest_error(output, tree))
        results.append({"nodeid": culprit["started"], "tasks": culprit["tasks"], "outcome": "failed", "message": why})
        if stop_first:
            return results


def tasks_named_in(test_file: Path) -> list[str]:
    """The task ids a test file names in quotes (and, for a file that reads the op specs, those they name)."""
    text = test_file.read_text() if test_file.is_file() else ""
    specs = test_file.parent / "op_specs.py"
    if "op_specs" in text and specs.is_file():
        text += specs.read_text()
    return [t for t in TASK_BY_ID if f'"{t}"' in text or f"'{t}'" in text]


def _pytest_error(output: str, tree: Path) -> str:
    """pytest's reason for stopping, on one line: its ``E`` lines (or its last lines), paths made relative."""
    lines = [line.rstrip() for line in _relative(output, tree).splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")] or lines[-3:] or ["pytest printed nothing"]
    return "; ".join(errors[-4:])[:400]


def task_score(points, part, whole) -> float:
    """``points × part / whole`` to two decimals, a half rounded up: 5 × 1/4 is 1.25 (one decimal would show
    1.2, Python's round() going to the even digit), 5 × 1/40 = 0.125 gives 0.13."""
    from fractions import Fraction

    return math.floor(Fraction(points) * part / whole * 100 + Fraction(1, 2)) / 100


NOT_WRITTEN = "not written yet: still the handout's stub (raise NotImplementedError)"


def in_stub(task_id: str, message: str) -> bool:
    """Whether a test failed in the task's own stub (``raise NotImplementedError("TASK id: …")``)."""
    return f"NotImplementedError: TASK {task_id}:" in message


def not_written(task_id: str, message: str, runs) -> str:
    """A first failure in the task's own stub, said in words: ``NOT_WRITTEN`` when every test that ran stopped
    there, else how many of them still do (a task of several regions, or of several tests, half done); any
    other failure as it is. ``runs``: the task's (test, outcome, message)."""
    if not in_stub(task_id, message):
        return message
    stubbed = sum(in_stub(task_id, m) for _, o, m in runs if o == "failed")
    if stubbed == len(runs):
        return NOT_WRITTEN
    return (f"partly written: {stubbed} of its {len(runs)} tests still stop in the handout's stub "
            "(raise NotImplementedError)")


def _relative(text: str, tree: Path) -> str:
    """``text`` with the grader's temporary ``tree/`` path taken out of the file names in it (resolved or not)."""
    for where in sorted({str(tree), str(Path(tree).resolve())}, key=len, reverse=True):  # /private/var before /var
        text = text.replace(where + "/", "")
    return text


def by_task(results) -> dict:
    """{task id: [(nodeid, outcome, message)]}."""
    out = defaultdict(list)
    for r in results:
        for t in r["tasks"]:
            out[t].append((r["nodeid"], r["outcome"], r.get("message", "")))
    return out


def test_task(root: Path, task_id: str) -> int:
    """``minift assignments test TASK_ID``: the task's tests in ``root``, output shown; pytest's exit code."""
    check_task_ids([task_id])
    env = dict(os.environ, PYTHONPATH=str(root), HYPOTHESIS_PROFILE="assignments")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-m", "task",
           "--task", task_id, "tests"]
    return subprocess.run(cmd, cwd=root, env=env).returncode


def check_task_ids(task_ids):
    """Refuse an unknown task id, with the nearest known one."""
    import difflib

    for t in task_ids:
        if t not in TASK_BY_ID:
            near = difflib.get_close_matches(t, list(TASK_BY_ID), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown task {t!r}{hint}; `minift assignments list` shows the tasks")


def check_student_tree(student: Path):
    """Refuse a directory that holds no minift package, before any grading."""
    if not Path(student).exists():
        raise FileNotFoundError(f"{student} does not exist: give the student's directory, the one "
                                "`minift assignments build --out` wrote")
    if not (Path(student) / "minift" / "__init__.py").is_file():
        raise FileNotFoundError(f"{student} is not a minift tree (no minift/__init__.py): give the student's "
                                "directory, the one `minift assignments build --out` wrote")


# run in the grading copy: import every module of its minift/ and say, for each that fails, the error and the files
# that may be to blame, innermost first (the file of a SyntaxError, the module an ImportError could not read, then
# the traceback's own frames in minift/); one JSON line per failure
_IMPORT_EACH_MODULE = r"""
import faulthandler, importlib, json, os, sys, traceback
from pathlib import Path

tree = Path.cwd().resolve()
for name in sys.argv[2:]:
    faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)  # code that never returns: its stack, then out
    try:
        importlib.import_module(name)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: module code a student wrote
        # a SyntaxError's file; the traceback's frames, innermost first; last, the module an ImportError could not
        # take a name from (the file with the bad import comes before it, as a frame)
        files = [getattr(e, "filename", None)] + [f.filename for f in reversed(traceback.extract_tb(e.__traceback__))]
        files.append(getattr(e, "path", None))
        blamed = []
        for f in files:
            try:
                rel = Path(f).resolve().relative_to(tree).as_posix()
            except (TypeError, ValueError):
                continue
            if rel.startswith("minift/") and not rel.startswith("minift/assignments/") and rel not in blamed:
                blamed.append(rel)
        where = f", line {e.lineno}" if isinstance(e, SyntaxError) else ""
        message = e.msg if isinstance(e, SyntaxError) else str(e)
        # the grader's temporary path, resolved or not; the longer first (macOS: /private/var/… is /var/…)
        for where_from in sorted({str(tree), os.environ["PYTHONPATH"]}, key=len, reverse=True):
            message = message.replace(where_from + "/", "")
        error = f"it does not import: {type(e).__name__}: {message}{where}"
        print(json.dumps({"module": name, "error": error, "files": blamed}))
    faulthandler.cancel_dump_traceback_later()
"""


def _imports_tests(text: str) -> str | None:
    """The first statement of ``text`` that imports the course's ``tests`` package (``import tests.x``,
    ``from tests.x import y``, ``importlib.import_module("tests.x")``, ``__import__("tests")``), as written; None
    if there is none or the text does not parse. A name built at run time is not seen: grading is no sandbox."""
    import ast

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):  # the import check below reports it
        return None
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        if any(n == "tests" or n.startswith("tests.") for n in names):
            return ast.get_source_segment(text, node) or "import tests"
    return None


def handout_text(teacher_root: Path, rel: str) -> str | None:
    """The file ``rel`` as the student tree had it when handed out (solutions stripped), or None if it had none."""
    path = Path(teacher_root) / rel
    return strip_solutions(path.read_text(), path) if path.is_file() else None


def restore_unimportable_files(tree: Path, teacher_root: Path, time_limit=60, most=50) -> list[dict]:
    """Put back the handout's version of each file of ``tree/minift`` that stops a module from importing, and say
    which: [{"file", "error", "tasks"}] (the tasks written in that file).

    A student's ``SyntaxError`` (or a ``NameError`` at module level, or a misspelt import) in one file would stop
    ``import minift`` and so every test; restoring that file as it was handed out confines the damage to the tasks
    written in it, which then score 0. Module code still running after ``time_limit`` seconds (an endless loop)
    counts as not importing. A file is blamed only if it differs from the handout (the course's own files that
    cannot import here, an optional backend say, are not the student's doing) and is put back only once."""
    tree, teacher_root = Path(tree), Path(teacher_root)
    restored = []
    for path in sorted((teacher_root / "minift").rglob("*.py")):  # a file the hand-in lacks: put back first
        rel = path.relative_to(teacher_root).as_posix()
        if not rel.startswith("minift/assignments/") and "__pycache__" not in rel and not (tree / rel).is_file():
            _restore(tree, teacher_root, rel, "the hand-in has no such file", restored)
    for path in sorted((tree / "minift").rglob("*.py")):  # the tests' helpers are no solution: grading has them
        rel = path.relative_to(tree).as_posix()
        used = _imports_tests(path.read_text(errors="replace"))
        if used and not rel.startswith("minift/assignments/"):
            _restore(tree, teacher_root, rel, f"it imports the course's tests ({used}): a solution must compute "
                     "its answer, not call the tests' own checks", restored)
    modules = sorted({".".join(p.relative_to(tree).with_suffix("").parts).removesuffix(".__init__")
                      for p in (tree / "minift").rglob("*.py")
                      if p.relative_to(tree).parts[1] != "assignments" and p.name != "__main__.py"})
    env = dict(os.environ, PYTHONPATH=str(tree))
    while len(restored) < most:
        try:
            proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH_MODULE, str(time_limit), *modules], cwd=tree,
                                  env=env, capture_output=True, text=True, timeout=time_limit + 60)
        except subprocess.TimeoutExpired:  # not even faulthandler got out: the test run reports it per test
            return restored
        failures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"module"')]
        if "Timeout (" in proc.stderr:  # faulthandler's dump, innermost frame first: File "…", line N in f
            stuck = [Path(f).resolve() for f in re.findall(r'File "([^"]+)", line \d+', proc.stderr)]
            failures.append({"error": f"it does not import: its code was still running after {time_limit:g} s "
                             "(an endless loop?)", "files": [f.relative_to(tree.resolve()).as_posix() for f in stuck
                                                            if f.is_relative_to(tree.resolve() / "minift")
                                                            and not f.is_relative_to(tree.resolve() / "minift" / "assignments")]})
        done = {r["file"] for r in restored}
        blame = next(((rel, f["error"]) for f in failures for rel in f["files"]
                      if rel not in done and _text_or_none(tree / rel) != handout_text(teacher_root, rel)), None)
        if blame is None:
            return restored
        _restore(tree, teacher_root, *blame, restored)
    return restored


def _restore(tree: Path, teacher_root: Path, rel: str, error: str, restored: list):
    """Write the handout's ``rel`` into ``tree`` (or remove it, if the handout had none); note it in ``restored``."""
    original = handout_text(teacher_root, rel)
    if original is None:  # a file the student added
        (tree / rel).unlink()
    else:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(original)
    tasks = sorted({r.task for r in find_regions(teacher_root / rel)}) if original is not None else []
    restored.append({"file": rel, "error": error, "tasks": tasks, "removed": original is None})


def _text_or_none(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None


def grade(student: Path, teacher_root: Path, task_ids=(), timeout=1800, time_limit=60) -> dict:
    """Score ``student``'s tree with ``teacher_root``'s tests (every task, or only ``task_ids``); returns the
    report (see ``report_markdown``). A test may run ``time_limit`` seconds (the course's take a few), and a
    run of pytest ``timeout``; a student's endless loop or crash costs the tests it hits, a file that does not
    import (or is missing) is graded as handed out, so it costs the tasks written in it (the report's "restored"
    says which and why), and a test run that cannot start at all gets a report that says why, at every task."""
    check_task_ids(task_ids)
    chosen = [t for t in TASK_LIST if not task_ids or t.id in task_ids]
    code_tasks = [t.id for t in chosen if not t.is_property]
    student, teacher_root = Path(student).resolve(), Path(teacher_root).resolve()
    check_student_tree(student)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minift-grade-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(student / "minift", tree / "minift", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(teacher_root / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        # the grading machinery is the teacher's, not the student's copy (its pytest plugin writes the report)
        shutil.rmtree(tree / "minift" / "assignments", ignore_errors=True)
        shutil.copytree(teacher_root / "minift" / "assignments", tree / "minift" / "assignments",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "checkpoints"):  # the test configuration and the small shipped models
            src = teacher_root / name
            if src.is_dir():
                shutil.copytree(src, tree / name)
            elif src.exists():
                shutil.copy2(src, tree / name)
        restored = restore_unimportable_files(tree, teacher_root, time_limit) if code_tasks else []
        try:
            results = by_task(run_task_tests(tree, Path(tmp) / "report.jsonl", code_tasks, timeout=timeout,
                                             time_limit=time_limit)) if code_tasks else {}
            not_run = "no test of this task ran"
        except TestsDidNotStart as e:
            results, not_run = {}, f"no test could run, because pytest stopped first: {e}"
    tasks, total = [], 0.0
    for t in chosen:
        if t.is_property:
            entry = _grade_property_task(t, student, teacher_root, time_limit)
            tasks.append(entry)
            total += entry["score"]
            continue
        runs = results.get(t.id, [])
        broken = next((r for r in restored if t.id in r["tasks"]), None)
        passed = 0 if broken else sum(o == "passed" for _, o, _ in runs)
        score = task_score(t.points, passed, len(runs)) if runs else 0.0
        # a failure first; a skip (a reference library missing on the grader's machine) counts as not passed,
        # since a student's code could skip a test too, and says why so that the teacher can install it
        failing = (next(((n, not_written(t.id, m, runs)) for n, o, m in runs if o == "failed"), None) or
                   next(((n, "skipped on this machine: " + m) for n, o, m in runs if o == "skipped"), None)) \
            if runs else ("(none)", not_run)
        if broken:  # the tests ran on the handout's stub, not on the student's code
            failing = (broken["file"], f"{broken['file']} was graded as handed out ({broken['error']}): the tasks "
                       "written in it score 0")
        waits_on = sorted({m.group(1) for _, o, msg in runs if o == "failed"
                           for m in re.finditer(r"NotImplementedError: TASK ([\w.\-]+):", msg)} - {t.id})
        tasks.append({"task": t.id, "title": t.title, "points": t.points, "score": score, "passed": passed,
                      "tests": len(runs), "skipped": sum(o == "skipped" for _, o, _ in runs), "waits_on": waits_on,
                      "first_failure": None if failing is None else {"test": failing[0], "message": failing[1]}})
        total += score
    return {"student": str(student), "score": round(total, 2), "points": sum(t.points for t in chosen),
            "seconds": round(time.perf_counter() - t0, 1), "tasks": tasks,
            "restored": [{"file": r["file"], "error": r["error"], "removed": r["removed"]} for r in restored]}


def _grade_property_task(task, student: Path, teacher_root: Path, time_limit=60) -> dict:
    """A property task: the student's tests on the teacher's code (must pass), then against the target's mutants."""
    from .mutants import copy_project, equivalents_of, mutants_of, run_mutants

    exercises = student / task.file

    def with_students_tests(tree):
        shutil.copy2(exercises, tree / task.file)

    entry = {"task": task.id, "title": task.title, "points": task.points, "score": 0.0, "passed": 0, "tests": 0,
             "skipped": 0, "waits_on": [], "first_failure": None}  # a code task's keys (waits on none: its tests
    # run on the course's correct code)
    if not exercises.is_file():  # else the teacher's own tests, solutions and all, would be graded
        entry["first_failure"] = {"test": task.file, "message": f"the student's directory has no {task.file}: "
                                  "the property tasks are graded from it"}
        return entry
    with tempfile.TemporaryDirectory(prefix="minift-grade-props-") as tmp:
        tree = Path(tmp) / "tree"
        copy_project(teacher_root, tree)
        with_students_tests(tree)
        try:
            runs = by_task(run_task_tests(tree, Path(tmp) / "report.jsonl", [task.id], time_limit=time_limit)).get(task.id, [])
        except TestsDidNotStart as e:
            entry["first_failure"] = {"test": task.file, "message": f"no test could run, because pytest stopped first: {e}"}
            return entry
    entry["tests"], entry["passed"] = len(runs), sum(o == "passed" for _, o, _ in runs)
    entry["skipped"] = sum(o == "skipped" for _, o, _ in runs)
    failing = next(((n, m) for n, o, m in runs if o != "passed"), None)
    if not runs or failing is not None:  # a test that fails on correct code is wrong itself: no points
        if not runs:
            message = "no test marked with this task"
        elif failing[1].startswith("the test file could not be imported") or in_stub(task.id, failing[1]):
            message = not_written(task.id, failing[1], runs)
        else:
            message = "fails on the correct implementation: " + failing[1]
        entry["first_failure"] = {"test": failing[0] if failing else task.file, "message": message}
        return entry
    # the target's mutants, and its correct answers written another way (the tests must pass on each), in one run
    mutants, equivalents = mutants_of(task.target), equivalents_of(task.target)
    lines = []
    results = run_mutants(teacher_root, jobs=[(m, task.id) for m in equivalents + mutants], profiles=("assignments",),
                          out=lines.append, tree_setup=with_students_tests)
    broken = [line.strip() for line in lines if "could not be run" in line]
    if broken:  # the course's tree is not what the mutants were written for: no score, and why
        entry["first_failure"] = {"test": task.file, "message": "grading error, not the student's: " + "; ".join(broken)}
        return entry
    failed_on = [e.name for e in equivalents if results.pop((task.id, e.task, e.name))["assignments"]]
    if failed_on:
        entry["first_failure"] = {"test": task.file, "message": "fails on a correct implementation written another "
                                  f"way ({', '.join(failed_on)}): a property must hold for every correct version, "
                                  "so test what the code computes, never how its source reads"}
        return entry
    killed = [name for (_, _, name), r in results.items() if r["assignments"]]
    entry["score"] = task_score(task.points, len(killed), len(mutants))
    entry["mutants_killed"] = f"{len(killed)} / {len(mutants)}"
    survivors = [m.name for m in mutants if m.name not in killed]
    if survivors:
        entry["first_failure"] = {"test": task.file, "message": "mutants that survive your tests: " + ", ".join(survivors)}
    return entry


def report_markdown(report: dict) -> str:
    """The report as Markdown a teacher can hand back."""
    lines = [f"# Coursework report: {report['score']:g} / {report['points']} points\n",
             f"Graded with the course's tests in {report['seconds']} s.\n"]
    for r in report.get("restored", []):
        done = "is not in the handout and was left out" if r.get("removed") else \
            "was replaced by the handout's version of it"
        lines.append(f"`{r['file']}` {done} ({r['error']}), so that the rest of the package could be tested.\n")
    lines += ["| task | tests passed | score | first failure |", "|---|---|---|---|"]
    for t in report["tasks"]:
        fail = t["first_failure"]
        note = "" if fail is None else f"`{fail['test'].removeprefix('tests/')}`: {fail['message']}"
        if t.get("waits_on"):  # tests that stop in another task's stub say nothing about this one yet
            note += f" (some tests stop in {', '.join(f'`{w}`' for w in t['waits_on'])}, not done yet)"
        note = note.replace("|", "\\|")
        passed = f"{t['passed']} / {t['tests']}" + (f"; mutants killed {t['mutants_killed']}" if "mutants_killed" in t else "")
        lines.append(f"| `{t['task']}` | {passed} | {t['score']:g} / {t['points']} | {note} |")
    return "\n".join(lines) + "\n"


def class_markdown(reports: list[dict], each_report=True) -> str:
    """Several students' reports as one Markdown page: the class table (a row per student, a column per task),
    then (``each_report``) each student's own report."""
    tasks = [t["task"] for t in reports[0]["tasks"]]
    lines = [f"# Coursework: {len(reports)} students\n",
             "| student | score | " + " | ".join(f"`{t}`" for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for r in reports:
        cells = [f"{t['score']:g}" for t in r["tasks"]]
        lines.append(f"| {Path(r['student']).name} | {r['score']:g} / {r['points']} | " + " | ".join(cells) + " |")
    if not each_report:
        return "\n".join(lines) + "\n"
    own = [report_markdown(r).replace("# Coursework report:", f"## {Path(r['student']).name}:", 1) for r in reports]
    return "\n".join(lines) + "\n\n" + "\n".join(own)


def class_csv(reports: list[dict]) -> str:
    """The grades as CSV for a gradebook: student (the directory's name), directory, score, points, and one
    column per task with its score."""
    import csv
    import io

    tasks = [t["task"] for t in reports[0]["tasks"]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "directory", "score", "points", *tasks])
    for r in reports:
        writer.writerow([Path(r["student"]).name, r["student"], f"{r['score']:g}", r["points"],
                         *(f"{t['score']:g}" for t in r["tasks"])])
    return buffer.getvalue()
