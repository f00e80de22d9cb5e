"""Pretraining end to end on the real corpus, at toy size: the loss falls and the checkpoint reloads."""
import json

import numpy as np
import pytest

import minift as mf
from minift.data import load_ner, load_sentiment, pretraining_corpus
from minift.pretrain import PretrainConfig, causal_stream, mask_tokens, perplexity, pretrain, validation_batches
from minift.tokenization import train_tokenizer

pytestmark = pytest.mark.zoo


def test_corpora_parse_and_split_by_document():
    movie = load_sentiment("movie")
    assert len(movie) == 10605 and all(-4 <= r <= 4 for _, r in movie)
    ner = load_ner()
    assert len(ner) == 2394 and all(len(t) == len(g) for t, g in ner)
    tags = {g for _, gs in ner for g in gs}
    assert "B-person" in tags and "O" in tags and all(t == "O" or t[:2] in ("B-", "I-") for t in tags)
    train, val = pretraining_corpus()
    assert len(set(val) - set(train)) > 0.9 * len(set(val))  # (a few snippets occur twice in VADER)
    assert len(val) == int(0.05 * (len(train) + len(val)))


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_pretraining_lowers_validation_perplexity_and_writes_a_loadable_checkpoint(tmp_path, family):
    cfg = PretrainConfig(family=family, out=str(tmp_path / "ck"), log_dir=str(tmp_path / "log"), vocab_size=600,
                         hidden_size=32, num_hidden_layers=1, num_attention_heads=2, seq_len=32, batch_size=16,
                         steps=40, eval_every=20, eval_batches=4, warmup_steps=5, learning_rate=5e-3)
    model, tok, result = pretrain(cfg, quiet=True)
    assert result["val_perplexity"] < 0.75 * result["initial_val_perplexity"]
    back = mf.models.from_pretrained(tmp_path / "ck")
    back_tok = mf.tokenization.from_pretrained(tmp_path / "ck")
    ids = np.array([back_tok.encode("the movie was great")])[:, :16]
    np.testing.assert_allclose(back(ids).logits.numpy(), model.eval()(ids).logits.numpy(), atol=1e-6)
    card = (tmp_path / "ck" / "README.md").read_text()
    assert f"{result['val_perplexity']:.2f}" in card and "minift pretrain" in card and "VADER" in card
    # the card's second figure: the same measurement on the first documents of the training split
    train_texts, _ = pretraining_corpus(seed=cfg.seed)
    train_ppl = perplexity(model, validation_batches(cfg, tok, train_texts))
    assert result["train_perplexity"] == pytest.approx(train_ppl, rel=1e-9)
    assert f"{train_ppl:.1f} on the same number of training" in card and "## Why dropout" not in card  # dropout 0
    if family == "gpt2":  # steps × batch × context over the tokens of the training text
        stream = causal_stream(tok, train_texts)
        assert f"| passes over the training text | {40 * 16 * 32 / len(stream):.1f} (" in card
    log = [json.loads(line) for line in (tmp_path / "log" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41)) and "val_perplexity" in log[19]
    assert (tmp_path / "log" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_dropout_is_used_while_pretraining_and_the_checkpoint_ships_without_it(tmp_path):
    cfg = PretrainConfig(family="gpt2", out=str(tmp_path / "ck"), log_dir=str(tmp_path / "log"), vocab_size=400,
                         hidden_size=32, num_hidden_layers=1, num_attention_heads=2, seq_len=16, batch_size=4,
                         steps=3, eval_every=3, eval_batches=1, warmup_steps=1, dropout=0.3)
    model, tok, _ = pretrain(cfg, quiet=True)
    rates = [m.p for m in model.modules() if isinstance(m, mf.nn.Dropout)]
    assert rates and set(rates) == {0.3}  # embeddings and residual branches were dropped while training
    assert model.model.layers[0].attn.dropout_p == 0.3  # and the attention probabilities
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.0
    back = mf.models.from_pretrained(tmp_path / "ck").train()  # train mode, yet deterministic: no dropout
    ids = np.array([tok.encode("the movie was great")])
    np.testing.assert_array_equal(back(ids).logits.numpy(), back(ids).logits.numpy())
    card = (tmp_path / "ck" / "README.md").read_text()
    assert "| dropout | 0.3 while pretraining" in card and "## Why dropout" in card and "Dropout 0.3" in card


def test_bert_masking_follows_the_80_10_10_recipe():
    tok = train_tokenizer(["the cat sat on the mat"] * 50 + ["a dog ran far away"] * 50, "wordpiece", 100)
    enc = tok(["the cat sat on the mat a dog ran far away"] * 400, padding="max_length", max_length=16)
    ids, attn = enc["input_ids"], enc["attention_mask"]
    x, y = mask_tokens(ids, attn, tok, 0.15, np.random.default_rng(0))
    chosen = y != -100
    maskable = ~np.isin(ids, tok.all_special_ids) & (attn == 1)
    assert not (chosen & ~maskable).any()
    assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.01
    assert abs((x[chosen] == tok.mask_token_id).mean() - 0.8) < 0.03
    assert abs((x[chosen] == ids[chosen]).mean() - 0.1) < 0.03 + 0.01  # kept (random may also hit the same id)
    np.testing.assert_array_equal(y[chosen], ids[chosen])


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    c = mf.models.TransformerConfig(family="gpt2", vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    m = mf.models.TransformerForCausalLM(c)
    for p in m.parameters():  # all-zero weights: every logit 0, so p = 1/V for every token
        p.data[...] = 0
    ids = np.random.default_rng(0).integers(0, 50, (3, 10))
    assert perplexity(m, [(ids, None, ids)]) == pytest.approx(50.0)


def test_cli_reads_a_config_file_and_flags_override_it(tmp_path, capsys):
    from minift.cli import main

    cfg = {"family": "llama", "vocab_size": 400, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "seq_len": 16, "batch_size": 4, "steps": 50, "eval_every": 5, "eval_batches": 1, "warmup_steps": 1}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    out = tmp_path / "ck"
    assert main(["pretrain", "--config", str(tmp_path / "c.json"), "--steps", "5", "--out", str(out),
                 "--log-dir", str(tmp_path / "log")]) == 0
    log = (tmp_path / "log" / "log.jsonl").read_text().splitlines()
    assert len([r for r in map(json.loads, log) if "loss" in r]) == 5  # the flag beat the file's 50
    assert json.loads((out / "config.json").read_text())["family"] == "llama"
    assert "--config" in (out / "README.md").read_text()  # the card records the command as given
    (tmp_path / "bad.json").write_text(json.dumps({"familly": "gpt2"}))
    capsys.readouterr()  # the successful run's progress output
    assert main(["pretrain", "--config", str(tmp_path / "bad.json")]) == 2  # one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json: unknown pretraining options ['familly']" in err[0]


@pytest.mark.parametrize("content, words", [
    ('{"batch_size": 0}', ["batch_size (--batch-size) must be >= 1, got 0"]),
    ('{"batch_size": "32"}', ["batch_size (--batch-size) must be an integer, got '32'"]),
    ('{"learning_rate": -1}', ["learning_rate (--learning-rate) must be > 0, got -1"]),
    ('{"hidden_size": 100, "num_attention_heads": 3}',
     ["hidden_size (--hidden-size) 100 must be a multiple of num_attention_heads (--num-attention-heads) 3"]),
    ('{"learning_rate": "fast"}', ["learning_rate (--learning-rate) must be a finite number"]),
    ('{"steps": 10,}', ["not valid JSON at line 1"]),
    ('{"dropout": 1.0}', ["dropout (--dropout) must be in [0, 1), got 1.0"]),
    ('{"vocab_size": 5}', ["vocab_size 5 is smaller than byte-level BPE's alphabet", "258"]),
    ('[1, 2]', ["expected a JSON object"]),
])
def test_bad_config_files_are_caught_before_work_and_name_the_file(tmp_path, capsys, content, words):
    from minift.cli import main

    (tmp_path / "c.json").write_text(content)
    assert main(["pretrain", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "c.json") in err[0]
    for w in words:
        assert w in err[0]
    assert not (tmp_path / "o").exists()


def test_bad_numeric_flags_are_caught_before_work(tmp_path, capsys):
    from minift.cli import main

    assert main(["pretrain", "--batch-size", "0", "--out", str(tmp_path / "o")]) == 2
    assert "batch_size (--batch-size) must be >= 1, got 0" in capsys.readouterr().err
    assert main(["pretrain", "--steps", "ten", "--out", str(tmp_path / "o")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- output directories
@pytest.fixture
def no_training(monkeypatch):
    """Make any attempt to start training fail loudly: these checks must come before the first step."""
    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr("minift.data.pretraining_corpus", boom)


def test_an_unwritable_out_is_refused_before_training(tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # even root cannot create a directory below a file
    with pytest.raises(OSError, match=r"cannot use .*a-file/ck as the checkpoint directory: .*a-file is a file"):
        pretrain(PretrainConfig(out=str(blocker / "ck"), log_dir=str(tmp_path / "log")), quiet=True)
    with pytest.raises(OSError, match=r"cannot use .*a-file/log as the log directory: .*a-file is a file; .*--log-dir"):
        pretrain(PretrainConfig(out=str(tmp_path / "ck"), log_dir=str(blocker / "log")), quiet=True)


def test_a_pretrain_refused_for_its_log_dir_leaves_no_empty_out_behind(tmp_path, capsys, no_training):
    """A --log-dir below a file is a usage error, found before the checkpoint directory is made (exit 2); from
    Python, the checkpoint directory is checked (and so created) first, and the command line takes a new, still
    empty one back when a later check fails, as every command does (test_cli)."""
    from minift.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = tmp_path / "new" / "ck"
    assert main(["pretrain", "--steps", "2", "--out", str(out), "--log-dir", str(blocker / "log")]) == 2
    assert f"--log-dir {blocker / 'log'} cannot be a directory: {blocker} is a file" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_pretrain_overwrite_that_fails_names_the_earlier_result_json_it_did_not_replace(tmp_path, capsys):
    from minift.cli import main

    cfg = {"family": "llama", "vocab_size": 300, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
           "seq_len": 16, "batch_size": 4, "steps": 30, "eval_every": 30, "eval_batches": 1, "warmup_steps": 0}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    log = tmp_path / "log"
    log.mkdir()
    (log / "result.json").write_text("the earlier run's")
    (log / "log.jsonl").write_text("the earlier run's")
    rc = main(["pretrain", "--config", str(tmp_path / "c.json"), "--learning-rate", "1e6", "--out",
               str(tmp_path / "ck"), "--log-dir", str(log), "--overwrite"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and "the loss is" in last and f"({log / 'result.json'} is still the earlier run's" in last
    assert (log / "result.json").read_text() == "the earlier run's" != (log / "log.jsonl").read_text()


def test_a_log_dir_that_holds_another_runs_results_is_refused_without_overwrite(tmp_path, capsys, monkeypatch):
    """The log directory defaults to runs/<name of out>: a fine-tuning run may live there (its results.json,
    log.jsonl, loss.png), and pretraining must not write its own log over that run's without --overwrite."""
    from pathlib import Path

    from minift.cli import main

    monkeypatch.chdir(tmp_path)
    judge = tmp_path / "runs" / "judge"
    judge.mkdir(parents=True)
    for name in ("results.json", "log.jsonl", "loss.png"):
        (judge / name).write_text(f"the fine-tuning run's {name}")
    rc = main(["pretrain", "--steps", "2", "--out", str(tmp_path / "out" / "judge")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0] == (
        f"minift: --log-dir {Path('runs') / 'judge'} already holds the results of a run (results.json): pass "
        "--overwrite to replace them, or choose another --log-dir")
    assert all((judge / n).read_text() == f"the fine-tuning run's {n}" for n in ("results.json", "log.jsonl", "loss.png"))
    assert not (tmp_path / "out").exists()


def test_the_shipped_checkpoints_are_not_overwritten_without_asking(tmp_path, monkeypatch, no_training):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    shipped = Path(mf.__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    with pytest.raises(FileExistsError, match=r"checkpoints/tiny-gpt.*--overwrite"):
        pretrain(PretrainConfig(out=str(shipped)), quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before


def test_the_default_out_depends_on_the_family_and_is_not_a_shipped_checkpoint():
    from pathlib import Path

    from minift.pretrain import output_dirs

    assert PretrainConfig().out is None
    default = output_dirs(PretrainConfig(family="bert"))
    assert default == (Path("out/pretrain-bert"), Path("runs/pretrain-bert"))
    assert output_dirs(PretrainConfig(out="x/ck")) == (Path("x/ck"), Path("runs/ck"))  # as documented


def test_perplexity_leaves_the_model_in_the_mode_it_found_it():
    import numpy as np

    import minift as mf
    from minift.pretrain import perplexity

    cfg = mf.models.TransformerConfig(family="gpt2", vocab_size=20, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=8)
    model = mf.models.TransformerForCausalLM(cfg)
    ids = np.arange(6).reshape(1, 6) % 20
    for training in (False, True):
        model.train(training)
        assert perplexity(model, [(ids, None, ids)]) > 1
        assert model.training is training
