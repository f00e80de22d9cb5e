"""Continual fine-tuning: Fisher information, EWC, an L2 anchor, experience replay and forgetting metrics.

A model fine-tuned on task A and then on task B forgets A: the gradient steps for B move weights that A
needed. Three families of remedies, each here in a few visible lines:

* **Regularization** — pull the weights back towards the ones that solved A. EWC (Kirkpatrick et al., 2017)
  weighs each weight's pull by how much A's log-likelihood depends on it, the diagonal of the Fisher
  information F; ``L2Anchor`` pulls every weight equally (F = 1), the baseline EWC must beat.
* **Replay** — keep a few of A's examples (``ReplayBuffer``, reservoir sampling) and mix them into B's batches.
* **Isolation** — train a separate LoRA adapter per task (see ``minift.peft``): nothing shared is changed.

Forgetting is measured with the accuracy matrix R[i, j] = accuracy on task j after training on task i:
``average_accuracy``, ``backward_transfer`` and ``forgetting`` read it (Lopez-Paz & Ranzato, 2017;
Chaudhry et al., 2018).

Conventions: the penalty is Kirkpatrick's (λ/2)·Σ F_i (θ_i − θ*_i)² (Avalanche uses λ·Σ, without
the ½); the Fisher is the mean over examples of *per-example* squared gradients, never the square of a
batch-mean gradient.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .autograd.tensor import Tensor
from .backend import to_numpy, xp
from .functional import log_softmax

FISHER_KINDS = ("empirical", "true", "sampled", "squared_minibatch")
PENALTY_SCALES = ("half", "full")  # (λ/2) Σ F (θ − θ*)² as Kirkpatrick et al.; λ Σ F (θ − θ*)² as Avalanche


# ============================================================================ Fisher information
def fisher_diagonal(model, batches, kind="empirical", num_samples=1, seed=0, parameters=None):
    """The diagonal of the Fisher information of ``model`` on ``batches``: ``{parameter name: array}``.

        F_i = (1/N) Σ_n E_{y ~ q_n} [ (∂ log p_θ(y | x_n) / ∂θ_i)² ]

    one term per example n, with its own gradient (the mean of squares, not the square of the mean):

    * ``"empirical"``: q_n puts all its mass on the example's true label: (∂ log p(y_n | x_n)/∂θ)².
    * ``"true"``: q_n = the model's own predictive distribution, summed exactly:
      Σ_c p_c (∂ log p_c/∂θ)² — one backward pass per class.
    * ``"sampled"``: y drawn from the model's distribution, ``num_samples`` draws averaged (a Monte-Carlo
      estimate of "true"; seeded by ``seed``).
    * ``"squared_minibatch"``: NOT a Fisher estimate, but what Avalanche's ``EWCPlugin`` computes, kept to
      compare with it: the square of each batch's *mean-loss* gradient, averaged over the batches,
      (1/K) Σ_k (∂ (1/|B_k|) Σ_{n∈B_k} −log p(y_n|x_n) / ∂θ)². Its cross terms between examples do not vanish
      (they are squared after the sum), and it shrinks as the batch grows: with batches of B
      roughly independent examples it is about 1/B of the empirical Fisher (plus the mean gradient squared).

    ``batches``: an iterable of dicts; the model is called with every key but ``labels`` and returns logits
    (a Tensor, or an output with ``.logits``) of shape (B, C) or, for token classification, (B, T, C).
    A sequence's log-likelihood is the sum over its labelled tokens (label −100 is skipped), so for the
    true Fisher each labelled token contributes Σ_c p_tc (∂ log p_tc/∂θ)²: the cross terms between tokens
    vanish in expectation, because the score E_y[∂ log p(y)/∂θ] is zero and the tokens' labels are
    independent given x. Models with ``shifts_labels`` (causal LMs) compare position t with label t + 1.

    ``parameters``: the names to estimate (default: every parameter that requires grad). Per-example
    gradients are computed by looping over the examples (batch size 1): slow but plain. For a Linear
    layer they also have a closed form, see ``linear_per_example_grads``.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    if not (_is_integer(num_samples) and num_samples >= 1):
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    num_samples = int(num_samples)
    params = _chosen_parameters(model, parameters)
    fisher = {name: xp.zeros(p.shape, dtype=p.data.dtype) for name, p in params.items()}
    rng = np.random.default_rng(seed)
    shifts = bool(getattr(model, "shifts_labels", False))
    n_examples = 0
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model as it predicts
    if isinstance(batches, Mapping):
        raise TypeError(f"batches must be an iterable of batches (dicts), got one dict with keys {sorted(batches)}: "
                        "wrap it in a list, [batch]")
    if kind == "squared_minibatch":
        return _squared_minibatch_gradients(model, batches, params, shifts, was_training)
    try:
        for batch in batches:
            if not isinstance(batch, Mapping):
                raise TypeError(f"each batch must be a dict of model inputs and 'labels', got {type(batch).__name__}")
            if "labels" not in batch:
                raise ValueError(f"each batch needs 'labels' (it has {sorted(batch)})")
            size = len(batch["labels"])
            lengths = {k: len(v) for k, v in batch.items()}
            if any(n != size for n in lengths.values()):
                raise ValueError(f"the columns of a batch must have one row per example, got {lengths} rows")
            for n in range(size):
                example = {k: v[n:n + 1] for k, v in batch.items()}  # (1, ...): one example
                labels = example.pop("labels")
                labels = np.asarray(to_numpy(labels.data if isinstance(labels, Tensor) else labels))
                logprobs = log_softmax(_logits(model(**example)), axis=-1)  # (1, C) or (1, T, C)
                if shifts:
                    logprobs, labels = logprobs[:, :-1], labels[:, 1:]
                rows = _labelled_rows(logprobs, labels)  # [(position index, true label)]
                _accumulate_example(fisher, params, logprobs, rows, kind, num_samples, rng)
                n_examples += 1
    finally:
        model.zero_grad()
        model.train(was_training)
    if n_examples == 0:
        raise ValueError("fisher_diagonal got no examples: batches is empty")
    return {name: f / n_examples for name, f in fisher.items()}


