"""SmolLM2-135M greedy generation with the KV cache: minift vs PyTorch + Hugging Face transformers.

    python benchmarks/bench_generate.py [--new-tokens 64] [--threads 2] [--batch 1]

Both run the same weights: minift reads the zoo's GGUF (dequantized to float32) and writes them as a
Hugging Face directory (``save_pretrained(format="hf")``), which transformers loads. Same chat prompt,
greedy decoding, the KV cache on, exactly ``--new-tokens`` tokens (the end-of-sequence token is not
allowed to stop either early), the same number of threads; each in its own subprocess. Reported:
prompt (prefill) time, decode tokens/s, and whether the two produced the same tokens.
Target (issue 8): minift decode tokens/s ≥ 1.0× PyTorch + HF.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import available, rss_mb, thread_env  # noqa: E402

PROMPT = "What is the capital of France? Answer in one sentence, then name three famous sights there."


def time_generation(gen, batch, new_tokens):
    """Prefill = the time to make 1 token; decode tokens/s from the rest of a ``new_tokens`` run. (results, ids)"""
    gen(2)  # warm-up
    t0 = time.perf_counter()
    gen(1)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = gen(new_tokens)
    total = time.perf_counter() - t0
    return {"prefill_ms": 1000 * prefill, "decode_tok_s": batch * (new_tokens - 1) / (total - prefill),
            "peak_rss_mb": rss_mb()}, out


def prompt_ids(batch):
    import minift as mf

    tok = mf.tokenization.from_pretrained("smollm2")
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = tok([text], add_special_tokens=False)["input_ids"][0].tolist()
    return [ids] * batch


def run_minift(ids, new_tokens):
    import numpy as np

    import minift as mf

    model = mf.models.from_pretrained("smollm2")
    eos = mf.tokenization.from_pretrained("smollm2").eos_token_id
    ids = np.asarray(ids)

    def gen(n):
        # eos_token_id=-1 names no real token: every sequence runs the full n steps, as min_new_tokens in HF
        return mf.models.generation.generate(model, ids, max_new_tokens=n, eos_token_id=-1)

    res, out = time_generation(gen, ids.shape[0], new_tokens)
    return res | {"tokens": mf.backend.to_numpy(out)[0, ids.shape[1]:].tolist(), "eos": eos}


def run_torch(ids, new_tokens, threads, hf_dir):
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    ids = torch.tensor(ids)

    def gen(n):
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False, use_cache=True, pad_token_id=0)

    res, out = time_generation(gen, ids.shape[0], new_tokens)
    return res | {"tokens": out[0, ids.shape[1]:].tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--worker", choices=["minift", "torch"])
    ap.add_argument("--work-dir")
    args = ap.parse_args()
    if args.worker:
        ids = json.load(open(os.path.join(args.work_dir, "ids.json")))
        if args.worker == "minift":
            res = run_minift(ids, args.new_tokens)
        else:
            res = run_torch(ids, args.new_tokens, args.threads, os.path.join(args.work_dir, "hf"))
        print(json.dumps(res))
        return
    env = thread_env(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids = prompt_ids(args.batch)
        json.dump(ids, open(os.path.join(tmp, "ids.json"), "w"))
        if available("torch", "transformers"):
            # written by a subprocess, so that the workers forked from here do not start with its memory
            save = "import minift as mf, sys; mf.models.save_pretrained(mf.models.from_pretrained('smollm2'), sys.argv[1], format='hf')"
            subprocess.run([sys.executable, "-c", save, os.path.join(tmp, "hf")], env=env, check=True)
            workers = ("minift", "torch")
        else:
            print("(PyTorch/transformers not installed: `pip install torch==2.13.0 transformers` for the comparison row)")
            workers = ("minift",)
        for fw in workers:
            cmd = [sys.executable, __file__, "--worker", fw, "--work-dir", tmp, "--new-tokens", str(args.new_tokens),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {fw} worker failed:\n{out.stderr}")
            rows[fw] = json.loads(out.stdout.strip().splitlines()[-1])
    n_prompt = len(ids[0])
    print(f"SmolLM2-135M greedy generation, KV cache: prompt {n_prompt} tokens × batch {args.batch}, "
          f"{args.new_tokens} new tokens, float32, {args.threads} threads")
    print(f"{'':16} {'prefill ms':>11} {'decode tok/s':>13} {'peak RSS MB':>12}")
    names = {"minift": "minift", "torch": "PyTorch + HF"}
    for fw, r in rows.items():
        print(f"{names[fw]:16} {r['prefill_ms']:11.1f} {r['decode_tok_s']:13.1f} {r['peak_rss_mb']:12.0f}")
    if "torch" in rows:
        m, t = rows["minift"], rows["torch"]
        common = next((i for i, (a, b) in enumerate(zip(m["tokens"], t["tokens"])) if a != b), len(t["tokens"]))
        eos = m["eos"]
        answer = m["tokens"].index(eos) if eos in m["tokens"] else len(m["tokens"])  # the answer's tokens, before its EOS
        print(f"minift decode speed / PyTorch + HF: {m['decode_tok_s'] / t['decode_tok_s']:.2f}x (target ≥ 1.00x)")
        print(f"the same greedy tokens up to the end of the answer: {min(common, answer)}/{answer} "
              "(where minift ends the answer, HF's min_new_tokens forbids the end-of-sequence token, so the texts part)")


if __name__ == "__main__":
    main()
