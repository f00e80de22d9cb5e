"""Coursework tooling: marker parsing, stripping, the student tree (the full check runs in `make test`)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minift.assignments.build import all_regions, build_student_tree
from minift.assignments.grade import NOT_WRITTEN
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
    region = next(r for r in all_regions(ROOT) if r.task == "optim.adamw_step" and "decay" in r.description)
    solution = "".join(region.path.read_text().splitlines(keepends=True)[region.begin:region.end - 1])
    assert 'raise NotImplementedError("TASK optim.adamw_step' in text and solution.strip() not in text
    from minift.assignments.build import COURSE_ONLY, is_course_tree

    assert COURSE_ONLY and not any((out / f).exists() for f in COURSE_ONLY)  # the mutants quote the solutions
    assert is_course_tree(ROOT) and not is_course_tree(out)
    code = "import minift, minift.optim, minift.functional; print(minift.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=out, env={"PYTHONPATH": str(out), "PATH": ""},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(out))
    with pytest.raises(FileExistsError):
        build_student_tree(ROOT, out)


def test_a_student_tree_lists_its_stubs_as_regions_to_do():
    student = strip_solutions(GOOD)
    (region,) = find_regions(Path("student.py"), student)
    assert region.stub and region.task == "demo.f" and region.task_line == 3
    assert strip_solutions(student) == student  # stripping a student file again changes nothing
    with pytest.raises(MarkerError, match="the stub names task 'other.g'"):
        find_regions(Path("x.py"), m('@T demo.f: d\nraise NotImplementedError("TASK other.g: d")\n'))


def test_the_registry_is_consistent():
    from minift.assignments.tasks import TASK_BY_ID, TASK_LIST, dependents

    assert len(TASK_BY_ID) == len(TASK_LIST) and all(t.points > 0 for t in TASK_LIST)
    order = [t.id for t in TASK_LIST]
    for t in TASK_LIST:  # dependencies are known and listed earlier (a course hands them out first)
        assert all(d in TASK_BY_ID and order.index(d) < order.index(t.id) for d in t.depends), t.id
        assert (ROOT / t.file).is_file(), t.file
    assert dependents("gradcheck.central_difference") >= {"autograd.unbroadcast", "ops.matmul_backward", "peft.lora_merge"}
    assert dependents("peft.lora_merge") == set()


@pytest.fixture(scope="module")
def student_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("course") / "student"
    assert subprocess.run([sys.executable, "-m", "minift.cli", "assignments", "build", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True).returncode == 0
    return out


def test_build_writes_a_handout_naming_every_task_with_its_points_formula_and_command(student_tree):
    from minift.assignments.tasks import TASK_LIST

    text = (student_tree / "HANDOUT.md").read_text()
    for t in TASK_LIST:
        assert f"## `{t.id}` — {t.title} ({t.points} points)" in text
        assert f"minift assignments test {t.id}" in text
    assert "in `Tanh.backward`" in text and "∂y/∂a = 1 − y²" in text  # where, and the formula from the docstring
    assert f"{sum(t.points for t in TASK_LIST)} points" in text
    assert "make .venv/.dev" in text and (student_tree / "Makefile").is_file()  # how a student sets up
    assert "x = d · q + m" in text and "**high** 4 bits" in text  # the quant tasks' formulas, from docstrings


def test_the_handout_follows_a_docstring_that_points_elsewhere_to_the_formula(student_tree):
    """A task's own docstring may only point to its formula ("the module docstring", "see ``fisher_diagonal``"):
    the task's section of HANDOUT.md shows the docstring pointed to as well."""
    import re

    text = (student_tree / "HANDOUT.md").read_text()
    sections = dict(re.findall(r"^## `([\w.]+)` — .*?\n(.*?)(?=^## `|\Z)", text, flags=re.M | re.S))
    formulas = {  # a line of the formula each short docstring points to, and where it lives
        "attention.backward": "∂L/∂S = P ⊙ (∂L/∂P − rowsum(∂L/∂P ⊙ P))",  # ops_attention.py's module docstring
        "optim.adamw_step": "θ ← θ − ηλθ",  # AdamW's class docstring
        "train.llrd": "embeddings at depth 0",  # strategies.py's module docstring
        "continual.fisher_example": "F_i = (1/N) Σ_n E_{y ~ q_n}",  # fisher_diagonal's docstring
        "peft.ia3_forward": "y = (xWᵀ + b) ⊙ l",  # ia3.py's module docstring
        "peft.prefix_kv": "(L·2, H_kv, n, D)",  # prefix.py's module docstring
        "rlhf.grpo_loss": "Σ_it m_it ℓ_it / (B · L_max)",  # grpo.py's module docstring
        "fused.layer_norm_backward": "(ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))",  # LayerNorm's class docstring
    }
    for task, line in formulas.items():
        assert line in sections[task] and "**Which it refers to**" in sections[task], task
    for task, section in sections.items():  # and nothing points nowhere (a looser pattern than the handout's)
        own = section.split("* **Which it refers to**")[0]
        if re.search(r"module docstring|(see|formulas? of|in) ``[\w.]+``", own, flags=re.I):
            assert "**Which it refers to**" in section, task


