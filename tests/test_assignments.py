"""Coursework tooling: marker parsing, stripping, the student tree (the full check runs in `make test`)."""
import subprocess
import sys
from pathlib import Path

import pytest

from minift.assignments.build import all_regions, build_student_tree
from minift.assignments.markers import MarkerError, find_regions, strip_solutions
from minift.assignments.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]



def m(text):
    """Spell the markers out (written with placeholders so this file holds no real markers itself)."""
    return text.replace("@T", "# TASK").replace("@B", "# BEGIN SOLUTION").replace("@E", "# END SOLUTION")


GOOD = m('''def f(x):
    y = 1
    @T demo.f: double it
    @B
    y = 2 * x
    @E
    return y
''')


def test_strip_replaces_the_region_at_its_indentation():
    out = strip_solutions(GOOD)
    assert out == m('''def f(x):
    y = 1
    @T demo.f: double it
    raise NotImplementedError("TASK demo.f: double it")
    return y
''')
    ns = {}
    exec(compile(out, "<student>", "exec"), ns)
    with pytest.raises(NotImplementedError, match="TASK demo.f: double it"):
        ns["f"](3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("@B\nx = 1\n@E\n", "must directly follow"),
        ("@T a.b: t\n@B\nx = 1\n", "never closed"),
        ("x = 1\n@E\n", "without a BEGIN"),
        ("@T a.b: t\n@B\n@T c.d: u\n@B\n@E\n@E\n", "inside the solution region"),
        ("@T a.b: t\nx = 1\n", "without a BEGIN SOLUTION"),
        ("@T a.b: t\n@B\n@E\n", "empty solution region"),
    ],
)
def test_bad_markers_are_reported_with_file_and_line(text, message):
    with pytest.raises(MarkerError, match=message):
        find_regions(Path("lesson.py"), m(text))


def test_every_region_in_the_tree_names_a_known_task_and_every_task_has_a_region():
    regions = all_regions(ROOT)
    used = {r.task for r in regions}
    assert used == set(TASKS), f"unknown: {used - set(TASKS)}, unused: {set(TASKS) - used}"


def test_build_student_tree_strips_and_still_imports(tmp_path):
    out = tmp_path / "student"
    stripped = build_student_tree(ROOT, out)
    assert {r.task for r in stripped} == set(TASKS)
    text = (out / "minift/optim/adamw.py").read_text()
    assert 'raise NotImplementedError("TASK optim.adamw_step' in text and "param *= 1 - lr * weight_decay" not in text
    code = "import minift, minift.optim, minift.functional; print(minift.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=out, env={"PYTHONPATH": str(out), "PATH": ""},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(out))
    with pytest.raises(FileExistsError):
        build_student_tree(ROOT, out)
