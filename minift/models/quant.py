"""Block quantization, written out: how 4-bit and 8-bit weights are stored and turned back into floats.

Weights are cut into blocks of consecutive values along a row; each block stores its scale (and for Q4_1
a minimum) plus one small integer per value. The GGUF formats (llama.cpp) use blocks of 32:

    Q8_0  (34 bytes / 32 values = 8.5 bits):   d: f16, q: 32 × int8            x = d · q
    Q4_0  (18 bytes / 32 values = 4.5 bits):   d: f16, q: 16 bytes of nibbles  x = d · (q − 8)
    Q4_1  (20 bytes / 32 values = 5 bits):     d: f16, m: f16, 16 bytes        x = d · q + m

Nibble order (Q4_0, Q4_1): byte j of a block holds value j in its low 4 bits and value j + 16 in its
high 4 bits.

NF4 (QLoRA, Dettmers et al., 2023) uses blocks of 64 and no evenly spaced grid: each 4-bit code indexes
a table of 16 levels in [−1, 1] placed at quantiles of the standard normal (``NF4_CODE``; ``nf4_levels``
derives them), so that normally distributed weights fill every level about equally often:

    NF4   (36 bytes / 64 values = 4.5 bits):   absmax: f32, 32 bytes of nibbles   x = absmax · NF4_CODE[q]

Byte j of an NF4 block holds value 2j in its high 4 bits and value 2j + 1 in its low 4 bits (the order of
bitsandbytes). bitsandbytes keeps absmax in a separate array (and with "double quantization" quantizes
the absmax values themselves to 8 bits); minift puts it at the head of each block, so every format here
is "rows of fixed-size byte blocks" and a row range of a weight is a row range of its bytes.

``quantize_*`` do the reverse, so the lessons can measure the error of each format. The dequantizers run
on whatever side their input lives (``backend.array_module``): NumPy for a memory-mapped file, CuPy for
blocks kept on the GPU by ``minift.nn.QuantizedLinear``.
"""
from __future__ import annotations

import numpy as np  # host-side: file bytes, quantization and the code book; array_module for the rest

from ..backend import array_module, to_numpy

BLOCK = 32
BLOCK_VALUES = {"Q8_0": 32, "Q4_0": 32, "Q4_1": 32, "NF4": 64}
BYTES_PER_BLOCK = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20, "NF4": 36}

# The 16 NF4 levels (QLoRA's appendix; bitsandbytes' table), sorted; index 7 is exactly 0.
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982608795166, 0.5626170039176941, 0.7229568362236023, 1.0,
)


def nf4_levels(offset=0.9677083):
    """The NF4 levels from their definition: quantiles of N(0, 1), scaled into [−1, 1].

    8 positive levels at the quantiles Φ⁻¹(pᵢ) of 8 probabilities evenly spaced from ``offset`` down to ½
    (½ itself, the 0 quantile, left out), 7 negative ones the same way from 8 probabilities, and an exact 0
    — asymmetric so that 0 is a level; then everything divided by the largest. ``offset`` stands in for
    the 1 − ½(1/(2·15) + 1/(2·16)) of the paper, keeping Φ⁻¹ finite at the ends.
    """
    from scipy.stats import norm

    positive = norm.ppf(np.linspace(offset, 0.5, 9)[:-1])  # 8 values, largest first
    negative = -norm.ppf(np.linspace(offset, 0.5, 8)[:-1])  # 7 values
    levels = np.sort(np.concatenate([positive, [0.0], negative]))
    return levels / levels.max()


def _blocks(raw, kind):
    ns = array_module(raw)
    raw = ns.ascontiguousarray(raw).view(ns.uint8).reshape(-1)  # any shape and dtype -> (n_bytes,) uint8
    size = BYTES_PER_BLOCK[kind]
    if raw.size % size:
        raise ValueError(f"{kind} data of {raw.size} bytes is not a whole number of {size}-byte blocks")
    return raw.reshape(-1, size)  # (n_blocks, bytes per block)


def _f16(b):
    """Two bytes per row, (n, 2) uint8 → (n, 1) float32 read as IEEE half precision."""
    return b.copy().view(array_module(b).float16).astype(array_module(b).float32)


def _nibbles(qs):
    """(n, 16) packed bytes → (n, 32) values 0..15: low nibbles are values 0..15, high nibbles 16..31."""
    return array_module(qs).concatenate([qs & 0x0F, qs >> 4], axis=1).astype(array_module(qs).float32)


def dequantize_q8_0(raw):
    b = _blocks(raw, "Q8_0")
    ns = array_module(b)
    q = b[:, 2:].copy().view(ns.int8).astype(ns.float32)  # (n, 32)
    return (_f16(b[:, :2]) * q).reshape(-1)  # (n, 1) · (n, 32) -> (n·32,): the blocks' values in order


