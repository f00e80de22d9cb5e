"""Build the student tree: the same project with every solution region stripped."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .markers import find_regions, strip_solutions

SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist", ".ipynb_checkpoints"}
SCANNED = ("minift", "tests", "benchmarks")  # where solution regions may live
# the course's alone, never in a student tree: each mutant quotes a line of the solution it breaks, and each
# oracle computes a task's answer another way (the tests that use one skip in a student tree; grading runs them)
COURSE_ONLY = ("minift/assignments/mutants.py", "tests/oracles.py")
ORACLE_SKIP_MARK = "tests/oracles.py"  # in the reason of a test skipped for want of an oracle (tests/conftest.py)


def is_course_tree(root: Path) -> bool:
    """Whether ``root`` is the course's own tree (solutions and mutants), not a student tree built from it."""
    return all((Path(root) / f).is_file() for f in COURSE_ONLY)


def project_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), or a plain walk outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout
        files = [root / f for f in out.splitlines() if (root / f).is_file()]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return [p for p in root.rglob("*") if p.is_file() and not (set(p.relative_to(root).parts) & SKIP_DIRS)]


def _scanned(rel: Path) -> bool:
    """Python files under SCANNED, except the marker tooling itself (its docstrings show the markers)."""
    return rel.suffix == ".py" and rel.parts[0] in SCANNED and rel.parts[:2] != ("minift", "assignments")


def all_regions(root: Path, strict: bool = True, package_only: bool = False):
    """Every task region of the tree (``strict=False``: a student's tree, where solved tasks have no markers;
    ``package_only``: only those in ``minift/``)."""
    root = Path(root).resolve()
    regions = []
    for p in project_files(root):
        rel = p.relative_to(root)
        if _scanned(rel) and (not package_only or rel.parts[0] == "minift"):
            regions.extend(find_regions(p, strict=strict))
    return regions


def build_student_tree(root: Path, out: Path) -> list:
    """Copy ``root`` to ``out`` with solutions stripped and without ``COURSE_ONLY`` files; returns the regions
    that were stripped."""
    root, out = Path(root).resolve(), Path(out).resolve()
    if out == root or root in out.parents and out.parts[len(root.parts)] in SCANNED:
        raise ValueError(f"the student tree must not be written inside the sources: {out}")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    from ..train.trainer import check_output_dir

    check_output_dir(out, "directory for the student tree", "--out")  # a file there, or no right to write
    stripped = []
    for src in project_files(root):
        rel = src.relative_to(root)
        if rel.as_posix() in COURSE_ONLY:
            continue
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _scanned(rel):
            text = src.read_text()
            regions = find_regions(src, text)
            stripped.extend(regions)
            dst.write_text(strip_solutions(text, src) if regions else text)
        else:
            shutil.copy2(src, dst)
    if (out / "lessons").is_dir() and (out / "minift").is_dir():
        # Jupyter puts the notebook's folder first on sys.path: with this link the lessons import this tree's
        # minift, never another one installed in the environment (the teacher's solution, say)
        (out / "lessons" / "minift").symlink_to(Path("..") / "minift", target_is_directory=True)
    return stripped
