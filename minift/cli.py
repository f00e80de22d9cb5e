"""The ``minift`` command.

Every error a user can cause — a bad flag, a missing file, a corrupt cache, a config typo — ends in one
line on stderr naming what was wrong and what to do, and a non-zero exit status (2 for a bad command line,
1 for everything else). ``--debug`` shows the Python traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path


# minift align KIND: the module that parses each kind's options (add_cli_arguments) and runs it (run_from_args)
ALIGN_KINDS = {
    "sft": ("minift.sft", "supervised fine-tuning on prompt → completion data, loss on the completion only"),
    "rm": ("minift.rlhf.reward", "a reward model trained with the Bradley–Terry loss on preference pairs"),
    "ppo": ("minift.rlhf.ppo", "PPO: rollouts scored by a reward model, a KL penalty to the reference, GAE"),
    "dpo": ("minift.rlhf.dpo", "DPO: preference pairs, the reference being the policy with its adapter off"),
    "grpo": ("minift.rlhf.grpo", "GRPO: groups of completions per prompt, a verifiable reward, no value model"),
}


class CommandLineError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``minift: …; see minift CMD --help``) instead of usage + error."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse reads "-1e-3" as an option (its pattern knows -1 and -.5 only), so the value's own check
        # never spoke: "expected one argument". With scientific notation too, the flag's check says what is wrong.
        self._negative_number_matcher = re.compile(r"^-(\d+|\d*\.\d+|\d*\.?\d+[eE][-+]?\d+)$")

    def error(self, message):
        raise CommandLineError(f"{message} (see `{self.prog} --help`)")


# ----------------------------------------------------------------------------- flag types
def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--batch-size 0`` is caught here, before any work)."""
    value = _parse(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    value = _parse(text, float, "a number")
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def dropout_probability(text: str) -> float:
    """A dropout rate: p in [0, 1) (p = 1 would drop everything and scale by 1/(1 − p) = ∞)."""
    value = _parse(text, float, "a number")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _parse(text, kind, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


# ----------------------------------------------------------------------------- the parser
OVERWRITE_HELP = "replace the results of an earlier run that --out holds (without it, such an --out is refused)"
# what a finished run leaves (pretrain's log folder: result.json); a failed run's log.jsonl alone is not guarded,
# so that the same command, corrected, can run again
RUN_FILES = ("results.json", "result.json", "log.json", "table.md", "model", "config.json", "model.safetensors",
             "adapter_model.safetensors")


EARLIER_RESULTS = []  # (results.json, the mtimes of its folder's files) that an --overwrite run is to replace


def stale_results_note() -> str:
    """After a failed or interrupted ``--overwrite`` run: which ``results.json`` it did not get to replace while
    it wrote other files beside it (a log), so that nobody reads the earlier run's results and this run's log
    as one run (a save never deletes what it did not write, so they are kept, and named). "" when the run
    wrote nothing there: the folder is still the earlier run's, whole."""
    stale = [str(p) for p, before in EARLIER_RESULTS
             if p.is_file() and _file_times(p.parent)[p.name] == before[p.name] and _file_times(p.parent) != before]
    EARLIER_RESULTS.clear()
    if not stale:
        return ""
    return (f" ({', '.join(stale)} {'is' if len(stale) == 1 else 'are'} still the earlier run's; "
            "the logs beside it are this run's, up to where it stopped)")


def _file_times(folder):
    """{name: mtime in ns} of the files in ``folder``: what a run has written there since shows as a change."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def check_out_is_free(out, overwrite: bool, flag="--out"):
    """Refuse an ``--out`` that already holds a run's results unless ``--overwrite``: a typo'd or reused
    folder must not cost the model trained there. (The Python API's ``run_*`` replace, as HF's Trainer does.)
    ``flag``: the option that named the folder (pretrain's ``--log-dir`` too)."""
    from .train.trainer import file_in_the_way

    out = Path(out)
    blocked = file_in_the_way(out)
    if blocked == out:
        raise CommandLineError(f"{flag} {out} is a file; give a directory for the run's results")
    if blocked is not None:  # a usage error as the one above (exit 2), not an OSError further on
        raise CommandLineError(f"{flag} {out} cannot be a directory: {blocked} is a file; choose another {flag}")
    if not out.is_dir():
        return
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                  if p.name in RUN_FILES or re.fullmatch(r"checkpoint-\d+", p.name))
    held += sorted(f"{p.parent.name}/results.json" for p in out.glob("*/results.json"))
    if held and overwrite:
        finished = (out / "results.json", out / "result.json", *out.glob("*/results.json"))  # result.json: pretrain's log
        EARLIER_RESULTS.extend((p, _file_times(p.parent)) for p in finished if p.is_file())
    if held and not overwrite:
        raise CommandLineError(f"{flag} {out} already holds the results of a run ({', '.join(held[:3])}"
                               f"{', …' if len(held) > 3 else ''}): pass --overwrite to replace them, or "
                               f"choose another {flag}")


def build_parser() -> ArgumentParser:
    from dataclasses import fields

    from .pretrain import PretrainConfig

    parser = ArgumentParser(prog="minift", description="minift: fine-tuning from scratch")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    _add_parser = sub.add_parser

    def add_parser(name, **kw):  # every subcommand accepts --debug too, before or after its arguments
        command = _add_parser(name, **kw)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return command

    sub.add_parser = add_parser

    a = sub.add_parser("assignments", help="coursework: list, build the student tree, test a task, grade, check")
    a.add_argument("action", choices=["list", "build", "test", "grade", "check"])
    a.add_argument("target", nargs="*", help="with test: the task id; with grade: the students' directories (one or more)")
    a.add_argument("--out", help="with build: the directory to write the student tree to")
    a.add_argument("--json", help="with grade: also write the report as JSON to this file (a list, for several students)")
    a.add_argument("--markdown", help="with grade: also write the report as Markdown to this file (for several "
                                      "students: the class table, then each one's report)")
    a.add_argument("--reports", metavar="DIR", help="with grade: also write each student's report to DIR/NAME.md and "
                                                     "DIR/NAME.json (NAME: the directory's name), to hand back")
    a.add_argument("--csv", help="with grade: also write the grades as CSV to this file: a row per student, a column "
                                 "per task")
    a.add_argument("--task", action="append", default=[], help="with grade: only this task (may be repeated)")
    a.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="with grade: a test that runs longer fails (an endless loop); the course's tests take a few "
                        "seconds each (default 60)")
    a.add_argument("--no-mutants", action="store_true", help="with check: skip running the mutants (faster)")
    a.add_argument("--isolation", action="store_true",
                   help="with check: also strip each task alone and prove its declared dependencies (slow)")
    a.add_argument("--root", default=".", help="the project tree (default: the current directory)")

    d = sub.add_parser("demo", help="fine-tune MiniLM on movie-review sentiment: a frozen probe, LoRA and full fine-tuning")
    d.add_argument("--out", default=None,
                   help="where to write the results, curves and logs (default out/demo; with --engine out/engine-demo)")
    d.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    d.add_argument("--steps", type=positive_int, default=None,
                   help="optimizer steps of each run (default 120; with --engine 1500)")
    d.add_argument("--engine", action="store_true",
                   help="the engine demo instead: an MLP on two spirals, gradient-checked layer by layer")

    ft = sub.add_parser("finetune", help="fine-tune a pretrained model on a task and evaluate it on the test split")
    ft.add_argument("model", help="minilm, smollm2, or a checkpoint directory such as checkpoints/tiny-bert")
    ft.add_argument("task", help="sentiment, sentiment-tweets, sentiment-amazon, sentiment-nyt, ner or qa; with "
                                 "--method multitask several joined by '+', e.g. sentiment+ner")
    ft.add_argument("--method", default="full", help="probe, full, discriminative, llrd, unfreeze, lora, qlora, dora, ia3, adapter, prompt, prefix, bitfit or multitask")
    ft.add_argument("--max-steps", type=positive_int, default=300)
    ft.add_argument("--batch-size", type=positive_int, default=32)
    ft.add_argument("--max-length", type=positive_int, default=64, help="tokens per example (longer ones are cut)")
    ft.add_argument("--doc-stride", type=positive_int, default=None,
                    help="qa: tokens two windows of a long context share (default: half of --max-length)")
    ft.add_argument("--learning-rate", type=positive_float, default=None,
                    help="default 1e-3 for probe, adapter and bitfit, 5e-4 for lora and dora, 3e-3 for ia3, 3e-2 for prompt, "
                         "1e-2 for prefix, 5e-5 otherwise")
    ft.add_argument("--head-learning-rate", type=positive_float, default=None,
                    help="discriminative: the head's rate (default 20 × --learning-rate)")
    ft.add_argument("--llrd-decay", type=probability, default=0.9, help="llrd: lr × decay^(L − depth)")
    ft.add_argument("--pooling", choices=["pooler", "last", "mean"], default=None,
                    help="what a sequence classifier reads: default mean for probe, HF's head otherwise "
                         "(the pooler for bert, the last real token for decoders)")
    ft.add_argument("--lora-r", type=positive_int, default=8, help="lora: the rank r of each adapter")
    ft.add_argument("--lora-alpha", type=positive_float, default=16, help="lora: the scale is lora_alpha / r")
    ft.add_argument("--lora-dropout", type=dropout_probability, default=0.1, help="lora: dropout on the adapters' input")
    ft.add_argument("--target-modules", default="q_proj,v_proj",
                    help="lora: comma-separated module names (q_proj,k_proj,v_proj,o_proj,up_proj,down_proj,gate_proj)")
    ft.add_argument("--num-virtual-tokens", type=positive_int, default=20,
                    help="prompt and prefix: how many virtual tokens (each takes a position of the model's context)")
    ft.add_argument("--weight-decay", type=non_negative_float, default=0.01)
    ft.add_argument("--warmup-ratio", type=probability, default=0.1)
    ft.add_argument("--task-sampling", choices=["round_robin", "proportional", "temperature"], default="round_robin",
                    help="multitask: which task each step trains on (tasks in turn; p_i = n_i / sum n; p_i ∝ n_i^(1/T))")
    ft.add_argument("--sampling-temperature", type=positive_float, default=2.0,
                    help="multitask with --task-sampling temperature: T (1: proportional, larger: closer to uniform)")
    ft.add_argument("--eval-steps", type=positive_int, default=100, help="evaluate on validation every N steps")
    ft.add_argument("--train-limit", type=positive_int, default=None, help="use only the first N training rows")
    ft.add_argument("--eval-limit", type=positive_int, default=None,
                    help="use only the first N validation and test rows")
    ft.add_argument("--seed", type=non_negative_int, default=0)
    ft.add_argument("--out", default=None, help="output directory (default runs/TASK-METHOD)")
    ft.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    cl = sub.add_parser("continual", help="fine-tune on tasks one after another; the accuracy matrix and forgetting")
    cl.add_argument("model", help="minilm, or a checkpoint directory such as checkpoints/tiny-bert")
    cl.add_argument("tasks", help="comma-separated, in training order: sentiment sources (domain shift, e.g. "
                                  "sentiment,sentiment-tweets,sentiment-amazon,sentiment-nyt) and ner (task shift)")
    cl.add_argument("--method", default="naive",
                    help="naive, ewc, ewc-true, online-ewc, l2, replay or lora; several comma-separated for one table")
    cl.add_argument("--steps-per-task", type=positive_int, default=100)
    cl.add_argument("--batch-size", type=positive_int, default=16)
    cl.add_argument("--learning-rate", type=positive_float, default=None, help="default 5e-4 for lora, 5e-5 otherwise")
    cl.add_argument("--max-length", type=positive_int, default=64)
    cl.add_argument("--ewc-lambda", type=non_negative_float, default=None, help="EWC's λ (penalty (λ/2) Σ F Δ²)")
    cl.add_argument("--l2-lambda", type=non_negative_float, default=None, help="l2: the penalty (λ/2) Σ Δ²")
    cl.add_argument("--online-gamma", type=probability, default=1.0, help="online-ewc: F ← γF + F_new")
    cl.add_argument("--fisher-examples", type=positive_int, default=100, help="training rows per task for its Fisher")
    cl.add_argument("--replay-capacity", type=positive_int, default=1000)
    cl.add_argument("--replay-fraction", type=probability, default=0.25, help="replay: share of each task's data")
    cl.add_argument("--lora-r", type=positive_int, default=8)
    cl.add_argument("--train-limit", type=positive_int, default=None, help="use only the first N training rows")
    cl.add_argument("--eval-limit", type=positive_int, default=400, help="test rows per task")
    cl.add_argument("--seed", type=non_negative_int, default=0)
    cl.add_argument("--out", default="runs/continual", help="output directory: one folder per method, and table.md")
    cl.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    al = sub.add_parser("align", help="instruction tuning and alignment: sft, rm (reward model), ppo, dpo, grpo")
    kinds = al.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=ArgumentParser)
    for kind, (module, what) in ALIGN_KINDS.items():
        k = kinds.add_parser(kind, help=what, description=what)
        k.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        importlib.import_module(module).add_cli_arguments(k)
        k.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    ins = sub.add_parser("inspect", help="what a checkpoint, HF directory, PEFT adapter or GGUF file holds (headers only)")
    from .inspect import add_cli_arguments as inspect_arguments

    inspect_arguments(ins)

    z = sub.add_parser("zoo", help="the pinned pretrained models and datasets")
    z.add_argument("action", choices=["list"], nargs="?", default="list", help="list (the default)")

    dl = sub.add_parser("download", help="fetch a zoo artifact (or all) into $MINIFT_HOME")
    dl.add_argument("name", help="an artifact name from `minift zoo list`, or all")
    dl.add_argument("--from", dest="source", help="a directory holding the pinned archive (no network)")
    dl.add_argument("--verify", action="store_true",
                    help="re-check every cached file against the sha256 recorded when it was extracted")
    dl.add_argument("--force", action="store_true", help="fetch and extract again even when cached")

    g = sub.add_parser("generate", help="continue a prompt (or answer it, with --chat) with a model")
    g.add_argument("model", help="smollm2, or a checkpoint directory such as checkpoints/tiny-gpt")
    g.add_argument("prompt")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    g.add_argument("--max-new-tokens", type=positive_int, default=48)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=positive_float, default=None, help="with --sample (default 1.0)")
    g.add_argument("--top-k", type=non_negative_int, default=None, help="with --sample")
    g.add_argument("--top-p", type=probability, default=None, help="with --sample")
    g.add_argument("--seed", type=non_negative_int, default=0)

    pt = sub.add_parser("pretrain", help="pretrain a tiny model from scratch on the zoo's text")
    pt.add_argument("--config", help="a JSON file of PretrainConfig options (flags override it)")
    pt.add_argument("--overwrite", action="store_true",
                    help="replace the checkpoint --out and the logs --log-dir already hold (needed for those shipped "
                         "under checkpoints/)")
    for f in fields(PretrainConfig):
        pt.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, type=_flag_type(f.type))
    return parser


