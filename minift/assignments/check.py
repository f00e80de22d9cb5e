"""``minift assignments check``: prove that the solution markers have teeth.

1. markers pair and do not nest, and every task id is known (``tasks.TASKS``) and used;
2. every task has tests marked ``@pytest.mark.task(id)``, and they all pass in the solution tree;
3. the student tree (solutions stripped) still imports, module by module;
4. every test of every task fails in the student tree, but those that compare with the course's reference answers
   (``tests/oracles.py``, not handed out), which skip there; each task keeps at least one test that fails;
5. every task has at least three mutants (``mutants.py``), and its tests kill each of them on the profile of
   ``minift assignments test`` / ``grade`` and on the students' default pytest profile (the kill-rate table);
   a task with tests that need the oracles kills each without them too, so a student's own run catches it;
6. each correct answer written another way (``mutants.EQUIVALENTS``) passes its task's tests and the property
   task's that targets it, so that grading can require a student's property tests to pass on it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .build import ORACLE_SKIP_MARK, all_regions, build_student_tree
from .grade import by_task, run_task_tests
from .tasks import TASK_LIST, TASKS


def _run_task_tests(tree: Path, report: Path) -> dict:
    """{task id: [(nodeid, outcome)]} of every task-marked test run in ``tree``; a test skipped for want of the
    course's oracle (a student tree) has the outcome "no oracle"."""
    def outcome(o, message):
        return "no oracle" if o == "skipped" and ORACLE_SKIP_MARK in message else o

    return {t: [(n, outcome(o, m)) for n, o, m in runs] for t, runs in by_task(run_task_tests(tree, report)).items()}


