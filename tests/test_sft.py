"""SFT data: loss on completion tokens only (checked token by token, with the real SmolLM2 tokenizer's chat
template), packing equal to training the examples one by one (logits and loss, for learned positions and for
RoPE), the 3-D attention mask, instruction data from the real data sets, and clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift.sft import DataCollatorForSFT, fit_example, instruction_dataset, pack_examples, sft_example


@pytest.fixture(autouse=True)
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


@pytest.fixture(scope="module")
def smol_tokenizer():
    return mf.tokenization.from_pretrained("smollm2")


@pytest.mark.task("sft.completion_labels")
def test_chat_example_masks_everything_but_the_answer_and_its_end_of_turn(smol_tokenizer):
    tok = smol_tokenizer
    ex = sft_example(tok, "Is this review positive or negative?\n\nA delight.", "positive")
    trained = [t for t, y in zip(ex["input_ids"], ex["labels"]) if y != -100]
    assert tok.decode(trained) == "positive<|im_end|>\n"  # the answer and the turn's end, nothing of the prompt
    first = ex["labels"].index(trained[0])
    assert tok.decode(ex["input_ids"][:first]).endswith("<|im_start|>assistant\n")
    assert all(y == -100 for y in ex["labels"][:first])
    assert [y for y in ex["labels"] if y != -100] == ex["input_ids"][first:]


@pytest.mark.task("sft.completion_labels")
def test_plain_example_ends_with_eos_and_cuts_at_max_length(smol_tokenizer):
    tok = smol_tokenizer
    ex = sft_example(tok, "The movie was", " great fun", chat=False)
    assert ex["input_ids"][-1] == tok.eos_token_id and ex["labels"][-1] == tok.eos_token_id
    n_prompt = len(tok.encode("The movie was", add_special_tokens=False))
    assert tok.decode([t for t, y in zip(ex["input_ids"], ex["labels"]) if y != -100][:-1]) == " great fun"
    cut = sft_example(tok, "The movie was", " great fun", chat=False, max_length=n_prompt + 1)
    assert len(cut["input_ids"]) == n_prompt + 1 and sum(y != -100 for y in cut["labels"]) == 1
    with pytest.raises(ValueError, match="leaves no completion token"):
        sft_example(tok, "The movie was", " great fun", chat=False, max_length=n_prompt)
    with pytest.raises(ValueError, match="joins a space"):
        sft_example(tok, "The movie was ", "great fun", chat=False)  # the trailing space belongs to "great"


def test_an_empty_plain_prompt_becomes_bos_so_the_first_completion_token_is_trained_and_scored(tiny_gpt_tokenizer):
    """Nothing predicts position 0: with an empty prompt (DPO's default) the completion would start there, and its
    first word would be neither trained nor part of log π(y). tiny-gpt's BOS, <|endoftext|>, goes first."""
    from minift.rlhf import DataCollatorForPreference

    tok = tiny_gpt_tokenizer
    assert tok.convert_ids_to_tokens([tok.bos_token_id]) == ["<|endoftext|>"]
    words = tok.encode(" a fine film", add_special_tokens=False)
    ex = sft_example(tok, "", " a fine film", chat=False)
    assert ex["input_ids"] == [tok.bos_token_id] + words + [tok.eos_token_id]
    assert ex["labels"] == [-100] + words + [tok.eos_token_id]
    batch = DataCollatorForPreference(tok, chat=False)([{"prompt": "", "chosen": " a fine film", "rejected": " dull"}])
    scored = batch["completion_mask"][:, 1:].sum(1)  # the tokens sequence_logprobs adds up (t + 1 predicted at t)
    assert scored.tolist() == [len(words) + 1, len(tok.encode(" dull", add_special_tokens=False)) + 1]
    assert sft_example(tok, "Well,", " a fine film", chat=False)["input_ids"][0] != tok.bos_token_id  # a prompt: as is
    with pytest.raises(ValueError, match=r"max_length=1 leaves no completion token \(the prompt has 1: the BOS token"):
        sft_example(tok, "", " a fine film", chat=False, max_length=1)


def test_without_a_bos_token_a_completion_at_position_0_has_nothing_to_predict_it(tiny_gpt_tokenizer):
    """A tokenizer with no BOS: the empty prompt stays empty, and a row cut to one token has no trained token
    after position 0 — DPO's collator says so, with the row, the side and the option."""
    from minift.rlhf import DataCollatorForPreference

    class NoBos:  # tiny-gpt's tokenizer, without its BOS
        bos_token_id = None

        def __getattr__(self, name):
            return getattr(tiny_gpt_tokenizer, name)

    tok = NoBos()
    assert sft_example(tok, "", " fine", chat=False)["labels"][0] != -100  # position 0: trained by no one
    rows = [{"prompt": "", "chosen": " a fine film", "rejected": " dull"}]
    with pytest.raises(ValueError, match=r"preference row 0: within max_length = 1 tokens no token of its chosen "
                                         r"completion is left to predict.*--max-length"):
        DataCollatorForPreference(tok, max_length=1, chat=False)(rows)


def test_a_prompt_whose_tokens_merge_with_the_completion_is_refused(smol_tokenizer):
    with pytest.raises(ValueError, match="not a prefix"):
        sft_example(smol_tokenizer, "The movie was gre", "at", chat=False)  # "gre" + "at" tokenize as "great"


def tiny_lm(family):
    mf.seed(0)
    kw = dict(num_key_value_heads=1) if family == "llama" else {}
    cfg = mf.models.TransformerConfig(family=family, vocab_size=23, hidden_size=8, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=32, **kw)
    return mf.models.TransformerForCausalLM(cfg).eval()


class FakeTokenizer:
    pad_token_id = 0
    eos_token_id = 1


def examples(seed=0, lengths=(5, 3, 7, 4)):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ids = rng.integers(2, 23, n).tolist()
        labels = [-100] * (n // 2) + ids[n // 2:]  # a prompt, then the completion
        out.append({"input_ids": ids, "labels": labels})
    return out


def test_the_collator_masks_padding_by_position_so_an_eos_that_is_also_the_pad_is_trained():
    """pad = EOS (id 1 here): the short row's final EOS keeps its label, only the positions past it are −100;
    masking by id would have masked that EOS too (trl#734)."""
    class PadIsEos:
        pad_token_id = eos_token_id = 1

    short = {"input_ids": [5, 6, 7, 1], "labels": [-100, -100, 7, 1]}
    long = {"input_ids": [5, 6, 8, 9, 10, 1], "labels": [-100, -100, 8, 9, 10, 1]}
    batch = DataCollatorForSFT(PadIsEos())([short, long])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 1, 1], [5, 6, 8, 9, 10, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 1, -100, -100], [-100, -100, 8, 9, 10, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]


def test_a_row_with_no_trained_token_is_an_error_not_a_silent_skip():
    nothing = {"input_ids": [5, 6, 7], "labels": [-100, -100, -100]}
    good = {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}
    with pytest.raises(ValueError, match="row 1 of the batch has no trained token .its 3 labels are -100"):
        DataCollatorForSFT(FakeTokenizer())([good, nothing])
    first_only = {"input_ids": [5, 6, 7], "labels": [5, -100, -100]}  # position 0: predicted from nothing
    with pytest.raises(ValueError, match="row 0 of the batch has no trained token"):
        DataCollatorForSFT(FakeTokenizer())([first_only, good])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_packed_rows_give_each_example_the_logits_and_loss_it_has_alone(family):
    model = tiny_lm(family)
    exs = examples()
    rows = pack_examples(exs, max_length=12)
    assert [len(r["input_ids"]) for r in rows] == [8, 11]  # 5 + 3 | 7 + 4
    collate = DataCollatorForSFT(FakeTokenizer())
    packed = collate(rows)
    assert packed["attention_mask"].shape == (2, 11, 11)
    out = model(**packed)
    alone_batch = collate(exs)  # padded, one example a row
    alone = model(**alone_batch)
    for k, (r, start) in enumerate([(0, 0), (0, 5), (1, 0), (1, 7)]):
        n = len(exs[k]["input_ids"])
        np.testing.assert_allclose(out.logits.numpy()[r, start:start + n], alone.logits.numpy()[k, :n], atol=1e-10)
    # the same target tokens in both (each example's first label is −100 anyway: its prompt): the same mean loss
    assert out.loss.item() == pytest.approx(alone.loss.item(), rel=1e-10)


def test_packing_resets_positions_masks_each_first_label_and_refuses_long_examples():
    rows = pack_examples([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}], 8)
    assert rows == [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "position_ids": [0, 1, 2, 0, 1],
                     "sequence_ids": [1, 1, 1, 2, 2]}]
    mask = DataCollatorForSFT(FakeTokenizer())(rows)["attention_mask"][0]
    assert mask[3].tolist() == [False, False, False, True, True]  # the second example sees only itself
    with pytest.raises(ValueError, match="more than max_length"):
        pack_examples([{"input_ids": [1] * 9, "labels": [1] * 9}], 8)


