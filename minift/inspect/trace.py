"""``Trace``: a step trace — one row per token, per sequence or per micro-batch, with every term of a loss.

``dpo_loss(..., trace=True)``, the PPO and GRPO traces and ``TrainingArguments(trace_first_step=True)`` return
one, so that "the loss is 0 but the gradient is not" or "this micro-batch weighs more than that one" can be
read off a table instead of argued about.
"""
from __future__ import annotations

import numpy as np  # host-side: a trace is a table of Python numbers


class Trace(list):
    """A step trace: a list of rows (dicts), one per token or per sequence, printed as a table. Built from
    equal-length columns; ``column(name)`` gives one back as an array."""

    def __init__(self, columns):
        columns = {k: np.asarray(v).reshape(-1) for k, v in columns.items()}  # each column, any shape -> (n,)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"trace columns differ in length: { {k: len(v) for k, v in columns.items()} }")
        n = lengths.pop() if lengths else 0
        super().__init__({k: v[i].item() for k, v in columns.items()} for i in range(n))
        self.names = list(columns)

    def column(self, name):
        return np.array([row[name] for row in self])

    def __str__(self):
        def cell(v):
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        widths = {k: max(len(k), *(len(cell(r[k])) for r in self)) if self else len(k) for k in self.names}
        lines = ["  ".join(k.rjust(widths[k]) for k in self.names)]
        lines += ["  ".join(cell(r[k]).rjust(widths[k]) for k in self.names) for r in self]
        return "\n".join(lines)


__all__ = ["Trace"]