def _flag_type(annotation):
    """The argparse type of a PretrainConfig field (annotations are strings under ``from __future__``)."""
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "str")
    return {"int": lambda text: _parse(text, int, "an integer"),
            "float": lambda text: _parse(text, float, "a number")}.get(name, str)


# ----------------------------------------------------------------------------- the commands
# the options of `minift assignments` and the actions each applies to
ASSIGNMENTS_FLAGS = {"--out": ("build",), "--json": ("grade",), "--markdown": ("grade",), "--reports": ("grade",),
                     "--csv": ("grade",), "--task": ("grade",), "--time-limit": ("grade",), "--no-mutants": ("check",),
                     "--isolation": ("check",)}


def _assignments(args) -> int:
    from .assignments.build import all_regions, build_student_tree, is_course_tree
    from .assignments.check import check
    from .assignments.grade import test_task
    from .assignments.handout import handout
    from .assignments.tasks import TASK_LIST
    from .models.checkpoint import write_text_atomically

    root = Path(args.root).resolve()
    misplaced = [flag for flag, actions in ASSIGNMENTS_FLAGS.items()
                 if getattr(args, flag[2:].replace("-", "_")) not in (None, False, []) and args.action not in actions]
    if misplaced:  # else a typo in the action (build for grade) would pass without a word
        flag = misplaced[0]
        hint = "; give the task id as the argument: `minift assignments test TASK_ID`" \
            if flag == "--task" and args.action == "test" else " (see `minift assignments --help`)"
        raise CommandLineError(f"{flag} applies to assignments {' and '.join(ASSIGNMENTS_FLAGS[flag])}, "
                               f"not to {args.action}{hint}")
    if args.action in ("test", "grade") and not args.target:
        what = "a task id (see `minift assignments list`)" if args.action == "test" else "the student's directory (or several)"
        raise CommandLineError(f"assignments {args.action} needs {what}")
    if not (root / "minift" / "__init__.py").is_file():  # every action reads the course's own tree
        raise CommandLineError(f"{root} is not a minift tree (no minift/__init__.py): run this in the project or "
                               "student directory, or pass --root")
    if args.action in ("grade", "check") and not is_course_tree(root):
        where = "--root" if args.root != "." else "this directory"
        raise CommandLineError(f"assignments {args.action} needs the course's tree, with its solutions and mutants; "
                               f"{where} ({root}) is a student tree: run it in the course's tree, or pass --root")
    if args.action == "list":
        _list_tasks(root, all_regions(root, strict=False), TASK_LIST, student_tree=not is_course_tree(root))
        return 0
    if args.action == "build":
        if not args.out:
            raise CommandLineError("assignments build needs --out DIR (where to write the student tree)")
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise CommandLineError(f"--out {args.out} is a file; give a new directory for the student tree")
        from .assignments.markers import MarkerError

        try:
            stripped = build_student_tree(root, Path(args.out))
        except MarkerError:  # the course's own markers are broken: not a usage error (exit 1, as a library error)
            raise
        except (FileExistsError, NotADirectoryError, ValueError) as e:  # usage errors, as every other here: exit 2
            raise CommandLineError(str(e)) from None
        write_text_atomically(Path(args.out) / "HANDOUT.md", handout(Path(args.out).resolve(), all_regions(Path(args.out))))
        print(f"wrote the student tree to {args.out}: {len(stripped)} solution regions stripped "
              f"({len({r.task for r in stripped})} tasks); the tasks are described in {Path(args.out) / 'HANDOUT.md'}")
        return 0
    if args.action == "test":
        if len(args.target) > 1:
            raise CommandLineError(f"assignments test takes one task id, got {len(args.target)}: {' '.join(args.target)}")
        try:
            return test_task(root, args.target[0])
        except ValueError as e:
            raise CommandLineError(str(e)) from None
    if args.action == "grade":
        return _grade(args, root)
    return 0 if check(root, mutants=not args.no_mutants, isolation=args.isolation) else 1


