"""The token view: one row per token of a batch, with what the model and the loss make of it.

    table = show_batch(batch, tokenizer)   # batch: input_ids, attention_mask, labels, position_ids …
    print(table)                           # a text table; in a notebook the rows are coloured
    table.warnings                         # the classic mistakes found in this batch, one line each

Each token gets: its position t, its text (the decoded piece), its id, its attention mask, its position id,
its label — or −100 and *why*: ``padding`` (mask 0), ``special`` ([CLS], [SEP], …), ``boundary`` (the first
token of a packed example: the previous example's last token must not predict it), ``continuation`` (a
word's later WordPiece, ``##…``: NER labels the first piece only), ``prompt`` (an SFT prompt: the tokens before
an example's first trained token, when the labels are token ids), or ``masked`` (none of these). It also marks
EOS, the packed-sequence boundaries (position ids restarting at 0, or a 3-D attention mask that stops attention
at the boundary) and the position a sequence classifier reads: ``last_token_index`` (the last real token,
HF's rule for decoder classifiers), or what you pass.

Warnings (``TokenViewWarning``, also kept in ``table.warnings``):

* an example (a row, or a packed example) with no trained token: it contributes nothing (trl#598, #1820 — a
  response template that tokenizes differently in context masks the whole example);
* a masked EOS: the last EOS of an example carries −100 while the example trains other tokens, so the model
  never learns to stop (pad = EOS and "mask every pad" masks the EOS too: trl#734);
* a classifier reading a pad: the position it reads has attention mask 0 (reading ``[:, -1]`` of a
  right-padded batch: LLMs-from-scratch#566).

Host-side bookkeeping: the batch is read into NumPy (token ids and masks are Python data, not the model's
arrays).
"""
from __future__ import annotations

import html
import warnings

import numpy as np  # host-side: a batch's ids, masks and labels, read for display

IGNORE_INDEX = -100
COLOURS = {"trained": "#d9f2d9", "masked": "#fff2cc", "padding": "#eeeeee"}


class TokenViewWarning(UserWarning):
    """A batch that trains something other than what was meant (an example with no trained token, …)."""


def _host(x):
    """A NumPy copy of ids / masks given as a list, a NumPy or CuPy array or a minift Tensor."""
    from .. import backend
    from ..autograd import Tensor

    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    return np.asarray(backend.to_numpy(x.data if isinstance(x, Tensor) else x))


def _as_rows(name, x, b=None):
    """(B, T) from (T,) or (B, T) (``b`` rows when a 1-D array should be one row)."""
    a = _host(x)
    if a.ndim == 1:
        a = a[None, :]  # (T,) -> (1, T)
    if a.ndim != 2 or (b is not None and a.shape[0] != b):
        raise ValueError(f"{name}: expected shape (B, T) or (T,), got {a.shape}")
    return a


