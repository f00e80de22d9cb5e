"""``memory_report``: where the bytes of one training step go, measured from the graph autograd really built.

A step holds four kinds of memory:

    weights           every parameter and buffer (a QLoRA base's 4-bit blocks are buffers)
    gradients         one array per *trainable* parameter, the size of that parameter
    optimizer state   AdamW: two arrays per trainable parameter (m and v); SGD with momentum: one
    activations       what the forward pass saved for the backward pass: the arrays in each op's ``ctx``

The first three follow from the parameter counts; the activations depend on the batch (B·T) and on which ops
ran, and are what LoRA does *not* shrink: a frozen layer still has to pass the gradient back to the layers
below it, so it keeps its input. Here they are measured, not estimated: while the forward pass runs, every
graph node is recorded with the module that was running (``function.node_observer``); afterwards the arrays
each node's ``ctx`` holds are summed — each memory buffer once (a view and its base are one buffer), parameters
left out (a Linear saves its weight, but the weight is counted under weights). Python's ``tracemalloc``, which
NumPy reports its allocations to, gives an independent figure: the bytes the forward pass allocated and still
holds (the saved arrays, the outputs and the loss).
"""
from __future__ import annotations

import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field

from ..autograd import function as _function
from ..autograd.tensor import Tensor


def _buffer(array):
    """The array that owns ``array``'s memory (a view's base, followed to the end)."""
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return array


def _is_array(x):
    return hasattr(x, "nbytes") and hasattr(x, "shape") and hasattr(x, "dtype")


def _saved_arrays(ctx):
    """Every array a Function's ``ctx`` holds: ``saved_tensors`` and any attribute that is an array (or a
    tuple / list of them), e.g. a dropout mask."""
    found = []
    for value in (*ctx.saved_tensors, *vars(ctx).values()):
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, Tensor):
                item = item.data
            if _is_array(item):
                found.append(item)
    return found


def _reachable(root):
    """ids of the graph nodes the backward pass from ``root`` would visit."""
    seen, stack = set(), [root]
    while stack:
        t = stack.pop()
        node = getattr(t, "_node", None)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(p for p in node.parents if isinstance(p, Tensor))
    return seen


def _state_bytes(optimizer):
    total = 0
    for state in optimizer.state.values():
        total += sum(int(v.nbytes) for v in state.values() if _is_array(v))
    return total


def _predicted_state_bytes(optimizer, trainable_bytes):
    """What the optimizer will allocate at its first step: AdamW / Adam keep m and v (2×), SGD a momentum buffer
    (1×) when momentum > 0, else nothing."""
    from ..optim import SGD, Adam

    if isinstance(optimizer, Adam):
        return 2 * trainable_bytes
    if isinstance(optimizer, SGD):
        return trainable_bytes if any(g["momentum"] > 0 for g in optimizer.param_groups) else 0
    raise TypeError(f"memory_report knows the state of Adam, AdamW and SGD; got {type(optimizer).__name__} "
                    "with no state yet (run one step first, then its state is measured)")


