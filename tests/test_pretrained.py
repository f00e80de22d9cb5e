"""Real pretrained weights against independent references. Needs the zoo artifacts (fetched on first use)."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import minift as mf
from minift import zoo
from minift.models.generation import generate_text

from .reference import bert_forward, llama_gguf_forward

pytestmark = pytest.mark.zoo


@pytest.fixture(scope="module")
def minilm():
    return mf.models.from_pretrained("minilm"), mf.tokenization.from_pretrained("minilm")


@pytest.fixture(scope="module")
def smollm2():
    return mf.models.from_pretrained("smollm2"), mf.tokenization.from_pretrained("smollm2")


def test_minilm_tokenizer_matches_bert_wordpiece(minilm):
    _, tok = minilm
    assert tok.encode("Hello world!") == [101, 7592, 2088, 999, 102]
    batch = tok(["a sentence", "another, longer sentence"], padding=True)
    assert batch["input_ids"].shape == (2, 6) and batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]


def test_minilm_matches_an_independent_numpy_bert(minilm):
    model, tok = minilm
    d = zoo.path("minilm")
    cfg = json.loads((d / "config.json").read_text())
    tensors = load_file(str(d / "model.safetensors"))
    batch = tok(["The cat sat on the mat.", "Fine-tuning, explained from scratch!"], padding=True)
    out = model(**batch)
    ref_h, ref_p = bert_forward(tensors, cfg, batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].astype(bool)
    assert np.abs(out.last_hidden_state.numpy()[real] - ref_h[real]).max() < 1e-4
    assert np.abs(out.pooler_output.numpy() - ref_p).max() < 1e-4


def embed(model, tok, texts):
    """Mean pooling over real tokens, L2-normalised: the sentence-transformers recipe for this model."""
    b = tok(texts, padding=True)
    h = model(**b).last_hidden_state.numpy()
    m = b["attention_mask"][..., None]
    e = (h * m).sum(1) / m.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_minilm_ranks_paraphrases_above_unrelated_pairs(minilm):
    model, tok = minilm
    pairs = [("A man is playing a guitar.", "Someone plays the guitar."),
             ("The weather is lovely today.", "It is a beautiful sunny day."),
             ("How do I reset my password?", "I forgot my password, how can I change it?")]
    a = embed(model, tok, [p[0] for p in pairs])
    b = embed(model, tok, [p[1] for p in pairs])
    sim = a @ b.T  # (3, 3): paraphrases on the diagonal
    for i in range(3):
        assert sim[i, i] > np.delete(sim[i], i).max() + 0.2, sim


def test_smollm2_answers_paris(smollm2):
    lm, tok = smollm2
    answer = generate_text(lm, tok, "What is the capital of France?", max_new_tokens=16, chat=True)
    assert "Paris" in answer, answer


def test_smollm2_logits_match_an_independent_dequantize_and_forward(smollm2):
    import gguf

    lm, tok = smollm2
    ids = tok.encode("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)
    ours = lm(np.array([ids])).logits.numpy()[0]
    ref = llama_gguf_forward(gguf.GGUFReader(str(zoo.path("smollm2", "model.gguf"))), np.array(ids))
    err = np.abs(ours - ref).max()
    assert err < 1e-3, err


def test_smollm2_chat_template_equals_the_gguf_jinja_template(smollm2):
    jinja2 = pytest.importorskip("jinja2")
    _, tok = smollm2
    msgs = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]
    template = jinja2.Environment().from_string(tok.chat_template)
    for gen in (False, True):
        assert tok.apply_chat_template(msgs, add_generation_prompt=gen) == template.render(messages=msgs, add_generation_prompt=gen)
    sys_msgs = [{"role": "system", "content": "Be brief."}] + msgs
    assert tok.apply_chat_template(sys_msgs) == template.render(messages=sys_msgs, add_generation_prompt=False)


def test_smollm2_tokenizer_round_trips_and_knows_its_specials(smollm2):
    _, tok = smollm2
    text = "Fine-tuning in 2024: LoRA, DPO & friends — déjà vu? 🙂"
    assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token == "<|im_end|>" and tok.encode("<|im_start|>user", add_special_tokens=False)[0] == 1
    assert tok.encode("2024", add_special_tokens=False) == [tok.token_to_id(c) for c in "2024"]  # digits split


def test_dequantization_matches_the_gguf_package_on_the_real_file():
    import gguf

    from minift.models.quant import dequantize

    reader = gguf.GGUFReader(str(zoo.path("smollm2", "model.gguf")))
    seen = set()
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in seen:
            continue
        seen.add(kind)
        shape = tuple(int(s) for s in reversed(t.shape))
        np.testing.assert_array_equal(dequantize(t.data, kind, shape), gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape))
    assert seen == {"Q8_0", "Q4_1", "F32"}
