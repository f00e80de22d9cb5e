"""Extractive question answering: contexts → token windows with answer positions; logits → answer text.

The model reads "question + context" and scores every token as the start and as the end of the answer.
Following Hugging Face's run_qa example (``prepare_train_features``, ``prepare_validation_features``,
``postprocess_qa_predictions``):

* a context longer than ``max_length`` is cut into overlapping windows (``doc_stride`` tokens shared
  between neighbours), each carrying the whole question, so an answer near a cut is whole in some window;
* training: the answer's first and last token in each window, or, when the window does not hold the
  whole answer, the window's first real token — [CLS] (index 0) for BERT-style tokenizers; a decoder
  tokenizer such as SmolLM2's has no [CLS], and its first question token (index 0 with right padding)
  plays the same "no answer here" role;
* evaluation: the best-scoring valid span over all windows of an example, mapped back to characters.

The question comes first and the context second, whatever the padding side. Host data only: lists and
NumPy arrays.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict

import numpy as np

CONTEXT = 1  # sequence id of the context (text_pair) in a tokenized (question, context) pair


def _tokenize_windows(examples, tokenizer, max_length, doc_stride):
    questions = [q.lstrip() for q in examples["question"]]  # leading spaces only waste window room
    return tokenizer(questions, examples["context"], truncation="only_second", max_length=max_length,
                     stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                     padding="max_length")


def _context_spans(enc, i, context):
    """Character span of each token of window i inside the context, or None for question, special and
    pad tokens. A byte-level BPE token such as "Ġmovie" covers the space before the word; the span starts
    after it, so that the text of a span of tokens never begins with a space."""
    spans = []
    for (start, end), seq in zip(enc["offset_mapping"][i].tolist(), enc.sequence_ids(i)):
        if seq != CONTEXT:
            spans.append(None)
            continue
        while start < end and context[start].isspace():
            start += 1
        spans.append((start, end))
    return spans


def answer_token_span(spans, start_char, end_char):
    """(first token, last token) of the characters [start_char, end_char), or None when the window's
    context tokens do not cover them all. ``spans``: per token, its (start, end) in the context or None."""
    context_tokens = [k for k, s in enumerate(spans) if s is not None]
    if not context_tokens:
        return None
    if spans[context_tokens[0]][0] > start_char or spans[context_tokens[-1]][1] < end_char:
        return None  # the answer begins before or ends after this window
    first = max(k for k in context_tokens if spans[k][0] <= start_char)  # the token the answer starts in
    last = min(k for k in context_tokens if spans[k][1] >= end_char)  # the token the answer ends in
    return first, last


def prepare_train_features(examples, tokenizer, max_length=384, doc_stride=128):
    """For ``ds.map(..., batched=True, remove_columns=ds.column_names)``: windows with answer positions.

    Returns input_ids, attention_mask, token_type_ids (padded to ``max_length``) and start_positions /
    end_positions: token indices of the first answer's first and last token, or both the index of the
    window's first real token ([CLS], 0 with right padding) in a window that does not contain the whole
    answer. One example gives as many rows as its context needs windows.
    """
    enc = _tokenize_windows(examples, tokenizer, max_length, doc_stride)
    starts, ends = [], []
    for i, example in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        answers, context = examples["answers"][example], examples["context"][example]
        no_answer = int(np.argmax(enc["attention_mask"][i]))  # the first real token: [CLS], or 0
        first, last = no_answer, no_answer
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            span = answer_token_span(_context_spans(enc, i, context), start_char, end_char)
            if span is not None:
                first, last = span
        starts.append(first)
        ends.append(last)
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    out["start_positions"], out["end_positions"] = starts, ends
    return out


def prepare_validation_features(examples, tokenizer, max_length=384, doc_stride=128):
    """As ``prepare_train_features``, but each window keeps what postprocessing needs instead of answers:
    "example_id" (the id of its example) and "offset_mapping" (each token's character span in the
    context, None for question, special and pad tokens — so a predicted span outside the context can be
    rejected)."""
    enc = _tokenize_windows(examples, tokenizer, max_length, doc_stride)
    example_ids, offsets = [], []
    for i, example in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        example_ids.append(examples["id"][example])
        offsets.append([list(s) if s is not None else None
                        for s in _context_spans(enc, i, examples["context"][example])])
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    out["example_id"], out["offset_mapping"] = example_ids, offsets
    return out


def best_span(start_logits, end_logits, is_context, n_best_size=20, max_answer_length=30):
    """The best answer span of one window: (start token, end token, score), or None if no span is valid.

    Candidates: the ``n_best_size`` highest start logits × the ``n_best_size`` highest end logits. Valid:
    both tokens in the context (``is_context``), end ≥ start, and at most ``max_answer_length`` tokens
    (end − start + 1). Score: start logit + end logit (the log of the product of the two softmax
    probabilities, up to a constant per window).
    """
    start_logits, end_logits = np.asarray(start_logits, float), np.asarray(end_logits, float)
    is_context = np.asarray(is_context, bool)
    # TASK qa.best_span: the highest-scoring valid answer span among the top start and end positions
    # BEGIN SOLUTION
    top_starts = np.argsort(-start_logits, kind="stable")[:n_best_size]
    top_ends = np.argsort(-end_logits, kind="stable")[:n_best_size]
    s, e = np.meshgrid(top_starts, top_ends, indexing="ij")  # (n_best, n_best) candidate pairs
    valid = is_context[s] & is_context[e] & (e >= s) & (e - s + 1 <= max_answer_length)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[s] + end_logits[e], -np.inf)
    k = np.unravel_index(np.argmax(scores), scores.shape)
    return int(s[k]), int(e[k]), float(scores[k])
    # END SOLUTION


def postprocess_qa_predictions(examples, features, start_logits, end_logits, n_best_size=20,
                               max_answer_length=30):
    """{example id: answer text}: for each example, the best span over all its windows, as context text.

    ``examples``: rows with "id" and "context"; ``features``: the output of ``prepare_validation_features``
    (with "example_id" and "offset_mapping"); ``start_logits`` / ``end_logits``: one row per feature.
    An example none of whose windows has a valid span gets "".
    """
    example_ids, contexts = list(examples["id"]), list(examples["context"])
    feature_example_ids, offset_mappings = list(features["example_id"]), list(features["offset_mapping"])
    if len(start_logits) != len(feature_example_ids) or len(end_logits) != len(feature_example_ids):
        raise ValueError(f"got {len(start_logits)} start and {len(end_logits)} end logit rows for "
                         f"{len(feature_example_ids)} features; one row per feature is needed")
    known = set(example_ids)
    windows_of = defaultdict(list)
    for f, example_id in enumerate(feature_example_ids):
        if example_id not in known:
            raise ValueError(f"feature {f} belongs to example {example_id!r}, which is not among the "
                             "examples")
        windows_of[example_id].append(f)
    predictions = OrderedDict()
    for example_id, context in zip(example_ids, contexts):
        best, best_text = None, ""
        for f in windows_of[example_id]:
            offsets = offset_mappings[f]
            n = len(start_logits[f])
            is_context = [k < len(offsets) and offsets[k] is not None for k in range(n)]
            span = best_span(start_logits[f], end_logits[f], is_context, n_best_size, max_answer_length)
            if span is not None and (best is None or span[2] > best):
                best = span[2]
                best_text = context[offsets[span[0]][0] : offsets[span[1]][1]]
        predictions[example_id] = best_text
    return predictions