def test_a_pointer_to_a_docstring_is_followed_once_and_never_to_the_one_shown(tmp_path):
    from minift.assignments.handout import referenced_docstrings

    source = tmp_path / "m.py"
    source.write_text('''"""The module: y = 2x."""
class Foo:
    """Foo: z = 3y."""
    def f(self):
        """f: See ``Foo``, then see ``g``; the module docstring too, and see ``Foo`` again."""
class A:
    def backward(self):
        """A's."""
class B:
    def backward(self):
        """B's."""
def g():
    """g: w = 4z; see ``backward`` (ambiguous) and see ``g`` (this one)."""
''')
    f_doc = "f: See ``Foo``, then see ``g``; the module docstring too, and see ``Foo`` again."
    assert referenced_docstrings(source, f_doc) == [("the module docstring of `m.py`", "The module: y = 2x."),
                                                    ("`Foo`", "Foo: z = 3y."), ("`g`", "g: w = 4z; see ``backward`` "
                                                                               "(ambiguous) and see ``g`` (this one).")]
    assert referenced_docstrings(source, "g: w = 4z; see ``backward`` (ambiguous) and see ``g`` (this one).") == []


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_the_student_trees_makefile_runs_its_tests_and_not_the_courses_check(student_tree):
    """In the course's tree `make test` ends with `assignments check`; a student tree has no solutions or mutants
    to check, so there it is pytest alone, and `make check-assignments` says what to run instead."""
    def make(target, cwd):
        return subprocess.run(["make", "-n", target], cwd=cwd, capture_output=True, text=True)

    assert "assignments check --no-mutants" in make("test", ROOT).stdout
    student_test = make("test", student_tree)
    assert student_test.returncode == 0 and "-m pytest" in student_test.stdout
    assert "assignments check" not in student_test.stdout
    check = subprocess.run(["make", "check-assignments"], cwd=student_tree, capture_output=True, text=True)
    assert check.returncode != 0 and "this is a student tree" in check.stderr and "HANDOUT.md" in check.stderr
    assert not (student_tree / ".venv").exists()  # it set nothing up on the way


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "minift.cli", "assignments", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(cwd)}, capture_output=True, text=True)


def test_list_and_test_work_inside_the_student_tree(student_tree):
    listing = _cli(["list"], student_tree)
    assert listing.returncode == 0, listing.stderr
    assert "train.llrd" in listing.stdout and "to do" in listing.stdout and "solution present" not in listing.stdout
    run = _cli(["test", "train.llrd"], student_tree)
    assert run.returncode == 1 and "1 failed" in run.stdout and "NotImplementedError" in run.stdout
    assert "TASK train.llrd" in run.stdout  # the failure names the task to do
    strategies = student_tree / "minift" / "train" / "strategies.py"
    original = strategies.read_text()
    strategies.write_text(original.replace('raise NotImplementedError("TASK train.llrd', 'group_lr = 0 * ("my try'))
    try:  # the student's own code after the TASK line: no markers any more, and list still reads the tree
        written = _cli(["list"], student_tree)
        assert written.returncode == 0, written.stderr
        assert next(line for line in written.stdout.splitlines() if line.startswith("train.llrd")).split()[3] == "written"
    finally:
        strategies.write_text(original)
    text = original.replace("    # TASK train.llrd:", "    # (a student deleted the TASK line)")
    strategies.write_text(text)
    try:  # not "solution present": a student tree holds none
        gone = _cli(["list"], student_tree)
        assert gone.returncode == 0, gone.stderr
        lines = gone.stdout.splitlines()
        row = lines.index(next(line for line in lines if line.startswith("train.llrd ")))
        assert lines[row].split()[3:6] == ["no", "TASK", "line"], lines[row]
        assert "its # TASK line is gone from minift/train/strategies.py" in lines[row + 1]
    finally:
        strategies.write_text(original)
    from minift.assignments.tasks import TASK_LIST

    titles = [line.index(t.title) for line in _cli(["list"], ROOT).stdout.splitlines()[::2] for t in TASK_LIST
              if line.startswith(t.id + " ")]
    assert len(titles) == len(TASK_LIST) and len(set(titles)) == 1  # the columns line up, the longest id included
    for action in (["grade", "."], ["check", "--no-mutants"]):  # a student grading their own tree, own tests
        refused = _cli(action, student_tree)
        assert refused.returncode == 2 and "is a student tree" in refused.stderr, refused.stderr
    here = _cli(["test", "train.llrd"], ROOT)
    assert here.returncode == 0 and "1 passed" in here.stdout
    bad = _cli(["test", "train.lrd"], ROOT)
    assert bad.returncode != 0 and "unknown task 'train.lrd'" in bad.stderr and "Traceback" not in bad.stderr


