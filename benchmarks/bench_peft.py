"""LoRA against full fine-tuning: step time, peak memory and optimizer state, in minift and in PyTorch + HF PEFT.

    python benchmarks/bench_peft.py [--model minilm|smollm2] [--steps 6] [--threads 2] [--rounds 2]

minilm: MiniLM-L6 sequence classification, batch 32 × ≤ 64 tokens of movie reviews (as bench_finetune.py).
smollm2: SmolLM2-135M causal LM, batch 4 × 64 tokens of the same reviews, labels = inputs.
LoRA: r = 8, alpha = 16, dropout 0.1 on q_proj and v_proj (PEFT: query/value for BERT), the head trained
beside it for the classifier. QLoRA (minift only; PyTorch's needs bitsandbytes): the same LoRA on a 4-bit
base — SmolLM2's Linear weights kept in their GGUF Q4_1 blocks, MiniLM's quantized to NF4. Both steps: forward, loss, backward, clip_grad_norm_(1.0), AdamW. Each
configuration runs in its own subprocess (its peak RSS is its own), in alternating rounds; the median
round is shown. Targets (issue 9): a LoRA step ≤ 0.6× a full step; optimizer state proportional to the
trainable parameters.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import available, rss_mb, run_rounds, timed  # noqa: E402

LORA = dict(r=8, lora_alpha=16, lora_dropout=0.1)


def make_batch(path, model_name):
    import numpy as np

    import minift as mf

    tok = mf.tokenization.from_pretrained(model_name)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    n = 32 if model_name == "minilm" else 4
    data = mf.data.load_dataset("sentiment")["train"].select(range(n))
    enc = tok(list(data["text"]), truncation=True, max_length=64, padding=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    labels = np.asarray(data["label"], dtype=np.int64) if model_name == "minilm" else np.where(
        np.asarray(enc["attention_mask"]) == 1, ids, -100)
    np.savez(path, input_ids=ids, attention_mask=np.asarray(enc["attention_mask"], dtype=np.int64), labels=labels)


def run_minift(model_name, method, batch_file, steps):
    import numpy as np

    import minift as mf
    from minift.peft import LoraConfig, get_peft_model

    b = {k: mf.backend.asarray(v) for k, v in np.load(batch_file).items()}
    mf.seed(0)
    if model_name == "minilm":
        model = mf.models.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)
        if method == "qlora":
            mf.models.quantize_model(model, "NF4")
    else:
        model = mf.models.from_pretrained("smollm2", keep_quantized=method == "qlora")
    model.train()
    if method in ("lora", "qlora"):
        saved = ["classifier"] if model_name == "minilm" else None
        model = get_peft_model(model, LoraConfig(target_modules=["q_proj", "v_proj"], modules_to_save=saved, **LORA))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = mf.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def step():
        opt.zero_grad()
        model(**b).loss.backward()
        mf.optim.clip_grad_norm_(params, 1.0)
        opt.step()
        mf.backend.synchronize()

    dt = timed(step, steps)
    state = sum(a.nbytes for st in opt.state.values() for a in st.values() if hasattr(a, "nbytes"))
    weights = sum(mf.models.quant.quantized_bytes(model))  # 4-bit blocks + float parameters and buffers
    return {"ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "weights_mb": weights / 2**20,
            "trainable": sum(int(p.size) for p in params), "optimizer_state_mb": state / 2**20}


def run_torch(model_name, method, batch_file, steps, threads, hf_dir):
    import numpy as np
    import torch
    import transformers

    import minift as mf

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    b = {k: torch.from_numpy(v) for k, v in np.load(batch_file).items()}
    if model_name == "minilm":
        path = os.path.dirname(mf.zoo.path("minilm", "model.safetensors"))
        model = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2)
        targets, saved, task = ["query", "value"], ["classifier"], "SEQ_CLS"
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
        targets, saved, task = ["q_proj", "v_proj"], None, "CAUSAL_LM"
    model.train()
    if method == "lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(target_modules=targets, modules_to_save=saved,
                                                           task_type=task, **LORA))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def step():
        opt.zero_grad()
        model(**b).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    dt = timed(step, steps)
    state = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values() if torch.is_tensor(t))
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())
    return {"ms_per_step": 1000 * dt, "peak_rss_mb": rss_mb(), "weights_mb": weights / 2**20,
            "trainable": sum(p.numel() for p in params), "optimizer_state_mb": state / 2**20}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["minilm", "smollm2"], default="minilm")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker")
    ap.add_argument("--work-dir")
    args = ap.parse_args()
    if args.worker:
        framework, method = args.worker.split("-")
        batch_file = os.path.join(args.work_dir, "batch.npz")
        if framework == "minift":
            res = run_minift(args.model, method, batch_file, args.steps)
        else:
            res = run_torch(args.model, method, batch_file, args.steps, args.threads, os.path.join(args.work_dir, "hf"))
        print(json.dumps(res))
        return
    workers = ["minift-full", "minift-lora", "minift-qlora"]
    if available("torch", "transformers", "peft"):
        workers += ["torch-full", "torch-lora"]
    else:
        print("(PyTorch/transformers/peft not installed: `pip install torch==2.13.0 transformers peft` for their rows)")
    with tempfile.TemporaryDirectory() as tmp:
        make_batch(os.path.join(tmp, "batch.npz"), args.model)
        if args.model == "smollm2" and "torch-full" in workers:
            import subprocess

            save = "import minift as mf, sys; mf.models.save_pretrained(mf.models.from_pretrained('smollm2'), sys.argv[1], format='hf')"
            subprocess.run([sys.executable, "-c", save, os.path.join(tmp, "hf")], check=True)
        rows = run_rounds(__file__, workers, ["--model", args.model, "--work-dir", tmp, "--steps", str(args.steps),
                                              "--threads", str(args.threads)], args.threads, args.rounds)
    what = "MiniLM-L6 sequence classification, batch 32 × ≤ 64" if args.model == "minilm" else \
        "SmolLM2-135M causal LM, batch 4 × ≤ 64"
    print(f"{what} tokens; LoRA r=8 on q, v; AdamW + clipping; {args.threads} threads; median of {args.rounds} rounds")
    print(f"{'':14} {'ms/step':>9} {'trainable':>12} {'weights MB':>11} {'optim. state MB':>16} {'peak RSS MB':>12}")
    for w, r in rows.items():
        print(f"{w:14} {r['ms_per_step']:9.1f} {r['trainable']:12,d} {r['weights_mb']:11.1f} "
              f"{r['optimizer_state_mb']:16.1f} {r['peak_rss_mb']:12.0f}")
    for fw in ("minift", "torch"):
        if f"{fw}-lora" in rows and f"{fw}-full" in rows:
            ratio = rows[f"{fw}-lora"]["ms_per_step"] / rows[f"{fw}-full"]["ms_per_step"]
            print(f"{fw}: a LoRA step takes {ratio:.2f}× a full step (target ≤ 0.60)")
    if "minift-qlora" in rows:
        q, lo = rows["minift-qlora"], rows["minift-lora"]
        # Peak RSS is a high-water mark: MiniLM's QLoRA loads the float model before quantizing it, so its peak
        # still counts the float weights once; the weights column is what the model holds while it trains.
        print(f"minift QLoRA: {q['ms_per_step'] / lo['ms_per_step']:.2f}× a LoRA step's time, weights "
              f"{q['weights_mb']:.1f} MB vs {lo['weights_mb']:.1f} MB, peak RSS {q['peak_rss_mb']:.0f} vs {lo['peak_rss_mb']:.0f} MB")
    if "torch-lora" in rows:
        print(f"minift LoRA speed / PyTorch + PEFT: {rows['torch-lora']['ms_per_step'] / rows['minift-lora']['ms_per_step']:.2f}x")
    with contextlib.suppress(KeyError):
        m, t = rows["minift-full"], rows["torch-full"]
        print(f"minift full speed / PyTorch + HF: {t['ms_per_step'] / m['ms_per_step']:.2f}x")


if __name__ == "__main__":
    main()
