"""The command line: every user error is one line on stderr naming the problem, and a non-zero exit status."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minift.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT, TINY_BERT = str(ROOT / "checkpoints" / "tiny-gpt"), str(ROOT / "checkpoints" / "tiny-bert")


def run_cli(capsys, *argv):
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(rc, err, *words):
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("minift: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("argv, words", [
    (["generate"], ["required", "model, prompt"]),
    (["nonsense"], ["invalid choice", "nonsense"]),
    (["generate", TINY_GPT, "hi", "--max-new-tokens", "0"], ["--max-new-tokens", ">= 1", "'0'"]),
    (["generate", TINY_GPT, "hi", "--top-p", "2"], ["--top-p", "[0, 1]"]),
    (["generate", TINY_GPT, "hi", "--top-p", "nan"], ["--top-p", "[0, 1]"]),
    (["generate", TINY_GPT, "hi", "--temperature", "nan"], ["--temperature", "> 0"]),
    (["generate", TINY_GPT, "hi", "--temperature", "hot"], ["--temperature", "a number", "'hot'"]),
    (["generate", TINY_GPT, "hi", "--top-k", "-1"], ["--top-k", ">= 0"]),
    (["demo", "--steps", "0"], ["--steps", ">= 1"]),
    (["demo", "--steps", "many"], ["--steps", "an integer", "'many'"]),
    (["assignments", "build"], ["--out"]),
    (["generate", TINY_GPT, "hi", "--seed", "-1"], ["--seed", ">= 0", "'-1'"]),
    (["generate", TINY_GPT, "hi", "--top-k", "5"], ["--top-k shape sampling", "add --sample"]),
    (["generate", TINY_GPT, "hi", "--bogus"], ["unrecognized arguments: --bogus", "`minift generate --help`"]),
    (["generate", TINY_GPT, "hi", "--chat"], ["--chat:", "has no chat template", "drop --chat"]),
    # a typo'd option before the positionals: its value is taken for MODEL, so only the option is named
    (["finetune", "--lerning-rate", "1e-3", "minilm", "sentiment"],
     ["unrecognized arguments: --lerning-rate (see `minift finetune --help`)"]),
    (["align", "sft", TINY_GPT, "--bogus"], ["--bogus", "`minift align sft --help`"]),
    (["assignments", "list", "extra"], ["assignments list takes no task", "'extra'"]),
    (["assignments", "build", "--out", "/nonexistent/x", "--task", "bogus"], ["--task applies to assignments grade",
                                                                             "not to build"]),
    (["assignments", "list", "--csv", "x.csv"], ["--csv applies to assignments grade, not to list"]),
    (["assignments", "test", "--task", "train.llrd"], ["--task applies to assignments grade, not to test",
                                                      "give the task id as the argument"]),
    (["assignments", "list", "--time-limit", "5"], ["--time-limit applies to assignments grade"]),
    (["assignments", "check", "--out", "x"], ["--out applies to assignments build, not to check"]),
    (["assignments", "grade", "x", "--isolation"], ["--isolation applies to assignments check, not to grade"]),
    (["assignments", "build", "--out", str(ROOT / "tests" / "student")], ["must not be written inside the sources"]),
    (["assignments", "build", "--out", str(ROOT / "lessons")], ["exists and is not empty", "new directory"]),
    (["assignments", "build", "--out", str(ROOT / "README.md" / "x")], ["README.md is a file"]),
    (["finetune", TINY_BERT, "sentiment", "--lora-dropout", "1"], ["--lora-dropout", "[0, 1)"]),
    (["pretrain", "--steps", "abc"], ["--steps", "expected an integer", "'abc'"]),
    (["download", "vader", "--from", "/nonexistent-dir"], ["--from /nonexistent-dir is not a directory"]),
    (["align", "dpo", TINY_GPT, "--learning-rate", "-1e-3"], ["--learning-rate", "> 0", "'-1e-3'"]),  # not "expected one argument"
    (["align", "dpo", TINY_GPT, "--seed", "-1"], ["--seed", ">= 0"]),
    (["finetune", TINY_BERT, "sentiment", "--out", str(ROOT / "README.md")], ["is a file", "directory"]),
])
def test_bad_command_lines_are_one_line_with_status_2(capsys, argv, words):
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert_one_line_error(rc, err, *words)


def test_every_assignments_option_says_which_actions_it_applies_to():
    """An option added later without an entry in ASSIGNMENTS_FLAGS would be accepted, unused, by every action."""
    import argparse

    from minift.cli import ASSIGNMENTS_FLAGS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {o for a in sub.choices["assignments"]._actions for o in a.option_strings if o.startswith("--")}
    assert options - {"--help", "--root", "--debug"} == set(ASSIGNMENTS_FLAGS)
    actions = next(a for a in sub.choices["assignments"]._actions if a.dest == "action").choices
    assert all(set(applies) <= set(actions) for applies in ASSIGNMENTS_FLAGS.values())


def test_errors_from_the_library_are_one_line_with_status_1(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "generate", str(tmp_path / "nowhere"), "hi")
    assert rc == 1
    assert_one_line_error(rc, err, "nowhere", "neither a zoo model")
    rc, _, err = run_cli(capsys, "generate", TINY_BERT, "hi")  # a masked LM cannot generate
    assert_one_line_error(rc, err, "masked language model", "checkpoints/tiny-gpt")
    rc, _, err = run_cli(capsys, "generate", TINY_GPT, "  ")
    assert_one_line_error(rc, err, "prompt is empty")
    rc, _, err = run_cli(capsys, "finetune", str(tmp_path / "nowhere"), "sentiment", "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "nowhere", "neither a zoo model", "no such path")  # not ".../tokenizer.json"
    rc, _, err = run_cli(capsys, "generate", TINY_GPT, "word " * 70)
    assert_one_line_error(rc, err, "longer than the model's context of 64")
    rc, _, err = run_cli(capsys, "align", "grpo", TINY_GPT, "--prompt-tokens", "1000", "--out", str(tmp_path / "g"))
    assert_one_line_error(rc, err, "only 0 reviews of the train split are longer", "--prompt-tokens")
    rc, _, err = run_cli(capsys, "align", "dpo", TINY_GPT, "--max-length", "1", "--max-steps", "1",
                         "--out", str(tmp_path / "d"))
    last = err.strip().splitlines()[-1]  # after the run's own progress line
    assert rc == 1 and last.startswith("minift: ") and "Traceback" not in err
    assert "preference row 0, its chosen completion: max_length=1 leaves no completion token" in last
    assert "--max-length" in last


def test_debug_shows_the_traceback(capsys, tmp_path):
    with pytest.raises(ValueError, match="neither a zoo model"):
        main(["generate", str(tmp_path / "nowhere"), "hi", "--debug"])
    with pytest.raises(ValueError, match="neither a zoo model"):
        main(["--debug", "generate", str(tmp_path / "nowhere"), "hi"])


def test_a_bug_is_still_one_line_and_says_how_to_see_more(capsys, monkeypatch):
    import minift.cli as cli

    def broken(args):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(cli, "_generate", broken)
    rc, _, err = run_cli(capsys, "generate", TINY_GPT, "hi")
    assert_one_line_error(rc, err, "internal error AttributeError", "--debug")


def test_the_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minift.cli", "generate", str(tmp_path / "x"), "hi"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, "neither a zoo model")


@pytest.mark.parametrize("module", ["minift.cli", "minift"])
def test_a_usage_error_raised_inside_a_command_is_a_usage_error_however_the_cli_is_started(tmp_path, module):
    """`python -m minift.cli` (the Makefile's way) runs cli.py as __main__, beside the minift.cli that the align
    commands import: their CommandLineError must still be caught as one (exit 2, one line, not "internal")."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    proc = subprocess.run([sys.executable, "-m", module, "align", "dpo", TINY_GPT, "--max-steps", "1", "--out", str(afile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "internal error" not in proc.stderr
    assert_one_line_error(proc.returncode, proc.stderr, f"--out {afile} is a file")
    assert afile.read_text() == "mine"


def test_a_run_that_fails_before_writing_leaves_no_empty_out_folder(tmp_path, capsys):
    from minift.cli import main

    assert main(["align", "sft", str(tmp_path / "nope"), "--out", str(tmp_path / "a" / "b")]) == 1
    assert "neither a zoo model" in capsys.readouterr().err and not (tmp_path / "a").exists()
    mine = tmp_path / "mine"  # a folder the user made is never taken away, nor anything in it
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["align", "dpo", str(tmp_path / "nope"), "--out", str(mine / "run")]) == 1
    assert (mine / "notes.txt").read_text() == "keep" and not (mine / "run").exists()


