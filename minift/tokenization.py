"""Tokenizers, backed by the Hugging Face ``tokenizers`` library (the real Rust implementation).

    tok = mf.tokenization.from_pretrained("minilm")    # MiniLM's tokenizer.json (uncased WordPiece)
    tok = mf.tokenization.from_pretrained("smollm2")   # byte-level BPE rebuilt from the GGUF vocabulary + merges
    batch = tok(["a sentence", "another, longer one"], padding=True)   # {"input_ids", "attention_mask", ...}

Calls return a dict of int64 arrays, as Hugging Face tokenizers do with ``return_tensors="np"`` — a
:class:`BatchEncoding`, whose ``word_ids(i)`` and ``sequence_ids(i)`` map tokens back to words and texts
(NER label alignment, QA answer spans). Pre-tokenized words (``is_split_into_words=True``) and QA windows
over a long context (``truncation="only_second"``, ``stride``, ``return_overflowing_tokens``) are supported.
``train_tokenizer`` trains a new BPE or WordPiece vocabulary for our own small models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from .backend import to_numpy

CHATML_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus what a model needs around it: special ids, padding, chat template."""

    def __init__(self, backend: _HFTokenizer, pad_token=None, eos_token=None, bos_token=None, unk_token=None,
                 mask_token=None, chat_template=None, default_system_prompt=None, padding_side="right",
                 model_max_length=None):
        self.backend = backend
        backend.no_padding()
        backend.no_truncation()
        self.pad_token, self.eos_token, self.bos_token = pad_token, eos_token, bos_token
        self.unk_token, self.mask_token = unk_token, mask_token
        self.chat_template, self.default_system_prompt = chat_template, default_system_prompt
        self.padding_side, self.model_max_length = padding_side, model_max_length

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token):
        return self.backend.token_to_id(token) if token is not None else None

    def convert_ids_to_tokens(self, ids):
        return [self.backend.id_to_token(int(i)) for i in ids]

    @property
    def pad_token_id(self):
        return self.token_to_id(self.pad_token)

    @property
    def eos_token_id(self):
        return self.token_to_id(self.eos_token)

    @property
    def bos_token_id(self):
        return self.token_to_id(self.bos_token)

    @property
    def mask_token_id(self):
        return self.token_to_id(self.mask_token)

    @property
    def all_special_ids(self):
        tokens = (self.pad_token, self.eos_token, self.bos_token, self.unk_token, self.mask_token)
        ids = {self.token_to_id(t) for t in tokens if t is not None}
        return sorted(i for i in ids if i is not None)

    # ------------------------------------------------------------------ encoding
    def encode(self, text, add_special_tokens=True):
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text, text_pair=None, padding=False, truncation=False, max_length=None, stride=0,
                 add_special_tokens=True, padding_side=None, return_offsets_mapping=False,
                 return_overflowing_tokens=False, is_split_into_words=False):
        """Encode one text or a batch; returns a :class:`BatchEncoding` (a dict) of int64 arrays.

        Keys: "input_ids", "attention_mask", "token_type_ids", and on request "offset_mapping" (character
        spans, (0, 0) on special tokens) and "overflow_to_sample_mapping". ``enc.word_ids(i)`` and
        ``enc.sequence_ids(i)`` say, for each token of row i, which word and which text (0 or 1) it came from.

        ``padding``: False, True / "longest", or "max_length"; ``padding_side`` "right" (default) or "left"
        (what generation needs). Without padding, sequences of different lengths come back as lists.

        ``truncation``: True cuts each sequence to ``max_length`` from the right, keeping the closing special
        token; "only_second" cuts only ``text_pair`` (the context of a question-context pair).
        ``return_overflowing_tokens=True`` keeps what was cut as further rows ("windows"), each overlapping
        the previous by ``stride`` tokens and carrying the first text again; "overflow_to_sample_mapping"
        gives the input example of each row (the doc-stride of extractive QA).

        ``is_split_into_words=True``: each example is a list of words (NER data). The words are encoded as
        the text ``" ".join(words)`` is — same ids — and ``word_ids`` gives each token's word index;
        offsets point into that joined text.
        """
        for name, value, least in (("max_length", max_length, 1), ("stride", stride, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < least):
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        texts = self._as_batch(text, is_split_into_words, "text")
        if not texts:
            raise ValueError("tokenizer called with an empty batch")
        pairs = None if text_pair is None else self._as_batch(text_pair, is_split_into_words, "text_pair")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"text has {len(texts)} examples but text_pair has {len(pairs)}")
        if truncation not in (False, True, "longest_first", "only_second", "do_not_truncate"):
            raise ValueError("truncation must be False, True / 'longest_first' or 'only_second', "
                             f"got {truncation!r}")
        truncation = {"do_not_truncate": False, "longest_first": True}.get(truncation, truncation)
        limit = max_length or self.model_max_length
        if (truncation or return_overflowing_tokens) and limit is None:
            raise ValueError("truncation=True needs max_length (or a tokenizer model_max_length)")
        if truncation == "only_second" and pairs is None:
            raise ValueError("truncation='only_second' truncates text_pair, but no text_pair was given")
        if truncation == "only_second" or return_overflowing_tokens:
            rows = self._encode_windows(texts, pairs, limit, stride, add_special_tokens, is_split_into_words,
                                        truncation, return_overflowing_tokens)
        else:
            inputs = texts if pairs is None else list(zip(texts, pairs))
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                  is_pretokenized=is_split_into_words)
            rows = [_Row.of(e, i, texts[i], pairs[i] if pairs else None, is_split_into_words)
                    for i, e in enumerate(encodings)]
            if truncation:
                rows = [r.truncated(limit) for r in rows]
        return self._pad(rows, padding, max_length, padding_side or self.padding_side, return_offsets_mapping,
                         return_overflowing_tokens)

    @staticmethod
    def _as_batch(text, is_split_into_words, name):
        """A list of examples: strings, or (pre-tokenized) lists of words given a leading space after the
        first, so that a byte-level BPE sees "Ġword" exactly as in running text."""
        if not is_split_into_words:
            iterable = hasattr(text, "__iter__") and not isinstance(text, (bytes, dict))  # a list, a column, an array
            batch = [text] if isinstance(text, str) else list(text) if iterable else None
            bad = next((i for i, t in enumerate(batch or []) if not isinstance(t, str)), None)
            if batch is None or bad is not None:
                given = text if batch is None else batch[bad]
                where = "" if batch is None else f" (example {bad})"
                raise TypeError(f"{name} must be a string or a list of strings, got {type(given).__name__} "
                                f"{str(given)[:40]}{where}; token ids are decoded with tokenizer.decode, and "
                                "lists of words need is_split_into_words=True")
            return batch
        if isinstance(text, str):
            raise ValueError(f"is_split_into_words=True needs {name} as a list of words (or a batch of such "
                             f"lists), got the string {text[:40]!r}")
        batch = [text] if text and all(isinstance(w, str) for w in text) else list(text)
        for i, words in enumerate(batch):
            if isinstance(words, str) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"is_split_into_words=True: example {i} of {name} must be a list of "
                                 f"strings, got {str(words)[:60]}")
        return [[w if j == 0 else " " + w for j, w in enumerate(words)] for words in batch]

    def _encode_windows(self, texts, pairs, limit, stride, add_special_tokens, is_split_into_words,
                        truncation, return_overflowing_tokens):
        """Truncate the last text of each example to fit ``limit`` (special tokens included); with
        ``return_overflowing_tokens`` every cut-off part becomes a further window overlapping by ``stride``.

        The backend truncates (its pairs get correct sequence ids), but it aborts the whole process when the
        stride does not fit, so the room left for the truncated text is checked here first.
        """
        if not truncation:
            raise ValueError("return_overflowing_tokens=True needs truncation=True ('only_second' for pairs)")
        if pairs is not None and truncation != "only_second":
            raise ValueError("return_overflowing_tokens with text_pair needs truncation='only_second' (the "
                             f"windows slide over text_pair), got truncation={truncation!r}")
        stride = stride if return_overflowing_tokens else 0
        n_special = self.backend.num_special_tokens_to_add(pairs is not None) if add_special_tokens else 0
        kept = [0] * len(texts)  # tokens of the text that is never cut
        if pairs is not None:
            firsts = self.backend.encode_batch(texts, add_special_tokens=False,
                                               is_pretokenized=is_split_into_words)
            kept = [len(e.ids) for e in firsts]
        for i, n_kept in enumerate(kept):
            room = limit - n_kept - n_special
            if room < 1:
                raise ValueError(f"example {i}: its first text has {n_kept} tokens and {n_special} special "
                                 f"tokens are added: nothing of the truncated text fits max_length={limit}")
            if not 0 <= stride < room:
                raise ValueError(f"example {i}: stride must be in [0, {room}) — the {room} tokens of the "
                                 f"truncated text that fit in max_length={limit} — got stride={stride}")
        inputs = texts if pairs is None else list(zip(texts, pairs))
        strategy = "only_second" if pairs is not None else "longest_first"
        self.backend.enable_truncation(limit, stride=stride, strategy=strategy)
        try:
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                  is_pretokenized=is_split_into_words)
        finally:
            self.backend.no_truncation()
        rows = []
        for i, encoding in enumerate(encodings):
            windows = [encoding] + (list(encoding.overflowing) if return_overflowing_tokens else [])
            pair, n_first = (pairs[i], kept[i]) if pairs else (None, None)
            rows += [_Row.of(w, i, texts[i], pair, is_split_into_words, n_first) for w in windows]
        return rows

    def _pad(self, rows, padding, max_length, side, return_offsets_mapping, return_overflowing_tokens):
        if padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            width = max_length
        elif padding in (True, "longest"):
            width = max(len(r.ids) for r in rows)
        elif padding in (False, "do_not_pad"):
            width = None
        else:
            raise ValueError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        out = {}
        if width is None and len({len(r.ids) for r in rows}) > 1:  # ragged: lists, not arrays
            out = {"input_ids": [r.ids for r in rows], "attention_mask": [[1] * len(r.ids) for r in rows],
                   "token_type_ids": [r.type_ids for r in rows]}
            if return_offsets_mapping:
                out["offset_mapping"] = [r.offsets for r in rows]
            word_ids, sequence_ids = [r.word_ids for r in rows], [r.sequence_ids for r in rows]
        else:
            width = width or len(rows[0].ids)
            pad_id = self.pad_token_id if self.pad_token_id is not None else 0
            n = len(rows)
            ids = np.full((n, width), pad_id, dtype=np.int64)
            mask = np.zeros((n, width), dtype=np.int64)
            types = np.zeros((n, width), dtype=np.int64)
            offsets = np.zeros((n, width, 2), dtype=np.int64)
            word_ids, sequence_ids = [], []
            for i, r in enumerate(rows):
                L = min(len(r.ids), width)
                n_pad = width - L
                sl = slice(n_pad, width) if side == "left" else slice(0, L)
                ids[i, sl], mask[i, sl], types[i, sl] = r.ids[:L], 1, r.type_ids[:L]
                # (L, 2): a (start, end) span per token, (0, 2) when L is 0
                offsets[i, sl] = np.asarray(r.offsets[:L], dtype=np.int64).reshape(L, 2)
                pads = [None] * n_pad
                word_ids.append(pads + r.word_ids[:L] if side == "left" else r.word_ids[:L] + pads)
                seq_ids = r.sequence_ids[:L]
                sequence_ids.append(pads + seq_ids if side == "left" else seq_ids + pads)
            out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            if return_offsets_mapping:
                out["offset_mapping"] = offsets
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = np.array([r.sample for r in rows], dtype=np.int64)
        return BatchEncoding(out, word_ids, sequence_ids)  # a single text comes back as a batch of one

    # ------------------------------------------------------------------ decoding
    def decode(self, ids, skip_special_tokens=False):
        """The text of a sequence of token ids (a list, an array, a tensor's data), each in 0…vocab_size−1."""
        ids = to_numpy(ids).reshape(-1)  # any shape -> (n,)
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"decode needs integer token ids, got an array of {ids.dtype} ({ids[:4].tolist()}…)")
        outside = ids[(ids < 0) | (ids >= self.vocab_size)]
        if outside.size:
            hint = "; −100 marks the positions a loss ignores in labels: decode input_ids" if -100 in outside else ""
            raise ValueError(f"token id {int(outside[0])} is outside the vocabulary (0…{self.vocab_size - 1}){hint}")
        return self.backend.decode(ids.tolist(), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch, skip_special_tokens=False):
        return [self.decode(row, skip_special_tokens) for row in batch]

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
        """ChatML, as SmolLM2's template writes it:

            <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n

        A conversation that does not start with a system message gets the default system prompt.
        """
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat template")
        parts = []
        for i, m in enumerate(messages):
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"message {i} has role {m.get('role')!r}; expected system, user or assistant")
            if i == 0 and m["role"] != "system" and self.default_system_prompt is not None:
                parts.append(f"<|im_start|>system\n{self.default_system_prompt}<|im_end|>\n")
            parts.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        text = "".join(parts)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # ------------------------------------------------------------------ files
    def save_pretrained(self, directory) -> tuple:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory`` (HF's name), both or
        neither: a crash half-way leaves the files that were there. Returns the two paths, as HF's does.
        ``from_pretrained(directory)`` reads them back."""
        from .models.checkpoint import atomic_files

        with atomic_files(directory) as staging:
            self._write(staging)
        return tuple(str(Path(directory) / name) for name in ("tokenizer_config.json", "tokenizer.json"))

    def _write(self, directory):
        """The two files, written straight into ``directory`` (a staging one: see ``save_pretrained``)."""
        d = Path(directory)
        self.backend.save(str(d / "tokenizer.json"))
        cfg = {k: getattr(self, k) for k in ("pad_token", "eos_token", "bos_token", "unk_token", "mask_token",
                                             "chat_template", "default_system_prompt", "padding_side", "model_max_length")}
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))

    @classmethod
    def load(cls, directory):
        d = Path(directory)
        if not (d / "tokenizer.json").exists():
            raise FileNotFoundError(f"{d / 'tokenizer.json'} does not exist")
        from .models.checkpoint import CheckpointError, read_json

        try:
            backend = _HFTokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a bad file
            raise CheckpointError(f"{d / 'tokenizer.json'} is not a tokenizer file the tokenizers library can "
                                  f"read: {e}") from None
        cfg_path = d / "tokenizer_config.json"
        cfg = read_json(cfg_path) if cfg_path.exists() else {}
        known = {"pad_token", "eos_token", "bos_token", "unk_token", "mask_token", "chat_template", "default_system_prompt",
                 "padding_side", "model_max_length"}
        kw = {k: v for k, v in cfg.items() if k in known and (k != "model_max_length" or isinstance(v, int))}
        if "pad_token" not in kw and backend.token_to_id("[PAD]") is not None:  # a BERT tokenizer.json alone
            kw.update(pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
        return cls(backend, **kw)


class BatchEncoding(dict):
    """What a tokenizer call returns: a dict of arrays (or lists), plus per-row token → word / text maps.

    ``word_ids(i)``: for each token of row i, the index of the word it came from (None on special and pad
    tokens); tokens of one word share its index, so the first token of each word is where its NER label goes.
    ``sequence_ids(i)``: 0 for tokens of the text, 1 for tokens of text_pair, None on special and pad tokens.
    """

    def __init__(self, data, word_ids, sequence_ids):
        super().__init__(data)
        self._word_ids, self._sequence_ids = word_ids, sequence_ids

    def word_ids(self, batch_index=0):
        return list(self._word_ids[batch_index])

    def sequence_ids(self, batch_index=0):
        return list(self._sequence_ids[batch_index])


class _Row:
    """One encoded row before padding: ids, type ids, offsets, word ids, sequence ids, its input example."""

    def __init__(self, ids, type_ids, offsets, word_ids, sequence_ids, sample):
        self.ids, self.type_ids, self.offsets = ids, type_ids, offsets
        self.word_ids, self.sequence_ids, self.sample = word_ids, sequence_ids, sample

    @classmethod
    def of(cls, encoding, sample, text, pair, pretokenized, n_first=None):
        """``n_first``: the number of tokens of the first text of a pair, given for the windows of
        ``return_overflowing_tokens``: without a post-processor the library leaves the sequence ids of
        overflowing windows empty, so they are rebuilt — specials None, then n_first 0s, then 1s."""
        word_ids, sequence_ids = list(encoding.word_ids), list(encoding.sequence_ids)
        if n_first is not None:
            position = np.cumsum([not special for special in encoding.special_tokens_mask]) - 1
            sequence_ids = [None if special else int(p >= n_first)
                            for special, p in zip(encoding.special_tokens_mask, position)]
        offsets = list(encoding.offsets)
        if pretokenized:  # offsets are within each word: move them into the words joined by spaces
            starts = [np.cumsum([0] + [len(w) for w in words]).tolist() for words in (text, pair or [])]
            offsets = [(a + starts[s][w], b + starts[s][w]) if w is not None else (a, b)
                       for (a, b), w, s in zip(offsets, word_ids, sequence_ids)]
        return cls(list(encoding.ids), list(encoding.type_ids), offsets, word_ids, sequence_ids, sample)

    def truncated(self, limit):
        """The first ``limit`` tokens; a closing special token ([SEP]) is kept as the last one."""
        if len(self.ids) <= limit:
            return self
        keep_last = self.sequence_ids[-1] is None and limit > 1  # the post-processor's closing token
        cut = (lambda xs: xs[: limit - 1] + xs[-1:]) if keep_last else (lambda xs: xs[:limit])
        return _Row(cut(self.ids), cut(self.type_ids), cut(self.offsets), cut(self.word_ids),
                    cut(self.sequence_ids), self.sample)


# ----------------------------------------------------------------------------- SmolLM2 from GGUF
def from_gguf(path) -> Tokenizer:
    """Rebuild SmolLM2's byte-level BPE from the GGUF metadata: tokens, merges, special tokens, chat template.

    Pre-tokenization as SmolLM2's tokenizer.json: every digit alone, then GPT-2's byte-level split.
    """
    import gguf

    r = gguf.GGUFReader(str(path))
    f = r.fields

    def contents(key, default=None):
        return f[key].contents() if key in f else default

    if contents("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path}: tokenizer model {contents('tokenizer.ggml.model')!r} is not byte-level BPE ('gpt2')")
    tokens = contents("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in contents("tokenizer.ggml.merges")]
    types = contents("tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False)
    tok = _HFTokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [tokens[i] for i, t in enumerate(types) if t == gguf.TokenType.CONTROL]
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    ids = {k: contents(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding", "unknown")}
    name = lambda i: tokens[i] if i is not None else None  # noqa: E731
    template = contents("tokenizer.chat_template")
    return Tokenizer(tok, pad_token=name(ids["padding"]), eos_token=name(ids["eos"]), bos_token=name(ids["bos"]),
                     unk_token=name(ids["unknown"]), chat_template=template,
                     default_system_prompt=CHATML_SYSTEM if template and "SmolLM" in template else None,
                     model_max_length=int(contents("llama.context_length", 2048)))


def from_pretrained(name_or_path) -> Tokenizer:
    """``"minilm"`` / ``"smollm2"`` from the zoo, or a directory with ``tokenizer.json``."""
    from . import zoo

    if name_or_path == "minilm":
        t = Tokenizer.load(zoo.path("minilm"))
        t.model_max_length = 512
        return t
    if name_or_path == "smollm2":
        return from_gguf(zoo.path("smollm2", "model.gguf"))
    p = Path(name_or_path)
    if p.suffix == ".gguf":
        return from_gguf(p)
    if not p.is_dir():  # the words the model loader uses for the same mistake
        raise FileNotFoundError(f"{name_or_path!r} is neither a zoo model (minilm, smollm2) nor a directory "
                                f"({'a file' if p.exists() else 'no such path'}); a model directory holds "
                                "config.json, the weights and tokenizer.json")
    return Tokenizer.load(p)


# ----------------------------------------------------------------------------- training our own
def train_tokenizer(texts, kind="bpe", vocab_size=4096, min_frequency=2, lowercase=None) -> Tokenizer:
    """Train a tokenizer on an iterable of strings.

    ``"bpe"``: byte-level BPE (GPT-2 style: no unknown tokens, any text round-trips), special tokens
    ``<|endoftext|>`` (eos and pad) and ``<|pad|>``. ``"wordpiece"``: BERT style, lowercased, with
    ``[PAD] [UNK] [CLS] [SEP] [MASK]`` and ``[CLS] … [SEP]`` added around each text.
    """
    if kind == "bpe":
        specials = ["<|endoftext|>", "<|pad|>"]
        tok = _HFTokenizer(models.BPE())
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return Tokenizer(tok, pad_token="<|pad|>", eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    if kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = _HFTokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True if lowercase is None else lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                            show_progress=False)
        tok.train_from_iterator(texts, trainer)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
        )
        return Tokenizer(tok, pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
    raise ValueError(f"kind must be 'bpe' or 'wordpiece', got {kind!r}")