def _list_tasks(root: Path, regions, tasks, student_tree: bool):
    """``assignments list``: a line per task (id, points, state, title) in aligned columns, then where it is and
    what it depends on. The state: "to do" (still the stub), "written" (the student's code after the TASK line),
    "solution present" (the course's tree), or "no TASK line" (it was deleted)."""
    def state(mine):
        if any(r.stub for r in mine):
            return "to do"
        if any(r.written for r in mine):
            return "written"
        return "solution present" if mine else "no TASK line"

    def where(mine):  # each file once, its lines after it: a.py:12,40, b.py:7
        lines = {}
        for r in sorted(mine, key=lambda r: (str(r.path), r.task_line)):
            lines.setdefault(r.path.relative_to(root).as_posix(), []).append(str(r.task_line))
        return ", ".join(f"{f}:{','.join(n)}" for f, n in lines.items())

    rows = [(t, [r for r in regions if r.task == t.id]) for t in tasks]
    id_width = max(len(t.id) for t in tasks)
    state_width = max(len(state(mine)) for _, mine in rows)
    for t, mine in rows:
        gone = "HANDOUT.md says where it was" if student_tree else "`minift assignments check` reports it"
        found = where(mine) or f"(its # TASK line is gone from {t.file}: {gone})"
        needs = f"; depends on {', '.join(t.depends)}" if t.depends else ""
        print(f"{t.id:{id_width}}  {t.points:3d} pts  {state(mine):{state_width}}  {t.title}")
        print(f"{'':{id_width}}  {found}{needs}")


