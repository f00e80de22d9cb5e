"""``QuantizedLinear``: a frozen Linear whose weight stays in 4-bit (or 8-bit) blocks — the base of QLoRA.

QLoRA (Dettmers et al., 2023) keeps the pretrained weights quantized and trains LoRA adapters on top. The
weight is never stored in float: each forward and backward pass turns a few rows of blocks back into
floats, uses them, and drops them. With Ŵ = dequantize(blocks) (out, in), X the input flattened to (M, in)
and G = ∂L/∂y flattened to (M, out):

    y = X Ŵᵀ + b                    computed as  y[:, rows] = X Ŵ[rows]ᵀ  for one range of rows at a time
    ∂L/∂x = G Ŵ = Σ_rows G[:, rows] Ŵ[rows]       (the same row ranges, dequantized again)
    ∂L/∂Ŵ: none — the weight is frozen (it could not take a float update anyway)

so memory holds the blocks (4.5–5 bits per weight instead of 32) plus one range of rows in float32, and
each pass pays one dequantization of the weight. ``bias`` stays a float Parameter (frozen unless a PEFT
``bias`` mode frees it). A subclass of ``Linear``, so LoRA, IA3 and ``target_modules`` treat it as one;
``weight`` gives the dequantized matrix (a new array each time: writing into it changes nothing; ``requantize``
stores a new one). Merging LoRA into it quantizes Ŵ + s·BA again, with a warning, as PEFT's 4-bit layers do;
merging IA3 is refused, as in PEFT (dequantize the model first: ``minift.models.dequantize_model``).

Formats: ``minift.models.quant`` (GGUF's Q8_0 / Q4_0 / Q4_1 and QLoRA's NF4). The blocks are the uint8
buffer ``qweight`` of shape (out, bytes per row): a row range of the weight is a row range of it.
"""
from __future__ import annotations

from .. import backend
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from ..backend import matmul, to_numpy, xp
from .layers import Linear
from .module import Module, Parameter

ROWS_BUDGET = 1 << 18  # values dequantized at once (1 MB in float32): a range of rows stays in cache


def _formats():
    from ..models import quant

    return quant


class QuantizedLinearFunction(Function):
    """y = x Ŵᵀ + b with Ŵ dequantized range by range (see the module docstring); gradients for x and b only."""

    @staticmethod
    def forward(ctx, x, bias, layer):
        ctx.layer = layer
        ctx.x_shape = x.shape
        x2 = x.reshape(-1, layer.in_features)  # (M, in)
        y = xp.empty((x2.shape[0], layer.out_features), dtype=x.dtype)  # (M, out)
        for start, stop in layer.row_ranges():
            y[:, start:stop] = matmul(x2, layer.dequantize_rows(start, stop, x.dtype).T)  # (M, in) @ (in, rows)
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], layer.out_features)  # (M, out) -> (…, out)

    @staticmethod
    def backward(ctx, g):
        layer = ctx.layer
        g2 = g.reshape(-1, layer.out_features)  # (M, out)
        gx = None
        if ctx.needs_input_grad[0]:
            gx = xp.zeros((g2.shape[0], layer.in_features), dtype=g.dtype)  # (M, in)
            for start, stop in layer.row_ranges():
                gx += matmul(g2[:, start:stop], layer.dequantize_rows(start, stop, g.dtype))  # (M, rows) @ (rows, in)
            gx = gx.reshape(ctx.x_shape)  # (M, in) -> (…, in), x's shape
        gb = g2.sum(axis=0) if ctx.needs_input_grad[1] else None
        return gx, gb, None


