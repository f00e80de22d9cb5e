"""``load_dataset(name)``: the zoo's text data as fixed train / validation / test splits.

Host data only (NumPy for the seeded draws). Every split is drawn once, with seed 0, so a number
reported on "test" always means the same rows. Names, as ``load_dataset`` lists them:

* ``"sentiment"`` (VADER movie-review snippets), ``"sentiment-tweets"``, ``"sentiment-amazon"``,
  ``"sentiment-nyt"``: columns ``text``, ``label`` (``ClassLabel(names=["negative", "positive"])``).
* ``"ner"``: columns ``id``, ``tokens``, ``ner_tags`` (``Sequence(ClassLabel(names=NER_TAGS))``).
* ``"qa"``: extractive QA in SQuAD's layout, columns ``id``, ``context``, ``question``, ``answers``.
  It is DERIVED from the NER tweets, not a separate data set — see ``qa_from_ner``.
"""
from __future__ import annotations

from .corpora import load_ner, load_sentiment
from .dataset import ClassLabel, Dataset, DatasetDict, Sequence, Value

SENTIMENT_SOURCES = {"sentiment": "movie", "sentiment-tweets": "tweets", "sentiment-amazon": "amazon",
                     "sentiment-nyt": "nyt"}
SENTIMENT_LABELS = ["negative", "positive"]

# The 10 entity types of the NER tweets (WNUT-16), in sorted order.
ENTITY_TYPES = ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                "sportsteam", "tvshow"]
# "O" first, then B- and I- of each type: id 0 is "outside any entity", ids 2k+1 / 2k+2 are B- / I- of type k.
NER_TAGS = ["O"] + [f"{prefix}-{t}" for t in ENTITY_TYPES for prefix in ("B", "I")]

# One question per entity type: the QA data asks it of every tweet that mentions such an entity.
QUESTION_TEMPLATES = {
    "company": "Which company is mentioned?",
    "facility": "Which facility is mentioned?",
    "geo-loc": "Which place is mentioned?",
    "movie": "Which movie is mentioned?",
    "musicartist": "Which music artist is mentioned?",
    "other": "Which other named thing is mentioned?",
    "person": "Which person is mentioned?",
    "product": "Which product is mentioned?",
    "sportsteam": "Which sports team is mentioned?",
    "tvshow": "Which TV show is mentioned?",
}

SPLIT_SEED = 0


def load_dataset(name):
    """A ``DatasetDict`` with "train", "validation" and "test" (80 / 10 / 10), drawn once with seed 0.

    Sentiment (rows with a mean rating of exactly 0 are dropped — neither positive nor negative — and a
    text that occurs twice is kept once, with its first rating, so that no test text is also a training
    text; label = 1 if rating > 0 else 0; splits stratified by label)::

        name               read    rating 0  repeats  rows    train  validation  test   positive
        sentiment          10605   37        2        10566   8452   1057        1057   49.6 %
        sentiment-tweets   4200    4         0        4196    3356   420         420    69.0 %
        sentiment-amazon   3708    98        10       3600    2880   360         360    58.9 %
        sentiment-nyt      5190    244       62       4884    3907   488         489    44.6 %

    NER: 2,394 tweets, of which 99 repeat an earlier tweet word for word and are dropped: 2,295 tweets,
    shuffled with seed 0 and cut into 1836 / 229 / 230 (not stratified; a tweet has many tags).

    QA (derived from the NER split, so a tweet's questions all fall in that tweet's split and no context
    is shared between splits): 1,158 questions about the 877 tweets that mention an entity —
    931 / 105 / 122.
    """
    if name in SENTIMENT_SOURCES:
        return _sentiment_splits(SENTIMENT_SOURCES[name])
    if name == "ner":
        return _ner_splits()
    if name == "qa":
        return DatasetDict({split: qa_from_ner(ds) for split, ds in _ner_splits().items()})
    names = sorted(SENTIMENT_SOURCES) + ["ner", "qa"]
    raise ValueError(f"unknown dataset {name!r}; load_dataset knows {names}")