def _squared_minibatch_gradients(model, batches, params, shifts, was_training):
    """Avalanche's importance: the mean over batches of (∂ mean-loss of the batch / ∂θ)² (see ``fisher_diagonal``)."""
    from .functional import cross_entropy

    total = {name: xp.zeros(p.shape, dtype=p.data.dtype) for name, p in params.items()}
    n_batches = 0
    try:
        for batch in batches:
            if not isinstance(batch, Mapping) or "labels" not in batch:
                raise ValueError("each batch must be a dict with 'labels'")
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            labels = np.asarray(to_numpy(batch["labels"].data if isinstance(batch["labels"], Tensor) else batch["labels"]))
            logits = _logits(model(**inputs))
            if shifts:
                logits, labels = logits[:, :-1], labels[:, 1:]
            for p in params.values():
                p.grad = None
            flat_logits = logits.reshape(-1, logits.shape[-1])  # (positions, C)
            # (B,) or (B, T) (B, T − 1 after the shift) -> (positions,)
            cross_entropy(flat_logits, labels.reshape(-1), ignore_index=-100).backward()
            for name, p in params.items():
                if p.grad is not None:
                    total[name] += p.grad * p.grad
            n_batches += 1
    finally:
        model.zero_grad()
        model.train(was_training)
    if n_batches == 0:
        raise ValueError("fisher_diagonal got no examples: batches is empty")
    return {name: f / n_batches for name, f in total.items()}


