"""The instruments: the file inspector against the headers read independently (the safetensors library, the
gguf reader, the arrays themselves), the token view's table against the batch and its warnings on batches
built to trigger each, and clear errors."""
import argparse
import json
import math
import struct
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import minift as mf
from minift.inspect import InspectError, format_report, inspect_path, read_safetensors_header
from minift.models.checkpoint import CheckpointError, read_safetensors
from minift.inspect import add_cli_arguments, run_from_args
from minift.models import TransformerConfig, save_pretrained
from minift.peft import LoraConfig, get_peft_model

SHIPPED = ["checkpoints/tiny-gpt", "checkpoints/tiny-bert"]


def tiny(family="bert", head="TransformerForSequenceClassification", hidden=16, **kw):
    mf.seed(0)
    cfg = TransformerConfig(family=family, vocab_size=32, hidden_size=hidden, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=16, pad_token_id=0, **kw)
    cls = getattr(mf.models, head)
    return (cls(cfg, num_labels=2) if "Classification" in head else cls(cfg)).eval()


def library_view(file):
    """{name: (shape, dtype name, nbytes)} through the safetensors library and NumPy: the independent reading."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(file), framework="numpy") as f:
        for name in f.keys():
            a = f.get_tensor(name)
            out[name] = (list(a.shape), a.dtype, a.size * a.dtype.itemsize)
    return out


def cli(*argv):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return run_from_args(parser.parse_args([str(a) for a in argv]))


# ----------------------------------------------------------------------------- safetensors files
NUMPY_TO_SAFETENSORS = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
                        "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def test_a_lone_safetensors_file_every_dtype_and_the_metadata(tmp_path):
    from safetensors.numpy import save_file

    rs = np.random.default_rng(0)
    arrays = {f"t_{dt}": (rs.normal(size=(3, 5, 2)) * 10).astype(dt) for dt in NUMPY_TO_SAFETENSORS}
    arrays["scalar"] = np.array(1.5, dtype=np.float32)
    arrays["empty"] = np.zeros((0, 4), dtype=np.float32)
    file = tmp_path / "w.safetensors"
    save_file(arrays, str(file), metadata={"made_by": "test"})
    report = inspect_path(file)
    assert report["kind"] == "safetensors" and report["metadata"] == {"made_by": "test"}
    rows = {r["name"]: r for r in report["tensors"]}
    assert set(rows) == set(arrays)
    for name, a in arrays.items():
        assert rows[name]["shape"] == list(a.shape)
        assert rows[name]["dtype"] == NUMPY_TO_SAFETENSORS[a.dtype.name]
        assert rows[name]["bytes"] == math.prod(a.shape) * a.dtype.itemsize == a.nbytes
    assert report["total_bytes"] == sum(a.nbytes for a in arrays.values())
    assert report["total_elements"] == sum(a.size for a in arrays.values())
    # the data region is exactly the tensors' bytes: the header accounts for every byte of the file
    (n,) = struct.unpack("<Q", file.read_bytes()[:8])
    assert file.stat().st_size == 8 + n + report["total_bytes"]
    assert "t_float16" in format_report(report) and "BOOL" in format_report(report)


@pytest.mark.parametrize("fmt", ["minift", "hf"])
@pytest.mark.parametrize("family,head", [("gpt2", "TransformerForCausalLM"), ("bert", "TransformerForMaskedLM"),
                                         ("llama", "TransformerForSequenceClassification")])
def test_a_saved_model_in_both_formats_matches_the_library_and_the_arrays(tmp_path, fmt, family, head):
    model = tiny(family, head)
    save_pretrained(model, tmp_path, format=fmt)
    report = inspect_path(tmp_path)
    assert report["kind"] == ("minift checkpoint" if fmt == "minift" else "hf model")
    view = library_view(tmp_path / "model.safetensors")
    assert {r["name"]: (r["shape"], r["bytes"]) for r in report["tensors"]} == {
        k: (shape, nbytes) for k, (shape, _, nbytes) in view.items()}
    assert report["total_bytes"] == sum(v[2] for v in view.values())
    assert report["summary"]["layers"] == 2 and report["summary"]["hidden size"] == 16
    if fmt == "minift":  # the file holds the model's unique arrays: tied ones once
        state = model.state_dict()
        unique = {id(v): v for v in state.values()}
        assert report["total_elements"] == sum(v.size for v in unique.values())
        tied = len(state) - len(unique)
        assert sum("is tied to" in n for n in report["notes"]) == tied
        assert report["summary"]["architecture"] == head
    else:
        assert report["config"]["model_type"] == family


def test_a_sharded_hf_directory_is_read_through_its_index(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_pretrained(tiny("llama", "TransformerForCausalLM"), tmp_path / "one", format="hf")
    whole = load_file(str(tmp_path / "one" / "model.safetensors"))
    names = sorted(whole)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    d = tmp_path / "sharded"
    d.mkdir()
    (d / "config.json").write_text((tmp_path / "one" / "config.json").read_text())
    for file, keys in shards.items():
        save_file({k: whole[k] for k in keys}, str(d / file), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    report = inspect_path(d)
    assert report["files"] == sorted(shards)
    assert {r["name"]: r["file"] for r in report["tensors"]} == index["weight_map"]
    assert report["total_bytes"] == inspect_path(tmp_path / "one")["total_bytes"] == sum(a.nbytes for a in whole.values())
    assert any("sharded: 2 files" in n for n in report["notes"])
    index["weight_map"]["model.ghost.weight"] = "model-00001-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InspectError, match="disagree.*model.ghost.weight"):
        inspect_path(d)
    index["weight_map"]["model.ghost.weight"] = "model-00003-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InspectError, match="lists shards that are not in"):
        inspect_path(d)


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_checkpoint(path, capsys, tmp_path):
    report = inspect_path(path)
    view = library_view(f"{path}/model.safetensors")
    assert report["kind"] == "minift checkpoint" and report["num_tensors"] == len(view)
    for r in report["tensors"]:
        shape, dtype, nbytes = view[r["name"]]
        assert r["shape"] == shape and r["dtype"] == NUMPY_TO_SAFETENSORS[dtype.name] and r["bytes"] == nbytes
    cfg = json.loads(open(f"{path}/config.json").read())
    assert report["summary"]["vocabulary"] == cfg["vocab_size"] and report["summary"]["layers"] == cfg["num_hidden_layers"]
    assert cli(path, "--json", tmp_path / "r.json") == 0
    out = capsys.readouterr().out
    assert f"{report['num_tensors']} tensors, {report['total_elements']:,} values" in out
    assert all(r["name"] in out for r in report["tensors"])  # every tensor listed
    assert json.loads((tmp_path / "r.json").read_text())["total_bytes"] == report["total_bytes"]
    tok = mf.tokenization.from_pretrained(path)  # the tokenizer beside the weights, read as the loaders read it
    assert f"tokenizer.json: {tok.vocab_size:,} tokens; pad {tok.pad_token!r}, eos {tok.eos_token!r}" in report["notes"]
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    (damaged / "tokenizer.json").write_text((damaged / "tokenizer.json").read_text()[:1000])  # a copy cut short
    with pytest.raises(InspectError, match=r"damaged/tokenizer.json is not a tokenizer file .*EOF"):
        inspect_path(damaged)


# ----------------------------------------------------------------------------- PEFT adapters
def lora_adapter(tmp_path, name="lora", hidden=16, **options):
    model = tiny("bert", hidden=hidden)
    config = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"]) | options
    pm = get_peft_model(model, LoraConfig(**config))
    pm.save_pretrained(tmp_path / name)
    return pm, tmp_path / name


def test_the_minilm_artifact_a_hugging_face_directory():
    from minift import zoo

    d = zoo.path("minilm")
    report = inspect_path(d)
    view = library_view(d / "model.safetensors")
    assert report["num_tensors"] == len(view)
    assert report["total_bytes"] == sum(nbytes for _, _, nbytes in view.values())
    for r in report["tensors"]:
        shape, dtype, nbytes = view[r["name"]]
        assert r["shape"] == shape and r["bytes"] == nbytes
    cfg = json.loads((d / "config.json").read_text())
    assert report["summary"]["layers"] == cfg["num_hidden_layers"] == 6 and report["summary"]["vocabulary"] == 30522
    assert inspect_path("minilm")["total_bytes"] == report["total_bytes"]  # a zoo model's name stands for its directory


def test_against_a_zoo_model_by_name_a_bare_backbone(tmp_path):
    # a classifier adapter's modules are bert.encoder…; MiniLM's file is a bare BertModel (encoder…), which the
    # head class loads under its prefix "bert": matched so, the head (classifier) being made fresh
    _, adapter = lora_adapter(tmp_path)  # made for a 16-wide bert, not for MiniLM's 384
    against = inspect_path(adapter, against="minilm")["against"]
    assert against["base"].endswith("minilm") and against["backbone_prefix"] == "bert"
    assert len(against["touched"]) == 4 and not against["unmatched_targets"] and not against["absent_from_base"]
    assert against["shape_mismatches"] and all("16" in m and "384" in m for m in against["shape_mismatches"])
    model = mf.models.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)
    fits = mf.peft.get_peft_model(model, mf.peft.LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["classifier"]))
    fits.save_pretrained(tmp_path / "minilm-adapter")
    good = inspect_path(tmp_path / "minilm-adapter", against="minilm")["against"]
    assert good["problems"] == [] and len(good["touched"]) == 6
    with pytest.raises(FileNotFoundError, match="or a zoo model: minilm, smollm2"):
        inspect_path(tmp_path / "nowhere")


@pytest.mark.parametrize("use_rslora,scaling", [(False, 8 / 4), (True, 8 / math.sqrt(4))])
def test_a_lora_adapter_rank_scaling_targets_and_saved_modules(tmp_path, use_rslora, scaling):
    from minift.peft.hub import hf_module_names

    pm, d = lora_adapter(tmp_path, use_rslora=use_rslora)
    report = inspect_path(d)
    a = report["adapter"]
    assert report["kind"] == "peft adapter" and a["peft_type"] == "LORA"
    assert (a["r"], a["lora_alpha"], a["use_rslora"]) == (4, 8, use_rslora)
    assert a["scaling"] == pytest.approx(scaling)
    names = hf_module_names(pm.base_model)
    expected = sorted(names[f"model.layers.{i}.attn.{p}"] for i in range(2) for p in ("q_proj", "v_proj"))
    assert a["adapted_modules"] == expected and a["by_suffix"] == {"query": 2, "value": 2}
    assert a["saved_modules"] == ["classifier"] and a["modules_to_save"] == ["classifier"]
    assert a["ranks_in_file"] == [4]
    view = library_view(d / "adapter_model.safetensors")
    assert {r["name"]: (r["shape"], r["bytes"]) for r in report["tensors"]} == {k: (s, b) for k, (s, _, b) in view.items()}
    for m in expected:  # lora_A (r, in), lora_B (out, r)
        assert view[f"base_model.model.{m}.lora_A.weight"][0] == [4, 16]
        assert view[f"base_model.model.{m}.lora_B.weight"][0] == [16, 4]
    text = format_report(report)
    assert ("lora_alpha / √r = 8 / √4 = 4" if use_rslora else "lora_alpha / r = 8 / 4 = 2") in text
    assert "saved whole: classifier" in text


@pytest.mark.parametrize("fmt", ["minift", "hf"])
def test_against_the_base_lists_the_touched_modules(tmp_path, fmt, capsys):
    pm, d = lora_adapter(tmp_path)
    save_pretrained(tiny("bert"), tmp_path / "base", format=fmt)
    c = inspect_path(d, against=tmp_path / "base")["against"]
    assert c["problems"] == [] and c["touched"] == sorted(inspect_path(d)["adapter"]["adapted_modules"] + ["classifier"])
    assert c["selected_by_targets"] == inspect_path(d)["adapter"]["adapted_modules"]
    assert cli(d, "--against", tmp_path / "base") == 0
    assert "every target and saved module matches the base" in capsys.readouterr().out


def test_against_a_base_it_does_not_fit_names_each_problem(tmp_path, capsys):
    _, d = lora_adapter(tmp_path)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["target_modules"] = ["query", "value", "q_proj"]  # PEFT's short names: q_proj is Llama's, not BERT's
    cfg["modules_to_save"] = ["score"]  # GPT-2/Llama's head name
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    save_pretrained(tiny("bert"), tmp_path / "base", format="hf")
    c = inspect_path(d, against=tmp_path / "base")["against"]
    assert c["unmatched_targets"] == ["q_proj"] and c["unmatched_modules_to_save"] == ["score"]
    assert len(c["selected_by_targets"]) == 4 and c["shape_mismatches"] == [] and c["selected_without_tensors"] == []
    assert cli(d, "--against", tmp_path / "base") == 1  # a problem: non-zero exit, each one printed
    out = capsys.readouterr().out
    assert "ERROR: target_modules entry 'q_proj' matches no module" in out and "'score'" in out
    save_pretrained(tiny("bert", hidden=8), tmp_path / "narrow", format="hf")  # same names, other widths
    c = inspect_path(d, against=tmp_path / "narrow")["against"]
    assert len(c["shape_mismatches"]) == 8  # lora_A and lora_B of 4 modules
    assert "lora_A is [4, 16], but the base weight is [8, 8]" in c["shape_mismatches"][0]
    save_pretrained(tiny("llama"), tmp_path / "llama", format="hf")
    c = inspect_path(d, against=tmp_path / "llama")["against"]
    assert c["touched"] == [] and len(c["absent_from_base"]) == 5 and c["unmatched_targets"] == ["query", "value"]


# ----------------------------------------------------------------------------- GGUF
@pytest.mark.zoo
def test_the_smollm2_gguf_against_the_gguf_readers_own_fields():
    import gguf

    file = mf.zoo.path("smollm2", "model.gguf")
    report = inspect_path(file)
    reader = gguf.GGUFReader(str(file))
    assert report["kind"] == "gguf" and report["num_tensors"] == len(reader.tensors) == 272
    s = report["summary"]
    assert s["architecture"] == reader.fields["general.architecture"].contents() == "llama"
    assert s["layers"] == reader.fields["llama.block_count"].contents() == 30
    assert s["hidden size"] == 576 and s["heads"] == 9 and s["key/value heads"] == 3
    assert s["vocabulary"] == len(reader.fields["tokenizer.ggml.tokens"].data) == 49152
    for row, t in zip(report["tensors"], reader.tensors):
        assert row["name"] == t.name and row["shape"] == [int(n) for n in reversed(t.shape)]
        assert row["dtype"] == t.tensor_type.name and row["bytes"] == t.n_bytes
        block, type_size = gguf.GGML_QUANT_SIZES[t.tensor_type]  # bytes = blocks × bytes per block
        assert row["bytes"] == math.prod(row["shape"]) // block * type_size
    kinds = {r["dtype"] for r in report["tensors"]}
    assert kinds == {"F32", "Q4_1", "Q8_0"} and s["file type"] == "MOSTLY_Q4_1"
    assert report["metadata"]["tokenizer.ggml.tokens"] == "[49152 × string]"


# ----------------------------------------------------------------------------- bad inputs
def test_bad_paths_get_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inspect_path(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InspectError, match="expected config.json \\+ model.safetensors.*adapter_config.json"):
        inspect_path(tmp_path / "empty")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(InspectError, match="pytorch_model.bin is refused: it is a Python pickle"):
        inspect_path(tmp_path / "pickled")
    (tmp_path / "pickled" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(InspectError, match="no model.safetensors: pytorch_model.bin is refused"):
        inspect_path(tmp_path / "pickled")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(InspectError, match="model.pt is refused: it is a Python pickle"):
        inspect_path(tmp_path / "model.pt")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InspectError, match="expected a .safetensors or .gguf file"):
        inspect_path(tmp_path / "notes.txt")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{nope")
    with pytest.raises(InspectError, match="config.json is not valid JSON"):
        inspect_path(tmp_path / "badjson")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter" / "adapter_model.bin").write_bytes(b"\x80")
    with pytest.raises(InspectError, match="adapter_model.bin is refused"):
        inspect_path(tmp_path / "adapter")
    with pytest.raises(InspectError, match="--against compares a PEFT adapter"):
        inspect_path("checkpoints/tiny-gpt", against="checkpoints/tiny-bert")


def test_corrupt_headers_are_reported_not_trusted(tmp_path):
    from safetensors.numpy import save_file

    good = tmp_path / "good.safetensors"
    save_file({"w": np.ones((2, 3), np.float32)}, str(good))
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])

    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    def with_header(h):
        text = json.dumps(h).encode()
        return struct.pack("<Q", len(text)) + text + raw[8 + n:]

    cases = {
        "short.safetensors": (raw[:5], "too short"),
        "long.safetensors": (struct.pack("<Q", 10 ** 12) + raw[8:], "claims 1,000,000,000,000 bytes"),
        "notjson.safetensors": (struct.pack("<Q", 4) + b"{{{{" + raw[8 + n:], "not JSON"),
        "list.safetensors": (with_header([1, 2]), "a JSON list"),
        "entry.safetensors": (with_header({"w": {"dtype": "F32"}}), "entry 'w'"),
        "shape.safetensors": (with_header({"w": {**header["w"], "shape": [3, 3]}}), "data_offsets span 24"),
        "offsets.safetensors": (with_header({"w": {**header["w"], "data_offsets": [0, 4000]}}), "outside the 24"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(CheckpointError, match=message):
            read_safetensors_header(write(name, data))
        # loading the file says the same: one header check behind inspect and every loader
        with pytest.raises(CheckpointError, match=f"{name}.*{message}" if message != "too short" else "too short"):
            read_safetensors(tmp_path / name)
    assert read_safetensors_header(good)[0]["w"]["bytes"] == 24
    np.testing.assert_array_equal(read_safetensors(good)["w"], np.ones((2, 3), np.float32))
    with pytest.raises(InspectError, match="not a readable GGUF file"):
        inspect_path(write("bad.gguf", b"GGUF" + b"\x00" * 20))


def test_against_flags_targets_the_file_has_no_tensors_for(tmp_path):
    _, d = lora_adapter(tmp_path)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["target_modules"] = ["query", "value", "key"]  # loading would leave both key adapters at B = 0
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    save_pretrained(tiny("bert"), tmp_path / "base", format="hf")
    c = inspect_path(d, against=tmp_path / "base")["against"]
    assert c["selected_without_tensors"] == [f"bert.encoder.layer.{i}.attention.self.key" for i in range(2)]
    assert c["unmatched_targets"] == [] and len(c["problems"]) == 1


# ----------------------------------------------------------------------------- the token view
from hypothesis import given, strategies as st  # noqa: E402

from minift.data import DataCollatorForTokenClassification, DataCollatorWithPadding, tokenize_and_align_labels  # noqa: E402
from minift.inspect import TokenViewWarning, show_batch  # noqa: E402
from minift.sft import DataCollatorForSFT, pack_examples, sft_example  # noqa: E402


@pytest.fixture(scope="module")
def gpt_tok():
    return mf.tokenization.from_pretrained("checkpoints/tiny-gpt")


@pytest.fixture(scope="module")
def bert_tok():
    return mf.tokenization.from_pretrained("checkpoints/tiny-bert")


def quiet_view(batch, tok, **kw):
    """show_batch with every warning an error: a good batch must raise none."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = show_batch(batch, tok, **kw)
    assert table.warnings == []
    return table