def test_a_3d_attention_mask_of_the_wrong_shape_is_named():
    model = tiny_lm("gpt2")
    with pytest.raises(ValueError, match="3-D attention_mask"):
        model(np.ones((1, 4), dtype=np.int64), attention_mask=np.ones((1, 4, 3), dtype=bool))


def test_instruction_data_is_built_from_the_real_sets():
    sentiment = instruction_dataset("sentiment", "test", limit=5)
    assert len(sentiment) == 5 and all(p["completion"] in ("positive", "negative") for p in sentiment)
    ner = instruction_dataset("ner", "train", limit=40)
    assert any(p["completion"] != "none" and ": " in p["completion"] for p in ner)
    qa = instruction_dataset("qa", "train", limit=3)
    assert all(p["completion"] in p["prompt"] for p in qa)  # an extractive answer is in its context
    with pytest.raises(ValueError, match="instruction_dataset knows"):
        instruction_dataset("squad")


# ============================================================================ the labels, token by token
class CharTokenizer:
    """One id per character (no merges, so every boundary is known), pad = EOS = 3 as in many decoders (trl#734);
    a chat template ``<s>`` user … EOS ``<a>`` assistant … EOS with BOS = 1, the assistant header = 2."""
    pad_token_id = eos_token_id = 3

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        ids = []
        for m in messages:
            ids += [1] + self.encode(m["content"]) + [3] if m["role"] == "user" else [2] + self.encode(m["content"]) + [3]
        return ids + [2] if add_generation_prompt else ids


