"""Tokenizers trained here: round trips, padding sides, truncation, save/load, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minift.tokenization import Tokenizer, from_pretrained, train_tokenizer

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
    (tmp_path / "notes.txt").write_text("mine")  # a file the save did not write stays
    written = bpe.save_pretrained(tmp_path)  # HF's name; HF's return: the paths written
    assert written == (str(tmp_path / "tokenizer_config.json"), str(tmp_path / "tokenizer.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "tokenizer.json", "tokenizer_config.json"]
    back = from_pretrained(tmp_path)
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
    for bad in (0, -1, 2.5, True):  # 0 once switched truncation off, −1 dropped the closing token
        with pytest.raises(ValueError, match=f"max_length must be an integer >= 1, got {bad!r}"):
            bpe(["a review"], truncation=True, max_length=bad)
    with pytest.raises(ValueError, match="stride must be an integer >= 0, got -2"):
        bpe(["a review"], truncation="only_second", text_pair=["ctx"], max_length=8, stride=-2)
    with pytest.raises(TypeError, match="a string or a list of strings, got int 5"):
        bpe(5)
    with pytest.raises(TypeError, match=r"got int 1 \(example 0\).*tokenizer.decode"):  # ids where text goes
        bpe([1, 2])


def test_decode_takes_ids_of_the_vocabulary_and_says_what_else_it_was_given(bpe):
    ids = bpe.encode("I loved every minute")
    assert bpe.decode(np.array(ids)) == bpe.decode(ids) == bpe.batch_decode([ids])[0]
    labels = [-100] + ids[1:]  # the labels of a causal LM row: a student's common slip
    with pytest.raises(ValueError, match="token id -100 is outside the vocabulary .*decode input_ids"):
        bpe.decode(labels)
    with pytest.raises(ValueError, match=f"token id {bpe.vocab_size} is outside the vocabulary"):
        bpe.decode([bpe.vocab_size])  # once decoded to '' without a word
    with pytest.raises(TypeError, match="integer token ids"):
        bpe.decode("abc")


# ----------------------------------------------------------------------------- words, windows, token maps
words_strategy = st.lists(st.text("abcdefghijklmnopqrstuvwxyzAB'!,#@0123", min_size=1, max_size=8),
                          min_size=1, max_size=12)


@given(words=words_strategy)
def test_pre_tokenized_words_encode_as_the_joined_text(bpe, wordpiece, words):
    joined = " ".join(words)
    for tok in (bpe, wordpiece):
        enc = tok(words, is_split_into_words=True, return_offsets_mapping=True)
        assert enc["input_ids"][0].tolist() == tok.encode(joined)
        word_ids = enc.word_ids(0)
        assert [w for w in word_ids if w is not None] == sorted(w for w in word_ids if w is not None)
        assert {w for w in word_ids if w is not None} == set(range(len(words)))  # every word has a token
        for w, (a, b) in zip(word_ids, enc["offset_mapping"][0].tolist()):
            if w is not None:  # offsets point into the joined text, inside the token's own word
                assert joined[a:b].strip() in words[w] and b <= len(joined)


def test_word_ids_and_sequence_ids_follow_padding_and_truncation(wordpiece):
    batch = [["great", "movie"], ["a", "dull", "lifeless", "film"]]
    right = wordpiece(batch, is_split_into_words=True, padding=True)
    left = wordpiece(batch, is_split_into_words=True, padding=True, padding_side="left")
    n = right["input_ids"].shape[1]
    assert right.word_ids(0)[0] is None and right.word_ids(0)[1] == 0 and right.word_ids(0)[-1] is None
    n_pad = n - len(wordpiece.encode("great movie"))
    assert n_pad > 0 and left.word_ids(0)[:n_pad] == [None] * n_pad and left.word_ids(0)[n_pad + 1] == 0
    assert len(left.word_ids(0)) == len(right.sequence_ids(1)) == n
    cut = wordpiece(batch[1], is_split_into_words=True, truncation=True, max_length=4)
    assert cut.word_ids(0)[-1] is None and len(cut.word_ids(0)) == 4  # [SEP] kept, with no word
    pair = wordpiece("great movie", text_pair="dull film")
    seq = pair.sequence_ids(0)
    assert seq[0] is None and seq[1] == 0 and seq[-2] == 1 and seq.count(None) == 3
    with pytest.raises(ValueError, match="list of words"):
        wordpiece("great movie", is_split_into_words=True)


@given(n_words=st.integers(1, 40), max_length=st.integers(10, 24), stride=st.integers(0, 3))
def test_windows_cover_the_context_and_overlap_by_stride(wordpiece, bpe, n_words, max_length, stride):
    context = " ".join((CORPUS[0] + " " + CORPUS[1]).split() * 3)
    context = " ".join(context.split()[:n_words])
    questions = ["the movie?", "a film?"]  # words of the corpus: a few tokens each
    for tok in (wordpiece, bpe):
        enc = tok(questions, [context, "a"], truncation="only_second", max_length=max_length,
                  stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        sample = enc["overflow_to_sample_mapping"].tolist()
        assert sample == sorted(sample) and sample[-1] == 1 and sample.count(1) == 1
        windows = []
        for i, s in enumerate(sample):
            ids = list(enc["input_ids"][i])
            assert len(ids) <= max_length
            seq = enc.sequence_ids(i)
            question = [t for t, q in zip(ids, seq) if q == 0]
            assert question == tok.encode(questions[s], add_special_tokens=False)
            if s == 0:
                windows.append([tuple(o) for o, q in zip(list(enc["offset_mapping"][i]), seq) if q == 1])
        full = tok(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][0]
        full = [tuple(o) for o in full.tolist()]
        for a, b in zip(windows, windows[1:]):
            assert a[len(a) - stride :] == b[:stride] if stride else True  # neighbours share `stride` tokens
        joined = windows[0] + [o for a, b in zip(windows, windows[1:]) for o in b[stride:]]
        assert joined == full  # together the windows are the context, in order, nothing lost


def test_window_errors(wordpiece):
    with pytest.raises(ValueError, match=r"stride must be in \[0, "):
        wordpiece(["who?"], ["a long context"], truncation="only_second", max_length=9, stride=5,
                  return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="nothing of the truncated text fits"):
        wordpiece(["the movie was great and the acting was superb"], ["a"], truncation="only_second",
                  max_length=6)
    with pytest.raises(ValueError, match="no text_pair was given"):
        wordpiece(["a"], truncation="only_second", max_length=6)
    with pytest.raises(ValueError, match="needs truncation"):
        wordpiece(["a"], return_overflowing_tokens=True, max_length=6)
    with pytest.raises(ValueError, match="truncation must be"):
        wordpiece(["a"], truncation="only_first", max_length=6)
    with pytest.raises(ValueError, match="text has 2 examples but text_pair has 1"):
        wordpiece(["a", "b"], ["c"])
    single = wordpiece("a b c d e f", truncation=True, max_length=4, stride=1, return_overflowing_tokens=True)
    rows = [wordpiece.convert_ids_to_tokens(r) for r in single["input_ids"]]
    assert all(r[0] == "[CLS]" and r[-1] == "[SEP]" and len(r) <= 4 for r in rows) and len(rows) > 1


@pytest.mark.zoo
def test_real_tokenizers_take_words_and_make_windows():
    from minift.tokenization import from_pretrained

    words = ["@paulwalk", "It", "'s", "the", "Empire", "State", "Building", "=", "ESB", "12"]
    for name in ("minilm", "smollm2"):
        tok = from_pretrained(name)
        enc = tok(words, is_split_into_words=True)
        assert enc["input_ids"][0].tolist() == tok.encode(" ".join(words))
        assert {w for w in enc.word_ids(0) if w is not None} == set(range(len(words)))
        windows = tok(["Which facility?"], [" ".join(words * 4)], truncation="only_second", max_length=24,
                      stride=4, return_overflowing_tokens=True)
        assert len(windows["input_ids"]) > 1 and all(len(r) <= 24 for r in windows["input_ids"])
    smol = from_pretrained("smollm2")  # no special tokens: truncation is a plain cut
    assert smol(" ".join(words), truncation=True, max_length=5)["input_ids"][0].tolist() == smol.encode(
        " ".join(words))[:5]