def reasons(table):
    return [r["reason"] for r in table.rows]


def test_a_good_sft_batch_prompt_masked_completion_and_eos_trained(gpt_tok):
    tok = gpt_tok
    examples = [sft_example(tok, "The movie was", " great fun", chat=False), sft_example(tok, "Bad", " film", chat=False)]
    batch = DataCollatorForSFT(tok)(examples)
    table = quiet_view(batch, tok)
    assert table.kind == "causal lm"
    assert np.array_equal(table.column("label"), batch["labels"])
    assert np.array_equal(table.column("id"), batch["input_ids"])
    assert np.array_equal(table.column("attention"), batch["attention_mask"])
    for i, ex in enumerate(examples):
        n, n_prompt = len(ex["input_ids"]), ex["labels"].count(-100)
        row = [r for r in table.rows if r["example"] == i]
        assert [r["reason"] for r in row[:n_prompt]] == ["prompt"] * n_prompt
        assert all(r["reason"] is None for r in row[n_prompt:n])  # trained: label = the token
        assert all(r["reason"] == "padding" for r in row[n:])
        assert [r["position"] for r in row if r["eos"]] == [n - 1]  # the EOS, trained, is the last real token
    assert tok.decode([r["id"] for r in table.rows if r["example"] == 0 and r["reason"] is None]) \
        == " great fun" + tok.decode([tok.eos_token_id])


