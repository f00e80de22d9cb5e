"""minift checkpoints: ``config.json`` + ``model.safetensors`` (+ tokenizer files), each written atomically.

Nothing is pickled. Tied weights (an LM head sharing the embedding matrix) are stored once; loading
ties them again because the model is built with the tie in place.

Safe writes. A checkpoint directory may hold other things too (logs, notes, a run's plots), so a save
touches only the files it writes; everything else in the directory stays as it was. Each file is first
written in full into a private staging directory *inside* the target (so the final rename never crosses a
file system), flushed to disk (fsync), and only then renamed over the old file with ``os.replace``, which
is atomic: a reader sees the old file or the new one, never half of one. A crash while files are being
written leaves every previous file intact. The one window left is the few renames at the very end: a crash
between two of them leaves some new and some old files. The order narrows that window's harm: the weights
go first and ``config.json`` (what makes a directory loadable) last.

Leftovers. A killed save leaves its staging directory ``.minift-save-<pid>-…``; the next save or load of
the same directory removes it once that process is gone. Older minift versions swapped whole directories
(``.NAME.tmp-…`` then ``.NAME.old-<pid>``); their leftovers are tidied the same way, and a checkpoint
stranded as ``.NAME.old-<pid>`` by a crash between the two renames is moved back to ``NAME``.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np  # host-side only: files are written from host copies (backend.to_numpy)
from safetensors import SafetensorError
from safetensors.numpy import save_file

from .. import backend


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the model; the message names the file."""


# ----------------------------------------------------------------------------- reading JSON
def read_json(file) -> dict:
    """A JSON file of a checkpoint as a dict; an error that names the file when it is missing or is not a JSON
    object. The one reader of config.json, tokenizer_config.json, adapter_config.json and the trainer's files."""
    file = Path(file)
    try:
        value = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{file} should hold a JSON object, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------- reading safetensors
SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                        "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit


def read_safetensors_header(file) -> tuple[dict, dict]:
    """(tensors {name: {dtype, shape, bytes, offsets}}, metadata) from the header alone, every entry checked.

    Layout: ``u64 N`` (little-endian), N bytes of JSON, data. bytes = end − start = ∏ shape × itemsize.
    """
    file = Path(file)
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file}: {size} bytes, too short for a safetensors file (8-byte header length "
                               "first)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{file}: corrupt safetensors header: it claims {n:,} bytes of JSON, but the file "
                               f"has {size - 8:,} bytes after the length")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: corrupt safetensors header: not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: corrupt safetensors header: a JSON {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - n
    tensors = {}
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{file}: corrupt safetensors header: entry {name!r} is {info!r}, expected "
                               "{dtype, shape, data_offsets: [start, end]}") from None
        if not 0 <= start <= end <= data_bytes:
            raise CheckpointError(f"{file}: corrupt safetensors header: {name} has data_offsets [{start}, {end}], "
                               f"outside the {data_bytes:,} data bytes")
        itemsize = SAFETENSORS_ITEMSIZE.get(dtype)
        if itemsize is not None and end - start != math.prod(shape) * itemsize:
            raise CheckpointError(f"{file}: corrupt safetensors header: {name} is {dtype} {shape} "
                               f"(= {math.prod(shape) * itemsize} bytes) but data_offsets span {end - start}")
        tensors[name] = {"name": name, "shape": shape, "dtype": dtype, "bytes": end - start, "file": file.name}
    return tensors, metadata


def read_safetensors(file) -> dict:
    """{name: NumPy array} of the safetensors ``file``, bfloat16 widened to float32: how minift reads weights.

    The format: 8 bytes (little-endian length N), N bytes of JSON {name: {dtype, shape, data_offsets}}, then
    the data. NumPy has no bfloat16, so those tensors are decoded here: a bfloat16 is the top 16 bits of a
    float32, so shifting each 16-bit pattern left by 16 gives the float32 with the same value.

    The library's own errors do not name the file and say little ("invalid header length"), so an unreadable
    file is checked again by ``read_safetensors_header``, whose message says what is wrong (a header longer
    than the file, JSON that does not parse, offsets outside the data); a file of the zoo cache also gets
    the command that replaces it with a verified copy.
    """
    try:
        return _read_tensors(file)
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, struct.error) as e:
        try:
            read_safetensors_header(file)
            why = f"{file} is not a readable safetensors file: {e}"
        except CheckpointError as bad:  # the header check names the fault
            why = str(bad)
        except OSError as bad:
            why = f"{file} cannot be read: {bad}"
        raise CheckpointError(why + repair_hint(file)) from None


