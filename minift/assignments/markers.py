"""Find and strip solution regions.

A region in a Python file looks like

    # TASK lora.forward: the LoRA forward pass
    # BEGIN SOLUTION
    ...the solution...
    # END SOLUTION

Stripping replaces BEGIN..END (inclusive), at the BEGIN line's indentation, by
``raise NotImplementedError("TASK lora.forward: the LoRA forward pass")``; the TASK line stays as the
student's instruction. In a student tree, ``find_regions`` reads each TASK line followed by its stub as a
region too (``stub=True``), so listing and testing work there as well.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TASK_RE = re.compile(r"^(?P<indent>\s*)# TASK (?P<id>[A-Za-z0-9_.\-]+):\s*(?P<desc>.+?)\s*$")
BEGIN_RE = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
END_RE = re.compile(r"^\s*# END SOLUTION\s*$")
STUB_RE = re.compile(r'^(?P<indent>\s*)raise NotImplementedError\("TASK (?P<id>[A-Za-z0-9_.\-]+):')


class MarkerError(ValueError):
    """Markers that do not pair, nest, or lack a TASK line; the message names the file and line."""


@dataclass
class Region:
    path: Path
    task: str
    description: str
    task_line: int  # 1-based line numbers
    begin: int
    end: int
    indent: str
    stub: bool = False  # a student tree's ``raise NotImplementedError`` in place of the solution
    written: bool = False  # (lenient reading) a student's own code after the TASK line: no markers to bound it


def find_regions(path: Path, text: str | None = None, strict: bool = True) -> list[Region]:
    """The task regions of a file. ``strict=False`` (a student's tree) also accepts a TASK line followed by the
    student's own code: a ``written`` region of one line."""
    lines = (path.read_text() if text is None else text).splitlines()
    regions, open_begin, pending = [], None, None
    for n, line in enumerate(lines, start=1):
        if m := TASK_RE.match(line):
            if open_begin is not None:
                raise MarkerError(f"{path}:{n}: TASK line inside the solution region opened at line {open_begin[0]}")
            pending = (n, m["id"], m["desc"])
        elif m := BEGIN_RE.match(line):
            if open_begin is not None:
                raise MarkerError(f"{path}:{n}: BEGIN SOLUTION nested inside the region opened at line {open_begin[0]}")
            if pending is None or pending[0] != n - 1:
                raise MarkerError(f"{path}:{n}: BEGIN SOLUTION must directly follow a '# TASK id: description' line")
            open_begin = (n, m["indent"], pending)
            pending = None
        elif (m := STUB_RE.match(line)) and pending is not None and pending[0] == n - 1 and open_begin is None:
            if m["id"] != pending[1]:
                raise MarkerError(f"{path}:{n}: the stub names task {m['id']!r}, its TASK line {pending[1]!r}")
            regions.append(Region(path, pending[1], pending[2], pending[0], n, n, m["indent"], stub=True))
            pending = None
        elif pending is not None and pending[0] == n - 1 and not strict:
            regions.append(Region(path, pending[1], pending[2], pending[0], n, n, "", written=True))
            pending = None
        elif END_RE.match(line):
            if open_begin is None:
                raise MarkerError(f"{path}:{n}: END SOLUTION without a BEGIN SOLUTION")
            b, indent, (tn, tid, desc) = open_begin
            if b == n - 1:
                raise MarkerError(f"{path}:{n}: empty solution region for task {tid}")
            regions.append(Region(path, tid, desc, tn, b, n, indent))
            open_begin = None
    if open_begin is not None:
        raise MarkerError(f"{path}:{open_begin[0]}: BEGIN SOLUTION is never closed by END SOLUTION")
    if pending is not None:
        raise MarkerError(f"{path}:{pending[0]}: TASK line without a BEGIN SOLUTION after it")
    return regions


def strip_solutions(text: str, path: Path = Path("<text>"), only: str | None = None) -> str:
    """The student version of a file's text: each region (or only task ``only``'s) replaced by a
    ``raise NotImplementedError``."""
    regions = [r for r in find_regions(path, text) if only is None or r.task == only]
    lines = text.splitlines(keepends=True)
    for r in reversed([r for r in regions if not r.stub]):  # from the bottom, so earlier line numbers stay valid
        stub = f'{r.indent}raise NotImplementedError("TASK {r.task}: {r.description}")\n'
        lines[r.begin - 1 : r.end] = [stub]
    return "".join(lines)
