"""memory_report: the bytes of a training step, with the activations measured from the arrays the graph saved.

Checked against independent figures: the weights against the safetensors header's byte count, the gradients
and AdamW's state against the trainable parameters' sizes (and the state against a real step), a hand-written
Function's saved arrays counted once per buffer, the activations against tracemalloc's and linear in the
batch, and LoRA against full fine-tuning (smaller gradients and state, not smaller activations)."""
from pathlib import Path

import numpy as np
import pytest

import minift as mf
from minift.inspect import inspect_path, memory_report
from minift.models.auto import AutoModelForCausalLM
from minift.nn import Module
from minift.nn import Parameter
from minift.peft import LoraConfig, get_peft_model

TINY_GPT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-gpt"


def lm_batch(b=4, t=32, seed=0):
    ids = np.random.default_rng(seed).integers(0, 4096, size=(b, t))
    return {"input_ids": ids, "labels": ids}


class SaveThings(mf.Function):
    """y = x·w; saves x, a view of x, x again, w (a parameter) and a mask of its own as a ctx attribute."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, x[:2], x, w)
        ctx.mask = np.ones((7, 3), dtype=np.float64)  # 168 bytes, not in saved_tensors
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, _, _, w = ctx.saved_tensors
        return grad * w, (grad * x).sum(axis=0)


class Toy(Module):
    def __init__(self):
        super().__init__()
        self.w = Parameter(np.ones(5))

    def forward(self, x):
        return SaveThings.apply(mf.tensor(x), self.w).sum()


def test_saved_arrays_are_counted_once_per_buffer_and_parameters_are_weights():
    x = np.zeros((4, 5))  # 160 bytes
    report = memory_report(Toy(), {"x": x})
    # x, its view and x again are one buffer (160 bytes); w is a weight; the mask is 168 bytes
    assert report.activations_by_op == {"SaveThings": 160 + 168}
    assert report.activations == 328 and report.activations_by_module == {"(model)": 328}
    assert report.weights == report.trainable_weights == report.gradients == 40
    assert report.optimizer_state == 0 and report.total == 40 + 40 + 328


def test_weights_gradients_and_adamw_state_match_the_parameter_sizes_and_a_real_step():
    model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    header_bytes = inspect_path(TINY_GPT)["total_bytes"]  # every tensor stored once (the head is tied)
    optimizer = mf.optim.AdamW(model.parameters(), lr=1e-3)
    report = memory_report(model, lm_batch(), optimizer)
    assert report.weights == header_bytes == 4 * model.num_parameters()
    assert report.gradients == report.trainable_weights == report.weights
    assert report.optimizer_state_predicted and report.optimizer_state == 2 * report.weights  # m and v
    assert all(p.grad is None for p in model.parameters())  # the report put the (absent) gradients back
    assert "forward" not in vars(model) and all("forward" not in vars(m) for m in model.modules())
    out = model(**lm_batch())
    out.loss.backward()
    optimizer.step()
    measured = memory_report(model, lm_batch(), optimizer)
    assert not measured.optimizer_state_predicted and measured.optimizer_state == report.optimizer_state
    sgd = memory_report(model, lm_batch(), mf.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert sgd.optimizer_state == report.weights
    assert memory_report(model, lm_batch(), mf.optim.SGD(model.parameters(), lr=0.1)).optimizer_state == 0


def test_activations_are_what_the_forward_pass_allocated_and_grow_with_the_batch():
    model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    small, large = memory_report(model, lm_batch(b=2)), memory_report(model, lm_batch(b=4))
    for r in (small, large):
        assert sum(r.activations_by_op.values()) == sum(r.activations_by_module.values()) == r.activations
        assert sum(r.by_module().values()) == r.activations
        inputs = sum(a.nbytes for a in lm_batch(b=r.tokens // 32).values())
        # the saved arrays were allocated by the forward pass (but for the ids it was given), and are most of it:
        # the rest is the outputs (logits, loss) and the graph's own small objects
        assert 0.5 * r.forward_traced_bytes < r.activations <= r.forward_traced_bytes + inputs
        assert {f"layers.{i}" for i in range(4)} <= set(r.by_module())
    assert large.activations == pytest.approx(2 * small.activations, rel=0.01)  # every saved array is (B, …)
    assert large.weights == small.weights and large.gradients == small.gradients


def test_lora_shrinks_gradients_and_state_a_lot_and_activations_a_little():
    batch = lm_batch()
    full_model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    full = memory_report(full_model, batch, mf.optim.AdamW(full_model.parameters()))
    lora_model = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY_GPT),
                                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    trainable = [p for p in lora_model.parameters() if p.requires_grad]
    lora = memory_report(lora_model, batch, mf.optim.AdamW(trainable))
    lora_bytes = sum(p.data.nbytes for p in trainable)  # A (r, in) and B (out, r) for q and v of 4 layers
    assert lora_bytes == 4 * 2 * 4 * (4 * 128 + 128 * 4)
    assert lora.gradients == lora.trainable_weights == lora_bytes and lora.optimizer_state == 2 * lora_bytes
    assert lora.weights == full.weights + lora_bytes
    # the nonlinearities and the attention core keep what they kept: their backward needs it, frozen or not …
    for op in ("Gelu", "ScaledDotProductAttention", "CrossEntropy"):
        assert lora.activations_by_op[op] == full.activations_by_op[op], op
    # … only a frozen Linear drops its input (∂L/∂x = G W needs W alone), so activations shrink a little
    assert lora.activations_by_op["Linear"] < full.activations_by_op["Linear"]
    assert 0.6 * full.activations < lora.activations < full.activations
    assert "embed.tokens" in full.by_module() and "embed.tokens" not in lora.by_module()  # frozen: no graph


def test_a_frozen_linear_keeps_no_input_and_a_constant_factor_keeps_nothing():
    x = mf.tensor(np.ones((4, 8), dtype=np.float32), requires_grad=True)  # 32 float32 = 128 bytes
    for trainable, expected in ((True, 128), (False, 0)):
        layer = mf.nn.Linear(8, 3)
        layer.requires_grad_(trainable)
        model = Toy()
        model.layer = layer
        model.forward = lambda x, layer=layer: (layer(x) * 2.0).sum()
        report = memory_report(model, {"x": x})
        assert report.activations_by_op.get("Linear", 0) == expected, trainable
        assert report.activations_by_op.get("Mul", 0) <= 8  # y · 2 keeps the 2 (and a one-number view), not y's 48 bytes


def test_qlora_weights_are_the_4_bit_blocks():
    model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    full_weights = memory_report(model, lm_batch()).weights
    mf.models.quantize_model(model, "NF4")
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    report = memory_report(model, lm_batch())
    blocks = sum(b.nbytes for _, b in model.named_buffers())
    assert blocks > 0 and report.weights == sum(p.data.nbytes for p in model.parameters()) + blocks
    assert report.weights < 0.6 * full_weights  # the Linear weights at about 4.5 bits instead of 32


def test_bad_input_is_a_clear_error():
    model = AutoModelForCausalLM.from_pretrained(TINY_GPT)
    with pytest.raises(ValueError, match="needs a loss"):
        memory_report(model, {"input_ids": lm_batch()["input_ids"]})  # no labels: no loss
    with pytest.raises(TypeError, match="non-empty dict"):
        memory_report(model, [])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="does not depend on any trainable parameter"):
        memory_report(model, lm_batch())
    assert "forward" not in vars(model)  # put back after the error too


def test_the_table_names_each_part():
    text = memory_report(AutoModelForCausalLM.from_pretrained(TINY_GPT), lm_batch()).table()
    for word in ("weights", "gradients", "optimizer state", "activations", "tracemalloc", "by op", "layers.0"):
        assert word in text