def _read_tensors(file) -> dict:
    from safetensors import safe_open

    out = {}
    with safe_open(str(file), framework="numpy") as f:
        for name in f.keys():
            try:
                out[name] = f.get_tensor(name)
            except TypeError:  # NumPy cannot represent this dtype: bfloat16
                out[name] = None
    if any(v is None for v in out.values()):
        raw = Path(file).read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        for name in [k for k, v in out.items() if v is None]:
            info = header[name]
            if info["dtype"] != "BF16":
                raise CheckpointError(f"{file}: tensor {name} has dtype {info['dtype']}, which minift cannot read")
            start, end = info["data_offsets"]
            bits = np.frombuffer(raw[8 + n + start:8 + n + end], dtype="<u2").astype(np.uint32) << 16  # (numel,)
            out[name] = bits.view(np.float32).reshape(info["shape"])  # (numel,) -> the shape in the header
    return out


def repair_hint(file) -> str:
    """For a file in the zoo cache: the command that replaces it with a verified copy; otherwise ""."""
    from .. import zoo

    name = zoo.cached_artifact_of(file)
    return f"; it is a cached zoo file: re-run `minift download {name} --force`" if name else ""


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


# ----------------------------------------------------------------------------- atomic files
STAGING_PREFIX = ".minift-save-"
OLD_SCHEME_GRACE_SECONDS = 3600  # an old-style staging directory this young may belong to a running save
# Renamed first → last: the weights first, config.json (what makes a directory loadable) last.
FIRST, LAST = ("model.safetensors",), ("config.json",)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it just belongs to someone else
        return True
    except OSError:
        return True  # unsure (e.g. an odd platform): keep its files rather than delete a live save's
    return True


def _fsync_file(path: Path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path):
    """Make the renames themselves durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:  # removed meanwhile by another process
        return 0.0


def _rename_order(name: str):
    return (0 if name in FIRST else 2 if name in LAST else 1, name)


def _file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the umask (temporary files start at 0o600)."""
    mask = os.umask(0o022)  # reading the umask means setting it; put back at once
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once, at import: setting the umask is not thread-safe