def test_tests_that_need_the_courses_oracle_skip_in_the_student_tree_and_say_why(student_tree):
    """tests/oracles.py (a task's answer computed another way) is the course's: its tests skip for the student."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--task",
                          "quant.dequantize_nf4", "tests/test_qlora.py"], cwd=student_tree,
                         env={**os.environ, "PYTHONPATH": str(student_tree)}, capture_output=True, text=True)
    assert "1 failed, 1 skipped" in run.stdout, run.stdout[-800:]
    assert "course's reference answer (tests/oracles.py)" in run.stdout and "grade` runs this test" in run.stdout
    here = _cli(["test", "quant.dequantize_nf4"], ROOT)
    assert here.returncode == 0 and "2 passed" in here.stdout  # the course's tree runs both


def test_bad_paths_are_refused_before_any_work(tmp_path):
    from minift.cli import main

    assert main(["assignments", "check", "--root", str(tmp_path / "nowhere")]) == 2  # not a minift tree
    (tmp_path / "file").write_text("x")
    assert main(["assignments", "build", "--root", str(ROOT), "--out", str(tmp_path / "file")]) == 2
    for flag, path in (("--json", tmp_path), ("--json", tmp_path / "no" / "g.json"), ("--markdown", tmp_path)):
        t0 = time.time()
        assert main(["assignments", "grade", str(tmp_path), "--root", str(ROOT), flag, str(path)]) == 2
        assert time.time() - t0 < 5  # refused before grading, which runs the course's tests
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # and nothing left behind
    (tmp_path / "mine.csv").write_text("name,grade\nann,A\n")  # the teacher's own sheet is never replaced
    for args, says in ((["--csv", str(tmp_path / "mine.csv")], "is not a gradebook this command wrote"),
                       (["--task", "train.lrd"], "did you mean 'train.llrd'?"),
                       ([str(ROOT)], "is given more than once")):
        res = _cli(["grade", str(ROOT), *args, "--root", str(ROOT)], ROOT)
        assert res.returncode == 2 and says in res.stderr and "grading" not in res.stderr, res.stderr
    assert (tmp_path / "mine.csv").read_text() == "name,grade\nann,A\n"


def test_pytest_selects_a_tasks_tests_by_id_with_task_or_k(student_tree):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYPOTHESIS_PROFILE": "assignments"}
    for selection in (["--task", "ops.matmul_backward"], ["-k", "matmul_backward"]):
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                              *selection, "tests/test_ops.py"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert res.returncode == 0 and "matmul" in res.stdout, res.stdout[-500:]
        assert "test_autograd" not in res.stdout


def _solve(student, task_id, body_from=None):
    """Put back the solution of ``task_id`` in the student tree (or ``body_from``: a wrong one), as a student would."""
    from minift.assignments.markers import find_regions as regions_of

    for r in [r for r in all_regions(ROOT) if r.task == task_id]:
        rel = r.path.relative_to(ROOT)
        solution = r.path.read_text().splitlines(keepends=True)[r.begin:r.end - 1]
        if body_from is not None:
            solution = [body_from(line) for line in solution]
        target = student / rel
        lines = target.read_text().splitlines(keepends=True)
        (stub,) = [s for s in regions_of(target) if s.task == task_id and s.task_line == r.task_line - _shift(r, ROOT)]
        lines[stub.begin - 1:stub.end] = solution
        target.write_text("".join(lines))


def _shift(region, root):
    """How many lines earlier a region's TASK line sits in the student file (earlier regions shrank)."""
    earlier = [r for r in all_regions(root) if r.path == region.path and r.task_line < region.task_line]
    return sum(r.end - r.begin for r in earlier)


