"""Forward + backward throughput and peak memory of a gpt2-family transformer: minift vs PyTorch (CPU eager).

    python benchmarks/bench_transformer.py [--steps 10] [--threads 2] [--rounds 3] [--profile]

The model: 4 layers, width 256, 8 heads, context T=128, batch B=8, vocabulary 4096, tied LM head, next-token
cross-entropy. Each framework runs in its own subprocess (so peak RSS is its own), with the same number of
BLAS/intra-op threads. PyTorch is optional: without it only minift's row is printed.

Also printed: the machine's float32 GEMM rate (a 1024³ matrix product, best of 5, same threads) and the
share of it minift's step reaches, counting the step's matrix-product FLOPs: 6 per weight per token for
the Linear layers and the tied LM head (2 forward, 4 backward) plus 12·L·B·T²·C for attention's two
products. ``--profile`` adds minift's per-op table (``mf.profile``).
Targets (issue 8): minift ≥ 1.0× PyTorch's tokens/s and ≥ 50% of the GEMM rate.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import available, rss_mb, run_rounds, torch_device, torch_sync  # noqa: E402

SHAPE = dict(layers=4, width=256, heads=8, T=128, B=8, vocab=4096)


def step_flops():
    """Matrix-product FLOPs of one forward + backward step (see the module docstring)."""
    s = SHAPE
    c, tokens = s["width"], s["B"] * s["T"]
    linear_weights = s["layers"] * 12 * c * c + c * s["vocab"]  # q, k, v, o (4C²) + MLP (8C²) per layer; LM head
    return 6 * tokens * linear_weights + 12 * s["layers"] * s["B"] * s["T"] ** 2 * c


def gemm_rate():
    """The machine's float32 GEMM rate in GFLOP/s: the best of five 1024×1024 @ 1024×1024 products.

    Measured before minift is imported, with OpenBLAS's own threads (minift holds OpenBLAS to one thread
    and splits products over its workers instead): the rate of the BLAS as it comes.
    """
    import numpy as np

    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    best = float("inf")
    for _ in range(6):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best / 1e9


def run_minift(steps, profile=False):
    import numpy as np

    rate = gemm_rate()  # before importing minift (see gemm_rate)
    import minift as mf

    s = SHAPE
    mf.seed(0)
    cfg = mf.models.TransformerConfig(family="gpt2", vocab_size=s["vocab"], hidden_size=s["width"],
                                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"], max_position_embeddings=s["T"])
    model = mf.models.TransformerForCausalLM(cfg)
    ids = mf.backend.asarray(np.random.default_rng(0).integers(0, s["vocab"], (s["B"], s["T"])))
    base = rss_mb()

    def step():
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        mf.backend.synchronize()  # on a GPU: wait for the kernels before reading the clock

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    res = {"tokens_per_s": s["B"] * s["T"] / dt, "ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "model_rss_mb": base,
           "gemm_gflops": rate}
    if profile:
        with mf.profile() as prof:
            for _ in range(3):
                step()
        res["profile"] = prof.table(per=3)
    return res


def run_torch(steps, threads):
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    s = SHAPE

    class Block(nn.Module):
        def __init__(self, c, h):
            super().__init__()
            self.h = h
            self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
            self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
            self.up, self.down = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

        def forward(self, x):
            b, t, c = x.shape
            y = self.ln1(x)
            q, k, v = (f(y).view(b, t, self.h, c // self.h).transpose(1, 2) for f in (self.q, self.k, self.v))
            a = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
            x = x + self.o(a)
            return x + self.down(TF.gelu(self.up(self.ln2(x)), approximate="tanh"))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(s["vocab"], s["width"]), nn.Embedding(s["T"], s["width"])
            self.blocks = nn.ModuleList(Block(s["width"], s["heads"]) for _ in range(s["layers"]))
            self.ln = nn.LayerNorm(s["width"])

        def forward(self, ids):
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
            for blk in self.blocks:
                x = blk(x)
            logits = self.ln(x) @ self.tok.weight.T
            return TF.cross_entropy(logits[:, :-1].reshape(-1, s["vocab"]), ids[:, 1:].reshape(-1))

    device = torch_device()
    model = LM().to(device)
    ids = torch.randint(0, s["vocab"], (s["B"], s["T"])).to(device)
    base = rss_mb()

    def step():
        model.zero_grad()
        model(ids).backward()
        torch_sync(device)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return {"tokens_per_s": s["B"] * s["T"] / dt, "ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "model_rss_mb": base}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each; the median round is shown")
    ap.add_argument("--profile", action="store_true", help="also print minift's per-op profile of the step")
    ap.add_argument("--worker", choices=["minift", "torch"])
    args = ap.parse_args()
    if args.worker:
        res = run_minift(args.steps, args.profile) if args.worker == "minift" else run_torch(args.steps, args.threads)
        print(json.dumps(res))
        return
    workers = ["minift"] + (["torch"] if available("torch") else [])
    if len(workers) == 1:
        print("(PyTorch not installed: `pip install torch==2.13.0` for the comparison row)")
    rows = run_rounds(__file__, workers, ["--steps", str(args.steps), "--threads", str(args.threads)], args.threads,
                      args.rounds, last_extra=["--profile"] if args.profile else [])
    s = SHAPE
    print(f"gpt2 family: {s['layers']} layers, width {s['width']}, {s['heads']} heads, T={s['T']}, B={s['B']}, "
          f"vocab {s['vocab']}; forward+backward, {args.threads} threads, {args.steps} timed steps, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'':8} {'tokens/s':>10} {'ms/step':>9} {'peak RSS MB':>12} {'after build MB':>15}")
    for fw, r in rows.items():
        print(f"{fw:8} {r['tokens_per_s']:10.0f} {r['ms_per_step']:9.1f} {r['peak_rss_mb']:12.0f} {r['model_rss_mb']:15.0f}")
    m = rows["minift"]
    achieved = step_flops() / (m["ms_per_step"] / 1000) / 1e9
    print(f"machine float32 GEMM rate: {m['gemm_gflops']:.0f} GFLOP/s; minift's step: {achieved:.0f} GFLOP/s of matrix "
          f"products = {achieved / m['gemm_gflops']:.0%} of it (target ≥ 50%)")
    if "torch" in rows:
        print(f"minift / PyTorch throughput: {m['tokens_per_s'] / rows['torch']['tokens_per_s']:.2f}x (target ≥ 1.00x); "
              f"peak RSS ratio {m['peak_rss_mb'] / rows['torch']['peak_rss_mb']:.2f} (target ≤ 1.20)")
    print("each round, ms/step: " + "; ".join(f"{fw} " + ", ".join(f"{t:.0f}" for t in r["rounds"]) for fw, r in rows.items()))
    if args.profile:
        print("\nminift profile of one step (mean of 3):")
        print(m["profile"])


if __name__ == "__main__":
    main()
