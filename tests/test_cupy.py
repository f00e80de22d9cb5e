"""The same op registry on the CuPy backend: forward and gradients equal NumPy's. Skipped without a GPU."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minift as mf
from minift import backend

from .op_specs import SPECS

pytestmark = [
    pytest.mark.cupy,
    pytest.mark.skipif(not backend.cupy_available(), reason="CuPy with a GPU is not available on this machine"),
]


def _run(spec, arrays, kw, name):
    mf.set_backend(name)
    if name == "cupy":
        import cupy

        kw = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    ts = [mf.tensor(backend.asarray(a), requires_grad=spec.grad) for a in arrays]
    out = spec.fn(*ts, **kw)
    if spec.grad:
        out.backward(backend.asarray(np.linspace(-1, 1, out.size).reshape(out.shape)))
    return out.numpy(), [backend.to_numpy(t.grad) if t.grad is not None else None for t in ts]


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "F.dropout"], ids=lambda s: s.name)
@settings(max_examples=10)
@given(data=st.data())
def test_cupy_matches_numpy(spec, data):
    arrays, kw = spec.inputs(data.draw)
    try:
        out_np, g_np = _run(spec, arrays, kw, "numpy")
        out_cp, g_cp = _run(spec, arrays, kw, "cupy")
    finally:
        mf.set_backend("numpy")
    np.testing.assert_allclose(out_cp, out_np, rtol=1e-9, atol=1e-10)
    for a, b in zip(g_cp, g_np):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_tensor_moves_between_devices():
    x = mf.tensor(np.arange(3.0)).to("cuda")
    assert x.device == "cuda"
    np.testing.assert_array_equal(x.to("cpu").numpy(), np.arange(3.0))


# ----------------------------------------------------------------------------- beyond single ops
def _tiny_config(family):
    from minift.models import TransformerConfig

    kw = dict(family=family, vocab_size=23, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=16)
    if family == "llama":
        kw.update(num_key_value_heads=2)
    return TransformerConfig(**kw)


def _one_step(model, ids, labels):
    """loss, {name: grad}, {name: parameter after one AdamW step with clipping}, all as NumPy arrays."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = mf.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    opt.zero_grad()
    loss = model(backend.asarray(ids), labels=backend.asarray(labels)).loss
    loss.backward()
    mf.optim.clip_grad_norm_(params, 1.0)
    grads = {n: backend.to_numpy(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    after = {n: backend.to_numpy(p.data) for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.item()), grads, after


@pytest.mark.parametrize("family,lora", [("gpt2", False), ("bert", False), ("llama", False), ("llama", True)])
def test_a_training_step_equals_numpys(family, lora):
    """The same weights and batch on both backends, float64: loss, every gradient and every updated weight."""
    from minift.models import TransformerForCausalLM, TransformerForMaskedLM
    from minift.peft import LoraConfig, get_peft_model

    mf.set_default_dtype("float64")
    try:
        mf.seed(0)
        cls = TransformerForMaskedLM if family == "bert" else TransformerForCausalLM
        model = cls(_tiny_config(family)).train()
        if lora:
            model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights="gaussian"))
        start = {k: np.array(backend.to_numpy(v)) for k, v in model.state_dict().items()}
        ids = np.random.default_rng(1).integers(1, 23, (2, 10))
        labels = ids if family != "bert" else np.where(np.arange(10) % 3 == 0, ids, -100)
        loss_np, grads_np, after_np = _one_step(model, ids, labels)
        mf.set_backend("cupy")
        model.load_state_dict(start)
        model.to("cuda")
        loss_cp, grads_cp, after_cp = _one_step(model, ids, labels)
    finally:
        mf.set_backend("numpy")
        mf.set_default_dtype("float32")
    assert loss_cp == pytest.approx(loss_np, rel=1e-10)
    assert grads_cp.keys() == grads_np.keys() and after_cp.keys() == after_np.keys()
    for name in grads_np:
        np.testing.assert_allclose(grads_cp[name], grads_np[name], rtol=1e-8, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(after_cp[name], after_np[name], rtol=1e-8, atol=1e-12, err_msg=name)


def test_the_random_generator_has_what_minift_calls():
    """CuPy's Generator lacks ``normal`` and ``permutation``; ``backend.CupyGenerator`` adds them."""
    import cupy

    mf.set_backend("cupy")
    try:
        mf.seed(0)
        g = backend.rng()
        z = g.normal(0.0, 0.02, (200, 300))
        assert isinstance(z, cupy.ndarray) and abs(float(z.std()) - 0.02) < 1e-3
        order = backend.to_numpy(g.permutation(50))
        assert sorted(order.tolist()) == list(range(50))
        model = mf.models.TransformerForCausalLM(_tiny_config("gpt2"))  # init calls normal
        assert isinstance(model.lm_head.weight.data, cupy.ndarray)
        assert backend.rng_state() is None  # the state is on the device: checkpoints do not carry it
    finally:
        mf.set_backend("numpy")


def test_top_p_sampling_and_a_training_checkpoint_on_cupy(tmp_path):
    """``put_along_axis`` in top-p filtering, the uniform draw in sampling, and a checkpoint save/resume."""
    from minift.models.generation import filter_logits, generate
    from minift.train.callbacks import TrainerState
    from minift.train.checkpointing import load_checkpoint, save_checkpoint

    z = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    want = filter_logits(z, top_p=0.7)
    mf.set_backend("cupy")
    try:
        got = backend.to_numpy(filter_logits(backend.asarray(z), top_p=0.7))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        mf.seed(0)
        model = mf.models.TransformerForCausalLM(_tiny_config("llama"))
        out = generate(model, backend.asarray(np.array([[1, 2, 3]])), 5, do_sample=True, top_p=0.9, top_k=10)
        assert backend.to_numpy(out).shape == (1, 8)
        opt = mf.optim.AdamW(model.parameters(), lr=1e-3)
        sched = mf.optim.get_scheduler("constant", opt, num_warmup_steps=0, num_training_steps=1)
        ids = backend.asarray(np.array([[1, 2, 3, 4]]))
        model(ids, labels=ids).loss.backward()
        opt.step()
        save_checkpoint(tmp_path / "checkpoint-1", model, opt, sched, TrainerState())
        load_checkpoint(tmp_path / "checkpoint-1", model, opt, sched)
    finally:
        mf.set_backend("numpy")
