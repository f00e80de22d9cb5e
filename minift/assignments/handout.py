"""``HANDOUT.md`` for a student tree: every task with its points, where it is, what it needs, how to test it."""
from __future__ import annotations

import ast
from pathlib import Path

from .tasks import TASK_LIST


def enclosing_scope(path: Path, line: int):
    """(qualified name, docstring) of the innermost function or class around ``line``; the docstring is the
    nearest one going outwards (a ``backward`` without one gets its class's, where the formula is)."""
    tree = ast.parse(path.read_text())
    chain = []

    def visit(node, names):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    child.lineno <= line <= child.end_lineno:
                chain.append((".".join(names + [child.name]), ast.get_docstring(child)))
                visit(child, names + [child.name])

    visit(tree, [])
    if not chain:
        return "(module level)", ast.get_docstring(tree)
    name = chain[-1][0]
    doc = next((d for _, d in reversed(chain) if d), None)
    return name, doc


def referenced_docstrings(path: Path, doc: str) -> list[tuple[str, str]]:
    """The docstrings that ``doc`` sends the reader to, in its file: [(what, docstring)].

    A short docstring often points to the formula rather than repeat it: "(module docstring)", "the formulas
    of ``AdamW``", "see ``fisher_diagonal``". The handout follows such pointers, so that each task shows its
    formula: the module's docstring when ``doc`` names it, and that of each class or function of the same file
    that ``doc`` points to as "see ``name``" or "the formulas of ``name``" (unless the name is ambiguous there)."""
    import re

    tree = ast.parse(path.read_text())
    found = []
    if "module docstring" in doc and ast.get_docstring(tree):
        found.append((f"the module docstring of `{path.name}`", ast.get_docstring(tree)))
    defined = {}  # a name → the docstrings of the classes and functions of that name (several have a backward)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and ast.get_docstring(node):
            defined.setdefault(node.name, []).append(ast.get_docstring(node))
    for named in dict.fromkeys(re.findall(r"(?i:see|formulas of) ``(\w+)``", doc)):  # in order, each once
        docs = [d for d in defined.get(named, []) if d != doc]  # not the docstring already shown
        if len(docs) == 1:  # a name that means one thing in the file (else the pointer is ambiguous: skipped)
            found.append((f"`{named}`", docs[0]))
    return found


def _text_block(doc: str) -> str:
    return "  ```text\n" + "\n".join("  " + ln for ln in doc.splitlines()) + "\n  ```"


def handout(root: Path, regions) -> str:
    """The Markdown text of the handout for the tree at ``root`` (``regions``: its task regions)."""
    root = Path(root)
    total = sum(t.points for t in TASK_LIST)
    parts = [
        "# minift coursework\n",
        f"{len(TASK_LIST)} tasks, {total} points. Each task is a region of the library that reads",
        "`raise NotImplementedError(\"TASK <id>: …\")` in this tree: replace that line with your code. The",
        "formula is in the docstring shown with each task (and in the file, above the stub). Do the tasks a",
        "task depends on first: its tests run through their code. The `props.*` tasks are the other way round:",
        "you write tests (`tests/test_exercises.py`). Here they run against your own code. At grading they run",
        "against the course's correct code, a second correct version written differently, and several wrong",
        "versions (mutants); they must pass on both correct ones, and score by how many wrong ones they catch.",
        "A file of `minift/` that does not import when graded is graded as handed out, so every task written in",
        "it scores 0: hand in files that import.",
        "A few tests compare a task with the course's reference answers, which are not handed out: here they skip",
        "(their reason says so), and grading runs them with the rest.\n",
        "Set up once, in this directory (pip installs from the package index it is configured with; nothing else",
        "is downloaded):\n",
        "```bash",
        "make .venv/.dev                    # .venv with this tree's minift, pytest, hypothesis, Jupyter",
        "source .venv/bin/activate          # so that `minift` and `pytest` below are this tree's",
        "```\n",
        "Then, in this directory:\n",
        "```bash",
        "minift assignments list            # every task: to do, or written (its tests say if right), and where",
        "minift assignments test TASK_ID    # that task's tests: fast, the same examples every run",
        "pytest --task TASK_ID              # the same tests on pytest's default profile (25 examples, a failure",
        "                                   # shrunk to its smallest case), with its options (-x, -vv, --pdb …);",
        "                                   # grading uses the profile of the line above",
        "```\n",
        "`make test` runs every test and lesson of the library, so here it fails until every task is done: test",
        "one task at a time with the commands above.\n",
        "| task | points | file | depends on |",
        "|---|---|---|---|",
    ]
    for t in TASK_LIST:
        needs = ", ".join(f"`{d}`" for d in t.depends) or (f"tests `{t.target}`" if t.is_property else "—")
        parts.append(f"| `{t.id}` | {t.points} | `{t.file}` | {needs} |")
    parts.append("")
    for t in TASK_LIST:
        mine = [r for r in regions if r.task == t.id]
        parts.append(f"## `{t.id}` — {t.title} ({t.points} points)\n")
        for r in mine:
            rel = r.path.relative_to(root) if r.path.is_absolute() else r.path
            name, doc = enclosing_scope(r.path, r.task_line)
            parts.append(f"* **Where:** `{rel}`, line {r.task_line}, in `{name}`.")
            if doc:
                parts.append("* **The formula** (its docstring):\n")
                parts.append(_text_block(doc))
                for what, text in referenced_docstrings(r.path, doc):
                    parts.append(f"* **Which it refers to**, {what}:\n")
                    parts.append(_text_block(text))
        if t.depends:
            parts.append(f"* **Depends on:** {', '.join(f'`{d}`' for d in t.depends)}.")
        if t.is_property:
            from .mutants import mutants_of

            parts.append(f"* **Write tests, not code:** your hypothesis tests for `{t.target}` must pass on the correct "
                         f"code; they score by how many of {len(mutants_of(t.target))} wrong implementations of it "
                         "(the course's mutants) they catch.")
        parts.append(f"* **Test it:** `minift assignments test {t.id}`\n")
    return "\n".join(parts) + "\n"