def test_grade_scores_correct_stubbed_and_wrong_tasks(tmp_path, student_tree):
    import json
    import shutil

    student = tmp_path / "alice"
    shutil.copytree(student_tree, student)
    _solve(student, "train.llrd")  # correct
    _solve(student, "peft.lora_merge", body_from=lambda line: line.replace("(B @ A)", "(B @ A) * 2"))  # wrong: scaled twice
    report_json, report_md = tmp_path / "alice.json", tmp_path / "alice.md"
    res = _cli(["grade", str(student), "--task", "train.llrd", "--task", "peft.lora_merge", "--task", "qa.best_span",
                "--json", str(report_json), "--markdown", str(report_md)], ROOT)
    assert res.returncode == 0, res.stderr
    report = json.loads(report_json.read_text())
    scores = {t["task"]: t for t in report["tasks"]}
    assert scores["train.llrd"]["score"] == 5 and scores["train.llrd"]["first_failure"] is None
    assert scores["peft.lora_merge"]["score"] == 0
    assert "NotImplementedError" not in scores["peft.lora_merge"]["first_failure"]["message"]  # ran, and was wrong
    assert scores["qa.best_span"]["score"] == 0 and scores["qa.best_span"]["first_failure"]["message"] == NOT_WRITTEN
    assert report["score"] == 5 and report["points"] == 5 + 5 + 10
    assert "# Coursework report: 5 / 20 points" in report_md.read_text() and "`train.llrd` | 1 / 1" in res.stdout


@pytest.mark.parametrize("points, part, whole, expected", [(5, 1, 4, 1.25), (5, 1, 40, 0.13), (10, 2, 3, 6.67),
                                                          (10, 1, 3, 3.33), (15, 0, 7, 0), (5, 4, 4, 5)])
def test_a_task_scores_points_times_its_share_to_two_decimals_halves_up(points, part, whole, expected):
    from minift.assignments.grade import task_score

    assert task_score(points, part, whole) == expected
    assert task_score(2.5, 1, 2) == 1.25  # points need not be whole
    assert abs(task_score(points, part, whole) - points * part / whole) <= 0.005 + 1e-12


def test_a_stub_failure_says_not_written_or_how_much_is_still_the_stub():
    from minift.assignments.grade import not_written

    stub = 'NotImplementedError: TASK peft.x: do it'
    other = "AssertionError: 2 != 3"
    assert not_written("peft.x", stub, [("a", "failed", stub), ("b", "failed", stub)]) == NOT_WRITTEN
    assert not_written("peft.x", stub, [("a", "failed", stub), ("b", "passed", ""), ("c", "failed", other)]) == (
        "partly written: 1 of its 3 tests still stop in the handout's stub (raise NotImplementedError)")
    assert not_written("peft.x", other, [("a", "failed", other)]) == other
    waits = 'NotImplementedError: TASK peft.y: the other one'  # another task's stub is not this one's
    assert not_written("peft.x", waits, [("a", "failed", waits)]) == waits


def test_the_graders_temporary_path_is_taken_out_resolved_or_not_even_when_one_holds_the_other(tmp_path):
    """On macOS /var/… is a link to /private/var/…: the unresolved path is part of the resolved one, so the longer
    must go first, or "/private" is left glued to the relative name."""
    import uuid

    from minift.assignments.grade import _relative

    link = Path(f"/tmp/minift-relative-{uuid.uuid4().hex}")  # an absolute path that the resolved one contains
    real = tmp_path / "private" / str(link).lstrip("/")
    real.mkdir(parents=True)
    link.symlink_to(real, target_is_directory=True)
    try:
        assert str(link) in str(link.resolve()) and link.resolve() != link
        text = f"{link.resolve()}/tests/test_exercises.py:3: SyntaxError; then {link}/minift/qa.py"
        # (a set of the two would be walked in an order set by the process's hash seed: longer first, always)
        assert _relative(text, link) == "tests/test_exercises.py:3: SyntaxError; then minift/qa.py"
    finally:
        link.unlink()