@pytest.mark.task("sft.completion_labels")
@pytest.mark.parametrize("chat", [True, False])
def test_labels_by_hand_on_a_tokenizer_whose_pad_is_its_eos(chat):
    tok = CharTokenizer()
    ex = sft_example(tok, "hi?", "yes", chat=chat)
    if chat:  # <s> h i ? EOS <a> | y e s EOS: the user's EOS is prompt (−100), the assistant's is trained
        assert ex["input_ids"] == [1, 104, 105, 63, 3, 2, 121, 101, 115, 3]
        assert ex["labels"] == [-100] * 6 + [121, 101, 115, 3]
    else:  # h i ? | y e s EOS
        assert ex["input_ids"] == [104, 105, 63, 121, 101, 115, 3]
        assert ex["labels"] == [-100] * 3 + [121, 101, 115, 3]


@pytest.mark.task("sft.completion_labels")
@settings(max_examples=40, deadline=None)
@given(prompt=st.text("abcdefgh?", min_size=1, max_size=12), completion=st.text("xyz", min_size=1, max_size=6),
       chat=st.booleans())
def test_labels_are_the_tokens_themselves_on_the_completion_and_minus_100_before_it(prompt, completion, chat):
    tok = CharTokenizer()
    ex = sft_example(tok, prompt, completion, chat=chat)
    ids, labels = ex["input_ids"], ex["labels"]
    assert len(labels) == len(ids)  # unshifted: the model shifts
    trained = [i for i, y in enumerate(labels) if y != -100]
    n = len(completion) + 1  # the completion's characters and its EOS
    assert trained == list(range(len(ids) - n, len(ids)))  # one block, at the end
    assert [ids[i] for i in trained] == [ord(c) for c in completion] + [3] == [labels[i] for i in trained]


