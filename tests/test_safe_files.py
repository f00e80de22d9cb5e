"""save_pretrained writes only its own files, each atomically, and tidies what killed saves left behind."""
import json
import os
import time

import numpy as np
import pytest

import minift as mf
from minift.models import TransformerConfig, TransformerForCausalLM, from_pretrained, save_pretrained
from minift.tokenization import train_tokenizer

OWN = {"config.json", "model.safetensors"}


def _model(seed=0):
    mf.seed(seed)
    c = TransformerConfig(family="llama", vocab_size=20, hidden_size=8, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, intermediate_size=16,
                          max_position_embeddings=16)
    return TransformerForCausalLM(c).eval()


def _logits(m):
    return m(np.array([[1, 2, 3]])).logits.numpy()


def _dead_pid():
    """A process id that is surely not running: a child that has already exited and been reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _checkpoint_at(path, seed):
    """A complete checkpoint at ``path``: what the old directory swap left under its temporary names."""
    save_pretrained(_model(seed), path)
    return path


def test_other_files_in_the_directory_are_left_alone(tmp_path):
    d = tmp_path / "run"
    (d / "logs").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes")
    (d / "logs" / "log.jsonl").write_text("{}\n")
    save_pretrained(_model(), d)
    save_pretrained(_model(1), d)  # a second save replaces the checkpoint's files, and only those
    assert (d / "notes.txt").read_text() == "my notes" and (d / "logs" / "log.jsonl").read_text() == "{}\n"
    assert {p.name for p in d.iterdir()} == OWN | {"notes.txt", "logs"}  # no temporary left behind
    np.testing.assert_array_equal(_logits(from_pretrained(d)), _logits(_model(1)))


def test_tokenizer_and_extra_files_are_written_next_to_the_weights(tmp_path):
    tok = train_tokenizer(["the cat sat on the mat"] * 20, "bpe", 40)
    save_pretrained(_model(), tmp_path / "ck", tokenizer=tok, extra_files={"README.md": "# card"})
    names = {p.name for p in (tmp_path / "ck").iterdir()}
    assert names == OWN | {"tokenizer.json", "tokenizer_config.json", "README.md"}
    assert mf.tokenization.from_pretrained(tmp_path / "ck").encode("the cat") == tok.encode("the cat")
    with pytest.raises(ValueError, match="extra file name 'sub/x.txt'"):
        save_pretrained(_model(), tmp_path / "ck", extra_files={"sub/x.txt": "no"})


def test_saving_into_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("keep")
    stale = tmp_path / "..tmp-q8w7e6r5"  # what the old save into "." left behind when it failed (EBUSY)
    stale.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    save_pretrained(_model(), ".")
    save_pretrained(_model(1), ".")
    assert {p.name for p in tmp_path.iterdir()} == OWN | {"keep.txt"}
    np.testing.assert_array_equal(_logits(from_pretrained(".")), _logits(_model(1)))


def test_a_crash_while_writing_keeps_every_previous_file(tmp_path):
    d = tmp_path / "ck"
    save_pretrained(_model(), d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}

    class BrokenTokenizer:  # fails half-way through its files, after the weights were written
        def _write(self, directory):
            (directory / "tokenizer.json").write_text("{half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pretrained(_model(1), d, tokenizer=BrokenTokenizer())
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_a_dead_saves_staging_directory_is_removed_and_a_live_ones_kept(tmp_path):
    d = tmp_path / "ck"
    save_pretrained(_model(), d)
    dead = d / f".minift-save-{_dead_pid()}-abc"
    live = d / f".minift-save-{os.getpid()}-xyz"
    for s in (dead, live):
        s.mkdir()
        (s / "model.safetensors").write_bytes(b"half")
    from_pretrained(d)  # loading tidies too
    assert not dead.exists() and live.exists()


def test_a_checkpoint_stranded_by_the_old_directory_swap_is_recovered(tmp_path):
    """The old save renamed ck → .ck.old-PID, then the new copy → ck; a crash in between lost ``ck``."""
    good = _checkpoint_at(tmp_path / "elsewhere", seed=3)
    stranded = tmp_path / f".ck.old-{_dead_pid()}"
    good.rename(stranded)
    half = tmp_path / ".ck.tmp-k2j4h1x9"  # the old scheme's staging directory (no PID in its name)
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half a file")
    old = time.time() - 2 * 3600
    os.utime(half, (old, old))
    back = from_pretrained(tmp_path / "ck")
    np.testing.assert_array_equal(_logits(back), _logits(_model(3)))
    assert {p.name for p in tmp_path.iterdir()} == {"ck"}


def test_old_swap_leftovers_next_to_a_complete_checkpoint_are_removed_on_save(tmp_path):
    d = tmp_path / "ck"
    save_pretrained(_model(), d)
    leftover = _checkpoint_at(tmp_path / f".ck.old-{_dead_pid()}", seed=1)
    running = _checkpoint_at(tmp_path / f".ck.old-{os.getpid()}", seed=2)  # a save still in progress
    stray = tmp_path / ".ck.tmp-abcdefgh"
    stray.mkdir()
    fresh = tmp_path / ".ck.tmp-ijklmnop"  # young: it may belong to a save running right now
    fresh.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    save_pretrained(_model(), d)
    assert not leftover.exists() and not stray.exists()
    assert running.exists() and fresh.exists()
    assert json.loads((d / "config.json").read_text())["format"] == "minift"


@pytest.mark.parametrize("layout", ["minift", "hf", "adapter", "training checkpoint"])
def test_a_truncated_safetensors_file_is_diagnosed_the_same_way_by_every_loader(tmp_path, layout):
    """One reader behind every loader: a file cut short is named, with what its header claims against what
    the file holds (the safetensors library's own message is only "invalid header length"), and no
    loader turns into a traceback or reads half a file."""
    from minift.models.checkpoint import CheckpointError
    from minift.peft import LoraConfig, PeftModel, get_peft_model

    model, d = _model(), tmp_path / "ck"
    if layout == "adapter":
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(d)
        file = d / "adapter_model.safetensors"
        load = lambda: PeftModel.from_pretrained(_model(), d)  # noqa: E731
    elif layout == "training checkpoint":
        load = _training_checkpoint(d, model)
        file = d / "optimizer.safetensors"
    else:
        save_pretrained(model, d, format=layout)
        file = d / "model.safetensors"
        load = lambda: from_pretrained(d)  # noqa: E731
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[:size // 2])  # a download or a copy cut off half-way
    claimed = int.from_bytes(file.read_bytes()[:8], "little")
    with pytest.raises(CheckpointError) as e:
        load()
    message = str(e.value)
    assert str(file) in message
    if claimed > size // 2 - 8:  # the header itself is cut
        assert f"claims {claimed:,} bytes of JSON, but the file has {size // 2 - 8:,}" in message
    else:  # the header is whole; a tensor's bytes are not
        assert "outside the" in message and "data bytes" in message


FULL_DISK = """
import resource, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_safe_files import _model
from minift.models import save_pretrained
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # no file over 2 kB: the weights cannot be written
try:
    save_pretrained(_model(1), {d!r})
except OSError as e:
    print(e)
"""


def test_a_save_that_runs_out_of_room_names_the_directory_and_keeps_the_old_files(tmp_path):
    """A real failed write (a file-size limit, as a full disk or a quota gives): the safetensors library's
    SafetensorError ("I/O error …") becomes an OSError naming the directory, the previous save is untouched."""
    import subprocess
    import sys
    from pathlib import Path

    d = tmp_path / "ck"
    save_pretrained(_model(0), d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    root = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", FULL_DISK.format(root=root, d=str(d))], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"cannot save into {d}: ") and "the files there are as they were" in run.stdout
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before  # no staging folder left, nothing changed


def _training_checkpoint(d, model):
    from minift.train.callbacks import TrainerState
    from minift.train.checkpointing import load_checkpoint, save_checkpoint

    opt = mf.optim.AdamW(model.parameters(), lr=1e-3)
    model(np.array([[1, 2, 3]]), labels=np.array([[1, 2, 3]])).loss.backward()
    opt.step()  # so that the optimizer has moments to save
    sched = mf.optim.get_scheduler("constant", opt, num_warmup_steps=0, num_training_steps=1)
    save_checkpoint(d, model, opt, sched, TrainerState(global_step=1))
    return lambda: load_checkpoint(d, model, opt, sched)


@pytest.mark.parametrize("damage", ["cut", "other JSON"])
@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "config.json", "adapter_config.json",
                                  "optimizer.json", "scheduler.json", "rng_state.json", "trainer_state.json"])
def test_a_damaged_json_file_is_named_by_every_loader(tmp_path, name, damage):
    """Each JSON file minift reads back, cut short (a copy stopped half-way) or holding other JSON (an edit, a
    file of another program): the error is a CheckpointError naming that file, never the tokenizers library's
    bare "EOF while parsing" or a KeyError from deep inside the loader."""
    from minift.models.checkpoint import CheckpointError
    from minift.peft import LoraConfig, PeftModel, get_peft_model

    model, d = _model(), tmp_path / "ck"
    if name.startswith("tokenizer"):
        tok = train_tokenizer(["a tiny corpus for a tiny tokenizer"] * 4, vocab_size=300)
        tok.save_pretrained(d)
        load = lambda: mf.tokenization.from_pretrained(d)  # noqa: E731
    elif name == "config.json":
        save_pretrained(model, d)
        load = lambda: from_pretrained(d)  # noqa: E731
    elif name == "adapter_config.json":
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(d)
        load = lambda: PeftModel.from_pretrained(_model(), d)  # noqa: E731
    else:
        load = _training_checkpoint(d, model)
    load()  # whole, it loads
    file = d / name
    if damage == "cut":
        file.write_text(file.read_text()[: len(file.read_text()) // 2])
    else:  # valid JSON, not what minift wrote: a list where an object was, or an object with other keys
        file.write_text("[1, 2]" if name in ("config.json", "tokenizer_config.json") else '{"written_by": "x"}')
    with pytest.raises(CheckpointError) as e:
        load()
    assert str(file) in str(e.value)


def test_saved_files_get_the_permissions_of_ordinary_files(tmp_path):
    """safetensors writes 0o600 and temporary files are private; a saved model must be readable by whoever
    the umask lets read it (a grader, a teammate), like any file the user writes."""
    mask = os.umask(0o022)
    os.umask(mask)
    save_pretrained(_model(), tmp_path / "ck")
    for f in (tmp_path / "ck").iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f.name
    mf.models.checkpoint.write_text_atomically(tmp_path / "r.json", "{}")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask
