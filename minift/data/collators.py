"""Collators: a list of row dicts (token ids of different lengths) → one batch of rectangular arrays.

Host data only: the arrays are NumPy int64 (float32 for float labels); the trainer moves them to the
device. Names and behaviour follow Hugging Face's ``DataCollatorWithPadding``,
``DataCollatorForTokenClassification`` and ``default_data_collator``:

* the column "label" (or "label_ids") becomes "labels", the name a model's forward takes;
* input_ids are padded with the tokenizer's pad id, attention_mask with 0 (pads are not attended to),
  token_type_ids with 0, special_tokens_mask with 1, token-classification labels with -100 (ignored by
  the loss) — on the tokenizer's ``padding_side`` ("right" unless it says "left").
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# column → value its padding positions get (input_ids: the tokenizer's pad id, filled in at call time)
PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1}
LABEL_NAMES = ("label", "label_ids", "labels")


def _as_rows(features):
    """A non-empty list of row dicts that all have the same keys (a dict of lists is turned into rows)."""
    if isinstance(features, Mapping):  # a slice of a Dataset: {column: list}
        n = len(next(iter(features.values()), []))
        features = [{k: v[i] for k, v in features.items()} for i in range(n)]
    features = list(features)
    if not features:
        raise ValueError("a collator needs at least one row, got an empty list")
    keys = set(features[0])
    for i, row in enumerate(features):
        if not isinstance(row, Mapping):
            raise TypeError(f"a collator takes a list of dicts; row {i} is a {type(row).__name__}")
        if set(row) != keys:
            raise ValueError(f"row {i} has keys {sorted(row)} but row 0 has {sorted(keys)}; every row of a "
                             "batch needs the same keys")
    return features


def _stack(name, values):
    """One column of a batch as an array: int64 for ints and bools-as-ints, float32 for floats."""
    if any(isinstance(v, str) for v in values):
        raise TypeError(f"column {name!r} holds strings; a collator makes arrays of numbers — remove it "
                        f"first (ds.remove_columns([{name!r}]))")
    try:
        array = np.asarray(values)
    except ValueError:
        array = np.asarray(values, dtype=object)
    if array.dtype == object:
        lengths = sorted({len(v) for v in values if hasattr(v, "__len__")})
        raise ValueError(f"column {name!r} holds sequences of different lengths {lengths[:6]}; this collator "
                         "pads only input_ids, attention_mask, token_type_ids and special_tokens_mask (use "
                         "DataCollatorForTokenClassification for per-token labels)")
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return array.astype(np.int64)
    raise TypeError(f"column {name!r} has values of dtype {array.dtype}; a collator stacks numbers only")


def _pad_width(lengths, padding, max_length, pad_to_multiple_of):
    """The batch's sequence length: the longest row ("longest" / True), ``max_length``, or no padding."""
    if padding in (True, "longest"):
        width = max(lengths)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if max(lengths) > max_length:
            raise ValueError(f"a row has {max(lengths)} tokens, more than max_length={max_length}; truncate "
                             "when tokenizing (truncation=True, max_length=...)")
        width = max_length
    elif padding in (False, "do_not_pad"):
        if len(set(lengths)) > 1:
            raise ValueError(f"padding=False but the rows have different lengths {sorted(set(lengths))[:6]}")
        width = lengths[0]
    else:
        raise ValueError(f"padding must be True / 'longest', 'max_length' or False, got {padding!r}")
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of  # round up
    return width


def _pad_rows(rows, width, value, side):
    """Rows of different lengths → a (len(rows), width) int64 array filled with ``value`` on ``side``."""
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        n = len(row)
        if n and side == "left":
            out[i, width - n :] = row
        elif n:
            out[i, :n] = row
    return out