@pytest.mark.zoo
def test_a_good_chat_sft_batch_with_smollm2(tmp_path):
    tok = mf.tokenization.from_pretrained("smollm2")  # pad = EOS = <|im_end|>: the trl#734 setting, done right
    examples = [sft_example(tok, "Is this review positive or negative?\n\nA delight.", "positive"),
                sft_example(tok, "Say no.", "no")]
    batch = DataCollatorForSFT(tok)(examples)
    table = quiet_view(batch, tok)
    assert np.array_equal(table.column("label"), batch["labels"])
    eos_rows = [r for r in table.rows if r["eos"]]
    assert all(r["attention"] == 1 for r in eos_rows)  # a pad <|im_end|> is padding, not an EOS
    assert [r["label"] == tok.eos_token_id for r in eos_rows].count(True) == 2  # each answer's end of turn trained
    page = table._repr_html_()  # one coloured row per shown token: trained green, masked yellow, padding grey
    from minift.inspect.tokens import COLOURS

    shown = [r for r in table._shown() if isinstance(r, dict)]
    for status in ("trained", "masked", "padding"):
        assert page.count(COLOURS[status]) == sum(table.status(r) == status for r in shown) > 0


def test_a_packed_batch_shows_each_boundary(gpt_tok):
    tok = gpt_tok
    examples = [sft_example(tok, "A", " good one", chat=False), sft_example(tok, "B", " bad", chat=False),
                sft_example(tok, "C", " fine", chat=False)]
    rows = pack_examples(examples, max_length=64)
    batch = DataCollatorForSFT(tok)(rows)
    assert batch["attention_mask"].ndim == 3
    table = quiet_view(batch, tok)
    starts = np.cumsum([0] + [len(e["input_ids"]) for e in examples])[:-1]
    assert np.flatnonzero(table.column("boundary")[0]).tolist() == starts[1:].tolist()
    assert table.column("segment")[0].tolist() == rows[0]["sequence_ids"]
    assert np.array_equal(table.column("position_id"), batch["position_ids"])
    assert [reasons(table)[s] for s in starts[1:]] == ["boundary", "boundary"]
    without_positions = {k: v for k, v in batch.items() if k != "position_ids"}  # the 3-D mask alone tells
    assert np.array_equal(quiet_view(without_positions, tok).column("boundary"), table.column("boundary"))
    assert str(table).count("|boundary") == 2
    assert str(table).startswith("row 0 (3 packed examples)\n")  # the title says what the row holds
    flattened = {"input_ids": batch["input_ids"], "labels": batch["labels"], "position_ids": batch["position_ids"]}
    assert np.array_equal(quiet_view(flattened, tok).column("boundary"), table.column("boundary"))  # HF's
    # DataCollatorWithFlattening: position ids alone mark the examples


