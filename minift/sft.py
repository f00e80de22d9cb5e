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

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import backend
from .train.trainer import WrapsTrainer

MAX_LENGTH = 256  # minift align sft's tokens per example when none is asked for (fewer if the context is shorter)

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
    prompt tokens then completion tokens and the end-of-sequence token. An empty prompt becomes the
    tokenizer's beginning-of-sequence token (tiny-gpt's is its ``<|endoftext|>``, which also starts each
    document in pretraining; SmolLM2-Instruct's is ``<|im_start|>``, its turn opener): nothing predicts
    position 0, so without it the completion's first token would never be trained or scored (DPO's
    log π(y) would leave it out).
    Checks that the tokens of the prompt part are a prefix of the tokens of the whole (a template or a
    tokenizer that merges across the boundary would otherwise shift the mask). ``max_length`` cuts the
    end of the completion.

    With P = the number of prompt tokens (markup included) and ids the whole sequence, the labels are
    UNshifted, the model shifts them: labels_t = −100 for t < P and labels_t = ids_t for t ≥ P, so the
    completion's last token — EOS or the end-of-turn marker — is trained even when pad = EOS (trl#734).
    """
    stands_for = ""  # what the prompt's tokens are, when that is not plain
    if chat:
        prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                   tokenize=True)
        full_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                                  {"role": "assistant", "content": completion}], tokenize=True)
    else:
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        full_ids = tokenizer.encode(prompt + completion, add_special_tokens=False) + [tokenizer.eos_token_id]
        bos = getattr(tokenizer, "bos_token_id", None)
        if not prompt_ids and bos is not None:  # the completion's first token needs a position before it
            prompt_ids, full_ids = [bos], [bos] + full_ids
            stands_for = ": the BOS token an empty prompt becomes"
    prompt_ids, full_ids = list(prompt_ids), list(full_ids)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the prompt's tokens are not a prefix of the prompt + completion's tokens (the tokenizer "
                         f"merges across the boundary): prompt ends {prompt_ids[-3:]}, the whole has "
                         f"{full_ids[len(prompt_ids) - 3:len(prompt_ids)]} there. A BPE tokenizer joins a space "
                         "to the word after it: end the prompt without one and start the completion with it "
                         "(prompt 'The movie was', completion ' great'), or use chat=True")
    if len(full_ids) == len(prompt_ids):
        raise ValueError("the completion adds no token: nothing to learn")
    # TASK sft.completion_labels: SFT labels: −100 on the prompt, the completion and its EOS trained
    # BEGIN SOLUTION
    n_prompt = len(prompt_ids)  # the prompt and the template's markup up to the assistant's header
    labels = [-100] * n_prompt + full_ids[n_prompt:]  # unshifted (the model shifts); the EOS / end of turn is trained
    # END SOLUTION
    if max_length is not None:
        if max_length <= len(prompt_ids):
            raise ValueError(f"max_length={max_length} leaves no completion token (the prompt has {len(prompt_ids)}"
                             f"{stands_for})")
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

    Padding is masked by position (past each row's own length), never by id: with pad = EOS (SmolLM2, GPT-2),
    masking every pad id would also mask the EOS each completion ends with, and the model would never learn
    to stop (trl#734). A row with no trained token (every label −100: a template that matched nothing, a
    completion cut away) is an error, not a row that silently trains nothing (trl#598).

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
            if all(y == -100 for y in r["labels"][1:]):  # token t is predicted from t − 1: position 0 never is
                raise ValueError(f"row {i} of the batch has no trained token (its {len(r['labels'])} labels are -100, "
                                 "but for position 0, which a causal LM never predicts): its completion is empty, was "
                                 "cut away, or a response template never matched; build rows with fit_example")
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


class SFTTrainer(WrapsTrainer):
    """TRL's ``SFTTrainer`` in minift's pieces: rows ``{"prompt", "completion"}`` → ``fit_example`` (the chat
    template when the tokenizer has one; the loss on the completion only), ``pack_examples`` if ``packing``,
    ``DataCollatorForSFT``, and the ``Trainer``.

        trainer = SFTTrainer(model, args=TrainingArguments(output_dir="runs/sft", learning_rate=2e-4, max_steps=100),
                             train_dataset=instruction_dataset("sentiment"), processing_class=tokenizer)
        trainer.train()

    ``max_length``: tokens per example (default: the model's context); the prompt's middle is cut to fit.
    ``.train_rows`` holds the tokenized (and packed) rows, ``.trainer`` the ``Trainer``.
    """

    def __init__(self, model, args=None, train_dataset=None, eval_dataset=None, processing_class=None, max_length=None,
                 packing=False, chat=None, callbacks=None):
        from dataclasses import replace

        from .train import Trainer

        if processing_class is None:
            raise ValueError("processing_class (the tokenizer) is required: it turns the rows' text into tokens")
        if args is None:
            raise ValueError("args is required: TrainingArguments(output_dir=…, learning_rate=…, max_steps=…)")
        if not train_dataset:
            raise ValueError("train_dataset is empty: give rows {'prompt': …, 'completion': …}")
        chat = bool(getattr(processing_class, "chat_template", None)) if chat is None else chat
        context = model.config.max_position_embeddings
        max_length = context if max_length is None else min(max_length, context)

        def rows(data):
            out = []
            for k, r in enumerate(data):
                if not {"prompt", "completion"} <= set(r):
                    raise KeyError(f"row {k} needs 'prompt' and 'completion' (it has {sorted(r)})")
                out.append(fit_example(processing_class, r["prompt"], r["completion"], max_length, chat))
            return out

        self._rows = rows  # the same fitting for a dataset given to evaluate
        self.train_rows = rows(train_dataset)
        if packing:
            self.train_rows = pack_examples(self.train_rows, max_length)
        self.collator = DataCollatorForSFT(processing_class)
        self.trainer = Trainer(model, replace(args, remove_unused_columns=False), train_dataset=self.train_rows,
                               eval_dataset=rows(eval_dataset) if eval_dataset else None, data_collator=self.collator,
                               callbacks=callbacks)

    def _eval_rows(self, dataset):
        """Rows {"prompt", "completion"} fitted as the training rows are: ``evaluate`` scores the completions."""
        return self._rows(dataset)


# ----------------------------------------------------------------------------- the run: minift align sft
DATASETS = ("sentiment", "ner", "qa")
METHODS = ("lora", "full", "qlora")
PLAIN_ANSWER_CUE = "\nAnswer:"  # a model without a chat template reads "<prompt>\nAnswer:" and continues " <answer>"


@dataclass
class SFTConfig:
    """The options of ``minift align sft``, with TRL's ``SFTConfig`` names where it has one (``max_length``,
    ``packing``, ``learning_rate``, ``per_device_train_batch_size`` …)."""
    model: str = "smollm2"
    dataset: str = "sentiment"
    method: str = "lora"
    max_steps: int = 100
    per_device_train_batch_size: int = 8
    learning_rate: float | None = None  # default: 2e-4 with LoRA / QLoRA, 2e-5 for full fine-tuning
    max_length: int | None = None  # an example's tokens (default MAX_LENGTH, or the model's context if shorter); the
    # prompt's text is cut to fit, never the answer; beyond a model's learned positions it is refused
    packing: bool = False
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    target_modules: str | list = "q_proj,k_proj,v_proj,o_proj"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    logging_steps: int = 10
    train_limit: int | None = 2000
    eval_limit: int | None = 200  # held-out instructions (the test split) evaluated before and after
    max_new_tokens: int = 8  # greedy answer length for the exact-answer accuracy (sentiment)
    seed: int = 0
    out: str | None = None  # default: runs/sft-<dataset>-<method>

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; minift align sft knows {list(DATASETS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; minift align sft knows {list(METHODS)}")
        for name in ("max_steps", "per_device_train_batch_size", "max_length", "lora_r", "logging_steps",
                     "max_new_tokens"):
            value = getattr(self, name)
            if name == "max_length" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self.learning_rate is None:
            self.learning_rate = 2e-5 if self.method == "full" else 2e-4
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.out is None:
            self.out = str(Path("runs") / f"sft-{self.dataset}-{self.method}")


def fit_example(tokenizer, prompt, completion, max_length, chat):
    """``sft_example`` for prompt → completion, cut to fit ``max_length`` tokens by dropping words from the
    MIDDLE of the prompt's text (its first and last words stay, with " … " between them): an instruction at
    its start (sentiment, NER) and a question at its end (QA) both survive. The number of words kept is the
    largest that fits (bisection). The completion is kept whole: cutting the answer would teach the model to
    stop early. Without a chat template the prompt is followed by ``PLAIN_ANSWER_CUE`` and the completion
    starts with a space (BPE joins a space to the word after it)."""
    cue = "" if chat else PLAIN_ANSWER_CUE
    answer = completion if chat else " " + completion

    def build(text):
        return sft_example(tokenizer, text + cue, answer, chat=chat)

    example = build(prompt)
    if len(example["input_ids"]) <= max_length:
        return example
    words = prompt.split(" ")

    def kept(k):  # the first ⌈k/2⌉ and the last ⌊k/2⌋ words
        return " ".join(words[: k - k // 2] + ["…"] + (words[len(words) - k // 2:] if k // 2 else []))

    lo, hi = 0, len(words) - 1  # the longest k with build(kept(k)) in max_length tokens: k in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(kept(mid))["input_ids"]) <= max_length:
            lo = mid
        else:
            hi = mid - 1
    example = build(kept(lo))
    if len(example["input_ids"]) > max_length:
        raise ValueError(f"max_length={max_length} cannot hold the template and the answer "
                         f"({len(example['input_ids'])} tokens with none of the prompt's words)")
    return example


def completion_loss(model, examples, collator, batch_size=8):
    """Mean −log p(completion token | what precedes it) over every completion token of ``examples``: each
    batch's mean loss weighted by its number of targets n_b, Σ_b n_b·loss_b / Σ_b n_b (not the mean of the
    batch means)."""
    from .autograd.grad_mode import no_grad

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collator(examples[start:start + batch_size])
            n = int((batch["labels"][:, 1:] != -100).sum())  # host-side count: the targets after the shift
            if n:
                total += model(**batch).loss.item() * n
                count += n
    model.train(was_training)
    return total / max(count, 1)


def answer_accuracy(model, tokenizer, pairs, chat, max_new_tokens=8):
    """Exact-answer accuracy by greedy generation: the fraction of ``pairs`` whose generated answer,
    stripped of spaces and cut at the end of turn, equals the completion (e.g. "positive"); also the fraction
    whose answer merely contains the right label and not the other ("mentions"). Returns (exact, mentions,
    a few samples)."""
    from . import backend
    from .models.generation import generate

    exact = mentions = 0
    samples = []
    for pair in pairs:
        prompt = pair["prompt"] if chat else pair["prompt"] + PLAIN_ANSWER_CUE
        if chat:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                tokenize=True)
        else:
            ids = tokenizer.encode(prompt, add_special_tokens=False)
        room = model.config.max_position_embeddings - max_new_tokens
        ids = np.asarray(list(ids)[-room:], dtype=np.int64)[None, :]  # (1, T): the prompt's end if too long
        out = backend.to_numpy(generate(model, ids, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id))
        answer = tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True).strip().lower()
        want = pair["completion"].strip().lower()
        exact += answer == want
        others = [w for w in ("positive", "negative") if w != want]
        mentions += want in answer and not any(o in answer for o in others)
        if len(samples) < 5:
            samples.append({"expected": want, "generated": answer})
    return exact / len(pairs), mentions / len(pairs), samples


def load_policy(model_name, method, seed=0):
    """The causal LM of ``model_name`` (float, or its Linear weights in 4-bit blocks for ``qlora``: a GGUF
    model's own blocks, any other model quantized to NF4). Returns (model, tokenizer, chat)."""
    from . import backend, tokenization
    from .models.auto import AutoModelForCausalLM

    backend.seed(seed)
    gguf = method == "qlora" and (model_name == "smollm2" or str(model_name).endswith(".gguf"))
    model = AutoModelForCausalLM.from_pretrained(model_name, keep_quantized=gguf)
    if method == "qlora" and not gguf:
        from .models import quantize_model

        quantize_model(model, "NF4")
    tokenizer = tokenization.from_pretrained(model_name)
    chat = bool(getattr(tokenizer, "chat_template", None))
    return model, tokenizer, chat


def run_sft(cfg: SFTConfig, quiet=False):
    """Supervised fine-tuning of ``cfg.model`` on ``cfg.dataset``'s instructions; writes into ``cfg.out``
    ``log.jsonl``, ``loss.png`` (the Trainer's), ``results.json`` and the adapter (PEFT's format) or model.

    The loss is on the completion tokens only (``sft_example``); ``packing`` puts examples end to end
    (``pack_examples``). Before and after: the completion loss on the held-out instructions (the test
    split) and, for sentiment, the exact-answer accuracy by greedy generation.
    """
    from .nn.quantized import quantized_weight_count
    from .train import Trainer, TrainingArguments
    from .train.trainer import check_output_dir

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out = Path(cfg.out)
    check_output_dir(out)  # before anything is loaded
    model, tokenizer, chat = load_policy(cfg.model, cfg.method, cfg.seed)
    from .finetune import check_max_length

    if cfg.max_length is not None:  # asked for: refused past learned positions, as minift finetune does
        check_max_length(model.config, cfg.max_length, cfg.model)
    max_length = min(cfg.max_length or MAX_LENGTH, model.config.max_position_embeddings)
    train_pairs = instruction_dataset(cfg.dataset, "train", limit=cfg.train_limit)
    eval_pairs = instruction_dataset(cfg.dataset, "test", limit=cfg.eval_limit)
    train = [fit_example(tokenizer, p["prompt"], p["completion"], max_length, chat) for p in train_pairs]
    held_out = [fit_example(tokenizer, p["prompt"], p["completion"], max_length, chat) for p in eval_pairs]
    if cfg.packing:
        train = pack_examples(train, max_length)
    collator = DataCollatorForSFT(tokenizer)
    total_parameters = model.num_parameters() + quantized_weight_count(model)
    if cfg.method in ("lora", "qlora"):
        from .peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    trainable = sum(int(p.data.size) for p in model.parameters() if p.requires_grad)

    def measure():
        m = {"completion_loss": completion_loss(model, held_out, collator)}
        if cfg.dataset == "sentiment":
            m["exact_accuracy"], m["mentions_accuracy"], m["samples"] = answer_accuracy(
                model, tokenizer, eval_pairs, chat, cfg.max_new_tokens)
        return m

    say(f"SFT of {cfg.model} on {cfg.dataset} ({cfg.method}, {'chat template' if chat else 'plain text'}"
        f"{', packed' if cfg.packing else ''}): {len(train_pairs):,} training examples in {len(train):,} rows, "
        f"{trainable:,} of {total_parameters:,} parameters trainable; measuring before training…")
    before = measure()
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
        logging_steps=min(cfg.logging_steps, cfg.max_steps), save_strategy="no", remove_unused_columns=False,
        seed=cfg.seed, disable_tqdm=quiet)
    trainer = Trainer(model, args, train_dataset=train, data_collator=collator)
    trainer.train()
    state = trainer.state
    after = measure()
    results = {"model": cfg.model, "dataset": cfg.dataset, "method": cfg.method, "chat_template": chat,
               "max_length": max_length,
               "before": before, "after": after, "train_seconds": round(state.train_seconds, 2),
               "train_steps": state.global_step, "train_rows": len(train), "held_out_examples": len(held_out),
               "trainable_parameters": trainable, "total_parameters": total_parameters,
               "machine": backend.machine_summary(), "args": asdict(cfg)}
    _save_model(model, cfg.method, tokenizer, out, say)
    _write_json(out / "results.json", results)
    say(f"held-out completion loss {before['completion_loss']:.4f} → {after['completion_loss']:.4f}"
        + (f"; exact-answer accuracy {before['exact_accuracy']:.3f} → {after['exact_accuracy']:.3f}"
           if "exact_accuracy" in after else ""))
    return results