# ============================================================================ fitting an example, the run
@pytest.fixture(scope="module")
def tiny_gpt_tokenizer():
    return mf.tokenization.from_pretrained(str(TINY_GPT))


TINY_GPT = __import__("pathlib").Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"


def test_fit_example_cuts_the_middle_of_the_prompt_and_keeps_the_answer_whole(tiny_gpt_tokenizer):
    tok = tiny_gpt_tokenizer
    prompt = "Say yes or no.\n\n" + " ".join(["word"] * 200) + " Question: is it?"
    ex = fit_example(tok, prompt, "yes", max_length=40, chat=False)
    assert len(ex["input_ids"]) <= 40
    text = tok.decode(ex["input_ids"])
    assert text.startswith("Say yes or no.") and "…" in text and "Question: is it?\nAnswer: yes" in text
    assert tok.decode([y for y in ex["labels"] if y != -100]) == " yes<|endoftext|>"
    short = fit_example(tok, "Is it good?", "yes", max_length=40, chat=False)  # fits: nothing cut
    assert tok.decode(short["input_ids"]) == "Is it good?\nAnswer: yes<|endoftext|>"
    longer = fit_example(tok, prompt, "yes", max_length=41, chat=False)  # the most words that fit, no fewer
    assert len(ex["input_ids"]) > 40 - 4 and len(longer["input_ids"]) >= len(ex["input_ids"])
    with pytest.raises(ValueError, match="cannot hold the template and the answer"):
        fit_example(tok, prompt, "yes " * 30, max_length=20, chat=False)


def sft_config(tmp_path, **kw):
    from minift.sft import SFTConfig

    options = dict(model=str(TINY_GPT), dataset="sentiment", method="lora", max_steps=20, per_device_train_batch_size=8,
                   learning_rate=1e-2, max_length=64, lora_r=4, train_limit=48, eval_limit=8, logging_steps=4,
                   out=str(tmp_path / "run"))
    options.update(kw)
    return SFTConfig(**options)


def test_the_sft_run_learns_the_answers_and_writes_its_results(tmp_path):
    import json

    from minift.sft import run_sft

    results = run_sft(sft_config(tmp_path), quiet=True)
    out = tmp_path / "run"
    assert json.loads((out / "results.json").read_text())["after"] == results["after"]
    assert results["machine"] == mf.backend.machine_summary()
    assert {"log.jsonl", "loss.png", "results.json", "model"} <= {p.name for p in out.iterdir()}  # gpt2: merged
    before, after = results["before"], results["after"]
    assert before["completion_loss"] > 3 and after["completion_loss"] < 0.5 * before["completion_loss"]
    assert before["exact_accuracy"] == 0.0  # tiny-gpt was pretrained on reviews: it continues them, it does not answer
    assert all(s["generated"] in ("positive", "negative") for s in after["samples"])  # it now answers with a label
    assert after["mentions_accuracy"] >= after["exact_accuracy"] > 0
    assert 0 < results["trainable_parameters"] < results["total_parameters"] and results["train_steps"] == 20


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, tiny_gpt_tokenizer):
    """A random llama-family causal LM with a 256-token context, saved with tiny-gpt's tokenizer."""
    from minift.models import save_pretrained

    mf.set_default_dtype("float32")
    mf.seed(0)
    cfg = mf.models.TransformerConfig(family="llama", vocab_size=tiny_gpt_tokenizer.vocab_size, hidden_size=16,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=256)
    path = tmp_path_factory.mktemp("tiny-llama")
    save_pretrained(mf.models.TransformerForCausalLM(cfg).eval(), path, tokenizer=tiny_gpt_tokenizer)
    return path