@dataclass
class MemoryReport:
    """Bytes of one training step (``memory_report``). ``activations_by_op`` / ``activations_by_module``: the
    saved arrays grouped by the op that saved them and by the innermost module running at the time."""
    weights: int
    trainable_weights: int
    gradients: int
    optimizer_state: int
    optimizer_state_predicted: bool  # True: no step had run yet, the figure is what the first step allocates
    activations: int
    activations_by_op: dict = field(default_factory=dict)
    activations_by_module: dict = field(default_factory=dict)
    forward_traced_bytes: int = 0  # tracemalloc: allocated during the forward pass and still held after it
    tokens: int = 0

    @property
    def total(self):
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def by_module(self):
        """Activations summed by layer: a module name cut after its first numbered part ("model.layers.3.attn.q_proj"
        → "layers.3"), else after two parts; the wrappers' leading "base_model" / "model" parts dropped, so a full
        model and its PEFT version group alike; "(model)" is what ran in the top module's own forward (the loss)."""
        out = defaultdict(int)
        for name, n in self.activations_by_module.items():
            parts = name.split(".")
            while parts and parts[0] in ("base_model", "model", "(model)"):
                parts = parts[1:]
            numbered = [i for i, part in enumerate(parts) if part.isdigit()]
            out[".".join(parts[: numbered[0] + 1] if numbered else parts[:2]) or "(model)"] += n
        return dict(out)

    def table(self, top=8):
        from .files import human_bytes

        rows = [("weights", self.weights, f"{self.trainable_weights / max(self.weights, 1):.1%} trainable"),
                ("gradients", self.gradients, "one per trainable parameter"),
                ("optimizer state", self.optimizer_state, "predicted (no step yet)" if self.optimizer_state_predicted
                 else "measured"),
                ("activations", self.activations, f"saved for backward, {self.tokens:,} tokens")]
        lines = [f"{'':18}{'bytes':>14}  {'':10}", *(f"{k:18}{v:>14,}  {human_bytes(v):>10}  {note}" for k, v, note in rows),
                 f"{'total':18}{self.total:>14,}  {human_bytes(self.total):>10}",
                 f"(tracemalloc: the forward pass allocated and still holds {human_bytes(self.forward_traced_bytes)})",
                 "", "activations by op:"]
        for op, n in sorted(self.activations_by_op.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {op:32}{n:>14,}  {n / max(self.activations, 1):6.1%}")
        lines += ["activations by module:"]
        for name, n in sorted(self.by_module().items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {name:32}{n:>14,}  {n / max(self.activations, 1):6.1%}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def memory_report(model, batch, optimizer=None):
    """Run one forward and backward pass of ``model(**batch)`` (its ``.loss``, or the output itself if it is a
    scalar Tensor) and return a ``MemoryReport``. Nothing changes: the gradients the parameters held before
    are put back, and no optimizer step is taken (with an ``optimizer`` that has not stepped yet, its state
    is the size its first step will allocate, marked predicted)."""
    if not isinstance(batch, dict) or not batch:
        raise TypeError(f"batch must be a non-empty dict of the model's keyword arguments, got {type(batch).__name__}")
    params = [p for _, p in model.named_parameters()]
    owned = {id(_buffer(p.data)) for p in params} | {id(_buffer(b)) for _, b in model.named_buffers()}
    weights = sum(int(p.data.nbytes) for p in params) + sum(int(b.nbytes) for _, b in model.named_buffers())
    trainable = sum(int(p.data.nbytes) for p in params if p.requires_grad)

    running = ["(model)"]  # the innermost module whose forward is running
    wrapped = []
    for name, module in model.named_modules():
        def forward(*args, _inner=module.forward, _name=name or "(model)", **kwargs):
            running.append(_name)
            try:
                return _inner(*args, **kwargs)
            finally:
                running.pop()
        wrapped.append((module, "forward" in vars(module), vars(module).get("forward")))
        module.forward = forward
    nodes = []
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    _function.node_observer = lambda node: nodes.append((node, running[-1]))
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = model(**batch)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        _function.node_observer = None
        if started:
            tracemalloc.stop()
        for module, had_own, own in wrapped:
            if had_own:
                module.forward = own
            else:
                del module.forward
    loss = out if isinstance(out, Tensor) else getattr(out, "loss", None)
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError("memory_report needs a loss: the model's output must have .loss (pass labels in the batch) "
                         f"or be a scalar Tensor; got {type(out).__name__}"
                         + ("" if loss is None else f" with a loss of shape {tuple(loss.shape)}"))
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any trainable parameter: nothing would be saved for backward")

    reachable, seen = _reachable(loss), set()
    by_op, by_module = defaultdict(int), defaultdict(int)
    for node, module_name in nodes:
        if id(node) not in reachable:
            continue
        for array in _saved_arrays(node.ctx):
            buf = _buffer(array)
            if id(buf) in owned or id(buf) in seen:
                continue
            seen.add(id(buf))
            by_op[node.fn.__name__] += int(buf.nbytes)
            by_module[module_name] += int(buf.nbytes)
    activations = sum(by_op.values())

    old_grads = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        loss.backward()
        gradients = sum(int(p.grad.nbytes) for p in params if p.grad is not None)
    finally:
        for p, g in zip(params, old_grads):
            p.grad = g
    predicted = False
    state = 0
    if optimizer is not None:
        state = _state_bytes(optimizer)
        if state == 0:
            state, predicted = _predicted_state_bytes(optimizer, trainable), True
    ids = batch.get("input_ids")
    tokens = int(getattr(ids, "size", 0)) if ids is not None else 0
    return MemoryReport(weights=weights, trainable_weights=trainable, gradients=gradients, optimizer_state=state,
                        optimizer_state_predicted=predicted, activations=activations, activations_by_op=dict(by_op),
                        activations_by_module=dict(by_module), forward_traced_bytes=int(traced), tokens=tokens)


__all__ = ["MemoryReport", "memory_report"]