def three_way_split(ds, seed=SPLIT_SEED, stratify_by_column=None):
    """80 / 10 / 10: 20 % is split off as held-out data, then halved into validation and test."""
    first = ds.train_test_split(test_size=0.2, seed=seed, stratify_by_column=stratify_by_column)
    held_out = first["test"].train_test_split(test_size=0.5, seed=seed, stratify_by_column=stratify_by_column)
    return DatasetDict(train=first["train"], validation=held_out["train"], test=held_out["test"])


def _sentiment_splits(source):
    texts, labels, seen = [], [], set()
    for text, rating in load_sentiment(source):
        if rating == 0 or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(1 if rating > 0 else 0)
    features = {"text": Value("string"), "label": ClassLabel(names=SENTIMENT_LABELS)}
    ds = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return three_way_split(ds, stratify_by_column="label")


def _ner_dataset():
    """Every distinct tweet as a row: id (its position in the file), tokens, ner_tags (ids into NER_TAGS)."""
    tag_ids = {tag: i for i, tag in enumerate(NER_TAGS)}
    ids, tokens, tags, seen = [], [], [], set()
    for position, (words, word_tags) in enumerate(load_ner()):
        if tuple(words) in seen:
            continue
        seen.add(tuple(words))
        unknown = [t for t in word_tags if t not in tag_ids]
        if unknown:
            raise ValueError(f"NER tweet {position} has tag {unknown[0]!r}; the known tags are {NER_TAGS}")
        ids.append(f"tweet{position:04d}")
        tokens.append(list(words))
        tags.append([tag_ids[t] for t in word_tags])
    features = {"id": Value("string"), "tokens": Sequence(Value("string")),
                "ner_tags": Sequence(ClassLabel(names=NER_TAGS))}
    return Dataset.from_dict({"id": ids, "tokens": tokens, "ner_tags": tags}, features=features)


def _ner_splits():
    return three_way_split(_ner_dataset())


def entity_spans(tags):
    """[(type, first word, one past the last word)] of the entities in one tweet's BIO tag names.

    An entity starts at B-x, or at an I-x that does not continue an entity of type x, and runs over the
    I-x tags that follow.
    """
    spans, current = [], None  # current: [type, start, end]
    for k, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current is not None and current[0] == kind and current[2] == k:
            current[2] = k + 1
            continue
        if current is not None:
            spans.append(tuple(current))
            current = None
        if prefix in ("B", "I"):
            current = [kind, k, k + 1]
    if current is not None:
        spans.append(tuple(current))
    return spans


def qa_from_ner(ner):
    """Extractive QA built from NER tweets: one question per (tweet, entity type it mentions).

    context = the tweet's tokens joined by single spaces; question = the type's template
    (``QUESTION_TEMPLATES``); answers = every mention of that type in the tweet, in order, as
    ``{"text": [...], "answer_start": [character offsets]}`` (SQuAD's layout: training uses the first,
    evaluation accepts any). Asking once per type rather than once per mention keeps two identical
    (context, question) pairs from having different answers. id = ``"{tweet id}-{type}"``, stable.
    """
    names = ner.features["ner_tags"].feature.names
    ids, contexts, questions, answers = [], [], [], []
    for row in ner:
        words = row["tokens"]
        starts, position = [], 0  # character offset of each word in the context
        for w in words:
            starts.append(position)
            position += len(w) + 1
        context = " ".join(words)
        mentions = {}
        for kind, first, end in entity_spans([names[t] for t in row["ner_tags"]]):
            start_char = starts[first]
            text = context[start_char : starts[end - 1] + len(words[end - 1])]
            mentions.setdefault(kind, {"text": [], "answer_start": []})
            mentions[kind]["text"].append(text)
            mentions[kind]["answer_start"].append(start_char)
        for kind in sorted(mentions):
            ids.append(f"{row['id']}-{kind}")
            contexts.append(context)
            questions.append(QUESTION_TEMPLATES[kind])
            answers.append(mentions[kind])
    features = {"id": Value("string"), "context": Value("string"), "question": Value("string"),
                "answers": {"text": Sequence(Value("string")), "answer_start": Sequence(Value("int64"))}}
    return Dataset.from_dict({"id": ids, "context": contexts, "question": questions, "answers": answers},
                             features=features)