def dequantize_q4_0(raw):
    b = _blocks(raw, "Q4_0")
    return (_f16(b[:, :2]) * (_nibbles(b[:, 2:]) - 8.0)).reshape(-1)  # (n, 32) -> (n·32,)


def dequantize_q4_1(raw):
    """Q4_1 bytes → float32 values: per block of 32, x = d · q + m.

    A block is 20 bytes: d (float16, bytes 0-1), m (float16, bytes 2-3), then 16 bytes of 4-bit q. Byte j
    holds value j in its low 4 bits and value j + 16 in its high 4 bits (``_nibbles`` unpacks them in that
    order, as (n, 32)). Returns the values of all blocks in order, (n_blocks · 32,)."""
    b = _blocks(raw, "Q4_1")  # (n_blocks, 20): bytes 0-1 d, 2-3 m, 4-19 the packed nibbles
    # TASK quant.dequantize_q4_1: turn Q4_1 blocks back into float32 weights
    # BEGIN SOLUTION
    d = _f16(b[:, 0:2])  # (n, 1)
    m = _f16(b[:, 2:4])  # (n, 1)
    return (d * _nibbles(b[:, 4:]) + m).reshape(-1)  # (n, 32) -> (n·32,), n = n_blocks
    # END SOLUTION


def dequantize_nf4(raw):
    """NF4 bytes → float32 values: per block of 64, x = absmax · NF4_CODE[q].

    A block is 36 bytes: absmax (float32, bytes 0-3), then 32 bytes of 4-bit codes q. Byte j holds value 2j
    in its **high** 4 bits and value 2j + 1 in its low 4 bits — the reverse of Q4's order (bitsandbytes').
    Returns the values of all blocks in order, (n_blocks · 64,)."""
    b = _blocks(raw, "NF4")  # (n_blocks, 36): bytes 0-3 absmax (float32), 4-35 the packed codes
    ns = array_module(b)
    code = ns.asarray(NF4_CODE, dtype=ns.float32)  # (16,)
    absmax = b[:, :4].copy().view(ns.float32)  # (n, 1)
    packed = b[:, 4:]  # (n, 32)
    # TASK quant.dequantize_nf4: turn NF4 blocks back into float32 weights (look up each code, scale by absmax)
    # BEGIN SOLUTION
    codes = ns.stack([packed >> 4, packed & 0x0F], axis=-1).reshape(len(b), 64)  # (n, 32, 2) -> (n, 64)
    return (code[codes] * absmax).reshape(-1)  # (n, 64) -> (n·64,), n = n_blocks
    # END SOLUTION


DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1, "NF4": dequantize_nf4}


def dequantize(raw, kind, shape):
    """Raw tensor bytes of type ``kind`` → float32 array of ``shape`` (NumPy order, rows last-axis-major)."""
    ns = array_module(raw)
    if kind == "F32":
        return ns.ascontiguousarray(raw).view(ns.float32).reshape(shape)  # (n_bytes/4,) float32 values -> shape
    if kind == "F16":
        # (n_bytes/2,) float16 values -> shape
        return ns.ascontiguousarray(raw).view(ns.float16).astype(ns.float32).reshape(shape)
    if kind not in DEQUANTIZE:
        raise ValueError(f"tensor type {kind} is not supported (minift reads F32, F16, {', '.join(DEQUANTIZE)})")
    return DEQUANTIZE[kind](raw).reshape(shape)  # (n_values,) -> shape


def quantize_q8_0(x):
    """Blocks of 32: d = max|x|/127, q = round(x/d). Returns the raw bytes, as GGUF stores them."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK)  # any shape -> (n_blocks, 32)
    d = np.abs(x).max(axis=1, keepdims=True) / 127.0
    q = np.round(np.divide(x, d, out=np.zeros_like(x), where=d > 0)).astype(np.int8)
    # (n, 2 + 32) bytes -> (n·34,)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def quantize_q4_1(x):
    """Blocks of 32: m = min, d = (max − min)/15, q = round((x − m)/d) in 0..15, packed two per byte."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK)  # any shape -> (n_blocks, 32)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (hi - lo) / 15.0
    q = np.clip(np.round(np.divide(x - lo, d, out=np.zeros_like(x), where=d > 0)), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    # (n, 2 + 2 + 16) bytes -> (n·20,)
    return np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8), packed], axis=1).reshape(-1)