def test_an_out_holding_an_earlier_run_is_refused_without_overwrite(tmp_path, capsys):
    """The model trained into --out last time is not replaced by a second command without --overwrite."""
    out = tmp_path / "run"
    args = ["align", "grpo", TINY_GPT, "--max-steps", "1", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2
    assert_one_line_error(rc, err, f"--out {out} already holds the results of a run", "--overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched
    rc, _, err = run_cli(capsys, "finetune", TINY_BERT, "sentiment", "--method", "probe", "--out", str(out))
    assert rc == 2 and "already holds" in err  # another command into the same folder: the same refusal
    assert main(args + ["--overwrite"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} != before


def test_the_engine_demo_asks_for_overwrite_like_every_command_that_trains(tmp_path, capsys):
    out = tmp_path / "engine"
    assert main(["demo", "--engine", "--steps", "5", "--out", str(out)]) == 0
    log = (out / "log.json").read_bytes()
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "demo", "--engine", "--steps", "5", "--out", str(out))
    assert_one_line_error(rc, err, f"--out {out} already holds the results of a run (log.json", "--overwrite")
    assert (out / "log.json").read_bytes() == log
    assert main(["demo", "--engine", "--steps", "5", "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "demo", "--engine", "--out", str(out / "log.json" / "sub"))  # below a file
    assert rc == 2
    assert_one_line_error(rc, err, f"--out {out / 'log.json' / 'sub'} cannot be a directory: {out / 'log.json'} is a file")



def test_the_fine_tuning_demos_results_do_not_block_the_engine_demo(tmp_path, monkeypatch, capsys):
    """After `make demo`, out/demo holds its three runs; `minift demo --engine` writes beside it, not into it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "demo" / "full").mkdir(parents=True)
    (tmp_path / "out" / "demo" / "full" / "results.json").write_text("{}")
    assert main(["demo", "--engine", "--steps", "3"]) == 0
    assert (tmp_path / "out" / "engine-demo" / "log.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "demo").iterdir()) == ["full"]


def test_an_overwritten_out_says_which_saved_files_are_an_earlier_runs(tmp_path, capsys):
    """--overwrite with a method that saves no model: the earlier run's OUT/model is kept (a save deletes only
    what it wrote) but named as not this run's, on the terminal and in results.json."""
    out = tmp_path / "run"
    base = ["finetune", TINY_BERT, "sentiment", "--max-steps", "2", "--batch-size", "4", "--eval-limit", "8",
            "--out", str(out)]
    assert main(base + ["--method", "lora", "--eval-steps", "1"]) == 0  # two evaluations: an eval.png
    assert (out / "eval.png").is_file()
    first = json.loads((out / "results.json").read_text())
    assert first["saved"] == ["adapter", "model"] and "not_from_this_run" not in first
    model_bytes = (out / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    rc, _, err = run_cli(capsys, *base, "--method", "adapter", "--overwrite")
    assert rc == 0 and f"{out / 'model'}, {out / 'adapter'}, {out / 'eval.png'}" in err and "are from an earlier run" in err
    second = json.loads((out / "results.json").read_text())
    assert second["method"] == "adapter" and second["saved"] == []
    # one evaluation draws no curve, and 2 steps log once: the earlier run's curves stay, named
    assert second["not_from_this_run"] == ["model", "adapter", "eval.png", "learning_rate.png", "loss.png"]
    assert (out / "model" / "model.safetensors").read_bytes() == model_bytes  # kept, not deleted


def test_an_overwrite_run_that_fails_names_the_results_it_did_not_replace(tmp_path, capsys):
    """A run with --overwrite that stops at step 5 (a NaN loss) keeps the earlier run's results.json, and the
    error says so: it is not to be read with this run's log.jsonl as one run. Then a good run replaces it."""
    out = tmp_path / "run"
    base = ["finetune", TINY_BERT, "sentiment", "--max-steps", "30", "--batch-size", "4", "--eval-limit", "8",
            "--out", str(out)]
    assert main(base[:4] + ["3"] + base[5:]) == 0
    results = (out / "results.json").read_bytes()
    capsys.readouterr()
    rc, _, err = run_cli(capsys, *base, "--learning-rate", "1e6", "--overwrite")
    last = err.strip().splitlines()[-1]  # after the run's header and progress bar
    assert rc == 1 and "Traceback" not in err and last.startswith("minift: step 5: the loss is nan")
    assert f"({out / 'results.json'} is still the earlier run's" in last
    assert (out / "results.json").read_bytes() == results  # kept: a save never deletes what it did not write
    rc, _, err = run_cli(capsys, *base[:4], "2", *base[5:], "--overwrite")
    assert rc == 0 and "earlier run's" not in err and (out / "results.json").read_bytes() != results


def test_a_nan_loss_from_the_command_line_is_one_error_line_without_numpys_warnings(tmp_path):
    """The overflow on the way to a NaN warns from NumPy, two lines per warning; the NaN check already names the
    step and the rate in one line. With --debug the warnings stay."""
    argv = [sys.executable, "-m", "minift", "finetune", TINY_BERT, "sentiment", "--max-steps", "5", "--batch-size", "4",
            "--eval-limit", "8", "--learning-rate", "1e30", "--out", str(tmp_path / "nan")]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 1 and "RuntimeWarning" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1].startswith("minift: step 3: the loss is nan")
    loud = subprocess.run(argv + ["--debug"], capture_output=True, text=True, timeout=300)
    assert loud.returncode == 1 and "RuntimeWarning" in loud.stderr and "FloatingPointError" in loud.stderr


def test_qa_windows_name_the_options_that_size_them_and_a_run_that_wrote_nothing_has_no_stale_note(tmp_path, capsys):
    """--doc-stride defaults to half of --max-length (32 at 64), so a shorter window still works; a stride
    that leaves no room after the question is refused naming both options. That refused --overwrite run wrote
    nothing into --out, so the earlier run's results.json is not called stale."""
    out = tmp_path / "qa"
    base = ["finetune", TINY_GPT, "qa", "--max-length", "40", "--max-steps", "2", "--batch-size", "4",
            "--eval-limit", "8", "--out", str(out)]
    assert main(base) == 0
    assert json.loads((out / "results.json").read_text())["args"]["doc_stride"] == 20
    capsys.readouterr()
    rc, _, err = run_cli(capsys, *base, "--doc-stride", "35", "--overwrite")
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("minift: qa: example 0: stride must be in [0, ")
    assert "--doc-stride (now 35)" in last and "--max-length (now 40)" in last and "earlier run's" not in last
    rc, _, err = run_cli(capsys, *base, "--doc-stride", "40", "--overwrite")
    assert_one_line_error(rc, err, "doc_stride 40 (--doc-stride) must be smaller than max_length 40 (--max-length)")


@pytest.mark.parametrize("kind, model", [("sft", TINY_GPT), ("dpo", TINY_GPT), ("rm", TINY_BERT)])
def test_align_refuses_a_max_length_past_learned_positions_as_finetune_does(tmp_path, capsys, kind, model):
    """It was cut to the context without a word, and results.json recorded the length asked for."""
    out = tmp_path / kind
    rc, _, err = run_cli(capsys, "align", kind, model, "--max-length", "100", "--max-steps", "1", "--out", str(out))
    assert_one_line_error(rc, err, "--max-length 100 is longer than", "context of 64 tokens", "--max-length 64 or less")
    assert not out.exists()


@pytest.mark.zoo
def test_a_max_length_beyond_learned_positions_is_refused_before_training(tmp_path, capsys):
    for argv in (["finetune", TINY_BERT, "sentiment", "--max-length", "100", "--out", str(tmp_path / "f")],
                 ["continual", TINY_BERT, "sentiment,ner", "--max-length", "65", "--out", str(tmp_path / "c")]):
        rc, out, err = run_cli(capsys, *argv)
        assert_one_line_error(rc, err, "context of 64 tokens", "--max-length 64 or less")
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())


def test_a_message_of_several_lines_becomes_one_whose_lines_stay_apart():
    from minift.cli import one_line

    text = "the cached artifact 'ner' is damaged:\n  ner.txt: missing\n  x.txt: changed\nre-run `minift download`"
    assert one_line(ValueError(text)) == ("the cached artifact 'ner' is damaged: ner.txt: missing; x.txt: changed; "
                                          "re-run `minift download`")
    assert one_line(KeyError("failed:\n  a: shape (2,)")) == "failed: a: shape (2,)"  # KeyError's quotes gone


def test_python_dash_m_minift_is_the_minift_command():
    run = subprocess.run([sys.executable, "-m", "minift", "zoo", "list"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("minilm") and "smollm2" in run.stdout


def test_bare_zoo_lists_the_zoo_as_the_download_error_suggests(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "download", "minilm", "--from", str(tmp_path / "nowhere"))
    assert_one_line_error(rc, err, "see `minift zoo`")
    assert main(["zoo"]) == 0 and capsys.readouterr().out.startswith("minilm")


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`minift assignments list | head -1`: the pipe closes under the command, which must not print an error."""
    proc = subprocess.Popen([sys.executable, "-m", "minift", "assignments", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the child has written a line (it is still importing): every write fails
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == ""


def test_assignment_paths_that_cannot_be_used_are_one_line_each(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "assignments", "grade", str(tmp_path / "nowhere"))
    assert_one_line_error(rc, err, f"{tmp_path / 'nowhere'} does not exist", "assignments build --out")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, _, err = run_cli(capsys, "assignments", "build", "--out", str(blocker / "student"))
    assert_one_line_error(rc, err, "as the directory for the student tree", "is a file", "--out")
