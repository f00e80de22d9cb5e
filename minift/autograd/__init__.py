"""The autograd engine: Tensor, Function, the backward walk, the primitive and fused ops, gradcheck."""
from .function import Context, Function
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckError, central_difference, gradcheck
from .tensor import Tensor, arange, ones, randn, tensor, zeros

__all__ = [
    "Context", "Function", "GradcheckError", "Tensor", "arange", "central_difference", "enable_grad",
    "gradcheck", "is_grad_enabled", "no_grad", "ones", "randn", "set_grad_enabled", "tensor", "zeros",
]
