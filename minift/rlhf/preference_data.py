"""Preference pairs built from data that has none: texts ranked by their human rating.

No preference data set is available offline, so pairs are DERIVED: the VADER snippets carry the mean rating
of ten human raters (−4 … +4), and of two snippets the one rated higher is "chosen", the other "rejected".
A pair is kept only if the ratings differ by at least ``min_margin`` (two snippets rated 1.1 and 1.2 say
little about which is better). Each split's pairs come from that split of ``load_dataset(source)`` alone,
so no held-out text was trained on.

    row = {"prompt": prompt, "chosen": " " + text_hi, "rejected": " " + text_lo,
           "chosen_rating": r_hi, "rejected_rating": r_lo, "margin": r_hi − r_lo}

The completions start with a space: a BPE tokenizer joins a space to the word after it, so " great" after a
prompt tokenizes as it would in running text (see ``sft_example``).
"""
from __future__ import annotations

import numpy as np  # host-side: text data and a seeded draw of the pairs

from ..data.corpora import load_sentiment
from ..data.tasks import SENTIMENT_SOURCES, load_dataset

SPLITS = ("train", "validation", "test")


def ratings(source="sentiment"):
    """{text: mean human rating} of a sentiment data set (the first rating of a text that repeats, as
    ``load_dataset`` keeps it)."""
    if source not in SENTIMENT_SOURCES:
        raise ValueError(f"unknown source {source!r}; preference pairs come from {sorted(SENTIMENT_SOURCES)}")
    table = {}
    for text, rating in load_sentiment(SENTIMENT_SOURCES[source]):
        table.setdefault(text, rating)
    return table


def pair_by_rating(texts, text_ratings, min_margin=1.0, seed=0, prompt=""):
    """Disjoint pairs of ``texts``: shuffled with ``seed`` and taken two by two, the higher-rated one chosen;
    pairs whose ratings differ by less than ``min_margin`` are dropped. Each text is in at most one pair."""
    if not (isinstance(min_margin, (int, float)) and np.isfinite(min_margin) and min_margin >= 0):
        raise ValueError(f"min_margin must be a finite number >= 0 (a rating difference), got {min_margin!r}")
    order = np.random.default_rng(seed).permutation(len(texts))
    rows = []
    for a, b in zip(order[0::2], order[1::2]):
        ta, tb = texts[a], texts[b]
        ra, rb = text_ratings[ta], text_ratings[tb]
        if ra < rb:
            (ta, ra), (tb, rb) = (tb, rb), (ta, ra)
        if ra - rb >= min_margin and ra > rb:  # a tie is no preference, whatever min_margin says
            rows.append({"prompt": prompt, "chosen": " " + ta, "rejected": " " + tb, "chosen_rating": float(ra),
                         "rejected_rating": float(rb), "margin": float(ra - rb)})
    return rows


def preference_dataset(source="sentiment", split="train", limit=None, min_margin=1.0, seed=0, prompt=""):
    """Preference rows ``{"prompt", "chosen", "rejected", "chosen_rating", "rejected_rating", "margin"}`` from
    ``load_dataset(source)[split]``, ranked by the human ratings (``pair_by_rating``); the first ``limit``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    text_ratings = ratings(source)  # checks the source's name first
    texts = load_dataset(source)[split]["text"]
    rows = pair_by_rating(list(texts), text_ratings, min_margin=min_margin, seed=seed, prompt=prompt)
    return rows if limit is None else rows[:limit]


__all__ = ["pair_by_rating", "preference_dataset", "ratings"]
