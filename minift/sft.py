"""Supervised fine-tuning (SFT) data: prompt → completion examples that carry loss on the completion only,
instruction data built from the zoo's data sets with templates, and packing several examples into one row.

An SFT example is one token sequence, prompt then completion, whose labels are −100 on the prompt (and the
chat template's markup around it): the causal LM loss then averages −log p(completion token | everything
before it) over the completion's tokens alone, as TRL's SFTTrainer does with ``completion_only_loss``.

Packing puts several examples end to end in one row of ``max_length`` tokens instead of padding each:
no compute is spent on padding. To make a packed row equal the examples trained one by one, three things
reset at each boundary (TRL's ``padding_free`` / HF's ``DataCollatorWithFlattening``):
position ids start again at 0, attention stays inside each example (a block-diagonal causal mask), and the
first token of each example gets label −100 (the previous example's last token must not predict it).
"""
from __future__ import annotations

import numpy as np

TEMPLATES = {
    "sentiment": ("Is the sentiment of this movie review positive or negative?\n\n{text}", "{label}"),
    "ner": ("List the named entities in this tweet as 'type: words', one per line, or 'none'.\n\n{text}", "{entities}"),
    "qa": ("{context}\n\nQuestion: {question}\nAnswer with words from the text.", "{answer}"),
}


def sft_example(tokenizer, prompt, completion, max_length=None, chat=True):
    """``{"input_ids", "labels"}`` for one prompt → completion pair, labels −100 on the prompt.

    ``chat=True``: the pair as a user turn and an assistant turn of the tokenizer's chat template; the
    prompt part is the conversation up to the assistant's header (``add_generation_prompt=True``), so the
    model learns the answer and its end-of-turn marker, never the question. ``chat=False``: plain text,
    prompt tokens then completion tokens and the end-of-sequence token.
    Checks that the tokens of the prompt part are a prefix of the tokens of the whole (a template or a
    tokenizer that merges across the boundary would otherwise shift the mask). ``max_length`` cuts the
    end of the completion.
    """
    if chat:
        prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                   tokenize=True)
        full_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                                  {"role": "assistant", "content": completion}], tokenize=True)
    else:
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        full_ids = tokenizer.encode(prompt + completion, add_special_tokens=False) + [tokenizer.eos_token_id]
    prompt_ids, full_ids = list(prompt_ids), list(full_ids)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the prompt's tokens are not a prefix of the prompt + completion's tokens (the tokenizer "
                         f"merges across the boundary): prompt ends {prompt_ids[-3:]}, the whole has "
                         f"{full_ids[len(prompt_ids) - 3:len(prompt_ids)]} there. A BPE tokenizer joins a space "
                         "to the word after it: end the prompt without one and start the completion with it "
                         "(prompt 'The movie was', completion ' great'), or use chat=True")
    if len(full_ids) == len(prompt_ids):
        raise ValueError("the completion adds no token: nothing to learn")
    labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]
    if max_length is not None:
        if max_length <= len(prompt_ids):
            raise ValueError(f"max_length={max_length} leaves no completion token (the prompt has {len(prompt_ids)})")
        full_ids, labels = full_ids[:max_length], labels[:max_length]
    return {"input_ids": full_ids, "labels": labels}


def instruction_dataset(name, split="train", limit=None):
    """Prompt/completion pairs made from a zoo data set with ``TEMPLATES`` — instruction data DERIVED from
    labelled data, not written by people: sentiment → "positive"/"negative", NER → its entities, QA → the
    answer span. ``[{"prompt", "completion"}]``."""
    from .data import load_dataset
    from .data.tasks import SENTIMENT_SOURCES, entity_spans

    if name not in ("ner", "qa") and name not in SENTIMENT_SOURCES:
        raise ValueError(f"instruction_dataset knows {sorted(SENTIMENT_SOURCES) + ['ner', 'qa']}, got {name!r}")
    ds = load_dataset(name)[split]
    n = len(ds) if limit is None else min(limit, len(ds))
    pairs = []
    for i in range(n):
        row = ds[i]
        if name in SENTIMENT_SOURCES:
            prompt, answer = TEMPLATES["sentiment"]
            pairs.append({"prompt": prompt.format(text=row["text"]),
                          "completion": answer.format(label=["negative", "positive"][row["label"]])})
        elif name == "ner":
            names = ds.features["ner_tags"].feature.names
            spans = entity_spans([names[t] for t in row["ner_tags"]])
            entities = "\n".join(f"{kind}: {' '.join(row['tokens'][a:b])}" for kind, a, b in spans) or "none"
            prompt, answer = TEMPLATES["ner"]
            pairs.append({"prompt": prompt.format(text=" ".join(row["tokens"])), "completion": entities})
        else:
            prompt, answer = TEMPLATES["qa"]
            pairs.append({"prompt": prompt.format(context=row["context"], question=row["question"]),
                          "completion": answer.format(answer=row["answers"]["text"][0])})
    return pairs


def pack_examples(examples, max_length):
    """Pack ``{"input_ids", "labels"}`` examples end to end into rows of at most ``max_length`` tokens.

    Greedy, in order: an example goes into the current row if it fits, else starts a new one (an example
    longer than ``max_length`` is an error: cut it first). Each row gets ``position_ids`` that restart at 0
    and ``sequence_ids`` 1, 2, … telling the examples apart; each example's first label becomes −100.
    """
    rows, current = [], None
    for k, ex in enumerate(examples):
        n = len(ex["input_ids"])
        if n > max_length:
            raise ValueError(f"example {k} has {n} tokens, more than max_length={max_length}: cut it first")
        if current is None or len(current["input_ids"]) + n > max_length:
            current = {"input_ids": [], "labels": [], "position_ids": [], "sequence_ids": []}
            rows.append(current)
        seq = (current["sequence_ids"][-1] if current["sequence_ids"] else 0) + 1
        current["input_ids"] += list(ex["input_ids"])
        current["labels"] += [-100] + list(ex["labels"][1:])  # nothing before it in its own example predicts it
        current["position_ids"] += list(range(n))
        current["sequence_ids"] += [seq] * n
    return rows


class DataCollatorForSFT:
    """Pad SFT rows to the longest in the batch (right padding; labels −100 on padding).

    Rows from ``pack_examples`` (they carry ``sequence_ids``) get a 3-D ``attention_mask`` (B, T, T): query t
    may attend to key s only inside the same example, and their own ``position_ids``; other rows get the
    usual (B, T) mask.
    """

    def __init__(self, tokenizer):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, rows):
        width = max(len(r["input_ids"]) for r in rows)
        b = len(rows)
        ids = np.full((b, width), self.pad_id, dtype=np.int64)
        labels = np.full((b, width), -100, dtype=np.int64)
        packed = all("sequence_ids" in r for r in rows)
        seq = np.zeros((b, width), dtype=np.int64)
        positions = np.zeros((b, width), dtype=np.int64)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = r["input_ids"]
            labels[i, :n] = r["labels"]
            seq[i, :n] = r["sequence_ids"] if packed else 1
            positions[i, :n] = r["position_ids"] if packed else np.arange(n)
        batch = {"input_ids": ids, "labels": labels}
        if packed:  # (B, T, T): same example, and not padding
            batch["attention_mask"] = (seq[:, :, None] == seq[:, None, :]) & (seq[:, None, :] > 0)
            batch["position_ids"] = positions
        else:
            batch["attention_mask"] = (seq > 0).astype(np.int64)
        return batch


__all__ = ["DataCollatorForSFT", "TEMPLATES", "instruction_dataset", "pack_examples", "sft_example"]
