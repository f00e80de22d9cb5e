"""minift: an educational, from-scratch fine-tuning library.

    import minift as mf
    from minift import functional as F

    x = mf.tensor([[1.0, 2.0]], requires_grad=True)
    loss = F.cross_entropy(x @ mf.randn(2, 3), [2])
    loss.backward()          # x.grad now holds dloss/dx
"""
from . import backend, continual, data, functional, inspect, metrics, models, multitask, nn, optim, peft, rlhf, sft, tokenization, train
from . import multitask  # after train: the MultiTaskTrainer is a Trainer
from .autograd import (
    Function, GradcheckError, Tensor, arange, enable_grad, gradcheck, is_grad_enabled, no_grad, ones, randn,
    set_grad_enabled, tensor, zeros,
)
from .backend import get_backend, get_default_dtype, seed, set_backend, set_default_dtype
from .functional import concatenate, split, stack, where
from .profiler import profile

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "Tensor", "arange", "backend", "concatenate", "enable_grad", "functional",
    "get_backend", "get_default_dtype", "gradcheck", "is_grad_enabled", "no_grad", "ones", "profile", "randn", "seed",
    "set_backend", "set_default_dtype", "set_grad_enabled", "split", "stack", "tensor", "where", "zeros",
]
