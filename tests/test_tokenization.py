"""Tokenizers trained here: round trips, padding sides, truncation, save/load, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minift.tokenization import Tokenizer, train_tokenizer

CORPUS = [
    "the movie was great and the acting was superb",
    "a dull, lifeless film with no surprises",
    "I loved every minute of it!",
    "worst movie of the year... 2/10",
    "Empire State Building at night #nyc",
] * 20


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(CORPUS, kind="bpe", vocab_size=400)


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(CORPUS, kind="wordpiece", vocab_size=200)


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=0, max_size=40))
def test_byte_level_bpe_round_trips_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_wordpiece_adds_cls_sep_and_lowercases(wordpiece):
    ids = wordpiece.encode("The MOVIE was great")
    toks = wordpiece.convert_ids_to_tokens(ids)
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert wordpiece.decode(ids, skip_special_tokens=True) == "the movie was great"
    pair = wordpiece("great movie", text_pair="dull film")
    assert pair["token_type_ids"][0].tolist().count(1) == len(wordpiece.encode("dull film", add_special_tokens=False)) + 1


def test_padding_right_and_left_with_masks(bpe):
    right = bpe(["a", "the movie was great"], padding=True)
    left = bpe(["a", "the movie was great"], padding=True, padding_side="left")
    n = right["input_ids"].shape[1]
    assert right["input_ids"].dtype == np.int64 and right["input_ids"].shape == left["input_ids"].shape
    short = bpe.encode("a")
    assert right["input_ids"][0, : len(short)].tolist() == short and right["attention_mask"][0].sum() == len(short)
    assert left["input_ids"][0, n - len(short):].tolist() == short and left["attention_mask"][0, : n - len(short)].sum() == 0
    assert (right["input_ids"][0, len(short):] == bpe.pad_token_id).all()
    unpadded = bpe(["a", "the movie was great"])
    assert isinstance(unpadded["input_ids"], list)


def test_truncation_keeps_the_closing_special_token(wordpiece):
    enc = wordpiece(["the movie was great and the acting was superb"], truncation=True, max_length=5)
    toks = wordpiece.convert_ids_to_tokens(enc["input_ids"][0])
    assert len(toks) == 5 and toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    with pytest.raises(ValueError, match="max_length"):
        wordpiece(["x"], truncation=True)
    fixed = wordpiece(["great"], padding="max_length", max_length=8)
    assert fixed["input_ids"].shape == (1, 8)


def test_save_and_load_round_trip(tmp_path, bpe):
    bpe.save(tmp_path)
    back = Tokenizer.load(tmp_path)
    assert back.encode("I loved every minute") == bpe.encode("I loved every minute")
    assert back.pad_token_id == bpe.pad_token_id and back.eos_token == "<|endoftext|>"


def test_errors(bpe):
    with pytest.raises(ValueError, match="empty batch"):
        bpe([])
    with pytest.raises(ValueError, match="padding must be"):
        bpe(["x"], padding="shortest")
    with pytest.raises(ValueError, match="kind must be"):
        train_tokenizer(CORPUS, kind="unigram")
    with pytest.raises(ValueError, match="no chat template"):
        bpe.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(FileNotFoundError):
        Tokenizer.load("/nonexistent")