class TokenTable:
    """The rows of ``show_batch``: ``rows`` (dicts), ``warnings`` (strings), ``kind`` ("causal lm", "token
    classification", "sequence classification" or "unlabelled"); ``column(name)`` gives one field as (B, T)."""

    FIELDS = ("example", "position", "text", "id", "attention", "position_id", "segment", "label", "reason",
              "eos", "boundary", "reads")

    def __init__(self, rows, shape, warnings_, kind, sequence_labels=None):
        self.rows, self.shape, self.warnings, self.kind = rows, shape, warnings_, kind
        self.sequence_labels = sequence_labels

    def column(self, name) -> np.ndarray:
        """Field ``name`` of every token, (B, T) (object dtype for text)."""
        if name not in self.FIELDS:
            raise KeyError(f"no column {name!r}; the columns are {self.FIELDS}")
        values = [r[name] for r in self.rows]
        return np.array(values, dtype=object if name == "text" else None).reshape(self.shape)  # (B, T)

    def status(self, row) -> str:
        """trained (a label the loss uses), padding, or masked (−100 on a real token)."""
        if row["attention"] == 0:
            return "padding"
        return "trained" if row["label"] not in (None, IGNORE_INDEX) else "masked"

    def _cells(self, r):
        label = "" if r["label"] is None else str(r["label"])
        if r["label"] == IGNORE_INDEX:
            label = f"-100 ({r['reason']})"
        flags = " ".join(f for f, on in (("EOS", r["eos"]), ("|boundary", r["boundary"]),
                                         ("<- classifier reads", r["reads"])) if on)
        pid = "" if r["position_id"] is None else str(r["position_id"])
        return [str(r["position"]), repr(r["text"]), str(r["id"]), str(r["attention"]), pid, label, flags]

    HEAD = ["t", "text", "id", "mask", "pos id", "label", ""]

    def _example_title(self, b):
        packed = 1 + sum(1 for r in self.rows if r["example"] == b and r["boundary"])
        title = f"row {b} ({packed} packed examples)" if packed > 1 else f"example {b}"
        if self.sequence_labels is not None:
            title += f" (label {self.sequence_labels[b]})"
        return title

    def _shown(self):
        """The rows to print: a run of more than 3 padding tokens is shown as its first and a count."""
        out, run = [], []
        for r in self.rows + [None]:
            if r is not None and r["attention"] == 0 and (not run or run[-1]["example"] == r["example"]):
                run.append(r)
                continue
            out += run if len(run) <= 3 else [run[0], f"… {len(run) - 1} more padding tokens (t {run[1]['position']}"
                                                       f"–{run[-1]['position']})"]
            run = []
            if r is not None and r["attention"] == 0:
                run.append(r)
            elif r is not None:
                out.append(r)
        return out

    def __str__(self):
        shown = self._shown()
        cells = [self._cells(r) for r in shown if isinstance(r, dict)]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(self.HEAD)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines, current = [], None
        for r in shown:
            if isinstance(r, str):
                lines.append(r)
                continue
            if r["example"] != current:
                current = r["example"]
                lines += [self._example_title(current), fmt.format(*self.HEAD).rstrip()]
            lines.append(fmt.format(*self._cells(r)).rstrip())
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        """An HTML table for notebooks: trained tokens green, masked yellow, padding grey."""
        out = ['<table style="font-family:monospace;font-size:12px">']
        current = None
        for r in self._shown():
            if isinstance(r, str):
                out.append(f'<tr><td colspan="7" style="color:#888">{html.escape(r)}</td></tr>')
                continue
            if r["example"] != current:
                current = r["example"]
                out.append(f'<tr><th colspan="7" style="text-align:left">{html.escape(self._example_title(current))}'
                           "</th></tr><tr>" + "".join(f"<th>{h}</th>" for h in self.HEAD) + "</tr>")
            style = f"background:{COLOURS[self.status(r)]}"
            if r["reads"]:
                style += ";font-weight:bold;outline:2px solid #c00"
            if r["boundary"]:
                style += ";border-top:2px solid #00c"
            out.append(f'<tr style="{style}">' + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(r)) + "</tr>")
        out.append("</table>")
        out += [f'<p style="color:#c00">warning: {html.escape(w)}</p>' for w in self.warnings]
        return "".join(out)


def _real_tokens(input_ids, attention_mask, pad_token_id):
    """(B, T) bool: not padding. From the mask (a 3-D (B, T, T) mask: token t is real when it may attend to
    itself), else the runs of ``pad_token_id`` at either end of a row, else every token."""
    b, t = input_ids.shape
    if attention_mask is not None:
        m = _host(attention_mask)
        if m.ndim == 3:
            return m[:, np.arange(t), np.arange(t)] != 0  # (B, T): the diagonal
        return _as_rows("attention_mask", m, b) != 0
    if pad_token_id is None:
        return np.ones((b, t), dtype=bool)
    is_pad = input_ids == pad_token_id
    from_right = np.cumprod(is_pad[:, ::-1], axis=1)[:, ::-1].astype(bool)  # (B, T): in the trailing pad run
    from_left = np.cumprod(is_pad, axis=1).astype(bool)  # (B, T): in the leading pad run
    return ~(from_right | from_left)


