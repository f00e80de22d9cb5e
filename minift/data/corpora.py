"""Readers for the zoo's text datasets, and the unlabeled corpus minift pretrains its tiny models on.

* VADER ground truth (Hutto & Gilbert, 2014): ``id<TAB>mean rating in [−4, 4]<TAB>text`` per line, CRLF.
* NER tweets: ``token<TAB>BIO-tag`` per line, a line holding only a tab between tweets.
"""
from __future__ import annotations

import numpy as np

from .. import zoo

SENTIMENT_SOURCES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}


def load_sentiment(source="movie"):
    """[(text, rating)] from one VADER file; label a snippet by the sign of its rating."""
    if source not in SENTIMENT_SOURCES:
        raise ValueError(f"source must be one of {sorted(SENTIMENT_SOURCES)}, got {source!r}")
    path = zoo.path("vader", SENTIMENT_SOURCES[source])
    rows = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected 'id<TAB>rating<TAB>text', got {line[:60]!r}")
            rows.append((parts[2].strip(), float(parts[1])))
    return rows


def load_ner():
    """[(tokens, tags)] — one pair of lists per tweet, tags in BIO form (``B-person``, ``I-person``, ``O``)."""
    path = zoo.path("ner", "ner.txt")
    out, toks, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                if toks:
                    out.append((toks, tags))
                toks, tags = [], []
                continue
            if "\t" not in line:
                raise ValueError(f"{path}:{n}: expected 'token<TAB>tag', got {line!r}")
            tok, tag = line.split("\t", 1)
            toks.append(tok)
            tags.append(tag.strip())
    if toks:
        out.append((toks, tags))
    return out


def pretraining_corpus(val_fraction=0.05, seed=0):
    """(train_texts, val_texts): every VADER snippet and every NER tweet, shuffled and split once.

    ~23,700 snippets and 2,394 tweets; the split is by document, so no validation text is seen in training.
    """
    texts = [t for src in SENTIMENT_SOURCES for t, _ in load_sentiment(src)]
    texts += [" ".join(toks) for toks, _ in load_ner()]
    texts = [t for t in texts if t]
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = max(1, int(len(texts) * val_fraction))
    val = [texts[i] for i in order[:n_val]]
    train = [texts[i] for i in order[n_val:]]
    return train, val