class DataCollatorWithPadding:
    """Pad the tokenizer's columns of a list of rows to one length; stack the other numeric columns.

        collator = DataCollatorWithPadding(tok)
        batch = collator([ds[0], ds[1]])   # {"input_ids": (2, T), "attention_mask": (2, T), "labels": (2,)}

    ``padding``: True / "longest" (the longest row of the batch), "max_length" (``max_length``), or False
    (rows must already be equally long). ``pad_to_multiple_of`` rounds the length up (8 suits GPU tiles).
    A row without an ``attention_mask`` gets ones over its tokens.
    """

    def __init__(self, tokenizer, padding=True, max_length=None, pad_to_multiple_of=None,
                 return_tensors="np"):
        if return_tensors != "np":
            raise ValueError("minift collators return NumPy arrays (return_tensors='np'), "
                             f"got {return_tensors!r}")
        if not hasattr(tokenizer, "pad_token_id"):  # None, or a path where the tokenizer object goes
            raise TypeError(f"{type(self).__name__} needs the tokenizer (its pad token pads the batch), got "
                            f"{type(tokenizer).__name__} {str(tokenizer)[:40]}")
        self.tokenizer, self.padding, self.max_length = tokenizer, padding, max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad_id(self):
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("the tokenizer has no pad token, so a batch cannot be padded; set one, e.g. "
                             "tok.pad_token = tok.eos_token")
        return pad_id

    def _pad_inputs(self, rows):
        """{"input_ids", "attention_mask", ...} padded; returns (batch, the padded width)."""
        if "input_ids" not in rows[0]:
            raise KeyError(f"a row has no 'input_ids' (it has {sorted(rows[0])}); tokenize the dataset "
                           "first, e.g. ds.map(lambda b: tok(b['text'], truncation=True), batched=True)")
        ids = [list(np.asarray(r["input_ids"]).reshape(-1)) for r in rows]  # a row's ids, (T,) or (1, T) -> (T,)
        width = _pad_width([len(x) for x in ids], self.padding, self.max_length, self.pad_to_multiple_of)
        side = getattr(self.tokenizer, "padding_side", "right") or "right"
        batch = {"input_ids": _pad_rows(ids, width, self._pad_id(), side)}
        if "attention_mask" not in rows[0]:
            rows = [{**r, "attention_mask": [1] * len(x)} for r, x in zip(rows, ids)]
        for name in ("attention_mask", "token_type_ids", "special_tokens_mask"):
            if name in rows[0]:
                column = [list(np.asarray(r[name]).reshape(-1)) for r in rows]  # (T,) or (1, T) -> (T,), as the ids
                bad = [i for i, (c, x) in enumerate(zip(column, ids)) if len(c) != len(x)]
                if bad:
                    raise ValueError(f"row {bad[0]}: {name} has {len(column[bad[0]])} values for "
                                     f"{len(ids[bad[0]])} input_ids")
                batch[name] = _pad_rows(column, width, PAD_VALUES[name], side)
        return batch, width

    def __call__(self, features):
        rows = _as_rows(features)
        batch, _ = self._pad_inputs(rows)
        for name in rows[0]:
            if name in batch:
                continue
            key = "labels" if name in LABEL_NAMES else name
            batch[key] = _stack(name, [r[name] for r in rows])
        return batch


class DataCollatorForTokenClassification(DataCollatorWithPadding):
    """As ``DataCollatorWithPadding``, and pad the per-token "labels" with ``label_pad_token_id`` (-100,
    ignored by the loss) on the same side, so that labels[i, t] still belongs to input_ids[i, t]."""

    def __init__(self, tokenizer, padding=True, max_length=None, pad_to_multiple_of=None,
                 label_pad_token_id=-100, return_tensors="np"):
        super().__init__(tokenizer, padding, max_length, pad_to_multiple_of, return_tensors)
        self.label_pad_token_id = label_pad_token_id

    def __call__(self, features):
        rows = _as_rows(features)
        label_name = next((n for n in ("labels", "label") if n in rows[0]), None)
        if label_name is None:
            raise KeyError(f"token classification rows need a 'labels' column (they have {sorted(rows[0])}); "
                           "see minift.data.tokenize_and_align_labels")
        inputs = [{k: v for k, v in r.items() if k != label_name} for r in rows]
        batch, width = self._pad_inputs(inputs)
        labels = [list(np.asarray(r[label_name]).reshape(-1)) for r in rows]  # a row's labels, (T,) or (1, T) -> (T,)
        for i, (label_row, r) in enumerate(zip(labels, rows)):
            if len(label_row) != len(r["input_ids"]):
                raise ValueError(f"row {i} has {len(label_row)} labels for {len(r['input_ids'])} input_ids; "
                                 "token classification needs one label per token")
        side = getattr(self.tokenizer, "padding_side", "right") or "right"
        batch["labels"] = _pad_rows(labels, width, self.label_pad_token_id, side)
        for name in inputs[0]:
            if name not in batch:
                batch[name] = _stack(name, [r[name] for r in inputs])
        return batch


def default_data_collator(features):
    """Stack rows that are already equally long (no tokenizer, no padding); "label" becomes "labels".

    As in HF, string and None values are skipped (ids, raw text) rather than stacked.
    """
    rows = _as_rows(features)
    batch = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if any(v is None or isinstance(v, str) for v in values):
            continue
        batch["labels" if name in LABEL_NAMES else name] = _stack(name, values)
    return batch