class QuantizedLinear(Linear):
    """y = x Ŵᵀ + b with Ŵ kept as quantized blocks (``qweight``) and dequantized on the fly; frozen."""

    def __init__(self, qweight, quant_type, in_features, out_features, bias=None):
        Module.__init__(self)
        formats = _formats()
        if quant_type not in formats.DEQUANTIZE:
            raise ValueError(f"quant_type must be one of {sorted(formats.DEQUANTIZE)}, got {quant_type!r}")
        per_block = formats.BLOCK_VALUES[quant_type]
        if in_features % per_block:
            raise ValueError(f"{quant_type} stores blocks of {per_block} values along each row, but in_features = "
                             f"{in_features} is not a multiple of {per_block}")
        row_bytes = in_features // per_block * formats.BYTES_PER_BLOCK[quant_type]
        if tuple(qweight.shape) != (out_features, row_bytes) or qweight.dtype != xp.uint8:
            raise ValueError(f"qweight must be uint8 of shape (out_features, bytes per row) = ({out_features}, "
                             f"{row_bytes}) for {quant_type}, got {qweight.dtype} of shape {tuple(qweight.shape)}")
        self.in_features, self.out_features, self.quant_type = in_features, out_features, quant_type
        self.register_buffer("qweight", backend.asarray(qweight))
        self.bias = None
        if bias is not None:
            self.bias = Parameter(bias.data if isinstance(bias, Tensor) else bias, requires_grad=False)
        self.compute_dtype = self.bias.dtype if self.bias is not None else backend.get_default_dtype()

    @classmethod
    def from_linear(cls, linear, quant_type="NF4"):
        """Quantize a float ``Linear``'s weight (on the host) into blocks of ``quant_type``; keep its bias."""
        weight = to_numpy(linear.weight.data)
        raw = _formats().quantize(weight, quant_type).reshape(linear.out_features, -1)  # (out, bytes per row)
        layer = cls(raw, quant_type, linear.in_features, linear.out_features, linear.bias)
        layer.compute_dtype = weight.dtype
        return layer

    def row_ranges(self):
        """(start, stop) ranges of output rows, about ``ROWS_BUDGET`` values each."""
        rows = max(1, ROWS_BUDGET // self.in_features)
        return [(s, min(s + rows, self.out_features)) for s in range(0, self.out_features, rows)]

    def dequantize_rows(self, start, stop, dtype=None):
        """Rows start..stop of Ŵ as floats, (stop − start, in)."""
        w = _formats().dequantize(self.qweight[start:stop], self.quant_type, (stop - start, self.in_features))
        return w.astype(dtype or self.compute_dtype, copy=False)

    @property
    def weight(self):
        """The dequantized weight Ŵ (out, in), a new frozen tensor on each access."""
        return Tensor(self.dequantize_rows(0, self.out_features), requires_grad=False)

    def forward(self, x):
        """Computes in the input's dtype: the blocks are dequantized straight to it (float64 for gradcheck)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedLinear: input has {x.shape[-1]} features in its last axis, expected "
                             f"in_features = {self.in_features}")
        return QuantizedLinearFunction.apply(x, self.bias, self)

    def requantize(self, weight):
        """Store ``weight`` (out, in) as this layer's blocks, quantized on the host as ``from_linear`` does; what a
        merge into a 4-bit layer ends with. Every value snaps to its block's grid: the layer's ``weight`` is then
        Q(weight), not ``weight``."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"requantize needs a weight of shape (out_features, in_features) = "
                             f"({self.out_features}, {self.in_features}), got {tuple(weight.shape)}")
        raw = _formats().quantize(to_numpy(weight), self.quant_type).reshape(self.out_features, -1)  # (out, bytes)
        self.qweight[...] = backend.asarray(raw)

    def dequantize(self):
        """A float ``Linear`` with Ŵ as its weight and the same bias (HF's ``model.dequantize()``, per layer)."""
        linear = Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight = Parameter(self.dequantize_rows(0, self.out_features))
        if self.bias is not None:
            linear.bias = Parameter(self.bias.data.copy())
        linear.requires_grad_(False)
        return linear

    def nbytes(self):
        """Bytes of the quantized weight (the blocks)."""
        return int(self.qweight.nbytes)

    def extra_repr(self):
        bits = 8 * self.nbytes() / (self.in_features * self.out_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"quant_type={self.quant_type} ({bits:.2f} bits per weight)")


def refuse_quantized_merge(base_layer, method):
    """IA3 into a quantized weight: refused, as PEFT refuses it on a 4-bit model; say what to do instead."""
    if isinstance(base_layer, QuantizedLinear):
        raise ValueError(f"cannot merge {method} into a {base_layer.quant_type}-quantized layer (PEFT refuses it on "
                         "4-bit models too). Call minift.models.dequantize_model(model) first (the float weights "
                         "then hold the quantization error), or keep the adapter separate")


def warn_requantized_merge(base_layer, what):
    """The warning PEFT gives when it merges LoRA into a 4-bit layer, in minift's words."""
    import warnings

    warnings.warn(f"{what} a LoRA adapter on a {base_layer.quant_type} layer quantizes the weight again: every value "
                  "snaps to its block's grid, so the outputs change and an update under half a grid step is lost "
                  "(lesson 12 measures how much)", UserWarning, stacklevel=4)


def quantized_weight_count(model):
    """How many weights ``model`` keeps in quantized blocks (they are weights, though not ``Parameter``s)."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantizedLinear))
