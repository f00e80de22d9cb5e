"""What the benchmark scripts share: running each framework's worker in a subprocess, interleaved rounds.

A shared 2-core machine's speed drifts by ±15% over a minute. Running minift and PyTorch one after the
other, several rounds in alternation, and keeping each one's median round makes the ratio between them
far steadier than one run of each.
"""
from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time


def thread_env(threads):
    """The environment of a worker: the same number of BLAS / OpenMP / minift threads for everyone."""
    n = str(threads)
    return dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, MINIFT_NUM_THREADS=n)


def available(*modules):
    """Whether every module is installed (PyTorch rows are optional). Found, not imported: the workers
    are started from this process, and must not begin with PyTorch's memory in their peak RSS."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def run_rounds(script, workers, args, threads, rounds, key="ms_per_step", last_extra=()):
    """{worker: its median round (by ``key``)} after ``rounds`` alternating runs of ``script --worker W args``.

    ``last_extra`` is added to the arguments of each worker's last round (e.g. ``--profile``).
    A worker that fails stops the benchmark with its stderr.
    """
    results = {w: [] for w in workers}
    for r in range(rounds):
        for w in workers:
            cmd = [sys.executable, script, "--worker", w, *args, *(last_extra if r == rounds - 1 else ())]
            out = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {w} worker failed:\n{out.stderr}")
            results[w].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {}
    for w, runs in results.items():
        ordered = sorted(runs, key=lambda res: res[key])
        row = dict(ordered[len(ordered) // 2])
        row["rounds"] = [res[key] for res in runs]
        row.update({k: v for k, v in runs[-1].items() if k == "profile"})
        rows[w] = row
    return rows


def torch_device():
    """"cuda" when minift runs on CuPy and PyTorch sees a GPU (so both run on it), else "cpu"."""
    import torch

    return "cuda" if os.environ.get("MINIFT_BACKEND") == "cupy" and torch.cuda.is_available() else "cpu"


def torch_sync(device):
    """Wait for queued CUDA work before reading a timer (nothing on the CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def rss_mb():
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step, steps):
    """The median wall time of ``steps`` calls of ``step`` after two warm-up calls, in seconds."""
    step()
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
