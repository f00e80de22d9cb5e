"""The checkpoints shipped in checkpoints/: complete, small, loadable offline, and their cards tell the truth."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import minift as mf

ROOT = Path(__file__).resolve().parents[1] / "checkpoints"
NAMES = ["tiny-gpt", "tiny-bert"]


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_is_complete_and_loads_without_network(name, monkeypatch):
    d = ROOT / name
    for f in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (d / f).exists(), f"{name} lacks {f}"
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # any download attempt would fail
    model = mf.models.from_pretrained(d)
    tok = mf.tokenization.from_pretrained(d)
    assert not model.training
    ids = np.array([tok.encode("the movie was great")])
    logits = model(ids).logits.numpy()
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size) and np.isfinite(logits).all()
    card = (d / "README.md").read_text()
    for needle in ("parameters", "validation perplexity", "training time", "## Data", "## Reproduce", f"--out checkpoints/{name}"):
        assert needle in card, f"{name} model card lacks {needle!r}"


def test_checkpoints_stay_under_30_mb():
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 30 * 2**20, f"checkpoints/ holds {total / 2**20:.1f} MiB"


@pytest.mark.zoo
@pytest.mark.parametrize("name", NAMES)
def test_model_card_perplexity_is_reproduced(name):
    """Re-evaluate on the held-out documents and on training text, as pretraining did, and compare with the
    card's two figures (their gap is what the model memorized)."""
    from minift.data import pretraining_corpus
    from minift.pretrain import PretrainConfig, perplexity, validation_batches

    d = ROOT / name
    card = (d / "README.md").read_text()
    stated = float(re.search(r"validation perplexity \| ([0-9.]+)", card).group(1))
    cfg_json = json.loads((d / "config.json").read_text())
    cfg = PretrainConfig(family=cfg_json["family"], seq_len=cfg_json["max_position_embeddings"])
    model, tok = mf.models.from_pretrained(d), mf.tokenization.from_pretrained(d)
    train, val = pretraining_corpus(seed=cfg.seed)
    assert perplexity(model, validation_batches(cfg, tok, val)) == pytest.approx(stated, rel=1e-3)
    on_train = float(re.search(r"; ([0-9.]+) on the same number of training", card).group(1))
    assert perplexity(model, validation_batches(cfg, tok, train)) == pytest.approx(on_train, abs=0.05)
    assert on_train < stated


def test_generate_command_is_greedy_and_reproducible_when_sampling(capsys):
    from minift.cli import main

    args = ["generate", str(ROOT / "tiny-gpt"), "the best movie", "--max-new-tokens", "12"]
    assert main(args) == 0 and main(args) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == second and len(first) > 0  # greedy decoding is deterministic
    assert main(args + ["--sample", "--top-k", "40", "--seed", "3"]) == 0
    assert main(args + ["--sample", "--top-k", "40", "--seed", "3"]) == 0
    a, b = capsys.readouterr().out.splitlines()
    assert a == b