def quantize_q4_0(x):
    """Blocks of 32: d = (the value of largest magnitude)/(−8), q = round(x/d) + 8 clipped to 0..15, with the
    float32 d; only then is d stored as float16 (llama.cpp's order)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK)  # any shape -> (n_blocks, 32)
    extreme = np.take_along_axis(x, np.abs(x).argmax(axis=1)[:, None], axis=1)  # signed, (n, 1)
    d = extreme / -8.0
    q = np.clip(np.round(np.divide(x, d, out=np.zeros_like(x), where=d != 0)) + 8, 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    # (n, 2 + 16) bytes -> (n·18,)
    return np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1).reshape(-1)


def quantize_nf4(x):
    """Blocks of 64: absmax = max|x|, q = the index of the NF4 level nearest to x/absmax, packed two per byte."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK_VALUES["NF4"])  # any shape -> (n_blocks, 64)
    absmax = np.abs(x).max(axis=1, keepdims=True)  # (n, 1)
    normalized = np.divide(x, absmax, out=np.zeros_like(x), where=absmax > 0)  # in [−1, 1]
    code = np.asarray(NF4_CODE, dtype=np.float32)
    midpoints = (code[1:] + code[:-1]) / 2  # level i owns (midpoint i−1, midpoint i]
    q = np.searchsorted(midpoints, normalized).astype(np.uint8)  # (n, 64) in 0..15
    packed = (q[:, 0::2] << 4) | q[:, 1::2]  # value 2j high, 2j + 1 low
    # (n, 4 + 32) bytes -> (n·36,)
    return np.concatenate([absmax.astype(np.float32).view(np.uint8), packed], axis=1).reshape(-1)


QUANTIZE = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1, "NF4": quantize_nf4}


def quantize(x, kind):
    """A float array → the raw bytes of format ``kind`` (its size a multiple of the block size)."""
    if kind not in QUANTIZE:
        raise ValueError(f"quantization type must be one of {sorted(QUANTIZE)}, got {kind!r}")
    x = np.asarray(to_numpy(x))  # quantizing is host work (once, at load time): a GPU array is copied over first
    if x.size % BLOCK_VALUES[kind]:
        raise ValueError(f"{kind} quantizes blocks of {BLOCK_VALUES[kind]} values; an array of {x.size} values "
                         "is not a whole number of blocks")
    return QUANTIZE[kind](x)


# ----------------------------------------------------------------------------- whole models
def _replace(model, name, new):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def quantize_model(model, quant_type="NF4", modules_to_not_convert=("classifier", "lm_head", "pooler", "qa_outputs")):
    """Replace every float ``Linear`` of ``model`` (in place) by a ``QuantizedLinear`` of ``quant_type``.

    What QLoRA's ``load_in_4bit`` does to a model: the big matrices go to 4-bit blocks, while the
    embeddings, norms, biases and the layers named in ``modules_to_not_convert`` (a module name or its last
    part; the task heads by default, as in transformers) stay float. Returns the model.
    """
    from ..nn import Linear, QuantizedLinear

    if quant_type not in QUANTIZE:
        raise ValueError(f"quant_type must be one of {sorted(QUANTIZE)}, got {quant_type!r}")
    skip = set(modules_to_not_convert or ())
    chosen = [name for name, m in model.named_modules() if type(m) is Linear
              and not (name in skip or name.rpartition(".")[2] in skip)]
    if not chosen:
        raise ValueError(f"{type(model).__name__} has no float Linear layer to quantize (outside {sorted(skip)})")
    misfits = [f"{n} (in_features {model.get_submodule(n).in_features})" for n in chosen
               if model.get_submodule(n).in_features % BLOCK_VALUES[quant_type]]
    if misfits:  # checked before any change, so a refused model stays as it was
        raise ValueError(f"{quant_type} quantizes rows in blocks of {BLOCK_VALUES[quant_type]} values; these layers' rows "
                         f"are not whole blocks: {', '.join(misfits[:4])}. Add them to modules_to_not_convert, or "
                         f"use a format with blocks of 32 ({', '.join(k for k, v in BLOCK_VALUES.items() if v == 32)})")
    for name in chosen:
        _replace(model, name, QuantizedLinear.from_linear(model.get_submodule(name), quant_type))
    return model


def dequantize_model(model):
    """Replace every ``QuantizedLinear`` of ``model`` (in place) by a float ``Linear`` holding Ŵ; returns the model.

    Merging LoRA into float weights, exactly, needs this first: a merge into a 4-bit base quantizes Ŵ + s·BA
    again and loses most of a small update (lesson 12).
    """
    from ..nn import QuantizedLinear

    for name, m in list(model.named_modules()):
        if isinstance(m, QuantizedLinear):
            _replace(model, name, m.dequantize())
    return model


def quantized_bytes(model):
    """(bytes in quantized blocks, bytes in float parameters and buffers) of a model."""
    from ..nn import QuantizedLinear

    blocks = sum(m.nbytes() for m in model.modules() if isinstance(m, QuantizedLinear))
    floats = sum(int(p.data.nbytes) for p in model.parameters())
    floats += sum(int(b.nbytes) for _, b in model.named_buffers() if b.dtype.kind == "f")
    return blocks, floats
