"""Modules: registration, names, state dicts, freezing, modes, init, and the layers against their formulas."""
import math

import numpy as np
import pytest

import minift as mf
from minift import functional as F
from minift import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("scale", np.array([2.0], dtype=np.float32))

    def forward(self, x):
        return self.drop(self.norm(self.proj(x))) * mf.tensor(self.scale)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied, as in GPT-2 / Llama

    def forward(self, ids):
        h = self.emb(ids)
        for b in self.blocks:
            h = b(h) @ mf.tensor(np.ones((3, 4), dtype=np.float32))
        return self.head(h)


def test_parameter_names_follow_attribute_paths_and_tied_weights_count_once():
    m = Model()
    names = [n for n, _ in m.named_parameters()]
    block_names = ["proj.weight", "proj.bias", "norm.weight", "norm.bias"]
    assert names == ["emb.weight"] + [f"blocks.{i}.{n}" for i in (0, 1) for n in block_names]
    assert m.num_parameters() == 10 * 4 + 2 * (4 * 3 + 3 + 3 + 3)
    assert [n for n, _ in m.named_modules()][:4] == ["", "emb", "blocks", "blocks.0"]
    assert "blocks.0.scale" in m.state_dict()


def test_linear_stores_weight_out_by_in_with_pytorch_init_bounds():
    mf.seed(0)
    lin = nn.Linear(400, 30)
    assert lin.weight.shape == (30, 400) and lin.bias.shape == (30,)
    bound = 1 / math.sqrt(400)
    w = lin.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.05)  # std of U(−b, b) is b/√3
    x = np.random.default_rng(0).standard_normal((5, 400)).astype(np.float32)
    np.testing.assert_allclose(lin(mf.tensor(x)).numpy(), x @ w.T + lin.bias.numpy(), rtol=1e-5, atol=1e-5)


def test_seed_makes_init_and_dropout_reproducible():
    mf.seed(7)
    a = nn.Linear(3, 3).weight.numpy().copy()
    d1 = F.dropout(mf.ones(100), 0.5).numpy()
    mf.seed(7)
    b = nn.Linear(3, 3).weight.numpy()
    d2 = F.dropout(mf.ones(100), 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(d1, d2)
    with pytest.raises(ValueError, match=r"mf.seed's n must be an integer >= 0, got 7.5"):
        mf.seed(7.5)  # int(7.5) would seed with 7 without a word


def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    x = mf.ones(20000)
    y = F.dropout(x, 0.3).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.02
    assert abs(y.mean() - 1.0) < 0.03  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(F.dropout(x, 0.3, training=False).numpy(), 1.0)


def test_train_and_eval_reach_every_submodule():
    m = Model().eval()
    assert all(not mod.training for mod in m.modules())
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(m(ids).numpy(), m(ids).numpy())  # no dropout in eval
    m.train()
    assert all(mod.training for mod in m.modules())


def test_state_dict_round_trip_and_strict_errors():
    a, b = Model(), Model()
    b.load_state_dict(a.state_dict())
    ids = np.array([[1, 2]])
    np.testing.assert_array_equal(a.eval()(ids).numpy(), b.eval()(ids).numpy())
    sd = dict(a.state_dict())
    sd.pop("blocks.1.norm.bias")
    sd["extra.weight"] = np.ones(2)
    sd["head.weight"] = np.ones((10, 5))
    with pytest.raises(KeyError) as e:
        b.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys" in msg and "blocks.1.norm.bias" in msg
    assert "unexpected keys" in msg and "extra.weight" in msg
    assert "head.weight: checkpoint has shape (10, 5), the model expects (10, 4)" in msg
    sd["head.weight"] = np.ones((10, 4), dtype=np.float32)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["blocks.1.norm.bias"] and unexpected == ["extra.weight"]


def test_load_state_dict_keeps_parameter_identity():
    m = nn.Linear(2, 2)
    w = m.weight
    m.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.ones(2)})
    assert m.weight is w and np.all(w.numpy() == 0) and w.dtype == np.float32


def test_frozen_parameters_get_no_gradient_and_do_not_move():
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    m[0].requires_grad_(False)
    before = m[0].weight.numpy().copy()
    opt = mf.optim.AdamW(m.parameters(), lr=0.1)
    loss = F.cross_entropy(m(mf.tensor(np.ones((5, 3), dtype=np.float32))), np.array([0, 1, 0, 1, 0]))
    loss.backward()
    assert m[0].weight.grad is None and m[2].weight.grad is not None
    opt.step()
    np.testing.assert_array_equal(m[0].weight.numpy(), before)
    assert m.num_parameters(trainable_only=True) == 4 * 2 + 2


def test_embedding_padding_row_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=0)
    assert np.all(emb.weight.numpy()[0] == 0)
    emb(np.array([[0, 1, 1, 0]])).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[0], 0.0)
    np.testing.assert_array_equal(emb.weight.grad[1], 2.0)  # id 1 used twice: contributions add


def test_norm_modules_match_the_functional_forms():
    x = mf.tensor(np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32))
    ln, rms = nn.LayerNorm(5), nn.RMSNorm(5, eps=1e-6)
    xn = x.numpy()
    expected = (xn - xn.mean(1, keepdims=True)) / np.sqrt(xn.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(x).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(rms(x).numpy(), xn / np.sqrt((xn**2).mean(1, keepdims=True) + 1e-6), atol=1e-5)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear)
    ml = nn.ModuleList([nn.Linear(1, 1)]).append(nn.Linear(1, 1))
    assert len(ml) == 2
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    md = nn.ModuleDict({"a": nn.Linear(1, 2)})
    assert "a" in md and list(md.keys()) == ["a"]
    with pytest.raises(TypeError, match="holds Modules"):
        ml.append(3)
    assert "Linear(in_features=2, out_features=3, bias=True)" in repr(seq)


def test_module_without_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super"):
        Bad()


def test_module_to_float64_casts_parameters_in_place():
    m = nn.Linear(2, 2)
    w = m.weight
    m.to(dtype=np.float64)
    assert m.weight is w and w.dtype == np.float64