def _accumulate_example(fisher, params, logprobs, rows, kind, num_samples, rng):
    """Add one example's E_y[(∂ log p(y|x)/∂θ)²] to ``fisher`` (see ``fisher_diagonal``)."""
    # TASK continual.fisher_example: one example's squared log-likelihood gradients, for each kind of Fisher
    # BEGIN SOLUTION
    if kind == "empirical":  # the true labels: one gradient of Σ_t log p(y_t)
        terms = [(1.0, sum_selected(logprobs, [(pos, y) for pos, y in rows]))]
    elif kind == "sampled":  # y ~ p: num_samples gradients, each weighed 1/num_samples
        probs = np.exp(to_numpy(logprobs.data)).reshape(-1, logprobs.shape[-1])  # (positions, C)
        terms = []
        for _ in range(num_samples):
            draw = [(pos, int(rng.choice(probs.shape[1], p=probs[pos] / probs[pos].sum()))) for pos, _ in rows]
            terms.append((1.0 / num_samples, sum_selected(logprobs, draw)))
    else:  # true: Σ_t Σ_c p_tc (∂ log p_tc)², one gradient per (token, class)
        probs = np.exp(to_numpy(logprobs.data)).reshape(-1, logprobs.shape[-1])  # (1, C) or (1, T, C) -> (positions, C)
        terms = [(float(probs[pos, c]), sum_selected(logprobs, [(pos, c)]))
                 for pos, _ in rows for c in range(probs.shape[1])]
    for i, (weight, loglik) in enumerate(terms):
        for p in params.values():
            p.grad = None
        loglik.backward(retain_graph=i < len(terms) - 1)  # the same forward graph serves every term
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += weight * p.grad * p.grad
    # END SOLUTION


def sum_selected(logprobs, picks):
    """Σ log p at the (flat position, class) pairs ``picks``: a Tensor with a gradient (0 if none)."""
    flat = logprobs.reshape(-1, logprobs.shape[-1])  # (positions, C)
    if not picks:
        return flat.sum() * 0.0
    positions = xp.asarray([pos for pos, _ in picks])
    classes = xp.asarray([c for _, c in picks])
    return flat[positions, classes].sum()


def _labelled_rows(logprobs, labels):
    """[(flat position, label)] of the positions whose label is not −100."""
    flat = labels.reshape(-1)  # (1,) or (1, T) -> (positions,)
    if flat.size != int(np.prod(logprobs.shape[:-1])):
        raise ValueError(f"labels of shape {labels.shape} do not match logits of shape {tuple(logprobs.shape)}")
    classes = logprobs.shape[-1]
    rows = [(i, y) for i, y in enumerate(flat.tolist()) if y != -100]
    for _, y in rows:  # −1 would pick the last class, 0.5 be truncated
        if not (isinstance(y, (bool, int, float)) and float(y).is_integer() and 0 <= y < classes):
            raise ValueError(f"labels must be class ids in [0, {classes}) or -100 (skipped), got {y!r}")
    return [(i, int(y)) for i, y in rows]


