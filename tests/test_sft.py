"""SFT data: loss on completion tokens only (checked token by token, with the real SmolLM2 tokenizer's chat
template), packing equal to training the examples one by one (logits and loss, for learned positions and for
RoPE), the 3-D attention mask, instruction data from the real data sets, and clear errors."""
import numpy as np
import pytest

import minift as mf
from minift.sft import DataCollatorForSFT, instruction_dataset, pack_examples, sft_example


@pytest.fixture(autouse=True)
def float64():
    mf.set_default_dtype("float64")
    yield
    mf.set_default_dtype("float32")


@pytest.fixture(scope="module")
def smol_tokenizer():
    return mf.tokenization.from_pretrained("smollm2")


def test_chat_example_masks_everything_but_the_answer_and_its_end_of_turn(smol_tokenizer):
    tok = smol_tokenizer
    ex = sft_example(tok, "Is this review positive or negative?\n\nA delight.", "positive")
    trained = [t for t, y in zip(ex["input_ids"], ex["labels"]) if y != -100]
    assert tok.decode(trained) == "positive<|im_end|>\n"  # the answer and the turn's end, nothing of the prompt
    first = ex["labels"].index(trained[0])
    assert tok.decode(ex["input_ids"][:first]).endswith("<|im_start|>assistant\n")
    assert all(y == -100 for y in ex["labels"][:first])
    assert [y for y in ex["labels"] if y != -100] == ex["input_ids"][first:]


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
