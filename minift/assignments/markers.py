"""Find and strip solution regions.

A region in a Python file looks like

    # TASK lora.forward: the LoRA forward pass
    # BEGIN SOLUTION
    ...the solution...
    # END SOLUTION

Stripping replaces BEGIN..END (inclusive), at the BEGIN line's indentation, by
``raise NotImplementedError("TASK lora.forward: the LoRA forward pass")``; the TASK line stays as the
student's instruction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TASK_RE = re.compile(r"^(?P<indent>\s*)# TASK (?P<id>[A-Za-z0-9_.\-]+):\s*(?P<desc>.+?)\s*$")
BEGIN_RE = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
END_RE = re.compile(r"^\s*# END SOLUTION\s*$")


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


def find_regions(path: Path, text: str | None = None) -> list[Region]:
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


def strip_solutions(text: str, path: Path = Path("<text>")) -> str:
    """The student version of a file's text: each region replaced by a ``raise NotImplementedError``."""
    regions = find_regions(path, text)
    lines = text.splitlines(keepends=True)
    for r in reversed(regions):  # from the bottom, so earlier line numbers stay valid
        stub = f'{r.indent}raise NotImplementedError("TASK {r.task}: {r.description}")\n'
        lines[r.begin - 1 : r.end] = [stub]
    return "".join(lines)
