"""Evaluation metrics with scikit-learn's, seqeval's and the SQuAD script's names and numbers.

    from minift import metrics
    metrics.f1_score([0, 1, 1, 0], [0, 1, 0, 0])                      # 0.666..., as sklearn gives
    metrics.entity_precision_recall_f1([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])["f1"]  # 1.0
    metrics.squad_scores({"q1": "the Eiffel tower"}, {"q1": ["Eiffel Tower"]})  # {"exact_match": 100.0, ...}
    trainer_kwargs = dict(compute_metrics=metrics.classification_metrics)

Metrics run on host-side label arrays (a few thousand predicted class ids or tag strings at the end of an
evaluation), so this file uses NumPy directly instead of the backend's ``xp``: CuPy arrays and minift
Tensors are copied to the host first (``_to_host``). Nothing here takes part in a backward pass.

Counting words used throughout, for one class c:
    tp = #(true == c and pred == c)      (true positives)
    predicted = #(pred == c)             (tp + false positives)
    support = #(true == c)               (tp + false negatives)
"""
from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import backend

__all__ = [
    "EvalPrediction", "OverfittingMonitor", "UndefinedMetricWarning", "accuracy_score",
    "classification_metrics", "confusion_matrix", "entity_precision_recall_f1", "f1_score", "fbeta_score",
    "get_entities", "normalize_answer", "perplexity", "plot_confusion_matrix",
    "precision_recall_fscore_support", "precision_score", "recall_score", "squad_exact_match", "squad_f1",
    "squad_scores", "token_classification_metrics",
]

AVERAGE_OPTIONS = (None, "binary", "micro", "macro", "weighted")


class UndefinedMetricWarning(UserWarning):
    """A score had a zero denominator (no predicted or no true samples) and was set by ``zero_division``."""


class EvalPrediction(NamedTuple):
    """What a Trainer hands to ``compute_metrics``; the field names are Hugging Face's.

    ``predictions``: logits (N, C) for classification, (N,) or (N, 1) for regression, (N, T, C) for tokens.
    ``label_ids``: the targets, (N,) or (N, T) with -100 on positions that carry no label.
    """
    predictions: np.ndarray
    label_ids: np.ndarray


# ---------------------------------------------------------------------------------------- input checking
def _to_host(a) -> np.ndarray:
    """A NumPy array from a list, a NumPy/CuPy array or a minift Tensor."""
    if hasattr(a, "numpy") and callable(a.numpy) and not isinstance(a, np.ndarray):
        return np.asarray(a.numpy())
    return backend.to_numpy(a)