def test_a_good_ner_batch_specials_continuations_and_padding(bert_tok):
    tok = bert_tok
    data = {"tokens": [["Angela", "Merkel", "visited", "Paris"], ["hi"]], "ner_tags": [[1, 2, 0, 3], [0]]}
    out = tokenize_and_align_labels(data, tok, max_length=32)
    batch = DataCollatorForTokenClassification(tok)([{k: out[k][i] for k in out} for i in range(2)])
    table = quiet_view(batch, tok)
    assert table.kind == "token classification"
    assert np.array_equal(table.column("label"), batch["labels"])
    pieces = tok.convert_ids_to_tokens(batch["input_ids"].reshape(-1))
    for r, piece in zip(table.rows, pieces):
        expected = (None if r["label"] != -100 else "padding" if r["attention"] == 0 else
                    "special" if r["id"] in tok.all_special_ids else "continuation")
        assert r["reason"] == expected and (expected != "continuation" or piece.startswith("##"))
    trained = table.column("label") != -100
    assert trained.sum(axis=1).tolist() == [4, 1]  # one label per word


def test_a_classifier_batch_reads_the_last_real_token(gpt_tok):
    tok = gpt_tok
    rows = [{"input_ids": tok.encode(text), "label": y} for text, y in [("a fine film", 1), ("bad", 0), ("ok ok", 1)]]
    batch = DataCollatorWithPadding(tok)(rows)
    table = quiet_view(batch, tok)
    assert table.kind == "sequence classification" and table.sequence_labels == [1, 0, 1]
    last_real = [max(t for t in range(batch["input_ids"].shape[1]) if batch["attention_mask"][i, t])
                 for i in range(3)]  # a loop, independently of last_token_index
    assert [int(np.flatnonzero(row)[0]) for row in table.column("reads")] == last_real
    assert "(label 0)" in str(table) and "<- classifier reads" in str(table)


