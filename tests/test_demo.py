"""The main job: it trains, its gradient check passes, and it writes a real PNG and a JSON log."""
import json

import numpy as np

import minift as mf
from minift import functional as F
from minift.demo import run_demo, spirals
from minift.plotting import plot_graph


def test_demo_learns_the_spirals_and_writes_its_files(tmp_path):
    res = run_demo(out_dir=tmp_path, steps=400, quiet=True)
    assert res["final_loss"] < 0.5 * res["first_loss"]
    assert res["val_accuracy"] > 0.8
    png = (tmp_path / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    log = json.loads((tmp_path / "log.json").read_text())
    assert len(log["losses"]) == 400 and max(log["lrs"]) == 1e-2


def test_spirals_are_balanced_and_not_linearly_separable():
    x, y = spirals(100)
    assert x.shape == (200, 2) and np.bincount(y).tolist() == [100, 100]
    # the best linear least-squares classifier is near chance
    A = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(A, 2.0 * y - 1, rcond=None)[0]
    assert ((A @ w > 0) == y).mean() < 0.75


def test_plot_graph_draws_a_png(tmp_path):
    a = mf.tensor(np.ones((2, 3)), requires_grad=True)
    w = mf.tensor(np.ones((3, 2)), requires_grad=True)
    loss = F.cross_entropy((a @ w).tanh(), np.array([0, 1]))
    plot_graph(loss, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_the_fine_tuning_demo_compares_probe_lora_and_full(tmp_path, monkeypatch, capsys):
    # `make demo`, shrunk (MINIFT_FAST=1: 256 training rows, 128 evaluation rows; 4 steps)
    from minift.cli import main

    monkeypatch.setenv("MINIFT_FAST", "1")
    assert main(["demo", "--out", str(tmp_path), "--steps", "4"]) == 0
    table = capsys.readouterr().out
    assert "probe" in table and "lora" in table and "full" in table and "accuracy" in table
    probe, lora, full = (json.loads((tmp_path / m / "results.json").read_text()) for m in ("probe", "lora", "full"))
    assert probe["trainable_parameters"] == 384 * 2 + 2  # MiniLM's head: 384 × 2 weights + 2 biases
    # LoRA: r = 8 on q and v of 6 layers, r·(in + out) each, the pooler and the classifier
    assert lora["trainable_parameters"] == 6 * 2 * 8 * (384 + 384) + (384 * 384 + 384) + 384 * 2 + 2
    assert full["trainable_parameters"] == full["total_parameters"] == probe["total_parameters"]
    assert probe["train_steps"] == lora["train_steps"] == full["train_steps"] == 4
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "results.md").read_text().count("\n") >= 5
