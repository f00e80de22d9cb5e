"""CuPy's discipline about host and device arrays, checked without a GPU.

``tests/strict_cupy.py`` stands in for CuPy: NumPy's numbers, CuPy's refusals (a host array given to a
device function, a device array turned into a host one without ``to_numpy``, NumPy scalars where CuPy
gives 0-d arrays). Real minift commands run under it, end to end, in a subprocess each: what passes here
can still fail on a GPU (kernels, memory), but not for mixing the two sides.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "strict_cupy.py"
TINY_GPT, TINY_BERT = str(ROOT / "checkpoints" / "tiny-gpt"), str(ROOT / "checkpoints" / "tiny-bert")


def _run(*args, cwd):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MINIFT_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(HARNESS), *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=env)


def test_the_stand_in_refuses_what_cupy_refuses(tmp_path):
    done = _run("--selftest", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 12 and all(line.startswith("ok") for line in lines)
    assert sum("CuPy raises, stand-in raises" in line for line in lines) == 6


COMMANDS = {
    "sampling with top-k and top-p": ["generate", TINY_GPT, "the movie", "--sample", "--top-k", "20", "--top-p", "0.9",
                                      "--max-new-tokens", "6"],
    "PPO (rollouts, GAE, minibatches)": ["align", "ppo", TINY_GPT, "--reward", "word:great", "--max-steps", "2",
                                         "--batch-size", "8", "--num-mini-batches", "2", "--eval-limit", "8"],
    "DPO": ["align", "dpo", TINY_GPT, "--max-steps", "2", "--eval-limit", "16"],
    "GRPO": ["align", "grpo", TINY_GPT, "--max-steps", "2"],
    "QLoRA on NF4 blocks": ["finetune", TINY_BERT, "sentiment", "--method", "qlora", "--max-steps", "2",
                            "--train-limit", "32", "--eval-limit", "16"],
    "token classification with DoRA": ["finetune", TINY_BERT, "ner", "--method", "dora", "--max-steps", "2",
                                       "--train-limit", "16", "--eval-limit", "8"],
    "EWC's Fisher and penalty": ["continual", TINY_BERT, "sentiment,sentiment-tweets", "--method", "ewc",
                                 "--steps-per-task", "2", "--train-limit", "16", "--eval-limit", "8",
                                 "--fisher-examples", "8"],
}


@pytest.mark.zoo
@pytest.mark.parametrize("what", list(COMMANDS))
def test_a_command_runs_with_host_and_device_kept_apart(tmp_path, what):
    args = COMMANDS[what]
    if args[0] != "generate":
        args = [*args, "--out", str(tmp_path / "out")]
    done = _run(*args, "--debug", cwd=tmp_path)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stderr[-3000:]}"
    if args[0] == "generate":
        assert done.stdout.strip()
    else:
        results = sorted((tmp_path / "out").rglob("results.json"))
        assert results and all(json.loads(r.read_text()) for r in results)


LESSONS = sorted(p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
# Under `make test`, the lessons that read gradients, write weights and compare with NumPy the most; every
# lesson with MINIFT_STANDIN_LESSONS=all (`make gpu-standin`, about 8 minutes on one core).
SOME_LESSONS = ["00_autograd.ipynb", "04_real_weights.ipynb", "10_lora.ipynb", "14_continual.ipynb", "18_dpo.ipynb"]


@pytest.mark.zoo
@pytest.mark.parametrize("lesson", LESSONS if os.environ.get("MINIFT_STANDIN_LESSONS") == "all" else SOME_LESSONS)
def test_a_lesson_runs_unchanged_with_cupy_standing_in(tmp_path, lesson):
    """What issue 8 asks of every lesson on a GPU: the same cells, no host array where a device one belongs."""
    done = _run("--lesson", str(ROOT / "lessons" / lesson), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith(f"ok {lesson}")


def test_the_lesson_list_is_the_lessons_folder():
    assert set(SOME_LESSONS) <= set(LESSONS) and len(LESSONS) >= 22