def _grade(args, root: Path) -> int:
    """``assignments grade DIR [DIR ...]``: one student's report, or a class's (a line per student as each is
    graded, the class table at the end)."""
    from tqdm import tqdm

    from .assignments.build import is_course_tree
    from .assignments.grade import check_student_tree, check_task_ids, class_csv, class_markdown, grade, report_markdown
    from .models.checkpoint import check_output_file, write_text_atomically

    students = [Path(t) for t in args.target]
    try:  # everything before the first student is graded, which takes minutes
        for flag, path in (("--json", args.json), ("--markdown", args.markdown), ("--csv", args.csv)):
            if path:
                check_output_file(path, flag)
        if args.csv and Path(args.csv).is_file() and \
                not Path(args.csv).read_text(errors="replace").startswith("student,directory,score,points"):
            raise ValueError(f"--csv {args.csv} exists and is not a gradebook this command wrote; give a new file")
        check_task_ids(args.task)
        for student in students:
            check_student_tree(student)
        resolved = [s.resolve() for s in students]
        twice = sorted({str(s) for s, r in zip(students, resolved) if resolved.count(r) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} is given more than once")
    except (FileNotFoundError, ValueError) as e:
        raise CommandLineError(str(e)) from None
    for student in students:  # allowed (a full-marks baseline), but never by mistake
        if is_course_tree(student):
            print(f"warning: {student} is the course's own tree, with its solutions and mutants, not a student tree "
                  "built from it: its score is the solution's", file=sys.stderr)
    if args.reports:
        if Path(args.reports).exists() and not Path(args.reports).is_dir():
            raise CommandLineError(f"--reports {args.reports} is a file; give a directory for the students' reports")
        names = [s.resolve().name for s in students]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CommandLineError(f"--reports names each report after its directory, and {', '.join(twice)} "
                                   "is the name of more than one; give the hand-ins distinct directory names")
        Path(args.reports).mkdir(parents=True, exist_ok=True)
    reports = []
    bar = tqdm(students, desc="grading", unit="student", disable=len(students) == 1, ncols=80)
    for student in bar:
        try:
            report = grade(student, root, args.task, time_limit=args.time_limit or 60)
        except (FileNotFoundError, ValueError) as e:
            raise CommandLineError(str(e)) from None
        reports.append(report)
        if args.reports:  # as each is graded: a later failure keeps these
            name = student.resolve().name
            write_text_atomically(Path(args.reports) / f"{name}.md", report_markdown(report))
            write_text_atomically(Path(args.reports) / f"{name}.json", json.dumps(report, indent=1))
        if len(students) > 1:
            bar.write(f"{student}: {report['score']:g} / {report['points']} points ({report['seconds']} s)")
    text = report_markdown(reports[0]) if len(reports) == 1 else class_markdown(reports)
    print(text if len(reports) == 1 else class_markdown(reports, each_report=False), end="")
    if args.json:
        write_text_atomically(Path(args.json), json.dumps(reports[0] if len(reports) == 1 else reports, indent=1))
    if args.markdown:
        write_text_atomically(Path(args.markdown), text)
    if args.csv:
        write_text_atomically(Path(args.csv), class_csv(reports))
    return 0


def _generate(args) -> int:
    from . import models, tokenization
    from .backend import seed
    from .models.generation import generate_text

    shaping = [f for f, v in (("--temperature", args.temperature), ("--top-k", args.top_k), ("--top-p", args.top_p))
               if v is not None]
    if shaping and not args.sample:  # greedy decoding takes the most likely token: they would change nothing
        raise CommandLineError(f"{', '.join(shaping)} shape sampling: add --sample (without it decoding is greedy)")
    seed(args.seed)
    if args.chat:  # said before the model loads (the tokenizer is quick)
        tok = tokenization.from_pretrained(args.model)
        if getattr(tok, "chat_template", None) is None:
            raise CommandLineError(f"--chat: {args.model}'s tokenizer has no chat template (a base model continues "
                                   "text); drop --chat")
    model = models.from_pretrained(args.model)  # first without --chat: a bad path gets the model loader's error
    if not args.chat:
        tok = tokenization.from_pretrained(args.model)
    print(generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, chat=args.chat,
                        do_sample=args.sample, temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p))
    return 0


