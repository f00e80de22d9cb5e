"""The main job until the fine-tuning issues land: train a small MLP end to end with minift's engine.

Two interleaved spirals (a classic that a linear model cannot separate), an MLP, AdamW with linear warmup
and cosine decay, gradient clipping. Before training, a gradient-check report proves every layer's
backward against central differences; after, it prints the loss and accuracy and writes a loss curve.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import functional as F
from . import nn, optim
from .autograd import gradcheck, tensor
from .backend import seed


def spirals(n_per_class=200, noise=0.2, rng=None):
    """Two spirals in 2-D: x (2n, 2) float32, y (2n,) int64 in {0, 1}."""
    rng = rng or np.random.default_rng(0)
    t = np.sqrt(rng.uniform(0, 1, n_per_class)) * 3 * math.pi  # angle, denser near the centre
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * math.pi)  # (n, 2)
    x = np.concatenate([arm, -arm]) + noise / 3 * rng.standard_normal((2 * n_per_class, 2))
    y = np.concatenate([np.zeros(n_per_class), np.ones(n_per_class)]).astype(np.int64)
    return x.astype(np.float32), y


def mlp(hidden=64):
    return nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))


def gradcheck_report(model, x, y):
    """Check d(loss)/d(each parameter) of ``model`` in float64 on a few examples; returns (name, shape, ok) rows.

    The model is cast to float64 for the check and back to float32 after (an exact round trip).
    """
    rows = []
    params = dict(model.named_parameters())
    model.to(dtype=np.float64)
    xb, yb = tensor(x[:8].astype(np.float64)), y[:8]
    try:
        for name, p in params.items():
            for q in params.values():
                q.requires_grad = q is p  # check one parameter at a time
            ok = gradcheck(lambda _p: F.cross_entropy(model(xb), yb), (p,))
            rows.append((name, tuple(p.shape), ok))
    finally:
        model.requires_grad_(True)
        model.to(dtype=np.float32)
    return rows


ENGINE_DEMO_OUT = "out/engine-demo"  # `minift demo --engine`'s folder, apart from the fine-tuning demo's out/demo


def run_demo(out_dir=ENGINE_DEMO_OUT, steps=1500, batch_size=64, lr=1e-2, warmup=30, quiet=False):
    """Train, report, plot. Returns a dict of the final numbers (also written to ``out_dir/log.json``)."""
    from .train.trainer import check_output_dir

    seed(0)
    out = Path(out_dir)
    check_output_dir(out, flag="--out")
    say = (lambda *a: None) if quiet else print
    x, y = spirals()
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(x))
    n_val = len(x) // 5
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    model = mlp()

    say("gradient check (float64 central differences vs. hand-written backward):")
    for name, shape, ok in gradcheck_report(model, x[tr_idx], y[tr_idx]):
        say(f"  {name:12} {str(shape):10} {'ok' if ok else 'FAILED'}")

    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = optim.get_cosine_schedule_with_warmup(opt, warmup, steps)
    losses, lrs, norms = [], [], []
    t0 = time.time()
    bar = tqdm(range(steps), desc="training", disable=quiet, ncols=80, mininterval=0.5)
    for step in bar:
        idx = rng.choice(tr_idx, batch_size, replace=False)
        loss = F.cross_entropy(model(tensor(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        norms.append(optim.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        lrs.append(sched.get_last_lr()[0])
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    elapsed = time.time() - t0

    model.eval()
    from .autograd import no_grad

    with no_grad():
        val_logits = model(tensor(x[val_idx]))
        val_loss = F.cross_entropy(val_logits, y[val_idx]).item()
        val_acc = float((val_logits.numpy().argmax(1) == y[val_idx]).mean())
    from .models.checkpoint import write_text_atomically
    from .plotting import plot_curves

    plot_curves({"train loss": losses}, out / "loss.png", title="MLP on two spirals (AdamW, warmup + cosine)", smooth=10)
    result = {"steps": steps, "first_loss": losses[0], "final_loss": float(np.mean(losses[-10:])), "val_loss": val_loss,
              "val_accuracy": val_acc, "seconds": round(elapsed, 2), "loss_curve": str(out / "loss.png")}
    write_text_atomically(out / "log.json", json.dumps({**result, "losses": losses, "lrs": lrs, "grad_norms": norms},
                                                       indent=1))
    say(f"loss {result['first_loss']:.3f} -> {result['final_loss']:.3f} (mean of the last {min(10, steps)} step{'s' if min(10, steps) != 1 else ''}), "
        f"validation loss {val_loss:.3f}, accuracy {val_acc:.1%}, {elapsed:.1f}s")
    say(f"loss curve: {out / 'loss.png'}")
    return result