# the bad batches, one per warning
def test_an_example_with_no_trained_token_warns(gpt_tok):
    tok = gpt_tok
    batch = DataCollatorForSFT(tok)([sft_example(tok, "A", " b", chat=False), sft_example(tok, "C", " d", chat=False)])
    batch["labels"][1] = -100  # a response template that never matched: the whole example masked
    with pytest.warns(TokenViewWarning, match="example 1 has no trained token"):
        table = show_batch(batch, tok)
    assert len(table.warnings) == 1 and "masked" in reasons(table)
    packed = DataCollatorForSFT(tok)(pack_examples([sft_example(tok, "A", " b", chat=False),
                                                    sft_example(tok, "C", " d", chat=False)], 32))
    seg = packed["position_ids"][0]
    second = np.flatnonzero(np.cumsum(seg == 0) == 2)
    packed["labels"][0, second] = -100
    with pytest.warns(TokenViewWarning, match="example 0, packed example 2 has no trained token"):
        show_batch(packed, tok)


def test_a_masked_eos_warns(gpt_tok):
    """pad = EOS, and the LM collator masks every pad id: the real EOS (mask 1) gets −100 too (trl#734)."""
    tok = gpt_tok
    eos = tok.eos_token_id
    ids = [tok.encode("good film", add_special_tokens=False) + [eos], tok.encode("bad", add_special_tokens=False) + [eos]]
    width = max(map(len, ids))
    input_ids = np.array([x + [eos] * (width - len(x)) for x in ids])  # padded with EOS
    mask = np.array([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    labels = np.where(input_ids == eos, -100, input_ids)  # "mask the pads" = mask every EOS
    with pytest.warns(TokenViewWarning, match="EOS .* has label -100, so the model never learns to stop"):
        table = show_batch({"input_ids": input_ids, "attention_mask": mask, "labels": labels}, tok)
    assert len(table.warnings) == 2
    fixed = labels.copy()
    fixed[mask == 1] = input_ids[mask == 1]  # mask the padding by the attention mask instead
    quiet_view({"input_ids": input_ids, "attention_mask": mask, "labels": fixed}, tok)


def test_a_classifier_reading_a_pad_warns(gpt_tok):
    tok = gpt_tok
    batch = DataCollatorWithPadding(tok)([{"input_ids": tok.encode("a fine film"), "label": 1},
                                          {"input_ids": tok.encode("bad"), "label": 0}])
    with pytest.warns(TokenViewWarning, match="example 1: the classifier reads position 2, a pad"):
        table = show_batch(batch, tok, classifier_reads=[-1, -1])  # logits[:, -1] on right padding
    assert len(table.warnings) == 1
    quiet_view(batch, tok, classifier_reads="last")
    assert not quiet_view(batch, tok, classifier_reads="first").column("reads")[:, 1:].any()


def test_by_default_a_bert_classifier_reads_cls_and_a_decoders_its_last_real_token(gpt_tok, bert_tok):
    rows = lambda tok: [{"input_ids": tok.encode("a fine film"), "label": 1}, {"input_ids": tok.encode("bad"), "label": 0}]  # noqa: E731
    bert = quiet_view(DataCollatorWithPadding(bert_tok)(rows(bert_tok)), bert_tok).column("reads")  # (B, T)
    assert bert[:, 0].all() and not bert[:, 1:].any()  # [CLS], where the pooler reads
    batch = DataCollatorWithPadding(gpt_tok)(rows(gpt_tok))
    gpt = quiet_view(batch, gpt_tok).column("reads")
    last = batch["attention_mask"].sum(1) - 1
    assert [np.flatnonzero(r).tolist() for r in gpt] == [[n] for n in last.tolist()]


def test_bad_batches_get_clear_errors(gpt_tok):
    ids = np.array([[5, 6, 7], [8, 9, 1]])
    with pytest.raises(ValueError, match="expects a dict with 'input_ids'"):
        show_batch({"ids": ids}, gpt_tok)
    with pytest.raises(ValueError, match="labels: expected one per token, shape \\(2, 3\\), got \\(2, 2\\)"):
        show_batch({"input_ids": ids, "labels": ids[:, :2]}, gpt_tok)
    with pytest.raises(ValueError, match="expected one per row \\(2,\\)"):
        show_batch({"input_ids": ids, "labels": np.array([1, 0, 1])}, gpt_tok)
    with pytest.raises(ValueError, match="attention_mask: expected \\(2, 3\\)"):
        show_batch({"input_ids": ids, "attention_mask": np.ones((2, 4))}, gpt_tok)
    with pytest.raises(ValueError, match="classifier_reads: expected 2 positions"):
        show_batch({"input_ids": ids}, gpt_tok, classifier_reads=[0, 3])
    with pytest.raises(KeyError, match="no column 'loss'"):
        show_batch({"input_ids": ids}, gpt_tok).column("loss")


@given(st.data())
def test_property_the_table_is_the_batch(gpt_tok, data):
    """For any right-padded batch: the label, id and mask columns are the batch's; −100 on a pad says padding."""
    b = data.draw(st.integers(1, 3))
    t = data.draw(st.integers(1, 6))
    lengths = data.draw(st.lists(st.integers(1, t), min_size=b, max_size=b))
    ids = np.array(data.draw(st.lists(st.lists(st.integers(2, 200), min_size=t, max_size=t), min_size=b, max_size=b)))
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.int64)  # (B, T)
    labels = np.where(np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b,
                                                  max_size=b))), ids, -100)
    labels[mask == 0] = -100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenViewWarning)
        table = show_batch({"input_ids": ids, "attention_mask": mask, "labels": labels}, gpt_tok)
    assert np.array_equal(table.column("label"), labels) and np.array_equal(table.column("attention"), mask)
    assert all(r["reason"] == "padding" for r in table.rows if r["attention"] == 0)
    assert all((r["reason"] is None) == (r["label"] != -100) for r in table.rows)
    no_trained = [i for i in range(b) if not (labels[i] != -100).any()]
    assert sum("no trained token" in w for w in table.warnings) == len(no_trained)