def _label_array(y, name: str) -> np.ndarray:
    """``y`` as a 1-D array of class labels (integers, integral floats, booleans or strings)."""
    y = _to_host(y)
    if y.ndim != 1:
        hint = " (logits? take .argmax(-1) first)" if y.ndim == 2 else ""
        raise ValueError(f"{name} must be a 1-D sequence of class labels, got shape {y.shape}{hint}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0].item()
        raise ValueError(f"{name} must hold class labels (integers or strings), got the non-integer value "
                         f"{bad!r}: probabilities or logits? take the predicted class first")
    if y.dtype.kind not in "biufUSO":
        raise TypeError(f"{name} must hold integers or strings, got dtype {y.dtype}")
    return y


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (y_true, y_pred) pair: same length, not empty, both numbers or both strings."""
    y_true, y_pred = _label_array(y_true, "y_true"), _label_array(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: there is nothing to score")
    is_text = [y.dtype.kind in "USO" for y in (y_true, y_pred)]
    if is_text[0] != is_text[1]:
        kinds = ["strings" if t else "numbers" for t in is_text]
        raise ValueError(f"y_true holds {kinds[0]} but y_pred holds {kinds[1]}: labels must be of one kind")
    return y_true, y_pred


def _check_zero_division(zero_division) -> float:
    """The value a 0/0 score takes: "warn" → 0.0 (with a warning), 0 → 0.0, 1 → 1.0, np.nan → nan."""
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return 0.0
    elif isinstance(zero_division, (int, float, np.number)):
        if zero_division in (0, 1) or np.isnan(zero_division):
            return float(zero_division)
    raise ValueError(f"zero_division must be 'warn', 0, 1 or np.nan, got {zero_division!r}")


def _label_index(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each element of ``y`` in ``labels`` (-1 where it is not one of them). (N,) → (N,)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    position = np.clip(np.searchsorted(sorted_labels, y), 0, len(labels) - 1)
    found = sorted_labels[position] == y
    return np.where(found, order[position], -1)


def _choose_labels(y_true, y_pred, labels) -> np.ndarray:
    """The classes to score: ``labels`` when given, else every label in y_true or y_pred, sorted."""
    if labels is None:
        return np.unique(np.concatenate([y_true, y_pred]))
    labels = _to_host(labels).reshape(-1)  # any list or array -> (K,): the classes
    if len(labels) and (labels.dtype.kind in "USO") != (y_true.dtype.kind in "USO"):
        raise ValueError(f"labels {labels.tolist()} are not of the same kind as y_true (dtype "
                         f"{y_true.dtype}): use strings for string labels and numbers for numeric ones")
    if len(labels) == 0:
        raise ValueError("labels must name at least one class, got an empty list")
    if len(np.unique(labels)) != len(labels):
        raise ValueError(f"labels must not repeat a class, got {labels.tolist()}")
    return labels


# ------------------------------------------------------------------------------- accuracy and P / R / F
def accuracy_score(y_true, y_pred, *, normalize=True) -> float:
    """Fraction of exact matches: accuracy = #(y_true == y_pred) / N (the count when normalize=False)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    correct = np.sum(y_true == y_pred)
    return float(correct / len(y_true)) if normalize else float(correct)


def _divide(numerator, denominator, zero_value, metric, reason, warn) -> np.ndarray:
    """numerator / denominator per class; classes with a zero denominator get ``zero_value``.

    With ``warn`` a UndefinedMetricWarning names the metric and why it is undefined (sklearn's behaviour
    for zero_division="warn").
    """
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    undefined = denominator == 0
    result = numerator / np.where(undefined, 1.0, denominator)
    result[undefined] = zero_value
    if warn and undefined.any():
        where = "due to" if len(result) == 1 else f"in {int(undefined.sum())} of {len(result)} labels with"
        warnings.warn(f"{metric} is ill-defined and being set to {zero_value} {where} no {reason} samples. "
                      "Use the `zero_division` parameter to choose the value and silence this warning.",
                      UndefinedMetricWarning, stacklevel=4)
    return result


def _nan_average(values: np.ndarray, weights=None) -> float:
    """Mean of ``values`` skipping NaN (zero_division=np.nan); all weights 0 → the plain mean (sklearn)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None or np.sum(np.asarray(weights)[keep]) == 0:
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=np.asarray(weights)[keep]))


def _scores_from_counts(tp, predicted, support, *, beta, average, zero_division, warn_for):
    """Precision, recall, F-beta and support from per-class counts, averaged as ``average`` asks.

    precision = tp / predicted                 recall = tp / support
    F_beta    = (1 + β²)·P·R / (β²·P + R)  =  (1 + β²)·tp / (β²·support + predicted)
    The count form is the one computed: it is 0/0 (→ zero_division) only when a class is neither true nor
    predicted, whereas P·R/(β²P + R) would be undefined whenever P is.

    average: None (per class), "micro" (sum the counts over classes, then divide), "macro" (unweighted mean
    of the per-class scores), "weighted" (mean weighted by support), "binary" (the one class given).
    """
    if beta < 0 or np.isnan(beta):
        raise ValueError(f"beta must be >= 0 (the weight of recall against precision), got {beta}")
    zero_value = _check_zero_division(zero_division)
    warn = zero_division == "warn"
    tp, predicted, support = (np.asarray(c, dtype=np.int64) for c in (tp, predicted, support))
    if average == "micro":  # pool every class's counts into one
        tp, predicted, support = (c.sum(keepdims=True) for c in (tp, predicted, support))  # (1,) each
    precision = _divide(tp, predicted, zero_value, "Precision", "predicted", warn and "precision" in warn_for)
    recall = _divide(tp, support, zero_value, "Recall", "true", warn and "recall" in warn_for)
    if np.isposinf(beta):
        f_score = recall
    elif beta == 0:
        f_score = precision
    else:
        beta2 = beta ** 2
        f_score = _divide((1 + beta2) * tp, beta2 * support + predicted, zero_value, "F-score",
                          "true nor predicted", warn and "f-score" in warn_for)
    if average is None:
        return precision, recall, f_score, support
    weights = support if average == "weighted" else None
    return (_nan_average(precision, weights), _nan_average(recall, weights), _nan_average(f_score, weights),
            None)


def _prfs(y_true, y_pred, *, beta, labels, pos_label, average, zero_division, warn_for):
    """Shared body of precision_recall_fscore_support and the single-score functions."""
    if average not in AVERAGE_OPTIONS:
        hint = " (minift has no multilabel metrics)" if average == "samples" else ""
        raise ValueError(f"average must be one of {list(AVERAGE_OPTIONS)}, got {average!r}{hint}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    present = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"Target is multiclass ({len(present)} labels: {present.tolist()}) but "
                             "average='binary'. Please choose another average setting, one of "
                             "[None, 'micro', 'macro', 'weighted'].")
        if pos_label not in present.tolist() and (len(present) == 2 or isinstance(pos_label, str) !=
                                                  (present.dtype.kind in "USO")):
            raise ValueError(f"pos_label={pos_label!r} is not a valid label. It should be one of "
                             f"{present.tolist()}")
        labels = np.asarray([pos_label])  # the score of the positive class alone (labels is ignored)
    elif pos_label not in (None, 1):
        warnings.warn(f"pos_label={pos_label!r} is ignored when average={average!r} (only average='binary' "
                      "uses it); pass labels=[pos_label] to score that one class.", UserWarning, stacklevel=3)
    labels = _choose_labels(y_true, y_pred, labels)
    true_index, pred_index = _label_index(y_true, labels), _label_index(y_pred, labels)
    n = len(labels)
    support = np.bincount(true_index[true_index >= 0], minlength=n)
    predicted = np.bincount(pred_index[pred_index >= 0], minlength=n)
    tp = np.bincount(true_index[(true_index == pred_index) & (true_index >= 0)], minlength=n)
    return _scores_from_counts(tp, predicted, support, beta=beta, average=average,
                               zero_division=zero_division, warn_for=warn_for)


def precision_recall_fscore_support(y_true, y_pred, *, beta=1.0, labels=None, pos_label=1, average=None,
                                    zero_division="warn"):
    """Precision, recall, F-beta and support, as ``sklearn.metrics.precision_recall_fscore_support``.

    precision = tp / (tp + fp)    recall = tp / (tp + fn)    F_β = (1 + β²)·P·R / (β²·P + R)
    support = tp + fn (how many samples truly have the class)

    average=None gives arrays over ``labels`` (default: the sorted labels seen in y_true or y_pred) and the
    support per label; "binary" scores ``pos_label`` alone (at most two labels may occur); "micro" pools the
    counts of all labels (for single-label multiclass data micro-F1 = accuracy); "macro" is the unweighted
    mean over labels; "weighted" weights each label by its support. Averaged results are floats and the
    support is None. A 0/0 score takes ``zero_division`` ("warn" = 0 and an UndefinedMetricWarning).
    """
    return _prfs(y_true, y_pred, beta=beta, labels=labels, pos_label=pos_label, average=average,
                 zero_division=zero_division, warn_for=("precision", "recall", "f-score"))


def precision_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """Precision = tp / (tp + fp): of the samples predicted as the class, the fraction that truly are."""
    return _prfs(y_true, y_pred, beta=1.0, labels=labels, pos_label=pos_label, average=average,
                 zero_division=zero_division, warn_for=("precision",))[0]


def recall_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """Recall = tp / (tp + fn): of the samples that truly are the class, the fraction predicted as it."""
    return _prfs(y_true, y_pred, beta=1.0, labels=labels, pos_label=pos_label, average=average,
                 zero_division=zero_division, warn_for=("recall",))[1]


def fbeta_score(y_true, y_pred, *, beta, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """F_β = (1 + β²)·P·R / (β²·P + R): β > 1 favours recall, β < 1 precision."""
    return _prfs(y_true, y_pred, beta=beta, labels=labels, pos_label=pos_label, average=average,
                 zero_division=zero_division, warn_for=("f-score",))[2]


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    """F1 = 2·P·R / (P + R) = 2·tp / (2·tp + fp + fn), the harmonic mean of precision and recall."""
    return fbeta_score(y_true, y_pred, beta=1.0, labels=labels, pos_label=pos_label, average=average,
                       zero_division=zero_division)


def confusion_matrix(y_true, y_pred, *, labels=None, normalize=None) -> np.ndarray:
    """C[i, j] = number of samples whose true label is labels[i] and predicted label is labels[j].

    Rows are true labels, columns predictions (sklearn's layout): row sums are the supports, column sums
    the prediction counts, the diagonal the correct predictions. Samples whose true or predicted label is
    not in ``labels`` are left out. ``normalize``: "true" divides each row by its sum (the diagonal becomes
    per-class recall), "pred" each column (per-class precision), "all" by N; a 0/0 entry becomes 0.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = _choose_labels(y_true, y_pred, labels)
    n = len(labels)
    true_index, pred_index = _label_index(y_true, labels), _label_index(y_pred, labels)
    if not (true_index >= 0).any():
        raise ValueError(f"At least one label specified must be in y_true: none of {labels.tolist()} "
                         "occurs there")
    both_known = (true_index >= 0) & (pred_index >= 0)
    flat_cell = true_index[both_known] * n + pred_index[both_known]  # row-major cell number of each sample
    counts = np.bincount(flat_cell, minlength=n * n).reshape(n, n).astype(np.int64)  # (n_labels, n_labels)
    if n == 1:
        warnings.warn("Only one label was found in y_true and y_pred, so the matrix is 1×1; pass labels= "
                      "with every class to get the full matrix.", UserWarning, stacklevel=2)
    if normalize is None:
        return counts
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalize == "true":
            matrix = counts / counts.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            matrix = counts / counts.sum(axis=0, keepdims=True)
        else:
            matrix = counts / counts.sum()
    return np.nan_to_num(matrix)


# ------------------------------------------------------------------------------------ entity level (NER)
_BIO_TAG = re.compile(r"^(?P<prefix>[BI])(?:-(?P<type>.+))?$")
_NO_TYPE = "_"  # the type of untyped tags "B" / "I" (seqeval's convention)


def _parse_tag(tag, position) -> tuple[str, str]:
    """'B-PER' → ('B', 'PER'); 'I' → ('I', '_'); 'O' → ('O', '')."""
    if tag == "O":
        return "O", ""
    match = _BIO_TAG.match(tag) if isinstance(tag, str) else None
    if match is None:
        raise ValueError(f"tag {tag!r} at position {position} is not a BIO tag: expected 'O', 'B', 'I', "
                         "'B-TYPE' or 'I-TYPE'")
    return match["prefix"], match["type"] or _NO_TYPE


def get_entities(tags, *, mode=None) -> list[tuple[str, int, int]]:
    """The entities in one sentence's BIO tags, as (type, start, end) with ``end`` inclusive.

    mode=None follows conlleval (and seqeval's default): an entity starts at a B- tag, and also at an I- tag
    that does not continue an entity of its type (after O, or after a tag of another type); it ends before
    the next O, B-, or tag of another type. So ["I-PER", "I-PER", "O"] holds one PER entity, (PER, 0, 1).

    mode="strict" follows seqeval's strict IOB2: an entity is a B-X followed by as many I-X as come; an I-
    tag that does not continue such an entity belongs to no entity. ["I-PER", "I-PER", "O"] holds none.
    Every strict entity is also a default-mode entity; on valid IOB2 (each I-X continues a B-X or I-X) the
    two modes agree.

    ``mode`` is keyword-only: seqeval's ``get_entities(seq, suffix=False)`` takes ``suffix`` second (tags written
    PER-B), so a positional second argument would mean different things in the two libraries.

        >>> get_entities(["B-PER", "I-PER", "O", "B-LOC"])
        [('PER', 0, 1), ('LOC', 3, 3)]
    """
    if mode not in (None, "strict"):
        raise ValueError(f"mode must be None (conlleval) or 'strict' (IOB2), got {mode!r}")
    if isinstance(tags, str) or any(isinstance(t, (list, tuple)) for t in tags):
        raise TypeError("get_entities takes one sentence: a list of tag strings such as "
                        "['B-PER', 'I-PER', 'O']")
    entities = []
    open_type, open_start = None, None  # the entity being read, if any
    for position, tag in enumerate(tags):
        prefix, entity_type = _parse_tag(tag, position)
        continues = prefix == "I" and open_type == entity_type
        if open_type is not None and not continues:  # O, B-, or another type closes the open entity
            entities.append((open_type, open_start, position - 1))
            open_type = None
        if prefix == "B" or (prefix == "I" and open_type is None and mode is None):
            open_type, open_start = entity_type, position
    if open_type is not None:
        entities.append((open_type, open_start, len(tags) - 1))
    return entities


def _check_tag_sequences(y_true, y_pred):
    for name, sequences in (("y_true", y_true), ("y_pred", y_pred)):
        if isinstance(sequences, str) or not all(isinstance(s, (list, tuple)) for s in sequences):
            raise TypeError(f"{name} must be a list of sentences, each a list of tags (wrap a single "
                            "sentence as [tags])")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: there is nothing to score")
    for i, (true_tags, pred_tags) in enumerate(zip(y_true, y_pred)):
        if len(true_tags) != len(pred_tags):
            raise ValueError(f"sentence {i} has {len(true_tags)} true tags but {len(pred_tags)} predicted "
                             "tags")


def entity_precision_recall_f1(y_true, y_pred, mode=None, average="micro", zero_division="warn") -> dict:
    """Entity-level precision, recall and F1 over sentences of BIO tags, equal to seqeval's.

    An entity counts as correct only when the predicted (sentence, type, start, end) equals a true one;
    entities come from ``get_entities(tags, mode=mode)``. Per entity type:
        precision = correct / predicted entities    recall = correct / true entities
        f1 = 2·P·R / (P + R)                        number = true entities (the support)
    Overall: "micro" pools the counts of all types (seqeval's default, conlleval's "overall"), "macro"
    averages the per-type scores, "weighted" weights them by number.

    Returns {"precision", "recall", "f1", "number", "per_type": {type: {"precision", "recall", "f1",
    "number"}}} with types sorted by name (seqeval's classification report as a dict).
    """
    if average not in ("micro", "macro", "weighted"):
        raise ValueError(f"average must be 'micro', 'macro' or 'weighted', got {average!r}")
    _check_tag_sequences(y_true, y_pred)
    true_entities = {(i, *e) for i, tags in enumerate(y_true) for e in get_entities(list(tags), mode=mode)}
    pred_entities = {(i, *e) for i, tags in enumerate(y_pred) for e in get_entities(list(tags), mode=mode)}
    correct = true_entities & pred_entities
    types = sorted({e[1] for e in true_entities | pred_entities})
    tp = [sum(e[1] == t for e in correct) for t in types]
    predicted = [sum(e[1] == t for e in pred_entities) for t in types]
    support = [sum(e[1] == t for e in true_entities) for t in types]
    per_type = {}
    if types:
        with warnings.catch_warnings():  # the per-type scores warn once below, through the overall ones
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            p, r, f, _ = _scores_from_counts(tp, predicted, support, beta=1.0, average=None,
                                             zero_division=zero_division, warn_for=())
        per_type = {t: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                        "number": int(support[k])} for k, t in enumerate(types)}
    if not types and average != "micro":  # no entity anywhere: nothing to average over (seqeval's values)
        zero_value = _check_zero_division(zero_division)
        overall = (float("nan"),) * 3 if average == "macro" else (zero_value,) * 3
    else:
        counts = (tp, predicted, support) if types else ([0], [0], [0])
        overall = _scores_from_counts(*counts, beta=1.0, average=average, zero_division=zero_division,
                                      warn_for=("precision", "recall", "f-score"))[:3]
    return {"precision": overall[0], "recall": overall[1], "f1": overall[2], "number": int(sum(support)),
            "per_type": per_type}


# ------------------------------------------------------------------------------------- SQuAD EM and F1
def normalize_answer(s: str) -> str:
    """SQuAD v1.1's normalization: lowercase, drop ASCII punctuation, drop the articles a/an/the, and
    collapse whitespace — in that order, as in the official evaluation script."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in string.punctuation)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _check_golds(golds) -> list[str]:
    if isinstance(golds, str):
        return [golds]
    golds = list(golds)
    if not golds:
        raise ValueError("golds is empty: a question needs at least one gold answer to be scored")
    return golds


def squad_exact_match(pred: str, golds) -> float:
    """1.0 when normalize_answer(pred) equals normalize_answer of some gold answer, else 0.0."""
    normalized_pred = normalize_answer(pred)
    return float(any(normalized_pred == normalize_answer(g) for g in _check_golds(golds)))


def _token_f1(pred: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(pred).split(), normalize_answer(gold).split()
    shared = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())  # overlap, counting repeats
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred_tokens), shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(pred: str, golds) -> float:
    """Token-overlap F1, the best over the gold answers (SQuAD v1.1).

    With the normalized answers split on whitespace and ``shared`` the size of their multiset
    intersection: P = shared / len(pred tokens), R = shared / len(gold tokens), F1 = 2PR / (P + R).
    As in the v1.1 script, F1 is 0 when nothing is shared — also when both answers normalize to the empty
    string (say "the" against "a"), where exact match is 1.
    """
    return max(_token_f1(pred, g) for g in _check_golds(golds))


def squad_scores(predictions: dict, references: dict) -> dict:
    """{"exact_match", "f1"} as percentages (×100), averaged over the questions in ``references``.

    ``predictions`` is {question id: predicted text}, ``references`` {question id: [gold texts]}. A
    question with no prediction scores 0 on both, as in the official script (which prints "Unanswered
    question ... will receive score 0"); here a warning names the ids. Predictions for ids that are not in
    ``references`` are ignored.
    """
    if not references:
        raise ValueError("references is empty: there are no questions to score")
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(map(repr, missing[:5])) + more
        warnings.warn(f"{len(missing)} of {len(references)} questions have no prediction and score 0: "
                      f"{shown}", UserWarning, stacklevel=2)
    exact_match = f1 = 0.0
    for qid, golds in references.items():
        if qid in predictions:
            exact_match += squad_exact_match(predictions[qid], golds)
            f1 += squad_f1(predictions[qid], golds)
    return {"exact_match": 100.0 * exact_match / len(references), "f1": 100.0 * f1 / len(references)}


# ----------------------------------------------------------------------------------------- perplexity
def perplexity(nll, n_tokens=None) -> float:
    """Perplexity = exp(mean negative log-likelihood per token).

    perplexity(mean_loss)           for a mean cross-entropy (in nats) such as a language model's loss;
    perplexity(nll_sum, n_tokens)   for a summed NLL: exp(nll_sum / n_tokens).
    Sum over all tokens and divide once: the mean of per-batch means is wrong when batches hold different
    numbers of tokens. A uniform guess over V tokens has perplexity V. Returns inf when exp overflows.
    """
    nll = float(nll.item() if hasattr(nll, "item") else nll)
    if n_tokens is not None:
        n_tokens = float(n_tokens.item() if hasattr(n_tokens, "item") else n_tokens)
        if not n_tokens > 0:
            raise ValueError(f"n_tokens must be > 0, got {n_tokens}")
        nll = nll / n_tokens
    if math.isnan(nll) or nll < 0:
        raise ValueError(f"the negative log-likelihood must be a number >= 0, got {nll} (a log-likelihood "
                         "is <= 0: pass its negative)")
    try:
        return math.exp(nll)
    except OverflowError:  # nll > 709.78: beyond the largest float64
        return float("inf")


# ------------------------------------------------------------------------------ Trainer compute_metrics
def _unpack_eval_pred(eval_pred) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, label_ids) as NumPy arrays from an EvalPrediction or a (predictions, labels) tuple."""
    if hasattr(eval_pred, "predictions") and hasattr(eval_pred, "label_ids"):
        predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
    elif isinstance(eval_pred, (tuple, list)) and len(eval_pred) == 2:
        predictions, label_ids = eval_pred
    else:
        raise TypeError("eval_pred must be an EvalPrediction or a (predictions, label_ids) pair, got "
                        f"{type(eval_pred).__name__}")
    if isinstance(predictions, tuple):
        predictions = predictions[0]  # a model that returns several outputs: the logits come first (HF)
    return _to_host(predictions), _to_host(label_ids)


def classification_metrics(eval_pred) -> dict:
    """compute_metrics for sequence classification (and regression), for a Trainer.

    Classification, logits (N, C) with C >= 2: predicted class = argmax over C; returns "accuracy" and
    "precision", "recall", "f1" — for the positive class 1 when C == 2 (average="binary"), else the macro
    average over the labels that occur. A class that is never predicted scores precision 0 (zero_division=0,
    so no warning at every evaluation).
    Regression, predictions (N,) or (N, 1): returns "mse" = mean((pred - y)²) and "pearson" =
    cov(pred, y) / (std(pred)·std(y)) (nan when either is constant).
    """
    predictions, label_ids = _unpack_eval_pred(eval_pred)
    if predictions.ndim == 1 or (predictions.ndim == 2 and predictions.shape[1] == 1):
        predicted = predictions.reshape(-1).astype(np.float64)  # (N,)
        target = label_ids.reshape(-1).astype(np.float64)  # labels (N,) or (N, 1) -> (N,)
        if len(predicted) != len(target) or len(target) == 0:
            raise ValueError(f"regression needs as many predictions as labels (at least one), got "
                             f"{len(predicted)} and {len(target)}")
        centred_pred, centred_target = predicted - predicted.mean(), target - target.mean()
        spread = math.sqrt(float(np.sum(centred_pred ** 2)) * float(np.sum(centred_target ** 2)))
        pearson = float(np.sum(centred_pred * centred_target)) / spread if spread > 0 else float("nan")
        return {"mse": float(np.mean((predicted - target) ** 2)), "pearson": pearson}
    if predictions.ndim != 2:
        raise ValueError(f"classification predictions must be logits (N, C), got shape {predictions.shape}")
    n_classes = predictions.shape[1]
    predicted = predictions.argmax(axis=-1)  # (N,)
    label_ids = label_ids.reshape(-1)  # labels (N,) or (N, 1) -> (N,)
    if len(label_ids) != len(predicted):
        raise ValueError(f"got {len(predicted)} predictions but {len(label_ids)} labels")
    if len(label_ids) and not np.all((label_ids >= 0) & (label_ids < n_classes)):
        raise ValueError(f"labels must lie in [0, {n_classes}) for logits with {n_classes} columns, got "
                         f"values from {label_ids.min()} to {label_ids.max()}")
    average = "binary" if n_classes == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(label_ids, predicted, average=average,
                                                               zero_division=0)
    accuracy = accuracy_score(label_ids, predicted)
    return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def token_classification_metrics(label_names, mode=None):
    """A compute_metrics for token classification (NER): entity-level P/R/F1 plus token accuracy.

    ``label_names[i]`` is the BIO tag of class id i (e.g. ["O", "B-PER", "I-PER"]). The returned function
    takes predictions (N, T, C) logits — or (N, T) class ids — and label_ids (N, T), drops the positions
    labelled -100 (padding, special tokens, later word pieces), turns each row into a tag sentence and
    scores it with entity_precision_recall_f1 (micro average, zero_division=0). "accuracy" is the fraction
    of labelled tokens whose predicted tag is right.
    """
    label_names = list(label_names)
    if not label_names:
        raise ValueError("label_names is empty: give the tag of each class id")
    for position, name in enumerate(label_names):
        _parse_tag(name, position)  # fail now, not in the middle of an evaluation

    def compute_metrics(eval_pred) -> dict:
        predictions, label_ids = _unpack_eval_pred(eval_pred)
        predicted = predictions.argmax(axis=-1) if predictions.ndim == 3 else predictions  # (N, T)
        if predicted.shape != label_ids.shape or label_ids.ndim != 2:
            raise ValueError(f"predictions (N, T, C) or (N, T) must match label_ids (N, T), got shapes "
                             f"{predictions.shape} and {label_ids.shape}")
        labelled = label_ids != -100  # (N, T)
        if not labelled.any():
            raise ValueError("every position of label_ids is -100: there is no labelled token to score")
        known = labelled & (label_ids >= 0) & (label_ids < len(label_names))
        if not np.array_equal(known, labelled):
            bad = label_ids[labelled & ~known][0]
            raise ValueError(f"label id {bad} is outside [0, {len(label_names)}) and is not -100")
        if predicted[labelled].min() < 0 or predicted[labelled].max() >= len(label_names):
            raise ValueError(f"predicted class ids must lie in [0, {len(label_names)})")
        true_tags = [[label_names[i] for i in row[mask]] for row, mask in zip(label_ids, labelled)]
        pred_tags = [[label_names[i] for i in row[mask]] for row, mask in zip(predicted, labelled)]
        scores = entity_precision_recall_f1(true_tags, pred_tags, mode=mode, zero_division=0)
        accuracy = float(np.mean(predicted[labelled] == label_ids[labelled]))
        return {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
                "accuracy": accuracy}

    return compute_metrics


# --------------------------------------------------------------------------------------------- pictures
def plot_confusion_matrix(cm, labels, path, normalize=None, title="confusion matrix"):
    """Draw a confusion matrix (rows: true labels, columns: predicted) as a PNG at ``path``; returns it.

    ``cm`` holds counts as confusion_matrix returns them; ``normalize`` ("true", "pred", "all") divides it
    as confusion_matrix would before drawing. Each cell shows its value. ``path=None`` only returns the
    Figure (a notebook displays it).
    """
    # A bare Figure (no pyplot): no global backend switch and nothing left open; saving renders with Agg.
    from matplotlib.figure import Figure

    counts = np.asarray(_to_host(cm), dtype=np.float64)
    labels = [str(label) for label in labels]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(labels):
        raise ValueError(f"cm must be square with one row per label: got shape {counts.shape} and "
                         f"{len(labels)} labels")
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = {None: 1.0, "true": counts.sum(axis=1, keepdims=True),
                       "pred": counts.sum(axis=0, keepdims=True), "all": counts.sum()}[normalize]
        shown = np.nan_to_num(counts / denominator)
    n = len(labels)
    fig = Figure(figsize=(1.0 + 0.6 * n + 2.0, 1.0 + 0.6 * n + 1.0))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title if normalize is None else f"{title} (normalized over {normalize})")
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(round(shown[i, j]))}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > threshold else "black")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


