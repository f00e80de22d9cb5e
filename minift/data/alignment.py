"""Word-level NER labels onto subword tokens, as Hugging Face's run_ner example does.

(The HF course's ``align_labels_with_tokens`` labels every piece by default, B- turned into I-; this one
follows run_ner's ``label_all_tokens=False`` default.)

A tokenizer splits "Merkel" into "mer", "##kel" and adds [CLS] / [SEP]; the data has one tag per word.
The first token of each word gets the word's label; special tokens and the remaining pieces of a word get
-100, the ``ignore_index`` of ``F.cross_entropy``, so each word is counted once in the loss and in the
metrics. Host data only: plain Python lists (NumPy where a tokenizer returns arrays).
"""
from __future__ import annotations

IGNORE_INDEX = -100


def b_to_i_label_ids(label_names):
    """For each label id, the id to give the continuation pieces of a word with that label: B-x → I-x
    (when I-x exists), every other label → itself. ``label_names`` is a ``ClassLabel``'s ``names``."""
    index = {name: i for i, name in enumerate(label_names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i
            for i, name in enumerate(label_names)]


def align_labels_with_tokens(word_labels, word_ids, label_all_tokens=False, b_to_i=None):
    """One label per token from one label per word.

    ``word_ids``: for each token, the index of its word, or None for special and pad tokens (what
    ``BatchEncoding.word_ids(i)`` returns). The first token of word w gets ``word_labels[w]``; special
    tokens get -100; later pieces of a word get -100, or with ``label_all_tokens=True`` the word's label
    mapped through ``b_to_i`` (``b_to_i_label_ids(names)``: a B- label becomes I-, since only the first
    piece begins the entity; without ``b_to_i`` the label is copied unchanged).

        word_labels [3, 0]  (B-x, O)      tokens [CLS] mer ##kel said [SEP]
        word_ids    [None, 0, 0, 1, None]  →  labels [-100, 3, -100, 0, -100]
    """
    word_labels = [int(label) for label in word_labels]
    top = max((w for w in word_ids if w is not None), default=-1)
    if top >= len(word_labels):
        raise ValueError(f"word_ids refer to word {top}, but only {len(word_labels)} word labels were given")
    if b_to_i is None:
        b_to_i = {label: label for label in word_labels}
    # TASK data.align_labels: NER labels on subword tokens (-100 on specials and continuation pieces)
    # BEGIN SOLUTION
    labels, previous = [], None
    for word in word_ids:
        if word is None:  # [CLS], [SEP], padding
            labels.append(IGNORE_INDEX)
        elif word != previous:  # the first piece of a word carries its label
            labels.append(word_labels[word])
        else:  # a continuation piece of the same word
            labels.append(b_to_i[word_labels[word]] if label_all_tokens else IGNORE_INDEX)
        previous = word
    return labels
    # END SOLUTION


def tokenize_and_align_labels(examples, tokenizer, max_length, label_all_tokens=False, label_names=None,
                              tokens_column="tokens", tags_column="ner_tags"):
    """For ``ds.map(..., batched=True)``: tokenize the words of each example and add "labels".

        ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names,
               fn_kwargs=dict(tokenizer=tok, max_length=128, label_names=names))

    Sequences are truncated to ``max_length`` tokens (the words cut off lose their labels) and not
    padded: ``DataCollatorForTokenClassification`` pads each batch, labels with -100.
    ``label_names`` (the tags' ``ClassLabel`` names) turn B- into I- on continuation pieces when
    ``label_all_tokens=True``.
    """
    words, tags = examples[tokens_column], examples[tags_column]
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    b_to_i = b_to_i_label_ids(label_names) if label_names is not None else None
    out = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in enc.items()}  # arrays → lists of rows
    out["labels"] = [align_labels_with_tokens(tags[i], enc.word_ids(i), label_all_tokens, b_to_i)
                     for i in range(len(words))]
    return out
