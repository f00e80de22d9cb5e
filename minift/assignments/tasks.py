"""The coursework tasks: every ``# TASK id`` region in the tree must use one of these ids.

Each task is a piece of minift a student writes; its tests carry ``@pytest.mark.task(id)``.
Listed in the order a course would hand them out.
"""

TASKS = {
    "gradcheck.central_difference": "the central finite difference along one coordinate (minift/autograd/gradcheck.py)",
    "autograd.unbroadcast": "reduce a broadcast gradient back to the input's shape (minift/autograd/ops_elementwise.py)",
    "ops.elementwise_backward": "backward of mul, div, exp, log, tanh, sigmoid (minift/autograd/ops_elementwise.py)",
    "ops.matmul_backward": "gradients of a batched, broadcasting matmul (minift/autograd/ops_linalg.py)",
    "fused.softmax_backward": "the softmax vector-Jacobian product (minift/autograd/ops_fused.py)",
    "fused.cross_entropy_backward": "gradient of cross-entropy w.r.t. the logits (minift/autograd/ops_fused.py)",
    "fused.layer_norm_backward": "closed-form gradient of layer norm w.r.t. its input (minift/autograd/ops_fused.py)",
    "optim.adamw_step": "one AdamW update of a parameter (minift/optim/adamw.py)",
    "attention.backward": "gradients of scaled dot-product attention (minift/autograd/ops_attention.py)",
    "quant.dequantize_q4_1": "GGUF's 4-bit block format back to floats (minift/models/quant.py)",
    "quant.dequantize_nf4": "QLoRA's NF4 blocks back to floats: look up each 4-bit code, scale by absmax (minift/models/quant.py)",
    "train.count_targets": "how many targets a micro-batch's mean loss averages over (minift/train/trainer.py)",
    "train.accumulation_weight": "weight micro-batch losses so accumulation equals one big batch (minift/train/trainer.py)",
    "train.llrd": "the learning rate of each depth under layer-wise decay (minift/train/strategies.py)",
    "data.align_labels": "NER labels on subword tokens, -100 on specials and continuation pieces (minift/data/alignment.py)",
    "qa.best_span": "the best valid answer span from start and end logits (minift/data/qa.py)",
    "peft.lora_forward": "a frozen Linear plus the scaled low-rank update s·B(A(x)) (minift/peft/lora.py)",
    "peft.lora_merge": "the weight update s·BA that merging folds into W (minift/peft/lora.py)",
    "peft.dora_norm": "DoRA's row norms of the adapted weight W + s·BA (minift/peft/lora.py)",
    "peft.adapter_block": "a bottleneck adapter: h + up(act(down(h))) (minift/peft/adapters.py)",
    "peft.prefix_kv": "prefix tuning: each layer's learned keys and values from the prefix encoder (minift/peft/prefix.py)",
    "peft.ia3_forward": "IA3: scale a layer's output, or a feed-forward layer's input, by a learned vector (minift/peft/ia3.py)",
}
