"""Every lesson notebook executes top to bottom (nbclient, MINIFT_FAST=1); none is committed with outputs."""
import json
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lessons():
    assert [p.name for p in LESSONS][:5] == ["00_autograd.ipynb", "01_optimizers.ipynb", "02_transformer.ipynb",
                                            "03_pretraining.ipynb", "04_real_weights.ipynb"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_code_lines_fit_120_characters(path):
    """The library's line length, so that a cell reads without scrolling sideways."""
    nb = json.loads(path.read_text())
    long = [(i, len(line)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            for line in "".join(c["source"]).split("\n") if len(line) > 120]
    assert not long, f"{path.name}: (cell, length) of the code lines over 120 characters: {long}"


@pytest.mark.lessons
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_executes(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MINIFT_FAST", "1")
    # the notebook backend, as in Jupyter: a figure a cell shows becomes an image in its outputs (with Agg,
    # plt.show() would draw nothing and a missing figure would go unnoticed)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, when any cell fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "every code cell ran, in order"
    showing = [i for i, c in enumerate(code, start=1) if "plt.show()" in c.source]
    blank = [i for i in showing if not any("image/png" in o.get("data", {}) for o in code[i - 1].get("outputs", []))]
    assert not blank, f"{path.name}: code cells {blank} call plt.show() but produced no image"


def test_every_lesson_ends_with_exercises_naming_coursework_tasks():
    import re

    from minift.assignments.tasks import TASKS

    named = set()
    for path in LESSONS:
        last = json.loads(path.read_text())["cells"][-1]
        text = "".join(last["source"])
        assert last["cell_type"] == "markdown" and text.startswith("## Exercises"), f"{path.name}: no exercises at the end"
        ids = set(re.findall(r"\*\*`([a-z0-9_.]+)`\*\*", text))
        assert ids and ids <= set(TASKS), f"{path.name}: unknown task ids {ids - set(TASKS)}"
        named |= ids
    assert named == set(TASKS), f"tasks no lesson hands out: {set(TASKS) - named}"
