"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and ``state_dict``, as in PyTorch.

A *parameter group* is a dict ``{"params": [...], "lr": ..., ...}``; options missing from a group take
the optimizer's defaults, so one optimizer can train the head at 1e-3 and the body at 1e-5.
"""
from __future__ import annotations

import copy
import math
import numbers

from ..autograd.tensor import Tensor
from ..backend import xp


def check_number(name, value, minimum=None, below=None):
    """``value`` must be a finite real number ≥ ``minimum`` (and < ``below``); NaN and ±inf never pass."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (below is None or value < below)
    if not ok:
        bounds = " and ".join(b for b in (f">= {minimum}" if minimum is not None else "",
                                          f"< {below}" if below is not None else "") if b)
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}  # id(param) -> dict of arrays / numbers
        self.param_groups = []
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        """Add ``{"params": [...], option: value, ...}``; missing options take the defaults, all are checked."""
        group = dict(group)
        ps = group["params"]
        group["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer params must be Tensors/Parameters, got {type(p).__name__}")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError("a parameter group lists the same parameter twice: it would be updated twice per step")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("a parameter appears in more than one parameter group")
        # a typo ("learning_rate") would otherwise be ignored without a word; "name" labels a group, as in HF
        unknown = sorted(set(group) - set(self.defaults) - {"params", "initial_lr", "name"})
        if unknown:
            raise ValueError(f"{type(self).__name__} has no option(s) {unknown}; its options are {sorted(self.defaults)}")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.check_options(group)  # a group's own lr=nan must not slip past the checks of the defaults
        self.param_groups.append(group)

    def check_options(self, group):
        """Raise ``ValueError`` naming the option when a group's options are out of range (per optimizer)."""
        check_number("lr", group["lr"], minimum=0.0)

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]} — PyTorch's layout."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {index[pid]: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()}
                 for pid, s in self.state.items() if pid in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd):
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(groups)} parameter groups, this optimizer has {len(self.param_groups)}")
        params = []
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    f"a parameter group has {len(theirs['params'])} parameters in the state dict, {len(mine['params'])} here"
                )
            params.extend(zip(theirs["params"], mine["params"]))
            mine.update({k: copy.deepcopy(v) for k, v in theirs.items() if k != "params"})
        by_index = dict(params)
        self.state = {}
        for i, s in sd["state"].items():
            p = by_index[int(i)]
            self.state[id(p)] = {k: (xp.asarray(v).copy() if hasattr(v, "shape") else v)
                                 for k, v in s.items()}
