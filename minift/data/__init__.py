"""Datasets from the zoo's artifacts (VADER sentiment snippets, NER-tagged tweets) and corpus building."""
from .corpora import load_ner, load_sentiment, pretraining_corpus

__all__ = ["load_ner", "load_sentiment", "pretraining_corpus"]