def _pretrain(args, argv) -> int:
    from dataclasses import fields

    from .pretrain import PretrainConfig, output_dirs, pretrain

    flags = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)}
    if args.config:
        cfg = _usage(PretrainConfig.from_file, args.config, **flags)
    else:
        cfg = _usage(PretrainConfig, **{k: v for k, v in flags.items() if v is not None})
    out, log_dir = output_dirs(cfg)
    check_out_is_free(out, args.overwrite)
    check_out_is_free(log_dir, args.overwrite, flag="--log-dir")  # runs/<name of out> may be another run's folder
    words = sys.argv[2:] if argv is None else argv[1:]
    command = "minift pretrain " + " ".join(w for w in words if w != "--debug")
    pretrain(cfg, command=command.strip(), overwrite=args.overwrite)
    return 0


def _finetune(args) -> int:
    from .finetune import FinetuneConfig, results_table, run_finetune

    options = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "overwrite")}
    cfg = _usage(FinetuneConfig, **options)
    check_out_is_free(cfg.out, args.overwrite)
    results = run_finetune(cfg)
    if cfg.method == "multitask":  # one row and one results.json per task, and the run's own
        print(results_table(list(results["tasks"].values())))
        print(f"results: {Path(cfg.out) / 'results.json'}; per task: "
              + ", ".join(str(Path(cfg.out) / t / "results.json") for t in results["tasks"]))
        return 0
    print(results_table([results]))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def _continual(args) -> int:
    from .continual_scenario import ContinualConfig, continual_table, run_continual
    from .train.trainer import check_output_dir

    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "debug", "method", "out", "overwrite") and v is not None}
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods or len(set(methods)) < len(methods):
        raise CommandLineError(f"--method needs one or more different methods, comma-separated, got {args.method!r}")
    configs = [_usage(ContinualConfig, method=m, out=str(Path(args.out) / m), **options) for m in methods]  # all checked first
    check_out_is_free(args.out, args.overwrite)
    check_output_dir(Path(args.out))
    results = []
    for cfg in configs:
        r = run_continual(cfg)
        results.append(r)
        print(f"{cfg.method}: R (row i: after task i; columns: {', '.join(cfg.tasks)})")
        for row in r["R"]:
            print("  " + "  ".join(f"{v:.3f}" for v in row))
    table = continual_table(results)
    print(table)
    (Path(args.out) / "table.md").write_text(table + "\n")
    print(f"results: {Path(args.out)}/<method>/results.json, {Path(args.out) / 'table.md'}")
    return 0