def _student_imports(tree: Path) -> list[str]:
    code = (
        "import importlib, pkgutil, minift, sys\n"
        f"assert minift.__file__.startswith({str(tree)!r}), minift.__file__\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(minift.__path__, 'minift.'):\n"
        "    if m.name.endswith('.__main__'):\n"  # python -m minift: importing it runs the command line
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{m.name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode:
        return [proc.stderr.strip()]
    return [line for line in proc.stdout.splitlines() if line]


def check(root: Path, out=print, mutants=True, isolation=False) -> bool:
    root = Path(root).resolve()
    problems = []
    regions = all_regions(root)  # raises MarkerError on unpaired / nested markers
    used = {r.task for r in regions}
    for r in regions:
        if r.task not in TASKS:
            problems.append(f"{r.path.relative_to(root)}:{r.task_line}: unknown task id {r.task!r} (add it to minift/assignments/tasks.py)")
    for t in TASKS:
        if t not in used:
            problems.append(f"task {t!r} is listed but no solution region uses it")
    for t in TASK_LIST:
        problems += [f"task {t.id!r} depends on unknown task {d!r}" for d in t.depends if d not in TASKS]
    out(f"markers: {len(regions)} regions, {len(used)} tasks")

    with tempfile.TemporaryDirectory(prefix="minift-check-") as tmp:
        solution = _run_task_tests(root, Path(tmp) / "solution.jsonl")
        student_dir = Path(tmp) / "student"
        build_student_tree(root, student_dir)
        import_errors = _student_imports(student_dir)
        problems += [f"student tree does not import: {e}" for e in import_errors]
        student = _run_task_tests(student_dir, Path(tmp) / "student.jsonl")

    out(f"{'task':34} {'tests':>5} {'pass (solution)':>16} {'fail (student)':>15} {'graded only':>12}")
    for t in TASKS:
        sol, stu = solution.get(t, []), student.get(t, [])
        n_pass = sum(o == "passed" for _, o in sol)
        n_fail = sum(o == "failed" for _, o in stu)
        n_oracle = sum(o == "no oracle" for _, o in stu)
        out(f"{t:34} {len(sol):5d} {n_pass:16d} {n_fail:15d} {n_oracle:12d}")
        if not sol:
            problems.append(f"task {t!r} has no tests marked @pytest.mark.task({t!r})")
        problems += [f"{t}: {n} does not pass in the solution tree ({o})" for n, o in sol if o != "passed"]
        problems += [f"{t}: {n} still passes in the student tree: it does not test the task" for n, o in stu
                     if o not in ("failed", "no oracle")]
        if stu and not n_fail:
            problems.append(f"{t}: every test needs the course's oracle: a student has no test to run before grading")
        if sol and len(stu) != len(sol):
            problems.append(f"{t}: {len(sol)} tests in the solution tree but {len(stu)} ran in the student tree")
    if mutants:
        problems += _check_mutants(root, out, oracle_tasks={t for t, runs in student.items()
                                                             if any(o == "no oracle" for _, o in runs)})
    if isolation:
        problems += check_isolation(root, out)
    for p in problems:
        out(f"PROBLEM: {p}")
    out("assignments check: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return not problems


def _check_mutants(root: Path, out, oracle_tasks=()) -> list:
    """Run every mutant; the kill-rate table per task and profile; problems for survivors and thin tasks; then
    the mutants of ``oracle_tasks`` again without ``tests/oracles.py``, as a student's tree runs them."""
    from .mutants import EQUIVALENTS, MUTANTS, mutant_jobs, run_mutants

    targets = {t.id: t.target or t.id for t in TASK_LIST}
    problems = [f"task {t!r} has {n} mutant(s); at least 3 are needed" for t in TASKS
                if (n := sum(m.task == targets[t] for m in MUTANTS)) < 3]
    profiles = ("assignments", "dev")
    jobs = mutant_jobs()
    out(f"mutants: {len(MUTANTS)}, {len(jobs)} runs (property tasks face their target's), each on the hypothesis "
        f"profiles {', '.join(profiles)}")
    results = run_mutants(root, profiles=profiles, out=out, jobs=jobs)
    out(f"{'task':36} {'mutants':>7} " + " ".join(f"{'killed (' + p + ')':>20}" for p in profiles))
    for t in TASKS:
        mine = {name: r for (test_task, _, name), r in results.items() if test_task == t}
        out(f"{t:36} {len(mine):7d} " + " ".join(f"{sum(r[p] for r in mine.values()):20d}" for p in profiles))
        problems += [f"{t}: mutant {name!r} survives on the {p!r} profile" for name, r in mine.items()
                     for p in profiles if not r[p]]
    if oracle_tasks:  # what a student's own run of the task's tests catches: without the course's oracles
        jobs = [(m, m.task) for m in MUTANTS if m.task in oracle_tasks]
        out(f"without tests/oracles.py (a student's tree): {len(jobs)} mutants of {', '.join(sorted(oracle_tasks))}")
        without = run_mutants(root, profiles=profiles, out=out, jobs=jobs,
                              tree_setup=lambda tree: (tree / "tests" / "oracles.py").unlink())
        problems += [f"{t}: mutant {name!r} survives the tests a student has (only an oracle test kills it) on the "
                     f"{p!r} profile" for (t, _, name), r in without.items() for p in profiles if not r[p]]
    # the correct answers written another way: their task's tests and the property task's must all pass on each
    jobs = [(e, t.id) for e in EQUIVALENTS for t in TASK_LIST if t.id == e.task or t.target == e.task]
    out(f"equivalents (correct, written another way): {len(EQUIVALENTS)}, {len(jobs)} runs")
    said = lambda line: out(line.replace("SURVIVED", "passes").replace("killed", "FAILS"))  # noqa: E731 - correct code
    results = run_mutants(root, profiles=profiles, out=said, jobs=jobs)
    problems += [f"{test_task}: the correct variant {name!r} of {task} fails its tests on the {p!r} profile"
                 for (test_task, task, name), r in results.items() for p in profiles if r[p]]
    return problems


def check_isolation(root: Path, out, task_ids=()) -> list:
    """Each code task on its own: with only its regions stripped, its tests fail and every other task's pass,
    except those of the tasks that depend on it (``depends``, followed transitively). Proves the declared
    dependencies; one run of every task's tests per task (slow: ``check --isolation``)."""
    from .markers import strip_solutions
    from .mutants import copy_project
    from .tasks import dependents

    problems = []
    code_tasks = [t for t in TASK_LIST if not t.is_property and (not task_ids or t.id in task_ids)]
    props = {t.id for t in TASK_LIST if t.is_property}
    with tempfile.TemporaryDirectory(prefix="minift-isolation-") as tmp:
        tree = Path(tmp) / "tree"
        copy_project(root, tree)
        for task in code_tasks:
            files = sorted({r.path.relative_to(root) for r in all_regions(root) if r.task == task.id})
            originals = {f: (tree / f).read_text() for f in files}
            for f, text in originals.items():
                (tree / f).write_text(strip_solutions(text, tree / f, only=task.id))
            try:
                results = _run_task_tests(tree, Path(tmp) / f"{task.id}.jsonl")
            finally:
                for f, text in originals.items():
                    (tree / f).write_text(text)
            allowed = dependents(task.id) | {task.id}
            still_pass = [n for n, o in results.get(task.id, []) if o != "failed"]
            broken = sorted({t for t, runs in results.items() if t not in allowed and t not in props
                             and any(o != "passed" for _, o in runs)})
            out(f"  {task.id:36} its tests fail: {not still_pass}; other tasks broken: {', '.join(broken) or 'none'}")
            problems += [f"{task.id}: with only it stripped, {n} still passes" for n in still_pass]
            problems += [f"{task.id}: stripping it breaks the tests of {t}, which does not declare it in depends"
                         for t in broken]
    return problems