def _is_integer(x):
    """An int or a NumPy integer, not a bool (True is an int to Python, never a count here)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_finite_number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)) \
        and math.isfinite(x)


def _logits(out):
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, Tensor):
        raise TypeError(f"the model must return logits (a Tensor or an output with .logits), got {type(out).__name__}")
    return logits


def _chosen_parameters(model, names):
    named = dict(model.named_parameters())
    if names is None:
        chosen = {n: p for n, p in named.items() if p.requires_grad}
    else:
        if isinstance(names, str):
            raise TypeError(f"parameters must be a list of names, got the string {names!r}: write [{names!r}]")
        missing = [n for n in names if n not in named]
        if missing:
            raise KeyError(f"the model has no parameters {missing}; it has e.g. {list(named)[:5]}")
        frozen = [n for n in names if not named[n].requires_grad]
        if frozen:  # no gradient reaches them: their Fisher would be 0, their EWC spring slack
            raise ValueError(f"parameters {frozen[:3]} do not require grad ({len(frozen)} of them): no gradient "
                             "reaches them; unfreeze them or leave them out")
        chosen = {n: named[n] for n in names}
    if not chosen:
        raise ValueError("no parameters to estimate: none requires grad (pass parameters=[names])")
    return chosen


def linear_per_example_grads(x, grad_out):
    """Per-example gradients of a Linear layer's weight, all at once: (B, out, in).

    y_bt = W x_bt + b, so ∂L_b/∂W = Σ_t g_bt x_btᵀ — an outer product per token, summed over the example's
    tokens (x: (B, in) or (B, T, in); grad_out g = ∂L/∂y of the same leading shape with ``out`` features).
    One einsum instead of B backward passes; squaring and averaging it gives the Linear layer's empirical
    Fisher: ``(linear_per_example_grads(x, g) ** 2).mean(0)``.
    """
    x = xp.asarray(x.data if isinstance(x, Tensor) else x)
    g = xp.asarray(grad_out.data if isinstance(grad_out, Tensor) else grad_out)
    if x.ndim not in (2, 3) or g.ndim != x.ndim or g.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"x and grad_out must be (B, features) or (B, T, features) with the same leading shape, "
                         f"got x {tuple(x.shape)} and grad_out {tuple(g.shape)}")
    if x.ndim == 2:
        return xp.einsum("bo,bi->boi", g, x)
    return xp.einsum("bto,bti->boi", g, x)


# ============================================================================ EWC and the L2 anchor
class EWC:
    """Elastic weight consolidation: penalty(θ) = (λ/2) Σ_k Σ_i F_k,i (θ_i − θ*_k,i)².

    ``penalty_scale``: ``"half"`` (the default) is the paper's λ/2 — the Laplace approximation's quadratic
    ½ (θ − θ*)ᵀ F (θ − θ*) times λ; ``"full"`` drops the ½, as Avalanche's ``EWCPlugin`` does: the same λ is then
    twice as strong, and a λ tuned in one library must be halved (or doubled) for the other.

    After each task, ``consolidate(model, batches)`` stores the weights θ* and the Fisher diagonal F.
    ``mode="separate"`` keeps one (θ*_k, F_k) per task (Kirkpatrick et al., 2017: one penalty per old task);
    ``mode="online"`` keeps one anchor, the latest weights, and one running Fisher F ← γF + F_new (Schwarz et
    al., 2018; γ = 1 sums, γ < 1 lets old tasks fade). Its gradient is λ Σ_k F_k ⊙ (θ − θ*_k): a spring per
    weight, stiff where the old tasks' log-likelihood is curved. ``fisher`` is the current diagonal
    (online: the running one; separate: Σ_k F_k, the total stiffness).
    """

    def __init__(self, lambda_=1.0, mode="separate", gamma=1.0, penalty_scale="half"):
        if penalty_scale not in PENALTY_SCALES:
            raise ValueError(f"penalty_scale must be 'half' (λ/2, Kirkpatrick et al.) or 'full' (λ, Avalanche), "
                             f"got {penalty_scale!r}")
        self.penalty_scale = penalty_scale
        if not (_is_finite_number(lambda_) and lambda_ >= 0):
            raise ValueError(f"lambda_ must be a finite number >= 0, got {lambda_!r}")
        if mode not in ("separate", "online"):
            raise ValueError(f"mode must be 'separate' or 'online', got {mode!r}")
        if not (_is_finite_number(gamma) and 0 < gamma <= 1):
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self.lambda_ = float(lambda_)
        self.mode = mode
        self.gamma = float(gamma)
        self.anchors = []  # [(θ* {name: array}, F {name: array})], one per task (online: at most one)

    def consolidate(self, model, batches, kind="empirical", parameters=None, **fisher_kwargs):
        """Estimate F on ``batches`` (a task just learned) and anchor the model's current weights."""
        fisher = fisher_diagonal(model, batches, kind=kind, parameters=parameters, **fisher_kwargs)
        self.add_anchor(model, fisher)
        return fisher

    def add_anchor(self, model, fisher):
        """Anchor the current weights of ``model`` with a given Fisher diagonal ``{name: array}``."""
        named = dict(model.named_parameters())
        if not fisher:
            raise ValueError("fisher is empty: give at least one parameter's diagonal {name: array}")
        # backend arrays first (a NumPy Fisher loaded from disk must not meet a CuPy one in F ← γF + F_new)
        fisher = {name: xp.asarray(f.data if isinstance(f, Tensor) else f) for name, f in fisher.items()}
        _check_matches(named, fisher, "fisher")
        fisher = {name: f.astype(named[name].data.dtype, copy=False) for name, f in fisher.items()}
        bad = [name for name, f in fisher.items() if not bool(xp.isfinite(f).all()) or bool((f < 0).any())]
        if bad:  # a negative entry would push the weight away from θ*: the penalty could fall without bound
            raise ValueError(f"a Fisher diagonal is finite and >= 0; {bad[:3]} ({len(bad)} parameters) are not")
        theta_star = {name: named[name].data.copy() for name in fisher}
        if self.mode == "online" and self.anchors:
            _, old = self.anchors[0]
            if set(old) != set(fisher):
                raise ValueError(f"online EWC needs the same parameters each time: had {len(old)}, got {len(fisher)}")
            fisher = {name: self.gamma * old[name] + fisher[name] for name in fisher}  # F ← γF + F_new
            self.anchors = []
        self.anchors.append((theta_star, fisher))

    @property
    def fisher(self):
        if not self.anchors:
            raise RuntimeError("no Fisher yet: call consolidate(model, batches) after the first task")
        total = {name: f.copy() for name, f in self.anchors[0][1].items()}
        for _, f in self.anchors[1:]:
            for name in total:
                total[name] += f[name]
        return total

    def penalty(self, model):
        """(λ/2) Σ_k Σ_i F_k,i (θ_i − θ*_k,i)² as a Tensor: add it to the loss."""
        if not self.anchors:
            raise RuntimeError("EWC.penalty before any consolidate: call ewc.consolidate(model, batches) after "
                               "the first task (there is nothing to hold the weights to yet)")
        named = dict(model.named_parameters())
        total = None
        for theta_star, fisher in self.anchors:
            _check_matches(named, theta_star, "the consolidated weights")
            for name, anchor in theta_star.items():
                # TASK continual.ewc_penalty: one parameter's share of the EWC penalty, (λ/2) Σ F (θ − θ*)²
                # BEGIN SOLUTION
                diff = named[name] - anchor
                term = (diff * diff * fisher[name]).sum() * (self.lambda_ / 2)
                # END SOLUTION
                total = term if total is None else total + term
        return total * 2.0 if self.penalty_scale == "full" else total  # "full": (λ/2)·2 = λ, Avalanche's