def _usage(make_config, *args, **options):
    """``make_config(*args, **options)``; options it refuses (an unknown method, a task it lacks, a zero batch)
    are a usage error: exit status 2, as argparse gives a bad flag."""
    try:
        return make_config(*args, **options)
    except ValueError as e:
        raise CommandLineError(str(e)) from None


def config_from_args(config_class, args):
    """The dataclass ``config_class`` built from the parsed options that are its fields (the others, such as
    ``command`` and ``kind``, belong to the parser); ``args.out`` is set to the config's (its default filled in),
    so that the CLI can say where the results went."""
    from dataclasses import fields

    names = {f.name for f in fields(config_class)}
    cfg = _usage(config_class, **{k: v for k, v in vars(args).items() if k in names})
    args.out = cfg.out
    check_out_is_free(cfg.out, getattr(args, "overwrite", False))
    return cfg


def _align(args) -> int:
    """``minift align KIND …``: each kind's module parses its options and runs (``run_from_args``)."""
    module = importlib.import_module(ALIGN_KINDS[args.kind][0])
    results = module.run_from_args(args)
    summary = {k: v for k, v in results.items() if k in ("before", "after", "train_seconds", "train_steps")}
    for key, value in summary.items():
        if isinstance(value, dict):  # the numbers; samples and tables are in results.json
            value = {k: round(v, 4) if isinstance(v, float) else v for k, v in value.items()
                     if isinstance(v, (int, float))}
        print(f"{key}: {json.dumps(value)}")
    out = getattr(args, "out", None)
    if out:
        print(f"results: {Path(out) / 'results.json'}")
    return 0