def test_an_unwritten_property_task_says_so_and_a_broken_test_file_is_named_as_handed_in(tmp_path, student_tree):
    """A ``props.*`` task still the stub is "not written yet", not a test that fails on the correct code; a test
    file that does not parse is reported with its own path, not the grader's temporary one."""
    import json
    import shutil

    student = tmp_path / "erin"
    shutil.copytree(student_tree, student)
    res = _cli(["grade", str(student), "--task", "props.ewc_penalty", "--json", str(tmp_path / "erin.json")], ROOT)
    assert res.returncode == 0, res.stderr
    (entry,) = json.loads((tmp_path / "erin.json").read_text())["tasks"]
    assert entry["score"] == 0 and entry["first_failure"]["message"] == NOT_WRITTEN
    assert set(entry) >= {"task", "title", "points", "score", "passed", "tests", "skipped", "waits_on", "first_failure"}
    exercises = student / "tests" / "test_exercises.py"
    exercises.write_text(exercises.read_text() + "\ndef broken(:\n")
    res = _cli(["grade", str(student), "--task", "props.ewc_penalty", "--json", str(tmp_path / "erin.json")], ROOT)
    assert res.returncode == 0, res.stderr
    (entry,) = json.loads((tmp_path / "erin.json").read_text())["tasks"]
    message = entry["first_failure"]["message"]
    assert entry["score"] == 0 and "SyntaxError" in message and "tests/test_exercises.py" in message, message
    assert "minift-grade" not in message and "/tmp" not in message, message


def test_grade_a_class_writes_a_gradebook_row_per_student(tmp_path, student_tree):
    import csv
    import json
    import shutil

    done, blank = tmp_path / "class" / "dan", tmp_path / "class" / "eve"
    shutil.copytree(student_tree, done)
    shutil.copytree(student_tree, blank)
    _solve(done, "train.llrd")
    book, page, reports = tmp_path / "grades.csv", tmp_path / "class.md", tmp_path / "class.json"
    res = _cli(["grade", str(done), str(blank), "--task", "train.llrd", "--csv", str(book), "--markdown", str(page),
                "--json", str(reports), "--reports", str(tmp_path / "back")], ROOT)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["dan.json", "dan.md", "eve.json", "eve.md"]
    assert "# Coursework report: 0 / 5 points" in (tmp_path / "back" / "eve.md").read_text()  # one to hand back
    rows = list(csv.DictReader(book.open()))
    assert [(r["student"], r["score"], r["points"], r["train.llrd"]) for r in rows] == [("dan", "5", "5", "5"),
                                                                                       ("eve", "0", "5", "0")]
    assert [r["score"] for r in json.loads(reports.read_text())] == [5, 0]
    assert "| dan | 5 / 5 | 5 |" in res.stdout and "## eve: 0 / 5 points" in page.read_text()
    refused = _cli(["grade", str(done), str(tmp_path / "nobody"), "--task", "train.llrd"], ROOT)
    assert refused.returncode == 2 and "nobody does not exist" in refused.stderr and "dan:" not in refused.stderr
    (tmp_path / "other").mkdir()
    shutil.copytree(student_tree, tmp_path / "other" / "dan")
    same = _cli(["grade", str(done), str(tmp_path / "other" / "dan"), "--reports", str(tmp_path / "r2")], ROOT)
    assert same.returncode == 2 and "dan is the name of more than one" in same.stderr


def test_grading_the_course_tree_itself_warns_and_gives_the_solutions_score():
    res = _cli(["grade", str(ROOT), "--task", "train.llrd"], ROOT)
    assert res.returncode == 0, res.stderr
    assert "is the course's own tree" in res.stderr and "its score is the solution's" in res.stderr
    assert "# Coursework report: 5 / 5 points" in res.stdout


def _write_stub(student, task_id, code):
    """Replace the first stub of ``task_id`` in the student tree by ``code`` at its indentation."""
    for path in sorted((student / "minift").rglob("*.py")):
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            if f'NotImplementedError("TASK {task_id}:' in line:
                lines[i] = line[:len(line) - len(line.lstrip())] + code + "\n"
                path.write_text("".join(lines))
                return
    raise AssertionError(f"no stub of {task_id}")