class L2Anchor(EWC):
    """The baseline: (λ/2) Σ_i (θ_i − θ*_i)² — EWC with F = 1 for every weight (no Fisher to estimate)."""

    def __init__(self, lambda_=1.0):
        super().__init__(lambda_=lambda_, mode="separate")

    def consolidate(self, model, batches=None, kind=None, parameters=None, **unused):
        """Anchor the current weights (``batches`` is not needed: every weight gets F = 1)."""
        params = _chosen_parameters(model, parameters)
        ones = {name: xp.ones(p.shape, dtype=p.data.dtype) for name, p in params.items()}
        self.add_anchor(model, ones)
        return ones


def _check_matches(named, stored, what):
    missing = [n for n in stored if n not in named]
    if missing:
        raise ValueError(f"the model has no parameters {missing[:3]} that {what} hold ({len(missing)} missing): "
                         "is it the model that was consolidated?")
    wrong = [(n, tuple(named[n].shape), tuple(stored[n].shape)) for n in stored if tuple(named[n].shape) != tuple(stored[n].shape)]
    if wrong:
        n, got, want = wrong[0]
        raise ValueError(f"parameter {n!r} has shape {got} but {what} have {want}")


# ============================================================================ replay
class ReplayBuffer:
    """A fixed-size uniform sample of everything ``add``-ed so far (reservoir sampling, Vitter's algorithm R).

    The first ``capacity`` items are kept; the i-th item after them (counting from 0 overall) replaces a
    random slot with probability capacity/(i + 1), so at any time every item seen is in the buffer with the
    same probability capacity/seen.
    """

    def __init__(self, capacity, seed=0):
        if not (_is_integer(capacity) and capacity >= 1):
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self.items = []
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.items)

    def add(self, item):
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            j = int(self._rng.integers(0, self.seen + 1))  # uniform in 0 … seen
            if j < self.capacity:
                self.items[j] = item
        self.seen += 1

    def extend(self, items):
        for item in items:
            self.add(item)

    def sample(self, n):
        """``n`` items drawn without replacement (all of them if the buffer holds fewer)."""
        if not (_is_integer(n) and n >= 0):
            raise ValueError(f"n must be an integer >= 0, got {n!r}")  # −1 would slice off one item
        idx = self._rng.permutation(len(self.items))[:n]
        return [self.items[int(i)] for i in idx]

    def mixed_with(self, rows, replay_fraction=0.25):
        """``rows`` (a list of examples or a Dataset) plus replayed items, a ``replay_fraction`` of the result.

        k replayed items with k / (len(rows) + k) = replay_fraction (fewer, so a smaller fraction, while the
        buffer holds fewer than k); the Trainer shuffles them into its batches.
        """
        if not 0 <= replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {replay_fraction!r}")
        rows = [rows[i] for i in range(len(rows))]
        k = int(round(replay_fraction * len(rows) / (1 - replay_fraction)))
        return rows + self.sample(k)