def _save_model(model, method, tokenizer, out, say):
    """LoRA / QLoRA: the adapter in PEFT's format (``OUT/adapter``), except for GPT-2-family models, whose q, k
    and v are one ``c_attn`` matrix in Hugging Face (no PEFT file can name them): merged and saved whole
    instead (not possible on 4-bit weights). Full fine-tuning: the model, ``OUT/model``."""
    from .models import save_pretrained

    if method in ("lora", "qlora") and model.config.family != "gpt2":
        model.save_pretrained(out / "adapter")
    elif method == "qlora":
        say("(GPT-2's q, k, v are one c_attn matrix in Hugging Face and 4-bit weights take no merge: only "
            "results.json is saved)")
    else:
        if method == "lora":
            model = model.merge_and_unload()
        save_pretrained(model.eval(), out / "model", tokenizer=tokenizer)


def _write_json(path, data):
    """``data`` as JSON into ``path`` atomically (see ``write_text_atomically``)."""
    from .models.checkpoint import write_text_atomically

    write_text_atomically(path, json.dumps(data, indent=1))


def add_cli_arguments(parser):
    """The options of ``minift align sft MODEL``."""
    from .cli import dropout_probability, non_negative_float, non_negative_int, positive_float, positive_int, probability

    d = SFTConfig()
    parser.add_argument("model", help="smollm2 (chat template) or a checkpoint directory such as checkpoints/tiny-gpt")
    parser.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="the instructions: " + ", ".join(DATASETS))
    parser.add_argument("--method", choices=METHODS, default=d.method)
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    parser.add_argument("--per-device-train-batch-size", "--batch-size", dest="per_device_train_batch_size",
                        type=positive_int, default=d.per_device_train_batch_size)
    parser.add_argument("--learning-rate", type=positive_float, default=None,
                        help="default: 2e-4 with lora/qlora, 2e-5 with full")
    parser.add_argument("--max-length", type=positive_int, default=d.max_length,
                        help=f"tokens per example (default {MAX_LENGTH}, or the model's context if shorter; the prompt's text "
                             "is cut to fit)")
    parser.add_argument("--packing", action="store_true", help="put examples end to end in rows of max-length tokens")
    parser.add_argument("--lora-r", type=positive_int, default=d.lora_r)
    parser.add_argument("--lora-alpha", type=positive_float, default=d.lora_alpha)
    parser.add_argument("--lora-dropout", type=dropout_probability, default=d.lora_dropout)
    parser.add_argument("--target-modules", default=",".join(d.target_modules) if isinstance(d.target_modules, list)
                        else d.target_modules, help="comma-separated Linear names that get LoRA adapters")
    parser.add_argument("--warmup-ratio", type=probability, default=d.warmup_ratio)
    parser.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    parser.add_argument("--logging-steps", type=positive_int, default=d.logging_steps)
    parser.add_argument("--train-limit", type=positive_int, default=d.train_limit)
    parser.add_argument("--eval-limit", type=positive_int, default=d.eval_limit)
    parser.add_argument("--max-new-tokens", type=positive_int, default=d.max_new_tokens)
    parser.add_argument("--seed", type=non_negative_int, default=d.seed)
    parser.add_argument("--out", default=None, help="output directory (default: runs/sft-DATASET-METHOD)")


def run_from_args(args, quiet=False):
    """``minift align sft``: the parsed options → ``SFTConfig`` → ``run_sft``; returns its results."""
    from .cli import config_from_args

    return run_sft(config_from_args(SFTConfig, args), quiet=quiet)


__all__ = ["DATASETS", "DataCollatorForSFT", "METHODS", "SFTConfig", "SFTTrainer", "TEMPLATES", "add_cli_arguments",
           "answer_accuracy", "completion_loss", "fit_example", "instruction_dataset", "pack_examples", "run_from_args",
           "run_sft", "sft_example"]