def test_grade_survives_a_crash_an_endless_loop_a_syntax_error_and_a_doctored_plugin(tmp_path, student_tree):
    """What a class of real students hands in: each fault costs the tests it hits, never the report."""
    import json
    import shutil

    student = tmp_path / "carol"
    shutil.copytree(student_tree, student)
    _solve(student, "train.llrd")  # correct
    _write_stub(student, "train.count_targets", "import os; os._exit(3)")  # ends pytest's process
    _write_stub(student, "continual.backward_transfer", "while True: pass")  # never returns
    (student / "tests" / "test_exercises.py").unlink()  # handed in minift/ only
    plugin = student / "minift" / "assignments" / "pytest_plugin.py"  # a report that says everything passed
    plugin.write_text(plugin.read_text().replace('"outcome": report.outcome', '"outcome": "passed"'))
    tasks = ["train.llrd", "train.count_targets", "continual.backward_transfer", "props.unbroadcast"]
    out = tmp_path / "carol.json"
    res = _cli(["grade", str(student), *(a for t in tasks for a in ("--task", t)), "--time-limit", "2",
                "--json", str(out)], ROOT)
    assert res.returncode == 0, res.stderr
    scores = {t["task"]: t for t in json.loads(out.read_text())["tasks"]}
    assert scores["train.llrd"]["score"] == 5 and scores["train.llrd"]["first_failure"] is None
    crash = scores["train.count_targets"]
    assert crash["score"] == 0 and crash["tests"] == 1 and "exit status 3" in crash["first_failure"]["message"]
    loop = scores["continual.backward_transfer"]
    assert loop["score"] == 0 and loop["tests"] == 2 and "time limit of 2 s" in loop["first_failure"]["message"]
    assert scores["props.unbroadcast"]["score"] == 0
    assert "has no tests/test_exercises.py" in scores["props.unbroadcast"]["first_failure"]["message"]



def test_a_file_that_does_not_import_costs_its_own_tasks_not_the_whole_package(tmp_path, student_tree):
    """A SyntaxError, an import of a missing module, a deleted file: each is put back as handed out, so the tasks
    written in it score 0 with the reason and the others are graded on the student's code."""
    import json
    import shutil

    student = tmp_path / "dave"
    shutil.copytree(student_tree, student)
    for task in ("train.llrd", "quant.dequantize_q4_1", "qa.best_span"):
        _solve(student, task)
    strategies = student / "minift" / "train" / "strategies.py"
    strategies.write_text(strategies.read_text() + "\ndef broken(:\n")  # a SyntaxError at its last line
    last_line = len(strategies.read_text().splitlines())
    qa = student / "minift" / "data" / "qa.py"
    qa.write_text(qa.read_text() + "\nimport no_such_module_anywhere\n")
    (student / "minift" / "metrics.py").unlink()  # no task lives here: put back, and nothing is lost
    adamw = student / "minift" / "optim" / "adamw.py"  # a solution that calls a test's helper
    adamw.write_text(adamw.read_text() + "\nfrom tests.oracles import adam_reference  # noqa\n")
    (student / "minift" / "my_helpers.py").write_text("def half(x:\n")  # a file of the student's own, broken
    plotting = student / "minift" / "plotting.py"
    plotting.write_text(plotting.read_text() + "\nwhile True:\n    pass\n")  # never finishes importing
    tasks = ["train.llrd", "qa.best_span", "quant.dequantize_q4_1"]
    out, page = tmp_path / "dave.json", tmp_path / "dave.md"
    res = _cli(["grade", str(student), *(a for t in tasks for a in ("--task", t)), "--json", str(out),
                "--markdown", str(page), "--time-limit", "5"], ROOT)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    scores = {t["task"]: t for t in report["tasks"]}
    assert scores["quant.dequantize_q4_1"]["score"] == 5 and scores["quant.dequantize_q4_1"]["first_failure"] is None
    llrd, span = scores["train.llrd"], scores["qa.best_span"]
    assert llrd["score"] == 0 and llrd["passed"] == 0 and llrd["first_failure"]["test"] == "minift/train/strategies.py"
    assert f"SyntaxError: invalid syntax, line {last_line}" in llrd["first_failure"]["message"]
    assert "graded as handed out (it does not import" in llrd["first_failure"]["message"]
    assert span["score"] == 0 and "No module named 'no_such_module_anywhere'" in span["first_failure"]["message"]
    restored = {r["file"]: r["error"] for r in report["restored"]}
    assert sorted(restored) == ["minift/data/qa.py", "minift/metrics.py", "minift/my_helpers.py",
                                "minift/optim/adamw.py", "minift/plotting.py", "minift/train/strategies.py"]
    assert "it imports the course's tests (from tests.oracles import" in restored["minift/optim/adamw.py"]
    assert "still running after 5 s" in restored["minift/plotting.py"]
    assert all("minift-grade-" not in r["error"] for r in report["restored"])  # no grader temp path
    text = page.read_text()
    assert "`minift/data/qa.py` was replaced by the handout's version of it (it does not import: Module" in text
    assert "`minift/metrics.py` was replaced by the handout's version of it (the hand-in has no such file)" in text
    assert "`minift/my_helpers.py` is not in the handout and was left out (it does not import: SyntaxError" in text
    assert qa.read_text().endswith("import no_such_module_anywhere\n")  # the hand-in itself is untouched
    assert report["score"] == 5


