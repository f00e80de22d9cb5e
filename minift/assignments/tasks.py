"""The coursework tasks, one registry: every ``# TASK id`` region in the tree must use one of these ids.

Each task is a piece of minift a student writes; its tests carry ``@pytest.mark.task(id)``. Listed in the
order a course would hand them out. ``depends``: the tasks whose code this task's tests run through (they
must be done first — a student stuck on one of them sees this task's tests fail too). ``points``: its weight
in ``minift assignments grade``.

Property tasks (``target`` set) turn it round: the student writes hypothesis tests (``tests/test_exercises.py``)
for the target task's code; they score by passing on the correct code and killing the target's mutants.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    file: str
    points: int = 10
    depends: tuple = ()
    target: str | None = None  # property tasks: the task whose code the student's tests must check

    @property
    def is_property(self):
        return self.target is not None


TASK_LIST = [
    # the dependencies are measured: `minift assignments check --isolation` strips one task at a time and
    # finds whose tests break; every task's list below names exactly those
    Task("gradcheck.central_difference", "the central finite difference along one coordinate", "minift/autograd/gradcheck.py", 5),
    Task("autograd.unbroadcast", "reduce a broadcast gradient back to the input's shape", "minift/autograd/ops_elementwise.py", 10,
         ("gradcheck.central_difference",)),
    Task("ops.elementwise_backward", "backward of mul, div, exp, log, tanh, sigmoid", "minift/autograd/ops_elementwise.py", 10,
         ("gradcheck.central_difference", "autograd.unbroadcast")),
    Task("ops.matmul_backward", "gradients of a batched, broadcasting matmul", "minift/autograd/ops_linalg.py", 15,
         ("gradcheck.central_difference", "autograd.unbroadcast")),
    Task("fused.softmax_backward", "the softmax vector-Jacobian product", "minift/autograd/ops_fused.py", 10,
         ("gradcheck.central_difference",)),
    Task("fused.cross_entropy_backward", "gradient of cross-entropy w.r.t. the logits", "minift/autograd/ops_fused.py", 10,
         ("gradcheck.central_difference",)),
    Task("fused.layer_norm_backward", "closed-form gradients of layer norm and RMS norm w.r.t. their input",
         "minift/autograd/ops_fused.py", 15, ("gradcheck.central_difference", "autograd.unbroadcast")),
    Task("optim.adamw_step", "one AdamW update: moments, bias correction, the step, decoupled decay", "minift/optim/adamw.py", 15),
    Task("attention.backward", "gradients of scaled dot-product attention", "minift/autograd/ops_attention.py", 15,
         ("gradcheck.central_difference", "autograd.unbroadcast")),
    Task("quant.dequantize_q4_1", "GGUF's 4-bit block format back to floats", "minift/models/quant.py", 5),
    Task("quant.dequantize_nf4", "QLoRA's NF4 blocks back to floats: look up each 4-bit code, scale by absmax",
         "minift/models/quant.py", 5),
    Task("train.count_targets", "how many targets a micro-batch's mean loss averages over", "minift/train/trainer.py", 5),
    Task("train.accumulation_weight", "weight micro-batch losses so accumulation equals one big batch",
         "minift/train/trainer.py", 10, ("train.count_targets", "autograd.unbroadcast", "ops.elementwise_backward",
                                         "fused.cross_entropy_backward", "fused.layer_norm_backward", "attention.backward")),
    Task("train.llrd", "the learning rate of each depth under layer-wise decay", "minift/train/strategies.py", 5),
    Task("data.align_labels", "NER labels on subword tokens, -100 on specials and continuation pieces",
         "minift/data/alignment.py", 10),
    Task("qa.best_span", "the best valid answer span from start and end logits", "minift/data/qa.py", 10),
    Task("peft.lora_forward", "a frozen Linear plus the scaled low-rank update s·B(A(x))", "minift/peft/lora.py", 10,
         ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward")),
    Task("peft.lora_merge", "the weight update s·BA that merging folds into W", "minift/peft/lora.py", 5,
         ("peft.lora_forward",)),
    Task("peft.dora_norm", "DoRA's row norms of the adapted weight W + s·BA", "minift/peft/lora.py", 5),
    Task("peft.adapter_block", "a bottleneck adapter: h + up(act(down(h)))", "minift/peft/adapters.py", 5),
    Task("peft.ia3_forward", "IA3: scale a layer's output, or a feed-forward layer's input, by a learned vector",
         "minift/peft/ia3.py", 5),
    Task("peft.prefix_kv", "prefix tuning: each layer's learned keys and values from the prefix encoder",
         "minift/peft/prefix.py", 10, ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward",
                                        "fused.layer_norm_backward", "attention.backward")),
    Task("continual.fisher_example", "one example's squared log-likelihood gradients: empirical, true, sampled Fisher",
         "minift/continual.py", 10),
    Task("continual.ewc_penalty", "EWC's penalty (λ/2) Σ F (θ − θ*)²", "minift/continual.py", 5,
         ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward")),
    Task("continual.backward_transfer", "backward transfer from the accuracy matrix", "minift/continual.py", 5),
    Task("multitask.temperature_probabilities", "temperature sampling over tasks: p_i ∝ n_i^(1/T), in log space",
         "minift/multitask.py", 5),
    Task("sft.completion_labels", "SFT labels: −100 on the prompt, the completion and its EOS trained",
         "minift/sft.py", 5),
    Task("rlhf.bradley_terry_loss", "a reward model's pairwise loss −log σ(r_c − r_r − margin)", "minift/rlhf/losses.py", 5,
         ("autograd.unbroadcast",)),
    Task("rlhf.compute_gae", "generalized advantage estimation, backwards over each sequence's positions",
         "minift/rlhf/losses.py", 10),
    Task("rlhf.kl_penalty", "the k1, k2, k3 estimators of KL(π ‖ π_ref) per token", "minift/rlhf/losses.py", 5,
         ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward")),
    Task("rlhf.ppo_policy_loss", "PPO's clipped surrogate: the max of −Aρ and −A·clip(ρ, 1 ± ε)", "minift/rlhf/losses.py", 10,
         ("autograd.unbroadcast", "ops.elementwise_backward")),
    Task("rlhf.ppo_rewards", "PPO's per-token rewards: −β·KL on every token, the score on the last real one",
         "minift/rlhf/ppo.py", 5),
    Task("rlhf.dpo_loss", "DPO's sigmoid, hinge and IPO losses and the implicit rewards", "minift/rlhf/losses.py", 10,
         ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward")),
    Task("rlhf.grpo_advantages", "GRPO's group-relative advantages (r − group mean) / (group std + 1e-4)",
         "minift/rlhf/losses.py", 5),
    Task("rlhf.grpo_loss", "GRPO's loss: clipped ratio, k3 KL to the reference, the grpo/bnpo/dr_grpo normalizations",
         "minift/rlhf/grpo.py", 10, ("gradcheck.central_difference", "autograd.unbroadcast", "ops.elementwise_backward",
                                     "rlhf.grpo_advantages")),
    # property-based tests as exercises: write the tests, scored by the mutants they kill
    Task("props.unbroadcast", "property tests for unbroadcast (the adjoint of broadcasting)", "tests/test_exercises.py", 5,
         target="autograd.unbroadcast"),
    Task("props.softmax_backward", "property tests for the softmax's gradient (rows sum to zero; a derivative)",
         "tests/test_exercises.py", 5, target="fused.softmax_backward"),
    Task("props.matmul_backward", "property tests for the broadcasting matmul's gradients", "tests/test_exercises.py", 5,
         target="ops.matmul_backward"),
    Task("props.lora_merge", "property tests for merging a LoRA adapter (merged computes as unmerged)",
         "tests/test_exercises.py", 5, target="peft.lora_merge"),
    Task("props.ewc_penalty", "property tests for EWC's penalty (zero at the anchor, quadratic, Fisher-weighted)",
         "tests/test_exercises.py", 5, target="continual.ewc_penalty"),
    Task("props.compute_gae", "property tests for GAE (γ = λ = 1 is returns minus values; masked positions are 0)",
         "tests/test_exercises.py", 5, target="rlhf.compute_gae"),
]

TASK_BY_ID = {t.id: t for t in TASK_LIST}
TASKS = {t.id: f"{t.title} ({t.file})" for t in TASK_LIST}  # id -> one line: what and where


def dependents(task_id) -> set:
    """Every task that depends on ``task_id``, directly or through others."""
    out, frontier = set(), {task_id}
    while frontier:
        frontier = {t.id for t in TASK_LIST if set(t.depends) & frontier} - out
        out |= frontier
    return out
