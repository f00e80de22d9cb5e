"""Training checkpoints: everything a run needs to continue exactly where it stopped.

    checkpoint-N/
      model.safetensors        the model's state (every parameter and buffer)
      optimizer.safetensors    the optimizer's arrays (AdamW's m and v), keyed "<param index>.<name>"
      optimizer.json           its parameter groups (lr, betas, …) and per-parameter step counts
      scheduler.json           the schedule's step counter and base learning rates
      rng_state.json           the state of minift's random generator (dropout), JSON
      trainer_state.json       global step, epoch, position in the epoch, log history, best metric

Safetensors + JSON only: nothing is pickled. The files are written through ``atomic_files``: a crash
during a save leaves the previous files intact. The data order needs no state: each epoch's permutation
is seeded by (seed, epoch), and ``trainer_state.json`` says how far into the epoch the run had come.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np  # host side: arrays are written from host copies
from safetensors.numpy import save_file

from .. import backend
from ..models.checkpoint import CheckpointError, atomic_files, read_json, read_safetensors
from .callbacks import TrainerState


def save_checkpoint(path, model, optimizer, scheduler, state: TrainerState):
    """Write ``checkpoint-N`` (see the module docstring) atomically; returns its path."""
    path = Path(path)
    model_state = {k: np.ascontiguousarray(backend.to_numpy(v)) for k, v in model.state_dict().items()}
    sd = optimizer.state_dict()
    arrays, scalars = {}, {}
    for index, entries in sd["state"].items():
        for name, value in entries.items():
            if hasattr(value, "shape") and getattr(value, "ndim", 0):
                arrays[f"{index}.{name}"] = np.ascontiguousarray(backend.to_numpy(value))
            else:
                scalars.setdefault(str(index), {})[name] = float(value) if not isinstance(value, int) else value
    rng_state = backend.rng_state()  # None on CuPy (see backend.rng_state)
    with atomic_files(path) as staging:
        save_file(_dedupe(model_state), str(staging / "model.safetensors"))
        save_file(arrays, str(staging / "optimizer.safetensors"))
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
        (staging / "optimizer.json").write_text(json.dumps({"param_groups": groups, "scalars": scalars}, indent=1))
        (staging / "scheduler.json").write_text(json.dumps(scheduler.state_dict(), indent=1))
        (staging / "rng_state.json").write_text(json.dumps({"minift": rng_state}))
        (staging / "trainer_state.json").write_text(json.dumps(state.to_dict(), indent=1))
    return path


def _dedupe(state):
    """Tied parameters (an LM head sharing the embedding) appear twice; safetensors wants each array once."""
    seen, out = {}, {}
    for k, v in state.items():
        key = (v.__array_interface__["data"][0], v.shape)
        if key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def load_checkpoint(path, model, optimizer, scheduler) -> TrainerState:
    """Restore model, optimizer, scheduler and random state from ``path``; returns the TrainerState."""
    path = Path(path)
    for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
                 "rng_state.json", "trainer_state.json"):
        if not (path / name).exists():
            raise CheckpointError(f"{path} is not a complete training checkpoint: {name} is missing")
    tensors = read_safetensors(path / "model.safetensors")
    own = model.state_dict()
    for k in own:  # a tied parameter stored once under its first name
        if k not in tensors:
            twin = next((t for t in own if t in tensors and own[t] is own[k]), None)
            if twin is not None:
                tensors[k] = tensors[twin]
    try:
        model.load_state_dict(tensors, strict=True)
    except KeyError as e:
        raise CheckpointError(f"{path / 'model.safetensors'} does not fit {type(model).__name__}: {e.args[0]}") from None
    arrays = read_safetensors(path / "optimizer.safetensors")
    name = "optimizer.json"  # the file being read, for the error below
    try:
        meta = read_json(path / name)
        state = {}
        for key, value in arrays.items():
            index, array_name = key.split(".", 1)
            state.setdefault(int(index), {})[array_name] = value
        for index, entries in meta["scalars"].items():
            state.setdefault(int(index), {}).update(entries)
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        name = "scheduler.json"
        scheduler.load_state_dict(read_json(path / name))
        name = "rng_state.json"
        backend.set_rng_state(read_json(path / name)["minift"])
        name = "trainer_state.json"
        return TrainerState(**read_json(path / name))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, CheckpointError):  # read_json's: already names the file
            raise
        raise CheckpointError(f"{path / name} does not hold what a minift training checkpoint writes there "
                              f"({type(e).__name__}: {e}); was it edited, or written by another program?") from None
