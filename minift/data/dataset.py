"""Column-oriented datasets with the names of Hugging Face ``datasets``: Dataset, DatasetDict, ClassLabel.

    ds = Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]})
    ds = ds.map(lambda batch: tok(batch["text"], truncation=True), batched=True)   # adds input_ids, ...
    splits = ds.train_test_split(test_size=0.2, seed=0, stratify_by_column="label")

A ``Dataset`` is a dict of equally long Python lists, one per column; every method returns a new
``Dataset`` and leaves the old one as it was. It holds host data (text, token ids, labels), so NumPy is
used freely here: arrays that a function returns are turned into per-row lists, and a collator turns a
batch of rows into arrays for the model.

Random choices (``shuffle``, ``train_test_split``) draw from ``np.random.default_rng(seed)``, as HF does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..backend import check_seed


# ----------------------------------------------------------------------------- features
class ClassLabel:
    """The names of a categorical column's classes: label id i means ``names[i]``.

    ``ds.features["label"].names`` tells a classification head how many outputs it needs
    (``num_classes``) and what they mean (``int2str``).
    """

    def __init__(self, names):
        names = list(names)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"ClassLabel needs a non-empty list of strings, got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"ClassLabel names must be unique, got {names!r}")
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}

    @property
    def num_classes(self):
        return len(self.names)

    def int2str(self, ids):
        """Name of one id, or a list of names for a list of ids."""
        if isinstance(ids, (list, tuple, np.ndarray)):
            return [self.int2str(i) for i in ids]
        i = int(ids)
        if not 0 <= i < self.num_classes:
            raise ValueError(f"label id {i} is out of range for {self.num_classes} classes {self.names}")
        return self.names[i]

    def str2int(self, names):
        """Id of one name, or a list of ids for a list of names."""
        if isinstance(names, (list, tuple)):
            return [self.str2int(n) for n in names]
        if names not in self._index:
            raise ValueError(f"unknown label {names!r}; the labels are {self.names}")
        return self._index[names]

    def __eq__(self, other):
        return isinstance(other, ClassLabel) and other.names == self.names

    def __repr__(self):
        return f"ClassLabel(names={self.names})"


class Value:
    """The type of a plain column's values: "string", "int64", "float64", "bool", or "null" (all None)."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __eq__(self, other):
        return isinstance(other, Value) and other.dtype == self.dtype

    def __repr__(self):
        return f"Value(dtype={self.dtype!r})"


class Sequence:
    """A column whose every value is a list of ``feature`` values, e.g. NER tags:
    ``Sequence(ClassLabel(names=[...]))``, read as ``ds.features["ner_tags"].feature.names``."""

    def __init__(self, feature):
        self.feature = feature

    def __eq__(self, other):
        return isinstance(other, Sequence) and other.feature == self.feature

    def __repr__(self):
        return f"Sequence(feature={self.feature!r})"