def test_a_classifier_adapter_against_its_masked_lm_base_expects_a_fresh_head(tmp_path, capsys):
    base = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-bert"  # a masked LM: no classifier in it
    model = mf.models.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2)
    pm = mf.peft.get_peft_model(model, mf.peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                          modules_to_save=["classifier"]))
    pm.save_pretrained(tmp_path / "adapter")
    against = inspect_path(tmp_path / "adapter", against=base)["against"]
    assert against["problems"] == [] and against["fresh_heads"] == ["classifier"]
    assert cli(tmp_path / "adapter", "--against", base) == 0
    assert "made fresh by the head class" in capsys.readouterr().out


def test_bad_json_and_max_tensors_options_fail_before_any_work(tmp_path, capsys):
    from minift.cli import main

    assert main(["inspect", "checkpoints/tiny-gpt", "--json", str(tmp_path)]) == 1
    err = capsys.readouterr()
    assert "is a directory; give a file name" in err.err and err.out == ""  # nothing printed before the error
    assert main(["inspect", "checkpoints/tiny-gpt", "--json", str(tmp_path / "no" / "r.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["inspect", "checkpoints/tiny-gpt", "--max-tensors", "-1"]) == 2
    assert "expected an integer >= 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_json_replaces_an_earlier_report_only_never_a_checkpoints_file_or_another_file(tmp_path, capsys):
    import shutil

    from minift.cli import main

    ck = tmp_path / "ck"
    shutil.copytree("checkpoints/tiny-gpt", ck)
    config = (ck / "config.json").read_bytes()
    assert main(["inspect", str(ck), "--json", str(ck / "config.json")]) == 1
    assert "inside" in capsys.readouterr().err and (ck / "config.json").read_bytes() == config
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert main(["inspect", str(ck), "--json", str(notes)]) == 1
    assert "is not a report of minift inspect" in capsys.readouterr().err and notes.read_text() == '{"mine": 1}'
    report = tmp_path / "report.json"
    assert main(["inspect", str(ck), "--json", str(report)]) == 0
    first = json.loads(report.read_text())
    assert main(["inspect", "checkpoints/tiny-bert", "--json", str(report)]) == 0  # an earlier report: replaced
    assert json.loads(report.read_text())["path"] != first["path"]
    assert report.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file, readable as the umask allows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "notes.json", "report.json"]  # no temporary left


def _umask():
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_adapter_config_with_a_rank_of_the_wrong_kind_is_named(tmp_path):
    base = mf.models.from_pretrained("checkpoints/tiny-bert")
    mf.peft.get_peft_model(base, mf.peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    cfg["r"] = "eight"
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InspectError, match=r"ad/adapter_config.json: r must be a number > 0, got 'eight'"):
        inspect_path(tmp_path / "ad")
    with pytest.raises(ValueError, match=r"ad/adapter_config.json: r \(the LoRA rank\) must be a positive integer"):
        mf.peft.PeftModel.from_pretrained(mf.models.from_pretrained("checkpoints/tiny-bert"), tmp_path / "ad")