def _segments(real, position_ids, attention_mask):
    """(B, T) example number within each row (1, 2, … for packed rows; 0 on padding) and (B, T) bool boundaries.

    A new example starts where the position id falls back to 0, or where a 3-D mask forbids attending to the
    token just before (both real).
    """
    b, t = real.shape
    starts = np.zeros((b, t), dtype=bool)
    if position_ids is not None:
        starts[:, 1:] |= position_ids[:, 1:] == 0
    m = None if attention_mask is None else _host(attention_mask)
    if m is not None and m.ndim == 3:
        before = m[:, np.arange(1, t), np.arange(t - 1)] == 0  # (B, T-1): t cannot see t−1
        starts[:, 1:] |= before & real[:, 1:] & real[:, :-1]
    starts &= real
    segment = np.where(real, 1 + np.cumsum(starts, axis=1), 0)  # (B, T)
    return segment, starts


def show_batch(batch, tokenizer, classifier_reads=None) -> TokenTable:
    """The token view of ``batch`` (a dict: ``input_ids``, and any of ``attention_mask`` (B, T) or (B, T, T),
    ``position_ids``, ``labels`` (B, T) per token or (B,) per sequence, ``word_ids``).

    ``classifier_reads``: None shows where a sequence classifier reads only when the labels are per
    sequence — position 0 when every row starts with [CLS] (BERT's pooler reads it), else the last real
    token, as a decoder's head; ``"last"`` (or True) always shows ``minift.models.heads.last_token_index``
    (the last real token); ``"first"`` position 0 (BERT's pooler reads [CLS]); a sequence of B positions is what your model reads,
    checked for pads (negative positions count from the end, as ``[:, -1]`` does).
    """
    from ..models.heads import last_token_index

    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ValueError(f"show_batch expects a dict with 'input_ids' (a collator's output), got "
                         f"{sorted(batch) if isinstance(batch, dict) else type(batch).__name__}")
    ids = _as_rows("input_ids", batch["input_ids"])
    b, t = ids.shape
    pad_id = getattr(tokenizer, "pad_token_id", None)
    eos_id = getattr(tokenizer, "eos_token_id", None)
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    mask = batch.get("attention_mask")
    if mask is not None and _host(mask).shape not in ((b, t), (b, t, t), (t,)):
        raise ValueError(f"attention_mask: expected ({b}, {t}) or ({b}, {t}, {t}), got {_host(mask).shape}")
    real = _real_tokens(ids, mask, pad_id)
    position_ids = None if batch.get("position_ids") is None else _as_rows("position_ids", batch["position_ids"], b)
    segment, boundary = _segments(real, position_ids, mask)

    labels, sequence_labels, kind = None, None, "unlabelled"
    if batch.get("labels") is not None:
        raw = _host(batch["labels"])
        if raw.ndim == 1 and _host(batch["input_ids"]).ndim == 2:  # (B,) beside (B, T) ids: one label per row
            if raw.shape[0] != b:
                raise ValueError(f"labels: expected one per row ({b},) or one per token {ids.shape}, got {raw.shape}")
            sequence_labels, kind = raw.tolist(), "sequence classification"
        else:
            labels = _as_rows("labels", raw, b)
            if labels.shape != ids.shape:
                raise ValueError(f"labels: expected one per token, shape {ids.shape}, got {labels.shape}")
            trained = labels != IGNORE_INDEX
            kind = "causal lm" if trained.any() and np.array_equal(labels[trained], ids[trained]) else \
                "token classification"

    reads = None
    if classifier_reads is None and kind == "sequence classification":
        firsts = tokenizer.convert_ids_to_tokens(ids[:, 0].tolist()) if hasattr(tokenizer, "convert_ids_to_tokens") else []
        classifier_reads = "first" if firsts and all(p == "[CLS]" for p in firsts) else "last"
    if classifier_reads in (True, "last"):
        mask2d = real.astype(np.int64)  # (B, T): last_token_index reads a 2-D mask
        # -> (B,): each row's last real token
        reads = np.asarray(_host(last_token_index(mask2d, ids, pad_id))).reshape(b)
    elif classifier_reads == "first":
        reads = np.zeros(b, dtype=np.int64)
    elif classifier_reads is not None and classifier_reads is not False:
        reads = np.asarray(_host(classifier_reads)).reshape(-1)  # any shape -> (n,), checked to be (B,) below
        if reads.shape != (b,) or np.any(reads >= t) or np.any(reads < -t):
            raise ValueError(f"classifier_reads: expected {b} positions in [-{t}, {t}), got {reads.tolist()}")
        reads = reads % t  # [:, -1] reads position T − 1

    pieces = tokenizer.convert_ids_to_tokens(ids.reshape(-1).tolist()) if hasattr(  # (B, T) -> (B·T,)
        tokenizer, "convert_ids_to_tokens") else [None] * ids.size
    word_ids = batch.get("word_ids")
    rows, found = [], []
    for i in range(b):
        for s in range(1, segment[i].max() + 1 if real[i].any() else 1):
            here = np.flatnonzero(segment[i] == s)  # this example's positions
            if labels is not None:
                trained = here[labels[i, here] != IGNORE_INDEX]
                where = f"example {i}" + (f", packed example {s}" if segment[i].max() > 1 else "")
                if trained.size == 0:
                    found.append(f"{where} has no trained token (every label is -100): it adds nothing to the loss")
                elif kind == "causal lm" and eos_id is not None:
                    eos = here[ids[i, here] == eos_id]
                    if eos.size and labels[i, eos[-1]] == IGNORE_INDEX and eos[-1] > trained[0]:
                        found.append(f"{where}: its EOS (position {eos[-1]}) has label -100, so the model never "
                                     "learns to stop (pad = EOS with every pad masked masks the EOS too)")
        if reads is not None and not real[i, reads[i]]:
            found.append(f"example {i}: the classifier reads position {reads[i]}, a pad (attention mask 0); "
                         f"the last real token is at {int(np.flatnonzero(real[i]).max()) if real[i].any() else 0}")
        for p in range(t):
            token = int(ids[i, p])
            label = None if labels is None else int(labels[i, p])
            reason = None
            if label == IGNORE_INDEX:
                first_trained = np.flatnonzero((segment[i] == segment[i, p]) & (labels[i] != IGNORE_INDEX))
                piece = pieces[i * t + p] or ""
                is_continuation = (piece.startswith("##") if word_ids is None else
                                   p > 0 and word_ids[i][p] is not None and word_ids[i][p] == word_ids[i][p - 1])
                reason = ("padding" if not real[i, p] else "boundary" if boundary[i, p] else
                          "special" if token in special and kind != "causal lm" else
                          "continuation" if is_continuation else
                          "prompt" if kind == "causal lm" and first_trained.size and p < first_trained[0] else "masked")
            rows.append({"example": i, "position": p, "text": "" if tokenizer is None else tokenizer.decode([token]),
                         "id": token, "attention": int(real[i, p]),
                         "position_id": None if position_ids is None else int(position_ids[i, p]),
                         "segment": int(segment[i, p]), "label": label, "reason": reason,
                         "eos": bool(real[i, p] and token == eos_id), "boundary": bool(boundary[i, p]),
                         "reads": bool(reads is not None and reads[i] == p)})
    for w in found:
        warnings.warn(w, TokenViewWarning, stacklevel=2)
    return TokenTable(rows, (b, t), found, kind, sequence_labels)