def _infer_feature(values):
    """A ``Value`` / ``Sequence`` / dict of features describing a column, from its first non-None value."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        return Value("null")
    if isinstance(first, str):
        return Value("string")
    if isinstance(first, (bool, np.bool_)):
        return Value("bool")
    if isinstance(first, (int, np.integer)):
        return Value("int64")
    if isinstance(first, (float, np.floating)):
        return Value("float64")
    if isinstance(first, (list, tuple)):
        return Sequence(_infer_feature([x for v in values if v is not None for x in v][:100]))
    if isinstance(first, Mapping):
        return {k: _infer_feature([v.get(k) for v in values if v is not None][:100]) for k in first}
    return Value(type(first).__name__)


# ----------------------------------------------------------------------------- helpers
def _as_row_values(value, name):
    """A column given as a list, tuple or array, as a Python list of per-row values (arrays → lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()  # a (rows, T) array of token ids becomes one list of T ints per row
    if isinstance(value, (list, tuple)):
        return [v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v for v in value]
    raise TypeError(f"column {name!r} must be a list, tuple or NumPy array of per-row values, "
                    f"got {type(value).__name__}")


def _as_python(value):
    """One row's value with NumPy arrays and scalars turned into lists and Python numbers."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _check_lengths(columns, what):
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{what}: all columns must have the same number of rows, got {lengths}")
    return next(iter(lengths.values()), 0)


# ----------------------------------------------------------------------------- Dataset
class Dataset:
    """A table of rows stored column by column: ``{column name: list of values, one per row}``."""

    def __init__(self, columns=None, features=None, num_rows=None):
        """Prefer ``Dataset.from_dict`` / ``from_list``. ``num_rows`` matters only for a table without
        columns (e.g. after ``map`` removed them all)."""
        self._data = {name: _as_row_values(values, name) for name, values in (columns or {}).items()}
        n = _check_lengths(self._data, "Dataset")
        self._num_rows = n if self._data or num_rows is None else num_rows
        features = dict(features or {})
        unknown = sorted(set(features) - set(self._data))
        if unknown:
            raise ValueError(f"features given for columns {unknown} that the data does not have "
                             f"(columns: {self.column_names})")
        self._features = features  # declared features (ClassLabel, ...); the rest are inferred on demand

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, mapping, features=None):
        """From ``{column: list of values}``; every list must have the same length."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"from_dict needs a dict of column name → list, got {type(mapping).__name__}")
        return cls(dict(mapping), features)

    @classmethod
    def from_list(cls, rows, features=None):
        """From a list of row dicts that all have the same keys."""
        rows = list(rows)
        if not rows:
            return cls({}, features)
        names = list(rows[0])
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"from_list needs dicts, row {i} is a {type(row).__name__}")
            if set(row) != set(names):
                raise ValueError(f"row {i} has keys {sorted(row)} but row 0 has {sorted(names)}; "
                                 "every row needs the same keys")
        return cls({name: [row[name] for row in rows] for name in names}, features)

    # ------------------------------------------------------------------ shape and schema
    @property
    def column_names(self):
        return list(self._data)

    @property
    def num_rows(self):
        return self._num_rows

    @property
    def num_columns(self):
        return len(self._data)

    @property
    def features(self):
        """``{column: feature}``: the declared ones (e.g. ``ClassLabel``), else an inferred ``Value`` /
        ``Sequence``."""
        return {name: self._features.get(name) or _infer_feature(values)
                for name, values in self._data.items()}

    def __len__(self):
        return self._num_rows

    def __repr__(self):
        return f"Dataset({{\n    features: {self.column_names},\n    num_rows: {self.num_rows}\n}})"

    def _require_columns(self, names, what):
        missing = [n for n in names if n not in self._data]
        if missing:
            raise KeyError(f"{what}: no column {missing[0]!r} (the columns are {self.column_names})")

    def _with(self, columns, features=None, num_rows=None):
        """A new Dataset of ``columns``, keeping the declared features of the columns it still has."""
        kept = {k: v for k, v in (self._features if features is None else features).items() if k in columns}
        return Dataset(columns, kept, num_rows)

    # ------------------------------------------------------------------ reading
    def __getitem__(self, key):
        """``ds[i]`` → one row as a dict; ``ds[a:b]`` or ``ds[[i, j]]`` → a dict of lists;
        ``ds["text"]`` → the column as a list."""
        if isinstance(key, str):
            self._require_columns([key], "ds[...]")
            return list(self._data[key])
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if not -self._num_rows <= i < self._num_rows:
                raise IndexError(f"row {i} is out of range for a dataset of {self._num_rows} rows")
            i %= self._num_rows
            return {name: values[i] for name, values in self._data.items()}
        if isinstance(key, slice):
            return {name: values[key] for name, values in self._data.items()}
        if isinstance(key, (list, tuple, range, np.ndarray)):
            indices = self._checked_indices(key)
            return {name: [values[i] for i in indices] for name, values in self._data.items()}
        raise TypeError(f"a dataset is indexed by an int, a slice, a list of ints or a column name, "
                        f"got {type(key).__name__}")

    def __iter__(self):
        for i in range(self._num_rows):
            yield {name: values[i] for name, values in self._data.items()}

    def to_dict(self):
        """``{column: list}`` (copies)."""
        return {name: list(values) for name, values in self._data.items()}

    def to_list(self):
        """A list of row dicts."""
        return list(self)

    def _checked_indices(self, indices):
        # a list or an array of indices, any shape -> (n,)
        indices = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)] if len(indices) else []
        bad = [i for i in indices if not 0 <= i < self._num_rows]
        if bad:
            raise IndexError(f"index {bad[0]} is out of range for a dataset of {self._num_rows} rows")
        return indices

    # ------------------------------------------------------------------ columns
    def remove_columns(self, column_names):
        names = [column_names] if isinstance(column_names, str) else list(column_names)
        self._require_columns(names, "remove_columns")
        return self._with({k: v for k, v in self._data.items() if k not in names}, num_rows=self._num_rows)

    def rename_column(self, original_column_name, new_column_name):
        self._require_columns([original_column_name], "rename_column")
        if new_column_name in self._data:
            raise ValueError(f"rename_column: a column {new_column_name!r} already exists "
                             f"(the columns are {self.column_names})")
        rename = lambda k: new_column_name if k == original_column_name else k  # noqa: E731
        features = {rename(k): f for k, f in self._features.items()}
        return self._with({rename(k): v for k, v in self._data.items()}, features)

    def select_columns(self, column_names):
        names = [column_names] if isinstance(column_names, str) else list(column_names)
        self._require_columns(names, "select_columns")
        return self._with({k: self._data[k] for k in names}, num_rows=self._num_rows)

    def cast_column(self, column, feature):
        """Declare a column's feature, e.g. ``ds.cast_column("label", ClassLabel(names=["neg", "pos"]))``."""
        self._require_columns([column], "cast_column")
        return self._with(self._data, {**self._features, column: feature})

    # ------------------------------------------------------------------ rows
    def select(self, indices):
        """The rows at ``indices`` (any iterable of ints, repeats allowed), in that order."""
        indices = self._checked_indices(list(indices))
        return self._with({name: [values[i] for i in indices] for name, values in self._data.items()},
                          num_rows=len(indices))

    def shuffle(self, seed=None):
        """The rows in the order of ``np.random.default_rng(seed).permutation(len(self))``."""
        return self.select(_generator(seed, "shuffle").permutation(self._num_rows))

    def filter(self, function, batched=False, batch_size=1000, fn_kwargs=None):
        """The rows for which ``function(row)`` is true; batched, ``function(batch)`` returns one bool per
        row."""
        fn_kwargs = fn_kwargs or {}
        keep = []
        if not batched:
            keep = [bool(function(row, **fn_kwargs)) for row in self]
        else:
            for start, batch in self._batches(batch_size):
                # one flag per row: any shape -> (n,)
                flags = list(np.asarray(function(batch, **fn_kwargs)).reshape(-1))
                n = len(next(iter(batch.values()), []))
                if len(flags) != n:
                    raise ValueError(f"filter's function returned {len(flags)} flags for a batch of {n} rows "
                                     f"(rows {start}..{start + n - 1}); it must return one bool per row")
                keep += [bool(f) for f in flags]
        return self.select([i for i, k in enumerate(keep) if k])

    def _batches(self, batch_size):
        size = self._num_rows if batch_size is None or batch_size <= 0 else batch_size
        for start in range(0, self._num_rows, max(size, 1)):
            yield start, self[start : start + size]

    # ------------------------------------------------------------------ map
    def map(self, function, batched=False, batch_size=1000, remove_columns=None, fn_kwargs=None,
            features=None):
        """Apply ``function`` to each row (or batch of rows) and add or replace the columns it returns.

        Row by row, ``function(row)`` gets a dict and returns a dict of new values (or None: no change).
        Batched, ``function(batch)`` gets a dict of lists (``batch_size`` rows) and returns a dict of
        lists or arrays — possibly with a different number of rows (one question over a long context
        becomes several windows); then the input columns must be removed with ``remove_columns``, since
        they would no longer line up. ``remove_columns`` are dropped after the function has seen them.
        Columns the function changes lose a declared feature unless ``features`` declares it again.
        """
        fn_kwargs = fn_kwargs or {}
        removed = [] if remove_columns is None else (
            [remove_columns] if isinstance(remove_columns, str) else list(remove_columns))
        self._require_columns(removed, "map(remove_columns=...)")
        outputs, kept_inputs, n_out = None, {}, 0
        chunks = self._batches(batch_size) if batched else ((i, row) for i, row in enumerate(self))
        for start, chunk in chunks:
            result = function(chunk, **fn_kwargs)
            if result is None:
                result = {}
            if not isinstance(result, Mapping):
                raise TypeError(f"map's function must return a dict (or None), got {type(result).__name__} "
                                f"for {'the batch at row' if batched else 'row'} {start}")
            if batched:
                result = {k: _as_row_values(v, k) for k, v in result.items()}
                what = f"map's function on the batch at row {start}"
                n_rows = _check_lengths(result, what) if result else None
            else:
                result = {k: [_as_python(v)] for k, v in result.items()}
                n_rows = 1
            if outputs is None:
                outputs = {k: [] for k in result}
            if set(result) != set(outputs):
                raise ValueError(f"map's function returned columns {sorted(result)} at row {start} but "
                                 f"{sorted(outputs)} before; it must return the same columns every time")
            n_in = len(next(iter(chunk.values()), [])) if batched else 1
            if batched and not self._data:  # a dataset without columns: the function sees empty batches
                size = batch_size if batch_size and batch_size > 0 else self._num_rows
                n_in = min(self._num_rows - start, size)
            n_rows = n_in if n_rows is None else n_rows
            carried = [k for k in self._data if k not in removed and k not in result]
            if n_rows != n_in and carried:
                raise ValueError(f"map's function returned {n_rows} rows for a batch of {n_in}, so the input "
                                 f"columns {carried} no longer line up; drop them with "
                                 f"remove_columns={carried} (or return them too)")
            for k, v in result.items():
                outputs[k] += v
            for k in carried:
                kept_inputs.setdefault(k, []).extend(self._data[k][start : start + n_in])
            n_out += n_rows
        outputs = outputs or {}
        if self._num_rows == 0:  # the function never ran: keep the input columns that are not removed
            kept_inputs = {k: [] for k in self._data if k not in removed}
        columns = {k: kept_inputs[k] if k in kept_inputs else outputs[k]
                   for k in self._data if k in kept_inputs or k in outputs}
        columns.update({k: v for k, v in outputs.items() if k not in columns})
        declared = {k: f for k, f in self._features.items()  # a changed column's ClassLabel may not fit
                    if k not in outputs or outputs[k] == self._data[k]}
        declared.update(features or {})
        return self._with(columns, declared, num_rows=n_out)

    # ------------------------------------------------------------------ splits
    def train_test_split(self, test_size=None, shuffle=True, seed=None, stratify_by_column=None):
        """``DatasetDict(train=..., test=...)``: every row lands in exactly one of the two.

        ``test_size``: a fraction in (0, 1) (the test split gets ``ceil(test_size · n)`` rows) or a number
        of rows; default 0.25. ``stratify_by_column``: each class gets its share of the test split, rounded
        so that every class is within one row of its exact proportion.
        """
        n = self._num_rows
        if n < 2:
            raise ValueError(f"train_test_split needs at least 2 rows, the dataset has {n}")
        test_size = 0.25 if test_size is None else test_size
        if isinstance(test_size, float):
            if not 0.0 < test_size < 1.0:
                raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}")
            n_test = math.ceil(test_size * n)
        else:
            n_test = int(test_size)
        if not 0 < n_test < n:
            raise ValueError(f"test_size={test_size} gives {n_test} test rows out of {n}; both splits need "
                             "at least one row")
        rng = _generator(seed, "train_test_split")
        if stratify_by_column is not None:
            if not shuffle:
                raise ValueError("a stratified split draws rows at random; it needs shuffle=True")
            self._require_columns([stratify_by_column], "train_test_split(stratify_by_column=...)")
            train_idx, test_idx = _stratified_indices(self._data[stratify_by_column], n_test, rng)
        elif shuffle:
            order = rng.permutation(n)
            test_idx, train_idx = order[:n_test], order[n_test:]
        else:
            train_idx, test_idx = np.arange(n - n_test), np.arange(n - n_test, n)
        return DatasetDict(train=self.select(train_idx), test=self.select(test_idx))


