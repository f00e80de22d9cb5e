"""Tokenizers, backed by the Hugging Face ``tokenizers`` library (the real Rust implementation).

    tok = mf.tokenization.from_pretrained("minilm")    # MiniLM's tokenizer.json (uncased WordPiece)
    tok = mf.tokenization.from_pretrained("smollm2")   # byte-level BPE rebuilt from the GGUF vocabulary + merges
    batch = tok(["a sentence", "another, longer one"], padding=True)   # {"input_ids", "attention_mask", ...}

Calls return a dict of int64 arrays, as Hugging Face tokenizers do with ``return_tensors="np"``.
``train_tokenizer`` trains a new BPE or WordPiece vocabulary for our own small models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

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
        return sorted({self.token_to_id(t) for t in (self.pad_token, self.eos_token, self.bos_token, self.unk_token, self.mask_token)
                       if t is not None and self.token_to_id(t) is not None})

    # ------------------------------------------------------------------ encoding
    def encode(self, text, add_special_tokens=True):
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text, text_pair=None, padding=False, truncation=False, max_length=None, add_special_tokens=True,
                 padding_side=None, return_offsets_mapping=False):
        """Encode one text or a batch; returns {"input_ids", "attention_mask", "token_type_ids"} as int64 arrays.

        ``padding``: False, True / "longest", or "max_length"; ``padding_side`` "right" (default) or "left"
        (what generation needs). Without padding, sequences of different lengths come back as lists.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("tokenizer called with an empty batch")
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            encs = self.backend.encode_batch(list(zip(texts, pairs)), add_special_tokens=add_special_tokens)
        else:
            encs = self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        limit = max_length or self.model_max_length
        if truncation and limit is None:
            raise ValueError("truncation=True needs max_length (or a tokenizer model_max_length)")
        rows = []
        for e in encs:
            ids, types, offs = list(e.ids), list(e.type_ids), list(e.offsets)
            if truncation and len(ids) > limit:
                keep_last = add_special_tokens and self.backend.post_processor is not None and len(ids) > 1
                ids = ids[: limit - 1] + ids[-1:] if keep_last else ids[:limit]  # keep the closing [SEP]
                types = types[: limit - 1] + types[-1:] if keep_last else types[:limit]
                offs = offs[: limit - 1] + offs[-1:] if keep_last else offs[:limit]
            rows.append((ids, types, offs))
        side = padding_side or self.padding_side
        if padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            width = max_length
        elif padding in (True, "longest"):
            width = max(len(r[0]) for r in rows)
        elif padding is False:
            width = None
        else:
            raise ValueError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        if width is None and len({len(r[0]) for r in rows}) > 1:
            out = {"input_ids": [r[0] for r in rows], "attention_mask": [[1] * len(r[0]) for r in rows],
                   "token_type_ids": [r[1] for r in rows]}
            if return_offsets_mapping:
                out["offset_mapping"] = [r[2] for r in rows]
            return out
        width = width or len(rows[0][0])
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        n = len(rows)
        ids = np.full((n, width), pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        offsets = np.zeros((n, width, 2), dtype=np.int64)
        for i, (r_ids, r_types, r_offs) in enumerate(rows):
            L = min(len(r_ids), width)
            sl = slice(width - L, width) if side == "left" else slice(0, L)
            ids[i, sl], mask[i, sl], types[i, sl] = r_ids[:L], 1, r_types[:L]
            offsets[i, sl] = np.asarray(r_offs[:L], dtype=np.int64).reshape(L, 2)
        out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if return_offsets_mapping:
            out["offset_mapping"] = offsets
        return out  # a single text comes back as a batch of one, as with return_tensors="np"

    # ------------------------------------------------------------------ decoding
    def decode(self, ids, skip_special_tokens=False):
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

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
    def save(self, directory):
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(d / "tokenizer.json"))
        cfg = {k: getattr(self, k) for k in ("pad_token", "eos_token", "bos_token", "unk_token", "mask_token",
                                             "chat_template", "default_system_prompt", "padding_side", "model_max_length")}
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))

    @classmethod
    def load(cls, directory):
        d = Path(directory)
        if not (d / "tokenizer.json").exists():
            raise FileNotFoundError(f"{d / 'tokenizer.json'} does not exist")
        backend = _HFTokenizer.from_file(str(d / "tokenizer.json"))
        cfg_path = d / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        known = {"pad_token", "eos_token", "bos_token", "unk_token", "mask_token", "chat_template", "default_system_prompt",
                 "padding_side", "model_max_length"}
        kw = {k: v for k, v in cfg.items() if k in known and (k != "model_max_length" or isinstance(v, int))}
        if "pad_token" not in kw and backend.token_to_id("[PAD]") is not None:  # a BERT tokenizer.json alone
            kw.update(pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
        return cls(backend, **kw)


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
