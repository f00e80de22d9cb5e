"""Data: datasets and splits, the zoo's tasks, collators, NER label alignment, extractive-QA features.

    from minift.data import load_dataset, DataCollatorWithPadding
    ds = load_dataset("sentiment")                     # DatasetDict: train / validation / test
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True)
    batch = DataCollatorWithPadding(tok)([ds["train"][i] for i in range(8)])

Everything here is host data (Python lists, NumPy arrays); models see arrays only after a collator.
"""
from .alignment import align_labels_with_tokens, b_to_i_label_ids, tokenize_and_align_labels
from .collators import DataCollatorForTokenClassification, DataCollatorWithPadding, default_data_collator
from .corpora import load_ner, load_sentiment, pretraining_corpus
from .dataset import ClassLabel, Dataset, DatasetDict, Sequence, Value
from .qa import postprocess_qa_predictions, prepare_train_features, prepare_validation_features
from .tasks import NER_TAGS, load_dataset, qa_from_ner

__all__ = [
    "ClassLabel", "DataCollatorForTokenClassification", "DataCollatorWithPadding", "Dataset", "DatasetDict",
    "NER_TAGS", "Sequence", "Value", "align_labels_with_tokens", "b_to_i_label_ids", "default_data_collator",
    "load_dataset", "load_ner", "load_sentiment", "postprocess_qa_predictions", "prepare_train_features",
    "prepare_validation_features", "pretraining_corpus", "qa_from_ner", "tokenize_and_align_labels",
]