def _stratified_indices(labels, n_test, rng):
    """Train and test row indices with each class's test count within one of n_c · n_test / n.

    Each class first gets the whole part of its quota; the rows still missing go to the classes with the
    largest remainders (largest-remainder rounding), so the counts add up to exactly ``n_test``.
    """
    try:
        rows_of = {}
        for i, label in enumerate(labels):
            rows_of.setdefault(label, []).append(i)
    except TypeError:
        raise TypeError("stratify_by_column needs one hashable label (an int or a string) per row") from None
    n = len(labels)
    classes = list(rows_of)
    quotas = np.array([len(rows_of[c]) * n_test / n for c in classes])
    counts = np.floor(quotas).astype(int)
    short = n_test - counts.sum()
    by_remainder = sorted(range(len(classes)), key=lambda k: -(quotas[k] - counts[k]))
    counts[by_remainder[:short]] += 1
    train, test = [], []
    for c, n_c_test in zip(classes, counts):
        rows = rng.permutation(rows_of[c])
        test += rows[:n_c_test].tolist()
        train += rows[n_c_test:].tolist()
    return rng.permutation(train), rng.permutation(test)


# ----------------------------------------------------------------------------- DatasetDict
class DatasetDict(dict):
    """``{split name: Dataset}``; ``map`` / ``filter`` / ``shuffle`` / column edits apply to every split."""

    def _each(self, method, *args, **kwargs):
        return DatasetDict({name: getattr(ds, method)(*args, **kwargs) for name, ds in self.items()})

    def map(self, function, **kwargs):
        return self._each("map", function, **kwargs)

    def filter(self, function, **kwargs):
        return self._each("filter", function, **kwargs)

    def shuffle(self, seed=None):
        return self._each("shuffle", seed=seed)

    def remove_columns(self, column_names):
        return self._each("remove_columns", column_names)

    def rename_column(self, original_column_name, new_column_name):
        return self._each("rename_column", original_column_name, new_column_name)

    def select_columns(self, column_names):
        return self._each("select_columns", column_names)

    def cast_column(self, column, feature):
        return self._each("cast_column", column, feature)

    @property
    def column_names(self):
        return {name: ds.column_names for name, ds in self.items()}

    @property
    def num_rows(self):
        return {name: ds.num_rows for name, ds in self.items()}

    def __getitem__(self, split):
        if split not in self:
            raise KeyError(f"no split {split!r} (the splits are {list(self)})")
        return super().__getitem__(split)

    def __repr__(self):
        inner = "\n".join(f"    {name}: " + repr(ds).replace("\n", "\n    ") for name, ds in self.items())
        return "DatasetDict({\n" + inner + "\n})"


def _generator(seed, method):
    """``np.random.default_rng(seed)``: None draws fresh entropy; otherwise an integer ≥ 0."""
    return np.random.default_rng(None if seed is None else check_seed(seed, f"{method}'s seed"))
