"""minift.data: Dataset / DatasetDict, the zoo's tasks, collators, NER label alignment, extractive QA.

Most tests build small data in memory and train tiny tokenizers; the ones marked ``zoo`` read the real
files (MiniLM's and SmolLM2's tokenizers, the VADER snippets, the NER tweets).
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minift.data import (
    NER_TAGS, ClassLabel, DataCollatorForTokenClassification, DataCollatorWithPadding, Dataset, DatasetDict,
    Sequence, Value, align_labels_with_tokens, b_to_i_label_ids, default_data_collator, load_dataset,
    postprocess_qa_predictions, prepare_train_features, prepare_validation_features, qa_from_ner,
    tokenize_and_align_labels,
)
from minift.data.qa import best_span
from minift.data.tasks import entity_spans
from minift.tokenization import train_tokenizer

CORPUS = [
    "the movie was great and the acting was superb",
    "a dull, lifeless film with no surprises",
    "Barack Obama met Angela Merkel in Berlin today",
    "I loved every minute of it!",
    "Empire State Building at night #nyc",
] * 20


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(CORPUS, kind="wordpiece", vocab_size=200)


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(CORPUS, kind="bpe", vocab_size=300)


@pytest.fixture(scope="module")
def minilm():
    import minift.tokenization as T

    return T.from_pretrained("minilm")


@pytest.fixture(scope="module")
def smollm2():
    import minift.tokenization as T

    return T.from_pretrained("smollm2")


def small():
    return Dataset.from_dict({"text": ["good", "bad", "fine", "awful", "great"], "label": [1, 0, 1, 0, 1]},
                             features={"label": ClassLabel(names=["negative", "positive"])})


# ============================================================================ Dataset
def test_construction_indexing_and_repr():
    ds = small()
    assert len(ds) == ds.num_rows == 5 and ds.column_names == ["text", "label"]
    assert ds[0] == {"text": "good", "label": 1} and ds[-1] == {"text": "great", "label": 1}
    assert ds[1:3] == {"text": ["bad", "fine"], "label": [0, 1]}
    assert ds[[4, 0]] == {"text": ["great", "good"], "label": [1, 1]}
    assert ds["text"] == ["good", "bad", "fine", "awful", "great"]
    assert list(ds)[2] == {"text": "fine", "label": 1}
    assert repr(ds) == "Dataset({\n    features: ['text', 'label'],\n    num_rows: 5\n})"
    assert Dataset.from_list(list(ds)).to_dict() == ds.to_dict()
    ds["text"].append("mutated")  # a column read is a copy
    assert len(ds["text"]) == 5


def test_features_declared_and_inferred():
    ds = Dataset.from_dict({"tokens": [["a", "b"]], "n": [1], "x": [0.5], "answers": [{"text": ["a"]}]})
    f = ds.features
    assert f["tokens"] == Sequence(Value("string")) and f["n"] == Value("int64")
    assert f["x"] == Value("float64")
    assert f["answers"] == {"text": Sequence(Value("string"))}
    label = small().features["label"]
    assert label.num_classes == 2 and label.int2str(1) == "positive" and label.str2int("negative") == 0
    assert label.int2str([0, 1]) == ["negative", "positive"] and label.str2int(["positive"]) == [1]
    with pytest.raises(ValueError, match="unknown label 'neutral'; the labels are"):
        label.str2int("neutral")
    with pytest.raises(ValueError, match="out of range for 2 classes"):
        label.int2str(2)
    with pytest.raises(ValueError, match="unique"):
        ClassLabel(names=["a", "a"])


def test_clear_errors():
    with pytest.raises(ValueError, match=r"same number of rows, got \{'a': 2, 'b': 1\}"):
        Dataset.from_dict({"a": [1, 2], "b": [3]})
    with pytest.raises(ValueError, match="row 1 has keys"):
        Dataset.from_list([{"a": 1}, {"b": 2}])
    with pytest.raises(TypeError, match="column 'a' must be a list"):
        Dataset.from_dict({"a": 3})
    ds = small()
    with pytest.raises(KeyError, match=r"no column 'txt' \(the columns are \['text', 'label'\]\)"):
        ds["txt"]
    with pytest.raises(KeyError, match="remove_columns: no column 'txt'"):
        ds.remove_columns("txt")
    with pytest.raises(IndexError, match="row 5 is out of range for a dataset of 5 rows"):
        ds[5]
    with pytest.raises(IndexError, match="index 7 is out of range"):
        ds.select([0, 7])
    with pytest.raises(ValueError, match="already exists"):
        ds.rename_column("text", "label")
    with pytest.raises(ValueError, match="at least 2 rows"):
        ds.select([0]).train_test_split(test_size=0.5)
    with pytest.raises(ValueError, match="both splits need at least one row"):
        ds.train_test_split(test_size=5)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        ds.train_test_split(test_size=1.0)


def test_map_row_by_row_adds_columns_and_keeps_features():
    ds = small().map(lambda row: {"n_chars": len(row["text"])})
    assert ds.column_names == ["text", "label", "n_chars"] and ds["n_chars"] == [4, 3, 4, 5, 5]
    assert isinstance(ds.features["label"], ClassLabel)  # untouched columns keep their ClassLabel
    same = small().map(lambda row: None)
    assert same.to_dict() == small().to_dict()
    whole_row = small().map(lambda row: {**row, "n": 1})  # returned unchanged: the ClassLabel stays
    assert isinstance(whole_row.features["label"], ClassLabel)
    flipped = small().map(lambda row: {"label": 1 - row["label"]})  # changed: the names may no longer fit
    assert flipped.features["label"] == Value("int64")
    kept = small().map(lambda row: {"label": 1 - row["label"]}, features={"label": small().features["label"]})
    assert isinstance(kept.features["label"], ClassLabel)
    upper = small().map(lambda row, suffix: {"text": row["text"] + suffix}, fn_kwargs={"suffix": "!"})
    assert upper["text"][0] == "good!" and upper.column_names == ["text", "label"]
    scalars = small().map(lambda row: {"v": np.int64(3), "arr": np.arange(2)})
    assert scalars[0]["v"] == 3 and type(scalars[0]["v"]) is int and scalars[0]["arr"] == [0, 1]


def test_map_batched_takes_arrays_and_may_change_the_number_of_rows():
    def tokenize(batch):  # a padded (rows, T) array, as a tokenizer returns
        return {"input_ids": np.arange(len(batch["text"]) * 3).reshape(-1, 3)}

    ds = small().map(tokenize, batched=True, batch_size=2)
    assert ds["input_ids"][3:] == [[3, 4, 5], [0, 1, 2]] and ds.column_names == ["text", "label", "input_ids"]
    assert all(type(x) is int for x in ds["input_ids"][0])

    def windows(batch):  # two rows per input row (as a doc stride would make)
        return {"piece": [t[:2] for t in batch["text"] for _ in range(2)],
                "example": [i for i in range(len(batch["text"])) for _ in range(2)]}

    with pytest.raises(ValueError, match=r"4 rows for a batch of 2.*remove_columns=\['text', 'label'\]"):
        small().map(windows, batched=True, batch_size=2)
    out = small().map(windows, batched=True, batch_size=2, remove_columns=["text", "label"])
    assert out.num_rows == 10 and out.column_names == ["piece", "example"]
    assert out["piece"][:4] == ["go", "go", "ba", "ba"]
    with pytest.raises(ValueError, match="same columns every time"):
        small().map(lambda b: {"a": b["text"]} if b["text"][0] == "good" else {"b": b["text"]}, batched=True,
                    batch_size=2)
    with pytest.raises(TypeError, match="must return a dict"):
        small().map(lambda row: 3)


def test_map_on_an_empty_dataset_and_filter():
    empty = small().select([])
    assert empty.map(lambda b: {"x": b["text"]}, batched=True).num_rows == 0
    assert small().filter(lambda row: row["label"] == 1)["text"] == ["good", "fine", "great"]
    assert small().filter(lambda b: [len(t) > 3 for t in b["text"]], batched=True)["text"] == [
        "good", "fine", "awful", "great"]
    with pytest.raises(ValueError, match="one bool per row"):
        small().filter(lambda b: [True], batched=True)


def test_columns_and_dataset_dict():
    ds = small().rename_column("label", "labels").remove_columns(["text"])
    assert ds.column_names == ["labels"] and isinstance(ds.features["labels"], ClassLabel)
    dd = DatasetDict(train=small(), test=small().select([0, 1]))
    mapped = dd.map(lambda row: {"n": 1}).filter(lambda row: row["label"] == 1).shuffle(seed=0)
    assert isinstance(mapped, DatasetDict) and mapped.num_rows == {"train": 3, "test": 1}
    assert mapped.column_names == {"train": ["text", "label", "n"], "test": ["text", "label", "n"]}
    assert repr(dd).startswith("DatasetDict({\n    train: Dataset({\n        features: ['text', 'label'],")
    with pytest.raises(KeyError, match=r"no split 'validation' \(the splits are \['train', 'test'\]\)"):
        dd["validation"]


def test_split_sizes_and_seeds():
    ds = Dataset.from_dict({"i": list(range(10))})
    parts = ds.train_test_split(test_size=0.25, seed=0)
    assert parts.num_rows == {"train": 7, "test": 3}  # ceil(0.25 · 10) test rows
    again = ds.train_test_split(test_size=0.25, seed=0)
    assert again["test"]["i"] == parts["test"]["i"]
    assert ds.train_test_split(test_size=2, shuffle=False)["test"]["i"] == [8, 9]
    assert ds.shuffle(seed=1)["i"] == ds.shuffle(seed=1)["i"] != ds.shuffle(seed=2)["i"]
    assert ds.shuffle(seed=np.int64(1))["i"] == ds.shuffle(seed=1)["i"]  # a NumPy integer is a seed too
    for bad in ("a", 1.5, -1, True):  # NumPy itself says "SeedSequence expects int or sequence of ints"
        with pytest.raises(ValueError, match=rf"shuffle's seed must be an integer >= 0, got {bad!r}"):
            ds.shuffle(seed=bad)
        with pytest.raises(ValueError, match=rf"train_test_split's seed must be an integer >= 0, got {bad!r}"):
            ds.train_test_split(seed=bad)


rows_strategy = st.lists(st.integers(0, 3), min_size=2, max_size=60)


@given(labels=rows_strategy, seed=st.integers(0, 2**16), data=st.data())
def test_shuffle_select_and_split_keep_rows_intact_and_partition(labels, seed, data):
    n = len(labels)
    ds = Dataset.from_dict({"id": list(range(n)), "label": labels, "text": [f"t{i}" for i in range(n)]})

    def intact(d):  # every row still holds its own text and label
        return all(r["text"] == f"t{r['id']}" and r["label"] == labels[r["id"]] for r in d)

    shuffled = ds.shuffle(seed=seed)
    assert sorted(shuffled["id"]) == ds["id"] and intact(shuffled)
    picked = data.draw(st.lists(st.integers(0, len(labels) - 1), max_size=20))
    assert ds.select(picked)["id"] == picked and intact(ds.select(picked))
    test_size = data.draw(st.one_of(st.floats(0.05, 0.95), st.integers(1, len(labels) - 1)))
    assume(0 < (int(np.ceil(test_size * n)) if isinstance(test_size, float) else test_size) < n)
    for stratify in (None, "label"):
        parts = ds.train_test_split(test_size=test_size, seed=seed, stratify_by_column=stratify)
        ids = parts["train"]["id"] + parts["test"]["id"]
        assert sorted(ids) == ds["id"] and intact(parts["train"]) and intact(parts["test"])


@given(labels=rows_strategy, test_size=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_stratified_split_keeps_each_class_within_one_row_of_its_share(labels, test_size, seed):
    n, n_test = len(labels), int(np.ceil(test_size * len(labels)))
    assume(0 < n_test < n)
    ds = Dataset.from_dict({"label": labels})
    test = ds.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")["test"]["label"]
    assert len(test) == n_test
    for c in set(labels):
        assert abs(test.count(c) - labels.count(c) * n_test / n) < 1


# ============================================================================ tasks (in memory)
def test_load_dataset_names_the_known_datasets():
    with pytest.raises(ValueError, match=r"unknown dataset 'imdb'; load_dataset knows \['sentiment', "):
        load_dataset("imdb")


def test_entity_spans_and_qa_from_ner():
    assert entity_spans(["O", "B-person", "I-person", "O", "B-geo-loc", "I-person", "I-geo-loc"]) == [
        ("person", 1, 3), ("geo-loc", 4, 5), ("person", 5, 6), ("geo-loc", 6, 7)]
    assert entity_spans(["I-company", "I-company"]) == [("company", 0, 2)]  # an I- that starts an entity
    tag = {name: i for i, name in enumerate(NER_TAGS)}
    ner = Dataset.from_dict(
        {"id": ["tweet0007"], "tokens": [["Obama", "met", "Angela", "Merkel", "in", "Berlin", "and", "Bob"]],
         "ner_tags": [[tag[t] for t in ["B-person", "O", "B-person", "I-person", "O", "B-geo-loc", "O",
                                        "B-person"]]]},
        features={"ner_tags": Sequence(ClassLabel(names=NER_TAGS))})
    qa = qa_from_ner(ner)
    assert qa.column_names == ["id", "context", "question", "answers"] and qa.num_rows == 2
    place, person = qa[0], qa[1]
    assert place["id"] == "tweet0007-geo-loc" and place["question"] == "Which place is mentioned?"
    assert person["answers"] == {"text": ["Obama", "Angela Merkel", "Bob"], "answer_start": [0, 10, 38]}
    for row in qa:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start : start + len(text)] == text


def test_ner_tag_names_are_fixed():
    assert NER_TAGS[0] == "O" and len(NER_TAGS) == 21
    assert NER_TAGS[1:3] == ["B-company", "I-company"] and NER_TAGS[-1] == "I-tvshow"


# ============================================================================ label alignment
def _check_alignment(align):
    """Hand-made cases; the mutant test below proves each wrong implementation fails one of them."""
    # [CLS] obama mer ##kel ##ler said [SEP] — word 0 has a non-O label (a falsy word id is still a word)
    word_ids = [None, 0, 1, 1, 1, 2, None]
    assert align([1, 3, 0], word_ids) == [-100, 1, 3, -100, -100, 0, -100]
    b_to_i = b_to_i_label_ids(["O", "B-x", "I-x", "B-y", "I-y"])
    assert b_to_i == [0, 2, 2, 4, 4]
    assert align([1, 3, 0], word_ids, label_all_tokens=True, b_to_i=b_to_i) == [-100, 1, 3, 4, 4, 0, -100]
    assert align([2, 0], [None, 0, 0, 1, None], label_all_tokens=True, b_to_i=b_to_i) == [-100, 2, 2, 0, -100]
    # padding after [SEP], and a label id that differs from its word index
    assert align([4, 4, 1], [None, 0, 1, 2, 2, None, None, None]) == [-100, 4, 4, 1, -100, -100, -100, -100]
    # two words in a row with the same label are still two words
    assert align([3, 3], [None, 0, 1, None]) == [-100, 3, 3, -100]
    assert align([], [None, None]) == [-100, -100]


@pytest.mark.task("data.align_labels")
def test_align_labels_hand_made_cases():
    _check_alignment(align_labels_with_tokens)


words_strategy = st.lists(st.text("abcdefghijklmnopqrstuvwxyzABZ!,'#@", min_size=1, max_size=9), min_size=1,
                          max_size=12)


@pytest.mark.task("data.align_labels")
@given(words=words_strategy, data=st.data())
def test_align_labels_one_label_per_word_on_its_first_token(wordpiece, bpe, words, data):
    labels = data.draw(st.lists(st.integers(0, 20), min_size=len(words), max_size=len(words)))
    for tok in (wordpiece, bpe):
        enc = tok(words, is_split_into_words=True)
        word_ids = enc.word_ids(0)
        aligned = align_labels_with_tokens(labels, word_ids)
        assert len(aligned) == len(word_ids)
        kept = [(w, lab) for w, lab in zip(word_ids, aligned) if lab != -100]
        assert [w for w, _ in kept] == list(range(len(words)))  # each word once, in order
        assert all(lab == labels[w] for w, lab in kept)
        all_tokens = align_labels_with_tokens(labels, word_ids, label_all_tokens=True)
        assert all((lab == -100) == (w is None) for w, lab in zip(word_ids, all_tokens))


@pytest.mark.task("data.align_labels")
def test_tokenize_and_align_labels_in_a_batched_map(wordpiece):
    tag = {name: i for i, name in enumerate(NER_TAGS)}
    ds = Dataset.from_dict({"tokens": [["Barack", "Obama", "met", "Merkelsons"], ["in", "Berlin"]],
                            "ner_tags": [[tag["B-person"], tag["I-person"], 0, tag["B-person"]],
                                         [0, tag["B-geo-loc"]]]})
    out = ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names,
                 fn_kwargs=dict(tokenizer=wordpiece, max_length=32, label_names=NER_TAGS))
    assert out.column_names == ["input_ids", "attention_mask", "token_type_ids", "labels"]
    for row, words, tags in zip(out, ds["tokens"], ds["ner_tags"]):
        assert len(row["labels"]) == len(row["input_ids"])
        assert [lab for lab in row["labels"] if lab != -100] == tags
    every = ds.map(tokenize_and_align_labels, batched=True, fn_kwargs=dict(
        tokenizer=wordpiece, max_length=32, label_all_tokens=True, label_names=NER_TAGS))
    word_ids = wordpiece(ds["tokens"][0], is_split_into_words=True).word_ids(0)
    continuation = [t for t in range(1, len(word_ids))
                    if word_ids[t] is not None and word_ids[t] == word_ids[t - 1]]
    assert continuation  # "Merkel" is split: its later pieces get I-person, not B-person
    for t, (w, lab) in enumerate(zip(word_ids, every[0]["labels"])):
        if w is not None:
            word_label = ds["ner_tags"][0][w]
            assert lab == (b_to_i_label_ids(NER_TAGS)[word_label] if t in continuation else word_label)
    short = ds.map(tokenize_and_align_labels, batched=True, fn_kwargs=dict(tokenizer=wordpiece, max_length=4))
    assert all(len(r["input_ids"]) <= 4 and r["labels"][-1] == -100 for r in short)  # [SEP] kept, unlabeled


def test_alignment_rejects_word_ids_beyond_the_labels():
    with pytest.raises(ValueError, match="refer to word 2, but only 2 word labels"):
        align_labels_with_tokens([0, 1], [None, 0, 1, 2, None])


# ============================================================================ collators
def test_padding_collator_pads_right_renames_label_and_stacks_numbers(wordpiece):
    rows = [dict(wordpiece(t)) for t in ["great movie", "a dull, lifeless film"]]
    rows = [{k: v[0].tolist() for k, v in r.items()} | {"label": label, "score": 0.5}
            for r, label in zip(rows, [1, 0])]
    batch = DataCollatorWithPadding(wordpiece)(rows)
    n0, n1 = len(rows[0]["input_ids"]), len(rows[1]["input_ids"])
    assert batch["input_ids"].shape == (2, max(n0, n1)) and batch["input_ids"].dtype == np.int64
    assert batch["input_ids"][0, :n0].tolist() == rows[0]["input_ids"]
    assert (batch["input_ids"][0, n0:] == wordpiece.pad_token_id).all()
    assert batch["attention_mask"].sum(1).tolist() == [n0, n1] and batch["token_type_ids"].sum() == 0
    assert batch["labels"].tolist() == [1, 0] and "label" not in batch
    assert batch["score"].dtype == np.float32
    eight = DataCollatorWithPadding(wordpiece, pad_to_multiple_of=8)(rows)
    assert eight["input_ids"].shape[1] % 8 == 0
    fixed = DataCollatorWithPadding(wordpiece, padding="max_length", max_length=20)(rows)
    assert fixed["input_ids"].shape == (2, 20)
    # rows straight from tok(one text): every column (1, T), as a tokenizer returns them; the same batch
    raw = [{**wordpiece(t), "label": label, "score": 0.5} for t, label in zip(["great movie", "a dull, lifeless film"], [1, 0])]
    assert np.asarray(raw[0]["attention_mask"]).shape == (1, n0)
    again = DataCollatorWithPadding(wordpiece)(raw)
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        np.testing.assert_array_equal(again[key], batch[key])


def test_padding_side_comes_from_the_tokenizer(bpe):
    import copy

    left = copy.copy(bpe)
    left.padding_side = "left"
    rows = [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}]
    batch = DataCollatorWithPadding(left)(rows)
    assert batch["input_ids"][1].tolist() == [left.pad_token_id] * 2 + [8]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    tc = DataCollatorForTokenClassification(left)([{"input_ids": [5, 6], "labels": [1, 2]},
                                                   {"input_ids": [8], "labels": [3]}])
    assert tc["labels"].tolist() == [[1, 2], [-100, 3]]


def test_token_classification_collator_pads_labels_with_minus_100(wordpiece):
    rows = [{"input_ids": [2, 9, 10, 3], "attention_mask": [1] * 4, "labels": [-100, 1, -100, -100]},
            {"input_ids": [2, 11, 3], "attention_mask": [1] * 3, "labels": [-100, 0, -100]}]
    batch = DataCollatorForTokenClassification(wordpiece)(rows)
    assert batch["labels"].tolist() == [[-100, 1, -100, -100], [-100, 0, -100, -100]]
    assert batch["input_ids"][1].tolist() == [2, 11, 3, wordpiece.pad_token_id]
    with pytest.raises(ValueError, match="row 1 has 2 labels for 3 input_ids"):
        DataCollatorForTokenClassification(wordpiece)([rows[0], {**rows[1], "labels": [0, 0]}])


def test_default_data_collator_stacks_and_skips_text():
    batch = default_data_collator([{"input_ids": [1, 2], "label": 0.5, "id": "a"},
                                   {"input_ids": [3, 4], "label": 1.5, "id": "b"}])
    assert set(batch) == {"input_ids", "labels"} and batch["labels"].dtype == np.float32
    assert batch["input_ids"].dtype == np.int64
    with pytest.raises(ValueError, match="different lengths"):
        default_data_collator([{"input_ids": [1, 2]}, {"input_ids": [3]}])


def test_collator_errors(wordpiece):
    collate = DataCollatorWithPadding(wordpiece)
    with pytest.raises(TypeError, match="DataCollatorWithPadding needs the tokenizer .*got NoneType"):
        DataCollatorWithPadding(None)
    with pytest.raises(KeyError, match="no 'input_ids'"):
        collate([{"text": [1]}])
    with pytest.raises(ValueError, match="row 1 has keys"):
        collate([{"input_ids": [1]}, {"input_ids": [1], "label": 0}])
    with pytest.raises(TypeError, match="column 'text' holds strings"):
        collate([{"input_ids": [1], "text": "a"}])
    with pytest.raises(ValueError, match="more than max_length=2"):
        DataCollatorWithPadding(wordpiece, padding="max_length", max_length=2)([{"input_ids": [1, 2, 3]}])
    with pytest.raises(ValueError, match="at least one row"):
        collate([])
    with pytest.raises(ValueError, match="DataCollatorForTokenClassification"):
        collate([{"input_ids": [1, 2], "labels": [0, 0]}, {"input_ids": [1], "labels": [0]}])
    no_pad = train_tokenizer(CORPUS, kind="bpe", vocab_size=300)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        DataCollatorWithPadding(no_pad)([{"input_ids": [1]}])


def test_collator_on_a_mapped_dataset(wordpiece):
    ds = small().map(lambda b: wordpiece(b["text"], truncation=True, max_length=16), batched=True)
    rows = ds.remove_columns("text").select(range(3)).to_list()
    batch = DataCollatorWithPadding(wordpiece)(rows)
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].tolist() == [1, 0, 1]
    same = DataCollatorWithPadding(wordpiece)(ds.remove_columns("text")[0:3])  # a slice: dict of lists
    assert all((same[k] == batch[k]).all() for k in batch)


# ============================================================================ extractive QA
def qa_examples(contexts_and_answers, question="Who?"):
    ids, contexts, answers = [], [], []
    for k, (words, first, last) in enumerate(contexts_and_answers):
        context = " ".join(words)
        start = len(" ".join(words[:first])) + (1 if first else 0)
        ids.append(f"q{k}")
        contexts.append(context)
        answers.append({"text": [" ".join(words[first : last + 1])], "answer_start": [start]})
    return Dataset.from_dict({"id": ids, "context": contexts, "question": [question] * len(ids),
                              "answers": answers})


@given(words=st.lists(st.text("abcdefgh'!,", min_size=1, max_size=7), min_size=1, max_size=30),
       data=st.data())
def test_gold_spans_decode_back_to_the_answer(wordpiece, bpe, words, data):
    first = data.draw(st.integers(0, len(words) - 1))
    last = data.draw(st.integers(first, min(first + 3, len(words) - 1)))
    max_length = data.draw(st.integers(16, 40))
    stride = data.draw(st.integers(0, 4))
    examples = qa_examples([(words, first, last)], question="Who?")
    answer = examples[0]["answers"]["text"][0]
    for tok in (wordpiece, bpe):
        train = prepare_train_features(examples[:], tok, max_length=max_length, doc_stride=stride)
        val = prepare_validation_features(examples[:], tok, max_length=max_length, doc_stride=stride)
        assert len(train["input_ids"]) == len(val["example_id"]) >= 1
        found = 0
        for i, (s, e) in enumerate(zip(train["start_positions"], train["end_positions"])):
            offsets = val["offset_mapping"][i]
            if s == e == 0:  # this window does not hold the whole answer
                continue
            assert offsets[s] is not None and offsets[e] is not None
            assert examples[0]["context"][offsets[s][0] : offsets[e][1]] == answer
            found += 1
        # windows share `stride` tokens, so an answer of at most stride + 1 tokens is whole in one of them
        enc = tok("Who?", examples[0]["context"], return_offsets_mapping=True)
        start = examples[0]["answers"]["answer_start"][0]
        n_answer = sum(1 for (a, b), seq in zip(enc["offset_mapping"][0].tolist(), enc.sequence_ids(0))
                       if seq == 1 and a < start + len(answer) and b > start)
        assert found >= 1 or n_answer > stride + 1


def test_long_context_is_windowed_and_postprocessed(wordpiece):
    words = ("the movie was great and the acting was superb " * 3 + "Barack Obama met Angela Merkel").split()
    ex = qa_examples([(words, len(words) - 5, len(words) - 4), (words[:6], 1, 1)])
    train = prepare_train_features(ex[:], wordpiece, max_length=20, doc_stride=5)
    val = prepare_validation_features(ex[:], wordpiece, max_length=20, doc_stride=5)
    n = len(train["input_ids"])
    assert n > 2 and val["example_id"].count("q0") == n - 1 and val["example_id"][-1] == "q1"
    assert all(len(row) == 20 for row in train["input_ids"])
    holds = [i for i in range(n) if train["start_positions"][i] != 0]
    assert holds and holds[0] > 0  # the first windows do not reach the answer: they point at [CLS]
    # logits that point at the gold span of each window holding an answer
    start_logits, end_logits = np.zeros((n, 20)), np.zeros((n, 20))
    for i in holds:
        start_logits[i, train["start_positions"][i]] = 5.0
        end_logits[i, train["end_positions"][i]] = 5.0
    start_logits[0, 0] = end_logits[0, 0] = 100.0  # [CLS] is not in the context: never an answer
    preds = postprocess_qa_predictions(ex, val, start_logits, end_logits)
    assert preds == {"q0": "Barack Obama", "q1": "movie"}


@given(n_words=st.integers(1, 25), seed=st.integers(0, 1000), max_answer_length=st.integers(1, 6))
def test_postprocess_returns_a_piece_of_the_context(wordpiece, n_words, seed, max_answer_length):
    words = (CORPUS[0] + " " + CORPUS[2]).split()[:n_words]
    ex = qa_examples([(words, 0, 0)])
    val = prepare_validation_features(ex[:], wordpiece, max_length=16, doc_stride=3)
    rng = np.random.default_rng(seed)
    n = len(val["example_id"])
    preds = postprocess_qa_predictions(ex, val, rng.normal(size=(n, 16)), rng.normal(size=(n, 16)),
                                       max_answer_length=max_answer_length)
    answer = preds["q0"]
    assert answer and answer in ex[0]["context"]


def _check_best_span(best):
    """Hand-made logits where each rule of a valid span decides the answer."""
    ctx = [False, False, True, True, True, True, True, False]  # 0: [CLS], 1: a question token, 7: [SEP]
    z = np.zeros(8)

    def logits(**at):
        out = z.copy()
        for k, v in at.items():
            out[int(k[1:])] = v
        return out

    # the best start and end are question / special tokens: the answer must come from the context
    assert best(logits(p0=9, p1=8, p3=2), logits(p1=9, p4=2), ctx)[:2] == (3, 4)
    # ... and both ends of it: an end on [SEP] is not an answer either
    assert best(logits(p3=2), logits(p7=9, p4=1), ctx)[:2] == (3, 4)
    # the best end lies before the best start: take the best pair with end >= start
    assert best(logits(p5=5, p2=2), logits(p3=5, p6=1), ctx)[:2] == (2, 3)
    # length = end - start + 1 tokens: max_answer_length=2 allows (3, 4) but not (3, 5)
    assert best(logits(p3=5), logits(p5=5, p4=4), ctx, max_answer_length=2)[:2] == (3, 4)
    assert best(logits(p3=5), logits(p5=5, p4=4), ctx, max_answer_length=3)[:2] == (3, 5)
    # the score is start + end: (4, 6) at 3.5 + 3 beats (2, 2) at 4 + 0.5, though 2 is the best start
    s, e, score = best(logits(p2=4, p4=3.5), logits(p2=0.5, p6=3), ctx, max_answer_length=3)
    assert (s, e) == (4, 6) and score == pytest.approx(6.5)
    # only the n_best_size highest starts and ends are candidates
    assert best(logits(p1=9, p3=1), logits(p1=9, p4=1), ctx, n_best_size=1) is None
    assert best(logits(p1=9, p3=1), logits(p1=9, p4=1), ctx, n_best_size=2)[:2] == (3, 4)
    assert best(z, z, [False] * 8) is None


@pytest.mark.task("qa.best_span")
def test_best_span_hand_made_cases():
    _check_best_span(best_span)


@pytest.mark.task("qa.best_span")
@given(n=st.integers(2, 24), seed=st.integers(0, 10**6), max_answer_length=st.integers(1, 8),
       n_best_size=st.integers(1, 30))
def test_best_span_is_the_best_valid_pair_among_the_top_candidates(n, seed, max_answer_length, n_best_size, oracles):
    rng = np.random.default_rng(seed)
    start, end = rng.normal(size=n), rng.normal(size=n)
    is_context = rng.random(n) < 0.7
    got = best_span(start, end, is_context, n_best_size, max_answer_length)
    best_score, pairs = oracles.best_span_by_search(start, end, is_context, n_best_size, max_answer_length)
    if not pairs:
        assert got is None
    else:
        assert got is not None and got[2] == pytest.approx(best_score) and (got[0], got[1]) in pairs


@pytest.mark.task("qa.best_span")
def test_postprocess_picks_the_best_window(wordpiece):
    words = "Barack Obama met the unbelievably tall Angela Merkel in Berlin today".split()
    ex = qa_examples([(words, 0, 1)])
    val = prepare_validation_features(ex[:], wordpiece, max_length=14, doc_stride=2)
    n = len(val["example_id"])
    assert n >= 2
    start_logits, end_logits = np.zeros((n, 14)), np.zeros((n, 14))
    for i, offsets in enumerate(val["offset_mapping"]):
        ctx = [k for k, o in enumerate(offsets) if o is not None]
        start_logits[i, ctx[0]], end_logits[i, ctx[-1]] = 1.0 + i, 1.0 + i  # the last window scores best
    preds = postprocess_qa_predictions(ex, val, start_logits, end_logits, max_answer_length=30)
    last = val["offset_mapping"][n - 1]
    ctx = [o for o in last if o is not None]
    assert preds["q0"] == ex[0]["context"][ctx[0][0] : ctx[-1][1]]


def test_postprocess_errors(wordpiece):
    ex = qa_examples([("a b c".split(), 0, 0)])
    val = prepare_validation_features(ex[:], wordpiece, max_length=16, doc_stride=2)
    with pytest.raises(ValueError, match="one row per feature"):
        postprocess_qa_predictions(ex, val, np.zeros((2, 16)), np.zeros((2, 16)))
    other = Dataset.from_dict({"id": ["zz"], "context": ["a b c"]})
    with pytest.raises(ValueError, match="feature 0 belongs to example 'q0'"):
        postprocess_qa_predictions(other, val, np.zeros((1, 16)), np.zeros((1, 16)))
    nothing = postprocess_qa_predictions(ex, val, np.zeros((1, 16)), np.zeros((1, 16)), max_answer_length=0)
    assert nothing == {"q0": ""}


# ============================================================================ real data (zoo)
@pytest.mark.zoo
def test_sentiment_splits_sizes_and_label_balance():
    ds = load_dataset("sentiment")
    assert ds.num_rows == {"train": 8452, "validation": 1057, "test": 1057}
    assert ds["train"].features["label"].names == ["negative", "positive"]
    total = sum(sum(d["label"]) for d in ds.values()) / sum(ds.num_rows.values())
    for split in ds.values():
        assert abs(sum(split["label"]) - total * len(split)) <= 2  # stratified: within a row or two
    texts = [set(d["text"]) for d in ds.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


@pytest.mark.zoo
def test_ner_tag_names_and_splits():
    ds = load_dataset("ner")
    assert ds["train"].features["ner_tags"].feature.names == NER_TAGS
    assert ds.num_rows == {"train": 1836, "validation": 229, "test": 230}
    assert ds["train"].column_names == ["id", "tokens", "ner_tags"]
    assert all(len(t) == len(g) for t, g in zip(ds["train"]["tokens"], ds["train"]["ner_tags"]))


@pytest.mark.zoo
def test_qa_answers_sit_at_their_offsets_and_no_tweet_straddles_splits():
    ds = load_dataset("qa")
    assert ds.num_rows == {"train": 931, "validation": 105, "test": 122}
    tweets = {}
    for split, d in ds.items():
        for row in d:
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start : start + len(text)] == text
            tweets.setdefault(row["context"], set()).add(split)
    assert all(len(splits) == 1 for splits in tweets.values())


@pytest.mark.zoo
def test_real_tokenizers_on_real_qa_and_ner(minilm, smollm2):
    qa = load_dataset("qa")["validation"]
    ner = load_dataset("ner")["validation"].select(range(40))
    for tok in (minilm, smollm2):
        train = qa.map(prepare_train_features, batched=True, remove_columns=qa.column_names,
                       fn_kwargs=dict(tokenizer=tok, max_length=40, doc_stride=12))
        val = qa.map(prepare_validation_features, batched=True, remove_columns=qa.column_names,
                     fn_kwargs=dict(tokenizer=tok, max_length=40, doc_stride=12))
        contexts = dict(zip(qa["id"], qa["context"]))
        answers = dict(zip(qa["id"], (a["text"][0] for a in qa["answers"])))
        hit = set()
        for t, v in zip(train, val):
            s, e = t["start_positions"], t["end_positions"]
            if s == e == 0:
                continue
            offsets = v["offset_mapping"]
            assert contexts[v["example_id"]][offsets[s][0] : offsets[e][1]] == answers[v["example_id"]]
            hit.add(v["example_id"])
        # windows overlap by doc_stride tokens, so an answer of at most doc_stride + 1 tokens is whole in one
        for row in qa:
            start = row["answers"]["answer_start"][0]
            end = start + len(row["answers"]["text"][0])
            enc = tok(row["question"], row["context"], return_offsets_mapping=True)
            n_answer = sum(1 for (a, b), seq in zip(enc["offset_mapping"][0].tolist(), enc.sequence_ids(0))
                           if seq == 1 and a < end and b > start)
            assert row["id"] in hit or n_answer > 13
        aligned = ner.map(tokenize_and_align_labels, batched=True,
                          fn_kwargs=dict(tokenizer=tok, max_length=128))
        for row in aligned:
            assert [lab for lab in row["labels"] if lab != -100] == row["ner_tags"]