def test_packing_on_a_llama_puts_several_examples_in_a_row_and_saves_a_peft_adapter(tmp_path, tiny_llama_dir):
    import json

    from minift.sft import run_sft

    plain = run_sft(sft_config(tmp_path, model=str(tiny_llama_dir), out=str(tmp_path / "a"), max_steps=2,
                               dataset="ner", max_length=200), quiet=True)
    packed = run_sft(sft_config(tmp_path, model=str(tiny_llama_dir), out=str(tmp_path / "b"), max_steps=2,
                                dataset="ner", max_length=200, packing=True), quiet=True)
    assert plain["train_rows"] == 48 and packed["train_rows"] < 48 / 2 and packed["args"]["packing"]
    assert plain["before"] == packed["before"]  # the same model and held-out data before training
    assert "exact_accuracy" not in packed["after"]  # only sentiment has one exact answer
    config = json.loads((tmp_path / "b" / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and (tmp_path / "b" / "adapter" /
                                                                    "adapter_model.safetensors").exists()


def test_full_fine_tuning_trains_every_parameter(tmp_path):
    from minift.sft import run_sft

    r = run_sft(sft_config(tmp_path, method="full", max_steps=2, learning_rate=1e-4), quiet=True)
    assert r["trainable_parameters"] == r["total_parameters"]


def test_sft_options_and_output_dir_errors_are_clear(tmp_path):
    from minift.sft import run_sft

    with pytest.raises(ValueError, match="unknown dataset 'squad'"):
        sft_config(tmp_path, dataset="squad")
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        sft_config(tmp_path, method="dora")
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        sft_config(tmp_path, max_steps=0)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="as the output directory: .* is a file"):  # before anything loads
        run_sft(sft_config(tmp_path, out=str(tmp_path / "afile")), quiet=True)
    busy = tmp_path / "busy"  # an existing, non-empty folder is written into (check_output_dir's rule)
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    run_sft(sft_config(tmp_path, out=str(busy), max_steps=1), quiet=True)
    assert (busy / "notes.txt").read_text() == "mine" and (busy / "results.json").exists()


def test_the_command_line_options_reach_the_config():
    from minift.cli import ArgumentParser, CommandLineError
    from minift.sft import SFTConfig, add_cli_arguments

    parser = ArgumentParser(prog="minift align sft")
    add_cli_arguments(parser)
    args = parser.parse_args(["smollm2", "--dataset", "qa", "--method", "qlora", "--batch-size", "4", "--packing"])
    names = {f for f in SFTConfig.__dataclass_fields__}
    cfg = SFTConfig(**{k: v for k, v in vars(args).items() if k in names})
    assert (cfg.model, cfg.dataset, cfg.method, cfg.per_device_train_batch_size, cfg.packing) == \
        ("smollm2", "qa", "qlora", 4, True)
    assert cfg.learning_rate == 2e-4 and cfg.out.endswith("sft-qa-qlora")
    with pytest.raises(CommandLineError, match="invalid choice"):
        parser.parse_args(["smollm2", "--dataset", "squad"])
    with pytest.raises(CommandLineError, match="expected an integer >= 1"):
        parser.parse_args(["smollm2", "--max-steps", "0"])


def test_the_sft_trainer_in_trls_form_trains_the_completions_packed_or_not(tmp_path):
    from minift.models.auto import AutoModelForCausalLM
    from minift.sft import SFTTrainer
    from minift.train import TrainingArguments

    tok = mf.tokenization.from_pretrained(TINY_GPT)
    rows = [{"prompt": f"Review {i}: a film", "completion": " positive" if i % 2 else " negative"} for i in range(16)]
    for packing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
        args = TrainingArguments(output_dir=str(tmp_path / f"sft-{packing}"), learning_rate=1e-3, max_steps=15,
                                 per_device_train_batch_size=4, logging_steps=5, save_strategy="no", disable_tqdm=True,
                                 plot=False)
        trainer = SFTTrainer(model, args=args, train_dataset=rows, processing_class=tok, max_length=32, packing=packing)
        assert (len(trainer.train_rows) < len(rows)) == packing and all(len(r["input_ids"]) <= 32 for r in trainer.train_rows)
        before = trainer.evaluate(rows[:16])  # rows of text, fitted as the training rows are
        trainer.train()
        logs = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        assert logs[-1] < logs[0] and trainer.evaluate(rows[:16])["eval_loss"] < before["eval_loss"]
    with pytest.raises(KeyError, match="needs 'prompt' and 'completion'"):
        SFTTrainer(model, args=args, train_dataset=[{"text": "x"}], processing_class=tok)
    with pytest.raises(ValueError, match="processing_class"):
        SFTTrainer(model, args=args, train_dataset=rows)
