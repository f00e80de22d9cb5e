"""minift checkpoints: ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``), written atomically.

Nothing is pickled. Tied weights (an LM head sharing the embedding matrix) are stored once; loading
ties them again because the model is built with the tie in place.

Atomic save: everything is written into a fresh sibling directory first; only when all files are complete
is it swapped in for the old one, so a crash during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np  # host-side only: files are written from host copies (backend.to_numpy)
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .. import backend


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the model; the message names the file."""


def unique_state(model) -> tuple[dict, dict]:
    """(state with each shared array once, {alias: kept name}) — tied parameters are saved a single time."""
    state, aliases, seen = {}, {}, {}
    for k, v in model.state_dict().items():
        if id(v) in seen:
            aliases[k] = seen[id(v)]
            continue
        seen[id(v)] = k
        state[k] = np.ascontiguousarray(backend.to_numpy(v))
    return state, aliases


def atomic_dir(final: Path):
    """Context manager yielding a temporary directory that replaces ``final`` when the block succeeds."""
    import contextlib

    @contextlib.contextmanager
    def _cm():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a checkpoint is an ordinary directory
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    return _cm()


def save_pretrained(model, path, tokenizer=None, extra_files: dict | None = None):
    """Write ``model`` (and its tokenizer) to directory ``path``: config.json, model.safetensors, tokenizer files."""
    path = Path(path)
    state, aliases = unique_state(model)
    config = {"format": "minift", "architecture": type(model).__name__, **model.config.to_dict()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "minift", "tied": json.dumps(aliases)})
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        if tokenizer is not None:
            tokenizer.save(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return path


def load_state(model, path):
    """Load ``model.safetensors`` from ``path`` into ``model`` (strict: every tensor used, every parameter set)."""
    file = Path(path) / "model.safetensors"
    if not file.exists():
        raise CheckpointError(f"{file} does not exist")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file: {e}") from None
    _, aliases = unique_state(model)
    for alias, kept in aliases.items():
        if kept in tensors and alias not in tensors:
            tensors[alias] = tensors[kept]
    try:
        model.load_state_dict(tensors, strict=True)
    except KeyError as e:
        raise CheckpointError(f"{file} does not fit {type(model).__name__}: {e.args[0]}") from None
    return model