def _zoo(args) -> int:
    from . import zoo

    if args.command == "zoo":
        for name, pin, cached, desc in zoo.list_artifacts():
            print(f"{name:8} {pin:28} {'cached' if cached else 'not cached':10} {desc}")
        return 0
    names = list(zoo.ARTIFACTS) if args.name == "all" else [args.name]
    if args.source is not None and not Path(args.source).is_dir():  # even when cached: a typo is said at once
        raise CommandLineError(f"--from {args.source} is not a directory; give the folder holding the pinned "
                               "archive (see `minift zoo` for what each artifact is)")
    for name in names:
        path = zoo.fetch(name, source=args.source, force=args.force)
        if args.verify:
            problems = zoo.verify(name)
            if problems:
                raise zoo.ZooError(f"{name}: {'; '.join(problems)}; re-run `minift download {name} --force`")
            print(f"{name}: {path} (every file matches its recorded sha256)")
        else:
            print(f"{name}: {path}")
    return 0


def run(args, argv=None) -> int:
    if args.command == "generate":
        return _generate(args)
    if args.command == "pretrain":
        return _pretrain(args, argv)
    if args.command in ("zoo", "download"):
        return _zoo(args)
    if args.command == "assignments":
        return _assignments(args)
    if args.command == "finetune":
        return _finetune(args)
    if args.command == "continual":
        return _continual(args)
    if args.command == "align":
        return _align(args)
    if args.command == "inspect":
        from .inspect import run_from_args as inspect_run

        return inspect_run(args)
    if args.command == "demo":  # two demos, two folders: one never stands in the way of the other
        from .demo import ENGINE_DEMO_OUT
        from .finetune import DEMO_OUT

        out = args.out or (ENGINE_DEMO_OUT if args.engine else DEMO_OUT)
        check_out_is_free(out, args.overwrite)
        if args.engine:
            from .demo import run_demo

            run_demo(out_dir=out, steps=args.steps or 1500)
            return 0
        from .finetune import run_finetune_demo

        run_finetune_demo(out=out, steps=args.steps or 120)
        return 0
    raise CommandLineError(f"unknown command {args.command!r}")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (KeyError's quotes removed)."""
    if isinstance(error, KeyError) and error.args:  # KeyError's str() adds quotes around the message
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:  # a message that spans lines becomes one; its lines stay apart
        joined += (" " if joined.endswith((":", ";", ",")) else "; ") + line
    return joined


# The errors a user can cause; anything else is a bug in minift and says so.
USER_ERRORS = (ValueError, TypeError, KeyError, IndexError, OSError, RuntimeError, FloatingPointError,
               json.JSONDecodeError)  # FloatingPointError: a loss that became NaN or inf (a rate, a λ too large)


def _take_back_empty_output_dirs():
    """A run that failed before writing anything leaves no empty --out folder behind."""
    from .train.trainer import remove_empty_output_dirs

    remove_empty_output_dirs()


def main(argv=None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    EARLIER_RESULTS.clear()
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # named with the subcommand's own help, not the top level's
            where = " ".join(w for w in ("minift", args.command, getattr(args, "kind", None)) if w)
            # an unknown option before the positionals lets its value be taken for one: name the options alone
            options = [w for w in extra if w.startswith("-") and len(w) > 1 and not w[1:2].isdigit()]
            raise CommandLineError(f"unrecognized arguments: {' '.join(options or extra)} (see `{where} --help`)")
        if args.command == "assignments" and args.target and args.action not in ("test", "grade"):
            raise CommandLineError(f"assignments {args.action} takes no task or directory, got {' '.join(args.target)!r} "
                                   "(see `minift assignments --help`)")
        with warnings.catch_warnings():
            if not debug:  # overflow on the way to a NaN loss: the NaN check names the step and the rate in one line
                warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered", RuntimeWarning)
            return run(args, argv)
    except CommandLineError as e:  # a usage error has no traceback worth showing, even with --debug
        print(f"minift: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minift: interrupted{stale_results_note()}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `minift … | head`: the reader has gone; stop quietly (Python's documented way)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 1
    except USER_ERRORS as e:
        _take_back_empty_output_dirs()
        if debug:
            raise
        print(f"minift: {one_line(e)}{stale_results_note()}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line, with the way to see more
        _take_back_empty_output_dirs()
        if debug:
            raise
        print(f"minift: internal error {type(e).__name__}: {one_line(e)}{stale_results_note()} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # `python -m minift.cli` runs this file as __main__, a second copy of the module beside the minift.cli that
    # the commands import (`from .cli import …`): its CommandLineError would be another class, and a usage
    # error raised there would pass `main`'s except as an "internal error". So the one minift.cli runs.
    from minift.cli import main as cli_main

    sys.exit(cli_main())