def write_text_atomically(path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half of one.

    A temporary file in the same directory (so the rename never crosses a file system), flushed to disk,
    given the permissions an ordinary new file would have (temporary files are private: 0o600), then
    renamed over ``path``. On any failure the temporary file is removed and ``path`` is as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_output_file(path, flag: str) -> Path:
    """Before any long work: ``path`` can be written as a file (``flag`` names the option in the message)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; give a file name, e.g. {path / 'report.json'}")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {path}: cannot write there (permission denied); choose another file")
    return path


@contextlib.contextmanager
def atomic_files(directory):
    """Yield a staging directory; on success each file written there replaces its namesake in ``directory``.

    ``directory`` is created if missing. Only the staged files are touched in ``directory``. If the block
    raises, the staging directory is deleted and ``directory`` is exactly as before.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; expected a directory to save the checkpoint into")
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=directory))
    try:
        try:
            yield staging
        except (OSError, SafetensorError) as e:  # a full disk, a quota: name the place, not the staging file
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise OSError(f"cannot save into {directory}: {reason}; the files there are as they were") from e
        names = sorted((p.name for p in staging.iterdir()), key=_rename_order)
        for name in names:  # every file complete and on disk before any of them is swapped in
            _fsync_file(staging / name)
            os.chmod(staging / name, FILE_MODE)  # safetensors writes 0o600; a grader must be able to read it
        for name in names:
            os.replace(staging / name, directory / name)
        _fsync_dir(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tidy_leftovers(directory) -> list[str]:
    """Clean up after saves that were killed; returns what was done, one line each (best effort).

    - ``DIR/.minift-save-<pid>-…`` whose process is gone: removed (a staging directory of this module).
    - Old minift (whole-directory swap): ``.DIR.old-<pid>`` with its process gone is moved back to ``DIR``
      if ``DIR`` is missing (a crash between the two renames stranded the checkpoint there), else removed;
      ``.DIR.tmp-…`` staging directories (no pid in their name) are removed once an hour old, and so is
      ``DIR/..tmp-…``, which saving into ``"."`` used to leave.
    Errors (a read-only directory, a race with another process) are ignored: tidying is never the reason
    a save or a load fails.
    """
    done = []
    try:
        _tidy(Path(directory).resolve(), done)
    except OSError:
        pass
    return done


def _tidy(d: Path, done: list):

    def remove(p: Path, why: str):
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            done.append(f"removed {p} ({why})")
        except OSError:
            pass

    if d.is_dir():
        for p in d.glob(STAGING_PREFIX + "*"):
            m = re.match(re.escape(STAGING_PREFIX) + r"(\d+)-", p.name)
            if m and not _pid_alive(int(m.group(1))):
                remove(p, "staging directory of a save that was killed")
    now = time.time()
    parent = d.parent
    old_style_staging = list(parent.glob(f".{glob.escape(d.name)}.tmp-*"))
    if d.is_dir():
        old_style_staging += d.glob("..tmp-*")
    for p in old_style_staging:
        if now - _mtime(p) > OLD_SCHEME_GRACE_SECONDS:
            remove(p, "staging directory left by an older minift")
    stranded = []
    for p in parent.glob(f".{glob.escape(d.name)}.old-*"):
        m = re.fullmatch(rf"\.{re.escape(d.name)}\.old-(\d+)", p.name)
        if m and not _pid_alive(int(m.group(1))):
            stranded.append(p)
    stranded.sort(key=_mtime, reverse=True)  # the newest is the latest checkpoint
    if stranded and not d.exists() and (stranded[0] / "config.json").exists():
        try:
            os.replace(stranded[0], d)
            done.append(f"recovered {d} from {stranded[0].name} (an interrupted save of an older minift)")
            stranded = stranded[1:]
        except OSError:
            pass
    if d.exists():
        for p in stranded:
            remove(p, "previous copy left by an interrupted save of an older minift")


def save_pretrained(model, path, tokenizer=None, extra_files: dict | None = None, format: str = "minift"):
    """Write ``model`` (and its tokenizer) into directory ``path``, created if missing.

    Files written: config.json, model.safetensors, the tokenizer's files (tokenizer.json,
    tokenizer_config.json) and ``extra_files`` ({file name: text}, e.g. a model card). Any other file in
    ``path`` is left alone — including a tokenizer from an earlier save when this one has none. Each file
    is replaced atomically; see the module docstring for what a crash can and cannot leave behind.

    ``format="minift"`` (default): minift's own names and config fields. ``format="hf"``: Hugging Face's
    layout — config.json with ``model_type`` and ``architectures``, HF tensor names — which
    ``transformers``' Auto classes load directly; see ``minift.models.hf`` for what maps to what.
    """
    if format not in ("minift", "hf"):
        raise ValueError(f"format must be 'minift' or 'hf', got {format!r}")
    path = Path(path)
    for name in extra_files or {}:
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"extra file name {name!r}: expected a plain file name such as 'README.md'")
    if format == "hf":
        from .hf import hf_checkpoint, write_hf_tokenizer_config

        state, config, metadata = hf_checkpoint(model)
    else:
        state, aliases = unique_state(model)
        config = {"format": "minift", "architecture": type(model).__name__, **model.config.to_dict()}
        metadata = {"format": "minift", "tied": json.dumps(aliases)}
    tidy_leftovers(path)
    with atomic_files(path) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata=metadata)
        if tokenizer is not None:
            tokenizer._write(tmp)
            if format == "hf":
                write_hf_tokenizer_config(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
    return path


# weight files of other frameworks that minift never opens: it reads safetensors only (a .bin is a pickle,
# and unpickling runs whatever code the file names)
UNSAFE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def missing_weights_error(directory, expected) -> CheckpointError:
    """The error for a model directory without ``expected``: it names a pickled weight file when one is there."""
    directory = Path(directory)
    found = [name for name in UNSAFE_WEIGHTS if (directory / name).exists()]
    if found:
        return CheckpointError(
            f"{directory} has {found[0]} but no model.safetensors: minift reads safetensors only and never "
            "unpickles a .bin file (unpickling can run arbitrary code). Convert it once, where you trust "
            "it, with transformers: model.save_pretrained(dir, safe_serialization=True)")
    return CheckpointError(f"{expected} does not exist")


def load_state(model, path):
    """Load ``path/model.safetensors`` into ``model`` (strict: every tensor used, every parameter set)."""
    file = Path(path) / "model.safetensors"
    if not file.exists():
        raise missing_weights_error(path, file)
    tensors = read_safetensors(file)
    _, aliases = unique_state(model)
    for alias, kept in aliases.items():
        if kept in tensors and alias not in tensors:
            tensors[alias] = tensors[kept]
    try:
        model.load_state_dict(tensors, strict=True)
    except KeyError as e:
        raise CheckpointError(f"{file} does not fit {type(model).__name__}: {e.args[0]}") from None
    return model