# ------------------------------------------------------------------------------------------ overfitting
class OverfittingMonitor:
    """Warns when validation loss has risen for ``patience`` evaluations in a row while training loss fell.

    That divergence is the classic sign of overfitting: the model keeps fitting the training set better
    while it gets worse on data it has not seen. Call ``update(train_loss, val_loss)`` after each
    evaluation; it returns the warning text when a streak reaches ``patience`` (and warns once per streak),
    otherwise None. ``warnings`` keeps every message, ``history`` every (train_loss, val_loss) pair.
    """

    def __init__(self, patience=2):
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.patience = patience
        self.history: list[tuple[float, float]] = []
        self.warnings: list[str] = []
        self.streak = 0  # consecutive evaluations with val loss up and train loss down

    def update(self, train_loss, val_loss):
        train_loss, val_loss = float(train_loss), float(val_loss)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise ValueError(f"losses must be finite, got train_loss={train_loss}, val_loss={val_loss}")
        if self.history:
            previous_train, previous_val = self.history[-1]
            diverging = val_loss > previous_val and train_loss < previous_train
            self.streak = self.streak + 1 if diverging else 0
        self.history.append((train_loss, val_loss))
        if self.streak != self.patience:
            return None
        first_train, first_val = self.history[-1 - self.patience]
        message = (f"possible overfitting: validation loss rose for {self.patience} evaluations in a row "
                   f"({first_val:.4g} → {val_loss:.4g}) while training loss fell ({first_train:.4g} → "
                   f"{train_loss:.4g}); consider early stopping, more regularization or more data")
        self.warnings.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
        return message
