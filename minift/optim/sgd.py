"""Stochastic gradient descent with momentum, Nesterov and (L2) weight decay — PyTorch's update."""
from __future__ import annotations

from ..autograd.grad_mode import no_grad
from .optimizer import Optimizer, check_number


class SGD(Optimizer):
    """For each parameter θ with gradient g (PyTorch's formulation, dampening τ):

        g ← g + λθ                                   (weight decay, coupled: it is part of the gradient)
        b ← g  at the first step,  b ← μb + (1 − τ)g  afterwards      (momentum buffer)
        d ← g + μb  if nesterov  else  b
        θ ← θ − η d
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def check_options(self, group):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            check_number(name, group[name], minimum=0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    @no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g + wd * p.data
                if mu:
                    st = self.state.setdefault(id(p), {})
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = g.copy()
                    else:
                        st["momentum_buffer"] = mu * st["momentum_buffer"] + (1 - tau) * g
                    b = st["momentum_buffer"]
                    g = g + mu * b if group["nesterov"] else b
                p.data -= (lr * g).astype(p.data.dtype, copy=False)
