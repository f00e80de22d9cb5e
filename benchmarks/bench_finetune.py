"""A MiniLM fine-tuning step, minift vs PyTorch + Hugging Face transformers, on the same batch and threads.

    python benchmarks/bench_finetune.py [--steps 8] [--threads 2] [--batch 32] [--max-length 64] [--rounds 3] [--profile]

The step is the one every lesson and ``minift demo`` repeat: MiniLM-L6 (22.7M parameters) with a fresh
2-way sequence-classification head, training mode (dropout 0.1), batch 32 movie reviews padded to at
most 64 tokens, forward + cross-entropy + backward + ``clip_grad_norm_(1.0)`` + AdamW (weight decay 0.01).
Both frameworks load the same ``model.safetensors`` and tokenize the same reviews; each runs in its own
subprocess with the same number of BLAS / intra-op threads, so its peak RSS is its own.

``--profile`` also prints minift's per-op table of the step (``mf.profile``). PyTorch is optional:
without it only minift's row is printed. Target (issue 8): minift ≥ 1.0× PyTorch + HF, peak memory ≤ 1.2×.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import available, rss_mb, run_rounds, timed, torch_device, torch_sync  # noqa: E402


def make_batch(path, batch, max_length):
    """Tokenize the first ``batch`` training reviews with MiniLM's tokenizer; save ids, mask and labels."""
    import numpy as np

    import minift as mf

    tok = mf.tokenization.from_pretrained("minilm")
    data = mf.data.load_dataset("sentiment")["train"].select(range(batch))
    enc = tok(list(data["text"]), truncation=True, max_length=max_length, padding=True)
    np.savez(path, input_ids=np.asarray(enc["input_ids"], dtype=np.int64),
             attention_mask=np.asarray(enc["attention_mask"], dtype=np.int64),
             labels=np.asarray(data["label"], dtype=np.int64))


def run_minift(batch_file, steps, profile):
    import numpy as np

    import minift as mf

    b = {k: mf.backend.asarray(v) for k, v in np.load(batch_file).items()}
    mf.seed(0)
    model = mf.models.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)
    model.train()
    opt = mf.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    base = rss_mb()

    def step(prof=None):
        region = prof.region if prof is not None else (lambda name: contextlib.nullcontext())
        opt.zero_grad()
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        out.loss.backward()
        with region("clip_grad_norm_"):
            mf.optim.clip_grad_norm_(model.parameters(), 1.0)
        with region("AdamW.step"):
            opt.step()
        mf.backend.synchronize()  # on a GPU: wait for the kernels before reading the clock

    dt = timed(step, steps)
    res = {"ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "model_rss_mb": base}
    if profile:
        with mf.profile() as prof:
            for _ in range(3):
                step(prof)
        res["profile"] = prof.table(per=3)
    return res


def run_torch(batch_file, steps, threads):
    import numpy as np
    import torch
    import transformers

    import minift as mf

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch_device()
    b = {k: torch.from_numpy(v).to(device) for k, v in np.load(batch_file).items()}
    model_dir = os.path.dirname(mf.zoo.path("minilm", "model.safetensors"))
    transformers.logging.set_verbosity_error()
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    base = rss_mb()

    def step():
        opt.zero_grad()
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch_sync(device)

    dt = timed(step, steps)
    return {"ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "model_rss_mb": base}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each; the median round is shown")
    ap.add_argument("--profile", action="store_true", help="also print minift's per-op profile of the step")
    ap.add_argument("--worker", choices=["minift", "torch"])
    ap.add_argument("--batch-file")
    args = ap.parse_args()
    if args.worker:
        if args.worker == "minift":
            res = run_minift(args.batch_file, args.steps, args.profile)
        else:
            res = run_torch(args.batch_file, args.steps, args.threads)
        print(json.dumps(res))
        return
    workers = ["minift"] + (["torch"] if available("torch", "transformers") else [])
    if len(workers) == 1:
        print("(PyTorch/transformers not installed: `pip install torch==2.13.0 transformers` for the comparison row)")
    with tempfile.TemporaryDirectory() as tmp:
        batch_file = os.path.join(tmp, "batch.npz")
        make_batch(batch_file, args.batch, args.max_length)
        rows = run_rounds(__file__, workers, ["--batch-file", batch_file, "--steps", str(args.steps), "--threads",
                                              str(args.threads)], args.threads, args.rounds,
                          last_extra=["--profile"] if args.profile else [])
    print(f"MiniLM-L6 full fine-tuning step: batch {args.batch}, ≤ {args.max_length} tokens, dropout on, "
          f"AdamW + clip_grad_norm_; {args.threads} threads, median of {args.steps} steps, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'':16} {'ms/step':>9} {'peak RSS MB':>12} {'after load MB':>14}")
    names = {"minift": "minift", "torch": "PyTorch + HF"}
    for fw, r in rows.items():
        print(f"{names[fw]:16} {r['ms_per_step']:9.1f} {r['peak_rss_mb']:12.0f} {r['model_rss_mb']:15.0f}")
    if "torch" in rows:
        m, t = rows["minift"], rows["torch"]
        print(f"minift speed / PyTorch + HF: {t['ms_per_step'] / m['ms_per_step']:.2f}x (target ≥ 1.00x); "
              f"peak RSS ratio {m['peak_rss_mb'] / t['peak_rss_mb']:.2f} (target ≤ 1.20)")
    print("each round, ms/step: " + "; ".join(f"{fw} " + ", ".join(f"{t:.0f}" for t in r["rounds"]) for fw, r in rows.items()))
    if args.profile:
        print("\nminift profile of one step (mean of 3):")
        print(rows["minift"]["profile"])


if __name__ == "__main__":
    main()
