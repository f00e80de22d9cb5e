"""Metrics: hand-computed values, properties, bad input, and (when installed) scikit-learn and seqeval.

scikit-learn and seqeval are optional references, never dependencies: the tests that use them skip when
they are missing, and every metric also has hand-computed tests that need nothing but NumPy.
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minift as mf
from minift import metrics
from minift.metrics import (
    EvalPrediction, OverfittingMonitor, UndefinedMetricWarning, accuracy_score, classification_metrics,
    confusion_matrix, entity_precision_recall_f1, f1_score, fbeta_score, get_entities, normalize_answer,
    perplexity, plot_confusion_matrix, precision_recall_fscore_support, precision_score, recall_score,
    squad_exact_match, squad_f1, squad_scores, token_classification_metrics,
)

try:
    import sklearn.metrics as sklearn_metrics
except ImportError:  # an optional reference
    sklearn_metrics = None
try:
    from seqeval import metrics as seqeval_metrics
    from seqeval.metrics import sequence_labeling as seqeval_default
    from seqeval.metrics import v1 as seqeval_v1
    from seqeval.scheme import IOB2
except ImportError:  # an optional reference
    seqeval_metrics = None
needs_sklearn = pytest.mark.skipif(sklearn_metrics is None, reason="scikit-learn is not installed (optional)")
needs_seqeval = pytest.mark.skipif(seqeval_metrics is None, reason="seqeval is not installed (optional)")


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with warnings silenced (for comparisons where 0/0 warnings are expected and irrelevant)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------- hand-computed: binary
# y_true = [1, 1, 1, 1, 0, 0]
# y_pred = [1, 1, 0, 0, 1, 0]
# positive class 1: tp = 2 (positions 0, 1), fp = 1 (position 4), fn = 2 (positions 2, 3)
BINARY_TRUE = [1, 1, 1, 1, 0, 0]
BINARY_PRED = [1, 1, 0, 0, 1, 0]


def test_binary_scores_by_hand():
    # accuracy: right at positions 0, 1, 5 → 3 / 6
    assert accuracy_score(BINARY_TRUE, BINARY_PRED) == 0.5
    assert accuracy_score(BINARY_TRUE, BINARY_PRED, normalize=False) == 3
    # precision = tp / (tp + fp) = 2 / 3;  recall = tp / (tp + fn) = 2 / 4
    assert precision_score(BINARY_TRUE, BINARY_PRED) == pytest.approx(2 / 3)
    assert recall_score(BINARY_TRUE, BINARY_PRED) == pytest.approx(1 / 2)
    # F1 = 2PR / (P + R) = (2/3) / (7/6) = 4/7 = 2tp / (2tp + fp + fn) = 4 / 7
    assert f1_score(BINARY_TRUE, BINARY_PRED) == pytest.approx(4 / 7)
    # F2 = (1 + 4)·tp / (4·support + predicted) = 10 / (16 + 3)
    assert fbeta_score(BINARY_TRUE, BINARY_PRED, beta=2.0) == pytest.approx(10 / 19)
    # the negative class as positive: tp = 1 (position 5), fp = 2 (positions 2, 3), fn = 1 → P = 1/3, R = 1/2
    assert precision_score(BINARY_TRUE, BINARY_PRED, pos_label=0) == pytest.approx(1 / 3)
    assert recall_score(BINARY_TRUE, BINARY_PRED, pos_label=0) == pytest.approx(1 / 2)


def test_binary_confusion_matrix_by_hand():
    # true 0: position 4 → predicted 1, position 5 → predicted 0            row 0 = [1, 1]
    # true 1: positions 0, 1 → predicted 1, positions 2, 3 → predicted 0     row 1 = [2, 2]
    cm = confusion_matrix(BINARY_TRUE, BINARY_PRED)
    np.testing.assert_array_equal(cm, [[1, 1], [2, 2]])
    assert cm.dtype == np.int64
    np.testing.assert_allclose(confusion_matrix(BINARY_TRUE, BINARY_PRED, normalize="true"), [[0.5, 0.5]] * 2)
    # columns sum to 3 and 3
    np.testing.assert_allclose(confusion_matrix(BINARY_TRUE, BINARY_PRED, normalize="pred"),
                               [[1 / 3, 1 / 3], [2 / 3, 2 / 3]])
    np.testing.assert_allclose(confusion_matrix(BINARY_TRUE, BINARY_PRED, normalize="all"),
                               [[1 / 6, 1 / 6], [2 / 6, 2 / 6]])
    # labels reorder the rows and columns
    np.testing.assert_array_equal(confusion_matrix(BINARY_TRUE, BINARY_PRED, labels=[1, 0]), [[2, 2], [1, 1]])


def test_string_labels_and_pos_label():
    # positive "spam": tp = 1 (position 0), predicted spam = 2 (0, 1), true spam = 2 (0, 2) → P = R = F = 1/2
    y_true, y_pred = ["spam", "ham", "spam"], ["spam", "spam", "ham"]
    assert precision_recall_fscore_support(y_true, y_pred, average="binary", pos_label="spam") == (
        0.5, 0.5, 0.5, None)
    with pytest.raises(ValueError, match=r"pos_label=1 is not a valid label. It should be one of \['ham'"):
        f1_score(y_true, y_pred)


# ------------------------------------------------------------------------------ hand-computed: multiclass
# y_true = [0, 0, 1, 1, 2, 2, 2]
# y_pred = [0, 1, 1, 1, 2, 0, 2]
# class 0: tp 1 (pos 0), predicted 2 (pos 0, 5), support 2 → P 1/2, R 1/2, F 1/2
# class 1: tp 2 (pos 2, 3), predicted 3 (pos 1, 2, 3), support 2 → P 2/3, R 1, F 2·(2/3)/(5/3) = 4/5
# class 2: tp 2 (pos 4, 6), predicted 2, support 3 → P 1, R 2/3, F 4/5
MULTI_TRUE = [0, 0, 1, 1, 2, 2, 2]
MULTI_PRED = [0, 1, 1, 1, 2, 0, 2]


def test_multiclass_per_class_and_averages_by_hand():
    precision, recall, f1, support = precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED)
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(recall, [1 / 2, 1, 2 / 3])
    np.testing.assert_allclose(f1, [1 / 2, 4 / 5, 4 / 5])
    np.testing.assert_array_equal(support, [2, 2, 3])
    # macro: P = (1/2 + 2/3 + 1) / 3 = 13/18, R = 13/18 too, F = (1/2 + 4/5 + 4/5) / 3 = 7/10
    assert precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, average="macro") == pytest.approx(
        (13 / 18, 13 / 18, 7 / 10, None))
    # micro: tp = 5 correct of 7, and every wrong prediction is one fp and one fn → P = R = F = accuracy = 5/7
    assert f1_score(MULTI_TRUE, MULTI_PRED, average="micro") == pytest.approx(5 / 7)
    assert accuracy_score(MULTI_TRUE, MULTI_PRED) == pytest.approx(5 / 7)
    # weighted by support (2, 2, 3): P = (2·1/2 + 2·2/3 + 3·1) / 7 = 16/21, R = (1 + 2 + 2) / 7 = 5/7,
    # F = (2·1/2 + 2·4/5 + 3·4/5) / 7 = 5/7
    p, r, f, s = precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, average="weighted")
    assert (p, r, f, s) == pytest.approx((16 / 21, 5 / 7, 5 / 7, None))
    assert isinstance(p, float) and s is None


def test_labels_select_and_order_classes():
    # labels=[2, 0]: the rows of the table above, in that order
    precision, recall, _, support = precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, labels=[2, 0])
    np.testing.assert_allclose(precision, [1, 1 / 2])
    np.testing.assert_array_equal(support, [3, 2])
    # micro over classes 1 and 2 only: tp = 2 + 2, predicted = 3 + 2, support = 2 + 3 → 4/5 each
    assert precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, labels=[1, 2], average="micro") == \
        pytest.approx((4 / 5, 4 / 5, 4 / 5, None))
    # a class that never occurs: support 0 → recall is 0/0 (set to 0 with a warning); precision 0/0 too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, recall, _, support = precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, labels=[0, 7])
    messages = [str(w.message) for w in caught if w.category is UndefinedMetricWarning]
    assert any(m.startswith("Recall is ill-defined") for m in messages)
    np.testing.assert_array_equal(support, [2, 0])
    assert recall[1] == 0.0


def test_zero_division_values():
    # no positive anywhere: tp = predicted = support = 0 → every score is 0/0
    y = [0, 0, 0]
    with pytest.warns(UndefinedMetricWarning, match="Precision is ill-defined.*no predicted samples"):
        assert precision_score(y, y) == 0.0
    assert precision_score(y, y, zero_division=1) == 1.0
    assert math.isnan(precision_score(y, y, zero_division=np.nan))
    with pytest.warns(UndefinedMetricWarning, match="F-score is ill-defined"):
        assert f1_score(y, y) == 0.0
    assert f1_score(y, y, zero_division=1) == 1.0
    # only precision undefined: tp = 0, predicted = 0, support = 1 → F1 = 2·0 / (0 + 1) = 0 (not 0/0),
    # so f1_score is 0 whatever zero_division says, and does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f1_score([1, 0], [0, 0], zero_division=1) == 0.0
    # zero_division=nan: macro skips the undefined class. Class 5 is never true nor predicted:
    precision, _, _, _ = precision_recall_fscore_support(MULTI_TRUE, MULTI_PRED, labels=[0, 5],
                                                         zero_division=np.nan)
    assert precision[0] == 0.5 and math.isnan(precision[1])
    macro = precision_score(MULTI_TRUE, MULTI_PRED, labels=[0, 5], average="macro", zero_division=np.nan)
    assert macro == 0.5


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, message", [
    (lambda: accuracy_score([0, 1], [0, 1, 1]), ValueError, "same length, got 2 and 3"),
    (lambda: f1_score([], []), ValueError, "empty"),
    (lambda: f1_score(MULTI_TRUE, MULTI_PRED), ValueError, r"Target is multiclass .* but average='binary'"),
    (lambda: f1_score([0, 1], [1, 0], pos_label=5), ValueError, "pos_label=5 is not a valid label"),
    (lambda: f1_score([0, 1], [0, 1], average="samples"), ValueError, "average must be one of"),
    (lambda: f1_score([0, 1], [[0.1, 0.9], [0.8, 0.2]]), ValueError, r"1-D .* shape \(2, 2\).*argmax"),
    (lambda: f1_score([0, 1], [0.2, 0.9]), ValueError, "non-integer value 0.2"),
    (lambda: f1_score([0, 1], ["0", "1"]), ValueError, "y_true holds numbers but y_pred holds strings"),
    (lambda: f1_score([0, 1], [0, 1], zero_division="nope"), ValueError, "zero_division must be"),
    (lambda: fbeta_score([0, 1], [0, 1], beta=-1.0), ValueError, "beta must be >= 0"),
    (lambda: confusion_matrix([0, 1], [0, 1], normalize="rows"), ValueError, "normalize must be"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[5, 6]), ValueError, "At least one label .* in y_true"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=[]), ValueError, "at least one class"),
    (lambda: confusion_matrix([0, 1], [0, 1], labels=["a"]), ValueError, "not of the same kind"),
])
def test_bad_classification_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_pos_label_is_ignored_with_a_warning_when_not_binary():
    with pytest.warns(UserWarning, match="pos_label=0 is ignored"):
        f1_score(MULTI_TRUE, MULTI_PRED, average="macro", pos_label=0)


def test_accepts_tensors_and_arrays():
    assert accuracy_score(mf.tensor(np.array(BINARY_TRUE)), np.array(BINARY_PRED)) == 0.5


# ------------------------------------------------------------------------------------------- properties
labels_pairs = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 4), min_size=n, max_size=n), st.lists(st.integers(0, 4), min_size=n, max_size=n)))


@given(labels_pairs)
def test_micro_f1_equals_accuracy_for_single_label_multiclass(pair):
    # every wrong prediction is one fp (for the predicted class) and one fn (for the true class): fp = fn
    y_true, y_pred = pair
    p, r, f, _ = quiet(precision_recall_fscore_support, y_true, y_pred, average="micro")
    assert p == pytest.approx(accuracy_score(y_true, y_pred))
    assert r == pytest.approx(p) and f == pytest.approx(p)


@given(labels_pairs)
def test_f1_is_the_harmonic_mean_of_precision_and_recall(pair):
    p, r, f, _ = precision_recall_fscore_support(*pair, zero_division=0)
    harmonic = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    np.testing.assert_allclose(f, harmonic, atol=1e-12)
    assert np.all(np.minimum(p, r) - 1e-12 <= f) and np.all(f <= np.maximum(p, r) + 1e-12)


@given(labels_pairs)
def test_confusion_matrix_margins_are_support_and_prediction_counts(pair):
    y_true, y_pred = pair
    labels = list(range(5))
    cm = quiet(confusion_matrix, y_true, y_pred, labels=labels)
    _, _, _, support = quiet(precision_recall_fscore_support, y_true, y_pred, labels=labels)
    np.testing.assert_array_equal(cm.sum(axis=1), support)  # row sums = support
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(y_pred, minlength=5))  # column sums = predicted
    assert np.trace(cm) / len(y_true) == pytest.approx(accuracy_score(y_true, y_pred))
    rows = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    np.testing.assert_allclose(rows.sum(axis=1), (support > 0).astype(float))  # each seen row sums to 1


@needs_sklearn
@given(labels_pairs, st.sampled_from([None, "binary", "micro", "macro", "weighted"]),
       st.sampled_from(["warn", 0, 1, np.nan]), st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True))
def test_prfs_matches_sklearn(pair, average, zero_division, beta, labels):
    y_true, y_pred = pair
    if average == "binary":
        y_true, y_pred = [y % 2 for y in y_true], [y % 2 for y in y_pred]

    def both(fn_ours, fn_sklearn, **kwargs):
        results = []
        for fn in (fn_ours, fn_sklearn):
            try:
                results.append(quiet(fn, y_true, y_pred, **kwargs))
            except ValueError:
                results.append("ValueError")
        return results

    ours, theirs = both(precision_recall_fscore_support, sklearn_metrics.precision_recall_fscore_support,
                        average=average, zero_division=zero_division, beta=beta, labels=labels)
    assert (ours == "ValueError") == (theirs == "ValueError")
    if ours != "ValueError":
        for mine, reference in zip(ours, theirs):
            if reference is None:
                assert mine is None
            else:
                np.testing.assert_allclose(np.asarray(mine, float), np.asarray(reference, float))
    cm_ours, cm_theirs = both(confusion_matrix, sklearn_metrics.confusion_matrix, labels=labels)
    np.testing.assert_array_equal(cm_ours, cm_theirs)
    assert accuracy_score(y_true, y_pred) == sklearn_metrics.accuracy_score(y_true, y_pred)


@needs_sklearn
@given(labels_pairs, st.sampled_from([None, "true", "pred", "all"]))
def test_normalized_confusion_matrix_matches_sklearn(pair, normalize):
    ours = quiet(confusion_matrix, *pair, normalize=normalize)
    np.testing.assert_allclose(ours, quiet(sklearn_metrics.confusion_matrix, *pair, normalize=normalize))


@needs_sklearn
def test_error_messages_follow_sklearn():
    for fn in (f1_score, sklearn_metrics.f1_score):
        with pytest.raises(ValueError, match="Target is multiclass .*but average='binary'"):
            fn(MULTI_TRUE, MULTI_PRED)
        with pytest.raises(ValueError, match="pos_label=5 is not a valid label"):
            fn([0, 1], [1, 0], pos_label=5)


# --------------------------------------------------------------------------------------- entities (NER)
def test_get_entities_by_hand():
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # two B- in a row are two entities; the end index is inclusive
    assert get_entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert get_entities([]) == []
    assert get_entities(["O", "O"]) == []


@pytest.mark.parametrize("tags, default, strict", [
    # a lone I- run: conlleval reads it as an entity, strict IOB2 as none
    (["I-PER", "I-PER", "O"], [("PER", 0, 1)], []),
    # an I- of another type: conlleval starts a new entity, strict drops the stray tags
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)], [("PER", 0, 0)]),
    # I- after O inside a sentence
    (["B-ORG", "O", "I-ORG"], [("ORG", 0, 0), ("ORG", 2, 2)], [("ORG", 0, 0)]),
    # untyped tags get the type "_"
    (["B", "I", "O", "I"], [("_", 0, 1), ("_", 3, 3)], [("_", 0, 1)]),
    # valid IOB2: both modes agree
    (["O", "B-LOC", "I-LOC", "B-PER"], [("LOC", 1, 2), ("PER", 3, 3)], [("LOC", 1, 2), ("PER", 3, 3)]),
])
def test_conlleval_and_strict_modes_differ_on_invalid_iob2(tags, default, strict):
    assert get_entities(tags) == default
    assert get_entities(tags, mode="strict") == strict


def test_entity_scores_by_hand():
    y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    y_pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-ORG"]]
    # true entities: (0, PER, 0-1), (0, LOC, 3-3), (1, ORG, 0-0)
    # predicted:     (0, PER, 0-1), (1, ORG, 0-0), (1, ORG, 1-1)
    # correct: PER and the first ORG → P = 2/3, R = 2/3, F1 = 2/3, number = 3 true entities
    scores = entity_precision_recall_f1(y_true, y_pred)
    assert (scores["precision"], scores["recall"], scores["f1"], scores["number"]) == pytest.approx(
        (2 / 3, 2 / 3, 2 / 3, 3))
    # per type: LOC never predicted → P = 0/0 → 0, R = 0/1; ORG: P = 1/2, R = 1/1, F = 2·(1/2)/(3/2) = 2/3
    assert list(scores["per_type"]) == ["LOC", "ORG", "PER"]
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}
    assert scores["per_type"]["ORG"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "number": 1})
    assert scores["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1}
    # macro over (LOC, ORG, PER): P = (0 + 1/2 + 1)/3 = 1/2, R = (0 + 1 + 1)/3 = 2/3,
    # F = (0 + 2/3 + 1)/3 = 5/9
    with pytest.warns(UndefinedMetricWarning, match="Precision is ill-defined"):  # LOC's precision is 0/0
        macro = entity_precision_recall_f1(y_true, y_pred, average="macro")
    assert (macro["precision"], macro["recall"], macro["f1"]) == pytest.approx((1 / 2, 2 / 3, 5 / 9))


def test_entity_scores_depend_on_the_mode():
    # predicted "I-PER I-PER" for the true "B-PER I-PER": the same span by conlleval, no entity in strict
    y_true, y_pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert entity_precision_recall_f1(y_true, y_pred)["f1"] == 1.0
    with pytest.warns(UndefinedMetricWarning, match="Precision"):
        strict = entity_precision_recall_f1(y_true, y_pred, mode="strict")
    # strict: no predicted entity → P = 0/0 → 0, R = 0/1 = 0
    assert (strict["precision"], strict["recall"], strict["f1"], strict["number"]) == (0.0, 0.0, 0.0, 1)


@pytest.mark.parametrize("call, error, message", [
    (lambda: get_entities(["B-PER", "X-PER"]), ValueError, r"tag 'X-PER' at position 1 is not a BIO tag"),
    (lambda: get_entities(["B-"]), ValueError, "not a BIO tag"),
    (lambda: get_entities([["B-PER"]]), TypeError, "one sentence"),
    (lambda: get_entities(["B-PER"], "strict"), TypeError, "positional argument"),  # seqeval's second is suffix
    (lambda: get_entities(["B-PER"], mode="IOB1"), ValueError, "mode must be"),
    (lambda: entity_precision_recall_f1([["O"]], [["O"], ["O"]]), ValueError, "1 sentences but y_pred has 2"),
    (lambda: entity_precision_recall_f1([["O", "O"]], [["O"]]), ValueError, "sentence 0 has 2 true tags"),
    (lambda: entity_precision_recall_f1(["B-PER", "O"], ["B-PER", "O"]), TypeError, "wrap a single sentence"),
    (lambda: entity_precision_recall_f1([], []), ValueError, "empty"),
    (lambda: entity_precision_recall_f1([["O"]], [["O"]], average="binary"), ValueError, "average must be"),
])
def test_bad_tag_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B", "I"]
tag_sentences = st.lists(st.sampled_from(TAGS), max_size=10)


def repair_to_iob2(tags):
    """Valid IOB2: an I-X that does not continue a B-X/I-X becomes B-X."""
    fixed = []
    for tag in tags:
        if tag.startswith("I") and (not fixed or fixed[-1] == "O" or fixed[-1][1:] != tag[1:]):
            tag = "B" + tag[1:]
        fixed.append(tag)
    return fixed


@given(tag_sentences)
def test_strict_entities_are_default_entities_and_equal_on_valid_iob2(tags):
    # Strict entities are B-X I-X* runs; conlleval reads such a run the same way (B- opens, I- of the same
    # type continues, anything else closes), so strict ⊆ default for every BIO sequence. Default mode only
    # adds entities that open with an I-; after repair_to_iob2 there are none, so the two modes agree.
    default, strict = get_entities(tags), get_entities(tags, mode="strict")
    assert set(strict) <= set(default)
    valid = repair_to_iob2(tags)
    assert get_entities(valid) == get_entities(valid, mode="strict")
    # entities are disjoint, ordered, inside the sentence, and their tags are not O
    previous_end = -1
    for entity_type, start, end in default:
        assert previous_end < start <= end < len(tags)
        assert all(tags[i] != "O" for i in range(start, end + 1))
        previous_end = end


@given(st.lists(tag_sentences, min_size=1, max_size=4), st.sampled_from([None, "strict"]))
def test_a_perfect_tagger_scores_one(sentences, mode):
    scores = quiet(entity_precision_recall_f1, sentences, sentences, mode=mode)
    n_entities = sum(len(get_entities(s, mode=mode)) for s in sentences)
    assert scores["number"] == n_entities
    if n_entities:
        assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0


def predictions_for(true_sentences):
    """Random predicted tags of the same lengths as the true sentences."""
    same_length = [st.lists(st.sampled_from(TAGS), min_size=len(s), max_size=len(s)) for s in true_sentences]
    return st.tuples(*same_length)


sentence_pairs = st.lists(tag_sentences, min_size=1, max_size=4).flatmap(
    lambda true: st.tuples(st.just(true), predictions_for(true)))


@needs_seqeval
@given(sentence_pairs, st.sampled_from([None, "strict"]), st.sampled_from(["micro", "macro", "weighted"]))
def test_entities_match_seqeval(pair, mode, average):
    y_true, y_pred = pair[0], [list(s) for s in pair[1]]
    ours = quiet(entity_precision_recall_f1, y_true, y_pred, mode=mode, average=average)
    if mode == "strict":
        reference = quiet(seqeval_v1.precision_recall_fscore_support, y_true, y_pred, average=average,
                          scheme=IOB2)
        report = quiet(seqeval_metrics.classification_report, y_true, y_pred, output_dict=True, mode="strict",
                       scheme=IOB2)
    else:
        reference = quiet(seqeval_default.precision_recall_fscore_support, y_true, y_pred, average=average)
        report = quiet(seqeval_metrics.classification_report, y_true, y_pred, output_dict=True)
    np.testing.assert_allclose([ours["precision"], ours["recall"], ours["f1"], ours["number"]],
                               np.asarray(reference, float))
    assert set(ours["per_type"]) == set(report) - {"micro avg", "macro avg", "weighted avg"}
    for entity_type, scores in ours["per_type"].items():
        row = report[entity_type]
        assert [scores["precision"], scores["recall"], scores["f1"], scores["number"]] == pytest.approx(
            [row["precision"], row["recall"], row["f1-score"], row["support"]])
    for sentence in y_true:
        assert get_entities(sentence) == seqeval_metrics.sequence_labeling.get_entities(sentence)


# ------------------------------------------------------------------------------------------------ SQuAD
def test_normalize_answer_by_hand():
    # lower → drop punctuation ("-" too, so "eiffel-tower" → "eiffeltower") → drop articles → one space
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # whole words only
    assert normalize_answer("  ") == ""


def test_squad_exact_match_and_f1_by_hand():
    assert squad_exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert squad_exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    # pred tokens [big, red, dog], gold [red, dog, barked]: shared 2 → P = 2/3, R = 2/3, F1 = 2/3
    assert squad_f1("the big red dog", ["a red dog barked"]) == pytest.approx(2 / 3)
    # repeats count once per match: pred [dog, dog, dog], gold [dog] → shared 1, P = 1/3, R = 1 → F1 = 1/2
    assert squad_f1("dog dog dog", "dog") == pytest.approx(1 / 2)
    # the best gold answer counts
    assert squad_f1("red dog", ["dog", "red dog"]) == 1.0
    # v1.1's quirk: both answers normalize to "" → exact match 1 but F1 0 (nothing shared)
    assert squad_exact_match("the", ["a"]) == 1.0 and squad_f1("the", ["a"]) == 0.0


def test_squad_scores_by_hand():
    predictions = {"q1": "Eiffel Tower", "q2": "Paris France", "extra": "ignored"}
    references = {"q1": ["the Eiffel Tower"], "q2": ["Paris"], "q3": ["Lyon"]}
    # q1: EM 1, F1 1.  q2: EM 0, pred [paris, france] vs [paris] → P = 1/2, R = 1 → F1 = 2/3.  q3: missing → 0
    with pytest.warns(UserWarning, match="1 of 3 questions have no prediction and score 0: 'q3'"):
        scores = squad_scores(predictions, references)
    assert scores == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})


@pytest.mark.parametrize("call, message", [
    (lambda: squad_scores({"q1": "x"}, {}), "references is empty"),
    (lambda: squad_f1("x", []), "at least one gold answer"),
    (lambda: squad_exact_match("x", []), "at least one gold answer"),
])
def test_bad_squad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


words = st.text(alphabet=st.sampled_from(list("abcdeht .,!-'\t")), max_size=20) | st.text(max_size=15)


@given(words)
def test_normalize_answer_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    assert once == once.strip() and "  " not in once


@given(words, st.lists(words, min_size=1, max_size=3))
def test_exact_match_implies_full_f1_and_scores_are_bounded(pred, golds):
    em, f1 = squad_exact_match(pred, golds), squad_f1(pred, golds)
    assert 0.0 <= f1 <= 1.0
    # exact match → F1 = 1, except v1.1's empty-answer quirk (both normalize to "": EM 1, F1 0)
    if em == 1.0 and normalize_answer(pred):
        assert f1 == 1.0


# ------------------------------------------------------------------------------------------- perplexity
def test_perplexity():
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    # summed NLL of 3 tokens, each log 4 → exp(3·log 4 / 3) = 4
    assert perplexity(3 * math.log(4.0), n_tokens=3) == pytest.approx(4.0)
    # a uniform guess over V = 1000 classes: NLL per token = log V → perplexity V
    assert perplexity(-math.log(1 / 1000)) == pytest.approx(1000.0)
    assert perplexity(mf.tensor(2.0)) == pytest.approx(math.exp(2.0))
    assert perplexity(0.0) == 1.0
    assert perplexity(1e4) == math.inf
    with pytest.raises(ValueError, match="n_tokens must be > 0"):
        perplexity(1.0, n_tokens=0)
    with pytest.raises(ValueError, match="pass its negative"):
        perplexity(-0.5)


# ---------------------------------------------------------------------------------- compute_metrics
def test_classification_metrics_binary_by_hand():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])  # argmax → [0, 1, 0, 1]
    labels = np.array([0, 1, 1, 1])
    # accuracy 3/4; class 1: tp 2, predicted 2, support 3 → P = 1, R = 2/3, F1 = 2·(2/3)/(5/3) = 4/5
    expected = {"accuracy": 0.75, "f1": 0.8, "precision": 1.0, "recall": 2 / 3}
    assert classification_metrics(EvalPrediction(logits, labels)) == pytest.approx(expected)
    assert classification_metrics((logits, labels)) == pytest.approx(expected)
    assert classification_metrics(((logits, "hidden states"), labels)) == pytest.approx(expected)


def test_classification_metrics_multiclass_is_macro():
    logits = np.eye(3)[MULTI_PRED]  # (7, 3) one-hot "logits" whose argmax is MULTI_PRED
    scores = classification_metrics(EvalPrediction(logits, np.array(MULTI_TRUE)))
    # the macro values of the hand-computed multiclass table above
    assert scores == pytest.approx({"accuracy": 5 / 7, "f1": 7 / 10, "precision": 13 / 18, "recall": 13 / 18})


def test_classification_metrics_regression_by_hand():
    predictions, labels = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    # mse = (0 + 0 + 1)/3; centred pred (-1, 0, 1), centred labels (-4/3, -1/3, 5/3):
    # pearson = 3 / sqrt(2 · 14/3)
    expected = {"mse": 1 / 3, "pearson": 3 / math.sqrt(2 * 14 / 3)}
    assert classification_metrics((predictions, labels)) == pytest.approx(expected)
    assert classification_metrics((predictions[:, None], labels)) == pytest.approx(expected)
    assert expected["pearson"] == pytest.approx(np.corrcoef(predictions, labels)[0, 1])
    assert math.isnan(classification_metrics((np.ones(3), labels))["pearson"])  # constant predictions


def test_classification_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        classification_metrics((np.zeros((2, 2)), np.array([0, 2])))
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        classification_metrics((np.zeros((2, 2)), np.array([0, 1, 1])))
    with pytest.raises(TypeError, match="EvalPrediction or a"):
        classification_metrics(np.zeros((2, 2)))


def test_token_classification_metrics_by_hand():
    compute_metrics = token_classification_metrics(["O", "B-PER", "I-PER"])
    label_ids = np.array([[-100, 1, 2, 0, -100],
                          [-100, 0, 1, -100, -100]])
    predicted = np.array([[0, 1, 2, 0, 2],  # the -100 positions hold junk that must be ignored
                          [1, 0, 0, 0, 0]])
    logits = np.eye(3)[predicted]  # (2, 5, 3)
    # labelled tokens: sentence 0 true [B-PER, I-PER, O], predicted the same;
    #                  sentence 1 true [O, B-PER], predicted [O, O]
    # entities: true (0, PER, 0-1) and (1, PER, 1-1); predicted (0, PER, 0-1) → P = 1, R = 1/2, F1 = 2/3
    # token accuracy: 3 + 1 right of 5 labelled tokens = 4/5
    expected = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "accuracy": 0.8}
    assert compute_metrics(EvalPrediction(logits, label_ids)) == pytest.approx(expected)
    assert compute_metrics((predicted, label_ids)) == pytest.approx(expected)  # already argmax-ed ids
    with pytest.raises(ValueError, match="every position of label_ids is -100"):
        compute_metrics((logits, np.full((2, 5), -100)))
    with pytest.raises(ValueError, match="label id 7 is outside"):
        compute_metrics((logits, np.where(label_ids == 2, 7, label_ids)))
    with pytest.raises(ValueError, match="not a BIO tag"):
        token_classification_metrics(["O", "PER"])


# --------------------------------------------------------------------------------------------- plotting
def test_plot_confusion_matrix_writes_a_png(tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    cm = confusion_matrix(MULTI_TRUE, MULTI_PRED)
    path = tmp_path / "plots" / "cm.png"
    figure = plot_confusion_matrix(cm, ["neg", "neutral", "pos"], path, normalize="true")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib_image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    texts = {t.get_text() for t in figure.axes[0].texts}
    assert "0.50" in texts and "1.00" in texts  # row "neg" is (1/2, 1/2, 0); row "neutral" is (0, 1, 0)
    assert plot_confusion_matrix(cm, ["a", "b", "c"], None) is not None  # only the Figure
    with pytest.raises(ValueError, match="one row per label"):
        plot_confusion_matrix(cm, ["a", "b"], None)


# ---------------------------------------------------------------------------------------- overfitting
def test_overfitting_monitor_warns_after_patience_divergent_evaluations():
    monitor = OverfittingMonitor(patience=2)
    assert monitor.update(1.0, 0.90) is None
    assert monitor.update(0.8, 0.85) is None  # both fell: fine
    assert monitor.update(0.6, 0.90) is None  # val up, train down: streak 1
    with pytest.warns(UserWarning, match="validation loss rose for 2 evaluations in a row"):
        message = monitor.update(0.5, 0.95)  # streak 2 = patience
    assert message == monitor.warnings[0] and "0.85" in message and "0.95" in message
    assert monitor.update(0.4, 1.00) is None  # the same streak warns once
    assert monitor.update(0.3, 0.70) is None  # val fell: the streak ends
    assert monitor.update(0.2, 0.80) is None
    with pytest.warns(UserWarning):
        monitor.update(0.1, 0.90)  # a new streak warns again
    assert len(monitor.warnings) == 2 and len(monitor.history) == 8


def test_overfitting_monitor_needs_train_loss_to_fall():
    monitor = OverfittingMonitor(patience=1)
    monitor.update(1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert monitor.update(1.1, 1.2) is None  # both rose: underfitting or a bad step, not overfitting
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        OverfittingMonitor(patience=0)
    with pytest.raises(ValueError, match="losses must be finite"):
        monitor.update(float("nan"), 1.0)


def test_metrics_is_a_submodule_of_minift():
    assert mf.metrics is metrics
