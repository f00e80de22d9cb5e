"""Preference pairs derived from the VADER snippets' human ratings: each pair's chosen text is rated higher by at
least min_margin, the pairs are disjoint and drawn within one split, and the draw depends on the seed alone."""
import pytest

from minift.data.tasks import load_dataset
from minift.rlhf.preference_data import pair_by_rating, preference_dataset, ratings


def test_pairs_by_hand():
    table = {"a": 3.0, "b": -1.0, "c": 0.5, "d": 0.9}
    rows = pair_by_rating(["a", "b", "c", "d"], table, min_margin=0.0, seed=0, prompt="P")
    assert len(rows) == 2 and all(r["prompt"] == "P" for r in rows)
    texts = [r[k].strip() for r in rows for k in ("chosen", "rejected")]
    assert sorted(texts) == ["a", "b", "c", "d"]  # disjoint and complete
    for r in rows:
        assert r["chosen"].startswith(" ") and r["rejected"].startswith(" ")  # BPE: the space joins the word after it
        assert table[r["chosen"].strip()] == r["chosen_rating"] > r["rejected_rating"] == table[r["rejected"].strip()]
        assert r["margin"] == pytest.approx(r["chosen_rating"] - r["rejected_rating"])


def test_min_margin_drops_unclear_pairs_and_ties():
    table = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.5}
    for seed in range(6):
        rows = pair_by_rating(list(table), table, min_margin=0.0, seed=seed)
        assert all(r["margin"] > 0 for r in rows)  # a tie is no preference
        strict = pair_by_rating(list(table), table, min_margin=0.75, seed=seed)
        assert all(r["margin"] >= 0.75 for r in strict) and len(strict) <= len(rows)


def test_real_pairs_are_within_their_split_ranked_and_disjoint():
    data = load_dataset("sentiment")
    table = ratings("sentiment")
    train = preference_dataset("sentiment", "train", min_margin=1.0)
    test = preference_dataset("sentiment", "test", min_margin=1.0)
    train_texts, test_texts = set(data["train"]["text"]), set(data["test"]["text"])
    assert len(train) > 1000 and len(test) > 100
    for rows, texts in ((train, train_texts), (test, test_texts)):
        used = [r[k][1:] for r in rows for k in ("chosen", "rejected")]
        assert len(used) == len(set(used)) and set(used) <= texts  # disjoint pairs, from this split only
        for r in rows:
            assert table[r["chosen"][1:]] - table[r["rejected"][1:]] == pytest.approx(r["margin"]) and r["margin"] >= 1.0
    assert preference_dataset("sentiment", "train", limit=5) == train[:5]
    assert preference_dataset("sentiment", "train", seed=1)[:20] != train[:20]  # the seed picks the pairs
    assert preference_dataset("sentiment", "train", seed=0) == train  # … and only the seed


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "imdb"}, "unknown source 'imdb'"),
    ({"split": "dev"}, "split must be one of"),
    ({"limit": 0}, "limit must be None or an integer >= 1"),
    ({"min_margin": -1}, "min_margin must be a finite number >= 0"),
    ({"min_margin": float("nan")}, "min_margin must be a finite number >= 0"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        preference_dataset(**kwargs)
