"""Coursework tooling: marker parsing, stripping, the student tree (the full check runs in `make test`)."""
import subprocess
import sys
from pathlib import Path

import pytest

from minift.assignments.build import all_regions, build_student_tree
from minift.assignments.markers import MarkerError, find_regions, strip_solutions
from minift.assignments.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]

GOOD = '''def f(x):
    y = 1
    # TASK demo.f: double it
    # BEGIN SOLUTION
    y = 2 * x
    # END SOLUTION
    return y
'''


def test_strip_replaces_the_region_at_its_indentation():
    out = strip_solutions(GOOD)
    assert out == '''def f(x):
    y = 1
    # TASK demo.f: double it
    raise NotImplementedError("TASK demo.f: double it")
    return y
'''
    ns = {}
    exec(compile(out, "<student>", "exec"), ns)
    with pytest.raises(NotImplementedError, match="TASK demo.f: double it"):
        ns["f"](3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "must directly follow"),
        ("# TASK a.b: t\n# BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n# END SOLUTION\n", "without a BEGIN"),
        ("# TASK a.b: t\n# BEGIN SOLUTION\n# TASK c.d: u\n# BEGIN SOLUTION\n# END SOLUTION\n# END SOLUTION\n", "inside the solution region"),
        ("# TASK a.b: t\nx = 1\n", "without a BEGIN SOLUTION"),
        ("# TASK a.b: t\n# BEGIN SOLUTION\n# END SOLUTION\n", "empty solution region"),
    ],
)
def test_bad_markers_are_reported_with_file_and_line(text, message):
    with pytest.raises(MarkerError, match=message):
        find_regions(Path("lesson.py"), text)


def test_every_region_in_the_tree_names_a_known_task_and_every_task_has_a_region():
    regions = all_regions(ROOT)
    used = {r.task for r in regions}
    assert used == set(TASKS), f"unknown: {used - set(TASKS)}, unused: {set(TASKS) - used}"


def test_build_student_tree_strips_and_still_imports(tmp_path):
    out = tmp_path / "student"
    stripped = build_student_tree(ROOT, out)
    assert {r.task for r in stripped} == set(TASKS)
    text = (out / "minift/optim/adamw.py").read_text()
    assert 'raise NotImplementedError("TASK optim.adamw_step' in text and "adam_direction(st, lr" not in text.split("class Adam(")[0].split("def step")[1]
    code = "import minift, minift.optim, minift.functional; print(minift.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=out, env={"PYTHONPATH": str(out), "PATH": ""},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(out))
    with pytest.raises(FileExistsError):
        build_student_tree(ROOT, out)