def test_a_test_run_that_cannot_start_says_why_with_paths_inside_the_tree(tmp_path, student_tree):
    """What grade reports at every task when pytest itself stops (restoring files is grade's step, not this)."""
    import shutil

    from minift.assignments.grade import TestsDidNotStart, run_task_tests

    tree = tmp_path / "tree"
    for part in ("minift", "tests", "pyproject.toml"):
        (shutil.copytree if (student_tree / part).is_dir() else shutil.copy2)(student_tree / part, tree / part)
    strategies = tree / "minift" / "train" / "strategies.py"
    strategies.write_text(strategies.read_text() + "\ndef broken(:\n")
    with pytest.raises(TestsDidNotStart) as stopped:
        run_task_tests(tree, tmp_path / "report.jsonl", ["train.llrd"])
    message = str(stopped.value)
    assert "SyntaxError" in message and "minift/train/strategies.py" in message and str(tmp_path) not in message


def test_every_task_has_three_mutants_whose_edits_apply_to_its_solution():
    from minift.assignments.mutants import MUTANTS, mutants_of
    from minift.assignments.tasks import TASK_BY_ID, TASK_LIST

    regions = all_regions(ROOT)
    for task in TASKS:
        if TASK_BY_ID[task].is_property:  # scored by the mutants of the code it tests
            assert len(mutants_of(TASK_BY_ID[task].target)) >= 3, task
            continue
        assert len(mutants_of(task)) >= 3, task
        bodies = "".join("".join(r.path.read_text().splitlines(keepends=True)[r.begin:r.end - 1])
                         for r in regions if r.task == task)
        for mutant in mutants_of(task):
            for old, new in mutant.edits:
                assert old in bodies and old != new, (task, mutant.name, old)
    assert len({(m.task, m.name) for m in MUTANTS}) == len(MUTANTS)  # names are unique within a task
    from minift.assignments.mutants import EQUIVALENTS, REGION

    for t in TASK_LIST:  # each property task's target has a correct answer written another way
        if t.is_property:
            assert any(e.task == t.target for e in EQUIVALENTS), t.id
    for e in EQUIVALENTS:  # each rewrites its task's one region, into different text
        (region,) = [r for r in regions if r.task == e.task]
        body = "".join(region.path.read_text().splitlines(keepends=True)[region.begin:region.end - 1])
        assert [old for old, _ in e.edits] == [REGION] and e.edits[0][1] != body and e.edits[0][1].endswith("\n")
    names = [(m.task, m.name) for m in MUTANTS + EQUIVALENTS]
    assert len(set(names)) == len(names)  # grading keys results by name


def test_a_mutant_edits_only_its_region_and_the_tests_kill_it(tmp_path):
    import shutil

    from minift.assignments.mutants import Mutant, apply_mutant, mutants_of, run_mutants, task_test_files

    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "minift", tree / "minift", ignore=shutil.ignore_patterns("__pycache__"))
    before = (tree / "minift/train/strategies.py").read_text()
    mutant = next(m for m in mutants_of("train.llrd") if len(m.edits) == 1)  # (no solution text in this file:
    apply_mutant(tree, mutant)                                                  # students have it)
    after = (tree / "minift/train/strategies.py").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 1 and mutant.edits[0][1] in changed[0][1] and mutant.edits[0][0] in changed[0][0]
    with pytest.raises(ValueError, match="is not in the task's solution"):
        apply_mutant(tree, Mutant("train.llrd", "bad", (("no such text", "x"),), "nothing"))
    assert task_test_files(ROOT, "ops.matmul_backward")[-1] == "tests/test_ops.py"  # via the op specs
    lines = []
    results = run_mutants(ROOT, ["train.llrd"], profiles=("assignments",), out=lines.append)
    assert results and all(r["assignments"] for r in results.values()) and len(lines) == len(results)


def test_lessons_in_the_student_tree_import_the_student_code(student_tree):
    code = "import minift; print(minift.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=student_tree / "lessons", capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(student_tree / "lessons" / "minift"))  # not the installed solution