# ============================================================================ forgetting metrics
def _accuracy_matrix(R):
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square (tasks × tasks), got shape {R.shape}")
    return R


def average_accuracy(R):
    """ACC = (1/T) Σ_j R[T−1, j]: the mean accuracy over all tasks after the last one."""
    R = _accuracy_matrix(R)
    return float(R[-1].mean())


def backward_transfer(R):
    """BWT = 1/(T−1) Σ_{j<T−1} (R[T−1, j] − R[j, j]): how training later tasks changed earlier ones.

    Negative = forgetting. Lopez-Paz & Ranzato (2017). 0 for a single task.
    """
    R = _accuracy_matrix(R)
    t = R.shape[0]
    if t == 1:
        return 0.0
    # TASK continual.backward_transfer: the mean change of each earlier task's accuracy from right after it to the end
    # BEGIN SOLUTION
    return float(np.mean([R[-1, j] - R[j, j] for j in range(t - 1)]))
    # END SOLUTION


def forgetting(R):
    """F = 1/(T−1) Σ_{j<T−1} max_{l<T−1} (R[l, j] − R[T−1, j]): each earlier task's best accuracy, minus its last.

    Chaudhry et al. (2018), the max over every row before the last. 0 for a single task. Usually ≥ 0; a
    task's own term is negative only if it ends better than it ever was before, and the mean is negative
    when such gains outweigh the other tasks' losses.
    """
    R = _accuracy_matrix(R)
    t = R.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([R[: t - 1, j].max() - R[-1, j] for j in range(t - 1)]))


def continual_summary(R):
    """{"average_accuracy", "backward_transfer", "forgetting"} of the accuracy matrix R."""
    return {"average_accuracy": average_accuracy(R), "backward_transfer": backward_transfer(R),
            "forgetting": forgetting(R)}


__all__ = ["EWC", "FISHER_KINDS", "L2Anchor", "ReplayBuffer", "average_accuracy", "backward_transfer",
           "continual_summary", "fisher_diagonal", "forgetting", "linear_per_example_grads"]