def test_grading_property_tasks_scores_the_mutants_a_students_tests_kill(tmp_path, student_tree):
    import json
    import shutil

    student = tmp_path / "bob"
    shutil.copytree(student_tree, student)
    exercises = student / "tests" / "test_exercises.py"
    text = exercises.read_text()
    weak = ("    x = data.draw(float_arrays(small, noncontiguous=False))\n"
            "    g = data.draw(float_arrays(big, noncontiguous=False))\n"
            "    assert unbroadcast(g, small).shape == small  # only the shape: weak\n")
    wrong = "    assert False, 'a property that is not true'\n"
    reference = "".join((ROOT / "tests" / "test_exercises.py").read_text().split("# BEGIN SOLUTION\n")[2]
                        .split("    # END SOLUTION")[0])  # the softmax one, copied as a student might
    from minift.assignments.mutants import mutants_of

    quoted = [old for m in mutants_of("ops.matmul_backward") for old, _ in m.edits]  # (not written in this file:
    reads_source = ("    import inspect\n    from minift.autograd.ops_linalg import MatMul\n" +  # students have it)
                    "".join(f"    assert {q!r} in inspect.getsource(MatMul)\n" for q in quoted))  # kills every mutant
    for task, body in (("props.unbroadcast", weak), ("props.lora_merge", wrong), ("props.softmax_backward", reference),
                       ("props.matmul_backward", reads_source)):
        stub = next(line for line in text.splitlines(keepends=True) if f'NotImplementedError("TASK {task}:' in line)
        text = text.replace(stub, body)
    exercises.write_text(text)
    out = tmp_path / "bob.json"
    res = _cli(["grade", str(student), "--task", "props.unbroadcast", "--task", "props.lora_merge",
                "--task", "props.softmax_backward", "--task", "props.matmul_backward", "--json", str(out)], ROOT)
    assert res.returncode == 0, res.stderr
    scores = {t["task"]: t for t in json.loads(out.read_text())["tasks"]}
    assert scores["props.softmax_backward"]["score"] == 5 and scores["props.softmax_backward"]["mutants_killed"] == "3 / 3"
    assert scores["props.lora_merge"]["score"] == 0
    assert "fails on the correct implementation" in scores["props.lora_merge"]["first_failure"]["message"]
    weak_score = scores["props.unbroadcast"]
    assert 0 < weak_score["score"] < 5 and "mean_not_sum" in weak_score["first_failure"]["message"]  # partly
    gamed = scores["props.matmul_backward"]  # passes on the solution, kills every (textual) mutant: no points
    assert gamed["score"] == 0 and "written another way (transposes_first)" in gamed["first_failure"]["message"]


def test_isolation_strips_one_task_and_finds_what_its_tests_break():
    from minift.assignments.check import check_isolation

    lines = []
    problems = check_isolation(ROOT, lines.append, task_ids=["train.count_targets"])
    assert problems == [] and len(lines) == 1
    assert "its tests fail: True" in lines[0]  # and nothing but its declared dependent (accumulation) broke


def test_the_task_markers_the_readme_quotes_are_the_sources_own():
    """README shows a marked region as an example: each ``# TASK id: …`` line it quotes is in the source as written."""
    import re

    quoted = re.findall(r"^\s*(# TASK [\w.]+: .*)$", (ROOT / "README.md").read_text(), flags=re.M)
    assert quoted, "README quotes no task marker"
    sources = "\n".join(p.read_text() for p in (ROOT / "minift").rglob("*.py"))
    for line in quoted:
        assert line in sources, line


def test_the_imports_of_tests_grading_looks_for():
    """Each way of naming the course's tests package in the source, and what is not one."""
    from minift.assignments.grade import _imports_tests

    for text, found in [("import tests.oracles", "import tests.oracles"),
                        ("from tests.oracles import adam_reference as ref", "from tests.oracles import adam_reference as ref"),
                        ("import importlib\nm = importlib.import_module('tests.oracles')", "importlib.import_module('tests.oracles')"),
                        ("from importlib import import_module\nimport_module('tests')", "import_module('tests')"),
                        ("t = __import__('tests.test_optim')", "__import__('tests.test_optim')")]:
        assert _imports_tests(text) == found
    for text in ("import testscore", "from .tests import x", "x = 'tests.oracles'", "import_module(name)",
                 "import_module('numpy')", "def f(:"):
        assert _imports_tests(text) is None, text
